"""The pure ``schedule`` function and the controller's pure helpers: tables and Hypothesis properties."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.scheduler.feasibility import node_failures
from corral.scheduler.scheduler import (
    Decision,
    event_name,
    needs_scheduling,
    new_event,
    repeated_event,
    schedule,
    with_unschedulable_condition,
)
from corral.scheduler.snapshot import (
    HostPort,
    NodeInfo,
    PodInfo,
    Resources,
    Snapshot,
    Taint,
    Toleration,
)

JSON = dict[str, Any]


def node(name: str, cpu: int = 4000, memory: int = 8 * 1024**3, pods: int = 110, **kw: Any) -> NodeInfo:
    return NodeInfo(name, allocatable=Resources(cpu, memory, pods), **kw)


def replica(i: int, cpu: int = 100, memory: int = 64 * 1024**2, owner: str = "rs-1") -> PodInfo:
    return PodInfo(
        "default",
        f"web-{i}",
        f"uid-{i}",
        labels={"app": "web"},
        owner_uid=owner,
        requests=Resources(cpu, memory, 1),
        non_zero_requests=Resources(max(cpu, 100), max(memory, 200 * 1024**2), 1),
    )


# ---------------------------------------------------------------------------------------------- tables


def test_schedules_onto_the_only_fitting_node() -> None:
    snap = Snapshot(
        (
            node("small", cpu=500),
            node("big", cpu=4000),
            node("tainted", taints=(Taint("x", "", "NoSchedule"),)),
        )
    )
    decision = schedule(replica(0, cpu=1000), snap)
    assert decision == Decision("big", "Successfully assigned default/web-0 to big", decision.scores)
    assert [s.name for s in decision.scores] == ["big"]


def test_unschedulable_message_names_every_reason() -> None:
    snap = Snapshot(
        (
            node("a", cpu=500),
            node("b", ready="Unknown"),
            node("c", ready="Unknown"),
        )
    )
    decision = schedule(replica(0, cpu=1000), snap)
    assert decision.node is None
    assert decision.reason == (
        "0/3 nodes are available: 1 Insufficient cpu, "
        "2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
    )


def test_no_nodes() -> None:
    assert schedule(replica(0), Snapshot()) == Decision(None, "no nodes available to schedule pods")


def test_tolerations_open_tainted_nodes() -> None:
    snap = Snapshot((node("gpu", taints=(Taint("gpu", "yes", "NoSchedule"),)),))
    assert schedule(replica(0), snap).node is None
    tolerant = PodInfo("default", "p", tolerations=(Toleration("gpu", "Equal", "yes", "NoSchedule"),))
    assert schedule(tolerant, snap).node == "gpu"


def test_host_port_pods_land_on_different_nodes() -> None:
    snap = Snapshot((node("a"), node("b")))
    p0 = PodInfo("default", "p0", "u0", host_ports=(HostPort("0.0.0.0", "TCP", 8080),))
    p1 = PodInfo("default", "p1", "u1", host_ports=(HostPort("0.0.0.0", "TCP", 8080),))
    p2 = PodInfo("default", "p2", "u2", host_ports=(HostPort("0.0.0.0", "TCP", 8080),))
    first = schedule(p0, snap)
    assert first.node is not None
    snap = snap.with_pod(p0, first.node)
    second = schedule(p1, snap)
    assert second.node not in (None, first.node)
    assert second.node is not None
    snap = snap.with_pod(p1, second.node)
    third = schedule(p2, snap)
    assert third.node is None
    assert (
        third.reason
        == "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    )


def test_same_input_same_answer() -> None:
    snap = Snapshot((node("b"), node("a"), node("c")))
    assert {schedule(replica(0), snap).node for _ in range(5)} == {"a"}


# ---------------------------------------------------------------------------------------------- properties

_taints = st.lists(
    st.builds(
        Taint,
        st.sampled_from(["gpu", "dedicated", "spot"]),
        st.sampled_from(["", "yes"]),
        st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"]),
    ),
    max_size=2,
).map(tuple)
_ports = st.lists(
    st.builds(
        HostPort,
        st.sampled_from(["0.0.0.0", "127.0.0.1"]),
        st.sampled_from(["TCP", "UDP"]),
        st.sampled_from([80, 443]),
    ),
    max_size=2,
).map(tuple)
_labels = st.dictionaries(st.sampled_from(["zone", "disk"]), st.sampled_from(["a", "b"]), max_size=2)


@st.composite
def _pods(draw: st.DrawFn, name: str) -> PodInfo:
    cpu = draw(st.integers(0, 3000))
    memory = draw(st.integers(0, 4 * 1024**3))
    return PodInfo(
        "default",
        name,
        f"uid-{name}",
        labels=draw(st.sampled_from([{}, {"app": "web"}])),
        owner_uid=draw(st.sampled_from(["", "rs-1", "rs-2"])),
        requests=Resources(cpu, memory, 1),
        non_zero_requests=Resources(cpu or 100, memory or 200 * 1024**2, 1),
        node_selector=draw(_labels),
        tolerations=tuple(
            draw(
                st.lists(
                    st.builds(
                        Toleration,
                        st.sampled_from(["", "gpu", "dedicated", "node.kubernetes.io/not-ready"]),
                        st.sampled_from(["Equal", "Exists"]),
                        st.sampled_from(["", "yes"]),
                        st.sampled_from(["", "NoSchedule", "NoExecute"]),
                    ),
                    max_size=2,
                )
            )
        ),
        host_ports=draw(_ports),
    )


@st.composite
def _nodes(draw: st.DrawFn, name: str) -> NodeInfo:
    base = NodeInfo(
        name,
        labels=draw(_labels),
        ready=draw(st.sampled_from(["True", "True", "False", "Unknown"])),
        unschedulable=draw(st.booleans()),
        taints=draw(_taints),
        allocatable=Resources(
            draw(st.integers(0, 4000)), draw(st.integers(0, 8 * 1024**3)), draw(st.integers(0, 4))
        ),
    )
    placed = [draw(_pods(f"{name}-existing-{i}")) for i in range(draw(st.integers(0, 3)))]
    return base.with_pods(placed)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[PodInfo, Snapshot]:
    count = draw(st.integers(0, 5))
    return draw(_pods("candidate")), Snapshot(tuple(draw(_nodes(f"node-{i}")) for i in range(count)))


@settings(max_examples=300)
@given(_cases())
def test_chosen_node_passes_every_filter_and_none_only_when_nothing_fits(
    case: tuple[PodInfo, Snapshot],
) -> None:
    pod, snap = case
    decision = schedule(pod, snap)
    passing = [n.name for n in snap.nodes if not node_failures(pod, n)]
    if decision.node is None:
        assert passing == [], "never unschedulable while a node passes"
        assert decision.reason
    else:
        assert decision.node in passing, "never binds to a node that fails a filter"
        chosen = snap.node(decision.node)
        assert chosen is not None and node_failures(pod, chosen) == ()


@given(st.integers(1, 6), st.integers(1, 40), st.booleans())
def test_replicas_spread_evenly_over_equal_nodes(n: int, k: int, same_owner: bool) -> None:
    snap = Snapshot(tuple(node(f"n{i}") for i in range(n)))
    for i in range(k):
        pod = replica(i, owner="rs-1" if same_owner else "")
        decision = schedule(pod, snap)
        assert decision.node is not None
        snap = snap.with_pod(pod, decision.node)
    counts = Counter({nd.name: len(nd.pods) for nd in snap.nodes})
    assert max(counts.values()) - min(counts.values()) <= 1
    assert sum(counts.values()) == k


@given(st.integers(1, 6), st.integers(1, 30))
def test_never_binds_when_full(n: int, k: int) -> None:
    # Each node takes exactly two replicas; beyond 2n the answer is None with a reason, never a node.
    snap = Snapshot(tuple(node(f"n{i}", cpu=1000) for i in range(n)))
    placed = 0
    for i in range(k):
        pod = replica(i, cpu=500)
        decision = schedule(pod, snap)
        if placed == 2 * n:
            assert decision.node is None
            assert decision.reason == f"0/{n} nodes are available: {n} Insufficient cpu."
            continue
        assert decision.node is not None
        snap = snap.with_pod(pod, decision.node)
        placed += 1
    assert placed == min(k, 2 * n)


# ---------------------------------------------------------------------------------------------- controller helpers


def pod_obj(**spec: Any) -> JSON:
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "c"}], **spec},
        "status": {"phase": "Pending"},
    }


def test_needs_scheduling() -> None:
    assert needs_scheduling(pod_obj())
    assert needs_scheduling(pod_obj(schedulerName="default-scheduler"))
    assert not needs_scheduling(pod_obj(schedulerName="other"))
    assert needs_scheduling(pod_obj(schedulerName="other"), "other")
    assert not needs_scheduling(pod_obj(nodeName="n"))
    deleting = pod_obj()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not needs_scheduling(deleting)
    done = pod_obj()
    done["status"]["phase"] = "Failed"
    assert not needs_scheduling(done)


def test_unschedulable_condition_is_set_once_and_keeps_transition_time() -> None:
    original = pod_obj()
    first = with_unschedulable_condition(original, "no room", "2026-01-01T00:00:00Z")
    assert first is not None
    assert "conditions" not in original["status"], "the cached object is never changed"
    assert first["status"]["conditions"] == [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "no room",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    ]
    assert with_unschedulable_condition(first, "no room", "2026-01-01T00:01:00Z") is None
    changed = with_unschedulable_condition(first, "still no room", "2026-01-01T00:02:00Z")
    assert changed is not None
    (cond,) = changed["status"]["conditions"]
    assert cond["message"] == "still no room"
    assert cond["lastTransitionTime"] == "2026-01-01T00:00:00Z", "status stayed False: no transition"


def test_events() -> None:
    obj = pod_obj()
    name = event_name(obj, "FailedScheduling", "msg")
    assert name == event_name(obj, "FailedScheduling", "msg")
    assert name != event_name(obj, "FailedScheduling", "other msg")
    assert name.startswith("p.")
    long = pod_obj()
    long["metadata"]["name"] = "a" * 235 + "-x" * 9
    assert len(event_name(long, "r", "m")) <= 253
    event = new_event(obj, "Warning", "FailedScheduling", "msg", "2026-01-01T00:00:00Z", "default-scheduler")
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": "default",
        "name": "p",
        "uid": "u1",
        "resourceVersion": "7",
    }
    assert event["source"] == {"component": "default-scheduler"}
    assert (event["count"], event["firstTimestamp"], event["lastTimestamp"]) == (
        1,
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00Z",
    )
    again = repeated_event(event, "2026-01-01T00:05:00Z")
    assert (again["count"], again["firstTimestamp"], again["lastTimestamp"]) == (
        2,
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:05:00Z",
    )
    assert event["count"] == 1
