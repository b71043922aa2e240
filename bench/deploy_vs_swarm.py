"""Deploying and rolling-updating N replicas: Corral against Docker Swarm, side by side in one run.

Each system gets the same job (see docs/benchmarks.md for recorded results):

* deploy  -- from the create request until all N replicas are up:
             Corral: ``POST /apis/apps/v1/namespaces/default/deployments`` of a Deployment of N replicas
             (process runtime, ``sleep 3600``, no readiness probe, so a pod is Ready once its container runs)
             until N pods are Ready, seen on a pod watch that is open from before the POST (pushed).
             Swarm: ``POST /services/create`` (what ``docker service create`` sends) of a service of N
             replicas of ``sleep 3600`` in an image imported from a busybox-static root filesystem, until N
             tasks are ``running``, seen by polling ``GET /tasks`` (Docker has no task watch; see POLL below).
* update  -- a rolling update that changes one environment variable of the template (BENCH_VERSION 1 -> 2)
             until N new replicas are Ready/running and every old one is gone (Corral: the pod object is
             deleted; Swarm: the old task's container has stopped).
             Corral: merge-PATCH of the Deployment, default strategy RollingUpdate (25% surge, 25%
             unavailable).
             Swarm: ``POST /services/ID/update`` (what ``docker service update --env-add`` sends) with
             update parallelism N/2, order start-first, delay 0 (``--swarm-parallelism``, ``--swarm-order``).
* delete  -- from the delete request until no replica is left (Corral: no pod; Swarm: no container).
* CPU     -- of the control plane during each phase, from /proc/<pid>/stat (utime + stime): Corral's server
             process (API, store, scheduler, controllers and node agent in one process); Swarm: dockerd +
             the containerd it started. Also "with helpers": plus every per-container process and what
             they reaped (Corral: its ``sh`` wrappers and the containers' processes; Swarm: the containerd
             shims, the runc runs they reap, docker-init and the containers' processes), sampled each second.
* RSS     -- peak RSS (VmHWM) of the control plane over the trial (dockerd + containerd summed).

Each (size, run) is a fresh trial: a new Corral server with a new data dir, or a new dockerd with a new
data-root and a new single-node swarm. Runs alternate which system goes first. Medians over ``--runs`` trials
and the ratio Corral / Swarm are printed as a Markdown table.

POLL: Swarm's tasks are polled every max(100 ms, 2 x the last call's duration). Each poll costs dockerd CPU
(it lists and encodes every task), so after the deploy and after the update the script times 20 polls at
steady state and takes polls x that cost out of Swarm's CPU figures (the log shows both). Corral's pushed
watch also costs its server some CPU; that is not taken out.

Docker here: ``dockerd --iptables=false --bridge=none`` with its own socket, data-root, exec-root and pid file
in the work dir (never the default socket), ``DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`` and the image given by
its ID, so no task ever tries to pull from a registry. The swarm listens on 127.0.0.1 only (its port and
the gossip port 7946). Containers run
with ``--init`` (docker-init forwards SIGTERM, as Corral's runtime delivers it to ``sleep``; without it a
``sleep`` as PID 1 ignores SIGTERM and every stop waits the 10 s grace period). If Docker cannot run on this
machine, the script prints the exact error, still measures Corral, and says so in the results.

Safety: traffic only on 127.0.0.1 and unix sockets in the work dir; every process this script starts is
stopped by its pid (Corral server: SIGTERM; dockerd: leave the swarm, remove the service, SIGTERM), and any
container process or shim that outlives its manager is killed by pid after checking its start time; every
wait has a deadline; the dockerd data-root is unmounted and removed at the end.

Run: ``.venv/bin/python bench/deploy_vs_swarm.py [--install-peers] [--replicas 100,500] [--runs 3]``.
"""

# Opening a local log file inside a coroutine takes microseconds and happens outside the timed windows.
# ruff: noqa: ASYNC230, ASYNC240

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")
BUSY_MACHINE_CORES = 0.3  # other load during a phase above which the run is flagged as noisy
SYSTEMS = ("corral", "swarm")
DOCKER_API = "v1.41"  # Docker 20.10 (Debian bookworm's docker.io)
BUSYBOX = "/bin/busybox"  # from busybox-static: one static binary, so the image needs nothing else
POLL_MIN_S = 0.1
TERMINAL_TASK_STATES = frozenset({"complete", "shutdown", "failed", "rejected", "remove", "orphaned"})

# ----------------------------------------------------------------------------------------------- /proc


@dataclass(frozen=True, slots=True)
class Stat:
    comm: str
    ppid: int
    start_ticks: int
    cpu_ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime: CPU of reaped children


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
                    child_ticks=int(rest[13]) + int(rest[14]))
    except (IndexError, ValueError):
        return None


