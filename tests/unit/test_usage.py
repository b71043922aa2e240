"""Resource usage: /proc and cgroup parsing, CPU rate math, the sampler over a fake /proc, the metrics API's
objects (also through the in-process transport) and ``corral top``'s rows."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.agent.cgroups import CgroupVersion, ContainerCgroup
from corral.agent.runtimes.base import ContainerId, RunningGroup
from corral.agent.usage import (
    NANOS,
    ContainerReading,
    CpuReading,
    NodeUsage,
    PodUsage,
    ProcSample,
    Usage,
    UsageSampler,
    assemble,
    cgroup_cpu_ns,
    cgroup_working_set,
    cpu_rate,
    format_cpu,
    format_memory,
    go_duration,
    group_members,
    node_memory_bytes,
    parse_cpu_line,
    parse_meminfo,
    parse_proc_stat,
    ticks_to_ns,
    working_set,
)
from corral.api.resources import REGISTRY
from corral.apiserver import status as api_status
from corral.apiserver.metricsapi import NODE_METRICS, POD_METRICS, install, pod_metrics
from corral.apiserver.nodeproxy import NodeDirectory
from corral.apiserver.rest import ResourceAPI
from corral.cli.top import node_rows, pod_rows
from corral.client.local import LocalTransport
from corral.store.memory import MemoryStore
from corral.testing.clock import FakeClock

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(
    pid: int, comm: str, *, pgid: int, sid: int, ticks: tuple[int, int, int, int], start: int, rss: int
) -> str:
    utime, stime, cutime, cstime = ticks
    # Fields 3..24 of /proc/<pid>/stat (state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss), then the rest.
    fields = [
        "S",
        "1",
        pgid,
        sid,
        "0",
        "-1",
        "0",
        "0",
        "0",
        "0",
        "0",
        utime,
        stime,
        cutime,
        cstime,
        "20",
        "0",
    ]
    fields += ["1", "0", start, "1000", rss, "18446744073709551615"]
    return f"{pid} ({comm}) " + " ".join(str(f) for f in fields) + "\n"


# ------------------------------------------------------------------------------------------------ parsing


def test_parse_proc_stat_handles_spaces_and_parentheses_in_the_command() -> None:
    text = _stat(42, "my (odd) prog", pgid=40, sid=40, ticks=(100, 20, 3, 4), start=555, rss=256)
    sample = parse_proc_stat(42, text.encode())
    assert sample == ProcSample(42, "S", 40, 40, 127, 555, 256)


@pytest.mark.parametrize("data", [b"", b"42 (x", b"42 (x) S 1", b"42 (x) S 1 2 3 4 5 6 7 8 9 10 a b c d"])
def test_parse_proc_stat_refuses_truncated_or_garbled_lines(data: bytes) -> None:
    assert parse_proc_stat(42, data) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu  100 5 50 1000 10 1 2 3 0 0\ncpu0 1 2 3 4\n", (161, 1171)),
        ("cpu 1 2 3 4\n", (6, 10)),  # old kernels: fewer columns
        ("intr 1 2\ncpu  10 0 0 90 0 0 0 0\n", (10, 100)),
        ("cpu0 1 2 3 4\n", None),  # no aggregate line
        ("cpu x y\n", None),
    ],
)
def test_parse_cpu_line(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_cpu_line(text) == expected


def test_parse_meminfo_and_node_memory() -> None:
    info = parse_meminfo("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:  400 kB\nHugePages_Total: 0\n")
    assert info == {"MemTotal": 1024000, "MemFree": 102400, "MemAvailable": 409600, "HugePages_Total": 0}
    assert node_memory_bytes(info) == 614400
    old = {"MemTotal": 1000, "MemFree": 100, "Buffers": 50, "Cached": 250}
    assert node_memory_bytes(old) == 600
    assert node_memory_bytes({}) is None


@pytest.mark.parametrize(
    ("usage", "stat", "version", "expected"),
    [
        (1000, {"inactive_file": 300, "total_inactive_file": 1}, CgroupVersion.V2, 700),
        (1000, {"inactive_file": 1, "total_inactive_file": 300}, CgroupVersion.V1, 700),
        (100, {"inactive_file": 300}, CgroupVersion.V2, 0),  # never negative
        (100, {}, CgroupVersion.V1, 100),
    ],
)
def test_working_set(usage: int, stat: dict[str, int], version: CgroupVersion, expected: int) -> None:
    assert working_set(usage, stat, version) == expected


def test_cgroup_files_v2_and_v1(tmp_path: Path) -> None:
    unified = tmp_path / "v2"
    unified.mkdir()
    (unified / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (unified / "memory.current").write_text("10485760\n")
    (unified / "memory.stat").write_text("anon 1000\ninactive_file 4194304\n")
    v2 = ContainerCgroup(CgroupVersion.V2, {"unified": unified})
    assert cgroup_cpu_ns(v2) == 2_500_000_000
    assert cgroup_working_set(v2) == 6291456

    cpu, memory = tmp_path / "cpu", tmp_path / "memory"
    cpu.mkdir()
    memory.mkdir()
    (memory / "memory.usage_in_bytes").write_text("8192\n")
    (memory / "memory.stat").write_text("cache 0\ntotal_inactive_file 4096\n")
    v1 = ContainerCgroup(CgroupVersion.V1, {"cpu": cpu, "memory": memory})
    assert cgroup_cpu_ns(v1) is None  # cpuacct mounted elsewhere: the process tree is used instead
    (cpu / "cpuacct.usage").write_text("123456789\n")
    assert cgroup_cpu_ns(v1) == 123456789
    assert cgroup_working_set(v1) == 4096


def test_group_members_are_the_session_after_the_wrapper_started() -> None:
    group = RunningGroup(ContainerId("u", "c", 0), pgid=100, min_start_ticks=500, started_at=T0)

    def sample(pid: int, pgid: int, sid: int, start: int) -> ProcSample:
        return ProcSample(pid, "S", pgid, sid, 1, start, 1)

    table = {
        100: [
            sample(100, 100, 100, 500),  # the wrapper: not counted
            sample(101, 100, 100, 501),  # main process
            sample(102, 100, 100, 499),  # older than the wrapper: the pgid was reused
            sample(103, 100, 7, 600),  # another session that happens to use the group id
        ],
        200: [sample(201, 200, 100, 700)],  # its own group (a job-control child): not found by pgid
    }
    assert [p.pid for p in group_members(table, group)] == [101]


# ------------------------------------------------------------------------------------------------ rates


@pytest.mark.parametrize(
    ("prev", "cur", "expected"),
    [
        (None, CpuReading(1.0, 5), None),
        (CpuReading(0.0, 0), CpuReading(2.0, NANOS), (NANOS // 2, 2.0)),
        (CpuReading(1.0, 100), CpuReading(1.0, 200), None),  # no time passed
        (CpuReading(1.0, 500), CpuReading(2.0, 100), None),  # counter reset
        (CpuReading(1.0, 500), CpuReading(6.0, 500), (0, 5.0)),
    ],
)
def test_cpu_rate(prev: CpuReading | None, cur: CpuReading, expected: tuple[int, float] | None) -> None:
    assert cpu_rate(prev, cur) == expected


@given(
    st.lists(
        st.tuples(st.floats(min_value=0.001, max_value=100), st.integers(min_value=0, max_value=10**15)),
        min_size=2,
        max_size=30,
    )
)
def test_cpu_rate_is_never_negative_across_resets(steps: list[tuple[float, int]]) -> None:
    at, prev = 0.0, None
    for dt, counter in steps:  # counters jump anywhere, including down (a reset)
        at += dt
        cur = CpuReading(at, counter)
        rate = cpu_rate(prev, cur)
        if rate is not None:
            assert prev is not None and rate[0] >= 0 and rate[1] == pytest.approx(dt)
            assert rate[0] == round((counter - prev.cpu_ns) / (cur.at - prev.at))
        else:
            assert prev is None or counter < prev.cpu_ns
        prev = cur


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=20))
def test_assemble_never_reports_negative_cpu(counters: list[int]) -> None:
    group = RunningGroup(ContainerId("pod", "c", 0), 10, 0, T0)
    previous: dict[ContainerId, CpuReading] = {}
    for i, counter in enumerate(counters):
        reading = ContainerReading(group, counter, 4096)
        pods, previous = assemble([reading], previous, float(i + 1), T0, {group.id: i + 1.0}, (0.5, 2.0))
        for pod in pods.values():
            assert all(u.cpu_nanocores >= 0 and u.window > 0 for u in pod.containers.values())


def test_assemble_first_reading_counts_from_the_start_only_when_recent() -> None:
    fresh = RunningGroup(ContainerId("p1", "web", 0), 10, 0, T0)
    adopted = RunningGroup(ContainerId("p2", "db", 0), 20, 0, T0)
    just_started = RunningGroup(ContainerId("p3", "x", 0), 30, 0, T0)
    readings = [
        ContainerReading(fresh, 2 * NANOS, 1000),  # 2 s of CPU in its 4 s of life: 500m
        ContainerReading(adopted, 50 * NANOS, 2000),
        ContainerReading(just_started, 10, 3000),
        ContainerReading(RunningGroup(ContainerId("p4", "gone", 0), 40, 0, T0), None, 0),
    ]
    ages = {fresh.id: 4.0, adopted.id: 3600.0, just_started.id: 0.1}
    pods, kept = assemble(readings, {}, 100.0, T0, ages, (2.5, 10.0))
    assert set(pods) == {"p1"}
    assert pods["p1"] == PodUsage(T0, 4.0, {"web": Usage(T0, 4.0, NANOS // 2, 1000)})
    assert set(kept) == {fresh.id, adopted.id, just_started.id}
    # Next interval: the adopted one now has a rate too; its window is the interval.
    later = [ContainerReading(adopted, 55 * NANOS, 2000)]
    pods, kept = assemble(later, kept, 105.0, T0, {adopted.id: 3605.0}, (2.5, 10.0))
    assert pods["p2"].containers["db"].cpu_nanocores == NANOS and pods["p2"].window == 5.0
    assert set(kept) == {adopted.id}  # exited instances are forgotten


# ------------------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (1.5, "1.5s"), (1.0034, "1.003s"), (60.25, "1m0.25s"), (3723, "1h2m3s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_quantities_as_metrics_server_writes_them() -> None:
    assert format_cpu(0) == "0" and format_cpu(12_345_678) == "12345678n"
    assert format_memory(0) == "0" and format_memory(2048) == "2Ki" and format_memory(1000) == "1000"
    assert ticks_to_ns(150, clk_tck=100) == 1_500_000_000


# ------------------------------------------------------------------------------------------------ sampler


def _fake_proc(root: Path, procs: list[str], cpu_line: str, mem_kb: tuple[int, int]) -> None:
    root.mkdir(exist_ok=True)
    for text in procs:
        pid = text.split()[0]
        (root / pid).mkdir(exist_ok=True)
        (root / pid / "stat").write_text(text)
    (root / "stat").write_text(cpu_line)
    (root / "meminfo").write_text(f"MemTotal: {mem_kb[0]} kB\nMemAvailable: {mem_kb[1]} kB\n")
    (root / "self").mkdir(exist_ok=True)  # non-numeric entries are skipped


def test_sampler_over_a_fake_proc(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    clock = FakeClock(T0)
    group = RunningGroup(ContainerId("uid-1", "main", 0), pgid=300, min_start_ticks=1000, started_at=T0)

    def procs(main_ticks: int, child_ticks: int) -> list[str]:
        return [
            _stat(300, "sh", pgid=300, sid=300, ticks=(1, 1, 0, 0), start=1000, rss=100),  # wrapper
            _stat(301, "busy", pgid=300, sid=300, ticks=(main_ticks, 0, 0, 0), start=1001, rss=50),
            _stat(302, "child", pgid=300, sid=300, ticks=(child_ticks, 0, 0, 0), start=1002, rss=25),
            _stat(999, "other", pgid=999, sid=999, ticks=(10**6, 0, 0, 0), start=5, rss=10**6),
        ]

    _fake_proc(proc, procs(0, 0), "cpu 0 0 0 1000 0 0 0 0\n", (1000, 400))
    sampler = UsageSampler(clock, interval=1.0, proc=proc)
    first = sampler.sample([group])
    assert first.node is None and first.pods == {}  # started "now": too short a window so far

    clock.advance(2.0)
    # 2 s later: main used 150 ticks (1.5 s), the child 50 (0.5 s): one core. Node: 100 of 200 ticks busy.
    _fake_proc(proc, procs(150, 50), "cpu 100 0 0 1100 0 0 0 0\n", (1000, 400))
    second = sampler.sample([group])
    assert second.node == Usage(clock.now(), 2.0, ticks_to_ns(100) // 2, 600 * 1024)
    usage = second.pods["uid-1"].containers["main"]
    assert usage.cpu_nanocores == ticks_to_ns(200) // 2
    assert usage.memory_bytes == 75 * PAGE
    assert usage.window == 2.0


# ------------------------------------------------------------------------------------------------ metrics API


class FakeNode:
    def __init__(self, usage: NodeUsage | None) -> None:
        self.usage = usage

    def resource_usage(self) -> NodeUsage | None:
        return self.usage

    def container_logs(self, pod: Any, options: Any) -> Any:
        raise NotImplementedError

    async def exec(self, pod: Any, container: str, argv: list[str], streams: Any, tty: bool) -> int:
        raise NotImplementedError


def _pod(name: str, uid: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "b", "image": "x"}, {"name": "a", "image": "x"}]},
    }


def test_pod_metrics_object_shape() -> None:
    usage = PodUsage(
        T0,
        5.0,
        {"a": Usage(T0, 5.0, 250_000_000, 4096), "b": Usage(T0, 5.0, 0, 1000), "z": Usage(T0, 5, 1, 0)},
    )
    obj = pod_metrics(_pod("web", "u1", "n1", {"app": "web"}), usage, T0 + timedelta(seconds=3))
    assert obj == {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:03Z",
            "labels": {"app": "web"},
        },
        "timestamp": "2026-01-01T00:00:00Z",
        "window": "5s",
        "containers": [  # spec order, then others by name
            {"name": "b", "usage": {"cpu": "0", "memory": "1000"}},
            {"name": "a", "usage": {"cpu": "250000000n", "memory": "4Ki"}},
            {"name": "z", "usage": {"cpu": "1n", "memory": "0"}},
        ],
    }


async def test_metrics_through_the_in_process_transport() -> None:
    """What an in-process autoscaler sees: LocalTransport → ResourceAPI → the computed kind."""
    store = MemoryStore()
    api = ResourceAPI(store, FakeClock(T0))
    nodes = NodeDirectory()
    install(api, nodes)
    transport = LocalTransport(api)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    await api.create(REGISTRY.require("namespaces"), None, namespace)
    node_rt = REGISTRY.require("nodes")
    await api.create(node_rt, None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    await api.create(node_rt, None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "remote"}})
    core_pods = REGISTRY.require("pods")
    await api.create(core_pods, "default", _pod("web", "", "n1", {"app": "web"}))
    await api.create(core_pods, "default", _pod("db", "", "n1", {"app": "db"}))
    await api.create(core_pods, "default", _pod("far", "", "remote", {"app": "web"}))
    stored = {
        p["metadata"]["name"]: p["metadata"]["uid"] for p in (await api.list(core_pods, "default")).items
    }
    sample = NodeUsage(
        Usage(T0, 5.0, 1_500_000_000, 2 * 1024**3),
        {stored["web"]: PodUsage(T0, 5.0, {"a": Usage(T0, 5.0, 100_000_000, 8192)})},
    )
    nodes.register("n1", FakeNode(sample))

    listed = await transport.list(POD_METRICS, "default")
    assert [m["metadata"]["name"] for m in listed.items] == ["web"]  # db not sampled; far on a remote node
    assert (await transport.list(POD_METRICS, None, label_selector="app=db")).items == []
    assert len((await transport.list(POD_METRICS, None, label_selector="app in (web,db)")).items) == 1
    by_field = await transport.list(POD_METRICS, "default", field_selector="metadata.name=web")
    assert len(by_field.items) == 1
    got = await transport.get(POD_METRICS, "default", "web")
    assert got["containers"] == [{"name": "a", "usage": {"cpu": "100000000n", "memory": "8Ki"}}]
    for name in ("db", "nope"):
        with pytest.raises(api_status.ApiError) as missing:
            await transport.get(POD_METRICS, "default", name)
        assert missing.value.code == 404
        assert missing.value.message == f'podmetrics.metrics.k8s.io "default/{name}" not found'

    node_list = await transport.list(NODE_METRICS, None)
    assert [(n["metadata"]["name"], n["usage"]) for n in node_list.items] == [
        ("n1", {"cpu": "1500000000n", "memory": "2097152Ki"})
    ]
    with pytest.raises(api_status.ApiError) as remote:
        await transport.get(NODE_METRICS, None, "remote")
    assert (
        remote.value.code == 404 and remote.value.message == 'nodemetrics.metrics.k8s.io "remote" not found'
    )

    before = store.revision
    with pytest.raises(api_status.ApiError) as created:
        await transport.create(POD_METRICS, "default", {**got, "metadata": {"name": "x"}})
    assert created.value.code == 405
    for write in (
        transport.delete(POD_METRICS, "default", "web"),
        transport.update(POD_METRICS, "default", "web", got),
        transport.patch(POD_METRICS, "default", "web", "application/merge-patch+json", {}),
    ):
        with pytest.raises(api_status.ApiError) as refused:
            await write
        assert refused.value.code == 405
    with pytest.raises(api_status.ApiError) as watched:
        async for _ in transport.watch(POD_METRICS, "default"):
            pass
    assert watched.value.code == 405
    assert store.revision == before  # nothing was written


# ------------------------------------------------------------------------------------------------ corral top


def _pm(ns: str, name: str, *containers: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "containers": [{"name": c, "usage": {"cpu": cpu, "memory": mem}} for c, cpu, mem in containers],
    }


def test_pod_rows_as_kubectl_top_prints_them() -> None:
    items = [
        _pm("a", "idle", ("main", "0", "1536Ki")),
        _pm("b", "busy", ("main", "998765432n", "3Mi"), ("side", "1500001n", "2097152")),
    ]
    assert pod_rows(items, with_namespace=False, containers=False) == [
        ["NAME", "CPU(cores)", "MEMORY(bytes)"],
        ["idle", "0m", "1Mi"],
        ["busy", "1001m", "5Mi"],  # millicores rounded up per container, MiB rounded down
    ]
    assert pod_rows(items, with_namespace=True, containers=True, sort_by="cpu") == [
        ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        ["b", "busy", "main", "999m", "3Mi"],
        ["b", "busy", "side", "2m", "2Mi"],
        ["a", "idle", "main", "0m", "1Mi"],
    ]
    with pytest.raises(Exception, match="cpu or memory"):
        pod_rows(items, with_namespace=False, containers=False, sort_by="name")


def test_node_rows_with_percentages_and_unknown_nodes() -> None:
    metrics = [{"metadata": {"name": "n1"}, "usage": {"cpu": "500000000n", "memory": "1048576Ki"}}]
    nodes = [
        {"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}},
        {"metadata": {"name": "n2"}, "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}}},
    ]
    assert node_rows(metrics, nodes) == [
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        ["n1", "500m", "25%", "1024Mi", "25%"],
        ["n2", "<unknown>", "<unknown>", "<unknown>", "<unknown>"],
    ]
