"""Prometheus ``/metrics`` on a real server and on a remote ``corral agent`` (issue 7, Done-means 5).

Every scrape is parsed with prometheus-client's text parser, and each check compares two scrapes around
something the test did (requests, a watch, a pod whose process is killed, a failing readiness probe, traffic
through a Service), so the assertions hold on a server that other tests also use.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.loadgen import http_get
from tests.integration.podkit import Pods, main_pid, wait_until
from tests.integration.test_cli_pods import CLI, Lines, stop_process

pytestmark = pytest.mark.slow

JSON = dict[str, Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

WEB_SERVER = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from " + os.environ["HOSTNAME"].encode() + b"\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


class Scraper:
    """GET ``/metrics`` of one server with its token and CA, parsed into (name, labels) → value."""

    def __init__(self, server: ServerProcess) -> None:
        self.url = server.url + "/metrics"
        self.token = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]["token"]
        self.ca = str(server.data_dir / "pki" / "ca.crt")
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        # verify per request: a session's verify loses to $REQUESTS_CA_BUNDLE.
        return requests.request(method, url, headers=self.headers, verify=self.ca, timeout=10, **kwargs)

    def text(self) -> str:
        response = self.request("GET", self.url)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.text

    def scrape(self) -> Samples:
        return parse(self.text())


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return samples


def value(samples: Samples, series: str, /, **labels: str) -> float:
    """The sample's value; 0 when it does not exist yet (a labelled counter nobody incremented)."""
    return samples.get((series, frozenset(labels.items())), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def pod(name: str, command: list[str], **container: Any) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": "python:3", "command": command, **container}],
        },
    }


@pytest.fixture
def pods(server: ServerProcess, kubectl: Kubectl) -> Iterator[Pods]:
    kit = Pods(kubectl, server.kubeconfig)
    try:
        yield kit
    finally:
        kubectl.run("delete", "pods,services", "--all", "--wait=false", check=False)
        kit.close()


# ---------------------------------------------------------------------------------------------- API server