def run_seconds(pid: int) -> float:
    """Time on CPU of all threads of a process, from /proc/<pid>/task/*/schedstat, in seconds."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(pid: int) -> list[int]:
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


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = children_of(todo.pop())
        out += kids
        todo += kids
    return out


def cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def machine_busy_seconds() -> float:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / CLK_TCK


def self_cpu_seconds() -> float:
    """This script and the children it reaped (docker CLI, tar)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def median(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


class CpuMeter:
    """CPU seconds of a system under test: its control-plane processes (fixed pids) and its per-container
    processes (helpers and the containers' own processes, found by a callback and sampled while a phase
    runs, so one that exits mid-phase is counted up to its last sample). Keyed by (pid, start time) so a
    reused pid is never mixed up. A container process's CPU before its exec (Corral: the fork, the cgroup
    join; Docker: ``runc init``, namespaces, mounts) is accounted to it, so it belongs in the count."""

    def __init__(self, core: Callable[[], list[int]], helpers: Callable[[], list[int]]) -> None:
        self.core = core
        self.helpers = helpers
        self.seen: dict[tuple[int, int], float] = {}  # helper -> last CPU seen (own + reaped children)
        self.reaped_by_counted: set[tuple[int, int]] = set()  # parent is core or a helper: its CPU moves up

    def core_seconds(self) -> tuple[float, float]:
        """(utime + stime, cutime + cstime) of the control-plane processes."""
        own = reaped = 0
        for pid in self.core():
            stat = read_stat(pid)
            if stat is not None:
                own += stat.cpu_ticks
                reaped += stat.child_ticks
        return own / CLK_TCK, reaped / CLK_TCK

    def sample(self) -> None:
        counted = set(self.core())
        helpers = self.helpers()
        counted.update(helpers)
        for pid in helpers:
            stat = read_stat(pid)
            if stat is not None:
                if stat.ppid in counted:
                    self.reaped_by_counted.add((pid, stat.start_ticks))
                # schedstat (ns) for the helper itself: a wrapper uses a few ms, below the 10 ms tick of
                # /proc/<pid>/stat; what it reaped (runc under a shim) is only available in ticks.
                self.seen[(pid, stat.start_ticks)] = run_seconds(pid) + stat.child_ticks / CLK_TCK

    def snapshot(self) -> dict[tuple[int, int], float]:
        self.sample()
        return dict(self.seen)

    def helpers_cpu_since(self, before: dict[tuple[int, int], float]) -> float:
        """Helper CPU since ``before``. A helper that has exited and whose parent is counted too (the
        control plane or another helper) is left out: its whole CPU went to that parent's cutime/cstime
        when it was reaped. One reaped by a process not counted (a shim, by init) keeps its last sample."""
        total = 0.0
        for key, value in self.snapshot().items():
            stat = read_stat(key[0])
            gone = stat is None or stat.start_ticks != key[1] or _is_zombie(key[0])
            if not (gone and key in self.reaped_by_counted):
                total += value - before.get(key, 0.0)
        return total


class Phase:
    """CPU over one timed phase: the control plane, the control plane with its helpers, and the rest of the
    machine ("other load": machine busy time minus this script and the system under test)."""

    def __init__(self, meter: CpuMeter) -> None:
        self.meter = meter
        self.h0 = meter.snapshot()
        self.m0, self.s0 = machine_busy_seconds(), self_cpu_seconds()
        self.c0, self.r0 = meter.core_seconds()
        self._task = asyncio.get_running_loop().create_task(self._sampler())
        self.t0 = time.perf_counter()

    async def _sampler(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(self.meter.sample)

    async def end(self) -> dict[str, float]:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        dt = time.perf_counter() - self.t0
        c1, r1 = self.meter.core_seconds()
        helpers = self.meter.helpers_cpu_since(self.h0)
        core = c1 - self.c0
        total = core + (r1 - self.r0) + helpers
        other = (machine_busy_seconds() - self.m0) - (self_cpu_seconds() - self.s0) - total
        return {"seconds": dt, "cpu_s": core, "cpu_with_helpers_s": total,
                "other_load_cores": max(0.0, other / dt) if dt > 0 else math.nan}


# ----------------------------------------------------------------------------------------------- results


@dataclass
class Trial:
    system: str
    n: int
    run: int
    deploy_s: float = math.nan  # request -> N ready / running
    update_s: float = math.nan  # request -> N new ready, old gone
    delete_s: float = math.nan  # request -> none left
    rollout_status_s: float = math.nan  # Corral: the Deployment's status says complete (rollout status)
    deploy_cpu_s: float = math.nan
    update_cpu_s: float = math.nan
    deploy_cpu_helpers_s: float = math.nan
    update_cpu_helpers_s: float = math.nan
    peak_rss_mb: float = math.nan
    helpers: int = 0
    helpers_pss_mb: float = math.nan
    polls: dict[str, int] = field(default_factory=dict)
    poll_cpu_ms: dict[str, float] = field(default_factory=dict)  # Swarm: control-plane CPU of one task poll
    observer_cpu_s: dict[str, float] = field(default_factory=dict)  # polls x poll cost, per phase
    raw_cpu_s: dict[str, float] = field(default_factory=dict)  # control plane CPU before taking that out
    max_pods_seen: int = 0  # most replicas (old + new) alive at once during the update
    min_ready_seen: int = 0  # fewest ready replicas during the update
    other_load_cores: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class Unavailable(Exception):
    """The system cannot run on this machine; the message is the exact reason."""


# ----------------------------------------------------------------------------------------------- systems


class System:
    name = ""
    observer = ""

    def __init__(self, workdir: Path, n: int, args: argparse.Namespace) -> None:
        self.workdir = workdir
        self.n = n
        self.args = args
        self.polls = 0

    async def setup(self) -> None:
        raise NotImplementedError

    def core_pids(self) -> list[int]:
        raise NotImplementedError

    def helper_pids(self, containers: bool = False) -> list[int]:
        """Per-container helper processes; with ``containers``, also every process below them."""
        raise NotImplementedError

    async def deploy(self, limit_s: float) -> float:
        """Send the create request, return the perf_counter time when N replicas were up."""
        raise NotImplementedError

    async def update(self, limit_s: float, trial: Trial) -> float:
        raise NotImplementedError

    async def delete(self, limit_s: float) -> float:
        raise NotImplementedError

    async def poll_cost_ms(self) -> float:
        return math.nan

    async def profile_start(self, phase: str) -> None:
        """Diagnosis only (--py-spy): start sampling before a timed phase."""

    async def profile_stop(self) -> None:
        pass

    async def teardown(self) -> list[str]:
        """Stop everything started; return warnings (leftover processes that had to be killed)."""
        raise NotImplementedError


def kill_survivors(procs: dict[int, int]) -> int:
    """SIGKILL processes from ``procs`` (pid -> start ticks) that still exist as the same process."""
    killed = 0
    for pid, start in procs.items():
        stat = read_stat(pid)
        if stat is not None and stat.start_ticks == start and not _is_zombie(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        return data[data.rfind(b")") + 2:].split()[0] in (b"Z", b"X")
    except OSError:
        return True


async def stop_child(proc: asyncio.subprocess.Process | None, what: str, limit_s: float = 60.0) -> None:
    """SIGTERM one child we started, by pid; SIGKILL it after ``limit_s``."""
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), limit_s)
    except TimeoutError:
        print(f"  {what} (pid {proc.pid}) did not stop in {limit_s:.0f} s; killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()


class Waiters:
    """Futures resolved with the perf_counter time at which a predicate over observed state first held."""

    def __init__(self) -> None:
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[float]]] = []

    def check(self) -> None:
        now = time.perf_counter()
        for pred, fut in self._waiters:
            if not fut.done() and pred():
                fut.set_result(now)
        self._waiters = [(p, f) for p, f in self._waiters if not f.done()]

    def fail(self, exc: BaseException) -> None:
        for _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._waiters = []

    async def wait(self, pred: Callable[[], bool], limit_s: float) -> float:
        if pred():
            return time.perf_counter()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((pred, fut))
        return await asyncio.wait_for(fut, limit_s)


# ---- Corral

NS = "default"
NAME = "bench"


