"""Corral's service proxy against HAProxy and nginx, side by side in one run, with the same backend and wrk.

Targets measured, each in its own process on loopback, in turn (never two at once):

* direct        -- wrk straight to the backend (the reference "backend alone").
* corral        -- ``corral.proxy.service_proxy.ServiceProxy`` in its own process (this script with
                   ``--serve-corral``), on uvloop when installed, fed one Service + EndpointSlice dict that
                   points to the backend; wrk connects to the ClusterIP.
* haproxy-tcp   -- HAProxy, ``nbthread 1``, ``mode tcp`` (layer 4, the same job as Corral's proxy).
* haproxy-http  -- HAProxy, ``nbthread 1``, ``mode http`` with keep-alive and ``http-reuse always``.
* nginx         -- nginx as an HTTP reverse proxy, ``worker_processes 1``, upstream keep-alive.
* haproxy-splice -- only when named in ``--targets``: haproxy-tcp plus ``option splice-auto`` (the kernel
                   moves the bytes with splice(2)), to see what HAProxy's defaults leave out on bulk.

The backend is nginx (``worker_processes 1``, access log off) answering ``/tiny`` with a 13-byte body from
its config (``return 200``, no file IO, so the backend costs as little as possible per request) and serving a
1 GiB file written to /dev/shm (tmpfs; the temp dir when /dev/shm is missing or small) with sendfile; the
file is deleted at the end.
Keep-alive limits are lifted everywhere (``keepalive_requests``), so no side closes a connection mid-run.

Per target and run: ``wrk -t2 -c32 -d<duration>s --latency`` on ``/tiny`` (requests/s, p50, p99 latency,
errors; wrk keeps its 32 connections open, so this is the per-request path), with ``--new-connections``
the same with ``-H "Connection: close"`` (a new connection per request: the accept/connect path), then one
``curl`` download of the 1 GiB file (MB/s). The CPU time of the proxy process (from
/proc) gives CPU per request, which moves much less than req/s with machine noise. Targets run in a
different order each run (rotated) so a machine that gets busier does not always hurt the same one;
the report has medians over ``--runs`` and ratios Corral / peer. It also times ``update()`` of a
ServiceProxy with 1,000 Services (first, unchanged snapshot, one endpoint changed), in this process.

Other load: CPU the machine spent busy (/proc/stat) beyond what wrk, curl, the backend and the proxy under
test used (their own CPU times); above 0.3 cores the phase is flagged. Other sandboxes on this VM's kernel
are not visible in /proc, so this is the only way to see them. This VM has 2 cores that wrk, the backend
and the proxy share, so every number here is lower than on a machine where each gets a core.

Peers: ``--install-peers`` runs ``apt-get install -y wrk haproxy nginx`` (Debian packages; their services
are not started). Safety: every process this script starts is a child it stops by pid in a ``finally``;
traffic only on 127.0.0.0/8.

Run: ``.venv/bin/python bench/service_proxy.py [--install-peers] [--runs 3] [--quick] [--py-spy DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
sys.path.insert(0, str(REPO / "src"))

TINY = b"hello, world\n"
GiB = 1 << 30
TARGETS = ("direct", "corral", "haproxy-tcp", "haproxy-http", "nginx")
EXTRA_TARGETS = ("haproxy-splice",)
"""Run only when named with ``--targets``: HAProxy in tcp mode with ``option splice-auto`` (kernel splice)."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(host: str, port: int, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (nginx workers), from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def machine_busy() -> float:
    """CPU seconds the machine spent busy (everything but idle and iowait), all cores.

    Interrupt and softirq time are included: with tick-based accounting (this VM) the kernel also charges
    it to the task that was running, so the processes' own CPU times include their loopback traffic.
    """
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


