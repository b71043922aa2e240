"""The scheduler against a real ResourceAPI over the in-process transport: binding, spreading, FailedScheduling
events, and scheduling once a node becomes Ready. Also the ``pods/binding`` subresource's CAS rules. Last, one
end-to-end run against a real server process: hollow Nodes registered through the API receive a Deployment's
replicas as its topologySpreadConstraint says, and an unplaceable pod explains itself in an event."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from corral.apiserver import status as st
from corral.apiserver.rest import ResourceAPI
from corral.client.local import LocalTransport
from corral.scheduler.scheduler import EVENTS, NODES, PODS, Scheduler
from corral.scheduler.snapshot import Snapshot
from corral.server import bootstrap
from corral.store import MemoryStore
from corral.testing.clock import FakeClock
from corral.testing.process import ServerProcess
from corral.util.backoff import ExponentialBackoff
from tests.integration.podkit import api_client

JSON = dict[str, Any]


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.02)


@dataclass
class Cluster:
    api: ResourceAPI
    transport: LocalTransport

    async def add_node(self, name: str, *, ready: str = "True", cpu: str = "2", memory: str = "4Gi") -> None:
        await self.transport.create(
            NODES, None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        )
        await self.set_node_status(name, ready=ready, cpu=cpu, memory=memory)

    async def set_node_status(self, name: str, *, ready: str, cpu: str = "2", memory: str = "4Gi") -> None:
        node = await self.transport.get(NODES, None, name)
        node["status"] = {
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True" else "Test"}
            ],
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
        }
        await self.transport.update(NODES, None, name, node, subresource="status")

    async def add_pod(self, name: str, *, cpu: str = "100m", labels: dict[str, str] | None = None) -> JSON:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "busybox",
                        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}},
                    }
                ]
            },
        }
        return await self.transport.create(PODS, "default", body)

    async def pods(self) -> list[JSON]:
        return (await self.transport.list(PODS, "default")).items

    async def pod(self, name: str) -> JSON:
        return await self.transport.get(PODS, "default", name)

    async def events_for(self, name: str) -> list[JSON]:
        listed = await self.transport.list(EVENTS, "default", field_selector=f"involvedObject.name={name}")
        return listed.items


def scheduled_condition(pod: JSON) -> JSON | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            return dict(cond)
    return None


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    try:
        yield Cluster(api, LocalTransport(api))
    finally:
        await store.close()


@pytest.fixture
async def scheduler(cluster: Cluster) -> AsyncIterator[Scheduler]:
    sched = Scheduler(cluster.transport, FakeClock(), backoff=ExponentialBackoff(base=0.05, cap=0.5))
    task = asyncio.create_task(sched.run())
    try:
        yield sched
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pods_are_bound_and_spread(cluster: Cluster, scheduler: Scheduler) -> None:
    for name in ("node-a", "node-b", "node-c"):
        await cluster.add_node(name)
    for i in range(6):
        await cluster.add_pod(f"web-{i}", labels={"app": "web"})

    async def all_bound() -> bool:
        return all(p["spec"].get("nodeName") for p in await cluster.pods())

    await wait_for(all_bound)
    pods = await cluster.pods()
    assert Counter(p["spec"]["nodeName"] for p in pods) == {"node-a": 2, "node-b": 2, "node-c": 2}
    for p in pods:
        cond = scheduled_condition(p)
        assert cond is not None and cond["status"] == "True"
    await wait_for(lambda: cluster.events_for("web-0"))
    (event,) = await cluster.events_for("web-0")
    assert event["reason"] == "Scheduled" and event["type"] == "Normal"
    assert event["message"] == f"Successfully assigned default/web-0 to {pods[0]['spec']['nodeName']}"


async def test_pod_that_fits_nowhere_stays_pending_with_a_reason(
    cluster: Cluster, scheduler: Scheduler
) -> None:
    for name in ("node-a", "node-b", "node-c"):
        await cluster.add_node(name)
    created = await cluster.add_pod("huge", cpu="100")
    message = "0/3 nodes are available: 3 Insufficient cpu."

    async def marked() -> bool:
        cond = scheduled_condition(await cluster.pod("huge"))
        return cond is not None and cond.get("status") == "False"

    await wait_for(marked)
    pod = await cluster.pod("huge")
    assert not pod["spec"].get("nodeName")
    assert pod["status"]["phase"] == "Pending"
    cond = scheduled_condition(pod)
    assert cond is not None
    assert (cond["reason"], cond["message"]) == ("Unschedulable", message)
    await wait_for(lambda: cluster.events_for("huge"))
    # Retries with backoff repeat the same message: still one event for it, whose count may grow. (An
    # earlier attempt may have seen the nodes before their status was set: that is another message.)
    await asyncio.sleep(0.3)
    events = [e for e in await cluster.events_for("huge") if e["message"] == message]
    assert len(events) == 1, [e["message"] for e in await cluster.events_for("huge")]
    (event,) = events
    assert (event["reason"], event["type"], event["message"]) == ("FailedScheduling", "Warning", message)
    assert event["source"] == {"component": "default-scheduler"}
    assert event["involvedObject"]["uid"] == created["metadata"]["uid"]
    assert event["involvedObject"]["kind"] == "Pod"
    assert event["firstTimestamp"] and event["lastTimestamp"]

    async def counted_again() -> bool:
        repeats = [e for e in await cluster.events_for("huge") if e["message"] == message]
        return len(repeats) == 1 and repeats[0]["count"] >= 2

    await wait_for(counted_again)


async def test_pod_is_scheduled_once_a_node_becomes_ready(cluster: Cluster) -> None:
    await cluster.add_node("node-a", ready="False")
    # A long backoff: only the node change can get the pod scheduled within the deadline.
    sched = Scheduler(cluster.transport, FakeClock(), backoff=ExponentialBackoff(base=60.0, cap=60.0))
    task = asyncio.create_task(sched.run())
    try:
        await cluster.add_pod("waiting")

        async def marked() -> bool:
            cond = scheduled_condition(await cluster.pod("waiting"))
            return cond is not None and cond.get("status") == "False"

        await wait_for(marked)
        cond = scheduled_condition(await cluster.pod("waiting"))
        assert cond is not None
        assert cond["message"] == (
            "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
        )
        await cluster.set_node_status("node-a", ready="True")

        async def bound() -> bool:
            return bool((await cluster.pod("waiting"))["spec"].get("nodeName") == "node-a")

        await wait_for(bound, timeout=5.0)
        cond = scheduled_condition(await cluster.pod("waiting"))
        assert cond is not None and cond["status"] == "True"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_deleting_a_pod_makes_room_for_a_waiting_one(cluster: Cluster) -> None:
    await cluster.add_node("node-a")
    sched = Scheduler(cluster.transport, FakeClock(), backoff=ExponentialBackoff(base=60.0, cap=60.0))
    task = asyncio.create_task(sched.run())
    try:
        await cluster.add_pod("first", cpu="1500m")
        await wait_for(lambda: _bound(cluster, "first"))
        await cluster.add_pod("second", cpu="1500m")

        async def marked() -> bool:
            cond = scheduled_condition(await cluster.pod("second"))
            return cond is not None and cond.get("status") == "False"

        await wait_for(marked)
        # Grace 0, as the agent confirms once its processes stopped: until then the pod holds its resources.
        await cluster.transport.delete(PODS, "default", "first", grace_period_seconds=0)
        await wait_for(lambda: _bound(cluster, "second"), timeout=5.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_pods_of_another_scheduler_are_left_alone(cluster: Cluster, scheduler: Scheduler) -> None:
    await cluster.add_node("node-a")
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "theirs"},
        "spec": {"schedulerName": "other", "containers": [{"name": "app", "image": "busybox"}]},
    }
    await cluster.transport.create(PODS, "default", body)
    await cluster.add_pod("ours")
    await wait_for(lambda: _bound(cluster, "ours"))
    assert not (await cluster.pod("theirs"))["spec"].get("nodeName")


async def test_kept_snapshot_matches_a_rebuild(cluster: Cluster, scheduler: Scheduler) -> None:
    """The snapshot kept between decisions (grown by our own bindings) equals one built from scratch."""
    for name in ("node-a", "node-b", "node-c"):
        await cluster.add_node(name)
    for i in range(12):
        await cluster.add_pod(f"burst-{i}", labels={"app": "burst"})

    async def all_bound() -> bool:
        return all(p["spec"].get("nodeName") for p in await cluster.pods())

    await wait_for(all_bound)

    def layout(snap: Snapshot) -> dict[str, tuple[list[str], Any]]:
        return {n.name: (sorted(p.key for p in n.pods), n.requested) for n in snap.nodes}

    async def consistent() -> bool:
        fresh = Snapshot.build((await cluster.transport.list(NODES, None)).items, await cluster.pods())
        return layout(scheduler.snapshot()) == layout(fresh)

    await wait_for(consistent)
    await cluster.transport.delete(PODS, "default", "burst-0", grace_period_seconds=0)
    await wait_for(consistent)
    assert all(p.name != "burst-0" for n in scheduler.snapshot().nodes for p in n.pods)


class FlakyBinds(LocalTransport):
    """The in-process transport whose first ``failures`` binds fail as an unavailable server would."""

    def __init__(self, api: ResourceAPI, failures: int) -> None:
        super().__init__(api)
        self.failures = failures
        self.attempts: list[str] = []

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str | None = None) -> None:
        self.attempts.append(node_name)
        if len(self.attempts) <= self.failures:
            raise st.ApiError(503, "ServiceUnavailable", "store unavailable")
        await super().bind(namespace, name, node_name, uid=uid)


async def test_a_failed_background_bind_forgets_its_assumption_and_retries(cluster: Cluster) -> None:
    """Binds run behind the worker: one that fails must not leave the pod counted on its node."""
    await cluster.add_node("node-a", cpu="1")
    transport = FlakyBinds(cluster.api, failures=1)
    sched = Scheduler(transport, FakeClock(), backoff=ExponentialBackoff(base=0.3, cap=0.3))
    task = asyncio.create_task(sched.run())
    try:
        await cluster.add_pod("big", cpu="800m")
        await wait_for(lambda: len(transport.attempts) >= 1)
        await sched.idle()  # the failed bind has run its course: assumption dropped, pod requeued
        assert not await _bound(cluster, "big")
        assert sched.snapshot().nodes[0].requested.milli_cpu == 0
        await wait_for(lambda: _bound(cluster, "big"))
        assert transport.attempts == ["node-a", "node-a"]
        await wait_for(lambda: cluster.events_for("big"))
        assert [e["reason"] for e in await cluster.events_for("big")] == ["Scheduled"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _bound(cluster: Cluster, name: str) -> bool:
    return bool((await cluster.pod(name))["spec"].get("nodeName"))


# ---------------------------------------------------------------------------------------------- binding


async def test_binding_sets_node_and_condition_once(cluster: Cluster) -> None:
    created = await cluster.add_pod("p")
    uid = created["metadata"]["uid"]
    bound = await cluster.api.bind("default", "p", "node-a", uid)
    assert bound["spec"]["nodeName"] == "node-a"
    assert int(bound["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    cond = scheduled_condition(bound)
    assert cond is not None and cond["status"] == "True" and cond["lastTransitionTime"]
    stored = await cluster.pod("p")
    assert stored["spec"]["nodeName"] == "node-a"

    with pytest.raises(st.ApiError) as again:
        await cluster.transport.bind("default", "p", "node-b")
    assert again.value.code == 409
    assert 'already assigned to node "node-a"' in again.value.message
    assert (await cluster.pod("p"))["spec"]["nodeName"] == "node-a"


async def test_binding_preconditions(cluster: Cluster) -> None:
    await cluster.add_pod("p")
    with pytest.raises(st.ApiError) as wrong_uid:
        await cluster.transport.bind("default", "p", "node-a", uid="not-the-uid")
    assert wrong_uid.value.code == 409
    with pytest.raises(st.ApiError) as missing:
        await cluster.transport.bind("default", "nope", "node-a")
    assert missing.value.code == 404
    with pytest.raises(st.ApiError) as no_node:
        await cluster.transport.bind("default", "p", "")
    assert no_node.value.code == 422
    assert not (await cluster.pod("p"))["spec"].get("nodeName")


async def test_concurrent_bindings_place_a_pod_once(cluster: Cluster) -> None:
    await cluster.add_pod("p")
    results = await asyncio.gather(
        *(cluster.transport.bind("default", "p", f"node-{i}") for i in range(5)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, st.ApiError) and r.code == 409 for r in results if r is not None)


# ---------------------------------------------------------------------------------------------- end to end

HOLLOW = "corral.dev/hollow"


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of our own: hollow nodes must not receive other tests' pods."""
    proc = ServerProcess(tmp_path_factory.mktemp("corral-scheduler")).start()
    try:
        yield proc
    finally:
        proc.stop()


