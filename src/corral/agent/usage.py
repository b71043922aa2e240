"""Resource usage of a node and of its running containers: what ``kubectl top`` and the metrics API report.

Boundary: this module measures; it neither schedules nor serves. The agent calls :meth:`UsageSampler.sample`
once per interval (``AgentConfig.metrics_interval``) and keeps the returned :class:`NodeUsage` in memory; the
API server asks the agent for it (``apiserver.metricsapi``). Nothing is stored.

What is measured, per running container instance (one pass over ``/proc`` per interval for all of them):

* **CPU** is a rate, as metrics-server reports it: two cumulative readings of CPU time and the time between
  them give nanocores over that window. The cumulative reading is the container's cgroup counter when it has
  one with CPU accounting (v2 ``cpu.stat`` ``usage_usec``, v1 ``cpuacct.usage``), otherwise the sum over its
  process group of ``utime+stime+cutime+cstime`` from ``/proc/<pid>/stat`` (a reaped child's time moves
  into its reaper's ``cutime``, so the sum stays continuous while the container's own processes reap their
  children). A counter that went down (a process reaped by someone outside the group took its time away) is
  a reset: that container gets no rate for that interval, never a negative one. A container's first reading
  after its start is measured against zero at its start time, so a new pod has numbers after one interval.
* **Memory** is the working set in bytes: with a memory cgroup ``usage - inactive_file`` (what the kubelet
  and metrics-server report), otherwise the sum of the resident set sizes of the group's processes (which
  counts pages shared between them more than once).
* The process-group wrapper of the process runtime is not counted (it sits outside the container's cgroup
  too). Members are the processes whose session and group are the container's and that started after it.
* **Node** totals: busy CPU time from the first line of ``/proc/stat`` (everything but idle and iowait) as a
  rate, and ``MemTotal - MemAvailable`` from ``/proc/meminfo`` as the memory in use.

Hand-written rather than psutil: the parsing is a few lines, the process runtime already reads ``/proc`` the
same way, and one scan of ``/proc`` grouped by process group serves every container at once (psutil would
walk each process tree separately). Pure parsing and rate math are separate functions; :class:`UsageSampler`
is the IO.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from corral.agent.cgroups import CgroupVersion, ContainerCgroup
from corral.agent.runtimes.base import ContainerId, RunningGroup
from corral.util.clock import Clock

NANOS = 1_000_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --------------------------------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class Usage:
    """One rate measurement: CPU in nanocores, memory (working set) in bytes, over ``window`` seconds that
    ended at ``timestamp``."""

    timestamp: datetime
    window: float
    cpu_nanocores: int
    memory_bytes: int


@dataclass(frozen=True, slots=True)
class PodUsage:
    """The containers of one pod that have a measurement (running and sampled at least once)."""

    timestamp: datetime
    window: float
    containers: Mapping[str, Usage]


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """The latest sample of a node: its own totals (None until two readings exist) and its pods by uid."""

    node: Usage | None
    pods: Mapping[str, PodUsage] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class ProcSample:
    """The fields of ``/proc/<pid>/stat`` usage sampling needs."""

    pid: int
    state: str
    pgid: int
    sid: int
    cpu_ticks: int
    """utime + stime + cutime + cstime, in clock ticks."""
    start_ticks: int
    rss_pages: int


def parse_proc_stat(pid: int, data: bytes) -> ProcSample | None:
    """Parse ``/proc/<pid>/stat``; the command name (field 2) may hold spaces and parentheses."""
    end = data.rfind(b")")
    if end < 0:
        return None
    rest = data[end + 2 :].split()
    try:
        # rest[0] is field 3 (state); utime is field 14 → rest[11]; rss is field 24 → rest[21].
        return ProcSample(
            pid=pid,
            state=rest[0].decode(),
            pgid=int(rest[2]),
            sid=int(rest[3]),
            cpu_ticks=int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14]),
            start_ticks=int(rest[19]),
            rss_pages=int(rest[21]),
        )
    except (IndexError, ValueError, UnicodeDecodeError):
        return None


def parse_cpu_line(text: str) -> tuple[int, int] | None:
    """``(busy_ticks, total_ticks)`` from the aggregate ``cpu`` line of ``/proc/stat``.

    Busy is everything but idle and iowait; guest time is already inside user time, so it is not added."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            try:
                values = [int(v) for v in parts[1:9]]
            except ValueError:
                return None
            values += [0] * (8 - len(values))
            user, nice, system, idle, iowait, irq, softirq, steal = values
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    return None


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes by field name (``MemTotal`` …)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if not parts:
            continue
        try:
            amount = int(parts[0])
        except ValueError:
            continue
        out[name.strip()] = amount * 1024 if len(parts) > 1 and parts[1] == "kB" else amount
    return out