class Server:
    """A process this script started; stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], listen: tuple[str, int], cwd: Path | None = None) -> None:
        self.name = name
        self.listen = listen
        self.log_path = Path(tempfile.gettempdir()) / f"bench-proxy-{name}-{os.getpid()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd)
        self.profiler: subprocess.Popen[bytes] | None = None
        self.output = ""
        try:
            wait_listening(*listen, self.proc)
        except Exception:
            self.log.flush()
            log(self.log_path.read_text(errors="replace")[-2000:])
            self.stop()
            raise

    def cpu(self) -> float:
        return cpu_seconds(tree_pids(self.proc.pid))

    def stop(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT
            try:
                self.profiler.wait(30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait(10)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        with contextlib.suppress(OSError):
            self.output = self.log_path.read_text(errors="replace")
            self.log_path.unlink()


# ------------------------------------------------------------------------------------------ configs


def nginx_backend_conf(work: Path, port: int, root: Path) -> Path:
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = work / "backend.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {work}/backend.pid;
error_log {work}/backend-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/b-body;
    proxy_temp_path {work}/b-proxy;
    fastcgi_temp_path {work}/b-fcgi;
    uwsgi_temp_path {work}/b-uwsgi;
    scgi_temp_path {work}/b-scgi;
    default_type application/octet-stream;
    open_file_cache max=16;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        location = /tiny {{
            default_type text/plain;
            return 200 "{TINY.decode().strip()}\n";
        }}
    }}
}}
"""
    )
    return conf


def nginx_proxy_conf(work: Path, port: int, backend: int) -> Path:
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = work / "nginx-proxy.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {work}/proxy.pid;
error_log {work}/proxy-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/p-body;
    proxy_temp_path {work}/p-proxy;
    fastcgi_temp_path {work}/p-fcgi;
    uwsgi_temp_path {work}/p-uwsgi;
    scgi_temp_path {work}/p-scgi;
    upstream backend {{
        server 127.0.0.1:{backend};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""
    )
    return conf


def haproxy_conf(work: Path, mode: str, port: int, backend: int) -> Path:
    conf = work / f"haproxy-{mode}.cfg"
    http = "    option http-keep-alive\n    http-reuse always\n" if mode == "http" else ""
    if mode == "splice":
        mode, http = "tcp", "    option splice-auto\n"
    conf.write_text(
        f"""global
    nbthread 1
    maxconn 4096
    log stderr format raw local0 err

defaults
    mode {mode}
    timeout connect 1s
    timeout client 300s
    timeout server 300s
{http}
frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    server s1 127.0.0.1:{backend}
"""
    )
    return conf


# ------------------------------------------------------------------------------------------ load tools


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    proxy_cpu_s: float = 0.0
    wrk_cpu_s: float = 0.0
    other_cores: float = 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _latency(text: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not match:
        raise RuntimeError(f"no {percentile}% latency in wrk output:\n{text}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str, duration: float, connections: int, threads: int, close: bool = False
) -> tuple[WrkResult, float]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", url]
    if close:
        argv[1:1] = ["-H", "Connection: close"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{output}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if not rps or not total:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(v) for v in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    result = WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=_latency(output, "50"),
        p99_ms=_latency(output, "99"),
        requests=int(total.group(1)),
        errors=errors,
    )
    return result, usage.ru_utime + usage.ru_stime


@dataclass
class BulkResult:
    mb_per_s: float
    seconds: float
    proxy_cpu_s: float = 0.0
    other_cores: float = 0.0


def run_curl(url: str, size: int) -> tuple[BulkResult, float]:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"curl failed: {err.decode()}")
    got, seconds = out.decode().split()
    if int(got) != size:
        raise RuntimeError(f"curl downloaded {got} bytes, expected {size}")
    result = BulkResult(mb_per_s=size / float(seconds) / 1e6, seconds=float(seconds))
    return result, usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def measured(pids: list[int]) -> Iterator[dict[str, float]]:
    """CPU of ``pids`` and of the whole machine over the block; fills in ``proxy`` and ``busy`` seconds."""
    out: dict[str, float] = {}
    cpu0, busy0, wall0 = cpu_seconds(pids), machine_busy(), time.monotonic()
    yield out
    out["proxy"] = cpu_seconds(pids) - cpu0
    out["busy"] = machine_busy() - busy0
    out["wall"] = time.monotonic() - wall0


# ------------------------------------------------------------------------------------------ corral child


def corral_objects(
    cluster_ip: str, port: int, backend_port: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": 8080}],
        },
    }
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "bench-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "bench"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": backend_port, "protocol": "TCP"}],
    }
    return [service], [endpoint_slice]


