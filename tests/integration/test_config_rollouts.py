"""Config-aware rollouts (issue 6, Done-means 2).

In-process (memory store, Deployment + ReplicaSet controllers and the garbage collector, fake clock) for the
pin semantics — snapshots, undo keeping old pins, opt-out, release with the revision history — then end to end
with a real server, real processes and the real kubectl: changing a ConfigMap rolls a 3-replica Deployment,
its new pods see the new value, and ``kubectl rollout undo`` brings back pods with the old one.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from corral.api.configrefs import CONFIG_OBSERVED, CONFIG_PINS, parse_pins
from corral.cli.rolloutplan import rollback
from corral.controllers.configpins import OPT_OUT, RELEASE_AFTER, SNAPSHOT_LABEL
from corral.controllers.deployment import DeploymentController
from corral.controllers.gc import GarbageCollector
from corral.controllers.replicaset import ReplicaSetController
from corral.testing.controllers import InProcessCluster, rt
from tests.conftest import Kubectl
from tests.integration.podkit import JSON, Pods, wait_until

NS = "default"
JSON_PATCH = "application/json-patch+json"
MERGE = "application/merge-patch+json"


def cluster() -> InProcessCluster:
    """No agent runs here, so the Deployments have 0 replicas: each rollout completes at once and the
    revision history is cleaned up as it would be after real pods turned Ready."""
    return InProcessCluster(
        lambda t, clock: DeploymentController(t, clock),
        lambda t, clock: ReplicaSetController(t, clock),
        lambda t, _: GarbageCollector(t),
    )


def configmap(name: str, **data: str) -> JSON:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def web(name: str = "web", replicas: int = 0, annotations: dict[str, str] | None = None) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "busybox",
                            "command": ["sleep", "1000"],
                            "env": [{"name": "G", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "g"}}}],
                            "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}],
                        }
                    ],
                    "volumes": [{"name": "conf", "configMap": {"name": "app"}}],
                },
            },
        },
    }


def pins(obj: JSON | None) -> dict[str, str]:
    assert obj is not None
    return parse_pins(obj["spec"]["template"]["metadata"].get("annotations"))


async def replica_sets(c: InProcessCluster) -> list[JSON]:
    return await c.list("replicasets.apps", NS)


async def snapshots(c: InProcessCluster) -> dict[str, JSON]:
    items = await c.list("configmaps", NS, label_selector=f"{SNAPSHOT_LABEL}=true")
    return {i["metadata"]["name"]: i for i in items}


async def test_pins_follow_content_survive_undo_and_are_released() -> None:
    async with cluster() as c:
        await c.transport.create(rt("configmaps"), NS, configmap("app", g="v1"))
        await c.transport.create(rt("deployments.apps"), NS, web())

        # One ReplicaSet, created already pinned (no second rollout for the pin itself).
        await c.wait_for(lambda: _one_pinned_rs(c), what="a pinned ReplicaSet")
        await c.settle()
        (rs1,) = await replica_sets(c)
        first = pins(rs1)["ConfigMap/app"]
        snap = (await snapshots(c))[first]
        assert snap["immutable"] is True and snap["data"] == {"g": "v1"}
        assert snap["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

        # A content change moves the pin: a second ReplicaSet, with a change cause kubectl shows.
        await c.transport.patch(rt("configmaps"), NS, "app", MERGE, {"data": {"g": "v2"}})
        d = await c.wait_for(lambda: _pinned_other_than(c, first), what="a moved pin")
        second = pins(d)["ConfigMap/app"]
        assert d["metadata"]["annotations"]["kubernetes.io/change-cause"] == "config change: ConfigMap app"
        await c.wait_for(lambda: _rs_pinned_to(c, second), what="a ReplicaSet on the new pin")
        assert (await snapshots(c))[second]["data"] == {"g": "v2"}
        # A metadata-only change of the ConfigMap rolls nothing.
        await c.transport.patch(rt("configmaps"), NS, "app", MERGE, {"metadata": {"labels": {"x": "y"}}})
        await c.settle()
        assert len(await replica_sets(c)) == 2

        # kubectl rollout undo (the same JSON patch): the old pin comes back and stays.
        d = await c.get("deployments.apps", NS, "web")
        assert d is not None
        undo = rollback(d, await replica_sets(c))
        assert undo.patch is not None
        await c.transport.patch(rt("deployments.apps"), NS, "web", JSON_PATCH, undo.patch)
        await c.settle()
        d = await c.get("deployments.apps", NS, "web")
        assert pins(d) == {"ConfigMap/app": first}
        assert json.loads(d["metadata"]["annotations"][CONFIG_OBSERVED])  # adopted the live hash
        assert len(await replica_sets(c)) == 2  # the old ReplicaSet was reused, nothing rolled forward

        # Opting out removes the pins: pods read the live object again.
        await c.transport.patch(
            rt("deployments.apps"), NS, "web", MERGE, {"metadata": {"annotations": {OPT_OUT: "false"}}}
        )
        d = await c.wait_for(lambda: _unpinned(c), what="pins removed")
        assert CONFIG_OBSERVED not in d["metadata"]["annotations"]
        assert CONFIG_PINS not in (d["spec"]["template"]["metadata"].get("annotations") or {})

        # History clean-up (revisionHistoryLimit 1) keeps the undone-to ReplicaSet and drops the other; once
        # the grace passed, the snapshot only that one pinned is deleted and the other stays.
        await c.settle()
        c.clock.advance((RELEASE_AFTER + timedelta(seconds=1)).total_seconds())
        c.kick(c.controllers[0], f"{NS}/web")
        await c.wait_for(lambda: _snapshot_count(c, at_most=1), what="snapshots released")
        assert set(await snapshots(c)) == {first}


async def test_deleting_the_deployment_deletes_its_snapshots() -> None:
    async with cluster() as c:
        await c.transport.create(rt("configmaps"), NS, configmap("app", g="v1"))
        await c.transport.create(rt("deployments.apps"), NS, web())
        await c.wait_for(lambda: _one_pinned_rs(c), what="a pinned ReplicaSet")
        assert len(await snapshots(c)) == 1
        await c.transport.delete(rt("deployments.apps"), NS, "web")
        await c.wait_for(lambda: _snapshot_count(c, at_most=0), what="snapshot collected")
        assert (await c.get("configmaps", NS, "app")) is not None  # the user's object stays


async def test_a_missing_configmap_is_pinned_when_it_appears() -> None:
    async with cluster() as c:
        await c.transport.create(rt("deployments.apps"), NS, web())
        await c.wait_for(lambda: _rs_count(c, 1), what="a ReplicaSet")
        await c.settle()
        assert pins(await c.get("deployments.apps", NS, "web")) == {}
        await c.transport.create(rt("configmaps"), NS, configmap("app", g="v1"))
        d = await c.wait_for(lambda: _pinned_other_than(c, ""), what="a pin")
        assert pins(d)["ConfigMap/app"].startswith("app-")


async def _one_pinned_rs(c: InProcessCluster) -> bool:
    rss = await replica_sets(c)
    return len(rss) == 1 and "ConfigMap/app" in pins(rss[0])


async def _rs_count(c: InProcessCluster, n: int) -> bool:
    return len(await replica_sets(c)) == n


async def _pinned_other_than(c: InProcessCluster, old: str) -> JSON | None:
    d = await c.get("deployments.apps", NS, "web")
    current = pins(d).get("ConfigMap/app")
    return d if current and current != old else None


async def _rs_pinned_to(c: InProcessCluster, snapshot: str) -> bool:
    return any(pins(rs).get("ConfigMap/app") == snapshot for rs in await replica_sets(c))


async def _unpinned(c: InProcessCluster) -> JSON | None:
    d = await c.get("deployments.apps", NS, "web")
    return d if not pins(d) else None


async def _snapshot_count(c: InProcessCluster, at_most: int) -> bool:
    return len(await snapshots(c)) <= at_most


# ------------------------------------------------------------------------------------- end to end


def reader_deployment(mount_path: str) -> JSON:
    """Three replicas printing the ConfigMap value from env and from the mounted file. ``mount_path`` is a
    fresh directory of the test: in namespace mode the volume is mounted there for real."""
    d = web("reader", replicas=3)
    container = d["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [{"name": "conf", "mountPath": mount_path}]
    # $CORRAL_VOLUMES + mountPath works in both volume modes (in namespace mode mountPath alone does too).
    loop = f'while :; do echo "env=$G file=$(cat "$CORRAL_VOLUMES{mount_path}/g")"; sleep 0.2; done'
    container["command"] = ["sh", "-c", loop]
    d["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    return d


def values_seen(pods: Pods) -> dict[str, str]:
    """Last log line of every running, non-terminating reader pod."""
    result = pods.kubectl.run("get", "pods", "-l", "app=reader", "-o", "json")
    seen: dict[str, str] = {}
    for pod in json.loads(result.stdout)["items"]:
        if pod["metadata"].get("deletionTimestamp") or pod.get("status", {}).get("phase") != "Running":
            continue
        name = pod["metadata"]["name"]
        log = pods.kubectl.run("logs", name, "--tail=1", check=False)
        seen[name] = log.stdout.strip() if log.returncode == 0 else ""
    return seen


def all_see(pods: Pods, expected: str, count: int = 3) -> dict[str, str] | None:
    seen = values_seen(pods)
    return seen if len(seen) == count and set(seen.values()) == {expected} else None


@pytest.mark.compat
def test_configmap_change_rolls_out_and_undo_restores_old_value(
    kubectl: Kubectl, server: Any, tmp_path: Path
) -> None:
    pods = Pods(kubectl, server.kubeconfig)
    try:
        pods.apply(configmap("app", g="v1"), reader_deployment(str(tmp_path / "conf")))
        kubectl.run("rollout", "status", "deployment/reader", "--timeout=60s")
        first = wait_until(lambda: all_see(pods, "env=v1 file=v1"), 30, "3 pods on v1")
        started = time.monotonic()

        kubectl.run("patch", "configmap", "app", "--type=merge", "-p", '{"data":{"g":"v2"}}')
        second = wait_until(lambda: all_see(pods, "env=v2 file=v2"), 60, "3 new pods on v2")
        rolled = time.monotonic() - started
        assert not set(first) & set(second), "the pods were replaced, not updated in place"
        kubectl.run("rollout", "status", "deployment/reader", "--timeout=60s")
        history = kubectl.run("rollout", "history", "deployment/reader").stdout
        assert "config change: ConfigMap app" in history

        kubectl.run("rollout", "undo", "deployment/reader")
        third = wait_until(lambda: all_see(pods, "env=v1 file=v1"), 60, "3 pods back on v1")
        assert not set(third) & set(second)
        # The live ConfigMap still says v2: the undo is what the user asked for, nothing rolls forward.
        live = json.loads(kubectl.run("get", "configmap", "app", "-o", "json").stdout)
        assert live["data"] == {"g": "v2"}
        kubectl.run("rollout", "status", "deployment/reader", "--timeout=60s")
        assert all_see(pods, "env=v1 file=v1") is not None
        print(f"config change → 3 new pods on v2 in {rolled:.1f} s")
    finally:
        kubectl.run("delete", "deployment", "reader", "--ignore-not-found", check=False)
        pods.delete_all()
        pods.close()
