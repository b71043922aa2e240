"""Node maintenance end to end: a real server process (its own, as cordoning its one node would stall other
tests), the real kubectl 1.32, the official Python client and the ``corral`` CLI.

With one node, pods evicted by a drain have nowhere to go (the node is cordoned), so their replacements
stay Pending: a PodDisruptionBudget of ``minAvailable: 2`` over 3 replicas then allows exactly one eviction
and the drain must give up at its timeout, reporting the 429. That is the honest assertion on one node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import api_client, wait_until

JSON = dict[str, Any]
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("corral-drain")).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def node(kubectl: Kubectl) -> Iterator[str]:
    name = kubectl.run("get", "nodes", "-o", "jsonpath={.items[0].metadata.name}", namespace=False).stdout
    assert name
    yield name
    # Whatever a test did to the node, the next one starts from a schedulable, untainted node.
    kubectl.run("uncordon", name, namespace=False, check=False)
    kubectl.run("taint", "nodes", name, "dedicated-", namespace=False, check=False)


def get(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl.run("get", *args, "-o", "json").stdout)


def deployment(name: str, replicas: int) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
"""


def budget(name: str, rule: str) -> str:
    return f"""
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: {name}}}
spec:
  {rule}
  selector: {{matchLabels: {{app: {name}}}}}
"""


def pods_of(kubectl: Kubectl, app: str) -> list[JSON]:
    items: list[JSON] = get(kubectl, "pods", "-l", f"app={app}")["items"]
    return items


def running_ready(pod: JSON) -> bool:
    status = pod.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return status.get("phase") == "Running" and conditions.get("Ready") == "True"


def wait_ready(kubectl: Kubectl, app: str, count: int) -> list[JSON]:
    def ready() -> list[JSON] | None:
        pods = [p for p in pods_of(kubectl, app) if not p["metadata"].get("deletionTimestamp")]
        return pods if len(pods) == count and all(running_ready(p) for p in pods) else None

    found: list[JSON] = wait_until(ready, 30, f"{count} ready {app} pods")
    return found


def wait_budget(kubectl: Kubectl, name: str, allowed: int) -> JSON:
    def settled() -> JSON | None:
        status: JSON = get(kubectl, "pdb", name).get("status") or {}
        return (
            status
            if status.get("observedGeneration") == 1 and status["disruptionsAllowed"] == allowed
            else None
        )

    found: JSON = wait_until(settled, 20, f"budget {name} to allow {allowed}")
    return found


def failed_scheduling(kubectl: Kubectl, pod: str) -> list[str]:
    events = get(kubectl, "events", "--field-selector", f"involvedObject.name={pod},reason=FailedScheduling")
    return [str(e.get("message")) for e in events["items"]]


def corral(server: ServerProcess, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "corral.cli.main", "--kubeconfig", str(server.kubeconfig), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_cordon_holds_new_pods_until_uncordon(kubectl: Kubectl, node: str) -> None:
    assert kubectl.run("cordon", node, namespace=False).stdout.strip() == f"node/{node} cordoned"
    spec = json.loads(kubectl.run("get", "node", node, "-o", "json", namespace=False).stdout)["spec"]
    assert spec.get("unschedulable") is True

    kubectl.run("apply", "-f", "-", stdin=deployment("held", 1))
    pending = wait_until(lambda: pods_of(kubectl, "held"), 15, "the held pod")[0]
    name = pending["metadata"]["name"]
    messages = wait_until(lambda: failed_scheduling(kubectl, name), 15, "a FailedScheduling event")
    assert any("node(s) were unschedulable" in m for m in messages), messages
    assert not get(kubectl, "pod", name)["spec"].get("nodeName")

    assert kubectl.run("uncordon", node, namespace=False).stdout.strip() == f"node/{node} uncordoned"
    wait_ready(kubectl, "held", 1)


def test_drain_evicts_one_pod_then_the_budget_holds(kubectl: Kubectl, node: str) -> None:
    kubectl.run("apply", "-f", "-", stdin=deployment("web", 3) + "---" + budget("web", "minAvailable: 2"))
    originals = {p["metadata"]["name"] for p in wait_ready(kubectl, "web", 3)}
    status = wait_budget(kubectl, "web", 1)
    assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"]) == (3, 2, 3)
    table = kubectl.run("get", "pdb", "web").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "MIN",
        "AVAILABLE",
        "MAX",
        "UNAVAILABLE",
        "ALLOWED",
        "DISRUPTIONS",
        "AGE",
    ]
    assert table[1].split()[:4] == ["web", "2", "N/A", "1"]

    result = kubectl.run(
        "drain",
        node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=12s",
        namespace=False,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout
    assert f"node/{node} cordoned" in result.stdout
    assert VIOLATION in result.stderr
    assert "global timeout reached: 12s" in result.stderr
    # Pods of earlier tests' namespaces (being deleted) may be evicted too; count this test's.
    evicted = [n for n in originals if f"pod/{n} evicted" in result.stdout.splitlines()]
    assert len(evicted) == 1, result.stdout

    remaining = {p["metadata"]["name"] for p in pods_of(kubectl, "web") if p["metadata"]["name"] in originals}
    assert remaining == originals - set(evicted)
    replacements = [p for p in pods_of(kubectl, "web") if p["metadata"]["name"] not in originals]
    assert len(replacements) == 1 and not replacements[0]["spec"].get("nodeName")
    status = wait_budget(kubectl, "web", 0)
    assert status["currentHealthy"] == 2

    # Uncordoned, the replacement lands and the budget allows one disruption again.
    kubectl.run("uncordon", node, namespace=False)
    wait_ready(kubectl, "web", 3)
    wait_budget(kubectl, "web", 1)


def test_python_client_eviction(server: ServerProcess, kubectl: Kubectl, node: str) -> None:
    kubectl.run("apply", "-f", "-", stdin=deployment("api", 2) + "---" + budget("api", "maxUnavailable: 0"))
    pods = wait_ready(kubectl, "api", 2)
    wait_budget(kubectl, "api", 0)
    core = client.CoreV1Api(api_client(server.kubeconfig))
    name = pods[0]["metadata"]["name"]
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=kubectl.namespace))
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod_eviction(name, kubectl.namespace, body)
    assert refused.value.status == 429
    status = json.loads(refused.value.body)
    assert status["message"] == VIOLATION
    assert status["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget api needs 2 healthy pods and has 2 currently",
        }
    ]
    assert get(kubectl, "pod", name)["metadata"]["name"] == name

    # A pod no budget covers is simply deleted.
    kubectl.run("apply", "-f", "-", stdin=deployment("free", 1))
    free = wait_ready(kubectl, "free", 1)[0]["metadata"]["name"]
    answer = core.create_namespaced_pod_eviction(
        free, kubectl.namespace, client.V1Eviction(metadata=client.V1ObjectMeta(name=free))
    )
    assert answer.kind == "Status"  # the client reads the Success Status into its V1Eviction model

    def gone() -> bool:
        return all(p["metadata"]["name"] != free for p in pods_of(kubectl, "free"))

    wait_until(gone, 15, f"{free} to be deleted")