def _register_hollow_node(core: client.CoreV1Api, name: str, cpu: str, memory: str) -> None:
    """A Node object with no agent behind it: Ready and roomy, so only the scheduler's rules decide."""
    core.create_node({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, HOLLOW: "true"}}})
    node = core.read_node(name).to_dict()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    amounts = {"cpu": cpu, "memory": memory, "pods": "110"}
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": node["metadata"]["resource_version"]},
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "capacity": amounts,
            "allocatable": amounts,
        },
    }
    core.replace_node_status(name, body)


def _until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_end_to_end_spread_and_explanation(own_server: ServerProcess) -> None:
    api = api_client(own_server.kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = "sched-e2e"
    core.create_namespace({"metadata": {"name": ns}})
    # Very unequal nodes: least-allocated scoring alone would pile replicas onto the big one; the hard
    # spread constraint must keep them 2-2-2.
    _register_hollow_node(core, "hollow-big", "64", "256Gi")
    _register_hollow_node(core, "hollow-a", "2", "4Gi")
    _register_hollow_node(core, "hollow-b", "2", "4Gi")
    total_nodes = len(core.list_node().items)
    labels = {"app": "spread"}
    container = {
        "name": "app",
        "image": "busybox",
        "command": ["sleep", "3600"],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    }
    apps.create_namespaced_deployment(
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "spread"},
            "spec": {
                "replicas": 6,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {HOLLOW: "true"},
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 1,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "DoNotSchedule",
                                "labelSelector": {"matchLabels": labels},
                            }
                        ],
                        "containers": [container],
                    },
                },
            },
        },
    )

    def placed() -> list[str] | None:
        pods = core.list_namespaced_pod(ns, label_selector="app=spread").items
        nodes = [p.spec.node_name for p in pods]
        return nodes if len(nodes) == 6 and all(nodes) else None

    nodes = _until(placed, 30, "six bound replicas")
    assert Counter(nodes) == {"hollow-big": 2, "hollow-a": 2, "hollow-b": 2}

    core.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "loner"},
            "spec": {
                "nodeSelector": {HOLLOW: "true"},
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": labels},
                            }
                        ]
                    }
                },
                "containers": [container],
            },
        },
    )
    expected = (
        f"0/{total_nodes} nodes are available: "
        f"{total_nodes - 3} node(s) didn't match Pod's node affinity/selector, "
        "3 node(s) didn't match pod anti-affinity rules."
    )

    def explained() -> bool:
        events = core.list_namespaced_event(ns, field_selector="involvedObject.name=loner").items
        return any(e.reason == "FailedScheduling" and e.message == expected for e in events)

    _until(explained, 30, f"a FailedScheduling event saying {expected!r}")
    loner = core.read_namespaced_pod("loner", ns)
    assert not loner.spec.node_name
    (cond,) = [c for c in loner.status.conditions or [] if c.type == "PodScheduled"]
    assert (cond.status, cond.reason, cond.message) == ("False", "Unschedulable", expected)
