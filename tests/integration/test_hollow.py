"""Hollow nodes against a real control-plane-only server: 20 simulated agents register and heartbeat, kubectl
sees them Ready, and a Deployment with hard spread constraints is bound across them (and, with
``mark_running``, becomes available although nothing runs)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.client.http import HttpTransport
from corral.client.kubeconfig import load_access
from corral.testing.hollow import (
    HOLLOW_LABEL,
    LEASE_NAMESPACE,
    LEASES,
    PODS,
    ZONE_LABEL,
    HollowConfig,
    HollowNodes,
    hollow_node_object,
)
from corral.testing.process import ServerProcess
from tests.conftest import Kubectl

JSON = dict[str, Any]
HOSTNAME = "kubernetes.io/hostname"


def test_hollow_node_object_labels() -> None:
    config = HollowConfig(count=5, zones=3, cpu=4, memory="8Gi")
    node = hollow_node_object(config, 4)
    labels = node["metadata"]["labels"]
    assert node["metadata"]["name"] == "hollow-00004"
    assert labels[HOSTNAME] == "hollow-00004"
    assert labels[ZONE_LABEL] == "zone-1"
    assert labels[HOLLOW_LABEL] == "true"
    assert ZONE_LABEL not in hollow_node_object(HollowConfig(count=1), 0)["metadata"]["labels"]


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server without its own node: every node in it is hollow."""
    proc = ServerProcess(tmp_path_factory.mktemp("corral-hollow"), agent=False).start()
    try:
        yield proc
    finally:
        proc.stop()


async def _until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _deployment(replicas: int) -> JSON:
    labels = {"app": "spread"}

    def spread(key: str) -> JSON:
        return {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": labels},
        }

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "spread"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "topologySpreadConstraints": [spread(HOSTNAME), spread(ZONE_LABEL)],
                    "containers": [
                        {
                            "name": "app",
                            "image": "busybox",
                            "command": ["sleep", "3600"],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }


async def test_hollow_nodes_ready_and_spread(control_plane: ServerProcess, tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: this test reads the nodes through the real kubectl 1.32")
    kubectl = Kubectl(control_plane.kubeconfig, tmp_path / "kubectl-cache", "hollow")
    transport = HttpTransport(load_access(control_plane.kubeconfig))
    nodes = HollowNodes([transport], HollowConfig(count=20, zones=4, mark_running=True))
    try:
        await nodes.start()

        # kubectl runs in a thread: the heartbeats share this event loop and must keep beating meanwhile.
        listed = json.loads((await asyncio.to_thread(kubectl.run, "get", "nodes", "-o", "json")).stdout)
        items = listed["items"]
        assert sorted(n["metadata"]["name"] for n in items) == nodes.names
        for node in items:
            ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
            assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
            assert node["status"]["allocatable"]["pods"] == "110"
        assert Counter(n["metadata"]["labels"][ZONE_LABEL] for n in items) == {
            f"zone-{i}": 5 for i in range(4)
        }
        table = (await asyncio.to_thread(kubectl.run, "get", "nodes", "--no-headers")).stdout.splitlines()
        assert len(table) == 20 and all(line.split()[1] == "Ready" for line in table), table

        # Every node renews its Lease: the renewTime moves past the one written at registration.
        first = {n: nodes._leases[n]["spec"]["renewTime"] for n in nodes.names}

        async def all_renewed() -> bool:
            leases = (await transport.list(LEASES, LEASE_NAMESPACE)).items
            renewed = {
                lease["metadata"]["name"]
                for lease in leases
                if lease["metadata"]["name"] in first
                and lease["spec"]["renewTime"] > first[lease["metadata"]["name"]]
            }
            return len(renewed) == 20

        await _until(all_renewed, 15, "every Lease renewed")
        assert nodes.stats.failures == 0

        await asyncio.to_thread(kubectl.run, "create", "namespace", "hollow", namespace=False)
        await asyncio.to_thread(kubectl.run, "apply", "-f", "-", stdin=json.dumps(_deployment(40)))

        async def placed() -> list[JSON] | None:
            pods = (await transport.list(PODS, "hollow", label_selector="app=spread")).items
            bound = [p for p in pods if p["spec"].get("nodeName")]
            return bound if len(pods) == 40 and len(bound) == 40 else None

        pods = await _until(placed, 60, "40 bound replicas")
        per_node = Counter(p["spec"]["nodeName"] for p in pods)
        assert per_node == dict.fromkeys(nodes.names, 2), per_node
        zone_of_node = {n["metadata"]["name"]: n["metadata"]["labels"][ZONE_LABEL] for n in items}
        per_zone = Counter(zone_of_node[p["spec"]["nodeName"]] for p in pods)
        assert max(per_zone.values()) - min(per_zone.values()) <= 1, per_zone

        # mark_running: the hollow nodes report the pods Running and Ready, so the Deployment is available.
        async def available() -> bool:
            out = await asyncio.to_thread(
                kubectl.run, "get", "deployment", "spread", "-o", "jsonpath={.status.availableReplicas}"
            )
            return out.stdout.strip() == "40"

        await _until(available, 60, "the Deployment available")
        assert nodes.stats.failures == 0
        assert nodes.stats.max_gap < 10, "a heartbeat gap long enough for the lifecycle controller to notice"
    finally:
        await nodes.stop()
        await transport.close()
    assert not nodes._tasks