def serve_corral(cluster_ip: str, port: int, backend_port: int, use_uvloop: bool) -> None:
    """Child mode: one ServiceProxy serving one Service until SIGTERM."""
    from corral.proxy.service_proxy import ServiceProxy

    async def main() -> None:
        proxy = ServiceProxy(["127.0.0.1"])
        await proxy.start()
        proxy.update(*corral_objects(cluster_ip, port, backend_port))
        await proxy.settle()
        print(
            f"corral proxy on {cluster_ip}:{port} (loop {type(asyncio.get_running_loop()).__module__})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        print(json.dumps(proxy.stats()), flush=True)
        await proxy.stop()

    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            use_uvloop = False
    if use_uvloop:
        uvloop.run(main())
    else:
        asyncio.run(main())


def program_thousand(runs: int) -> dict[str, float]:
    """Median ms of ServiceProxy.update with 1,000 Services: first, unchanged, one endpoint changed."""
    from corral.proxy.service_proxy import ServiceProxy

    def objects(i: int, backend: int) -> tuple[dict[str, Any], dict[str, Any]]:
        services, slices = corral_objects(f"127.110.{i // 250}.{1 + i % 250}", 18080, backend)
        services[0]["metadata"]["name"] = slices[0]["metadata"]["labels"]["kubernetes.io/service-name"] = (
            f"s{i}"
        )
        slices[0]["metadata"]["name"] = f"s{i}-abcde"
        return services[0], slices[0]

    samples: dict[str, list[float]] = {"first": [], "served": [], "unchanged": [], "one_changed": []}

    async def once() -> None:
        proxy = ServiceProxy(["127.0.0.1"])
        await proxy.start()
        pairs = [objects(i, 20000 + i % 3) for i in range(1000)]
        services, slices = [p[0] for p in pairs], [p[1] for p in pairs]
        t0 = time.perf_counter()
        proxy.update(services, slices)
        samples["first"].append(time.perf_counter() - t0)
        await proxy.settle()
        samples["served"].append(time.perf_counter() - t0)
        assert len(proxy.listening()) == 1000, proxy.errors()
        t0 = time.perf_counter()
        proxy.update(services, slices)
        samples["unchanged"].append(time.perf_counter() - t0)
        slices = list(slices)
        slices[500] = objects(500, 20009)[1]
        t0 = time.perf_counter()
        proxy.update(services, slices)
        samples["one_changed"].append(time.perf_counter() - t0)
        await proxy.stop()

    for _ in range(runs):
        asyncio.run(once())
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


# ------------------------------------------------------------------------------------------ main


@dataclass
class Report:
    date: str
    command: str
    machine: dict[str, Any]
    versions: dict[str, str]
    settings: dict[str, Any]
    wrk: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    bulk: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    close: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    program_1000_ms: dict[str, float] = field(default_factory=dict)
    corral_stats: list[Any] = field(default_factory=list)


def version_of(argv: list[str], pattern: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        match = re.search(pattern, out.stdout + out.stderr)
        if match:
            return match.group(1)
    return "?"


def install_peers() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "wrk", "haproxy", "nginx"], check=True, env=env)


