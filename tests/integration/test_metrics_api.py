"""The resource metrics API against a real server: ``kubectl top``, the Python client, ``corral top``.

One server for the module, sampling every 0.5 s so numbers appear quickly. Two pods: one burning a CPU
(``while :; do :; done``) and one sleeping (with memory and cpu limits, so on a root host its memory comes from
its cgroup). The busy pod must show clearly more CPU than the idle one; the node must show numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import Pods, pod_doc, wait_until

pytestmark = pytest.mark.compat

INTERVAL = 0.5
BUSY = ["sh", "-c", "while :; do :; done"]
IDLE = ["sleep", "3600"]


@pytest.fixture(scope="module")
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("corral-metrics"), metrics_interval=INTERVAL).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def kube(metrics_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    ns = f"m-{uuid.uuid4().hex[:8]}"
    k = Kubectl(metrics_server.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"), ns)
    k.run("create", "namespace", ns, namespace=False)
    yield k
    k.run("delete", "namespace", ns, "--wait=false", namespace=False, check=False)


@pytest.fixture(scope="module")
def running(kube: Kubectl, metrics_server: ServerProcess) -> Iterator[Pods]:
    pods = Pods(kube, metrics_server.kubeconfig)
    try:
        busy = pod_doc("busy", BUSY)
        busy["metadata"]["labels"] = {"load": "high"}
        idle = pod_doc("idle", IDLE, container={"resources": {"limits": {"memory": "64Mi", "cpu": "200m"}}})
        idle["metadata"]["labels"] = {"load": "none"}
        pods.apply(busy, idle)
        pods.wait_running("busy", timeout=20)
        pods.wait_running("idle", timeout=20)
        yield pods
        pods.delete_all()
    finally:
        pods.close()


def _millicores(text: str) -> int:
    assert text.endswith("m"), text
    return int(text[:-1])


def _mebibytes(text: str) -> int:
    assert text.endswith("Mi"), text
    return int(text[:-2])


def _top_pods(kube: Kubectl) -> dict[str, tuple[int, int]]:
    result = kube.run("top", "pods", check=False)
    if result.returncode != 0:
        return {}
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"], result.stdout
    return {
        cells[0]: (_millicores(cells[1]), _mebibytes(cells[2])) for cells in (ln.split() for ln in lines[1:])
    }


def test_kubectl_top_pods_tells_busy_from_idle(kube: Kubectl, running: Pods) -> None:
    def settled() -> dict[str, tuple[int, int]] | None:
        rows = _top_pods(kube)
        # A window over a full sample interval: the busy loop has had time to show as a core's worth.
        if set(rows) == {"busy", "idle"} and rows["busy"][0] > 300:
            return rows
        return None

    rows = wait_until(settled, 30, "kubectl top pods to show both pods, busy above 300m", interval=0.25)
    assert rows["idle"][0] < 50, rows
    # Memory: MiB rounded down, so a few hundred KiB of `sh`/`sleep` prints 0Mi; the raw bytes are checked
    # through the API below.
    raw = json.loads(
        kube.run("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/{kube.namespace}/pods").stdout
    )
    assert raw["kind"] == "PodMetricsList" and raw["apiVersion"] == "metrics.k8s.io/v1beta1"
    by_name = {item["metadata"]["name"]: item for item in raw["items"]}
    for name in ("busy", "idle"):
        item = by_name[name]
        assert item["metadata"]["namespace"] == kube.namespace
        assert item["window"].endswith("s") and item["timestamp"].endswith("Z")
        (container,) = item["containers"]
        assert container["name"] == "main"
        memory = container["usage"]["memory"]
        assert memory != "0" and (memory.endswith("Ki") or memory.isdigit()), memory
    assert by_name["busy"]["metadata"]["labels"] == {"load": "high"}


def test_kubectl_top_pod_by_name_selector_and_containers(kube: Kubectl, running: Pods) -> None:
    wait_until(lambda: "busy" in _top_pods(kube), 30, "metrics for the busy pod")
    one = kube.run("top", "pod", "busy").stdout.splitlines()
    assert len(one) == 2 and one[1].split()[0] == "busy"
    selected = kube.run("top", "pods", "-l", "load=none").stdout.splitlines()
    assert [line.split()[0] for line in selected[1:]] == ["idle"]
    per_container = kube.run("top", "pods", "--containers").stdout.splitlines()
    assert per_container[0].split() == ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert sorted((c[0], c[1]) for c in (line.split() for line in per_container[1:])) == [
        ("busy", "main"),
        ("idle", "main"),
    ]


def test_kubectl_top_nodes_prints_numbers(kube: Kubectl, running: Pods) -> None:
    def rows() -> list[list[str]] | None:
        result = kube.run("top", "nodes", namespace=False, check=False)
        if result.returncode != 0:
            return None
        return [line.split() for line in result.stdout.splitlines()]

    table = wait_until(rows, 30, "kubectl top nodes")
    assert table[0] == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert len(table) == 2
    name, cpu, cpu_pct, memory, memory_pct = table[1]
    assert name == running.node_name()
    # The busy pod alone keeps most of a core busy on this node.
    assert _millicores(cpu) > 300 and cpu_pct.endswith("%")
    assert _mebibytes(memory) > 0 and memory_pct.endswith("%")


def test_python_client_lists_and_gets_metrics(kube: Kubectl, running: Pods) -> None:
    wait_until(lambda: {"busy", "idle"} <= set(_top_pods(kube)), 30, "metrics for both pods")
    custom = client.CustomObjectsApi(running.api)
    listed = custom.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", kube.namespace, "pods")
    assert {item["metadata"]["name"] for item in listed["items"]} == {"busy", "idle"}
    selected = custom.list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", kube.namespace, "pods", label_selector="load=high"
    )
    assert [item["metadata"]["name"] for item in selected["items"]] == ["busy"]
    one = custom.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", kube.namespace, "pods", "idle")
    assert one["kind"] == "PodMetrics" and one["containers"][0]["name"] == "main"
    nodes = custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert [n["metadata"]["name"] for n in nodes["items"]] == [running.node_name()]
    assert nodes["items"][0]["usage"]["cpu"].endswith("n")


def test_missing_pod_is_404_and_writes_are_405(kube: Kubectl, running: Pods) -> None:
    custom = client.CustomObjectsApi(running.api)
    with pytest.raises(client.ApiException) as missing:
        custom.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", kube.namespace, "pods", "nope")
    assert missing.value.status == 404
    status = json.loads(missing.value.body)
    assert status["reason"] == "NotFound"
    assert status["message"] == f'podmetrics.metrics.k8s.io "{kube.namespace}/nope" not found'
    body = {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {"name": "forged"},
        "containers": [],
    }
    with pytest.raises(client.ApiException) as created:
        custom.create_namespaced_custom_object("metrics.k8s.io", "v1beta1", kube.namespace, "pods", body)
    assert created.value.status == 405
    assert json.loads(created.value.body)["reason"] == "MethodNotAllowed"
    with pytest.raises(client.ApiException) as deleted:
        custom.delete_namespaced_custom_object("metrics.k8s.io", "v1beta1", kube.namespace, "pods", "busy")
    assert deleted.value.status == 405
    # Still there: nothing was deleted.
    assert custom.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", kube.namespace, "pods", "busy")


def test_pod_not_running_has_no_metrics(kube: Kubectl, running: Pods) -> None:
    # Bound to a node that does not exist: it never runs, so metrics-server would have nothing for it.
    pending = pod_doc("pending", IDLE, nodeName="no-such-node")
    running.apply(pending)
    rows = _top_pods(kube)
    assert "pending" not in rows
    missing = kube.run("top", "pod", "pending", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_discovery_and_kubectl_get_podmetrics(kube: Kubectl, running: Pods) -> None:
    groups = json.loads(kube.run("get", "--raw", "/apis/metrics.k8s.io", namespace=False).stdout)
    assert groups["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
    resources = json.loads(kube.run("get", "--raw", "/apis/metrics.k8s.io/v1beta1", namespace=False).stdout)
    kinds = {r["name"]: (r["kind"], r["verbs"]) for r in resources["resources"]}
    assert kinds == {"nodes": ("NodeMetrics", ["get", "list"]), "pods": ("PodMetrics", ["get", "list"])}
    wait_until(lambda: "busy" in _top_pods(kube), 30, "metrics for the busy pod")
    table = kube.run("get", "podmetrics").stdout.splitlines()
    assert table[0].split()[0] == "NAME" and "busy" in {line.split()[0] for line in table[1:]}
    # Core pods still win the short name.
    assert kube.run("get", "pods", "busy", "-o", "jsonpath={.kind}").stdout == "Pod"


def test_corral_top(kube: Kubectl, running: Pods, metrics_server: ServerProcess) -> None:
    wait_until(lambda: {"busy", "idle"} <= set(_top_pods(kube)), 30, "metrics for both pods")

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KUBECONFIG=str(metrics_server.kubeconfig))
        cmd = [sys.executable, "-m", "corral.cli.main", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)

    pods = corral("top", "pods", "-n", kube.namespace, "--sort-by", "cpu")
    assert pods.returncode == 0, pods.stderr
    lines = [line.split() for line in pods.stdout.splitlines()]
    assert lines[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert [row[0] for row in lines[1:]] == ["busy", "idle"]  # sorted by CPU, highest first
    assert _millicores(lines[1][1]) > _millicores(lines[2][1])
    every = corral("top", "pods", "-A", "-l", "load=high")
    assert every.returncode == 0, every.stderr
    rows = [line.split() for line in every.stdout.splitlines()]
    assert rows[0][:2] == ["NAMESPACE", "NAME"] and [r[:2] for r in rows[1:]] == [[kube.namespace, "busy"]]
    nodes = corral("top", "nodes")
    assert nodes.returncode == 0, nodes.stderr
    header, row = (line.split() for line in nodes.stdout.splitlines())
    assert header == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert _millicores(row[1]) > 0 and row[2].endswith("%")
