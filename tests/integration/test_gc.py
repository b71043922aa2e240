"""Garbage collection along ownerReferences: Background, Foreground and Orphan cascades.

In-process (memory store, local transport, the collector alone) for the semantics, then through the real
kubectl against a server process for ``--cascade=background|foreground|orphan``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from corral.controllers.gc import GarbageCollector
from corral.controllers.gcgraph import Node
from corral.testing.controllers import InProcessCluster, rt
from corral.testing.process import ServerProcess
from tests.conftest import Kubectl

JSON = dict[str, Any]
NS = "default"
HOLD = "example.com/hold"


def owner_ref(owner: JSON, *, block: bool = True, controller: bool = True) -> JSON:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": block,
    }


async def configmap(
    c: InProcessCluster, name: str, *owners: JSON, finalizers: list[str] | None = None
) -> JSON:
    meta: JSON = {"name": name}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = finalizers
    return await c.transport.create(
        rt("configmaps"), NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    )


async def replicaset(c: InProcessCluster, name: str) -> JSON:
    body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    return await c.transport.create(rt("replicasets"), NS, body)


async def pod(c: InProcessCluster, name: str, owner: JSON) -> JSON:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "ownerReferences": [owner_ref(owner)]},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    return await c.transport.create(rt("pods"), NS, body)


async def release(c: InProcessCluster, resource: str, name: str) -> None:
    """Drop the test's hold finalizer so a deletion can finish."""
    obj = await c.get(resource, NS, name)
    assert obj is not None
    obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != HOLD]
    await c.transport.update(rt(resource), NS, name, obj)


def gone(c: InProcessCluster, resource: str, name: str) -> Any:
    async def check() -> bool:
        return await c.get(resource, NS, name) is None

    return check


async def test_background_delete_collects_dependents() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        rs = await replicaset(c, "web")
        for i in range(3):
            await pod(c, f"web-{i}", rs)
        await c.transport.delete(rt("replicasets"), NS, "web")
        for i in range(3):
            await c.wait_for(gone(c, "pods", f"web-{i}"), what=f"pod web-{i} collected")


async def test_foreground_owner_waits_for_its_dependents() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        owner = await configmap(c, "owner")
        await configmap(c, "held", owner_ref(owner), finalizers=[HOLD])
        await configmap(c, "free", owner_ref(owner))
        returned = await c.transport.delete(rt("configmaps"), NS, "owner", propagation_policy="Foreground")
        assert returned["metadata"]["deletionTimestamp"]
        assert returned["metadata"]["finalizers"] == ["foregroundDeletion"]
        await c.wait_for(gone(c, "configmaps", "free"), what="free dependent deleted")

        async def held_deleting() -> bool:
            held = await c.get("configmaps", NS, "held")
            return bool(held and held["metadata"].get("deletionTimestamp"))

        await c.wait_for(held_deleting, what="held dependent marked deleting")
        # The blocking dependent still exists, so the owner does too, marked for foreground deletion.
        for _ in range(20):
            stored = await c.get("configmaps", NS, "owner")
            assert stored is not None
            assert stored["metadata"]["finalizers"] == ["foregroundDeletion"]
            assert stored["metadata"]["deletionTimestamp"]
            await c.settle(quiet_rounds=1)
        await release(c, "configmaps", "held")
        await c.wait_for(gone(c, "configmaps", "held"), what="held dependent gone")
        await c.wait_for(gone(c, "configmaps", "owner"), what="owner gone after its dependents")


async def test_foreground_does_not_wait_for_non_blocking_dependents() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        owner = await configmap(c, "owner")
        await configmap(c, "loose", owner_ref(owner, block=False), finalizers=[HOLD])
        await c.transport.delete(rt("configmaps"), NS, "owner", propagation_policy="Foreground")
        await c.wait_for(gone(c, "configmaps", "owner"), what="owner gone")
        loose = await c.get("configmaps", NS, "loose")
        assert loose is not None and loose["metadata"].get("deletionTimestamp")
        await release(c, "configmaps", "loose")


async def test_foreground_cascades_through_levels() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        top = await configmap(c, "top")
        middle = await configmap(c, "middle", owner_ref(top))
        await configmap(c, "leaf", owner_ref(middle), finalizers=[HOLD])
        await c.transport.delete(rt("configmaps"), NS, "top", propagation_policy="Foreground")

        async def middle_in_foreground() -> bool:
            obj = await c.get("configmaps", NS, "middle")
            return bool(obj and "foregroundDeletion" in (obj["metadata"].get("finalizers") or []))

        # The middle object has a dependent, so it is deleted in the foreground too.
        await c.wait_for(middle_in_foreground, what="middle deleted in the foreground")
        assert await c.get("configmaps", NS, "top") is not None
        await release(c, "configmaps", "leaf")
        for name in ("leaf", "middle", "top"):
            await c.wait_for(gone(c, "configmaps", name), what=f"{name} gone")