def node_memory_bytes(meminfo: Mapping[str, int]) -> int | None:
    total = meminfo.get("MemTotal")
    available = meminfo.get("MemAvailable")
    if total is None:
        return None
    if available is None:  # kernels before 3.14
        available = meminfo.get("MemFree", 0) + meminfo.get("Buffers", 0) + meminfo.get("Cached", 0)
    return max(0, total - available)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (cgroup ``cpu.stat``, ``memory.stat``)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def working_set(usage_bytes: int, memory_stat: Mapping[str, int], version: CgroupVersion) -> int:
    """The kubelet's working set: usage minus inactive file cache (which the kernel reclaims first)."""
    key = "inactive_file" if version is CgroupVersion.V2 else "total_inactive_file"
    return max(0, usage_bytes - memory_stat.get(key, 0))


def group_members(table: Mapping[int, list[ProcSample]], group: RunningGroup) -> list[ProcSample]:
    """The container's processes: its session and group, started after its wrapper, wrapper excluded."""
    return [
        p
        for p in table.get(group.pgid, [])
        if p.sid == group.pgid and p.start_ticks >= group.min_start_ticks and p.pid != group.pgid
    ]


# --------------------------------------------------------------------------------------------- rates


@dataclass(frozen=True, slots=True)
class CpuReading:
    """A cumulative CPU time reading taken at ``at`` (monotonic seconds)."""

    at: float
    cpu_ns: int


def cpu_rate(prev: CpuReading | None, cur: CpuReading) -> tuple[int, float] | None:
    """``(nanocores, window_seconds)`` between two readings; None without a usable earlier reading.

    None, never a negative rate, when the counter went down (a reset) or no time passed."""
    if prev is None:
        return None
    window = cur.at - prev.at
    if window <= 0 or cur.cpu_ns < prev.cpu_ns:
        return None
    return round((cur.cpu_ns - prev.cpu_ns) / window), window


def ticks_to_ns(ticks: int, clk_tck: int = CLK_TCK) -> int:
    return ticks * NANOS // clk_tck


# --------------------------------------------------------------------------------------------- formatting


def format_cpu(nanocores: int) -> str:
    """metrics-server's CPU quantity: nanocores (``12345n``), ``0`` for none."""
    return f"{nanocores}n" if nanocores else "0"


def format_memory(amount: int) -> str:
    """metrics-server's memory quantity: ``Ki`` when whole kibibytes (it usually is), else bytes."""
    if amount and amount % 1024 == 0:
        return f"{amount // 1024}Ki"
    return str(amount)


def go_duration(seconds: float) -> str:
    """A ``metav1.Duration`` as Go prints it: ``5s``, ``1.5s``, ``1m0.25s``, ``1h2m3s`` (ms precision)."""
    millis = max(0, round(seconds * 1000))
    if millis == 0:
        return "0s"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    text = f"{secs}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


# --------------------------------------------------------------------------------------------- sampling


@dataclass(frozen=True, slots=True)
class ContainerReading:
    """Cumulative CPU and current memory of one instance, read now (pure input to :func:`assemble`)."""

    group: RunningGroup
    cpu_ns: int | None
    memory_bytes: int | None


