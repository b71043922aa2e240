"""Corral's API server against a single-member etcd, side by side in one run on the same disk.

What is measured (see bench/README.md for the details and docs/benchmarks.md for recorded results):

* create  -- Corral: ``POST /api/v1/namespaces/NS/configmaps`` (a small ConfigMap);
             etcd:   ``/v3/kv/txn`` "create if absent" (compare create_revision == 0, then put the same JSON
                     bytes the Corral client sent), which is what kube-apiserver sends etcd for a create.
* get     -- Corral: ``GET .../configmaps/NAME``;  etcd: ``/v3/kv/range`` of one key (default, linearizable).
* list    -- Corral: ``GET .../configmaps`` with 1k and 10k objects in the namespace;
             etcd:   ``/v3/kv/range`` over the same key prefix holding 1k and 10k keys.
* watch   -- 100 watchers (Corral: ``GET ...?watch=true&resourceVersion=N``; etcd: one ``/v3/watch``
             stream each over the gRPC gateway), one writer creating objects at a fixed pace with its send
             time embedded in the object; latency = a watcher has parsed the event - the writer sent it.

Create and get run with 1 and 50 concurrent clients (closed loop: each client sends its next request when
the previous one answered). Both servers speak HTTPS with a certificate from the same kind of CA (EC P-256,
made by Corral's own PKI code), both are driven by the same aiohttp client code in this process, and every
response is read and parsed into Python objects (etcd values are base64-decoded and JSON-parsed) so the
client does the same work for both. Each phase runs in ABBA order (Corral, etcd, etcd, Corral; two rounds of
half the time) so drift in a shared machine's load does not favour either side.

Safety: only 127.0.0.1; etcd and Corral are child processes stopped by pid in ``finally``; every loop is
bounded by a count or a deadline.

Run: ``.venv/bin/python bench/api_vs_etcd.py [--quick]``. Needs ``etcd`` on PATH (Debian: etcd-server).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NAMESPACES = ("bench-warm", "bench-create", "bench-small", "bench-large", "bench-watch")
WATCHERS = 100
BUSY_MACHINE_CORES = 0.3  # foreign CPU load during a phase above which the run is flagged as noisy

# ----------------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    create_c1_seconds: float
    create_c50_seconds: float
    small_list: int
    large_list: int
    get_seconds: float
    list_small_seconds: float
    list_large_seconds: float
    watch_writes: int
    watch_rate: float  # writes per second during the watch phase
    warmup_ops: int
    max_creates: int = 200_000  # a hard bound on any timed create loop


FULL = Params(create_c1_seconds=8, create_c50_seconds=20, small_list=1_000, large_list=10_000, get_seconds=6,
              list_small_seconds=5, list_large_seconds=8, watch_writes=200, watch_rate=20, warmup_ops=200)
QUICK = Params(create_c1_seconds=1.5, create_c50_seconds=3, small_list=100, large_list=1_000, get_seconds=1.5,
               list_small_seconds=1.5, list_large_seconds=2, watch_writes=20, watch_rate=20, warmup_ops=50)

# ----------------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix"."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine, all cores, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def configmap_body(name: str, extra: dict[str, str] | None = None) -> bytes:
    """A small ConfigMap: three short data keys and a label; the same bytes go to etcd."""
    data = {"color": "blue", "greeting": "hello from the corral benchmark",
            "settings.ini": "[main]\nretries = 3\ntimeout = 30s\n"}
    if extra:
        data.update(extra)
    return orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": name, "labels": {"app": "bench"}}, "data": data})


def stop_process(proc: subprocess.Popen[bytes] | None, what: str) -> None:
    """Stop one child we started, by its pid: SIGTERM, then SIGKILL after 10 s."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        print(f"  {what} (pid {proc.pid}) ignored SIGTERM; killing it", file=sys.stderr)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


# ----------------------------------------------------------------------------------------------- targets


class HttpTarget:
    """Common plumbing: one aiohttp session for request/response traffic, another for watch streams."""

    name = ""

    def __init__(self, base: str, ca_pem: bytes, headers: dict[str, str], pid: int) -> None:
        self.base = base
        self.pid = pid
        # No CA means plain HTTP (only with --etcd-plain-http).
        self.ssl: ssl.SSLContext | None = (ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem
                                           else None)
        self.headers = headers
        self.session: aiohttp.ClientSession | None = None
        self.watch_session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=self.ssl or False), headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=120))
        self.watch_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=self.ssl or False), headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=30))

    async def close(self) -> None:
        for session in (self.session, self.watch_session):
            if session is not None:
                await session.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.session is not None
        return self.session

    # The operations, each the same request/response work for both systems (see the module docstring).

    async def prepare_namespace(self, ns: str) -> None:
        raise NotImplementedError

    async def create(self, ns: str, name: str, body: bytes) -> None:
        raise NotImplementedError

    async def get(self, ns: str, name: str) -> None:
        raise NotImplementedError

    async def list(self, ns: str) -> int:
        """The number of objects listed, all parsed."""
        raise NotImplementedError

    async def start_watch(self, ns: str, on_object: Callable[[dict[str, Any]], None]) -> asyncio.Task[None]:
        """Returns once the watch is established; the task feeds every object received to ``on_object``."""
        raise NotImplementedError


