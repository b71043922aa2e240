"""Issue 7: how fast a CPU-bound app absorbs a load step, and cold start from zero; Corral's default timings
against a model of Kubernetes' published default timings, side by side in one run.

THE PEER IS A MODEL, NOT A KUBERNETES CLUSTER. No Kubernetes can run on this machine (no internet, no kind or
k3s), so the peer is Corral's own server started with Kubernetes' published default timings:

* ``--metrics-interval 15``: metrics-server's default ``--metric-resolution`` (15 s);
* ``--hpa-sync-period 15``: kube-controller-manager's ``--horizontal-pod-autoscaler-sync-period`` (15 s);
* ``--kubelet-probe-timing``: readiness probed once per ``periodSeconds`` from the start, as the kubelet does
  (Corral's default probes every 50 ms until the first success, its "readiness warm-up").

Corral runs with its defaults (5 s sampling, 5 s HPA sync, readiness warm-up). Both get the SAME manifests,
including ``readinessProbe.periodSeconds: 10`` (Kubernetes' default); only the server settings differ. It
measures the effect of those timings on Corral's machinery, not how a real kubelet, metrics-server,
kube-proxy and scheduler would do.

Scenario (per run, a fresh server and data dir; modes alternate corral, k8s-timing, corral, ...):

* App ``step``: a Python ``ThreadingHTTPServer`` (listen backlog 128) that burns ``--burn-ms`` of its
  thread's CPU per ``GET /`` and answers 503 at once beyond ``--max-inflight`` (32) requests at a time;
  ``/healthz``, the readiness probe, is cheap; ``resources.requests.cpu`` = ``limits.cpu`` = 100m. Running as
  root, Corral puts such a container in a cpu cgroup with a CFS quota of 10 ms per 100 ms period: the script
  checks the quota of the first replica's process in /sys/fs/cgroup and prints it. A ClusterIP Service in
  front of it.
* HPA ``autoscaling/v2``, CPU ``Utilization`` 50 %, min 1, max 4, no ``behavior`` (defaults: scale-up
  window 0 s, 4 pods or 100 % per 15 s; scale-down window 300 s, only reported, never waited for).
* Before the step: 1 replica Ready, answering through the Service, and the HPA showing a CPU metric.
* Step: an open-loop generator starts at ``--rate`` requests/s (one new HTTP/1.0 connection per request,
  one thread per request from a pool, so a slow answer never delays the next send). Each request's latency
  is measured from its *scheduled* send time (no coordinated omission); a request that fails or takes more
  than ``--timeout`` s counts as slower than any target.
* (a) **4 Ready**: time from the step until 4 pods of the app (not terminating) have Ready=True (pods polled
  every 100 ms). (b) **absorbed**: the first time t after the step such that, for every 2 s window of send
  times starting in [t, t + 5 s] (stride 0.25 s), the p99 latency is under ``--target-ms``. At 40 req/s a
  2 s window holds 80 requests, so its nearest-rank p99 is its slowest request.
* (c) **cold start** (Corral's defaults only: Kubernetes has no scale to zero, the peer's column says n/a):
  after the step, app ``cold`` (same command, ``requests.cpu`` 100m, no cpu limit, see ``--cold-limit``)
  with an HPA of ``minReplicas: 0`` and ``corral.dev/scale-to-zero-idle-seconds: "3"``; ``--cold-reps`` times:
  wait until its Deployment is at 0 and no pod of it exists (terminating included), then time one
  ``GET /`` through the Service (held by the proxy while a replica starts).

Rate: a request costs about ``burn + 1`` ms of CPU, so one 100m replica serves about 100 / (burn + 1)
requests/s. The default 5 ms at 40 req/s is about 0.24 cores: 2.4x what 1 replica can do, 1.2x what 2 can
do (both saturate at 100 % of their request, so the HPA goes 1 -> 2 -> 4), and 60 % per replica at 4.

Safety: loopback only; every server started is stopped (by pid, ServerProcess.stop) in a ``finally``; own
temp data dirs, removed afterwards unless ``--keep``.

Run: ``.venv/bin/python bench/autoscale_step.py [--runs 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import datetime
import json
import math
import os
import platform
import random
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS_DIR = HERE / "results"
sys.path.insert(0, str(REPO / "src"))

from corral.testing.process import ServerProcess  # noqa: E402

JSON = dict[str, Any]
MODES = ("corral", "k8s-timing")
NS = "default"
WINDOW_S = 2.0
HOLD_S = 5.0
STRIDE_S = 0.25
K8S_DOWN_WINDOW_S = 300

APP = """
import http.server, os, threading, time
BODY = (os.environ["HOSTNAME"] + "\\n").encode()
BURN = float(os.environ.get("BURN_MS", "5")) / 1000
MAX_INFLIGHT = int(os.environ.get("MAX_INFLIGHT", "32"))
SLOTS = threading.BoundedSemaphore(MAX_INFLIGHT) if MAX_INFLIGHT > 0 else None
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/healthz":
            if SLOTS is not None and not SLOTS.acquire(blocking=False):
                return self.answer(503)
            try:
                start = time.thread_time()
                while time.thread_time() - start < BURN:
                    pass
            finally:
                if SLOTS is not None:
                    SLOTS.release()
        self.answer(200)
    def answer(self, code):
        self.send_response(code)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