def deployment_body(n: int, sleep_path: str, version: int) -> dict[str, Any]:
    """The Deployment: N replicas of ``sleep 3600`` on the process runtime. No readiness probe: as in
    Kubernetes, such a container is Ready as soon as it runs (the "immediate readiness" of the issue)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"app": NAME}},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"terminationGracePeriodSeconds": 10, "containers": [container(sleep_path, version)]},
            },
        },
    }


def container(sleep_path: str, version: int) -> dict[str, Any]:
    return {"name": "sleep", "image": "busybox", "command": [sleep_path, "3600"],
            "env": [{"name": "BENCH_VERSION", "value": str(version)}]}


def pod_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def rollout_complete(dep: dict[str, Any]) -> bool:
    """What ``kubectl rollout status`` waits for (RollingUpdate)."""
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    return (updated >= want and int(status.get("replicas") or 0) <= updated
            and int(status.get("availableReplicas") or 0) >= updated)


class CorralSystem(System):
    name = "corral"
    observer = "pod watch (pushed)"

    def __init__(self, workdir: Path, n: int, args: argparse.Namespace) -> None:
        super().__init__(workdir, n, args)
        self.proc: asyncio.subprocess.Process | None = None
        self.session: Any = None
        self.watch_session: Any = None
        self.pods: dict[str, dict[str, Any]] = {}  # name -> {hash, ready, deleting}
        self.deployment: dict[str, Any] = {}
        self.waiters = Waiters()
        self.tasks: list[asyncio.Task[None]] = []
        sleep = shutil.which("sleep")
        assert sleep is not None
        self.sleep = os.path.realpath(sleep)
        self.old_hash = ""
        self.spy: asyncio.subprocess.Process | None = None
        self.known: dict[int, int] = {}  # wrappers and their sleeps seen (pid -> start ticks), for cleanup

    async def setup(self) -> None:
        import aiohttp
        import yaml

        data_dir = self.workdir / "data"
        self.log = open(self.workdir / "server.log", "wb")  # noqa: SIM115 -- closed in teardown()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "corral.testing.serve", "--data-dir", str(data_dir), "--port", "0",
            # Room for the old and the new ReplicaSet's pods at once (terminating ones included), so the
            # node's pod capacity (110 by default, as kubelet's) never holds back the rolling update.
            "--max-pods", str(max(110, 2 * self.n + 10)),
            stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"corral server did not start: {line!r}; see {self.workdir / 'server.log'}")
        _, self.url, kubeconfig = line.split()
        doc = yaml.safe_load(Path(kubeconfig).read_text())
        ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        headers = {"Authorization": f"Bearer {doc['users'][0]['user']['token']}"}
        ctx = ssl.create_default_context(cadata=ca)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx), headers=headers,
                                             timeout=aiohttp.ClientTimeout(total=120))
        self.watch_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=ctx), headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30))
        await self._watch(f"/api/v1/namespaces/{NS}/pods", {"labelSelector": f"app={NAME}"}, self._on_pod)
        await self._watch(f"/apis/apps/v1/namespaces/{NS}/deployments",
                          {"fieldSelector": f"metadata.name={NAME}"}, self._on_deployment)

    def core_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.returncode is None else []

    def helper_pids(self, containers: bool = False) -> list[int]:
        """The server's children: one ``sh`` wrapper per container (it waits for the container process)."""
        if self.proc is None:
            return []
        out = []
        for pid in children_of(self.proc.pid):
            stat = read_stat(pid)
            if stat is not None:
                out.append(pid)
                self.known[pid] = stat.start_ticks
                for kid in children_of(pid):
                    kstat = read_stat(kid)
                    if kstat is not None:
                        self.known[kid] = kstat.start_ticks
                        if containers:
                            out.append(kid)
        return out

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if kind == "DELETED":
            self.pods.pop(meta["name"], None)
        else:
            self.pods[meta["name"]] = {"hash": (meta.get("labels") or {}).get("pod-template-hash", ""),
                                       "ready": pod_ready(pod), "deleting": "deletionTimestamp" in meta}

    def _on_deployment(self, kind: str, dep: dict[str, Any]) -> None:
        self.deployment = {} if kind == "DELETED" else dep

    async def _watch(self, path: str, params: dict[str, str],
                     on_event: Callable[[str, dict[str, Any]], None]) -> None:
        """List, then watch from the list's resourceVersion (resuming if the server ends the stream)."""
        import orjson

        async with self.session.get(self.url + path, params=params) as resp:
            body = orjson.loads(await resp.read())
            if resp.status != 200:
                raise RuntimeError(f"list {path}: HTTP {resp.status} {body}")
        rv = body["metadata"]["resourceVersion"]
        for item in body["items"]:
            on_event("ADDED", item)

        async def connect() -> Any:
            resp = await self.watch_session.get(self.url + path, params={
                **params, "watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true"})
            if resp.status != 200:
                raise RuntimeError(f"watch {path}: HTTP {resp.status} {await resp.text()}")
            return resp

        first = await connect()

        async def read() -> None:
            nonlocal rv
            resp = first
            try:
                for _attempt in range(100):
                    try:
                        async for line in resp.content:
                            if not line.strip():
                                continue
                            event = orjson.loads(line)
                            obj = event["object"]
                            if event["type"] == "ERROR":
                                raise RuntimeError(f"watch error: {obj}")
                            rv = obj["metadata"].get("resourceVersion", rv)
                            if event["type"] != "BOOKMARK":
                                on_event(event["type"], obj)
                                self.waiters.check()
                    finally:
                        resp.close()
                    resp = await connect()
            except Exception as exc:  # a broken watch must fail the waits, not hang them
                self.waiters.fail(exc)
                raise

        self.tasks.append(asyncio.get_running_loop().create_task(read()))

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, ctype: str,
                    ok: tuple[int, ...]) -> None:
        import orjson

        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(method, self.url + path, data=data,
                                        headers={"Content-Type": ctype}) as resp:
            raw = await resp.read()
            if resp.status not in ok:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status} {raw[:300]!r}")

    async def profile_start(self, phase: str) -> None:
        if self.args.py_spy and self.proc is not None:
            out = Path(self.args.py_spy) / f"corral-{self.n}-{phase}.txt"
            self.spy = await start_py_spy(self.proc.pid, out)

    async def profile_stop(self) -> None:
        if self.spy is not None:
            await stop_py_spy(self.spy)
            self.spy = None

    async def deploy(self, limit_s: float) -> float:
        await self._send("POST", f"/apis/apps/v1/namespaces/{NS}/deployments",
                         deployment_body(self.n, self.sleep, 1), "application/json", (201,))
        t = await self.waiters.wait(
            lambda: sum(1 for p in self.pods.values() if p["ready"]) >= self.n, limit_s)
        hashes = {p["hash"] for p in self.pods.values()}
        if len(hashes) != 1:
            raise RuntimeError(f"expected one pod-template-hash after the deploy, saw {sorted(hashes)}")
        self.old_hash = hashes.pop()
        return t

    async def update(self, limit_s: float, trial: Trial) -> float:
        def converged() -> bool:
            alive = len(self.pods)
            ready = sum(1 for p in self.pods.values() if p["ready"] and not p["deleting"])
            trial.max_pods_seen = max(trial.max_pods_seen, alive)
            trial.min_ready_seen = min(trial.min_ready_seen, ready)
            return alive == self.n and ready == self.n and all(
                p["hash"] != self.old_hash for p in self.pods.values())

        trial.min_ready_seen = self.n
        t0 = time.perf_counter()
        patch = {"spec": {"template": {"spec": {"containers": [container(self.sleep, 2)]}}}}
        await self._send("PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}", patch,
                         "application/merge-patch+json", (200,))
        # What `kubectl rollout status` waits for; the status of the new generation comes after the PATCH.
        status_done = asyncio.ensure_future(self.waiters.wait(
            lambda: bool(self.deployment) and rollout_complete(self.deployment)
            and any(p["hash"] != self.old_hash for p in self.pods.values()), limit_s))
        try:
            t = await self.waiters.wait(converged, limit_s)
            trial.rollout_status_s = await status_done - t0
        finally:
            status_done.cancel()
        return t

    async def delete(self, limit_s: float) -> float:
        await self._send("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}",
                         {"propagationPolicy": "Background"}, "application/json", (200, 202))
        return await self.waiters.wait(lambda: not self.pods, limit_s)

    async def teardown(self) -> list[str]:
        warnings = []
        await self.profile_stop()
        self.helper_pids()  # remember the last wrappers and sleeps, in case the server leaves any behind
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for session in (self.session, self.watch_session):
            if session is not None:
                await session.close()
        await stop_child(self.proc, "corral server")
        if hasattr(self, "log"):
            self.log.close()
        await asyncio.sleep(0.2)
        left = kill_survivors(self.known)
        if left:
            warnings.append(f"{left} wrapper/sleep processes outlived the Corral server (killed)")
        return warnings


