"""Corral as a process supervisor against supervisord, circus and pm2, side by side in one run.

Each manager gets the same job: run N long-running processes (``sleep 3600``, the same binary by absolute
path for all), then we SIGKILL 10 of them one at a time and time how soon each comes back. Measured per
manager and size (see bench/README.md for the details and docs/benchmarks.md for recorded results):

* all up      -- from the start request until N ``sleep`` processes exist below the manager (seen in /proc,
                 the same observer for every manager), and until the manager's own status reports N running
                 (Corral: the pod watch; supervisord: XML-RPC ``getAllProcessInfo``; circus: ``status`` over
                 its zmq endpoint; pm2: ``pm2.list()``; the peers are polled).
* restart     -- from ``kill -9`` of one process until its replacement ``sleep`` exists in /proc (p50 / p99);
                 for Corral also until the pod's watched status shows ``restartCount + 1`` and the new pid.
* RSS         -- the manager process's VmRSS once everything has settled (Corral: the server process, which
                 is API + store + scheduler + agent; its per-container ``sh`` wrappers are reported apart).
* idle CPU    -- the manager's CPU time (schedstat, all threads) over a quiet window after the restarts.

How the start is requested, for each from a client that is already running (no CLI start-up in the timing):
Corral: N ``POST .../pods`` (10 in flight) over HTTPS with the kubeconfig's token; supervisord: the N
programs are in its config with ``autostart=false`` and one XML-RPC ``supervisor.startAllProcesses`` (what
``supervisorctl start all`` sends); circus: N ``add`` commands (one watcher of one process each), then one
``start``; pm2: ``pm2.start(ecosystem.config.js)`` through pm2's node API (what ``pm2 start`` sends).

Detection in /proc: /proc/loadavg names the last pid the kernel handed out, so each poll reads only the pids
created since the previous one and keeps those whose parent chain leads to the manager; a process counts once
its command name is ``sleep`` (after exec). Polls run every 1 ms while a restart is awaited.

Peers are installed apart from the project (``--install-peers``): supervisor and circus in a venv under
bench/.peers/venv, pm2 with ``npm install --prefix bench/.peers/npm pm2``.

Corral above 110 pods: its node's pod capacity is a constant (110), so the server is started through a small
launcher that raises it in the server process (see CORRAL_SERVE_PATCHED); the output says so.

Safety: sockets are unix sockets or 127.0.0.1 only; every manager is a process this script starts (pm2's
daemon is started with its own PM2_HOME in a temp dir and stopped with ``pm2 kill`` there) and is stopped in a
``finally``; processes are only ever signalled by pid after checking they belong to a manager we started
(parent chain and start time); every wait has a deadline.

Run: ``.venv/bin/python bench/process_managers.py [--quick] [--install-peers]``.
"""

# Opening a local log file or reading a pid file inside a coroutine takes microseconds and happens outside
# the timed windows, so the blocking-IO-in-async rules are not useful here.
# ruff: noqa: ASYNC230, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import http.client
import importlib.metadata
import itertools
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
PEERS = HERE / ".peers"
PEER_VENV = PEERS / "venv"
PEER_PY = PEER_VENV / "bin" / "python"
SUPERVISORD = PEER_VENV / "bin" / "supervisord"
CIRCUSD = PEER_VENV / "bin" / "circusd"
PM2_DIR = PEERS / "npm" / "node_modules" / "pm2"
PM2_BIN = PEERS / "npm" / "node_modules" / ".bin" / "pm2"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
BUSY_MACHINE_CORES = 0.3  # other load during a phase above which the run is flagged as noisy
MANAGERS = ("corral", "supervisord", "circus", "pm2")
EXTRA_MANAGERS = ("corral-nocg",)  # diagnostic variants, only with --managers


@dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...]
    kills: int
    idle_seconds: float
    settle_seconds: float


FULL = Params(sizes=(100, 500), kills=10, idle_seconds=10.0, settle_seconds=3.0)
QUICK = Params(sizes=(20,), kills=10, idle_seconds=4.0, settle_seconds=1.0)