def test_taint_and_corral_cli(server: ServerProcess, kubectl: Kubectl, node: str) -> None:
    out = kubectl.run("taint", "nodes", node, "dedicated=gpu:NoSchedule", namespace=False).stdout
    assert out.strip() == f"node/{node} tainted"
    kubectl.run("apply", "-f", "-", stdin=deployment("tainted", 1))
    pod = wait_until(lambda: pods_of(kubectl, "tainted"), 15, "the pod")[0]["metadata"]["name"]
    messages = wait_until(lambda: failed_scheduling(kubectl, pod), 15, "a FailedScheduling event")
    assert any("untolerated taint {dedicated: gpu}" in m for m in messages), messages

    removed = corral(server, "taint", "nodes", node, "dedicated:NoSchedule-")
    assert (removed.returncode, removed.stdout.strip()) == (0, f"node/{node} untainted"), removed.stderr
    wait_ready(kubectl, "tainted", 1)
    again = corral(server, "taint", "nodes", node, "dedicated-")
    assert again.returncode == 1 and 'taint "dedicated" not found' in again.stderr
    bad = corral(server, "taint", "nodes", node, "dedicated=gpu:Sometimes")
    assert bad.returncode == 1 and "invalid taint effect: Sometimes" in bad.stderr

    # corral drain without a budget in the way: both pods of a Deployment are evicted and waited for.
    kubectl.run("apply", "-f", "-", stdin=deployment("batch", 2))
    originals = {p["metadata"]["name"] for p in wait_ready(kubectl, "batch", 2)}
    drained = corral(server, "drain", node, "--timeout", "40s", timeout=90)
    assert drained.returncode == 0, drained.stderr
    lines = drained.stdout.splitlines()
    assert lines[0] == f"node/{node} cordoned" and lines[-1] == f"node/{node} drained"
    assert {f"pod/{n} evicted" for n in originals} <= set(lines)
    assert not originals & {p["metadata"]["name"] for p in pods_of(kubectl, "batch")}
    spec = json.loads(kubectl.run("get", "node", node, "-o", "json", namespace=False).stdout)["spec"]
    assert spec.get("unschedulable") is True
    uncordoned = corral(server, "uncordon", node)
    assert uncordoned.stdout.strip() == f"node/{node} uncordoned"
    wait_ready(kubectl, "batch", 2)


def test_bad_budgets_are_refused(kubectl: Kubectl, node: str) -> None:
    both = kubectl.run(
        "apply", "-f", "-", stdin=budget("both", "minAvailable: 1\n  maxUnavailable: 1"), check=False
    )
    assert both.returncode != 0
    assert "minAvailable and maxUnavailable cannot be both set" in both.stderr
    percent = kubectl.run("apply", "-f", "-", stdin=budget("pct", "minAvailable: 150%"), check=False)
    assert 'spec.minAvailable: Invalid value: "150%": must not be greater than 100%' in percent.stderr
    assert kubectl.run("get", "pdb", "-o", "name").stdout.strip() == ""
