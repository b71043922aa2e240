"""Write a volume's file set so that readers see either all of the old files or all of the new ones.

The IO half of ``volumes`` (which computes the file set). The layout is the kubelet's ``AtomicWriter``::

    <volume>/..2026_11_26_12_00_00.123456.abcd/   the current data (a fresh, timestamped directory)
    <volume>/..data -> ..2026_11_26_12_00_00.123456.abcd
    <volume>/config.yaml -> ..data/config.yaml     one symlink per top-level name

An update writes a whole new data directory, then swaps ``..data`` with one ``rename`` (atomic on POSIX), so
every key switches at the same instant; then it fixes the per-name symlinks and removes the old directory.
An unchanged file set writes nothing (no new directory, no swap), so a periodic resync is cheap.

Refusals (:class:`AtomicWriteError`, a ``ConfigError``): the volume directory is a symlink, a path of the
file set is unsafe, or a top-level name is occupied by something the writer did not make (a planted symlink
or file) — the writer never follows or overwrites such an entry.

Hand-written because no maintained Python library implements this layout; it is a small, well-known protocol.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from corral.agent.environment import ConfigError
from corral.agent.volumes import FileContent, VolumeKind, VolumePlan, check_relative_path, volume_dir

DATA_LINK = "..data"
_TMP_LINK = "..data_tmp"


class AtomicWriteError(ConfigError):
    """The volume directory cannot be written safely; the message says why."""


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime(now)) + f".{int(now * 1e6) % 1_000_000:06d}."


def read_current(volume_dir: Path) -> dict[str, FileContent] | None:
    """The file set ``..data`` points at now, or None when there is none (or it cannot be read)."""
    data_link = volume_dir / DATA_LINK
    if not data_link.is_symlink():
        return None
    target = os.readlink(data_link)
    if "/" in target or not target.startswith(".."):
        return None  # not ours: never follow it
    data_dir = volume_dir / target
    files: dict[str, FileContent] = {}
    try:
        for dirpath, dirnames, filenames in os.walk(data_dir, followlinks=False):
            for name in filenames:
                full = Path(dirpath) / name
                info = full.lstat()
                if not stat.S_ISREG(info.st_mode):
                    return None
                rel = full.relative_to(data_dir).as_posix()
                files[rel] = FileContent(full.read_bytes(), stat.S_IMODE(info.st_mode))
            for name in dirnames:
                if (Path(dirpath) / name).is_symlink():
                    return None
    except OSError:
        return None
    return files


def _top_level(files: Mapping[str, FileContent]) -> set[str]:
    return {path.split("/", 1)[0] for path in files}


def _check_volume_dir(volume_dir: Path, names: set[str], old_names: set[str]) -> None:
    """Refuse entries the writer did not create where it is about to put its own links."""
    info = os.lstat(volume_dir)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise AtomicWriteError(f"volume directory {volume_dir} is not a plain directory")
    for name in names | old_names:
        entry = volume_dir / name
        if not os.path.lexists(entry):
            continue
        if not entry.is_symlink() or os.readlink(entry) != f"{DATA_LINK}/{name}":
            raise AtomicWriteError(
                f"volume path {name!r} is occupied by an entry the agent did not create (a planted symlink "
                "or file); refusing to write through it"
            )


def _write_tree(data_dir: Path, files: Mapping[str, FileContent]) -> None:
    for rel in sorted(files):
        content = files[rel]
        path = data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        # O_EXCL | O_NOFOLLOW: the directory is brand new and ours, but never write through a link anyway.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                fd = -1
                handle.write(content.data)
                handle.flush()
                os.fchmod(handle.fileno(), content.mode)
        finally:
            if fd >= 0:
                os.close(fd)


def write_volume(volume_dir: Path, files: Mapping[str, FileContent]) -> bool:
    """Make ``volume_dir`` hold exactly ``files``; True when it changed, False when it already did."""
    clean = {check_relative_path(path, "volume file path"): content for path, content in files.items()}
    volume_dir.mkdir(parents=True, exist_ok=True)
    current = read_current(volume_dir)
    if current == clean:
        return False
    names = _top_level(clean)
    old_names = _top_level(current or {})
    _check_volume_dir(volume_dir, names, old_names)
    old_target = os.readlink(volume_dir / DATA_LINK) if (volume_dir / DATA_LINK).is_symlink() else None

    data_dir = Path(tempfile.mkdtemp(prefix=".." + _timestamp(), dir=volume_dir))
    try:
        os.chmod(data_dir, 0o755)
        _write_tree(data_dir, clean)
        tmp_link = volume_dir / _TMP_LINK
        if os.path.lexists(tmp_link):
            tmp_link.unlink()
        os.symlink(data_dir.name, tmp_link)
        os.replace(tmp_link, volume_dir / DATA_LINK)  # the one atomic switch of every key
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise

    for name in names:
        link = volume_dir / name
        if not os.path.lexists(link):
            os.symlink(f"{DATA_LINK}/{name}", link)
    for name in old_names - names:
        (volume_dir / name).unlink(missing_ok=True)
    if old_target is not None and old_target != data_dir.name and old_target.startswith(".."):
        shutil.rmtree(volume_dir / old_target, ignore_errors=True)
    return True


def materialise_volumes(sandbox: Path, plans: Mapping[str, VolumePlan]) -> list[str]:
    """Bring every planned volume of a pod up to date under ``sandbox``; returns the names that changed.

    ``emptyDir`` volumes are created once and never touched again (their content belongs to the containers).
    Synchronous on purpose: the agent calls it from its event loop, so two syncs of one pod never interleave.
    """
    changed: list[str] = []
    for name, plan in plans.items():
        target = volume_dir(sandbox, name)
        if plan.kind is VolumeKind.SCRATCH:
            if not target.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                changed.append(name)
        elif write_volume(target, plan.files):
            changed.append(name)
    return changed