def bulk_dir(size: int) -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 2 * size:
        return Path(tempfile.mkdtemp(prefix="bench-proxy-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="bench-proxy-"))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--install-peers", action="store_true", help="apt-get install -y wrk haproxy nginx")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--bulk-mib", type=int, default=1024, help="size of the bulk transfer")
    parser.add_argument("--quick", action="store_true", help="1 run, 3 s wrk, 256 MiB bulk")
    parser.add_argument("--targets", nargs="+", choices=TARGETS + EXTRA_TARGETS, default=list(TARGETS))
    parser.add_argument(
        "--new-connections",
        action="store_true",
        help="also run wrk with 'Connection: close' (one new connection per request)",
    )
    parser.add_argument("--no-uvloop", action="store_true", help="run Corral's proxy on the asyncio loop")
    parser.add_argument("--py-spy", type=Path, help="record Corral's proxy with py-spy into DIR (diagnosis)")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--serve-corral", nargs=3, metavar=("CLUSTER_IP", "PORT", "BACKEND_PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()

    if args.serve_corral:
        ip, port, backend = args.serve_corral
        serve_corral(ip, int(port), int(backend), not args.no_uvloop)
        return 0
    if args.install_peers:
        install_peers()
    missing = [tool for tool in ("wrk", "haproxy", "nginx", "curl") if shutil.which(tool) is None]
    if missing:
        log(f"missing: {' '.join(missing)}; run with --install-peers (apt-get install -y wrk haproxy nginx)")
        return 2
    if args.quick:
        args.runs, args.duration, args.bulk_mib = 1, min(args.duration, 3.0), min(args.bulk_mib, 256)

    started = time.monotonic()
    mode = "quick" if args.quick else "full"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    out_path = args.out or RESULTS_DIR / f"service_proxy-{mode}-{stamp}.json"
    try:
        uvloop_version = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = "not installed"
    report = Report(
        date=datetime.datetime.now(datetime.UTC).strftime("%a %b %d %H:%M:%S UTC %Y"),
        command=" ".join([".venv/bin/python", "bench/service_proxy.py", *sys.argv[1:]]),
        machine={"nproc": os.cpu_count(), "kernel": platform.release()},
        versions={
            "python": platform.python_version(),
            "uvloop": "off" if args.no_uvloop else uvloop_version,
            "haproxy": version_of(["haproxy", "-v"], r"version (\S+)"),
            "nginx": version_of(["nginx", "-v"], r"nginx/(\S+)"),
            "wrk": version_of(["wrk", "-v"], r"wrk (\S+)"),
            "curl": version_of(["curl", "--version"], r"curl (\S+)"),
        },
        settings={
            "runs": args.runs,
            "duration_s": args.duration,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "bulk_bytes": args.bulk_mib << 20,
        },
    )
    log(f"{report.date}: {report.command}")
    log(f"versions: {report.versions}")

    work = Path(tempfile.mkdtemp(prefix="bench-proxy-work-"))
    work.chmod(0o755)
    root = bulk_dir(args.bulk_mib << 20)
    root.chmod(0o755)
    servers: list[Server] = []
    try:
        chunk = random.randbytes(1 << 20)
        with open(root / "big", "wb") as handle:
            for _ in range(args.bulk_mib):
                handle.write(chunk)
        (root / "big").chmod(0o644)
        log(f"backend files in {root} ({args.bulk_mib} MiB)")

        backend_port = free_port()
        backend = Server(
            "backend",
            ["nginx", "-p", str(work), "-c", str(nginx_backend_conf(work, backend_port, root))],
            ("127.0.0.1", backend_port),
        )
        servers.append(backend)

        targets = list(args.targets)
        for run in range(args.runs):
            order = targets[run % len(targets) :] + targets[: run % len(targets)]
            log(f"--- run {run + 1}/{args.runs}: {' '.join(order)}")
            for name in order:
                proxy, address = start_target(name, work, backend_port, args)
                completed = 0
                try:
                    url = f"http://{address[0]}:{address[1]}"
                    # Warm up (connections, caches), then measure. The process tree is read after the
                    # warm-up: nginx listens from its master before its worker exists.
                    warm, _ = run_wrk(url + "/tiny", 1, args.connections, args.threads)
                    completed = warm.requests + 1  # + the bulk download
                    pids = tree_pids(proxy.proc.pid) if proxy else []
                    pids_all = pids + tree_pids(backend.proc.pid)
                    with measured(pids) as cpu, measured(pids_all) as ours:
                        result, wrk_cpu = run_wrk(
                            url + "/tiny", args.duration, args.connections, args.threads
                        )
                    result.proxy_cpu_s = cpu["proxy"]
                    result.wrk_cpu_s = wrk_cpu
                    result.other_cores = max(0.0, (ours["busy"] - ours["proxy"] - wrk_cpu) / ours["wall"])
                    report.wrk.setdefault(name, []).append(asdict(result))
                    completed += result.requests
                    flag = "  WARNING: other load" if result.other_cores > 0.3 else ""
                    log(
                        f"{name:13s} {result.requests_per_s:10,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}  "
                        f"proxy CPU {1e6 * result.proxy_cpu_s / max(result.requests, 1):5.1f} µs/req  "
                        f"other {result.other_cores:.2f} cores{flag}"
                    )
                    if args.new_connections:
                        with measured(pids) as cpu, measured(pids_all) as ours:
                            fresh, wrk_cpu = run_wrk(
                                url + "/tiny", args.duration, args.connections, args.threads, close=True
                            )
                        fresh.proxy_cpu_s = cpu["proxy"]
                        fresh.wrk_cpu_s = wrk_cpu
                        fresh.other_cores = max(0.0, (ours["busy"] - ours["proxy"] - wrk_cpu) / ours["wall"])
                        report.close.setdefault(name, []).append(asdict(fresh))
                        completed += fresh.requests
                        flag = "  WARNING: other load" if fresh.other_cores > 0.3 else ""
                        log(
                            f"{name:13s} {fresh.requests_per_s:10,.0f} conn/s p50 {fresh.p50_ms:6.2f} ms  "
                            f"p99 {fresh.p99_ms:6.2f} ms  errors {fresh.errors}  proxy CPU "
                            f"{1e6 * fresh.proxy_cpu_s / max(fresh.requests, 1):5.1f} µs/conn  "
                            f"other {fresh.other_cores:.2f} cores{flag}"
                        )
                    with measured(pids) as cpu, measured(pids_all) as ours:
                        bulk, curl_cpu = run_curl(url + "/big", args.bulk_mib << 20)
                    bulk.proxy_cpu_s = cpu["proxy"]
                    bulk.other_cores = max(0.0, (ours["busy"] - ours["proxy"] - curl_cpu) / ours["wall"])
                    report.bulk.setdefault(name, []).append(asdict(bulk))
                    flag = "  WARNING: other load" if bulk.other_cores > 0.3 else ""
                    log(
                        f"{name:13s} bulk {bulk.mb_per_s:8,.0f} MB/s ({bulk.seconds:.2f} s, proxy CPU "
                        f"{bulk.proxy_cpu_s:.2f} s)  other {bulk.other_cores:.2f} cores{flag}"
                    )
                finally:
                    if proxy is not None:
                        proxy.stop()
                        if name == "corral":
                            text = proxy_log_tail(proxy)
                            if text:
                                # wrk counts completed requests; requests in flight when it stops are
                                # counted by the proxy only, at most one per connection and wrk run.
                                counted = text["services"]["default/bench"]["requests"]
                                text["wrk_completed_requests"] = completed
                                report.corral_stats.append(text)
                                log(f"corral counted {counted:,} requests; completed: {completed:,}")
        log("--- programming 1,000 Services (ServiceProxy.update, in this process)")
        report.program_1000_ms = program_thousand(args.runs)
        log(
            "first update {first:.1f} ms (served after {served:.1f} ms), unchanged {unchanged:.1f} ms, "
            "one endpoint changed {one_changed:.1f} ms".format(**report.program_1000_ms)
        )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)

    RESULTS_DIR.mkdir(exist_ok=True)
    out_path.write_text(json.dumps(asdict(report), indent=2))  # first the raw numbers, whatever follows
    summary = summarize(report)
    out_path.write_text(json.dumps({**asdict(report), "summary": summary}, indent=2))
    log(f"raw results: {out_path.relative_to(REPO) if out_path.is_relative_to(REPO) else out_path}")
    log(f"took {time.monotonic() - started:.0f} s")
    return 0


