"""The atomic volume writer: layout, all keys switching together, no-op when unchanged, planted entries refused."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from corral.agent.atomicwriter import (
    DATA_LINK,
    AtomicWriteError,
    materialise_volumes,
    read_current,
    write_volume,
)
from corral.agent.environment import ConfigError
from corral.agent.volumes import FileContent, VolumeKind, VolumePlan


def files(version: str, keys: tuple[str, ...] = ("a", "b", "c/d")) -> dict[str, FileContent]:
    return {key: FileContent(f"{version}".encode(), 0o640) for key in keys}


def data_dirs(volume: Path) -> list[str]:
    return sorted(p.name for p in volume.iterdir() if p.name.startswith("..") and p.name != DATA_LINK)


def test_layout_and_modes(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    assert write_volume(volume, files("1")) is True
    assert os.readlink(volume / "a") == "..data/a"
    assert os.readlink(volume / "c") == "..data/c"
    assert (volume / "c" / "d").read_bytes() == b"1"
    assert stat.S_IMODE((volume / "a").stat().st_mode) == 0o640
    (only,) = data_dirs(volume)
    assert os.readlink(volume / DATA_LINK) == only
    assert read_current(volume) == files("1")


def test_unchanged_writes_nothing(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    write_volume(volume, files("1"))
    before = data_dirs(volume)
    assert write_volume(volume, files("1")) is False
    assert data_dirs(volume) == before
    # A mode change alone is a change.
    changed = dict(files("1"))
    changed["a"] = FileContent(b"1", 0o600)
    assert write_volume(volume, changed) is True
    assert data_dirs(volume) != before and len(data_dirs(volume)) == 1


def test_keys_added_and_removed(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    write_volume(volume, files("1", ("a", "b")))
    write_volume(volume, files("2", ("b", "n/e/w")))
    assert not os.path.lexists(volume / "a")
    assert (volume / "b").read_bytes() == b"2"
    assert (volume / "n" / "e" / "w").read_bytes() == b"2"
    write_volume(volume, {})
    assert sorted(p.name for p in volume.iterdir() if not p.name.startswith("..")) == []


def test_reader_never_sees_a_mix(tmp_path: Path) -> None:
    """A reader that resolves ``..data`` once and reads every key from it sees one version only, while a
    writer flips versions as fast as it can; per-key links never go missing for stable keys."""
    volume = tmp_path / "vol"
    keys = tuple(f"k{i}" for i in range(8))
    write_volume(volume, files("0", keys))
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        version = 0
        while not stop.is_set():
            version += 1
            write_volume(volume, files(str(version), keys))
            writes += 1

    mixes: list[set[bytes]] = []
    missing: list[str] = []
    consistent_reads = 0
    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 1.5
    try:
        while time.monotonic() < deadline and (writes < 50 or consistent_reads < 200):
            try:
                snapshot = volume / os.readlink(volume / DATA_LINK)
                values = {(snapshot / key).read_bytes() for key in keys}
            except FileNotFoundError:
                continue  # the old directory was removed under us: the reader retries, as with the kubelet
            if len(values) != 1:
                mixes.append(values)
            consistent_reads += 1
            for key in keys:
                if not os.path.lexists(volume / key):
                    missing.append(key)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert writes >= 10 and consistent_reads > 0
    assert mixes == []
    assert missing == []


def test_planted_symlink_refused(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    outside = tmp_path / "outside"
    outside.mkdir()
    volume.mkdir()
    os.symlink(outside, volume / "a")  # occupies a key's name with a link the writer did not make
    with pytest.raises(AtomicWriteError, match="planted"):
        write_volume(volume, files("1"))
    assert list(outside.iterdir()) == []
    assert not os.path.lexists(volume / DATA_LINK)


def test_planted_file_and_symlinked_volume_refused(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    write_volume(volume, files("1"))
    (volume / "b").unlink()
    (volume / "b").write_text("mine")
    with pytest.raises(AtomicWriteError):
        write_volume(volume, files("2"))
    assert (volume / "b").read_text() == "mine"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    linked = tmp_path / "linked"
    os.symlink(elsewhere, linked)
    with pytest.raises(AtomicWriteError, match="not a plain directory"):
        write_volume(linked, files("1"))
    assert list(elsewhere.iterdir()) == []


def test_unsafe_paths_refused(tmp_path: Path) -> None:
    for bad in ("../x", "/abs", "a/../../x", "..data"):
        with pytest.raises(ConfigError):
            write_volume(tmp_path / "vol", {bad: FileContent(b"x")})
    assert not (tmp_path / "x").exists()


def test_materialise_volumes_keeps_scratch_content(tmp_path: Path) -> None:
    plans = {
        "scratch": VolumePlan("scratch", VolumeKind.SCRATCH),
        "cfg": VolumePlan("cfg", VolumeKind.FILES, {"k": FileContent(b"v")}),
    }
    assert sorted(materialise_volumes(tmp_path, plans)) == ["cfg", "scratch"]
    (tmp_path / "volumes" / "scratch" / "mine").write_text("kept")
    assert materialise_volumes(tmp_path, plans) == []
    assert (tmp_path / "volumes" / "scratch" / "mine").read_text() == "kept"
    assert (tmp_path / "volumes" / "cfg" / "k").read_bytes() == b"v"
    (tmp_path / "volumes" / "cfg" / "..data" / "k").write_bytes(b"tampered")  # the process owns the files
    assert materialise_volumes(tmp_path, plans) == ["cfg"]
    assert (tmp_path / "volumes" / "cfg" / "k").read_bytes() == b"v"