class OpFailed(Exception):
    pass


class CorralTarget(HttpTarget):
    name = "corral"

    def _coll(self, ns: str) -> str:
        return f"{self.base}/api/v1/namespaces/{ns}/configmaps"

    async def prepare_namespace(self, ns: str) -> None:
        body = orjson.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        async with self.http.post(f"{self.base}/api/v1/namespaces", data=body,
                                  headers={"Content-Type": "application/json"}) as resp:
            if resp.status not in (201, 409):
                raise OpFailed(f"create namespace {ns}: HTTP {resp.status} {await resp.text()}")

    async def create(self, ns: str, name: str, body: bytes) -> None:
        async with self.http.post(self._coll(ns), data=body,
                                  headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            if resp.status != 201:
                raise OpFailed(f"create: HTTP {resp.status} {raw[:300]!r}")
        orjson.loads(raw)

    async def get(self, ns: str, name: str) -> None:
        async with self.http.get(f"{self._coll(ns)}/{name}") as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise OpFailed(f"get: HTTP {resp.status} {raw[:300]!r}")
        orjson.loads(raw)

    async def list(self, ns: str) -> int:
        async with self.http.get(self._coll(ns)) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise OpFailed(f"list: HTTP {resp.status} {raw[:300]!r}")
        return len(orjson.loads(raw)["items"])

    async def stored_object_bytes(self, ns: str, name: str) -> int:
        async with self.http.get(f"{self._coll(ns)}/{name}") as resp:
            return len(await resp.read())

    async def start_watch(self, ns: str, on_object: Callable[[dict[str, Any]], None]) -> asyncio.Task[None]:
        async with self.http.get(self._coll(ns), params={"limit": "1"}) as resp:
            rv = orjson.loads(await resp.read())["metadata"]["resourceVersion"]
        assert self.watch_session is not None
        resp = await self.watch_session.get(self._coll(ns), params={"watch": "true", "resourceVersion": rv})
        if resp.status != 200:
            raise OpFailed(f"watch: HTTP {resp.status} {await resp.text()}")
        # The server registers the store subscription before it sends the headers: the watch is live now.

        async def read() -> None:
            try:
                async for line in resp.content:
                    if line.strip():
                        event = orjson.loads(line)
                        on_object(event["object"])
            finally:
                resp.close()

        return asyncio.get_running_loop().create_task(read())


class EtcdTarget(HttpTarget):
    name = "etcd"

    @staticmethod
    def _key(ns: str, name: str) -> bytes:
        return f"/registry/configmaps/{ns}/{name}".encode()

    @staticmethod
    def _prefix(ns: str) -> bytes:
        return f"/registry/configmaps/{ns}/".encode()

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with self.http.post(f"{self.base}{path}", data=orjson.dumps(payload),
                                  headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise OpFailed(f"{path}: HTTP {resp.status} {raw[:300]!r}")
        result: dict[str, Any] = orjson.loads(raw)
        return result

    async def prepare_namespace(self, ns: str) -> None:
        # A namespace is just a key prefix in etcd; write a marker like kube-apiserver's namespace object.
        await self._post("/v3/kv/put", {"key": b64(f"/registry/namespaces/{ns}"), "value": b64(b"{}")})

    async def create(self, ns: str, name: str, body: bytes) -> None:
        key = b64(self._key(ns, name))
        reply = await self._post("/v3/kv/txn", {
            "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": b64(body)}}],
        })
        if not reply.get("succeeded"):
            raise OpFailed(f"create: {name} already exists")

    async def get(self, ns: str, name: str) -> None:
        reply = await self._post("/v3/kv/range", {"key": b64(self._key(ns, name))})
        kvs = reply.get("kvs") or []
        if len(kvs) != 1:
            raise OpFailed(f"get: {name} not found")
        orjson.loads(base64.b64decode(kvs[0]["value"]))

    async def list(self, ns: str) -> int:
        prefix = self._prefix(ns)
        reply = await self._post("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        items = [orjson.loads(base64.b64decode(kv["value"])) for kv in reply.get("kvs") or []]
        return len(items)

    async def start_watch(self, ns: str, on_object: Callable[[dict[str, Any]], None]) -> asyncio.Task[None]:
        prefix = self._prefix(ns)
        assert self.watch_session is not None
        resp = await self.watch_session.post(
            f"{self.base}/v3/watch", headers={"Content-Type": "application/json"},
            data=orjson.dumps({"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}}))
        if resp.status != 200:
            raise OpFailed(f"watch: HTTP {resp.status} {await resp.text()}")
        first = orjson.loads(await resp.content.readline())
        if not first.get("result", {}).get("created"):
            resp.close()
            raise OpFailed(f"watch: unexpected first message {first!r}")

        async def read() -> None:
            try:
                async for line in resp.content:
                    if line.strip():
                        message = orjson.loads(line)
                        for event in message.get("result", {}).get("events") or []:
                            on_object(orjson.loads(base64.b64decode(event["kv"]["value"])))
            finally:
                resp.close()

        return asyncio.get_running_loop().create_task(read())


# ----------------------------------------------------------------------------------------------- measuring


@dataclass
class Samples:
    """Raw measurements of one or more rounds of one phase on one target."""

    latencies: list[float] = field(default_factory=list)
    per_second: list[int] = field(default_factory=list)  # completions in each whole second of each round
    errors: int = 0
    first_error: str | None = None
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    steal_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def start_cpu(self, pid: int) -> Callable[[], None]:
        """Start counting CPU time; call the result at the end of the measured interval."""
        server0, client0 = proc_cpu_seconds(pid), self_cpu_seconds()
        machine0, steal0 = machine_cpu_seconds()

        def stop() -> None:
            machine1, steal1 = machine_cpu_seconds()
            self.server_cpu += proc_cpu_seconds(pid) - server0
            self.client_cpu += self_cpu_seconds() - client0
            self.machine_cpu += machine1 - machine0
            self.steal_cpu += steal1 - steal0
        return stop

    def add(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.per_second += other.per_second
        self.errors += other.errors
        self.first_error = self.first_error or other.first_error
        self.wall += other.wall
        self.server_cpu += other.server_cpu
        self.client_cpu += other.client_cpu
        self.machine_cpu += other.machine_cpu
        self.steal_cpu += other.steal_cpu
        for key, value in other.extra.items():
            self.extra.setdefault(key, []).append(value)


def whole_seconds(completions: list[float], wall: float) -> list[int]:
    counts = [0] * int(wall)
    for t in completions:
        if int(t) < len(counts):
            counts[int(t)] += 1
    return counts


@dataclass
class PhaseResult:
    phase: str
    target: str
    concurrency: int
    ops: int
    errors: int
    wall_s: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    worst_1s_ops: int | None
    server_cpu_cores: float
    client_cpu_cores: float
    other_cpu_cores: float  # everything else on the machine: the idle peer server, other users' work
    steal_cores: float
    first_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def summarise(phase: str, target: str, concurrency: int, s: Samples, rate: bool = True) -> PhaseResult:
    lat = sorted(s.latencies)
    wall = s.wall or math.nan
    return PhaseResult(
        phase=phase, target=target, concurrency=concurrency, ops=len(lat), errors=s.errors,
        wall_s=round(s.wall, 3), ops_per_s=round(len(lat) / wall, 1),
        p50_ms=round(percentile(lat, 0.50) * 1e3, 3), p99_ms=round(percentile(lat, 0.99) * 1e3, 3),
        mean_ms=round(sum(lat) / len(lat) * 1e3, 3) if lat else math.nan,
        max_ms=round(lat[-1] * 1e3, 3) if lat else math.nan,
        worst_1s_ops=min(s.per_second) if rate and len(s.per_second) >= 2 else None,
        server_cpu_cores=round(s.server_cpu / wall, 3), client_cpu_cores=round(s.client_cpu / wall, 3),
        other_cpu_cores=round((s.machine_cpu - s.server_cpu - s.client_cpu) / wall, 3),
        steal_cores=round(s.steal_cpu / wall, 3),
        first_error=s.first_error, extra=s.extra)


Op = Callable[[int, random.Random], Awaitable[Any]]


async def closed_loop(target: HttpTarget, concurrency: int, op: Op, *, count: int | None = None,
                      seconds: float | None = None, min_count: int = 0,
                      seed: int = 1) -> Samples:
    """``concurrency`` clients, each sending its next request when the previous one answered.

    Stops after ``count`` operations or at ``seconds`` (no new request starts after the deadline, unless fewer
    than ``min_count`` have been started).
    """
    assert count is not None or seconds is not None
    counter = itertools.count()
    out = Samples()
    completions: list[float] = []
    stop_cpu = out.start_cpu(target.pid)
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else math.inf

    async def client(worker: int) -> None:
        rng = random.Random(seed * 10_007 + worker)
        while True:
            index = next(counter)
            if (count is not None and index >= count) or (
                    index >= min_count and time.perf_counter() >= deadline):
                return
            t0 = time.perf_counter()
            try:
                await op(index, rng)
            except Exception as exc:  # counted and reported, never hidden
                out.errors += 1
                if out.first_error is None:
                    out.first_error = f"{type(exc).__name__}: {exc}"[:500]
                if out.errors > 100 and out.errors > len(out.latencies):
                    raise
                continue
            t1 = time.perf_counter()
            out.latencies.append(t1 - t0)
            completions.append(t1 - start)

    await asyncio.gather(*(client(w) for w in range(concurrency)))
    out.wall = time.perf_counter() - start
    stop_cpu()
    out.per_second = whole_seconds(completions, out.wall)
    return out


async def watch_delivery(target: HttpTarget, writes: int, rate: float, round_no: int) -> Samples:
    """WATCHERS streams on one namespace; a paced writer creates objects stamped with their send time."""
    ns = "bench-watch"
    expected = writes * WATCHERS
    out = Samples()
    received = 0
    all_in = asyncio.Event()
    per_watcher = [0] * WATCHERS

    def make_handler(index: int) -> Callable[[dict[str, Any]], None]:
        def handle(obj: dict[str, Any]) -> None:
            nonlocal received
            out.latencies.append((time.perf_counter_ns() - int(obj["data"]["sentAt"])) / 1e9)
            per_watcher[index] += 1
            received += 1
            if received >= expected:
                all_in.set()
        return handle

    tasks = [await target.start_watch(ns, make_handler(i)) for i in range(WATCHERS)]
    write_latencies: list[float] = []
    try:
        stop_cpu = out.start_cpu(target.pid)
        start = time.perf_counter()
        for i in range(writes):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            name = f"w{round_no}-{i:06d}"
            sent = time.perf_counter_ns()
            await target.create(ns, name, configmap_body(name, {"sentAt": str(sent)}))
            write_latencies.append((time.perf_counter_ns() - sent) / 1e9)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 15)
        out.wall = time.perf_counter() - start
        stop_cpu()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out.errors = expected - received
    if out.errors:
        out.first_error = f"{out.errors} of {expected} deliveries missing"
    write_sorted = sorted(write_latencies)
    out.extra = {"writes": writes, "deliveries_expected": expected,
                 "min_deliveries_per_watcher": min(per_watcher),
                 "write_p50_ms": round(percentile(write_sorted, 0.5) * 1e3, 3),
                 "write_p99_ms": round(percentile(write_sorted, 0.99) * 1e3, 3)}
    return out


# ----------------------------------------------------------------------------------------------- the run


def object_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}"


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


@contextlib.asynccontextmanager
async def profiled(target: HttpTarget, label: str, profile_dir: Path | None) -> AsyncIterator[None]:
    """With --py-spy: sample Corral's server process during one phase (collapsed stacks, for flame graphs)."""
    if profile_dir is None or target.name != "corral":
        yield
        return
    out = profile_dir / f"{label.replace(' ', '_')}.txt"
    py_spy = find_py_spy()
    assert py_spy is not None
    proc = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(target.pid), "--output", str(out), "--format", "raw",
        "--rate", "200", "--nonblocking", "--threads", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 60)


class Bench:
    """Runs each phase on every target in ABBA order (Corral, etcd, etcd, Corral), two rounds of half the
    time each, so a machine that gets busier or quieter during a phase does not favour either side."""

    def __init__(self, targets: list[HttpTarget], params: Params, log: Callable[[str], None],
                 profile_dir: Path | None) -> None:
        self.targets = targets
        self.params = params
        self.log = log
        self.profile_dir = profile_dir
        self.results: list[PhaseResult] = []

    def order(self) -> list[tuple[int, HttpTarget]]:
        return [(0, t) for t in self.targets] + [(1, t) for t in reversed(self.targets)]

    def record(self, result: PhaseResult) -> None:
        self.results.append(result)
        r = result
        self.log(f"  {r.phase:<20} {r.target:<6} c={r.concurrency:<3} {r.ops:>6} ops {r.ops_per_s:>8.1f}/s  "
                 f"p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms  cores: server {r.server_cpu_cores:4.2f} "
                 f"client {r.client_cpu_cores:4.2f} other {r.other_cpu_cores:4.2f}"
                 + (f"  ERRORS {r.errors}" if r.errors else ""))

    async def phase(self, phase: str, concurrency: int,
                    make_op: Callable[[HttpTarget, int], Op],
                    seconds: float, warmup: int, min_count: int = 0, seed: int = 1) -> None:
        samples = {t.name: Samples() for t in self.targets}
        for round_no, target in self.order():
            op = make_op(target, round_no)
            if warmup:
                await closed_loop(target, concurrency, make_op(target, 100 + round_no), count=warmup, seed=99)
            async with profiled(target, f"{phase}-c{concurrency}-r{round_no}", self.profile_dir):
                samples[target.name].add(await closed_loop(target, concurrency, op, seconds=seconds / 2,
                                                           min_count=min_count, seed=seed + round_no))
        for target in self.targets:
            self.record(summarise(phase, target.name, concurrency, samples[target.name]))

    async def run(self) -> list[PhaseResult]:
        p = self.params
        for target in self.targets:
            for ns in NAMESPACES:
                await target.prepare_namespace(ns)

        for conc, seconds in ((1, p.create_c1_seconds), (50, p.create_c50_seconds)):
            self.log(f"create, {conc} client(s), {seconds:g} s per target")

            def create_op(target: HttpTarget, round_no: int, conc: int = conc) -> Op:
                ns = "bench-warm" if round_no >= 100 else "bench-create"

                async def op(i: int, _rng: random.Random) -> None:
                    name = object_name(f"c{conc}-r{round_no}", i)
                    await target.create(ns, name, configmap_body(name))
                return op

            await self.phase("create", conc, create_op, seconds, p.warmup_ops // 2)

        self.log(f"populating {p.small_list} and {p.large_list} objects for list and get "
                 "(50 clients, untimed setup)")
        for ns, size in (("bench-small", p.small_list), ("bench-large", p.large_list)):
            for target in self.targets:
                async def fill(i: int, _rng: random.Random, target: HttpTarget = target,
                               ns: str = ns) -> None:
                    name = object_name("obj", i)
                    await target.create(ns, name, configmap_body(name))
                filled = await closed_loop(target, 50, fill, count=size)
                if filled.errors:
                    raise RuntimeError(f"{target.name}: populating {ns} failed: {filled.first_error}")
                self.record(summarise(f"populate {size}", target.name, 50, filled))

        for conc in (1, 50):
            self.log(f"get, {conc} client(s), {p.get_seconds:g} s per target (random objects of the "
                     f"{p.large_list})")

            def get_op(target: HttpTarget, _round: int) -> Op:
                async def op(_i: int, rng: random.Random) -> None:
                    await target.get("bench-large", object_name("obj", rng.randrange(p.large_list)))
                return op

            await self.phase("get", conc, get_op, p.get_seconds, p.warmup_ops // 2, seed=conc)

        for ns, size, seconds in (("bench-small", p.small_list, p.list_small_seconds),
                                  ("bench-large", p.large_list, p.list_large_seconds)):
            self.log(f"list {size} objects, 1 client, {seconds:g} s per target")

            def list_op(target: HttpTarget, _round: int, ns: str = ns, size: int = size) -> Op:
                async def op(_i: int, _rng: random.Random) -> None:
                    got = await target.list(ns)
                    if got != size:
                        raise OpFailed(f"list returned {got} items, expected {size}")
                return op

            # A slow list still gets a few samples per round for its percentiles.
            await self.phase(f"list {size}", 1, list_op, seconds, warmup=1, min_count=3)

        self.log(f"watch delivery: {WATCHERS} watchers, {p.watch_writes} writes at {p.watch_rate:g}/s per "
                 "target")
        watch_samples = {t.name: Samples() for t in self.targets}
        for round_no, target in self.order():
            async with profiled(target, f"watch-r{round_no}", self.profile_dir):
                watch_samples[target.name].add(
                    await watch_delivery(target, p.watch_writes // 2, p.watch_rate, round_no))
        for target in self.targets:
            self.record(summarise("watch", target.name, WATCHERS, watch_samples[target.name], rate=False))
        return self.results


# ----------------------------------------------------------------------------------------------- servers


@dataclass
class Servers:
    root: Path
    etcd: subprocess.Popen[bytes] | None = None
    corral: subprocess.Popen[bytes] | None = None
    logs: list[Any] = field(default_factory=list)


def start_etcd(servers: Servers, tls: bool) -> tuple[str, bytes | None]:
    """A single-member etcd on free loopback ports, data dir beside Corral's; returns (url, CA PEM)."""
    data = servers.root / "etcd-data"
    client_port, peer_port = free_port(), free_port()
    scheme = "https" if tls else "http"
    client_url, peer_url = f"{scheme}://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    cmd = ["etcd", "--name", "default", "--data-dir", str(data),
           "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
           "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
           "--initial-cluster", f"default={peer_url}", "--initial-cluster-state", "new"]
    ca_pem: bytes | None = None
    if tls:
        # The same kind of certificate Corral serves with (EC P-256 from Corral's own PKI code).
        from corral.apiserver.tls import ensure_pki

        pki = ensure_pki(servers.root / "etcd-pki", ["127.0.0.1", "localhost"])
        cmd += ["--cert-file", str(pki.server_cert), "--key-file", str(pki.server_key)]
        ca_pem = pki.ca_pem()
    log_file = open(servers.root / "etcd.log", "wb")  # noqa: SIM115 - closed with the servers
    servers.logs.append(log_file)
    servers.etcd = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    context = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else None
    deadline = time.monotonic() + 30
    import urllib.request

    while time.monotonic() < deadline:
        if servers.etcd.poll() is not None:
            raise RuntimeError(f"etcd exited with {servers.etcd.returncode}; see {servers.root / 'etcd.log'}")
        try:
            with urllib.request.urlopen(f"{client_url}/health", timeout=2, context=context) as resp:
                if json.loads(resp.read()).get("health") == "true":
                    return client_url, ca_pem
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("etcd did not become healthy within 30 s")


def start_corral(servers: Servers, use_cli_up: bool) -> tuple[str, bytes, str]:
    """Corral's API server in its own process; returns (url, CA PEM, token) from its kubeconfig."""
    data = servers.root / "corral-data"
    log_file = open(servers.root / "corral.log", "wb")  # noqa: SIM115 - closed with the servers
    servers.logs.append(log_file)
    kubeconfig = data / "kubeconfig"
    if use_cli_up:
        port = free_port()
        cmd = [sys.executable, "-m", "corral.cli.main", "up", "--data-dir", str(data), "--port", str(port)]
        servers.corral = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not kubeconfig.exists():
            if servers.corral.poll() is not None:
                raise RuntimeError(f"corral up exited with {servers.corral.returncode}; see corral.log")
            time.sleep(0.1)
    else:
        cmd = [sys.executable, "-m", "corral.testing.serve", "--data-dir", str(data), "--port", "0"]
        servers.corral = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_file,
                                          start_new_session=True)
        assert servers.corral.stdout is not None
        line = servers.corral.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"Corral did not start (exit {servers.corral.poll()}); see "
                               f"{servers.root / 'corral.log'}")
    doc = yaml.safe_load(kubeconfig.read_text())
    cluster = doc["clusters"][0]["cluster"]
    token = doc["users"][0]["user"]["token"]
    return cluster["server"], base64.b64decode(cluster["certificate-authority-data"]), token


def stop_servers(servers: Servers) -> None:
    stop_process(servers.corral, "corral")
    stop_process(servers.etcd, "etcd")
    for pipe in (servers.corral.stdout if servers.corral else None,):
        if pipe is not None:
            pipe.close()
    for handle in servers.logs:
        handle.close()


# ----------------------------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> str:
    if not b or math.isnan(a) or math.isnan(b):
        return "-"
    return f"{a / b:.2f}"


def cpu_us(r: PhaseResult, which: str) -> float:
    cores = r.server_cpu_cores if which == "server" else r.client_cpu_cores
    return cores / r.ops_per_s * 1e6 if r.ops_per_s else math.nan


def table(results: list[PhaseResult]) -> str:
    rows = [r for r in results if not r.phase.startswith(("populate", "warmup"))]
    keyed: dict[tuple[str, int], dict[str, PhaseResult]] = {}
    for r in rows:
        keyed.setdefault((r.phase, r.concurrency), {})[r.target] = r
    header = (f"{'operation':<12}{'clients':>8} | {'corral ops/s':>12}{'p50 ms':>9}{'p99 ms':>9} | "
              f"{'etcd ops/s':>11}{'p50 ms':>9}{'p99 ms':>9} | {'ops/s ratio':>11}{'p50 ratio':>10}"
              f"{'p99 ratio':>10}")
    lines = [header, "-" * len(header)]
    for (phase, conc), pair in keyed.items():
        c, e = pair.get("corral"), pair.get("etcd")
        if c is None or e is None:
            continue
        label = "watch" if phase == "watch" else phase
        clients = f"{conc}w" if phase == "watch" else str(conc)
        lines.append(f"{label:<12}{clients:>8} | {c.ops_per_s:>12.1f}{c.p50_ms:>9.2f}{c.p99_ms:>9.2f} | "
                     f"{e.ops_per_s:>11.1f}{e.p50_ms:>9.2f}{e.p99_ms:>9.2f} | "
                     f"{ratio(c.ops_per_s, e.ops_per_s):>11}{ratio(c.p50_ms, e.p50_ms):>10}"
                     f"{ratio(c.p99_ms, e.p99_ms):>10}")
    lines.append("ratios are Corral / etcd: ops/s ratio < 1 means Corral is slower, latency ratio > 1 means "
                 "Corral is slower.")
    lines.append("watch row: 'ops/s' = deliveries per second (writes x watchers), latency = write sent -> "
                 "event parsed by a watcher.")
    lines.append("")
    header = (f"{'CPU per op (us)':<20} | {'corral server':>13}{'client':>8} | {'etcd server':>11}"
              f"{'client':>8} | {'server ratio':>12} | {'other load (cores) c/e':>22}")
    lines += [header, "-" * len(header)]
    for (phase, conc), pair in keyed.items():
        c, e = pair.get("corral"), pair.get("etcd")
        if c is None or e is None:
            continue
        cs, cc, es, ec = cpu_us(c, "server"), cpu_us(c, "client"), cpu_us(e, "server"), cpu_us(e, "client")
        label = f"{phase} c={conc}" if phase != "watch" else f"watch {conc}w"
        lines.append(f"{label:<20} | {cs:>13.0f}{cc:>8.0f} | {es:>11.0f}{ec:>8.0f} | {ratio(cs, es):>12} | "
                     f"{max(0.0, c.other_cpu_cores):>10.2f} / {max(0.0, e.other_cpu_cores):<9.2f}")
    lines.append("CPU per op = process CPU time / operations (watch: per delivery); less sensitive to a busy "
                 "machine than ops/s. 'other load' = CPU used by everything else during the phase.")
    return "\n".join(lines)


def target_checks(results: list[PhaseResult]) -> list[dict[str, Any]]:
    def find(phase: str, conc: int) -> PhaseResult | None:
        return next((r for r in results
                     if r.target == "corral" and r.phase == phase and r.concurrency == conc), None)

    checks: list[dict[str, Any]] = []
    c50 = find("create", 50)
    if c50 is not None:
        checks.append({"target": ">= 1,000 creates/s sustained with 50 clients", "value": c50.ops_per_s,
                       "worst_1s": c50.worst_1s_ops, "met": c50.ops_per_s >= 1000})
        checks.append({"target": "p99 create < 100 ms (50 clients)", "value": c50.p99_ms,
                       "met": c50.p99_ms < 100})
    c1 = find("create", 1)
    if c1 is not None:
        checks.append({"target": "p99 create < 100 ms (1 client)", "value": c1.p99_ms,
                       "met": c1.p99_ms < 100})
    watch = find("watch", WATCHERS)
    if watch is not None:
        checks.append({"target": f"watch delivery p99 < 50 ms to {WATCHERS} watchers", "value": watch.p99_ms,
                       "met": watch.p99_ms < 50 and watch.errors == 0})
    return checks


def machine_facts() -> dict[str, Any]:
    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.splitlines()
    try:
        uvloop_version: str | None = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = None
    with open("/proc/loadavg") as handle:
        loadavg = handle.read().split()[:3]
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
        "platform": platform.platform(), "etcd": etcd_version[0] if etcd_version else "?",
        "aiohttp": aiohttp.__version__, "uvloop": uvloop_version, "loadavg_start": loadavg,
    }


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run (seconds per phase, 100/1k objects for lists)")
    parser.add_argument("--workdir", default=None,
                        help="where both data dirs go (default: the system temp dir); same disk for both")
    parser.add_argument("--out", default=None, help="JSON results file (default: bench/results/<time>.json)")
    parser.add_argument("--etcd-plain-http", action="store_true",
                        help="serve etcd over plain HTTP instead of HTTPS (Corral always uses HTTPS)")
    parser.add_argument("--corral-up", action="store_true",
                        help="run Corral with 'python -m corral.cli.main up' (whole control plane + agent) "
                             "instead of the API server alone (corral.testing.serve)")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs afterwards")
    parser.add_argument("--etcd-native-reference", action="store_true",
                        help="afterwards, also run 'etcdctl check perf --load=l' (Go client, native gRPC, "
                             "500 clients, 60 s) against the same etcd, as a reference for what etcd does "
                             "without the JSON gateway and the Python client")
    parser.add_argument("--py-spy", metavar="DIR", default=None,
                        help="sample Corral's server with py-spy during each phase, collapsed stacks into "
                             "DIR (diagnosis only: the sampler takes CPU, so do not record those numbers)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("etcd") is None:
        print("error: 'etcd' is not on PATH. This benchmark runs etcd side by side with Corral.\n"
              "Install it (Debian/Ubuntu): sudo apt-get install -y etcd-server etcd-client", file=sys.stderr)
        return 2
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)
    if args.py_spy and find_py_spy() is None:
        print("error: --py-spy needs py-spy on PATH or in this venv (pip install py-spy)", file=sys.stderr)
        return 2
    params = QUICK if args.quick else FULL
    facts = machine_facts()
    root = Path(tempfile.mkdtemp(prefix="corral-vs-etcd-", dir=args.workdir))
    servers = Servers(root)

    def log(message: str) -> None:
        print(message, flush=True)

    log(f"mode {'quick' if args.quick else 'full'}; data dirs under {root}; {facts['etcd']}; "
        f"python {facts['python']}; nproc {facts['nproc']}; load {' '.join(facts['loadavg_start'])}")
    results: list[PhaseResult] = []
    started = time.monotonic()
    try:
        etcd_url, etcd_ca = start_etcd(servers, tls=not args.etcd_plain_http)
        corral_url, corral_ca, token = start_corral(servers, args.corral_up)
        assert servers.corral is not None and servers.etcd is not None
        log(f"corral {corral_url} (pid {servers.corral.pid}), etcd {etcd_url} (pid {servers.etcd.pid})")
        corral = CorralTarget(corral_url, corral_ca, {"Authorization": f"Bearer {token}"}, servers.corral.pid)
        etcd = EtcdTarget(etcd_url, etcd_ca or b"", {}, servers.etcd.pid)

        async def go() -> list[PhaseResult]:
            await corral.open()
            await etcd.open()
            try:
                out = await Bench([corral, etcd], params, log,
                                  Path(args.py_spy) if args.py_spy else None).run()
                sizes = {"request_body_bytes": len(configmap_body(object_name("obj", 0))),
                         "corral_stored_object_bytes": await corral.stored_object_bytes(
                             "bench-large", object_name("obj", 0))}
                facts["object_sizes"] = sizes
                return out
            finally:
                await corral.close()
                await etcd.close()

        try:
            import uvloop

            results = uvloop.run(go())
            facts["client_loop"] = "uvloop"
        except ImportError:
            results = asyncio.run(go())
            facts["client_loop"] = "asyncio"
        if args.etcd_native_reference:
            log("etcdctl check perf --load=l (native gRPC reference, 60 s)")
            cmd = ["etcdctl", "--endpoints", etcd_url, "check", "perf", "--load=l"]
            if etcd_ca is not None:
                cmd += ["--cacert", str(root / "etcd-pki" / "ca.crt")]
            perf = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
            lines = [line for line in (perf.stdout + perf.stderr).splitlines()
                     if line.startswith(("PASS", "FAIL"))]
            log("  " + "\n  ".join(lines))
            facts["etcdctl_check_perf_l"] = lines
        facts["db_sizes_bytes"] = {
            "corral": sum(p.stat().st_size for p in (root / "corral-data").glob("state.db*")),
            "etcd": sum(p.stat().st_size for p in (root / "etcd-data").rglob("*") if p.is_file())}
    finally:
        stop_servers(servers)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    with open("/proc/loadavg") as handle:
        facts["loadavg_end"] = handle.read().split()[:3]
    facts["duration_s"] = round(time.monotonic() - started, 1)
    facts["mode"] = "quick" if args.quick else "full"
    facts["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    facts["etcd_transport"] = "http" if args.etcd_plain_http else "https"
    facts["corral_server"] = ("corral up" if args.corral_up
                              else "corral.testing.serve (API server + SQLite store)")
    checks = target_checks(results)

    print()
    print(table(results))
    print()
    for check in checks:
        worst = f" (worst 1 s window {check['worst_1s']:.0f})" if check.get("worst_1s") is not None else ""
        print(f"{'MET   ' if check['met'] else 'MISSED'} {check['target']}: {check['value']:.2f}{worst}")
    busy = [f"{r.phase} c={r.concurrency} on {r.target} ({r.other_cpu_cores:.2f} cores)" for r in results
            if r.other_cpu_cores > BUSY_MACHINE_CORES]
    if busy:
        print(f"WARNING other work used more than {BUSY_MACHINE_CORES} cores during: {', '.join(busy)}; "
              "those numbers are less reliable, consider running again on a quieter machine")
    errors = [r for r in results if r.errors]
    for r in errors:
        print(f"ERRORS {r.phase} {r.target} c={r.concurrency}: {r.errors} ({r.first_error})")
    out = Path(args.out) if args.out else RESULTS_DIR / (
        f"api_vs_etcd-{facts['mode']}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"facts": facts, "params": asdict(params), "checks": checks,
                               "results": [asdict(r) for r in results]}, indent=2))
    print(f"\nresults written to {out} ({facts['duration_s']} s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