def proxy_log_tail(server: Server) -> Any:
    """The counters Corral's proxy printed when it stopped (its last JSON line)."""
    for line in reversed(server.output.strip().splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


_py_spy_count = 0


def start_target(
    name: str, work: Path, backend_port: int, args: argparse.Namespace
) -> tuple[Server | None, tuple[str, int]]:
    if name == "direct":
        return None, ("127.0.0.1", backend_port)
    port = free_port()
    if name == "corral":
        ip = f"127.111.{random.randint(0, 255)}.{random.randint(1, 254)}"
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-corral",
            ip,
            str(port),
            str(backend_port),
        ]
        if args.no_uvloop:
            argv.append("--no-uvloop")
        if args.py_spy:
            args.py_spy.mkdir(parents=True, exist_ok=True)
        server = Server("corral", argv, (ip, port))
        if args.py_spy:
            global _py_spy_count
            _py_spy_count += 1
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            output = args.py_spy / f"corral-{_py_spy_count}.txt"
            record = [spy, "record", "-r", "200", "-f", "raw", "-o", str(output)]
            try:
                server.profiler = subprocess.Popen(
                    [*record, "--pid", str(server.proc.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except OSError:
                server.stop()
                raise
        return server, (ip, port)
    if name.startswith("haproxy"):
        conf = haproxy_conf(work, name.split("-")[1], port, backend_port)
        return Server(name, ["haproxy", "-db", "-f", str(conf)], ("127.0.0.1", port)), ("127.0.0.1", port)
    conf = nginx_proxy_conf(work, port, backend_port)
    return Server(name, ["nginx", "-p", str(work), "-c", str(conf)], ("127.0.0.1", port)), ("127.0.0.1", port)


QUIET = 0.3


def _ratio(corral: float, peer_value: float, peer: str) -> float | None:
    """Corral's CPU ÷ the peer's, or None for "direct" (no proxy) and an unmeasured (zero) peer."""
    return corral / peer_value if peer != "direct" and peer_value > 0 else None


"""Other load (cores) above which a phase counts as disturbed."""


def summarize(report: Report) -> dict[str, Any]:
    """Print the tables (markdown) and return the summary that goes into the JSON."""

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def per_request_us(row: dict[str, Any]) -> float:
        return 1e6 * row["proxy_cpu_s"] / max(row["requests"], 1)

    def per_gib_s(row: dict[str, Any]) -> float:
        return row["proxy_cpu_s"] * GiB / (report.settings["bulk_bytes"] or 1)

    summary: dict[str, Any] = {"targets": {}, "ratios": {}}
    log("\n=== medians over runs ===")
    log("| target | req/s | p50 ms | p99 ms | errors | proxy CPU µs/req | bulk MB/s | proxy CPU s/GiB |")
    log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in TARGETS + EXTRA_TARGETS:
        if name not in report.wrk:
            continue
        rows, bulk = report.wrk[name], report.bulk[name]
        entry = {
            "requests_per_s": med([r["requests_per_s"] for r in rows]),
            "p50_ms": med([r["p50_ms"] for r in rows]),
            "p99_ms": med([r["p99_ms"] for r in rows]),
            "errors": sum(r["errors"] for r in rows),
            "cpu_us_per_request": med([per_request_us(r) for r in rows]),
            "mb_per_s": med([b["mb_per_s"] for b in bulk]),
            "cpu_s_per_gib": med([per_gib_s(b) for b in bulk]),
        }
        summary["targets"][name] = entry
        proxy_cells = (
            ("—", "—")
            if name == "direct"
            else (f"{entry['cpu_us_per_request']:.1f}", f"{entry['cpu_s_per_gib']:.2f}")
        )
        log(
            f"| {name} | {entry['requests_per_s']:,.0f} | {entry['p50_ms']:.2f} | {entry['p99_ms']:.2f} | "
            f"{entry['errors']} | {proxy_cells[0]} | {entry['mb_per_s']:,.0f} | {proxy_cells[1]} |"
        )
    if "corral" not in report.wrk:
        return summary

    log("\n=== Corral ÷ peer ===")
    log(
        "| peer | req/s (medians) | req/s (median of per-run ratios) | req/s, quiet runs only | "
        "CPU/req | bulk MB/s (medians) | bulk, per-run ratios | bulk, quiet runs only | CPU/GiB |"
    )
    log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    corral_rows, corral_bulk = report.wrk["corral"], report.bulk["corral"]
    corral = summary["targets"]["corral"]
    for peer in ("haproxy-tcp", "haproxy-http", "nginx", "direct", *EXTRA_TARGETS):
        if peer not in report.wrk:
            continue
        rows, bulk, ref = report.wrk[peer], report.bulk[peer], summary["targets"][peer]
        pairs = list(zip(corral_rows, rows, strict=False))
        bulk_pairs = list(zip(corral_bulk, bulk, strict=False))
        run_ratios = [c["requests_per_s"] / p["requests_per_s"] for c, p in pairs]
        quiet = [
            c["requests_per_s"] / p["requests_per_s"]
            for c, p in pairs
            if c["other_cores"] <= QUIET and p["other_cores"] <= QUIET
        ]
        bulk_ratios = [c["mb_per_s"] / p["mb_per_s"] for c, p in bulk_pairs]
        bulk_quiet = [
            c["mb_per_s"] / p["mb_per_s"]
            for c, p in bulk_pairs
            if c["other_cores"] <= QUIET and p["other_cores"] <= QUIET
        ]
        ratios = {
            "requests_per_s": corral["requests_per_s"] / ref["requests_per_s"],
            "requests_per_s_per_run": med(run_ratios),
            "requests_per_s_quiet": quiet,
            "cpu_per_request": _ratio(corral["cpu_us_per_request"], ref["cpu_us_per_request"], peer),
            "mb_per_s": corral["mb_per_s"] / ref["mb_per_s"],
            "mb_per_s_per_run": med(bulk_ratios),
            "mb_per_s_quiet": bulk_quiet,
            "cpu_per_gib": _ratio(corral["cpu_s_per_gib"], ref["cpu_s_per_gib"], peer),
        }
        summary["ratios"][peer] = ratios

        def cell(value: float | None) -> str:
            return "—" if value is None else f"{value:.2f}"

        log(
            f"| {peer} | {cell(ratios['requests_per_s'])} | {cell(ratios['requests_per_s_per_run'])} | "
            f"{', '.join(f'{q:.2f}' for q in quiet) or 'none'} | {cell(ratios['cpu_per_request'])} | "
            f"{cell(ratios['mb_per_s'])} | {cell(ratios['mb_per_s_per_run'])} | "
            f"{', '.join(f'{q:.2f}' for q in bulk_quiet) or 'none'} | {cell(ratios['cpu_per_gib'])} |"
        )
    if report.close:
        log("\n=== new connection per request (Connection: close), medians ===")
        log("| target | conn/s | p50 ms | p99 ms | errors | proxy CPU µs/conn | Corral ÷ target conn/s |")
        log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        close_rps = {name: med([r["requests_per_s"] for r in rows]) for name, rows in report.close.items()}
        summary["close"] = {}
        for name in TARGETS + EXTRA_TARGETS:
            if name not in report.close:
                continue
            rows = report.close[name]
            entry = {
                "requests_per_s": close_rps[name],
                "p50_ms": med([r["p50_ms"] for r in rows]),
                "p99_ms": med([r["p99_ms"] for r in rows]),
                "errors": sum(r["errors"] for r in rows),
                "cpu_us_per_request": med([per_request_us(r) for r in rows]),
            }
            summary["close"][name] = entry
            ratio = close_rps.get("corral", float("nan")) / entry["requests_per_s"]
            cpu_cell = "—" if name == "direct" else f"{entry['cpu_us_per_request']:.1f}"
            log(
                f"| {name} | {entry['requests_per_s']:,.0f} | {entry['p50_ms']:.2f} | "
                f"{entry['p99_ms']:.2f} | {entry['errors']} | {cpu_cell} | {ratio:.2f} |"
            )
    if "haproxy-tcp" in summary["ratios"]:
        ratios = summary["ratios"]["haproxy-tcp"]
        rps, mbs = ratios["requests_per_s"], ratios["mb_per_s"]
        log(f"target req/s >= 0.5 x HAProxy (tcp, medians): {rps:.2f} {'MET' if rps >= 0.5 else 'MISSED'}")
        log(f"target bulk >= 0.8 x HAProxy (tcp, medians): {mbs:.2f} {'MET' if mbs >= 0.8 else 'MISSED'}")
    others = [r["other_cores"] for rows in report.wrk.values() for r in rows]
    disturbed = sum(1 for value in others if value > QUIET)
    log(
        f"other load during wrk phases: median {statistics.median(others):.2f}, max {max(others):.2f} cores; "
        f"{disturbed} of {len(others)} phases above {QUIET}"
    )
    return summary


if __name__ == "__main__":
    sys.exit(main())
