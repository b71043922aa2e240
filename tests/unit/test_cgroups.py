"""Cgroup detection and configuration against fake /proc and cgroupfs trees (plus one check of the real host)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.agent.cgroups import (
    CgroupLimits,
    CgroupSupport,
    CgroupVersion,
    ContainerCgroup,
    cpu_quota_us,
    parse_mountinfo,
    parse_proc_cgroup,
)

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {root}/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / {root}/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
"""

V1_SELF = """\
9:name=systemd:/
4:memory:/sandbox/abc
2:cpu,cpuacct:/
0::/
"""


def fake_proc(tmp_path: Path, mountinfo: str, self_cgroup: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mountinfo").write_text(mountinfo)
    (proc / "self" / "cgroup").write_text(self_cgroup)
    return proc


def test_parse_mountinfo_finds_v1_and_v2() -> None:
    mounts = parse_mountinfo(V1_MOUNTINFO.format(root="/sys/fs/cgroup"))
    assert [(m.mount_point, m.fstype) for m in mounts] == [
        (Path("/sys/fs/cgroup/cpu"), "cgroup"),
        (Path("/sys/fs/cgroup/memory"), "cgroup"),
        (Path("/sys/fs/cgroup/systemd"), "cgroup"),
        (Path("/sys/fs/cgroup/unified"), "cgroup2"),
    ]
    assert {"cpu", "cpuacct"} <= mounts[0].options


def test_parse_mountinfo_unescapes_spaces() -> None:
    (m,) = parse_mountinfo("1 2 0:1 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n")
    assert m.mount_point == Path("/mnt/with space")


def test_parse_proc_cgroup() -> None:
    assert parse_proc_cgroup(V1_SELF) == {
        "name=systemd": "/",
        "memory": "/sandbox/abc",
        "cpu": "/",
        "cpuacct": "/",
        "": "/",
    }


@pytest.mark.parametrize(
    ("millicores", "quota"), [(1000, 100_000), (250, 25_000), (1, 1_000), (2500, 250_000)]
)
def test_cpu_quota(millicores: int, quota: int) -> None:
    assert cpu_quota_us(millicores) == quota


def test_not_root_is_not_enforced(tmp_path: Path) -> None:
    support = CgroupSupport.detect("ns", proc=tmp_path, euid=1000)
    assert not support.enforced and "not running as root" in support.reason
    assert support.create("x", CgroupLimits(memory_bytes=1 << 20)) is None


def test_no_memory_controller_is_not_enforced(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "unified").mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    proc = fake_proc(tmp_path, f"41 31 0:38 / {root}/unified rw - cgroup2 cgroup2 rw\n", "0::/\n")
    support = CgroupSupport.detect("ns", proc=proc, euid=0)
    assert not support.enforced and support.version is CgroupVersion.NONE
    assert "memory" in support.reason


def test_v1_detection_nests_memory_under_own_cgroup(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    for d in ("cpu", "memory/sandbox/abc", "systemd", "unified"):
        (root / d).mkdir(parents=True)
    # A hybrid host: cgroup2 is mounted but has no memory controller, so v1 is used.
    (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    proc = fake_proc(tmp_path, V1_MOUNTINFO.format(root=root), V1_SELF)
    support = CgroupSupport.detect("rt-1", proc=proc, euid=0)
    assert support.enforced, support.reason
    assert support.version is CgroupVersion.V1
    assert support.controllers == {"memory", "cpu"}
    assert support.parents == {
        "memory": root / "memory/sandbox/abc/corral/rt-1",
        "cpu": root / "cpu/corral/rt-1",
    }

    cg = support.create("pod_c_0", CgroupLimits(memory_bytes=50 << 20, cpu_millicores=500))
    assert cg is not None
    mem, cpu = cg.dirs["memory"], cg.dirs["cpu"]
    assert (mem / "memory.limit_in_bytes").read_text() == str(50 << 20)
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert set(cg.procs_files) == {mem / "cgroup.procs", cpu / "cgroup.procs"}

    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cg.oom_kill_count() == 2
    (mem / "cgroup.procs").write_text("12\n34\n")
    (cpu / "cgroup.procs").write_text("34\n56\n")
    assert cg.pids() == [12, 34, 56]
    assert ContainerCgroup.from_json(cg.to_json()) == cg
    # (On a fake tree detection's probe cgroup cannot be rmdir'ed: it holds plain files.)
    assert [n for n in support.existing() if not n.startswith("probe-")] == ["pod_c_0"]


def test_v2_in_root_cgroup_uses_top_level_corral(tmp_path: Path) -> None:
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("\n")
    proc = fake_proc(tmp_path, f"30 23 0:26 / {root} rw - cgroup2 cgroup2 rw,nsdelegate\n", "0::/\n")
    support = CgroupSupport.detect("rt-2", proc=proc, euid=0)
    assert support.enforced and support.version is CgroupVersion.V2, support.reason
    assert support.parents == {"unified": root / "corral" / "rt-2"}
    for level in (root, root / "corral", root / "corral" / "rt-2"):
        assert set((level / "cgroup.subtree_control").read_text().split()) == {"+memory", "+cpu"}

    cg = support.create("pod_c_1", CgroupLimits(memory_bytes=1 << 30, cpu_millicores=1500))
    assert cg is not None
    d = cg.dirs["unified"]
    assert (d / "memory.max").read_text() == str(1 << 30)
    assert (d / "cpu.max").read_text() == "150000 100000"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert cg.oom_kill_count() == 1


def test_v2_nested_agent_uses_a_sibling(tmp_path: Path) -> None:
    root = tmp_path / "cg2"
    svc = root / "system.slice" / "corral.service"
    svc.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "system.slice" / "cgroup.controllers").write_text("cpu memory\n")
    (root / "system.slice" / "cgroup.subtree_control").write_text("cpu memory\n")
    proc = fake_proc(
        tmp_path, f"30 23 0:26 / {root} rw - cgroup2 cgroup2 rw\n", "0::/system.slice/corral.service\n"
    )
    support = CgroupSupport.detect("rt-3", proc=proc, euid=0)
    assert support.enforced, support.reason
    assert support.parents == {"unified": root / "system.slice" / "corral" / "rt-3"}


def test_explicit_cgroup_root(tmp_path: Path) -> None:
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    proc = fake_proc(tmp_path, f"30 23 0:26 / {root} rw - cgroup2 cgroup2 rw\n", "0::/x/y\n")
    support = CgroupSupport.detect("rt-4", proc=proc, euid=0, cgroup_root="/kubepods/corral")
    assert support.parents == {"unified": root / "kubepods" / "corral" / "rt-4"}


def test_unwritable_parent_degrades(tmp_path: Path) -> None:
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "corral").write_text("a file where a directory should be")
    proc = fake_proc(tmp_path, f"30 23 0:26 / {root} rw - cgroup2 cgroup2 rw\n", "0::/\n")
    support = CgroupSupport.detect("rt-5", proc=proc, euid=0)
    assert not support.enforced and "not writable" in support.reason


def test_sweep_removes_only_unreferenced_empty_cgroups(tmp_path: Path) -> None:
    parent = tmp_path / "ns"
    for name in ("keep", "stale"):
        (parent / name).mkdir(parents=True)
    support = CgroupSupport(
        version=CgroupVersion.V2,
        enforced=True,
        reason="",
        parents={"unified": parent},
        controllers=frozenset({"memory"}),
    )
    assert support.sweep(["keep"]) == ["stale"]
    assert [p.name for p in parent.iterdir()] == ["keep"]
    assert support.remove_namespace() is False  # still holds "keep"
    (parent / "keep").rmdir()
    assert support.remove_namespace() is True and not parent.exists()


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        CgroupSupport.detect("../escape", proc=tmp_path, euid=0)
    support = CgroupSupport(version=CgroupVersion.V2, enforced=True, reason="", parents={"unified": tmp_path})
    with pytest.raises(ValueError):
        support.create("a/b", CgroupLimits())


def _can_write_real_cgroups() -> str:
    """Independent of our detection: can root make a child memory cgroup on this host?"""
    for base in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")):
        if (base / "cgroup.controllers").exists() and "memory" not in (
            base / "cgroup.controllers"
        ).read_text():
            continue
        if not (base / "cgroup.procs").exists():
            continue
        probe = base / f"corral-unit-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        probe.rmdir()
        return str(base)
    return ""


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can create cgroups")
def test_detection_on_this_host_enforces_when_the_host_allows_it() -> None:
    writable = _can_write_real_cgroups()
    support = CgroupSupport.detect(f"unit-{os.getpid()}")
    try:
        if writable:
            # Not a skip: root on a host with writable cgroups must get limits, or detection is broken.
            assert support.enforced, f"{writable} is writable but detection said: {support.reason}"
            assert "memory" in support.controllers
        else:
            assert not support.enforced and support.reason
    finally:
        for parent in support.parents.values():
            parent.rmdir()
