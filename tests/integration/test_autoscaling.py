"""Autoscaling end to end: a real server (its own, sampling resource usage every second), real processes,
load through the service proxy.

* Done-means 1: ``kubectl top pods`` prints the CPU-bound replicas' real usage while they work.
* Done-means 2: a CPU-bound HTTP app with an HPA on 50 % CPU (1-5 replicas) scales out under load, the added
  replicas receive traffic, and it scales back in after the (shortened) stabilization window.
* Done-means 3: an HPA on the Pods metric ``requests_per_second`` takes a 1-replica app to the count the load
  needs (35 requests/s at 10 per pod: 4), the added replicas get traffic, and it goes back to 1 when the load
  stops.
* Done-means 4: with ``minReplicas: 0`` an idle app goes to 0 replicas; a request then succeeds (the proxy
  holds it while a replica starts), and no request of a steady load is lost while the app wakes up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.loadgen import SteadyLoad, http_get
from tests.integration.podkit import wait_until
from tests.integration.test_services import JSON, apply, get, service, web_deployment

pytestmark = pytest.mark.slow

# Every request burns 40 ms of CPU, then answers with the pod name; the readiness probe's /healthz does not
# (probed every second, it would otherwise be a load of its own).
CPU_SERVER = """
import http.server, os, time
BODY = (os.environ["HOSTNAME"] + "\\n").encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        start = time.process_time()
        while self.path != "/healthz" and time.process_time() - start < 0.04:
            pass
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """This module's own server: resource usage sampled every second (the default is 5 s)."""
    proc = ServerProcess(tmp_path_factory.mktemp("corral-autoscaling"), metrics_interval=1.0).start()
    try:
        yield proc
    finally:
        proc.stop()


def cpu_app(name: str) -> list[JSON]:
    deployment = web_deployment(name, replicas=1)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", "-c", CPU_SERVER]
    container["resources"] = {"requests": {"cpu": "100m"}}
    container["readinessProbe"]["httpGet"]["path"] = "/healthz"
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}},
        },
    }
    return [deployment, service(name), hpa]


def rps_hpa(name: str, min_replicas: int, target: str = "10", **annotations: str) -> JSON:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": min_replicas,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "requests_per_second"},
                        "target": {"type": "AverageValue", "averageValue": target},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        },
    }


def replicas(kubectl: Kubectl, name: str) -> int:
    return int(get(kubectl, "deployment", name)["spec"]["replicas"])


def cluster_ip(kubectl: Kubectl, name: str) -> str:
    return str(get(kubectl, "service", name)["spec"]["clusterIP"])


def pods_left(kubectl: Kubectl, name: str) -> int:
    """Pods of the app, terminating ones included (a terminating pod still serves when it is the only one)."""
    return len(get(kubectl, "pods", "-l", f"app={name}")["items"])


@pytest.fixture
def app(kubectl: Kubectl) -> Iterator[str]:
    yield "web"
    kubectl.run("delete", "hpa,deployment,service", "--all", "--wait=false", check=False)


def test_cpu_utilization_scales_out_under_load_and_back_in(kubectl: Kubectl, app: str) -> None:
    apply(kubectl, *cpu_app(app))
    ip = cluster_ip(kubectl, app)
    wait_until(lambda: _answers(ip), 60, "the app answering through its Service")
    with SteadyLoad(ip, 80, rate=8, workers=4) as load:  # ~0.3 cores: 3 replicas' worth of 100m at 50 %+
        wait_until(lambda: _top_cpu_millis(kubectl, app) >= 100, 30, "kubectl top showing the CPU in use")
        started = time.monotonic()
        wait_until(lambda: replicas(kubectl, app) >= 3, 90, "scaled out to 3 or more")
        scaled = time.monotonic() - started
        count = replicas(kubectl, app)
        wait_until(lambda: _ready_endpoints(kubectl, app) >= count, 60, "the new replicas ready")
        before = dict(load.result.bodies)
        wait_until(lambda: _new_pods_served(load, before, count), 30, "every replica serving")
    result = load.stop()
    assert result.failed == 0, result.errors
    status = get(kubectl, "hpa", app)["status"]
    assert status["currentMetrics"][0]["resource"]["name"] == "cpu"
    table = kubectl.run("get", "hpa", app).stdout
    assert "cpu: " in table and "%/50%" in table, table
    wait_until(lambda: replicas(kubectl, app) == 1, 90, "scaled back in to 1 without load")
    print(f"CPU load: {count} replicas after {scaled:.1f} s")


