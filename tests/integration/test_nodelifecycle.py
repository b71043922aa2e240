"""Node lifecycle: a node whose Lease stops is NotReady and tainted, its pods leave the endpoints at once and
are evicted after their toleration and replaced; a returning agent stops what it should no longer run before
it reports Ready.

The first test runs the controllers in process with a FakeClock and plays the agents (Node status, Lease
renewals) and the scheduler (``pods/binding``) itself. The second wires a real Agent over a real process
runtime in process, because only there can pods be deleted while no agent runs.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from corral.agent.agent import NODES, PODS, Agent, AgentConfig
from corral.agent.runtimes.process import ProcessRuntime
from corral.apiserver.rest import ResourceAPI
from corral.client.local import LocalTransport
from corral.controllers.deployment import DeploymentController
from corral.controllers.endpoints import EndpointsController
from corral.controllers.nodelifecycle import NodeLifecycleController
from corral.controllers.nodelifecycleplan import TAINT_UNREACHABLE, LifecycleConfig
from corral.controllers.replicaset import ReplicaSetController
from corral.server import bootstrap
from corral.store import MemoryStore
from corral.testing.controllers import InProcessCluster, rt
from corral.testing.process import ServerProcess
from corral.testing.waiting import eventually
from corral.util.clock import rfc3339
from tests.conftest import Kubectl
from tests.integration.podkit import alive, group_members, main_pid, pgid_of

JSON = dict[str, Any]
NS = "default"
CONFIG = LifecycleConfig(grace_period=10.0, default_toleration_seconds=5.0)


def make_cluster() -> tuple[InProcessCluster, NodeLifecycleController]:
    holder: list[NodeLifecycleController] = []

    def lifecycle(t: LocalTransport, clock: Any) -> NodeLifecycleController:
        holder.append(NodeLifecycleController(t, clock, CONFIG))
        return holder[0]

    c = InProcessCluster(
        lambda t, clock: DeploymentController(t, clock),
        lambda t, clock: ReplicaSetController(t, clock),
        lambda t, clock: EndpointsController(t, clock),
        lifecycle,
    )
    return c, holder[0]


async def register_node(c: InProcessCluster, name: str, address: str) -> None:
    """What an agent does: the Node, a Ready status, a Lease."""
    await c.transport.create(
        rt("nodes"), None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    )
    await post_ready(c, name, address)
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 10, "renewTime": lease_time(c)},
    }
    await c.transport.create(rt("leases.coordination.k8s.io"), "kube-node-lease", lease)


async def post_ready(c: InProcessCluster, name: str, address: str) -> None:
    node = await c.get("nodes", None, name)
    assert node is not None
    now = rfc3339(c.clock.now())
    node["status"] = {
        "addresses": [{"type": "InternalIP", "address": address}],
        "conditions": [
            {"type": t, "status": s, "lastHeartbeatTime": now, "lastTransitionTime": now}
            for t, s in (
                ("Ready", "True"),
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
            )
        ],
    }
    await c.transport.update(rt("nodes"), None, name, node, subresource="status")


def lease_time(c: InProcessCluster) -> str:
    return c.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def renew(c: InProcessCluster, name: str) -> None:
    lease = await c.get("leases.coordination.k8s.io", "kube-node-lease", name)
    assert lease is not None
    lease["spec"]["renewTime"] = lease_time(c)
    await c.transport.update(rt("leases.coordination.k8s.io"), "kube-node-lease", name, lease)


async def bind_and_run(c: InProcessCluster, pod: JSON, node: str, address: str, port: int) -> None:
    """Play the scheduler (binding) and the agent (ports annotation, Running and Ready)."""
    name = pod["metadata"]["name"]
    await c.transport.bind(NS, name, node, uid=pod["metadata"]["uid"])
    current = await c.get("pods", NS, name)
    assert current is not None
    current["metadata"].setdefault("annotations", {})["corral.dev/ports"] = json.dumps({"web/8080/TCP": port})
    current = await c.transport.update(rt("pods"), NS, name, current)
    current["status"] = {
        "phase": "Running",
        "podIP": address,
        "podIPs": [{"ip": address}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    await c.transport.update(rt("pods"), NS, name, current, subresource="status")


def deployment(replicas: int) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}
                    ]
                },
            },
        },
    }


def service() -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }


async def pods_of(c: InProcessCluster) -> list[JSON]:
    return await c.list("pods", NS, label_selector="app=web")


async def ready_endpoint_ports(c: InProcessCluster) -> list[int]:
    endpoints = await c.get("endpoints", NS, "web")
    ports = []
    for subset in (endpoints or {}).get("subsets") or []:
        for _ in subset.get("addresses") or []:
            ports += [p["port"] for p in subset.get("ports") or []]
    return sorted(ports)


def condition(obj: JSON | None, ctype: str) -> str | None:
    for cond in (obj or {}).get("status", {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return str(cond.get("status"))
    return None


def owned_taints(node: JSON | None) -> list[tuple[str, str]]:
    return sorted(
        (t["key"], t["effect"])
        for t in (node or {}).get("spec", {}).get("taints") or []
        if t["key"].startswith("node.kubernetes.io/")
    )


async def test_unreachable_node_is_tainted_its_pods_dropped_evicted_and_replaced() -> None:
    c, lifecycle = make_cluster()
    async with c:
        await register_node(c, "node-a", "127.0.0.2")
        await register_node(c, "node-b", "127.0.0.3")
        await c.transport.create(rt("services"), NS, service())
        await c.transport.create(rt("deployments.apps"), NS, deployment(4))
        pods = await c.wait_for(lambda: _exactly(c, 4), what="4 pods")
        # Defaulting gave every pod the two node tolerations with Corral's short default.
        tolerations = {t["key"]: t.get("tolerationSeconds") for t in pods[0]["spec"]["tolerations"]}
        assert tolerations[TAINT_UNREACHABLE] == 5
        for i, pod in enumerate(sorted(pods, key=lambda p: p["metadata"]["name"])):
            node, address = ("node-a", "127.0.0.2") if i < 2 else ("node-b", "127.0.0.3")
            await bind_and_run(c, pod, node, address, 20000 + i)
        await c.wait_for(lambda: _ports_are(c, [20000, 20001, 20002, 20003]), what="4 ready endpoints")
        on_a = sorted(p["metadata"]["name"] for p in await pods_of(c) if p["spec"]["nodeName"] == "node-a")

        # 9 s without node-a's Lease: within the grace period, nothing happens.
        c.clock.advance(9)
        await renew(c, "node-b")
        c.kick(lifecycle, "node-a")
        await c.settle()
        assert condition(await c.get("nodes", None, "node-a"), "Ready") == "True"
        assert await ready_endpoint_ports(c) == [20000, 20001, 20002, 20003]

        # Past 10 s: node-a is Unknown and tainted unreachable; its pods NotReady and out of the endpoints.
        c.clock.advance(2)
        await renew(c, "node-b")
        c.kick(lifecycle, "node-a")
        c.kick(lifecycle, "node-b")
        node_a = await c.wait_for(lambda: _ready_is(c, "node-a", "Unknown"), what="node-a Unknown")
        assert condition(node_a, "MemoryPressure") == "Unknown"
        await c.wait_for(
            lambda: _taints_are(
                c, "node-a", [(TAINT_UNREACHABLE, "NoExecute"), (TAINT_UNREACHABLE, "NoSchedule")]
            ),
            what="unreachable taints",
        )
        await c.wait_for(lambda: _ports_are(c, [20002, 20003]), what="node-a's pods out of the endpoints")
        for name in on_a:
            pod = await c.get("pods", NS, name)
            assert condition(pod, "Ready") == "False" and not pod["metadata"].get("deletionTimestamp")
        node_b = await c.get("nodes", None, "node-b")
        assert condition(node_b, "Ready") == "True" and owned_taints(node_b) == []

        # The toleration (5 s from the taint) runs out: node-a's pods are evicted and replaced.
        c.clock.advance(4)
        await renew(c, "node-b")
        c.kick(lifecycle, "node-a")
        await c.settle()
        for name in on_a:
            pod = await c.get("pods", NS, name)
            assert pod is not None and not pod["metadata"].get("deletionTimestamp")  # 4 s < 5 s
        c.clock.advance(1.5)
        await renew(c, "node-b")
        c.kick(lifecycle, "node-a")

        async def evicted_and_replaced() -> list[JSON] | None:
            found = await pods_of(c)
            going = [p for p in found if p["metadata"].get("deletionTimestamp")]
            active = [p for p in found if not p["metadata"].get("deletionTimestamp")]
            ok = sorted(p["metadata"]["name"] for p in going) == on_a and len(active) == 4
            return active if ok else None

        active = await c.wait_for(evicted_and_replaced, what="evictions and replacements")
        replacements = [p for p in active if not p["spec"].get("nodeName")]
        assert len(replacements) == 2  # unbound: the scheduler (not running here) places them
        events = await c.list("events", NS)
        evictions = [e for e in events if e["reason"] == "TaintManagerEviction"]
        assert sorted(e["message"] for e in evictions) == [
            f"Marking for deletion Pod default/{n}" for n in on_a
        ]

        # The scheduler would put them on node-b; once Ready, they serve.
        for i, pod in enumerate(replacements):
            await bind_and_run(c, pod, "node-b", "127.0.0.3", 20010 + i)
        await c.wait_for(
            lambda: _ports_are(c, [20002, 20003, 20010, 20011]), what="replacements in endpoints"
        )

        # node-a comes back: Ready again, the taints go; nothing new is evicted from node-b.
        await renew(c, "node-a")
        await post_ready(c, "node-a", "127.0.0.2")
        await c.wait_for(lambda: _taints_are(c, "node-a", []), what="taints removed")
        await c.settle()
        assert len([p for p in await pods_of(c) if not p["metadata"].get("deletionTimestamp")]) == 4


async def _exactly(c: InProcessCluster, count: int) -> list[JSON] | None:
    pods = await pods_of(c)
    return pods if len(pods) == count else None


async def _ports_are(c: InProcessCluster, ports: list[int]) -> bool:
    return await ready_endpoint_ports(c) == ports


async def _ready_is(c: InProcessCluster, name: str, status: str) -> JSON | None:
    node = await c.get("nodes", None, name)
    return node if condition(node, "Ready") == status else None


async def _taints_are(c: InProcessCluster, name: str, taints: list[tuple[str, str]]) -> bool:
    return owned_taints(await c.get("nodes", None, name)) == sorted(taints)


async def test_renewals_of_a_healthy_node_count_from_when_they_arrive() -> None:
    """A healthy node's renewals are only noted by the Lease handler (no reconcile each); the grace period
    still runs from the last renewal, as seen when it arrived, not from a later pass."""
    c, lifecycle = make_cluster()
    async with c:
        await register_node(c, "node-a", "127.0.0.2")
        await c.settle()
        assert lifecycle.tracker.knows("node-a")
        c.clock.advance(6)
        await renew(c, "node-a")  # heard at t=6
        await c.settle()
        c.clock.advance(5)  # t=11: past the first grace deadline (10), within the renewed one (16)
        c.kick(lifecycle, "node-a")
        await c.settle()
        assert condition(await c.get("nodes", None, "node-a"), "Ready") == "True"
        c.clock.advance(5.5)  # t=16.5: 10 s since the renewal, though the last pass was at t=11
        c.kick(lifecycle, "node-a")
        await c.wait_for(lambda: _ready_is(c, "node-a", "Unknown"), what="node-a Unknown")


async def test_pod_toleration_overrides_the_cluster_default() -> None:
    c, lifecycle = make_cluster()
    async with c:
        await register_node(c, "node-a", "127.0.0.2")
        patient = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "patient"},
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "c", "image": "x"}],
                "tolerations": [
                    {
                        "key": TAINT_UNREACHABLE,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 60,
                    }
                ],
            },
        }
        await c.transport.create(rt("pods"), NS, patient)
        c.clock.advance(11)
        c.kick(lifecycle, "node-a")
        await c.wait_for(lambda: _ready_is(c, "node-a", "Unknown"), what="node-a Unknown")
        c.clock.advance(30)
        c.kick(lifecycle, "node-a")
        await c.settle()
        pod = await c.get("pods", NS, "patient")
        assert pod is not None and not pod["metadata"].get("deletionTimestamp")
        c.clock.advance(31)
        c.kick(lifecycle, "node-a")
        await c.wait_for(
            lambda: _deleted_or_terminating(c, "patient"), what="eviction after the pod's own 60 s"
        )


async def _deleted_or_terminating(c: InProcessCluster, name: str) -> bool:
    pod = await c.get("pods", NS, name)
    return pod is None or bool(pod["metadata"].get("deletionTimestamp"))


# ------------------------------------------------------------------------------------ returning agent


def _pod(name: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": "node-a",
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


async def test_returning_agent_stops_evicted_pods_before_it_reports_ready(tmp_path: Path) -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    transport = LocalTransport(api)
    config = AgentConfig(node_name="node-a", address="127.0.0.1", data_dir=tmp_path / "agent")
    state_dir = tmp_path / "agent" / "runtime"
    agent = Agent(transport, await ProcessRuntime.open(state_dir, cgroups=False), config)
    current: Agent | None = agent
    groups: list[int] = []

    async def running_pid(name: str) -> int | None:
        return main_pid(await transport.get(PODS, NS, name))

    try:
        await agent.start()
        for name in ("evicted", "kept"):
            await transport.create(PODS, NS, _pod(name))
        evicted = await eventually(lambda: running_pid("evicted"), 10, "evicted running")
        kept = await eventually(lambda: running_pid("kept"), 10, "kept running")
        evicted_group = await eventually(lambda: group_members(pgid_of(evicted) or -1), 5, "its processes")
        groups += evicted_group + group_members(pgid_of(kept) or -1)

        current = None
        await agent.stop()  # like SIGKILL of the agent: the workloads keep running
        # Meanwhile the node lifecycle controller gave up on the node and evicted one pod (an ordinary
        # delete: it stays Terminating, for nobody on the node can finish it).
        node = await transport.get(NODES, None, "node-a")
        unknown = copy.deepcopy(node)
        for cond in unknown["status"]["conditions"]:
            cond["status"] = "Unknown"
        await transport.update(NODES, None, "node-a", unknown, subresource="status")
        await transport.delete(PODS, NS, "evicted")
        assert (await transport.get(PODS, NS, "evicted"))["metadata"].get("deletionTimestamp")
        assert alive(evicted)

        current = Agent(transport, await ProcessRuntime.open(state_dir, cgroups=False), config)
        await current.start()
        # By the time start() returns — the node has just been reported Ready — the evicted copy is stopped.
        assert condition(await transport.get(NODES, None, "node-a"), "Ready") == "True"
        assert not [p for p in evicted_group if alive(p)]
        assert alive(kept) and await running_pid("kept") == kept
        # …and its deletion is finished.
        await eventually(lambda: _gone(transport, "evicted"), 10, "the evicted pod to be deleted")
    finally:
        if current is not None:
            await current.stop(stop_workloads=True, grace_seconds=1)
        await store.close()
        await eventually(lambda: not [p for p in groups if alive(p)], 10, "every pod process to stop")


async def _gone(transport: LocalTransport, name: str) -> bool:
    from corral.apiserver import status as st

    try:
        await transport.get(PODS, NS, name)
    except st.ApiError as exc:
        return exc.code == 404
    return False


async def test_agent_given_up_on_reposts_its_pods_and_then_ready(tmp_path: Path) -> None:
    """A live agent whose node was marked Unknown (a partition, say) and its pods NotReady by the controller
    writes its pods' statuses again and reports Ready (its next heartbeat, 2 s)."""
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    transport = LocalTransport(api)
    config = AgentConfig(node_name="node-a", address="127.0.0.1", data_dir=tmp_path / "agent")
    agent = Agent(transport, await ProcessRuntime.open(tmp_path / "agent" / "runtime", cgroups=False), config)
    groups: list[int] = []
    try:
        await agent.start()
        await transport.create(PODS, NS, _pod("steady"))
        pid = await eventually(lambda: _ready_pid(transport, "steady"), 10, "steady Ready")
        groups += group_members(pgid_of(pid) or -1)

        node = copy.deepcopy(await transport.get(NODES, None, "node-a"))
        for cond in node["status"]["conditions"]:
            cond["status"] = "Unknown"
        await transport.update(NODES, None, "node-a", node, subresource="status")
        pod = copy.deepcopy(await transport.get(PODS, NS, "steady"))
        for cond in pod["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond["status"] = "False"
        await transport.update(PODS, NS, "steady", pod, subresource="status")

        async def recovered() -> bool:
            node_now = await transport.get(NODES, None, "node-a")
            return condition(node_now, "Ready") == "True" and await _ready_pid(transport, "steady") == pid

        await eventually(recovered, 10, "node Ready and the pod Ready again, same process")
    finally:
        await agent.stop(stop_workloads=True, grace_seconds=1)
        await store.close()
        await eventually(lambda: not [p for p in groups if alive(p)], 10, "every pod process to stop")


async def _ready_pid(transport: LocalTransport, name: str) -> int | None:
    pod = await transport.get(PODS, NS, name)
    return main_pid(pod) if condition(pod, "Ready") == "True" else None


# ------------------------------------------------------------------------------------------ real server


@pytest.mark.compat
def test_real_server_gives_up_on_a_silent_node_and_evicts_its_pod(
    tmp_path: Path, kubectl_cache: Path
) -> None:
    """A second Node registered through the API whose Lease is never renewed: NotReady within the grace
    period, tainted, its pod evicted after the default toleration; the built-in node (its agent renews every
    2 s) stays Ready and untainted all along."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        kubectl = Kubectl(server.kubeconfig, kubectl_cache, "default")
        kubectl.run("create", "-f", "-", namespace=False, stdin=json.dumps(_ghost_node()))
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
        ]
        kubectl.run(
            "patch",
            "node",
            "ghost",
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"conditions": conditions}}),
            namespace=False,
        )
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "ghost", "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": "ghost",
                "leaseDurationSeconds": 10,
                "renewTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        kubectl.run("create", "-f", "-", namespace=False, stdin=json.dumps(lease))
        kubectl.run("create", "-f", "-", stdin=json.dumps(_stranded_pod()))
        # Defaulting shows the cluster default toleration on the pod, as upstream's admission does.
        pod = json.loads(kubectl.run("get", "pod", "stranded", "-o", "json").stdout)
        assert {
            "key": TAINT_UNREACHABLE,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 5,
        } in pod["spec"]["tolerations"]

        def node(name: str) -> JSON:
            return dict(json.loads(kubectl.run("get", "node", name, "-o", "json", namespace=False).stdout))

        def unreachable() -> JSON | None:
            found = node("ghost")
            taints = {(t["key"], t["effect"]) for t in found["spec"].get("taints") or []}
            return (
                found
                if condition(found, "Ready") == "Unknown" and (TAINT_UNREACHABLE, "NoExecute") in taints
                else None
            )

        ghost = _poll(unreachable, 25, "ghost Unknown and tainted")
        assert time.time() - now >= 9  # not before the 10 s grace period (1 s for second-precision stamps)
        ready = next(c for c in ghost["status"]["conditions"] if c["type"] == "Ready")
        assert ready["message"] == "Kubelet stopped posting node status."

        def evicted() -> bool:
            found = json.loads(
                kubectl.run("get", "pod", "stranded", "-o", "json", check=False).stdout or "{}"
            )
            return not found or bool(found["metadata"].get("deletionTimestamp"))

        _poll(evicted, 15, "the stranded pod evicted")
        events = json.loads(kubectl.run("get", "events", "-o", "json").stdout)["items"]
        assert any(
            e["reason"] == "TaintManagerEviction"
            and e["message"] == "Marking for deletion Pod default/stranded"
            for e in events
        )
        # The real node kept renewing its Lease: never marked, never tainted.
        nodes = json.loads(kubectl.run("get", "nodes", "-o", "json", namespace=False).stdout)["items"]
        builtin = [n for n in nodes if n["metadata"]["name"] != "ghost"]
        assert builtin and all(condition(n, "Ready") == "True" for n in builtin)
        assert all(not owned_taints(n) for n in builtin)
    finally:
        server.stop()


def _poll(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        time.sleep(0.25)


def _ghost_node() -> JSON:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ghost", "labels": {"role": "ghost"}}}


def _stranded_pod() -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stranded"},
        "spec": {"nodeName": "ghost", "containers": [{"name": "c", "image": "x", "command": ["sleep", "1"]}]},
    }