def assemble(
    readings: Iterable[ContainerReading],
    previous: Mapping[ContainerId, CpuReading],
    at: float,
    now: datetime,
    started_ago: Mapping[ContainerId, float],
    first_window: tuple[float, float],
) -> tuple[dict[str, PodUsage], dict[ContainerId, CpuReading]]:
    """Turn this interval's readings into per-pod usage, given the previous interval's CPU readings.

    ``started_ago[cid]`` is how long ago the instance started; an instance without a previous reading that
    started between ``first_window`` = (shortest, longest) seconds ago is measured from zero at its start
    (its counters began there): a shorter window would be noise (CPU time moves in 10 ms ticks), a longer one
    an average over a past the caller did not see (an adopted container). Returns the pods and the CPU
    readings to keep for the next interval. Pure.
    """
    pods: dict[str, dict[str, Usage]] = {}
    windows: dict[str, float] = {}
    kept: dict[ContainerId, CpuReading] = {}
    for reading in readings:
        cid = reading.group.id
        if reading.cpu_ns is None:
            continue
        cur = CpuReading(at, reading.cpu_ns)
        kept[cid] = cur
        prev = previous.get(cid)
        if prev is None:
            age = started_ago.get(cid)
            if age is not None and first_window[0] <= age <= first_window[1]:
                prev = CpuReading(at - age, 0)
        rate = cpu_rate(prev, cur)
        if rate is None:
            continue
        nanocores, window = rate
        pods.setdefault(cid.pod_uid, {})[cid.name] = Usage(now, window, nanocores, reading.memory_bytes or 0)
        windows[cid.pod_uid] = max(windows.get(cid.pod_uid, 0.0), window)
    return {uid: PodUsage(now, windows[uid], containers) for uid, containers in pods.items()}, kept


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def cgroup_cpu_ns(cg: ContainerCgroup) -> int | None:
    """Cumulative CPU time of the cgroup, when it has CPU accounting."""
    if cg.version is CgroupVersion.V2:
        unified = cg.dirs.get("unified")
        text = _read_text(unified / "cpu.stat") if unified else None
        usec = parse_flat_keyed(text).get("usage_usec") if text else None
        return usec * 1000 if usec is not None else None
    cpu = cg.dirs.get("cpu")
    text = _read_text(cpu / "cpuacct.usage") if cpu else None  # only when cpu and cpuacct are co-mounted
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def cgroup_working_set(cg: ContainerCgroup) -> int | None:
    memdir = cg.dirs.get("unified") or cg.dirs.get("memory")
    usage = cg.memory_usage_bytes()
    if memdir is None or usage is None:
        return None
    stat = parse_flat_keyed(_read_text(memdir / "memory.stat") or "")
    return working_set(usage, stat, cg.version)


def scan_processes(proc: Path = Path("/proc")) -> dict[int, list[ProcSample]]:
    """Every live process by process group: one pass over ``proc``."""
    table: dict[int, list[ProcSample]] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(proc / name / "stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # exited meanwhile
        sample = parse_proc_stat(int(name), data)
        if sample is not None and sample.state not in ("Z", "X"):
            table.setdefault(sample.pgid, []).append(sample)
    return table


class UsageSampler:
    """Keeps the previous readings and turns each :meth:`sample` into a :class:`NodeUsage`.

    ``sample`` does blocking reads of ``/proc`` and cgroup files (a few ms for hundreds of processes), so
    the agent runs it in a worker thread; one sampler is used by one caller at a time.
    """

    def __init__(self, clock: Clock, interval: float, proc: Path = Path("/proc")) -> None:
        self.clock = clock
        self.interval = interval
        self.proc = proc
        self._containers: dict[ContainerId, CpuReading] = {}
        self._node: CpuReading | None = None

    def sample(self, groups: list[RunningGroup]) -> NodeUsage:
        at = self.clock.monotonic()
        now = self.clock.now()
        node = self._sample_node(at, now)
        # One scan serves every container (a cgroup alone may lack CPU accounting, e.g. cpuacct apart).
        table = scan_processes(self.proc) if groups else {}
        readings = [self._read_container(table, g) for g in groups]
        started_ago = {g.id: (now - g.started_at).total_seconds() for g in groups}
        pods, self._containers = assemble(
            readings, self._containers, at, now, started_ago, (self.interval / 2, 2 * self.interval)
        )
        return NodeUsage(node, pods)

    def _read_container(self, table: Mapping[int, list[ProcSample]], group: RunningGroup) -> ContainerReading:
        members = group_members(table, group)
        cpu_ns = cgroup_cpu_ns(group.cgroup) if group.cgroup is not None else None
        if cpu_ns is None:
            cpu_ns = ticks_to_ns(sum(p.cpu_ticks for p in members)) if members else None
        memory = cgroup_working_set(group.cgroup) if group.cgroup is not None else None
        if memory is None:
            memory = sum(p.rss_pages for p in members) * PAGE_SIZE
        return ContainerReading(group, cpu_ns, memory)

    def _sample_node(self, at: float, now: datetime) -> Usage | None:
        stat = _read_text(self.proc / "stat")
        meminfo = _read_text(self.proc / "meminfo")
        ticks = parse_cpu_line(stat) if stat else None
        memory = node_memory_bytes(parse_meminfo(meminfo)) if meminfo else None
        if ticks is None:
            return None
        cur = CpuReading(at, ticks_to_ns(ticks[0]))
        rate = cpu_rate(self._node, cur)
        self._node = cur
        if rate is None:
            return None
        return Usage(now, rate[1], rate[0], memory or 0)