# ----------------------------------------------------------------------------------------------- /proc


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Stat:
    comm: str
    ppid: int
    start_ticks: int
    cpu_ticks: int
    child_ticks: int  # reaped children's CPU (cutime + cstime)
    rss_pages: int


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    open_paren, close_paren = data.find(b"("), data.rfind(b")")
    rest = data[close_paren + 2:].split()
    try:
        return Stat(comm=data[open_paren + 1:close_paren].decode(errors="replace"), ppid=int(rest[1]),
                    start_ticks=int(rest[19]), cpu_ticks=int(rest[11]) + int(rest[12]),
                    child_ticks=int(rest[13]) + int(rest[14]), rss_pages=int(rest[21]))
    except (IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float:
    stat = read_stat(pid)
    return math.nan if stat is None else stat.cpu_ticks / CLK_TCK


def run_seconds(pid: int) -> float:
    """Time on CPU of all threads of a process, from /proc/<pid>/task/*/schedstat (nanoseconds, so a
    mostly idle process is measured well beyond the 10 ms tick of /proc/<pid>/stat)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return math.nan
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rollup_kb(pid: int) -> dict[str, int]:
    """Rss and Pss of a process from /proc/<pid>/smaps_rollup, in kB."""
    out = {"Rss": 0, "Pss": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def children_of(pid: int) -> list[int]:
    """Direct children of a process (every thread's ``children`` file)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                out += [int(x) for x in handle.read().split()]
        except OSError:
            pass
    return out


def last_pid() -> int:
    with open("/proc/loadavg") as handle:
        return int(handle.read().split()[4])


def pid_max() -> int:
    with open("/proc/sys/kernel/pid_max") as handle:
        return int(handle.read())


def machine_busy_seconds() -> float:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / CLK_TCK


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ProcTracker:
    """Finds the ``sleep`` processes below one manager, as they appear, by reading only new pids.

    ``/proc/loadavg`` names the last pid allocated; each poll reads ``/proc/<pid>/stat`` of the pids handed
    out since the previous poll (in allocation order, so a parent is seen before its children) and keeps those
    whose parent is already in the manager's tree. A member that is not ``sleep`` yet (forked, not exec'd) is
    re-read on later polls until it is, until it forks a child of its own (a wrapper) or for 5 s at most.
    """

    def __init__(self, root: int, comm: str = "sleep") -> None:
        self.root = root
        self.comm = comm
        root_stat = read_stat(root)
        self.tree: dict[int, int] = {root: root_stat.start_ticks if root_stat else 0}  # pid -> start ticks
        self.sleeps: dict[int, tuple[float, int]] = {}  # pid -> (first seen as sleep, start ticks)
        self.pending: dict[int, float] = {}
        self.missing: dict[int, float] = {}  # allocated pids not visible yet (mid-fork) or already gone
        self.scanned = last_pid()
        self.pid_max = pid_max()
        self.polls = 0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[float]]] = []
        self._task: asyncio.Task[None] | None = None
        self.interval = 0.005

    def _candidates(self, now: float) -> list[int]:
        last = last_pid()
        pids: list[int] = [p for p, t in self.missing.items() if now - t < 0.2]
        self.missing = {p: self.missing[p] for p in pids}
        if last != self.scanned:
            if last > self.scanned:
                pids += range(self.scanned + 1, last + 1)
            else:  # wrapped around pid_max
                pids += itertools.chain(range(self.scanned + 1, self.pid_max), range(1, last + 1))
            self.scanned = last
        return pids

    def poll(self) -> bool:
        now = time.perf_counter()
        self.polls += 1
        changed = False
        for pid in self._candidates(now):
            stat = read_stat(pid)
            if stat is None:
                self.missing.setdefault(pid, now)
                continue
            self.missing.pop(pid, None)
            if stat.ppid not in self.tree or pid in self.tree:
                continue
            self.tree[pid] = stat.start_ticks
            self.pending.pop(stat.ppid, None)  # it forked a child: a wrapper, not a future sleep
            if stat.comm == self.comm:
                self.sleeps[pid] = (now, stat.start_ticks)
                changed = True
            else:
                self.pending[pid] = now
        for pid, since in list(self.pending.items()):
            stat = read_stat(pid)
            if stat is None or now - since > 5.0:
                del self.pending[pid]
            elif stat.comm == self.comm:
                del self.pending[pid]
                self.sleeps[pid] = (now, stat.start_ticks)
                changed = True
        if changed:
            for pred, fut in list(self._waiters):
                if not fut.done() and pred():
                    fut.set_result(now)
            self._waiters = [(p, f) for p, f in self._waiters if not f.done()]
        return changed

    async def _run(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, pred: Callable[[], bool], limit_s: float) -> float:
        """perf_counter time of the poll that first saw ``pred`` true (now, if it already is)."""
        if pred():
            return time.perf_counter()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, limit_s)

    def tree_cpu_seconds(self) -> float:
        """CPU of the manager and everything below it: live members (same start time) and what they reaped."""
        ticks = 0
        for pid, start in list(self.tree.items()):
            stat = read_stat(pid)
            if stat is not None and stat.start_ticks == start:
                ticks += stat.cpu_ticks + stat.child_ticks
        return ticks / CLK_TCK

    def alive_sleeps(self) -> list[int]:
        """Tracked sleeps that are still the same process (pid and start time)."""
        out = []
        for pid, (_, ticks) in self.sleeps.items():
            stat = read_stat(pid)
            if stat is not None and stat.start_ticks == ticks and stat.comm == self.comm:
                out.append(pid)
        return out

    def kill(self, pid: int) -> None:
        """SIGKILL one tracked sleep after checking it is still the process we saw (no pid reuse)."""
        _, ticks = self.sleeps[pid]
        stat = read_stat(pid)
        if stat is None or stat.start_ticks != ticks or stat.comm != self.comm:
            raise RuntimeError(f"pid {pid} is no longer the sleep we tracked")
        os.kill(pid, signal.SIGKILL)
        del self.sleeps[pid]

    def kill_leftovers(self) -> int:
        """After a manager stopped: SIGKILL sleeps of ours that outlived it (should be none)."""
        left = self.alive_sleeps()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(left)


# ----------------------------------------------------------------------------------------------- results


@dataclass
class RunResult:
    manager: str
    n: int
    version: str = ""
    manager_up_s: float = math.nan
    all_up_s: float = math.nan  # /proc: N sleeps exist
    all_reported_s: float = math.nan  # the manager's status says N running
    report_poll: str = ""
    restart_ms: list[float] = field(default_factory=list)  # /proc
    restart_reported_ms: list[float] = field(default_factory=list)  # Corral's watch only
    rss_kb: int = 0
    hwm_kb: int = 0
    pss_kb: int = 0
    wrappers: int = 0
    wrappers_rss_kb: int = 0
    wrappers_pss_kb: int = 0
    sleeps_rss_kb: int = 0
    idle_cpu_pct: float = math.nan
    idle_tree_cpu_pct: float = math.nan
    start_cpu_s: float = math.nan  # manager CPU while starting N
    other_load_cores: dict[str, float] = field(default_factory=dict)
    note: str = ""
    leftovers: int = 0
    stop_s: float = math.nan
    errors: list[str] = field(default_factory=list)

    def p(self, values: list[float], q: float) -> float:
        return percentile(sorted(values), q)


# ----------------------------------------------------------------------------------------------- managers


class Manager:
    name = ""
    pushes_status = False
    tick_s = 1.0
    """The manager's own housekeeping period where restarts wait for it (supervisord: its 1 s poll timeout;
    circus: check_delay, 5 s by default). The pause between kills is drawn from [0.25, 0.25 + tick_s] so a
    kill lands at a uniformly random phase of that period instead of always the same one."""

    def __init__(self, workdir: Path, n: int, sleep_path: str) -> None:
        self.workdir = workdir / f"{self.name}-{n}"
        self.workdir.mkdir(parents=True)
        self.n = n
        self.sleep = sleep_path
        self.pid = 0
        self.report_poll = ""
        self.note = ""

    async def launch(self) -> None:
        """Start the manager with nothing running yet; set ``self.pid``."""
        raise NotImplementedError

    async def start_all(self) -> None:
        """Ask for the N processes (returns when the request was answered)."""
        raise NotImplementedError

    async def wait_reported(self, limit_s: float) -> float:
        """perf_counter time at which the manager's status first showed N running."""
        raise NotImplementedError

    async def end_reporting(self) -> None:
        """Close status polling helpers so they do not disturb the restarts or the idle measurement."""

    async def quiesce(self) -> None:
        """Close whatever the harness still has open to the manager before the idle window."""

    def version(self) -> str:
        return ""

    def wrapper_pids(self) -> list[int]:
        return []

    def helper_pids(self) -> list[int]:
        """This script's helper processes talking to the manager (counted as ours, not as other load)."""
        helper = getattr(self, "helper", None)
        return [helper.proc.pid] if helper is not None and helper.proc.returncode is None else []

    async def stop(self) -> None:
        raise NotImplementedError


