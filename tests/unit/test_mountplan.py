"""Namespace volume mode as data: choosing the mode, mount order (parents before children), setup script
arguments, container→host path translation, mount point removal order, Memory emptyDir sizes; plus the
resolution of bind sources and mount points against a real temporary directory (symlink escapes refused)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.agent.environment import ConfigError
from corral.agent.mounting import MountPointError, bind_mounts, create_mount_point, remove_mount_points
from corral.agent.mountplan import (
    HostFacts,
    VolumeMode,
    VolumeModeError,
    choose_volume_mode,
    hidden_by_mounts,
    host_path,
    is_below,
    memory_volumes,
    plan_mounts,
    removal_order,
    setup_ops,
)
from corral.agent.runtimes.base import BindMount
from corral.agent.volumes import MountPlan, volume_dir

ROOT_OK = HostFacts(linux=True, euid=0)


def mp(volume: str, path: str, sub: str = "", ro: bool = False) -> MountPlan:
    return MountPlan(volume, path, path.lstrip("/"), sub, ro)


# ------------------------------------------------------------------------------------------------ mode


@pytest.mark.parametrize(
    ("requested", "facts", "mode", "why"),
    [
        ("auto", ROOT_OK, VolumeMode.NAMESPACE, "auto: running as root"),
        ("auto", HostFacts(linux=True, euid=1000), VolumeMode.SANDBOX, "need root (running as uid 1000)"),
        ("auto", HostFacts(linux=False, euid=0), VolumeMode.SANDBOX, "need Linux"),
        (
            "auto",
            HostFacts(True, 0, ("nsenter",)),
            VolumeMode.SANDBOX,
            "missing util-linux programs: nsenter",
        ),
        ("auto", HostFacts(True, 0, (), "Operation not permitted"), VolumeMode.SANDBOX, "not permitted"),
        ("namespace", ROOT_OK, VolumeMode.NAMESPACE, "requested"),
        ("sandbox", ROOT_OK, VolumeMode.SANDBOX, "requested"),
        ("sandbox", HostFacts(linux=False, euid=1000), VolumeMode.SANDBOX, "requested"),
    ],
)
def test_choose_volume_mode(requested: str, facts: HostFacts, mode: VolumeMode, why: str) -> None:
    chosen, reason = choose_volume_mode(requested, facts)
    assert chosen is mode
    assert why in reason


@pytest.mark.parametrize(
    ("requested", "facts", "message"),
    [
        (
            "namespace",
            HostFacts(linux=True, euid=1000),
            "not possible on this host: mount namespaces need root",
        ),
        ("namespace", HostFacts(True, 0, (), "unshare failed: EPERM"), "creating a mount namespace failed"),
        ("chroot", ROOT_OK, "unknown volume mode 'chroot'"),
    ],
)
def test_impossible_volume_mode_is_an_error(requested: str, facts: HostFacts, message: str) -> None:
    with pytest.raises(VolumeModeError, match=message):
        choose_volume_mode(requested, facts)


# ------------------------------------------------------------------------------------------------ ordering


def test_parents_before_children_and_nesting() -> None:
    plan = plan_mounts(
        [
            mp("tls", "/etc/app/tls/"),
            mp("cfg", "/etc/app"),
            mp("data", "/data"),
            mp("other", "/etc/application"),
            mp("deep", "/etc/app/tls/ca/x"),
        ]
    )
    assert [p.target for p in plan] == [
        "/data",
        "/etc/app",
        "/etc/application",
        "/etc/app/tls",
        "/etc/app/tls/ca/x",
    ]
    by_target = {p.target: p for p in plan}
    assert by_target["/etc/app"].parent is None
    assert by_target["/etc/application"].parent is None  # a name prefix is not a path prefix
    assert by_target["/etc/app/tls"].parent == 1 and by_target["/etc/app/tls"].rel_in_parent == "tls"
    deep = by_target["/etc/app/tls/ca/x"]
    assert plan[deep.parent or 0].target == "/etc/app/tls" and deep.rel_in_parent == "ca/x"


@given(st.permutations(["/a", "/a/b", "/a/b/c", "/b", "/a/c", "/b/x/y"]))
def test_every_mount_comes_after_all_its_ancestors(paths: list[str]) -> None:
    plan = plan_mounts([mp(f"v{i}", p) for i, p in enumerate(paths)])
    seen: list[str] = []
    for planned in plan:
        assert not any(is_below(s, planned.target) and s != planned.target for s in seen)
        seen.append(planned.target)


def test_setup_ops_binds_then_read_only_remounts() -> None:
    binds = [BindMount("/s/a", "/a", "/a", read_only=True), BindMount("/s/b", "/a/b", "/s/a/b")]
    assert setup_ops(binds) == ["b", "/s/a", "/a", "b", "/s/b", "/a/b", "r", "/a"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a", "/s/a"),
        ("/a/x/y", "/s/a/x/y"),
        ("/a/b/z", "/s/b/z"),  # the deepest mount wins
        ("/ab", "/ab"),
        ("/usr/bin/sh", "/usr/bin/sh"),
    ],
)
def test_host_path(path: str, expected: str) -> None:
    binds = [BindMount("/s/a", "/a", "/a"), BindMount("/s/b", "/a/b", "/s/a/b")]
    assert host_path(path, binds) == expected


@pytest.mark.parametrize(
    ("targets", "problem"),
    [
        (["/etc/app"], ""),
        (["/tmp"], "mountPath /tmp would hide /tmp/data/pods/u/volumes/a"),
        (["/tmp/data"], "would hide"),
        (["/usr/bin"], "would hide /usr/bin/dash"),
        (["/usr/share/html"], ""),
        (["/"], "would hide"),
    ],
)
def test_hidden_by_mounts(targets: list[str], problem: str) -> None:
    binds = [BindMount(f"/tmp/data/pods/u/volumes/{chr(97 + i)}", t, t) for i, t in enumerate(targets)]
    result = hidden_by_mounts(binds, ["/tmp/data/runtime", "/usr/bin/dash"])
    assert (problem in result) if problem else result == ""


def test_nested_mount_hides_nothing_of_the_host_tree() -> None:
    parent = BindMount("/d/v/a", "/etc/app", "/etc/app")
    # Its mount point is inside the parent's source, and so is another bind's source: not hidden (the nested
    # mount attaches to the /etc/app bind, while sources are reached through the data dir's own mount).
    nested = BindMount("/d/v/b", "/etc/app/x", "/d/v/a/x")
    sub = BindMount("/d/v/a/x/y", "/y", "/y")
    assert hidden_by_mounts([parent, nested, sub], ["/d/runtime"]) == ""


@pytest.mark.parametrize(
    ("created", "needed", "expected"),
    [
        (["/x", "/x/a", "/x/b"], set(), ["/x/a", "/x/b", "/x"]),
        (["/x", "/x/a", "/x/b"], {"/x/a"}, ["/x/b"]),  # /x holds a mount point still in use
        (["/f.conf"], set(), ["/f.conf"]),
        ([], set(), []),
    ],
)
def test_removal_order(created: list[str], needed: set[str], expected: list[str]) -> None:
    assert removal_order(created, needed) == expected


def test_memory_volumes() -> None:
    pod: dict[str, Any] = {
        "spec": {
            "volumes": [
                {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "unlimited", "emptyDir": {"medium": "Memory"}},
                {"name": "disk", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "x"}},
            ]
        }
    }
    assert memory_volumes(pod) == {"m": 1024 * 1024, "unlimited": None}


# ------------------------------------------------------------------------------------------------ IO


def _volume(sandbox: Path, name: str) -> Path:
    d = volume_dir(sandbox, name)
    d.mkdir(parents=True)
    return d


def test_bind_mounts_resolve_sources_and_nested_mount_points(tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    cfg = _volume(sandbox, "cfg")
    (cfg / "one.conf").write_text("1")
    _volume(sandbox, "tls")
    binds = bind_mounts(
        sandbox,
        [
            mp("tls", "/etc/app/tls", ro=True),
            mp("cfg", "/etc/app"),
            mp("cfg", "/etc/one.conf", sub="one.conf"),
        ],
    )
    assert [b.target for b in binds] == ["/etc/app", "/etc/one.conf", "/etc/app/tls"]
    app, one, tls = binds
    assert app.source == str(cfg.resolve()) and not app.file
    assert one.source == str((cfg / "one.conf").resolve()) and one.file
    assert tls.mount_point == str(cfg.resolve() / "tls")  # inside the parent's volume, not on the host
    assert tls.read_only and not app.read_only


def test_bind_mounts_refuse_a_nested_mount_point_escaping_through_a_symlink(tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    scratch = _volume(sandbox, "scratch")
    _volume(sandbox, "other")
    outside = tmp_path / "outside"
    outside.mkdir()
    (scratch / "link").symlink_to(outside)  # planted by a container that can write the emptyDir
    with pytest.raises(ConfigError, match="outside the volume"):
        bind_mounts(sandbox, [mp("scratch", "/s"), mp("other", "/s/link/x")])
    with pytest.raises(ConfigError, match="outside the volume"):
        bind_mounts(sandbox, [mp("scratch", "/p", sub="link")])


def test_create_and_remove_mount_points(tmp_path: Path) -> None:
    base = tmp_path / "host"
    created = create_mount_point(str(base / "a" / "b"), file=False)
    assert created == [str(base), str(base / "a"), str(base / "a" / "b")]
    assert create_mount_point(str(base / "a" / "b"), file=False) == []  # idempotent, nothing new
    created_file = create_mount_point(str(base / "f.conf"), file=True)
    assert created_file == [str(base / "f.conf")] and (base / "f.conf").stat().st_size == 0
    (base / "a" / "keep").write_text("not ours")
    remove_mount_points(removal_order(created + created_file, set()))
    assert not (base / "a" / "b").exists() and not (base / "f.conf").exists()
    assert (base / "a" / "keep").exists()  # a directory someone filled is left alone


def test_create_mount_point_refuses_a_symlink_on_the_way(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    with pytest.raises(MountPointError, match="symlink"):
        create_mount_point(str(tmp_path / "link" / "x"), file=False)
    assert not (tmp_path / "elsewhere" / "x").exists()
    (tmp_path / "dir").mkdir()
    with pytest.raises(MountPointError, match="not a regular file"):
        create_mount_point(str(tmp_path / "dir"), file=True)