def test_metrics_need_the_token_like_every_api_path(server: ServerProcess) -> None:
    scraper = Scraper(server)
    anonymous = requests.get(scraper.url, verify=scraper.ca, timeout=10)
    assert anonymous.status_code == 401
    wrong = requests.get(scraper.url, verify=scraper.ca, timeout=10, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_api_requests_watches_store_and_controllers(server: ServerProcess, kubectl: Kubectl) -> None:
    scraper = Scraper(server)
    ns = kubectl.namespace
    pods_url = f"{server.url}/api/v1/namespaces/{ns}/pods"
    list_labels = {"verb": "LIST", "group": "", "resource": "pods", "subresource": ""}
    before = scraper.scrape()
    for _ in range(20):
        assert scraper.request("GET", pods_url).status_code == 200
    assert scraper.request("GET", pods_url + "/no-such-pod").status_code == 404
    # A watch is long-running while it is open, and never lands in the latency histogram.
    watch = {"verb": "WATCH", "group": "", "resource": "pods", "subresource": ""}
    with scraper.request("GET", pods_url, params={"watch": "true"}, stream=True) as streaming:
        assert streaming.status_code == 200
        during = scraper.scrape()
    after = scraper.scrape()

    assert value(after, "apiserver_request_total", code="200", **list_labels) >= (
        value(before, "apiserver_request_total", code="200", **list_labels) + 20
    )
    assert value(after, "apiserver_request_duration_seconds_count", **list_labels) >= (
        value(before, "apiserver_request_duration_seconds_count", **list_labels) + 20
    )
    get_labels = {**list_labels, "verb": "GET"}
    assert value(after, "apiserver_request_total", code="404", **get_labels) >= 1
    assert value(during, "apiserver_longrunning_requests", **watch) >= 1
    assert value(after, "apiserver_request_duration_seconds_count", **watch) == 0
    buckets = [
        v for (name, labels), v in after.items()
        if name == "apiserver_request_duration_seconds_bucket" and ("verb", "LIST") in labels
        and ("resource", "pods") in labels
    ]  # fmt: skip
    assert buckets and max(buckets) == value(after, "apiserver_request_duration_seconds_count", **list_labels)

    # Store: the namespace this test made is stored; revision and file grow; watches are registered.
    assert value(after, "apiserver_storage_objects", resource="namespaces") >= 5
    assert value(after, "corral_store_revision") > 0
    assert value(after, "corral_store_size_bytes") > 0
    assert value(after, "corral_store_writes_total") >= value(after, "corral_store_commit_batches_total") > 0
    assert value(after, "apiserver_registered_watchers", group="", kind="Pod") >= 1

    # Controllers: their queues exist and the garbage collector reconciled the namespace's objects.
    for controller in ("deployment-controller", "replicaset-controller", "garbage-collector"):
        assert ("workqueue_depth", frozenset({("name", controller)})) in after
    assert value(after, "workqueue_adds_total", name="garbage-collector") > 0
    assert value(after, "corral_controller_reconcile_duration_seconds_count", controller="garbage-collector") > 0
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names(after)


def test_kubectl_get_raw_metrics(kubectl: Kubectl) -> None:
    result = kubectl.run("get", "--raw", "/metrics", namespace=False)
    samples = parse(result.stdout)
    assert {"apiserver_request_total", "apiserver_storage_objects", "workqueue_depth"} <= names(samples)


# ---------------------------------------------------------------------------------------------- agent and proxy


def test_pod_starts_restarts_probe_failures_and_proxy_traffic(
    server: ServerProcess, kubectl: Kubectl, pods: Pods
) -> None:
    scraper = Scraper(server)
    ns = kubectl.namespace
    before = scraper.scrape()
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    pods.apply(
        pod(
            "web",
            ["python3", "-c", WEB_SERVER],
            ports=[{"name": "http", "containerPort": 8080}],
            readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        ),
        pod("crash", ["sleep", "300"]),
        pod(
            "unready",
            ["sleep", "300"],
            readinessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1},
        ),
        service,
    )
    pods.wait_ready("web", timeout=30)
    crash = pods.wait_running("crash", timeout=30)
    pods.wait_running("unready", timeout=30)

    # A container restart: kill the process, the agent starts it again.
    pid = main_pid(crash)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    pods.wait(
        "crash",
        lambda p: (p["status"]["containerStatuses"][0].get("restartCount") or 0) >= 1 and main_pid(p),
        30,
        "restarted after SIGKILL",
    )

    # Traffic through the Service's cluster IP, once its endpoint is ready.
    cluster_ip = json.loads(kubectl.run("get", "service", "web", "-o", "json").stdout)["spec"]["clusterIP"]

    def reachable() -> bool:
        try:
            return http_get(cluster_ip, 80).startswith("hello from web")
        except OSError:
            return False

    wait_until(reachable, 30, "the Service to answer through the proxy")
    for _ in range(10):
        assert http_get(cluster_ip, 80).startswith("hello from web")

    def probe_failed() -> Samples | None:
        samples = scraper.scrape()
        failures = value(samples, "corral_agent_probe_failures_total", probe="readiness")
        return samples if failures > value(before, "corral_agent_probe_failures_total", probe="readiness") else None

    after: Samples = wait_until(probe_failed, 30, "a readiness probe failure to be counted")

    def grew(series: str, by: float = 1, /, **labels: str) -> bool:
        return value(after, series, **labels) >= value(before, series, **labels) + by

    assert grew("corral_agent_pod_starts_total", 3)
    assert grew("corral_agent_container_starts_total", 4)  # three pods, one restart
    assert grew("corral_agent_container_restarts_total", 1)
    assert grew("corral_agent_probes_total", 1, probe="readiness", result="failure")
    assert grew("corral_agent_probes_total", 1, probe="readiness", result="success")
    assert value(after, "corral_agent_running_containers") >= 3
    assert value(after, "corral_agent_running_pods") >= 3
    assert value(after, "workqueue_adds_total", name="agent") > value(before, "workqueue_adds_total", name="agent")

    web_svc = {"namespace": ns, "service": "web"}
    assert value(after, "corral_proxy_connections_total", **web_svc) >= 11
    assert value(after, "corral_proxy_requests_total", **web_svc) >= 11
    assert value(after, "corral_proxy_bytes_total", direction="in", **web_svc) > 0
    assert value(after, "corral_proxy_bytes_total", direction="out", **web_svc) > 11 * len("hello from web")
    assert value(after, "corral_proxy_listeners") >= 1
    assert ("corral_proxy_active_connections", frozenset(web_svc.items())) in after
    assert ("corral_proxy_backend_errors_total", frozenset(web_svc.items())) in after