def _wait_pid_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = read_stat(pid)
        if stat is None or stat.comm == "" or _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return data[data.rfind(b")") + 2:].split()[0] in (b"Z", b"X")
    except OSError:
        return True


async def stop_child(proc: asyncio.subprocess.Process | None, what: str, limit_s: float = 90.0) -> float:
    """SIGTERM one child we started, by pid; SIGKILL after ``timeout``. Returns seconds taken."""
    if proc is None or proc.returncode is not None:
        return 0.0
    t0 = time.perf_counter()
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), limit_s)
    except TimeoutError:
        print(f"  {what} (pid {proc.pid}) did not stop in {limit_s:.0f} s; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
    return time.perf_counter() - t0


# ---- Corral


# Corral's node advertises 110 pods by default (kubelet's --max-pods); for N > 110 the benchmark passes
# --max-pods (corral up has the same flag). The diagnostic variant ``corral-nocg`` starts the server with
# cgroups switched off in the server process (the runtime then behaves as it does for a non-root user).
CORRAL_SERVE_NO_CGROUPS = """\
from corral.agent.runtimes.process import ProcessRuntime
_open = ProcessRuntime.open.__func__
async def _open_without_cgroups(cls, state_dir, **kw):
    kw["cgroups"] = False
    return await _open(cls, state_dir, **kw)
ProcessRuntime.open = classmethod(_open_without_cgroups)
from corral.testing.serve import main
main()
"""


class CorralManager(Manager):
    name = "corral"
    NS = "default"
    CONCURRENCY = 10
    DEFAULT_MAX_PODS = 110
    no_cgroups = False
    pushes_status = True

    def __init__(self, workdir: Path, n: int, sleep_path: str) -> None:
        super().__init__(workdir, n, sleep_path)
        self.proc: asyncio.subprocess.Process | None = None
        self.session: Any = None
        self.watch_session: Any = None
        self.watch_task: asyncio.Task[None] | None = None
        self.pods: dict[str, dict[str, Any]] = {}  # name -> {running, pid, restarts}
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[float]]] = []
        self.report_poll = "watch (push)"

    def version(self) -> str:
        try:
            return importlib.metadata.version("corral")
        except importlib.metadata.PackageNotFoundError:
            return "source"

    async def launch(self) -> None:
        import aiohttp
        import yaml

        data_dir = self.workdir / "data"
        self.stderr = open(self.workdir / "server.log", "wb")  # noqa: SIM115 -- closed in stop()
        serve = ["-m", "corral.testing.serve"]
        notes = []
        capacity = self.DEFAULT_MAX_PODS
        if self.n > self.DEFAULT_MAX_PODS:
            capacity = self.n + 10
            notes.append(f"--max-pods {capacity}")
        if self.no_cgroups:
            notes.append("cgroups switched off in the server process (diagnostic variant)")
            serve = ["-c", CORRAL_SERVE_NO_CGROUPS]
        if notes:
            self.note = "; ".join(notes)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, *serve, "--data-dir", str(data_dir), "--port", "0", "--max-pods", str(capacity),
            stdout=subprocess.PIPE, stderr=self.stderr, start_new_session=True)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"corral server did not start: {line!r}; see {self.workdir / 'server.log'}")
        _, self.url, kubeconfig = line.split()
        doc = yaml.safe_load(Path(kubeconfig).read_text())
        ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        token = doc["users"][0]["user"]["token"]
        ctx = ssl.create_default_context(cadata=ca)
        headers = {"Authorization": f"Bearer {token}"}
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=ctx), headers=headers,
            timeout=aiohttp.ClientTimeout(total=120))
        self.watch_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=ctx), headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30))
        await self._start_watch()

    def _coll(self) -> str:
        return f"{self.url}/api/v1/namespaces/{self.NS}/pods"

    def _observe(self, pod: dict[str, Any], event_type: str) -> None:
        name = pod["metadata"]["name"]
        if event_type == "DELETED":
            self.pods.pop(name, None)
        else:
            status = pod.get("status") or {}
            cs = (status.get("containerStatuses") or [{}])[0]
            running = status.get("phase") == "Running" and "running" in (cs.get("state") or {})
            cid = cs.get("containerID") or ""
            pid = int(cid.removeprefix("process://")) if cid.startswith("process://") else 0
            self.pods[name] = {"running": running, "pid": pid, "restarts": int(cs.get("restartCount") or 0)}
        now = time.perf_counter()
        for pred, fut in list(self._waiters):
            if not fut.done() and pred():
                fut.set_result(now)
        self._waiters = [(p, f) for p, f in self._waiters if not f.done()]

    async def _start_watch(self) -> None:
        import orjson

        async with self.session.get(self._coll()) as resp:
            body = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"list pods: HTTP {resp.status} {body}")
        self.rv = body["metadata"]["resourceVersion"]
        for pod in body["items"]:
            self._observe(pod, "ADDED")

        async def connect() -> Any:
            resp = await self.watch_session.get(self._coll(), params={
                "watch": "true", "resourceVersion": self.rv, "allowWatchBookmarks": "true"})
            if resp.status != 200:
                raise RuntimeError(f"watch pods: HTTP {resp.status} {await resp.text()}")
            return resp

        first = await connect()

        async def read() -> None:
            resp = first
            for _attempt in range(100):  # the server may end a watch after its timeout; resume from the rv
                try:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = orjson.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        self.rv = obj["metadata"].get("resourceVersion", self.rv)
                        if event["type"] != "BOOKMARK":
                            self._observe(obj, event["type"])
                finally:
                    resp.close()
                resp = await connect()

        self.watch_task = asyncio.get_running_loop().create_task(read())

    async def wait_pods(self, pred: Callable[[], bool], limit_s: float) -> float:
        if pred():
            return time.perf_counter()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, limit_s)

    def pod_body(self, i: int) -> bytes:
        import orjson

        return orjson.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"sleep-{i:03d}", "labels": {"app": "bench"}},
            "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "sleep", "image": "busybox", "command": [self.sleep, "3600"]}]},
        })

    async def start_all(self) -> None:
        sem = asyncio.Semaphore(self.CONCURRENCY)

        async def create(i: int) -> None:
            async with sem, self.session.post(self._coll(), data=self.pod_body(i),
                                              headers={"Content-Type": "application/json"}) as resp:
                raw = await resp.read()
                if resp.status != 201:
                    raise RuntimeError(f"create pod: HTTP {resp.status} {raw[:300]!r}")

        await asyncio.gather(*(create(i) for i in range(self.n)))

    def running_count(self) -> int:
        return sum(1 for p in self.pods.values() if p["running"])

    async def wait_reported(self, limit_s: float) -> float:
        return await self.wait_pods(lambda: self.running_count() >= self.n, limit_s)

    def wrapper_pids(self) -> list[int]:
        return [c for c in children_of(self.pid) if (s := read_stat(c)) is not None and s.comm != "sleep"]

    async def quiesce(self) -> None:
        """Close the pod watch before the idle window (the peers' status helpers are closed too)."""
        if self.watch_task is not None:
            self.watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.watch_task
            self.watch_task = None

    async def stop(self) -> None:
        if self.watch_task is not None:
            self.watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.watch_task
        for session in (self.session, self.watch_session):
            if session is not None:
                await session.close()
        await stop_child(self.proc, "corral server")
        if hasattr(self, "stderr"):
            self.stderr.close()