async def test_orphan_keeps_dependents_without_the_reference() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        owner = await configmap(c, "owner")
        other = await configmap(c, "other")
        await configmap(c, "a", owner_ref(owner))
        await configmap(c, "b", owner_ref(owner, controller=False), owner_ref(other, controller=False))
        returned = await c.transport.delete(rt("configmaps"), NS, "owner", propagation_policy="Orphan")
        assert returned["metadata"]["finalizers"] == ["orphan"]
        await c.wait_for(gone(c, "configmaps", "owner"), what="owner gone")
        a = await c.get("configmaps", NS, "a")
        b = await c.get("configmaps", NS, "b")
        assert a is not None and "ownerReferences" not in a["metadata"]
        assert b is not None and [r["name"] for r in b["metadata"]["ownerReferences"]] == ["other"]


async def test_dependents_of_a_missing_owner_are_collected() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        ghost = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost", "uid": "no-such-uid"}}
        await configmap(c, "orphaned", owner_ref(ghost))
        await c.wait_for(gone(c, "configmaps", "orphaned"), what="dependent of a missing owner collected")


async def test_owner_recreated_with_the_same_name_is_another_owner() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        first = await configmap(c, "owner")
        await configmap(c, "old-dep", owner_ref(first), finalizers=[HOLD])
        # The hold keeps the old dependent around while a new owner of the same name appears.
        await c.transport.delete(rt("configmaps"), NS, "owner")
        second = await configmap(c, "owner")
        assert second["metadata"]["uid"] != first["metadata"]["uid"]
        new_dep = await configmap(c, "new-dep", owner_ref(second))

        async def old_dep_deleting() -> bool:
            obj = await c.get("configmaps", NS, "old-dep")
            return bool(obj and obj["metadata"].get("deletionTimestamp"))

        await c.wait_for(old_dep_deleting, what="old dependent collected although a same-named owner exists")
        await release(c, "configmaps", "old-dep")
        assert await c.get("configmaps", NS, "new-dep") == new_dep


async def test_a_dangling_reference_is_dropped_when_another_owner_remains() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        a = await configmap(c, "owner-a")
        b = await configmap(c, "owner-b")
        await configmap(c, "shared", owner_ref(a, controller=False), owner_ref(b, controller=False))
        await c.transport.delete(rt("configmaps"), NS, "owner-a")

        async def only_b() -> bool:
            obj = await c.get("configmaps", NS, "shared")
            assert obj is not None, "a dependent with a remaining owner must stay"
            return [r["name"] for r in obj["metadata"].get("ownerReferences") or []] == ["owner-b"]

        await c.wait_for(only_b, what="dangling reference removed")


async def test_owner_missing_from_the_cache_is_looked_up_not_assumed_gone() -> None:
    """The collector's graph knows the dependent but not (yet) the owner: a live GET finds it."""
    c = InProcessCluster()
    async with c:
        gc = GarbageCollector(c.transport)
        owner = await configmap(c, "owner")
        dep = await configmap(c, "dep", owner_ref(owner))
        node = Node.from_object("/configmaps", dep)
        gc._types["/configmaps"] = rt("configmaps")
        gc.graph.upsert("default/dep", node)
        assert await gc.reconcile(node.uid) is None
        assert await c.get("configmaps", NS, "dep") is not None
        # Once the owner really is gone (404), the same reconcile collects the dependent.
        await c.transport.delete(rt("configmaps"), NS, "owner")
        await gc.reconcile(node.uid)
        assert await c.get("configmaps", NS, "dep") is None


async def test_background_delete_of_a_plain_object_is_immediate() -> None:
    async with InProcessCluster(lambda t, _: GarbageCollector(t)) as c:
        await configmap(c, "plain")
        status = await c.transport.delete(rt("configmaps"), NS, "plain")
        assert status.get("kind") == "Status"
        assert await c.get("configmaps", NS, "plain") is None


# ------------------------------------------------------------------------------------------------ kubectl


def _apply(kubectl: Kubectl, *docs: JSON) -> None:
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs)))