"""The app: ``GET /`` burns BURN_MS of its own thread's CPU (``thread_time``: ``process_time`` would let
concurrent requests share one burn); more than MAX_INFLIGHT requests at once get a cheap 503 (load shedding,
so an overload leaves no unbounded backlog of work for clients that gave up; 0 = unbounded); ``/healthz`` is
cheap."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------------ manifests


def deployment(name: str, burn_ms: float, cpu_limit: str | None, max_inflight: int) -> JSON:
    resources: JSON = {"requests": {"cpu": "100m"}}
    if cpu_limit:
        resources["limits"] = {"cpu": cpu_limit}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "web",
                            "image": "python:3",
                            "command": ["python3", "-c", APP],
                            "env": [
                                {"name": "BURN_MS", "value": f"{burn_ms:g}"},
                                {"name": "MAX_INFLIGHT", "value": str(max_inflight)},
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "resources": resources,
                            # Kubernetes' default period, in both modes: only the server's timing differs.
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 10,
                            },
                        }
                    ],
                },
            },
        },
    }


def service(name: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": name},
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
        },
    }


def cpu_hpa(
    name: str, min_replicas: int, max_replicas: int, annotations: dict[str, str] | None = None
) -> JSON:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
        },
    }


# ------------------------------------------------------------------------------------------------ API client


class Api:
    """A tiny synchronous client for the server's HTTPS API (bearer token and CA from its kubeconfig)."""

    def __init__(self, url: str, kubeconfig: Path) -> None:
        doc = yaml.safe_load(kubeconfig.read_text())
        ca = base64.b64decode(doc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        self.url = url
        self.token = doc["users"][0]["user"]["token"]
        self.ctx = ssl.create_default_context(cadata=ca)

    def call(self, method: str, path: str, body: JSON | None = None) -> JSON:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
            return dict(json.loads(resp.read() or b"{}"))

    def create(self, obj: JSON) -> JSON:
        return self.call("POST", collection(obj["kind"]), obj)

    def get(self, kind: str, name: str = "", query: str = "") -> JSON:
        path = collection(kind) + (f"/{name}" if name else "") + (f"?{query}" if query else "")
        return self.call("GET", path)

    def delete(self, kind: str, name: str) -> None:
        try:
            self.call("DELETE", f"{collection(kind)}/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


def collection(kind: str) -> str:
    return {
        "Deployment": f"/apis/apps/v1/namespaces/{NS}/deployments",
        "Service": f"/api/v1/namespaces/{NS}/services",
        "HorizontalPodAutoscaler": f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers",
        "Pod": f"/api/v1/namespaces/{NS}/pods",
    }[kind]


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.1) -> float:
    """Poll ``check`` until true; returns the monotonic time it first was. Raises on the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return time.monotonic()
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def ready_pods(api: Api, app: str) -> list[JSON]:
    items = api.get("Pod", query=f"labelSelector=app%3D{app}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp") and is_ready(p)]


def is_ready(pod: JSON) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pods_of(api: Api, app: str) -> int:
    return len(api.get("Pod", query=f"labelSelector=app%3D{app}")["items"])


def http_get(host: str, port: int, timeout: float) -> str:
    """One GET over a fresh connection (HTTP/1.0); the body; raises on anything but a complete 200."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"GET / HTTP/1.0\r\nHost: svc\r\nUser-Agent: corral-bench\r\n\r\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not sep or head.split()[1:2] != [b"200"]:
        raise OSError(f"bad response: {head[:80]!r}")
    return body.decode(errors="replace").strip()


def cgroup_cpu_quota(pod: JSON) -> str:
    """The CFS quota/period of the pod's container process, from its cgroup (proves the limit applies)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    cid = statuses[0].get("containerID", "") if statuses else ""
    if not cid.startswith("process://"):
        return f"unknown (containerID {cid!r})"
    pid = int(cid.removeprefix("process://"))
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            return f"cpu.max = {(base / 'cpu.max').read_text().strip()} (v2, {path})"
        if "cpu" in controllers.split(","):
            for mount in ("cpu,cpuacct", "cpu", "cpuacct,cpu"):
                base = Path("/sys/fs/cgroup") / mount / path.lstrip("/")
                if (base / "cpu.cfs_quota_us").exists():
                    quota = (base / "cpu.cfs_quota_us").read_text().strip()
                    period = (base / "cpu.cfs_period_us").read_text().strip()
                    return f"cfs_quota_us={quota} cfs_period_us={period} ({path})"
    return f"no cpu cgroup for pid {pid}"


# ------------------------------------------------------------------------------------------------ load


@dataclass
class Sample:
    sent: float
    """Scheduled send time, seconds after the step."""
    latency: float | None = None
    """Seconds from the scheduled send time to the full answer; None while pending."""
    ok: bool = True


class OpenLoop:
    """Sends ``rate`` GETs per second at fixed times, each on a pool thread, whatever the answers take."""

    def __init__(self, host: str, port: int, rate: float, timeout: float) -> None:
        self.host, self.port, self.rate, self.timeout = host, port, rate, timeout
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self.error_kinds: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=int(rate * (timeout + 2)) + 16)
        self.t0 = 0.0
        self.thread = threading.Thread(target=self._schedule, daemon=True)

    def start(self) -> float:
        self.t0 = time.monotonic()
        self.thread.start()
        return self.t0

    def _schedule(self) -> None:
        k = 0
        while not self.stop_event.is_set():
            at = self.t0 + k / self.rate
            delay = at - time.monotonic()
            if delay > 0 and self.stop_event.wait(delay):
                return
            sample = Sample(at - self.t0)
            with self.lock:
                self.samples.append(sample)
            self.pool.submit(self._one, sample, at)
            k += 1

    def _one(self, sample: Sample, at: float) -> None:
        try:
            http_get(self.host, self.port, self.timeout)
        except Exception as exc:  # a failure is an infinitely slow answer for the percentiles
            sample.ok = False
            with self.lock:
                self.error_kinds[repr(exc)[:60]] += 1
                if len(self.errors) < 10:
                    self.errors.append(f"{at - self.t0:.2f}s {exc!r}")
        sample.latency = time.monotonic() - at

    def snapshot(self) -> list[tuple[float, float | None, bool]]:
        with self.lock:
            return [(s.sent, s.latency, s.ok) for s in self.samples]

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self.pool.shutdown(wait=True)


def p99(latencies: Sequence[float]) -> float:
    """Nearest-rank 99th percentile (inf for failures)."""
    ordered = sorted(latencies)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def window_p99(
    samples: Sequence[tuple[float, float | None, bool]], start: float, now: float, target: float
) -> float | None:
    """p99 of the requests sent in [start, start + WINDOW_S), as far as known at ``now`` (seconds after the
    step): a pending request older than ``target`` is known to be over it. None when not yet decidable.
    ``samples`` are in send order (the generator appends them so)."""
    sends = [s for s, _, _ in samples]
    return _window_p99(samples, sends, start, now, target)


def _window_p99(
    samples: Sequence[tuple[float, float | None, bool]],
    sends: list[float],
    start: float,
    now: float,
    target: float,
) -> float | None:
    values: list[float] = []
    for sent, latency, ok in samples[
        bisect.bisect_left(sends, start) : bisect.bisect_left(sends, start + WINDOW_S)
    ]:
        if latency is None:
            if now - sent < target:
                return None
            values.append(math.inf)
        else:
            values.append(latency if ok else math.inf)
    return p99(values) if values else None


def absorbed_at(
    samples: Sequence[tuple[float, float | None, bool]], now: float, target: float
) -> float | None:
    """The first t (on the stride grid) such that every window starting in [t, t + HOLD_S] has p99 < target;
    None if not known yet at ``now``. Pure: tested against hand-made samples in ``--self-test``."""
    sends = [s for s, _, _ in samples]
    last = int((now - WINDOW_S) / STRIDE_S)
    need = round(HOLD_S / STRIDE_S)
    run = 0
    for i in range(0, last + 1):
        value = _window_p99(samples, sends, i * STRIDE_S, now, target)
        if value is None:
            return None
        run = run + 1 if value < target else 0
        if run == need + 1:
            return (i - need) * STRIDE_S
    return None


def self_test() -> None:
    # 1 s of slow answers, then fast ones: absorbed at 1.0 (the first window with only fast requests).
    samples = [(i / 10, 0.5 if i < 10 else 0.05, True) for i in range(200)]
    assert absorbed_at(samples, 20.0, 0.2) == 1.0, absorbed_at(samples, 20.0, 0.2)
    # A failure at 4.0 s resets it: the first clean window starts at 4.25 (the next stride after 4.0).
    failing = [(s, lat, s != 4.0) for s, lat, _ in samples]
    assert absorbed_at(failing, 20.0, 0.2) == 4.25, absorbed_at(failing, 20.0, 0.2)
    # Not decidable yet: too little time.
    assert absorbed_at(samples, 6.0, 0.2) is None
    assert p99([float(i) for i in range(1, 101)]) == 99.0
    print("self-test ok")


# ------------------------------------------------------------------------------------------------ one run


@dataclass
class RunResult:
    mode: str
    run: int
    ready4_s: float | None = None
    absorbed_s: float | None = None
    desired_times: list[tuple[float, int]] = field(default_factory=list)
    ready_times: list[tuple[float, int]] = field(default_factory=list)
    p99_first5_ms: float | None = None
    p99_last5_ms: float | None = None
    requests: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)
    rescales: list[str] = field(default_factory=list)
    timeline: list[tuple[int, int, int, float]] = field(default_factory=list)
    """Per second of send time after the step: (second, requests, failed, p99 ms)."""
    cgroup: str = ""
    scale_down_window_s: float | None = None
    cold_ms: list[float] = field(default_factory=list)
    cold_errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def server_for(mode: str, data_dir: Path) -> ServerProcess:
    if mode == "k8s-timing":
        return ServerProcess(data_dir, metrics_interval=15.0, hpa_sync_period=15.0, kubelet_probe_timing=True)
    return ServerProcess(data_dir)


def one_run(mode: str, run: int, args: argparse.Namespace, workdir: Path) -> RunResult:
    result = RunResult(mode, run)
    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix=f"autoscale-{mode}-{run}-", dir=workdir))
    server = server_for(mode, data_dir)
    server.start()
    try:
        api = Api(server.url, server.kubeconfig)
        step_phase(api, args, result)
        if mode == "corral" and args.cold_reps:
            cold_phase(api, args, result)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    result.wall_s = time.monotonic() - started
    return result


def step_phase(api: Api, args: argparse.Namespace, result: RunResult) -> None:
    name = "step"
    for obj in (
        deployment(name, args.burn_ms, "100m", args.max_inflight),
        service(name),
        cpu_hpa(name, 1, args.max_replicas),
    ):
        api.create(obj)
    ip = api.get("Service", name)["spec"]["clusterIP"]
    wait_for("1 Ready replica", lambda: len(ready_pods(api, name)) == 1, 90)
    wait_for("the app answering through its Service", lambda: bool(http_get(ip, 80, 2)), 30)
    result.cgroup = cgroup_cpu_quota(ready_pods(api, name)[0])
    log(f"  {result.mode} run {result.run}: 1 replica Ready; its cpu cgroup: {result.cgroup}")

    def has_metric() -> bool:
        status = api.get("HorizontalPodAutoscaler", name).get("status") or {}
        return bool(status.get("currentMetrics"))

    wait_for("the HPA reading a CPU metric", has_metric, 90, every=0.5)
    hpa = api.get("HorizontalPodAutoscaler", name)
    down = ((hpa["spec"].get("behavior") or {}).get("scaleDown") or {}).get("stabilizationWindowSeconds")
    result.scale_down_window_s = float(down) if down is not None else None
    # Start the step at a random phase of the sync period, as real traffic would (not right after a sync).
    time.sleep(random.uniform(0, 3))

    load = OpenLoop(ip, 80, args.rate, args.timeout)
    stop_poll = threading.Event()
    t0 = load.start()
    poller = threading.Thread(target=poll_scale, args=(api, name, t0, result, stop_poll), daemon=True)
    poller.start()
    try:
        deadline = t0 + args.step_timeout
        while time.monotonic() < deadline:
            now = time.monotonic() - t0
            if result.absorbed_s is None:
                result.absorbed_s = absorbed_at(load.snapshot(), now, args.target_ms / 1000)
            if result.absorbed_s is not None and result.ready4_s is not None:
                break
            time.sleep(0.5)
    finally:
        load.stop()
        stop_poll.set()
        poller.join(5)
    samples = load.snapshot()
    result.requests = len(samples)
    result.failed = sum(1 for _, _, ok in samples if not ok)
    result.errors = load.errors
    result.error_kinds = dict(load.error_kinds)
    result.rescales = rescale_events(api, name)
    end = max(s for s, _, _ in samples)

    def p99_ms(lo: float, hi: float) -> float:
        values = [lat if ok and lat is not None else math.inf for s, lat, ok in samples if lo <= s < hi]
        return p99(values) * 1000

    for second in range(int(end) + 1):
        in_second = [(lat, ok) for s, lat, ok in samples if second <= s < second + 1]
        failed = sum(1 for _, ok in in_second if not ok)
        result.timeline.append((second, len(in_second), failed, round(p99_ms(second, second + 1), 1)))
    result.p99_first5_ms = p99_ms(0, 5)
    result.p99_last5_ms = p99_ms(end - 5, end + 1)
    log(
        f"  {result.mode} run {result.run}: 4 Ready after {fmt(result.ready4_s)} s, absorbed after "
        f"{fmt(result.absorbed_s)} s; desired {result.desired_times}; ready {result.ready_times}; "
        f"p99 first 5 s {result.p99_first5_ms:.0f} ms, last 5 s {result.p99_last5_ms:.0f} ms; "
        f"{result.requests} requests, {result.failed} failed {result.error_kinds}"
    )
    for line in result.rescales:
        log(f"    {line}")
    for kind in ("HorizontalPodAutoscaler", "Service", "Deployment"):
        api.delete(kind, name)


def rescale_events(api: Api, name: str) -> list[str]:
    """The HPA's SuccessfulRescale events, oldest first (why each step happened)."""
    items = api.call("GET", f"/api/v1/namespaces/{NS}/events")["items"]
    events = [
        e
        for e in items
        if e.get("reason") == "SuccessfulRescale" and (e.get("involvedObject") or {}).get("name") == name
    ]
    events.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return [
        f"{e.get('lastTimestamp') or e.get('eventTime')} x{e.get('count', 1)} {e.get('message')}"
        for e in events
    ]


def poll_scale(api: Api, name: str, t0: float, result: RunResult, stop: threading.Event) -> None:
    """Every 100 ms: the Deployment's desired replicas and the app's Ready pods, with times after the step."""
    last_desired, last_ready = -1, -1
    while not stop.is_set():
        try:
            desired = int(api.get("Deployment", name)["spec"]["replicas"])
            ready = len(ready_pods(api, name))
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
            continue
        now = round(time.monotonic() - t0, 2)
        if desired != last_desired:
            result.desired_times.append((now, desired))
            last_desired = desired
        if ready != last_ready:
            result.ready_times.append((now, ready))
            last_ready = ready
        if ready >= 4 and result.ready4_s is None:
            result.ready4_s = now
        time.sleep(0.1)


def cold_phase(api: Api, args: argparse.Namespace, result: RunResult) -> None:
    name = "cold"
    hpa = cpu_hpa(name, 0, 1, {"corral.dev/scale-to-zero-idle-seconds": "3"})
    for obj in (deployment(name, args.burn_ms, args.cold_limit, args.max_inflight), service(name), hpa):
        api.create(obj)
    ip = api.get("Service", name)["spec"]["clusterIP"]
    wait_for("the cold app answering", lambda: bool(http_get(ip, 80, 2)), 90)
    for rep in range(args.cold_reps):
        wait_for(
            "the cold app at 0 replicas",
            lambda: api.get("Deployment", name)["spec"]["replicas"] == 0,
            90,
            0.2,
        )
        wait_for("no pod of the cold app left", lambda: pods_of(api, name) == 0, 60, 0.05)
        started = time.monotonic()
        try:
            http_get(ip, 80, 30)
        except OSError as exc:
            result.cold_errors.append(repr(exc))
            continue
        result.cold_ms.append((time.monotonic() - started) * 1000)
        log(f"  cold start {rep + 1}: {result.cold_ms[-1]:.0f} ms")
    for kind in ("HorizontalPodAutoscaler", "Service", "Deployment"):
        api.delete(kind, name)


# ------------------------------------------------------------------------------------------------ report


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def summarize(results: list[RunResult], args: argparse.Namespace) -> dict[str, Any]:
    by_mode = {m: [r for r in results if r.mode == m] for m in MODES}
    rows: dict[str, dict[str, Any]] = {}
    for mode, runs in by_mode.items():
        cold = [ms for r in runs for ms in r.cold_ms]
        rows[mode] = {
            "runs": len(runs),
            # A run that never got there counts as infinitely slow, not as missing.
            "ready4_s": median([math.inf if r.ready4_s is None else r.ready4_s for r in runs]),
            "absorbed_s": median([math.inf if r.absorbed_s is None else r.absorbed_s for r in runs]),
            "ready4_each": [r.ready4_s for r in runs],
            "absorbed_each": [r.absorbed_s for r in runs],
            "p99_first5_ms": median([r.p99_first5_ms for r in runs]),
            "p99_last5_ms": median([r.p99_last5_ms for r in runs]),
            "cold_median_ms": statistics.median(cold) if cold else None,
            "cold_max_ms": max(cold) if cold else None,
            "cold_n": len(cold),
        }
    ratios = {}
    for key in ("ready4_s", "absorbed_s"):
        c, k = rows["corral"][key], rows["k8s-timing"][key]
        ratios[key] = k / c if c and k is not None and math.isfinite(c) else None
    return {"rows": rows, "ratios_peer_over_corral": ratios}


def print_report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    rows, ratios = summary["rows"], summary["ratios_peer_over_corral"]
    print()
    print("NOTE: 'k8s-timing' is a MODEL of Kubernetes' default timings on Corral's machinery (15 s metric")
    print("resolution, 15 s HPA sync, kubelet-style readiness probing every periodSeconds), NOT a Kubernetes")
    print("cluster. Same manifests in both modes; only the server settings differ.")
    print()
    print(
        f"step 0 -> {args.rate:g} req/s ({args.burn_ms:g} ms CPU each, 100m limit), "
        f"p99 target {args.target_ms:g} ms"
    )
    header = (
        f"{'mode':<12}{'runs':>5}{'4 Ready s':>11}{'absorbed s':>12}{'p99 0-5s ms':>13}{'p99 end ms':>12}"
    )
    header += f"{'cold p50 ms':>13}{'cold max ms':>13}"
    print(header)
    for mode in MODES:
        r = rows[mode]
        cold50 = fmt(r["cold_median_ms"], 0) if r["cold_n"] else "n/a"
        coldmax = fmt(r["cold_max_ms"], 0) if r["cold_n"] else "n/a"
        print(
            f"{mode:<12}{r['runs']:>5}{fmt(r['ready4_s']):>11}{fmt(r['absorbed_s']):>12}"
            f"{fmt(r['p99_first5_ms'], 0):>13}{fmt(r['p99_last5_ms'], 0):>12}{cold50:>13}{coldmax:>13}"
        )
    print(f"{'ratio k8s/corral':<17}{fmt(ratios['ready4_s'], 2):>11}{fmt(ratios['absorbed_s'], 2):>12}")
    print(f"(inf: not reached within --step-timeout = {args.step_timeout:g} s)")
    for mode in MODES:
        print(
            f"  {mode} each run: 4 Ready {rows[mode]['ready4_each']}, absorbed {rows[mode]['absorbed_each']}"
        )
    c = rows["corral"]
    met_step = c["absorbed_s"] is not None and c["absorbed_s"] < 20
    met_cold = c["cold_median_ms"] is not None and c["cold_max_ms"] < 1000
    print(
        f"target: step absorbed < 20 s: {'MET' if met_step else 'MISSED'} ({fmt(c['absorbed_s'])} s median)"
    )
    print(
        f"target: cold start from zero < 1 s: {'MET' if met_cold else 'MISSED'} "
        f"(median {fmt(c['cold_median_ms'], 0)} ms, max {fmt(c['cold_max_ms'], 0)} ms)"
    )
    print(
        f"scale-down window (config, not measured): {K8S_DOWN_WINDOW_S} s in both modes "
        "(HPA default behavior)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per mode, alternating (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 run per mode, 2 cold starts")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rate", type=float, default=40.0, help="requests/s after the step")
    parser.add_argument("--burn-ms", type=float, default=5.0, help="CPU each request burns in the app")
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=32,
        help="app answers 503 beyond this many requests (0: unbounded)",
    )
    parser.add_argument("--target-ms", type=float, default=200.0, help="p99 latency target")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, s")
    parser.add_argument("--max-replicas", type=int, default=4)
    parser.add_argument("--step-timeout", type=float, default=200.0, help="give up on a step after this, s")
    parser.add_argument("--cold-reps", type=int, default=5, help="cold starts per Corral run")
    parser.add_argument("--cold-limit", default=None, help="cpu limit of the cold app (default: none)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the data dirs")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--self-test", action="store_true", help="check the absorption logic and exit")
    args = parser.parse_args()
    if args.self_test:
        self_test()
        return 0
    if args.quick:
        args.runs, args.cold_reps = 1, 2
    started = datetime.datetime.now(datetime.UTC)
    log(
        f"autoscale_step: {args.runs} run(s) per mode, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, uid {os.getuid()}"
    )
    results: list[RunResult] = []
    for run in range(1, args.runs + 1):
        order = list(args.modes) if run % 2 else list(reversed(args.modes))
        for mode in order:
            log(f"{mode} run {run}")
            try:
                results.append(one_run(mode, run, args, args.workdir))
            except (TimeoutError, RuntimeError, OSError) as exc:
                log(f"  {mode} run {run} FAILED: {exc!r}")
                results.append(RunResult(mode, run, errors=[repr(exc)]))
    summary = summarize(results, args)
    print_report(summary, args)
    out = args.out or RESULTS_DIR / f"autoscale_step-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": summary,
                "runs": [asdict(r) for r in results],
            },
            indent=2,
        )
    )
    log(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