class CorralNoCgroupsManager(CorralManager):
    """Diagnosis: Corral with its process runtime's cgroups switched off (not run unless asked for)."""

    name = "corral-nocg"
    no_cgroups = True


# ---- supervisord


class UnixStreamTransport(xmlrpc.client.Transport):
    """XML-RPC over supervisord's unix socket (what supervisorctl does)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        path = self.path

        class Conn(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)

        return Conn("localhost")


class SupervisordManager(Manager):
    name = "supervisord"

    def __init__(self, workdir: Path, n: int, sleep_path: str) -> None:
        super().__init__(workdir, n, sleep_path)
        self.proc: asyncio.subprocess.Process | None = None
        self.sock = str(self.workdir / "supervisor.sock")
        self.report_poll = "XML-RPC getAllProcessInfo, polled"

    def version(self) -> str:
        out = subprocess.run([str(PEER_PY), "-c", "import supervisor.options as o; print(o.VERSION)"],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip()

    def rpc(self) -> Any:
        return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=UnixStreamTransport(self.sock))

    async def launch(self) -> None:
        w = self.workdir
        (w / "logs").mkdir()
        lines = [
            "[unix_http_server]", f"file={self.sock}", "",
            "[supervisord]", f"logfile={w / 'supervisord.log'}", f"pidfile={w / 'supervisord.pid'}",
            f"childlogdir={w / 'logs'}", "nodaemon=true", "minfds=1024", "minprocs=200", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{self.sock}", "",
        ]
        for i in range(self.n):
            lines += [f"[program:sleep-{i:03d}]", f"command={self.sleep} 3600", "autostart=false",
                      "autorestart=true", "startsecs=0",
                      f"stdout_logfile={w / 'logs' / f'sleep-{i:03d}.log'}",
                      "redirect_stderr=true", ""]
        conf = w / "supervisord.conf"
        conf.write_text("\n".join(lines))
        self.out = open(w / "stdout.log", "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = await asyncio.create_subprocess_exec(
            str(SUPERVISORD), "-n", "-c", str(conf), stdout=self.out, stderr=self.out,
            start_new_session=True, cwd=w)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 60
        while True:
            try:
                state = await asyncio.to_thread(lambda: self.rpc().supervisor.getState())
                if state["statename"] == "RUNNING":
                    return
            except (OSError, xmlrpc.client.Error):
                pass
            if time.monotonic() > deadline or self.proc.returncode is not None:
                raise RuntimeError(f"supervisord did not start; see {w}")
            await asyncio.sleep(0.02)

    async def start_all(self) -> None:
        # wait=False: the call returns once every process has been spawned, without waiting for RUNNING
        await asyncio.to_thread(lambda: self.rpc().supervisor.startAllProcesses(False))

    async def wait_reported(self, limit_s: float) -> float:
        deadline = time.monotonic() + limit_s
        interval = 0.05
        self.report_poll = "XML-RPC getAllProcessInfo, polled every >= 50 ms"
        proxy = self.rpc()
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            infos = await asyncio.to_thread(proxy.supervisor.getAllProcessInfo)
            t1 = time.perf_counter()
            if sum(1 for i in infos if i["statename"] == "RUNNING") >= self.n:
                return t1
            await asyncio.sleep(max(interval, 2 * (t1 - t0)))
        raise TimeoutError("supervisord: not all RUNNING")

    async def stop(self) -> None:
        await stop_child(self.proc, "supervisord")
        if hasattr(self, "out"):
            self.out.close()


# ---- circus

CIRCUS_HELPER = r'''
import json, sys, time
from circus.client import CircusClient
endpoint, sleep, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = CircusClient(endpoint=endpoint, timeout=60)
def call(command, **props):
    reply = client.call({"command": command, "properties": props})
    if reply.get("status") != "ok":
        raise SystemExit(f"circus {command}: {reply}")
    return reply
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "ping":
        call("list"); print("@@ok", flush=True)
    elif cmd[0] == "add":
        # add every watcher, then one "start" (starts all watchers; answered once they are started).
        # Adding with start=True one after another is refused while the previous start runs.
        for i in range(n):
            call("add", name=f"sleep-{i:03d}", cmd=sleep, args=["3600"], start=False)
        call("start")
        print("@@added", flush=True)
    elif cmd[0] == "poll":
        interval = float(cmd[1])
        while True:
            t0 = time.monotonic()
            statuses = call("status")["statuses"]
            t1 = time.monotonic()
            if sum(1 for k, v in statuses.items() if k.startswith("sleep-") and v == "active") >= n:
                print("@@all", flush=True)
                break
            time.sleep(max(interval, 2 * (t1 - t0)))
    elif cmd[0] == "quit":
        client.stop()
        break
'''


class Helper:
    """A line-protocol helper process (circus: the peers' venv python; pm2: node). It answers '@@word'
    lines; one reader task timestamps them as they arrive, so several questions can be pending at once."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.waiting: dict[str, list[asyncio.Future[float]]] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                text = line.decode().strip()
                if not text.startswith("@@"):
                    continue
                futs = self.waiting.get(text[2:]) or []
                if futs:
                    fut = futs.pop(0)
                    if not fut.done():
                        fut.set_result(time.perf_counter())
        finally:
            for futs in self.waiting.values():
                for fut in futs:
                    if not fut.done():
                        fut.set_exception(RuntimeError("helper exited; see its log"))

    async def send(self, line: str, expect: str) -> asyncio.Future[float]:
        """Send one line; the future gets the arrival time of the answer '@@expect'."""
        assert self.proc.stdin is not None
        if self.reader.done():
            raise RuntimeError("helper exited; see its log")
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(expect, []).append(fut)
        self.proc.stdin.write((line + "\n").encode())
        await self.proc.stdin.drain()
        return fut

    async def ask(self, line: str, expect: str, limit_s: float) -> float:
        return await asyncio.wait_for(await self.send(line, expect), limit_s)

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"quit\n")
                await self.proc.stdin.drain()
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