# ---- Docker Swarm


def docker_missing() -> str | None:
    for tool in ("dockerd", "containerd", "runc", "docker-init"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH (Debian: apt-get install docker.io; or use --install-peers)"
    if not Path(BUSYBOX).exists():
        return f"{BUSYBOX} not found (Debian: apt-get install busybox-static; or use --install-peers)"
    return None


def rootfs_tar(path: Path) -> None:
    """A root filesystem of one static busybox and the two applets the service uses."""
    with tarfile.open(path, "w") as tar:
        for name in ("bin", "tmp", "proc", "sys", "dev", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "sleep"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def task_env(task: dict[str, Any]) -> list[str]:
    return list((((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Env")) or [])


def parallelism(spec: str, n: int) -> int:
    """``50%`` of N (at least 1) or a plain count."""
    if spec.endswith("%"):
        return max(1, math.ceil(n * float(spec[:-1]) / 100))
    return int(spec)


class SwarmSystem(System):
    name = "swarm"
    observer = f"GET /tasks polled every max({POLL_MIN_S * 1000:.0f} ms, 2x the call)"
    storage_driver = ""  # chosen once per script run (the first that works)

    def __init__(self, workdir: Path, n: int, args: argparse.Namespace) -> None:
        super().__init__(workdir, n, args)
        self.dockerd: asyncio.subprocess.Process | None = None
        self.containerd = 0
        self.sock = self.workdir / "docker.sock"
        self.exec_root = self.workdir / "exec"
        self.session: Any = None
        self.image = ""
        self.service_id = ""
        self.swarm_joined = False
        self.known: dict[int, int] = {}  # shims and what runs below them (pid -> start ticks), for cleanup

    # -- plumbing

    async def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,),
                  params: dict[str, str] | None = None, data: bytes | None = None) -> Any:
        import orjson

        kwargs: dict[str, Any] = {"params": params or {}}
        if body is not None:
            kwargs["data"] = orjson.dumps(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        elif data is not None:
            kwargs["data"] = data
            kwargs["headers"] = {"Content-Type": "application/x-tar"}
        async with self.session.request(method, f"http://docker/{DOCKER_API}{path}", **kwargs) as resp:
            raw = await resp.read()
            if resp.status not in ok:
                text = raw[:500].decode(errors="replace")
                raise RuntimeError(f"docker {method} {path}: HTTP {resp.status} {text}")
            return orjson.loads(raw) if raw and resp.content_type == "application/json" else raw

    def core_pids(self) -> list[int]:
        pids = [self.dockerd.pid] if self.dockerd is not None and self.dockerd.returncode is None else []
        if self.containerd and read_stat(self.containerd) is not None:
            pids.append(self.containerd)
        return pids

    def helper_pids(self, containers: bool = False) -> list[int]:
        """The containerd shims of our containerd (they daemonize, so they are found by their -address)."""
        marker = str(self.exec_root).encode()
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            stat = read_stat(pid)
            if stat is None or not stat.comm.startswith("containerd-shim") or marker not in cmdline(pid):
                continue
            out.append(pid)
            self.known[pid] = stat.start_ticks
            for kid in descendants(pid):
                kstat = read_stat(kid)
                if kstat is not None:
                    self.known[kid] = kstat.start_ticks
                    if containers:
                        out.append(kid)
        return out

    async def _start_dockerd(self, driver: str) -> None:
        import aiohttp

        root = self.workdir / "root"
        root.mkdir(exist_ok=True)
        self.exec_root.mkdir(exist_ok=True)
        self.log = open(self.workdir / f"dockerd-{driver}.log", "wb")  # noqa: SIM115 -- closed in teardown()
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        self.dockerd = await asyncio.create_subprocess_exec(
            "dockerd", "--iptables=false", "--bridge=none", "--data-root", str(root),
            "--exec-root", str(self.exec_root), "--host", f"unix://{self.sock}",
            "--pidfile", str(self.workdir / "dockerd.pid"), "--storage-driver", driver,
            "--config-file", str(self.workdir / "daemon.json"), "--log-level", "warn",
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env, start_new_session=True)
        self.session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(self.sock)),
                                             timeout=aiohttp.ClientTimeout(total=300))
        deadline = time.monotonic() + 60
        while True:
            if self.dockerd.returncode is not None:
                raise Unavailable(f"dockerd --storage-driver {driver} exited with code "
                                  f"{self.dockerd.returncode}: {self._log_tail()}")
            try:
                await self.api("GET", "/_ping")
                break
            except (OSError, aiohttp.ClientError, RuntimeError):
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"dockerd did not answer on its socket in 60 s: {self._log_tail()}") from None
                await asyncio.sleep(0.1)
        kids = [p for p in children_of(self.dockerd.pid) if (s := read_stat(p)) and s.comm == "containerd"]
        self.containerd = kids[0] if kids else 0

    def _log_tail(self) -> str:
        self.log.flush()
        try:
            lines = (self.workdir / Path(self.log.name).name).read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        errors = [ln for ln in lines if "level=error" in ln or "level=fatal" in ln or "failed" in ln.lower()]
        return " | ".join((errors or lines)[-3:]) or "(empty log)"

    async def setup(self) -> None:
        # Its identity key would otherwise go to /etc/docker/key.json (a config-file-only setting in 20.10).
        (self.workdir / "daemon.json").write_text(
            json.dumps({"deprecated-key-path": str(self.workdir / "key.json")}) + "\n")
        drivers = [SwarmSystem.storage_driver] if SwarmSystem.storage_driver else (
            [self.args.storage_driver] if self.args.storage_driver != "auto" else ["overlay2", "vfs"])
        failures = []
        for driver in drivers:
            try:
                await self._start_dockerd(driver)
                await self._image_and_swarm()
                SwarmSystem.storage_driver = driver
                return
            except Unavailable as exc:
                failures.append(str(exc))
            except Exception as exc:  # a step failed: note the exact error, try the next driver
                failures.append(f"storage driver {driver}: {type(exc).__name__}: {exc}")
            await self._stop_dockerd()
        raise Unavailable("; ".join(failures))

    async def _image_and_swarm(self) -> None:
        tar = self.workdir / "rootfs.tar"
        rootfs_tar(tar)
        # docker import: POST /images/create?fromSrc=- with the tar as the body
        await self.api("POST", "/images/create", params={"fromSrc": "-", "repo": "corral-bench/busybox",
                                                         "tag": "1"}, data=tar.read_bytes())
        info = await self.api("GET", "/images/corral-bench/busybox:1/json")
        self.image = info["Id"]  # by ID: swarm never tries to pull an image referenced this way
        port = free_port()
        await self.api("POST", "/swarm/init", {
            "ListenAddr": f"127.0.0.1:{port}", "AdvertiseAddr": f"127.0.0.1:{port}",
            "DataPathAddr": "127.0.0.1", "ForceNewCluster": False}, ok=(200,))
        self.swarm_joined = True
        # The smoke test of "can Docker run a container here at all" is the deploy itself: its failure
        # message (a task's error) is reported as the reason.

    def service_spec(self, version: int) -> dict[str, Any]:
        par = parallelism(self.args.swarm_parallelism, self.n)
        spec: dict[str, Any] = {
            "Name": NAME,
            "Labels": {"app": NAME},
            "TaskTemplate": {
                "ContainerSpec": {"Image": self.image, "Args": ["sleep", "3600"], "Init": True,
                                  "Env": [f"BENCH_VERSION={version}"], "StopGracePeriod": 10_000_000_000},
                "RestartPolicy": {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0},
                "ForceUpdate": 0,
            },
            "Mode": {"Replicated": {"Replicas": self.n}},
            "UpdateConfig": {"Parallelism": par, "Delay": 0, "FailureAction": "pause",
                             "Monitor": 5_000_000_000, "MaxFailureRatio": 0, "Order": self.args.swarm_order},
        }
        if self.args.swarm_network == "host":
            spec["TaskTemplate"]["Networks"] = [{"Target": "host"}]
        return spec

    async def tasks(self) -> list[dict[str, Any]]:
        self.polls += 1
        filters = json.dumps({"service": [NAME]})
        result: list[dict[str, Any]] = await self.api("GET", "/tasks", params={"filters": filters})
        return result

    async def poll_until(self, pred: Callable[[list[dict[str, Any]]], bool], limit_s: float,
                         what: str) -> float:
        deadline = time.monotonic() + limit_s
        while True:
            t0 = time.perf_counter()
            tasks = await self.tasks()
            t1 = time.perf_counter()
            if pred(tasks):
                return t1
            failed = [t for t in tasks if t.get("Status", {}).get("Err")]
            if time.monotonic() > deadline:
                errs = sorted({t["Status"]["Err"] for t in failed})
                raise TimeoutError(f"swarm: {what} not reached in {limit_s:.0f} s; task errors: {errs[:3]}")
            if failed and len(failed) >= self.n and not any(
                    t["Status"]["State"] == "running" for t in tasks):
                raise Unavailable(f"every task failed: {failed[0]['Status']['Err']}")
            await asyncio.sleep(max(POLL_MIN_S, 2 * (t1 - t0)))

    async def deploy(self, limit_s: float) -> float:
        created = await self.api("POST", "/services/create", self.service_spec(1), ok=(201,))
        self.service_id = created["ID"]
        return await self.poll_until(
            lambda ts: sum(1 for t in ts if t["DesiredState"] == "running"
                           and t["Status"]["State"] == "running") >= self.n, limit_s, f"{self.n} running")

    async def update(self, limit_s: float, trial: Trial) -> float:
        trial.min_ready_seen = self.n
        new_env = "BENCH_VERSION=2"

        def converged(ts: list[dict[str, Any]]) -> bool:
            live = [t for t in ts if t["Status"]["State"] not in TERMINAL_TASK_STATES]
            new_running = sum(1 for t in live if t["Status"]["State"] == "running"
                              and t["DesiredState"] == "running" and new_env in task_env(t))
            running = sum(1 for t in live if t["Status"]["State"] == "running")
            trial.max_pods_seen = max(trial.max_pods_seen, len(live))
            trial.min_ready_seen = min(trial.min_ready_seen, running)
            old_live = [t for t in live if new_env not in task_env(t)]
            return new_running >= self.n and not old_live

        service = await self.api("GET", f"/services/{self.service_id}")
        version = service["Version"]["Index"]
        spec = service["Spec"]
        spec["TaskTemplate"]["ContainerSpec"]["Env"] = [new_env]
        await self.api("POST", f"/services/{self.service_id}/update", spec,
                       params={"version": str(version)})
        return await self.poll_until(converged, limit_s, "rolling update converged")

    async def poll_cost_ms(self) -> float:
        """Control-plane CPU of one task poll at this size (20 polls at steady state, after the update)."""
        c0 = sum(CpuMeter(self.core_pids, list).core_seconds())
        for _ in range(20):
            await self.tasks()
        c1 = sum(CpuMeter(self.core_pids, list).core_seconds())
        self.polls -= 20
        return (c1 - c0) / 20 * 1000

    async def delete(self, limit_s: float) -> float:
        await self.api("DELETE", f"/services/{self.service_id}")
        deadline = time.monotonic() + limit_s
        label = json.dumps({"label": [f"com.docker.swarm.service.id={self.service_id}"]})
        while True:
            t0 = time.perf_counter()
            containers = await self.api("GET", "/containers/json", params={"all": "1", "filters": label})
            t1 = time.perf_counter()
            self.polls += 1
            if not containers:
                return t1
            if time.monotonic() > deadline:
                raise TimeoutError(f"swarm: {len(containers)} containers left after {limit_s:.0f} s")
            await asyncio.sleep(max(POLL_MIN_S, 2 * (t1 - t0)))

    async def _stop_dockerd(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None
        containerd = self.containerd
        cstat = read_stat(containerd) if containerd else None
        await stop_child(self.dockerd, "dockerd")
        # dockerd stops the containerd it started; make sure, by pid and start time
        if cstat is not None and kill_survivors({containerd: cstat.start_ticks}):
            print(f"  containerd (pid {containerd}) outlived dockerd; killed it", file=sys.stderr)
        self.dockerd = None
        self.containerd = 0
        if hasattr(self, "log"):
            self.log.close()

    async def teardown(self) -> list[str]:
        warnings: list[str] = []
        with contextlib.suppress(Exception):
            self.helper_pids()  # remember shims and containers, in case any outlives dockerd
        if self.session is not None and self.dockerd is not None and self.dockerd.returncode is None:
            try:
                if self.service_id:
                    with contextlib.suppress(RuntimeError):
                        await self.api("DELETE", f"/services/{self.service_id}", ok=(200, 404))
                    # wait (bounded) for the containers to go, so dockerd stops with nothing running
                    label = json.dumps({"label": [f"com.docker.swarm.service.id={self.service_id}"]})
                    for _ in range(600):
                        if not await self.api("GET", "/containers/json",
                                              params={"all": "1", "filters": label}):
                            break
                        await asyncio.sleep(0.1)
                if self.swarm_joined:
                    await self.api("POST", "/swarm/leave", params={"force": "true"}, ok=(200, 503))
                # swarm init made a local bridge (docker_gwbridge); it would outlive dockerd as an interface
                with contextlib.suppress(RuntimeError):
                    await self.api("DELETE", "/networks/docker_gwbridge", ok=(204, 404))
            except Exception as exc:
                warnings.append(f"swarm clean-up step failed: {type(exc).__name__}: {exc}")
        await self._stop_dockerd()
        await asyncio.sleep(0.2)
        left = kill_survivors(self.known)
        if left:
            warnings.append(f"{left} shim/container processes outlived dockerd (killed)")
        # overlay mounts and network namespaces under the work dir must go before the tree is removed
        unmount_under(self.workdir)
        return warnings


def unmount_under(path: Path) -> None:
    """Lazily unmount whatever dockerd left mounted below ``path`` (overlay layers, netns files)."""
    for mount in reversed(mounts_under(path)):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    out = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            mount_point = line.split()[4].replace("\\040", " ")
            if mount_point.startswith(prefix):
                out.append(mount_point)
    return out


# ----------------------------------------------------------------------------------------------- py-spy


async def start_py_spy(pid: int, out: Path) -> asyncio.subprocess.Process:
    beside = Path(sys.executable).parent / "py-spy"
    py_spy = shutil.which("py-spy") or str(beside)
    proc = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(pid), "--output", str(out), "--format", "raw", "--rate", "100",
        "--nonblocking", "--threads", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.0)  # py-spy attaches before the timed phase starts
    return proc


async def stop_py_spy(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()


# ----------------------------------------------------------------------------------------------- one trial

SYSTEM_CLASSES: dict[str, type[System]] = {"corral": CorralSystem, "swarm": SwarmSystem}


async def timed(system: System, name: str, meter: CpuMeter,
                action: Callable[[], Awaitable[float]]) -> tuple[float, dict[str, float]]:
    """Run one phase; (seconds from its start to the time ``action`` reports, CPU figures)."""
    await system.profile_start(name)
    try:
        phase = Phase(meter)
        t_done = await action()
        cpu = await phase.end()
    finally:
        await system.profile_stop()
    return t_done - phase.t0, cpu


def record_cpu(trial: Trial, phase: str, cpu: dict[str, float]) -> None:
    """Store a phase's CPU figures, less the observer's estimated cost (0 for Corral's pushed watch)."""
    cost_ms = trial.poll_cpu_ms.get(phase, math.nan)
    observer = 0.0 if math.isnan(cost_ms) else trial.polls.get(phase, 0) * cost_ms / 1000
    trial.observer_cpu_s[phase] = observer
    trial.raw_cpu_s[phase] = cpu["cpu_s"]
    setattr(trial, f"{phase}_cpu_s", cpu["cpu_s"] - observer)
    setattr(trial, f"{phase}_cpu_helpers_s", cpu["cpu_with_helpers_s"] - observer)
    trial.other_load_cores[phase] = cpu["other_load_cores"]


def cpu_text(trial: Trial, phase: str) -> str:
    text = (f"CPU {getattr(trial, f'{phase}_cpu_s'):6.2f} s "
            f"(with helpers {getattr(trial, f'{phase}_cpu_helpers_s'):6.2f} s)")
    if trial.observer_cpu_s.get(phase):
        text += (f" after taking out {trial.observer_cpu_s[phase]:.2f} s for {trial.polls[phase]} polls "
                 f"({trial.poll_cpu_ms[phase]:.1f} ms each; measured {trial.raw_cpu_s[phase]:.2f} s)")
    return text + f", other load {trial.other_load_cores[phase]:.2f} cores"


async def run_trial(kind: str, n: int, run: int, workdir: Path, args: argparse.Namespace,
                    log: Callable[[str], None]) -> Trial:
    trial = Trial(system=kind, n=n, run=run)
    tdir = workdir / f"{kind}-{n}-{run}"
    tdir.mkdir()
    system = SYSTEM_CLASSES[kind](tdir, n, args)
    limit = 120 + 1.0 * n
    try:
        await system.setup()
        meter = CpuMeter(system.core_pids, lambda: system.helper_pids(containers=True))
        await asyncio.sleep(1.0)  # let start-up work (swarm's first raft writes, Corral's lease) settle

        system.polls = 0
        trial.deploy_s, cpu = await timed(system, "deploy", meter, lambda: system.deploy(limit))
        trial.polls["deploy"] = system.polls
        await asyncio.sleep(args.settle)
        # The observer's own cost (Swarm: every task poll makes dockerd list and encode all tasks) is
        # measured now, at this many tasks, and taken out of the control plane's CPU below.
        trial.poll_cpu_ms["deploy"] = await system.poll_cost_ms()
        record_cpu(trial, "deploy", cpu)
        log(f"  {kind:<6} N={n:<4} run {run}: deploy {trial.deploy_s:7.2f} s, {cpu_text(trial, 'deploy')}")
        helpers = system.helper_pids()
        trial.helpers = len(helpers)
        trial.helpers_pss_mb = sum(pss_kb(p) for p in helpers) / 1024

        system.polls = 0
        trial.update_s, cpu = await timed(system, "update", meter, lambda: system.update(limit, trial))
        trial.polls["update"] = system.polls
        trial.peak_rss_mb = sum(status_kb(p, "VmHWM") for p in system.core_pids()) / 1024
        # Tasks grew from N to 2N (old ones stay as history) during the update: the mean of both costs.
        trial.poll_cpu_ms["update"] = (trial.poll_cpu_ms["deploy"] + await system.poll_cost_ms()) / 2
        record_cpu(trial, "update", cpu)
        extra = f"; rollout status complete after {trial.rollout_status_s:.2f} s" if kind == "corral" else ""
        log(f"  {kind:<6} N={n:<4} run {run}: update {trial.update_s:7.2f} s, {cpu_text(trial, 'update')}"
            f"; at most {trial.max_pods_seen} replicas, at least {trial.min_ready_seen} ready{extra}")

        system.polls = 0
        t0 = time.perf_counter()
        trial.delete_s = await system.delete(limit) - t0
        log(f"  {kind:<6} N={n:<4} run {run}: delete {trial.delete_s:7.2f} s; "
            f"peak RSS {trial.peak_rss_mb:.1f} MB; {trial.helpers} helpers PSS {trial.helpers_pss_mb:.1f} MB")
    except Unavailable:
        raise
    except Exception as exc:
        trial.errors.append(f"{type(exc).__name__}: {exc}")
        log(f"  {kind} N={n} run {run}: FAILED {type(exc).__name__}: {exc}")
    finally:
        try:
            for warning in await system.teardown():
                trial.errors.append(warning)
                log(f"  WARNING {kind} N={n} run {run}: {warning}")
        finally:
            if not args.keep:
                shutil.rmtree(tdir, ignore_errors=True)
    return trial


# ----------------------------------------------------------------------------------------------- report

METRICS = (  # (field, heading, digits)
    ("deploy_s", "deploy → all ready s", 2),
    ("update_s", "rolling update s", 2),
    ("delete_s", "delete s", 2),
    ("deploy_cpu_s", "CPU deploy s", 2),
    ("update_cpu_s", "CPU update s", 2),
    ("deploy_cpu_helpers_s", "CPU+helpers deploy s", 2),
    ("update_cpu_helpers_s", "CPU+helpers update s", 2),
    ("peak_rss_mb", "peak RSS MB", 1),
    ("helpers_pss_mb", "helpers PSS MB", 1),
)


def fmt(x: float, digits: int = 2) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def summarize(trials: list[Trial]) -> list[dict[str, Any]]:
    """Medians per (system, N) over the trials without errors, and ratios Corral / Swarm (pure)."""
    rows: list[dict[str, Any]] = []
    for n in sorted({t.n for t in trials}):
        meds: dict[str, dict[str, float]] = {}
        for kind in SYSTEMS:
            good = [t for t in trials if t.n == n and t.system == kind and not t.errors]
            if not good:
                continue
            meds[kind] = {f: median([getattr(t, f) for t in good]) for f, _, _ in METRICS}
            meds[kind]["runs"] = len(good)
            rows.append({"system": kind, "n": n, **meds[kind]})
        if "corral" in meds and "swarm" in meds:
            ratio_row: dict[str, Any] = {"system": "ratio", "n": n, "runs": math.nan}
            for f, _, _ in METRICS:
                a, b = meds["corral"][f], meds["swarm"][f]
                ratio_row[f] = a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan
            rows.append(ratio_row)
    return rows


def table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| system | N | runs | " + " | ".join(h for _, h, _ in METRICS) + " |",
           "| --- | ---: | ---: | " + " | ".join("---:" for _ in METRICS) + " |"]
    for row in rows:
        ratio = row["system"] == "ratio"
        name = "**ratio** Corral ÷ Swarm" if ratio else row["system"]
        cells = [fmt(row[f], 2 if ratio else d) for f, _, d in METRICS]
        runs = "" if ratio else str(int(row["runs"]))
        out.append(f"| {name} | {row['n']} | {runs} | " + " | ".join(cells) + " |")
    return out


# ----------------------------------------------------------------------------------------------- versions


def run_text(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip()


def versions() -> dict[str, str]:
    def pkg(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return ""

    out = {"python": platform.python_version(), "corral": pkg("corral"), "aiohttp": pkg("aiohttp"),
           "uvloop": pkg("uvloop"), "kernel": platform.release(), "nproc": str(os.cpu_count()),
           "sleep": run_text(["sleep", "--version"]).splitlines()[0] if shutil.which("sleep") else ""}
    if shutil.which("dockerd"):
        out["dockerd"] = run_text(["dockerd", "--version"])
        out["containerd"] = run_text(["containerd", "--version"])
        out["runc"] = run_text(["runc", "--version"]).splitlines()[0] if shutil.which("runc") else ""
        out["docker-init"] = run_text(["docker-init", "--version"])
    if Path(BUSYBOX).exists():
        out["busybox"] = run_text([BUSYBOX]).splitlines()[0] if run_text([BUSYBOX]) else ""
    return out


def install_peers() -> None:
    """docker.io (dockerd, containerd, runc, docker-init) and busybox-static from Debian."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "docker.io", "busybox-static"], check=True, env=env)


# ----------------------------------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM (e.g. from `timeout`) cancels the run like Ctrl-C does, so every finally stops its system.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    sizes = [int(x) for x in args.replicas.split(",")]
    systems = [s for s in SYSTEMS if s in args.systems.split(",")]
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.perf_counter()
    lines: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    vers = versions()
    log(f"deploy vs swarm: replicas {sizes}, {args.runs} runs, systems {', '.join(systems)}; "
        f"{platform.node()} nproc={os.cpu_count()} started {started:%Y-%m-%d %H:%M:%S} UTC")
    for key, value in vers.items():
        log(f"  version {key}: {value}")
    swarm_unavailable = ""
    if "swarm" in systems and (missing := docker_missing()):
        swarm_unavailable = missing
        log(f"SWARM NOT MEASURED: {missing}")
    log(f"  swarm update: parallelism {args.swarm_parallelism} of N, order {args.swarm_order}, delay 0; "
        f"network {args.swarm_network}; observer: {SwarmSystem.observer}")
    log(f"  corral: Deployment strategy RollingUpdate (default 25% surge / 25% unavailable); "
        f"observer: {CorralSystem.observer}")
    trials: list[Trial] = []
    base = Path(args.workdir) if args.workdir else None
    workdir = Path(tempfile.mkdtemp(prefix="corral-bench-dvs-", dir=base))
    try:
        step = 0
        for run in range(1, args.runs + 1):
            for n in sizes:
                order = systems if step % 2 == 0 else list(reversed(systems))
                step += 1
                for kind in order:
                    if kind == "swarm" and swarm_unavailable:
                        continue
                    try:
                        trials.append(await run_trial(kind, n, run, workdir, args, log))
                    except Unavailable as exc:
                        swarm_unavailable = str(exc)
                        log(f"SWARM NOT MEASURED: Docker cannot run here: {exc}")
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            unmount_under(workdir)
            shutil.rmtree(workdir, ignore_errors=True)

    rows = summarize(trials)
    log("")
    for line in table(rows):
        log(line)
    log("Medians over the runs without errors. Ratios are Corral ÷ Swarm: below 1, Corral took less time, "
        "CPU or memory.")
    log("CPU: the control plane (Corral: the server process; Swarm: dockerd + containerd, less the estimated "
        "cost of this script's task polling). With helpers: plus every per-container process (Corral: sh "
        "wrappers and containers; Swarm: containerd shims, runc, docker-init and containers) and reaped "
        "children. Helpers PSS: Corral's wrappers, Swarm's shims (the containers' processes not included).")
    if swarm_unavailable:
        log(f"SWARM NOT MEASURED: {swarm_unavailable}")
    for n in sizes:
        swarm = [t for t in trials if t.system == "swarm" and t.n == n and not t.errors]
        if swarm:
            log(f"Swarm N={n}: its task polling cost an estimated "
                f"{fmt(median([t.observer_cpu_s.get('deploy', 0) for t in swarm]))} s (deploy) and "
                f"{fmt(median([t.observer_cpu_s.get('update', 0) for t in swarm]))} s (update) of dockerd + "
                f"containerd CPU, taken out of the CPU columns (median polls: deploy "
                f"{median([t.polls.get('deploy', 0) for t in swarm]):.0f}, update "
                f"{median([t.polls.get('update', 0) for t in swarm]):.0f}; one poll "
                f"{fmt(median([t.poll_cpu_ms.get('deploy', math.nan) for t in swarm]), 1)} ms at N tasks)")
        corral = [t for t in trials if t.system == "corral" and t.n == n and not t.errors]
        if corral:
            log(f"Corral N={n}: Deployment status reported the rollout complete after median "
                f"{fmt(median([t.rollout_status_s for t in corral]))} s; during the update at most "
                f"{max(t.max_pods_seen for t in corral)} pods, "
                f"at least {min(t.min_ready_seen for t in corral)} ready")
        if swarm:
            log(f"Swarm N={n}: during the update at most {max(t.max_pods_seen for t in swarm)} live tasks, "
                f"at least {min(t.min_ready_seen for t in swarm)} running")
    for n in sizes:
        corral = [t for t in trials if t.system == "corral" and t.n == n and not t.errors]
        if n == 100 and corral:
            med = median([t.deploy_s for t in corral])
            log(f"target: 100 replicas Ready in under 5 s: Corral median {fmt(med)} s: "
                + ("met" if med < 5 else "MISSED"))
    for t in trials:
        noisy = {k: v for k, v in t.other_load_cores.items() if v > BUSY_MACHINE_CORES}
        if noisy:
            log(f"WARNING: other load on the machine during {t.system} N={t.n} run {t.run}: "
                + ", ".join(f"{k} {v:.2f} cores" for k, v in noisy.items()))
        for e in t.errors:
            log(f"ERROR {t.system} N={t.n} run {t.run}: {e}")
    elapsed = time.perf_counter() - t0
    log(f"total {elapsed:.0f} s")
    out = Path(args.out) if args.out else RESULTS_DIR / f"deploy_vs_swarm-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "started_utc": started.isoformat(),
        "elapsed_s": elapsed, "versions": vers, "swarm_unavailable": swarm_unavailable,
        "swarm_storage_driver": SwarmSystem.storage_driver,
        "settings": {k: v for k, v in vars(args).items() if k != "install_peers"},
        "summary": rows, "trials": [asdict(t) for t in trials], "log": lines,
    }, indent=1, default=lambda o: None))
    print(f"wrote {out}")
    return 1 if any(t.errors for t in trials) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--replicas", default="100,500", help="comma-separated sizes (default 100,500)")
    parser.add_argument("--runs", type=int, default=3, help="trials per system and size (default 3)")
    parser.add_argument("--systems", default="corral,swarm", help="comma-separated: corral, swarm")
    parser.add_argument("--install-peers", action="store_true",
                        help="apt-get install docker.io busybox-static first")
    parser.add_argument("--storage-driver", default="auto",
                        help="dockerd storage driver (default: overlay2, else vfs)")
    parser.add_argument("--swarm-parallelism", default="50%",
                        help="Swarm update parallelism, a count or a percentage of N (default 50%%: the "
                             "replacements Corral's 25%% surge + 25%% unavailable allow in flight)")
    parser.add_argument("--swarm-order", default="start-first", choices=("start-first", "stop-first"))
    parser.add_argument("--swarm-network", default="default", choices=("default", "host"),
                        help="default: each task in its own network namespace with only lo (--bridge=none)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between deploy and update")
    parser.add_argument("--workdir", help="where data dirs go (default: the system temp dir)")
    parser.add_argument("--out", help="JSON results (default bench/results/deploy_vs_swarm-<time>.json)")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="sample Corral's server with py-spy during deploy and update (diagnosis only)")
    parser.add_argument("--keep", action="store_true", help="keep the work dirs and logs")
    args = parser.parse_args()
    if args.install_peers:
        install_peers()
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(amain(args)))
    sys.exit(uvloop.run(amain(args)))


if __name__ == "__main__":
    main()