def _get(kubectl: Kubectl, kind: str, name: str) -> JSON | None:
    result = kubectl.run("get", kind, name, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    data: JSON = json.loads(result.stdout)
    return data


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _family(kubectl: Kubectl, name: str) -> None:
    """An owner ConfigMap and two dependents (one held by a finalizer) created through kubectl."""
    _apply(kubectl, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    owner = _get(kubectl, "configmap", name)
    assert owner is not None
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": name,
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    _apply(
        kubectl,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-a", "ownerReferences": [ref]},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-held", "ownerReferences": [ref], "finalizers": [HOLD]},
        },
    )


def _release(kubectl: Kubectl, name: str) -> None:
    kubectl.run("patch", "configmap", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


@pytest.mark.compat
def test_kubectl_cascade_background(kubectl: Kubectl, server: ServerProcess) -> None:
    _family(kubectl, "bg")
    kubectl.run("delete", "configmap", "bg", "--cascade=background")
    assert _get(kubectl, "configmap", "bg") is None
    _wait(lambda: _get(kubectl, "configmap", "bg-a") is None, 15, "bg-a collected")
    _wait(
        lambda: (_get(kubectl, "configmap", "bg-held") or {}).get("metadata", {}).get("deletionTimestamp"),
        15,
        "bg-held deleting",
    )
    _release(kubectl, "bg-held")


@pytest.mark.compat
def test_kubectl_cascade_foreground(kubectl: Kubectl, server: ServerProcess) -> None:
    _family(kubectl, "fg")
    proc = kubectl.popen("delete", "configmap", "fg", "--cascade=foreground", "--timeout=60s")
    try:
        _wait(lambda: _get(kubectl, "configmap", "fg-a") is None, 15, "fg-a collected")
        owner = _get(kubectl, "configmap", "fg")
        assert owner is not None, "the owner must wait for its blocking dependent"
        assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert owner["metadata"]["deletionTimestamp"]
        assert proc.poll() is None, "kubectl waits while the owner exists"
        _release(kubectl, "fg-held")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert 'configmap "fg" deleted' in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _get(kubectl, "configmap", "fg") is None
    assert _get(kubectl, "configmap", "fg-held") is None


@pytest.mark.compat
def test_kubectl_cascade_orphan(kubectl: Kubectl, server: ServerProcess) -> None:
    _family(kubectl, "or")
    kubectl.run("delete", "configmap", "or", "--cascade=orphan")
    assert _get(kubectl, "configmap", "or") is None
    for name in ("or-a", "or-held"):
        dep = _get(kubectl, "configmap", name)
        assert dep is not None and not dep["metadata"].get("deletionTimestamp")
        assert "ownerReferences" not in dep["metadata"]
    _release(kubectl, "or-held")


def _deployment(name: str) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"]}],
                },
            },
        },
    }


def _items(kubectl: Kubectl, kind: str, selector: str) -> list[JSON]:
    items: list[JSON] = json.loads(kubectl.run("get", kind, "-l", selector, "-o", "json").stdout)["items"]
    return items


def _running_deployment(kubectl: Kubectl, name: str) -> None:
    _apply(kubectl, _deployment(name))

    def ready() -> bool:
        pods = _items(kubectl, "pods", f"app={name}")
        return len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)

    _wait(ready, 60, f"deployment {name} running")


@pytest.mark.compat
@pytest.mark.slow
def test_kubectl_foreground_delete_of_a_deployment(kubectl: Kubectl, server: ServerProcess) -> None:
    _running_deployment(kubectl, "fgd")
    kubectl.run("delete", "deployment", "fgd", "--cascade=foreground", "--timeout=90s", timeout=120)
    # kubectl returned once the deployment was gone, which foreground deletion allows only after its
    # replica set and the replica set's pods are gone.
    assert _items(kubectl, "replicasets", "app=fgd") == []
    assert _items(kubectl, "pods", "app=fgd") == []


@pytest.mark.compat
@pytest.mark.slow
def test_kubectl_orphan_delete_of_a_deployment(kubectl: Kubectl, server: ServerProcess) -> None:
    _running_deployment(kubectl, "ord")
    kubectl.run("delete", "deployment", "ord", "--cascade=orphan")
    (rs,) = _items(kubectl, "replicasets", "app=ord")
    assert "ownerReferences" not in rs["metadata"]
    pods = _items(kubectl, "pods", "app=ord")
    assert len(pods) == 2
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in pods)
    # The orphaned replica set can still be deleted, and takes its pods along.
    kubectl.run("delete", "replicaset", rs["metadata"]["name"])
    _wait(lambda: _items(kubectl, "pods", "app=ord") == [], 60, "pods of the orphaned replica set collected")