class CircusManager(Manager):
    name = "circus"
    tick_s = 5.0

    def __init__(self, workdir: Path, n: int, sleep_path: str) -> None:
        super().__init__(workdir, n, sleep_path)
        self.proc: asyncio.subprocess.Process | None = None
        self.helper: Helper | None = None
        self.endpoint = f"ipc://{self.workdir / 'endpoint'}"
        self.add_sent = asyncio.Event()
        self.report_poll = "zmq status, polled every >= 50 ms"

    def version(self) -> str:
        out = subprocess.run([str(PEER_PY), "-c", "import circus; print(circus.__version__)"],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip()

    async def launch(self) -> None:
        w = self.workdir
        conf = w / "circus.ini"
        conf.write_text("\n".join([
            "[circus]", f"endpoint = {self.endpoint}", f"pubsub_endpoint = ipc://{w / 'pubsub'}",
            "statsd = false", "httpd = false", "stream_backend = thread",
            f"check_delay = {self.tick_s:g}", "",  # circus's default, written out: it paces restarts
        ]))
        self.out = open(w / "circusd.log", "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = await asyncio.create_subprocess_exec(
            str(CIRCUSD), str(conf), stdout=self.out, stderr=self.out, start_new_session=True, cwd=w)
        self.pid = self.proc.pid
        script = w / "circus_helper.py"
        script.write_text(CIRCUS_HELPER)
        hproc = await asyncio.create_subprocess_exec(
            str(PEER_PY), str(script), self.endpoint, self.sleep, str(self.n),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.out, cwd=w)
        self.helper = Helper(hproc)
        deadline = time.monotonic() + 60
        while True:  # circusd binds its endpoint a moment after starting
            try:
                await self.helper.ask("ping", "ok", 5)
                return
            except (TimeoutError, RuntimeError):
                if time.monotonic() > deadline or self.proc.returncode is not None:
                    raise RuntimeError(f"circusd did not start; see {w}") from None

    async def start_all(self) -> None:
        assert self.helper is not None
        added = await self.helper.send("add", "added")
        self.add_sent.set()  # the helper reads lines in order: a poll sent now runs after the adds
        await added

    async def wait_reported(self, limit_s: float) -> float:
        assert self.helper is not None
        await asyncio.wait_for(self.add_sent.wait(), limit_s)
        return await self.helper.ask("poll 0.05", "all", limit_s)

    async def end_reporting(self) -> None:
        if self.helper is not None:
            await self.helper.close()
            self.helper = None

    async def stop(self) -> None:
        await self.end_reporting()
        await stop_child(self.proc, "circusd")
        if hasattr(self, "out"):
            self.out.close()


# ---- pm2

PM2_HELPER = r'''
const pm2 = require(process.argv[2]);
const ecosystem = process.argv[3], n = Number(process.argv[4]);
const readline = require('readline');
const say = (w) => process.stdout.write('@@' + w + '\n');
pm2.connect((err) => {
  if (err) { console.error(err); process.exit(1); }
  const rl = readline.createInterface({input: process.stdin});
  rl.on('line', (line) => {
    const cmd = line.trim().split(/\s+/);
    if (cmd[0] === 'ping') {
      pm2.list((e) => { if (e) { console.error(e); process.exit(1); } say('ok'); });
    } else if (cmd[0] === 'start') {
      pm2.start(ecosystem, (e) => { if (e) { console.error(e); process.exit(1); } say('started'); });
    } else if (cmd[0] === 'poll') {
      const interval = Number(cmd[1]) * 1000;
      const once = () => {
        const t0 = Date.now();
        pm2.list((e, list) => {
          if (e) { console.error(e); process.exit(1); }
          const online = list.filter(
            (p) => p.name.startsWith('sleep-') && p.pm2_env.status === 'online').length;
          if (online >= n) { say('all'); return; }
          setTimeout(once, Math.max(interval, 2 * (Date.now() - t0)));
        });
      };
      once();
    } else if (cmd[0] === 'quit') {
      pm2.disconnect(); rl.close();
    }
  });
});
'''


class Pm2Manager(Manager):
    name = "pm2"

    def __init__(self, workdir: Path, n: int, sleep_path: str) -> None:
        super().__init__(workdir, n, sleep_path)
        self.home = self.workdir / "pm2home"
        self.helper: Helper | None = None
        self.report_poll = "pm2.list(), polled every >= 50 ms"
        self.env = {**os.environ, "PM2_HOME": str(self.home), "PM2_DISABLE_VERSION_CHECK": "true"}

    def version(self) -> str:
        try:
            return str(json.loads((PM2_DIR / "package.json").read_text())["version"])
        except (OSError, ValueError, KeyError):
            return ""

    async def _pm2(self, *args: str, limit_s: float = 120) -> None:
        # Output to a file, not a pipe: the daemon the CLI spawns inherits it and would hold a pipe open.
        with open(self.workdir / "pm2-cli.log", "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                str(PM2_BIN), *args, env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                cwd=self.workdir)
            try:
                await asyncio.wait_for(proc.wait(), limit_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise

    async def launch(self) -> None:
        w = self.workdir
        apps = [{"name": f"sleep-{i:03d}", "script": self.sleep, "args": "3600", "interpreter": "none",
                 "exec_mode": "fork", "autorestart": True} for i in range(self.n)]
        self.ecosystem = w / "ecosystem.config.js"
        self.ecosystem.write_text("module.exports = " + json.dumps({"apps": apps}, indent=1) + ";\n")
        self.home.mkdir()
        await self._pm2("ping")  # starts the daemon (it detaches; we find it by its pid file)
        self.pid = int((self.home / "pm2.pid").read_text().strip())
        script = w / "pm2_helper.js"
        script.write_text(PM2_HELPER)
        self.herr = open(w / "helper.log", "wb")  # noqa: SIM115 -- closed in stop()
        hproc = await asyncio.create_subprocess_exec(
            "node", str(script), str(PM2_DIR), str(self.ecosystem), str(self.n), env=self.env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.herr, cwd=w)
        self.helper = Helper(hproc)
        await self.helper.ask("ping", "ok", 60)

    async def start_all(self) -> None:
        assert self.helper is not None
        await self.helper.ask("start", "started", 300)

    async def wait_reported(self, limit_s: float) -> float:
        assert self.helper is not None
        return await self.helper.ask("poll 0.05", "all", limit_s)

    async def end_reporting(self) -> None:
        if self.helper is not None:
            await self.helper.close()
            self.helper = None

    async def stop(self) -> None:
        await self.end_reporting()
        pid_file = self.home / "pm2.pid"
        if not self.pid and pid_file.exists():  # launch failed after the daemon started
            with contextlib.suppress(ValueError, OSError):
                self.pid = int(pid_file.read_text().strip())
        if self.pid or pid_file.exists():
            with contextlib.suppress(Exception):
                await self._pm2("kill", limit_s=120)
        if self.pid and not await asyncio.to_thread(_wait_pid_exit, self.pid, 30):
            # Only the daemon we started: its pid came from our PM2_HOME's pid file.
            with contextlib.suppress(OSError):
                if str(self.home).encode() in Path(f"/proc/{self.pid}/cmdline").read_bytes():
                    os.kill(self.pid, signal.SIGKILL)
        if hasattr(self, "herr"):
            self.herr.close()


MANAGER_CLASSES: dict[str, type[Manager]] = {
    "corral": CorralManager, "corral-nocg": CorralNoCgroupsManager, "supervisord": SupervisordManager,
    "circus": CircusManager, "pm2": Pm2Manager}

# ----------------------------------------------------------------------------------------------- one run


class Phase:
    """CPU over one phase: the manager process itself, and everything else on the machine ("other load":
    machine busy time minus this script, its helper processes, the manager and all processes below it)."""

    def __init__(self, mgr: Manager, tracker: ProcTracker) -> None:
        self.mgr, self.tracker = mgr, tracker
        self.t0 = time.perf_counter()
        self.m0, self.c0, self.o0 = machine_busy_seconds(), cpu_seconds(mgr.pid), self.ours()

    def ours(self) -> float:
        helpers = sum(c for p in self.mgr.helper_pids() if not math.isnan(c := cpu_seconds(p)))
        return self_cpu_seconds() + helpers + self.tracker.tree_cpu_seconds()

    def end(self) -> tuple[float, float, float]:
        """(seconds, manager CPU seconds, other load in cores)."""
        dt = time.perf_counter() - self.t0
        manager = cpu_seconds(self.mgr.pid) - self.c0
        other = (machine_busy_seconds() - self.m0) - (self.ours() - self.o0)
        return dt, manager, max(0.0, other / dt) if dt > 0 else math.nan


async def run_one(kind: str, n: int, params: Params, workdir: Path, sleep_path: str, seed: int,
                  log: Callable[[str], None], py_spy_dir: Path | None) -> RunResult:
    mgr = MANAGER_CLASSES[kind](workdir, n, sleep_path)
    res = RunResult(manager=kind, n=n, version=mgr.version())
    tracker: ProcTracker | None = None
    spy: asyncio.subprocess.Process | None = None
    try:
        t0 = time.perf_counter()
        await mgr.launch()
        res.manager_up_s = time.perf_counter() - t0
        res.note = mgr.note
        if mgr.note:
            log(f"  NOTE {kind} N={n}: {mgr.note}")
        if py_spy_dir is not None and kind.startswith("corral"):
            spy = await start_py_spy(mgr.pid, py_spy_dir / f"{kind}-{n}.txt")
        tracker = ProcTracker(mgr.pid)
        tracker.start()

        # --- start N
        phase = Phase(mgr, tracker)
        t_start = time.perf_counter()
        limit = 30 + 0.3 * n  # seconds; every manager here needs well under a tenth of that
        # Corral's watch is passive and runs from the start; the peers' status is polled only once the start
        # request has been answered (a poll sent earlier queues behind it in a single-threaded manager and
        # then slows the manager down).
        loop = asyncio.get_running_loop()
        reported = loop.create_task(mgr.wait_reported(limit)) if mgr.pushes_status else None
        try:
            await asyncio.wait_for(mgr.start_all(), limit)
            if reported is None:
                reported = loop.create_task(mgr.wait_reported(limit))
            t_all_up = await tracker.wait_for(lambda: len(tracker.sleeps) >= n, limit)
        except TimeoutError:
            if reported is not None:
                reported.cancel()
            up = len(tracker.sleeps)
            raise TimeoutError(f"only {up} of {n} processes up after {limit:.0f} s") from None
        t_reported = await reported
        res.all_up_s = t_all_up - t_start
        res.all_reported_s = t_reported - t_start
        res.report_poll = mgr.report_poll
        _, res.start_cpu_s, res.other_load_cores["start"] = phase.end()
        log(f"  {kind:<11} N={n:<4} all up {res.all_up_s:7.3f} s (reported {res.all_reported_s:7.3f} s), "
            f"manager CPU {res.start_cpu_s:.2f} s, other load {res.other_load_cores['start']:.2f} cores")
        await mgr.end_reporting()
        await asyncio.sleep(params.settle_seconds)

        # --- kill 10, one at a time; every victim is a different process (Corral: a first restart)
        tracker.interval = 0.001
        phase = Phase(mgr, tracker)
        rng = random.Random(seed)
        victims_done: set[int] = set()
        for k in range(params.kills):
            if isinstance(mgr, CorralManager):  # and its variant
                candidates = sorted(name for name, p in mgr.pods.items()
                                    if p["running"] and p["restarts"] == 0 and p["pid"] in tracker.sleeps)
                name = rng.choice(candidates)
                old = dict(mgr.pods[name])
                victim = old["pid"]
            else:
                victim = rng.choice(sorted(p for p in tracker.sleeps if p not in victims_done))
            before = set(tracker.sleeps)
            t_kill = time.perf_counter()
            tracker.kill(victim)
            victims_done.add(victim)
            t_back = await tracker.wait_for(
                lambda before=before: any(p not in before for p in tracker.sleeps), 120)
            res.restart_ms.append((t_back - t_kill) * 1000)
            extra = ""
            if isinstance(mgr, CorralManager):
                def restarted(name: str = name, old: dict[str, Any] = old, victim: int = victim) -> bool:
                    p = mgr.pods.get(name)
                    return (p is not None and p["running"] and p["restarts"] >= old["restarts"] + 1
                            and p["pid"] not in (0, victim))

                t_api = await mgr.wait_pods(restarted, 120)
                res.restart_reported_ms.append((t_api - t_kill) * 1000)
                extra = f", pod status shows it after {res.restart_reported_ms[-1]:7.1f} ms"
            log(f"    kill {k + 1:>2}: pid {victim:<7} back in {res.restart_ms[-1]:7.1f} ms{extra}")
            await asyncio.sleep(rng.uniform(0.25, 0.25 + mgr.tick_s))
        _, _, res.other_load_cores["restarts"] = phase.end()
        tracker.interval = 0.05

        # --- settle, then idle CPU and memory
        await mgr.quiesce()
        await asyncio.sleep(params.settle_seconds)
        await tracker.stop()
        wrappers = mgr.wrapper_pids()
        tree0 = sum(run_seconds(p) for p in wrappers)
        run0 = run_seconds(mgr.pid)
        phase = Phase(mgr, tracker)
        await asyncio.sleep(params.idle_seconds)
        dt, _, res.other_load_cores["idle"] = phase.end()
        idle_cpu = run_seconds(mgr.pid) - run0
        res.idle_cpu_pct = 100 * idle_cpu / dt
        res.idle_tree_cpu_pct = 100 * (idle_cpu + sum(run_seconds(p) for p in wrappers) - tree0) / dt
        res.rss_kb, res.hwm_kb = status_kb(mgr.pid, "VmRSS"), status_kb(mgr.pid, "VmHWM")
        res.pss_kb = rollup_kb(mgr.pid)["Pss"]
        res.wrappers = len(wrappers)
        for p in wrappers:
            r = rollup_kb(p)
            res.wrappers_rss_kb += r["Rss"]
            res.wrappers_pss_kb += r["Pss"]
        alive = tracker.alive_sleeps()
        res.sleeps_rss_kb = sum(rollup_kb(p)["Rss"] for p in alive)
        if len(alive) != n:
            res.errors.append(f"{len(alive)} sleeps alive at the end, expected {n}")
        p50, p99 = res.p(res.restart_ms, 0.5), res.p(res.restart_ms, 0.99)
        log(f"    restart p50 {p50:6.1f} ms p99 {p99:6.1f} ms; "
            f"RSS {res.rss_kb / 1024:6.1f} MB (peak {res.hwm_kb / 1024:.1f}, PSS {res.pss_kb / 1024:.1f})"
            + (f" + {res.wrappers} wrappers RSS {res.wrappers_rss_kb / 1024:.1f} MB / PSS "
               f"{res.wrappers_pss_kb / 1024:.1f} MB" if wrappers else "")
            + f"; idle CPU {res.idle_cpu_pct:.2f}% (other load {res.other_load_cores['idle']:.2f} cores)")
    except Exception as exc:
        res.errors.append(f"{type(exc).__name__}: {exc}")
        log(f"  {kind} N={n}: FAILED {type(exc).__name__}: {exc}")
    finally:
        if spy is not None and spy.returncode is None:
            os.kill(spy.pid, signal.SIGINT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(spy.wait(), 60)
        if tracker is not None:
            await tracker.stop()
        t0 = time.perf_counter()
        try:
            await mgr.stop()
        finally:
            res.stop_s = time.perf_counter() - t0
            if tracker is not None:
                await asyncio.sleep(0.5)
                # catch sleeps started after the last poll, then kill whatever outlived its manager
                with contextlib.suppress(Exception):
                    tracker.poll()
                res.leftovers = tracker.kill_leftovers()
                if res.leftovers:
                    res.errors.append(f"{res.leftovers} sleeps outlived the manager (killed)")
                    log(f"  WARNING: {res.leftovers} sleeps outlived {kind}; killed them")
    return res


async def start_py_spy(pid: int, out: Path) -> asyncio.subprocess.Process:
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = shutil.which("py-spy") or str(beside)
    proc = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--output", str(out), "--format", "raw", "--rate", "200",
        "--nonblocking", "--threads",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.0)
    return proc


# ----------------------------------------------------------------------------------------------- peers


def missing_peers() -> list[str]:
    missing = []
    if not SUPERVISORD.exists():
        missing.append("supervisor")
    if not CIRCUSD.exists():
        missing.append("circus")
    if not PM2_BIN.exists():
        missing.append("pm2")
    if shutil.which("node") is None:
        missing.append("node (apt-get install nodejs npm)")
    return missing


def install_peers() -> None:
    """supervisor + circus in their own venv, pm2 with npm; both under bench/.peers/ (git ignores it)."""
    PEERS.mkdir(exist_ok=True)
    if not PEER_PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([str(PEER_PY), "-m", "pip", "install", "--quiet", "supervisor", "circus"], check=True)
    if shutil.which("npm") is None:
        raise SystemExit("npm not found: apt-get install -y nodejs npm, then run --install-peers again")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PEERS / "npm"), "pm2"],
                   check=True)