def _top_cpu_millis(kubectl: Kubectl, name: str) -> int:
    result = kubectl.run("top", "pods", "-l", f"app={name}", "--no-headers", check=False)
    if result.returncode != 0:
        return 0
    return sum(int(line.split()[1].rstrip("m")) for line in result.stdout.splitlines() if line.strip())


def test_requests_per_second_scales_out_and_back(kubectl: Kubectl, app: str) -> None:
    apply(kubectl, web_deployment(app, replicas=1), service(app), rps_hpa(app, 1))
    ip = cluster_ip(kubectl, app)
    wait_until(lambda: _answers(ip), 60, "the app answering through its Service")
    with SteadyLoad(ip, 80, rate=35, workers=4) as load:
        started = time.monotonic()
        wait_until(lambda: replicas(kubectl, app) == 4, 60, "4 replicas for 35 requests/s")
        scaled = time.monotonic() - started
        wait_until(lambda: _ready_endpoints(kubectl, app) == 4, 60, "4 ready replicas")
        before = dict(load.result.bodies)
        wait_until(lambda: _new_pods_served(load, before, 4), 30, "every replica serving")
    result = load.stop()
    assert result.failed == 0, result.errors
    hpa = get(kubectl, "hpa", app)
    assert hpa["status"]["currentMetrics"][0]["pods"]["metric"]["name"] == "requests_per_second"
    wait_until(lambda: replicas(kubectl, app) == 1, 60, "back to 1 replica without load")
    events = kubectl.run("get", "events", "--field-selector", "reason=SuccessfulRescale").stdout
    assert "New size: 4; reason: pods metric requests_per_second above target" in events
    assert "New size: 1; reason: All metrics below target" in events
    print(f"35 requests/s: 4 replicas after {scaled:.1f} s")


def test_scale_to_zero_and_wake_on_the_first_request(kubectl: Kubectl, app: str) -> None:
    hpa = rps_hpa(app, 0, **{"corral.dev/scale-to-zero-idle-seconds": "2"})
    apply(kubectl, web_deployment(app, replicas=1), service(app), hpa)
    ip = cluster_ip(kubectl, app)
    wait_until(lambda: _answers(ip), 60, "the app answering through its Service")
    wait_until(lambda: _annotation(kubectl, app, "corral.dev/scale-from-zero") == "true", 20, "the hold mark")
    wait_until(lambda: replicas(kubectl, app) == 0, 60, "scaled to zero after 2 idle seconds")
    wait_until(lambda: pods_left(kubectl, app) == 0, 60, "no pod left")

    started = time.monotonic()
    body = http_get(ip, 80, timeout=30)  # held by the proxy, not refused
    cold_start = time.monotonic() - started
    assert body.startswith(f"{app}-")
    print(f"cold start from zero: {cold_start * 1000:.0f} ms")
    assert cold_start < 15, cold_start

    # Asleep again, then woken by a steady load: nothing lost while the first replica starts.
    wait_until(lambda: replicas(kubectl, app) == 0, 60, "scaled to zero again")
    wait_until(lambda: pods_left(kubectl, app) == 0, 60, "no pod left")
    with SteadyLoad(ip, 80, rate=20, workers=4) as load:
        wait_until(lambda: load.snapshot()[0] >= 40, 60, "40 answered requests")
    result = load.stop()
    assert result.failed == 0, result.errors
    events = kubectl.run("get", "events", "--field-selector", "reason=SuccessfulRescale").stdout
    assert "reason: traffic arrived while scaled to zero" in events
    assert "New size: 0; reason: no traffic for" in events
    # Two wake-ups in this test, each a single rescale (no flapping between 0 and 1).
    items = get(kubectl, "events", "--field-selector", "reason=SuccessfulRescale")["items"]
    wakes = sum(e.get("count", 1) for e in items if "traffic arrived while scaled to zero" in e["message"])
    assert wakes == 2, items


def _answers(ip: str) -> bool:
    try:
        http_get(ip, 80, timeout=2)
    except OSError:
        return False
    return True


def _ready_endpoints(kubectl: Kubectl, name: str) -> int:
    endpoints = get(kubectl, "endpoints", name)
    return sum(len(s.get("addresses") or []) for s in endpoints.get("subsets") or [])


def _new_pods_served(load: SteadyLoad, before: dict[str, int], count: int) -> bool:
    now = dict(load.result.bodies)
    served = {body.split()[0] for body, n in now.items() if n > before.get(body, 0)}
    return len(served) >= count


def _annotation(kubectl: Kubectl, name: str, key: str) -> str | None:
    return (get(kubectl, "service", name)["metadata"].get("annotations") or {}).get(key)