# ---------------------------------------------------------------------------------------------- remote agent


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CORRAL_DATA_DIR")}
    env.update(HOME=str(home), CORRAL_DATA_DIR=str(home / "no-corral-here"), NO_COLOR="1", PYTHONUNBUFFERED="1")
    return env


def test_remote_agent_serves_its_own_metrics(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(tmp_path / "server").start()
    agent: subprocess.Popen[str] | None = None
    try:
        scraper = Scraper(server)
        agent = subprocess.Popen(
            [
                *CLI, "agent", "--server", server.url, "--token", scraper.token, "--ca-file", scraper.ca,
                "--name", "remote-1", "--data-dir", str(tmp_path / "agent"), "--stop-workloads-on-exit",
                "--dns-port", "-1", "--ingress-port", "-1", "--metrics-port", "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(home),
            start_new_session=True,
        )  # fmt: skip
        output = Lines(agent)
        output.wait_for(r"^Corral agent is running as node remote-1")
        metrics_line = next(line for line in output.seen if line.startswith("Metrics: "))
        url = metrics_line.removeprefix("Metrics: ")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", url), url

        # A pod bound to the remote node: the remote agent starts it and counts it, not the server.
        manifest = pod("far", ["sleep", "300"])
        manifest["spec"]["nodeName"] = "remote-1"
        pods_url = f"{server.url}/api/v1/namespaces/default/pods"
        assert scraper.request("POST", pods_url, json=manifest).status_code == 201

        def started() -> Samples | None:
            # The process is seen running a moment before its start is counted (the start's Event is
            # posted in between), so wait for both.
            samples = parse(requests.get(url, timeout=10).text)
            running = value(samples, "corral_agent_running_containers") >= 1
            return samples if running and value(samples, "corral_agent_container_starts_total") >= 1 else None

        samples: Samples = wait_until(started, 30, "the remote agent to run pod far")
        assert value(samples, "corral_agent_pod_starts_total") >= 1
        assert ("workqueue_depth", frozenset({("name", "agent")})) in samples
        assert value(samples, "workqueue_adds_total", name="agent") >= 1
        assert "process_cpu_seconds_total" in names(samples)
        # No API server in this process: no request series (the families are declared, without samples).
        assert not any(name.startswith("apiserver_") for name in names(samples))
        # The server's own agent did not start it.
        server_side = scraper.scrape()
        assert value(server_side, "corral_agent_running_containers") == 0
        assert requests.get(url.replace("/metrics", "/healthz"), timeout=10).text == "ok"

        requests_delete = scraper.request("DELETE", f"{pods_url}/far")
        assert requests_delete.status_code == 200
        wait_until(
            lambda: value(parse(requests.get(url, timeout=10).text), "corral_agent_running_containers") == 0,
            30,
            "the remote pod to stop",
        )
    finally:
        if agent is not None:
            stop_process(agent)
        server.stop()


def test_remote_agent_metrics_can_be_turned_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(tmp_path / "server").start()
    agent: subprocess.Popen[str] | None = None
    try:
        scraper = Scraper(server)
        agent = subprocess.Popen(
            [
                *CLI, "agent", "--server", server.url, "--token", scraper.token, "--ca-file", scraper.ca,
                "--name", "remote-2", "--data-dir", str(tmp_path / "agent"), "--stop-workloads-on-exit",
                "--dns-port", "-1", "--ingress-port", "-1", "--metrics-port", "-1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(home),
            start_new_session=True,
        )  # fmt: skip
        output = Lines(agent)
        output.wait_for(r"^Corral agent is running as node remote-2")
        assert not any(line.startswith("Metrics: ") for line in output.seen)
    finally:
        if agent is not None:
            stop_process(agent)
        server.stop()