INSTALL_HINT = """\
The peers are not installed. Either run this script with --install-peers, or:
  .venv/bin/python -m venv bench/.peers/venv
  bench/.peers/venv/bin/pip install supervisor circus
  npm install --prefix bench/.peers/npm pm2        # needs node and npm (apt-get install nodejs npm)"""

# ----------------------------------------------------------------------------------------------- report


def fmt(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def report(results: list[RunResult], log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    log("")
    log("| manager | N | all up s (/proc) | all reported s | restart p50 ms | p99 ms | manager RSS MB | "
        "idle CPU % | all-up ratio | restart p50 ratio | RSS ratio |")
    log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in sorted({r.n for r in results}):
        group = [r for r in results if r.n == n]
        corral = next((r for r in group if r.manager == "corral"), None)
        for r in sorted(group, key=lambda r: (MANAGERS + EXTRA_MANAGERS).index(r.manager)):
            p50, p99 = r.p(r.restart_ms, 0.5), r.p(r.restart_ms, 0.99)
            row = {"manager": r.manager, "n": n, "all_up_s": r.all_up_s, "all_reported_s": r.all_reported_s,
                   "restart_p50_ms": p50, "restart_p99_ms": p99, "rss_mb": r.rss_kb / 1024,
                   "idle_cpu_pct": r.idle_cpu_pct}
            if corral is not None and r is not corral and r.manager in MANAGERS:
                row["ratio_all_up"] = ratio(corral.all_up_s, r.all_up_s)
                row["ratio_restart_p50"] = ratio(corral.p(corral.restart_ms, 0.5), p50)
                row["ratio_rss"] = ratio(corral.rss_kb, r.rss_kb)
            rows.append(row)
            log(f"| {r.manager} | {n} | {fmt(r.all_up_s)} | {fmt(r.all_reported_s)} | {fmt(p50, 1)} | "
                f"{fmt(p99, 1)} | {fmt(r.rss_kb / 1024, 1)} | {fmt(r.idle_cpu_pct)} | "
                f"{fmt(row.get('ratio_all_up', math.nan))} | {fmt(row.get('ratio_restart_p50', math.nan))} | "
                f"{fmt(row.get('ratio_rss', math.nan))} |" + (" ERRORS" if r.errors else ""))
    log("Ratios are Corral ÷ peer (below 1: Corral took less time / less memory).")
    for r in results:
        if r.note:
            log(f"Note {r.manager} N={r.n}: {r.note}")
    for r in results:
        if r.manager.startswith("corral") and r.restart_reported_ms:
            log(f"{r.manager} N={r.n}: pod status showed the restart after p50 "
                f"{fmt(r.p(r.restart_reported_ms, 0.5), 1)} ms / p99 "
                f"{fmt(r.p(r.restart_reported_ms, 0.99), 1)} "
                f"ms; {r.wrappers} sh wrappers: RSS {r.wrappers_rss_kb / 1024:.1f} MB, PSS "
                f"{r.wrappers_pss_kb / 1024:.1f} MB; server PSS {r.pss_kb / 1024:.1f} MB, peak RSS "
                f"{r.hwm_kb / 1024:.1f} MB; idle CPU with wrappers {fmt(r.idle_tree_cpu_pct)}%")
    # The targets
    log("")
    for n in sorted({r.n for r in results}):
        by = {r.manager: r for r in results if r.n == n}
        c = by.get("corral")
        if c is None:
            continue
        if "pm2" in by:
            a, b = c.p(c.restart_ms, 0.5), by["pm2"].p(by["pm2"].restart_ms, 0.5)
            log(f"target N={n}: Corral restart p50 {fmt(a, 1)} ms <= pm2's {fmt(b, 1)} ms: "
                f"{'met' if a <= b else f'MISSED by {a - b:.1f} ms ({a / b:.2f}x)'}")
        if "supervisord" in by:
            a, b = c.all_up_s, by["supervisord"].all_up_s
            log(f"target N={n}: Corral all up {fmt(a)} s <= supervisord's {fmt(b)} s: "
                f"{'met' if a <= b else f'MISSED by {a - b:.2f} s ({a / b:.2f}x)'}")
            a2, b2 = c.all_reported_s, by["supervisord"].all_reported_s
            log(f"          (as reported by each: Corral {fmt(a2)} s, supervisord {fmt(b2)} s: "
                f"{'met' if a2 <= b2 else f'missed by {a2 - b2:.2f} s'})")
        if n == 100:
            mb = c.rss_kb / 1024
            log(f"target N=100: Corral server RSS {mb:.1f} MB < 150 MB: "
                f"{'met' if mb < 150 else f'MISSED by {mb - 150:.1f} MB'}")
    for r in results:
        noisy = {k: v for k, v in r.other_load_cores.items() if v > BUSY_MACHINE_CORES}
        if noisy:
            log(f"WARNING: other load on the machine during {r.manager} N={r.n}: "
                + ", ".join(f"{k} {v:.2f} cores" for k, v in noisy.items()))
        for e in r.errors:
            log(f"ERROR {r.manager} N={r.n}: {e}")
    return rows


# ----------------------------------------------------------------------------------------------- main


def machine_facts() -> dict[str, Any]:
    node_js = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
    return {"node": platform.node(), "nproc": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "node_js": node_js.strip()}


async def amain(args: argparse.Namespace) -> int:
    # SIGTERM (e.g. from `timeout`) cancels the run like Ctrl-C does, so every finally stops its manager.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    params = QUICK if args.quick else FULL
    if args.sizes or args.kills:
        params = Params(tuple(args.sizes or params.sizes), args.kills or params.kills, params.idle_seconds,
                        params.settle_seconds)
    managers = args.managers or list(MANAGERS)
    sleep_path = shutil.which("sleep")
    assert sleep_path is not None
    sleep_path = os.path.realpath(sleep_path)
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    log(f"process managers: sizes {params.sizes}, {params.kills} kills each, "
        f"idle window {params.idle_seconds}s, managers {', '.join(managers)}; "
        f"{platform.node()} nproc={os.cpu_count()} "
        f"python {platform.python_version()}")
    results: list[RunResult] = []
    base = Path(args.workdir) if args.workdir else None
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-pm-", dir=base))
    py_spy_dir = Path(args.py_spy) if args.py_spy else None
    try:
        for size_index, n in enumerate(params.sizes):
            # Alternate the order between sizes so drift in machine load does not always favour one side.
            order = managers if size_index % 2 == 0 else list(reversed(managers))
            for kind in order:
                results.append(await run_one(kind, n, params, workdir, sleep_path, seed=n, log=log,
                                             py_spy_dir=py_spy_dir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    rows = report(results, log)
    elapsed = time.perf_counter() - t0
    log(f"total {elapsed:.0f} s")
    mode = "quick" if args.quick else "full"
    stamp = f"{started:%Y%m%d-%H%M%S}"
    out = Path(args.out) if args.out else RESULTS_DIR / f"process_managers-{mode}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started_utc": started.isoformat(), "elapsed_s": elapsed, "mode": mode, "params": asdict(params),
        "machine": machine_facts(),
        "summary": rows, "runs": [asdict(r) for r in results], "log": lines,
    }, indent=1, default=lambda o: None))
    print(f"wrote {out}")
    return 1 if any(r.errors for r in results) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 processes instead of 100 and 500")
    parser.add_argument("--sizes", type=int, nargs="+", help="override the sizes (e.g. --sizes 100)")
    parser.add_argument("--kills", type=int, help="processes killed per manager and size (default 10)")
    parser.add_argument("--managers", nargs="+", choices=MANAGERS + EXTRA_MANAGERS,
                        help="run only these managers (corral-nocg: Corral with cgroups off, a diagnosis)")
    parser.add_argument("--install-peers", action="store_true",
                        help="install supervisor and circus (venv) and pm2 (npm) under bench/.peers/ first")
    parser.add_argument("--workdir", help="where the managers' state goes (default: the system temp dir)")
    parser.add_argument("--out", help="JSON results file (default bench/results/process_managers-*.json)")
    parser.add_argument("--py-spy", metavar="DIR", help="sample Corral's server with py-spy (diagnosis only)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs)")
    args = parser.parse_args()
    if args.install_peers:
        install_peers()
    needed = [m for m in (args.managers or MANAGERS) if not m.startswith("corral")]
    missing = missing_peers()
    if needed and missing:
        print(f"missing: {', '.join(missing)}\n{INSTALL_HINT}", file=sys.stderr)
        sys.exit(2)
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(amain(args)))
    sys.exit(uvloop.run(amain(args)))


if __name__ == "__main__":
    main()
