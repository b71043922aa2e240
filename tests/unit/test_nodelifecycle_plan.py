"""Node lifecycle planner: health from heartbeats, taints, NotReady pods, eviction after tolerations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.controllers.nodelifecycleplan import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    HeartbeatTracker,
    LifecycleConfig,
    eviction_deadline,
    node_condition,
    plan_node,
    ready_status,
    tolerates,
    toleration_seconds,
)
from corral.util.clock import rfc3339

JSON = dict[str, Any]
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = LifecycleConfig(grace_period=10.0, default_toleration_seconds=5.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def node(ready: str | None = "True", taints: list[JSON] | None = None, **spec: Any) -> JSON:
    conditions = []
    if ready is not None:
        conditions = [
            {"type": "Ready", "status": ready, "reason": "KubeletReady", "lastHeartbeatTime": rfc3339(T0)},
            {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": rfc3339(T0)},
            {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": rfc3339(T0)},
            {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": rfc3339(T0)},
        ]
        for cond in conditions[1:]:
            if ready == "Unknown":
                cond["status"] = "Unknown"
    body: JSON = {
        "metadata": {"name": "n1", "uid": "u-n1", "creationTimestamp": rfc3339(at(-100))},
        "spec": dict(spec),
        "status": {"conditions": conditions},
    }
    if taints is not None:
        body["spec"]["taints"] = taints
    return body


def pod(name: str = "p", ready: bool = True, tolerations: list[JSON] | None = None, **meta: Any) -> JSON:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"u-{name}",
            "creationTimestamp": rfc3339(at(-50)),
            **meta,
        },
        "spec": {"nodeName": "n1", "tolerations": tolerations or []},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def tol(key: str, seconds: int | None = None, **extra: Any) -> JSON:
    body: JSON = {"key": key, "operator": "Exists", "effect": "NoExecute", **extra}
    if seconds is not None:
        body["tolerationSeconds"] = seconds
    return body


def unreachable(added: float) -> list[JSON]:
    return [
        {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(at(added))},
        {"key": TAINT_UNREACHABLE, "effect": "NoSchedule"},
    ]


# -------------------------------------------------------------------------------------------- health


def test_fresh_heartbeat_changes_nothing_and_requeues_at_the_grace_deadline() -> None:
    plan = plan_node(node(), at(0), [pod()], at(4), CONFIG)
    assert plan.status is None and plan.taints is None
    assert plan.pods_not_ready == [] and plan.evictions == []
    assert plan.requeue_after == pytest.approx(6.0)


def test_stale_heartbeat_sets_every_agent_condition_unknown() -> None:
    plan = plan_node(node(), at(0), [], at(10), CONFIG)
    assert plan.status is not None
    conditions = {c["type"]: c for c in plan.status["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "Unknown"
    assert conditions["Ready"]["reason"] == "NodeStatusUnknown"
    assert conditions["Ready"]["message"] == "Kubelet stopped posting node status."
    assert conditions["Ready"]["lastTransitionTime"] == rfc3339(at(10))
    assert conditions["Ready"]["lastHeartbeatTime"] == rfc3339(T0)  # kept: the agent's last word
    assert conditions["MemoryPressure"]["status"] == "Unknown"
    assert conditions["PIDPressure"]["reason"] == "NodeStatusUnknown"


def test_node_that_never_posted_status_goes_unknown_after_grace() -> None:
    plan = plan_node(node(ready=None), at(0), [], at(11), CONFIG)
    assert plan.status is not None and ready_status(plan.status) == "Unknown"
    conditions = {c["type"]: c for c in plan.status["status"]["conditions"]}
    assert set(conditions) == {"Ready", "MemoryPressure", "DiskPressure", "PIDPressure"}
    assert conditions["Ready"]["reason"] == "NodeStatusNeverUpdated"
    assert conditions["Ready"]["message"] == "Kubelet never posted node status."
    assert conditions["Ready"]["lastHeartbeatTime"] == rfc3339(at(-100))  # the node's creation


def test_already_unknown_node_is_not_rewritten() -> None:
    current = node(ready="Unknown", taints=unreachable(0))
    plan = plan_node(current, at(-20), [], at(1), CONFIG)
    assert plan.status is None and plan.taints is None


# -------------------------------------------------------------------------------------------- taints


@pytest.mark.parametrize(
    ("ready", "key"),
    [("Unknown", TAINT_UNREACHABLE), ("False", TAINT_NOT_READY)],
)
def test_taints_follow_the_ready_condition(ready: str, key: str) -> None:
    plan = plan_node(node(ready=ready), at(0), [], at(1), CONFIG)
    assert plan.taints is not None
    assert plan.taints["spec"]["taints"] == [
        {"key": key, "effect": "NoExecute", "timeAdded": rfc3339(at(1))},
        {"key": key, "effect": "NoSchedule"},
    ]


def test_not_ready_swaps_for_unreachable_and_ready_removes_them_keeping_foreign_taints() -> None:
    foreign = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    swapped = plan_node(node(ready="Unknown", taints=[foreign, *unreachable(0)]), at(-30), [], at(0), CONFIG)
    assert swapped.taints is None  # already right
    back = plan_node(node(ready="False", taints=[foreign, *unreachable(0)]), at(0), [], at(1), CONFIG)
    assert back.taints is not None
    assert [(t["key"], t["effect"]) for t in back.taints["spec"]["taints"]] == [
        ("dedicated", "NoSchedule"),
        (TAINT_NOT_READY, "NoExecute"),
        (TAINT_NOT_READY, "NoSchedule"),
    ]
    healthy = plan_node(node(taints=[foreign, *unreachable(0)]), at(0), [], at(1), CONFIG)
    assert healthy.taints is not None and healthy.taints["spec"]["taints"] == [foreign]


def test_unschedulable_and_pressure_get_no_schedule_taints() -> None:
    current = node(unschedulable=True)
    current["status"]["conditions"][1]["status"] = "True"  # MemoryPressure
    plan = plan_node(current, at(0), [], at(1), CONFIG)
    assert plan.taints is not None
    assert plan.taints["spec"]["taints"] == [
        {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
    ]


# ---------------------------------------------------------------------------------- pods and eviction


def test_pods_on_unreachable_node_are_marked_not_ready_at_once() -> None:
    pods = [pod("a"), pod("b", ready=False)]
    plan = plan_node(node(), at(0), pods, at(10), CONFIG)
    assert [p["metadata"]["name"] for p in plan.pods_not_ready] == ["a"]
    ready = [c for c in plan.pods_not_ready[0]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "False"
    assert pods[0]["status"]["conditions"][0]["status"] == "True"  # input untouched


def test_pods_on_not_ready_node_are_left_to_the_live_agent() -> None:
    plan = plan_node(node(ready="False", taints=[]), at(0), [pod("a")], at(1), CONFIG)
    assert plan.pods_not_ready == []


def test_eviction_after_the_toleration_seconds() -> None:
    current = node(ready="Unknown", taints=unreachable(0))
    pods = [
        pod("default"),  # no toleration: cluster default 5 s
        pod("short", tolerations=[tol(TAINT_UNREACHABLE, 2)]),
        pod("long", tolerations=[tol(TAINT_UNREACHABLE, 60)]),
        pod("forever", tolerations=[tol(TAINT_UNREACHABLE)]),
        pod("other-key", tolerations=[tol(TAINT_NOT_READY, 1)]),  # does not match: default
        pod("going", tolerations=[tol(TAINT_UNREACHABLE, 0)], deletionTimestamp=rfc3339(at(0))),
    ]
    early = plan_node(current, at(-30), pods, at(1), CONFIG)
    assert early.evictions == [] and early.requeue_after == pytest.approx(1.0)
    mid = plan_node(current, at(-30), pods, at(2), CONFIG)
    assert [e.pod["metadata"]["name"] for e in mid.evictions] == ["short"]
    assert mid.evictions[0].message == "Marking for deletion Pod default/short"
    later = plan_node(current, at(-30), pods, at(5), CONFIG)
    assert sorted(e.pod["metadata"]["name"] for e in later.evictions) == ["default", "other-key", "short"]
    assert later.requeue_after == pytest.approx(55.0)


def test_pod_created_after_the_taint_gets_its_whole_toleration() -> None:
    current = node(ready="Unknown", taints=unreachable(-40))
    young = pod("young", tolerations=[tol(TAINT_UNREACHABLE, 3)])  # created at -50 … make it -1
    young["metadata"]["creationTimestamp"] = rfc3339(at(-1))
    assert plan_node(current, at(-60), [young], at(1), CONFIG).evictions == []
    assert len(plan_node(current, at(-60), [young], at(2), CONFIG).evictions) == 1


def test_healthy_node_evicts_nothing() -> None:
    plan = plan_node(node(), at(0), [pod(tolerations=[tol(TAINT_UNREACHABLE, 0)])], at(5), CONFIG)
    assert plan.evictions == []


# ---------------------------------------------------------------------------------------- tolerations


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"operator": "Exists"}, {"key": "k", "effect": "NoExecute"}, True),
        (
            {"key": "k", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "k", "effect": "NoExecute"},
            False,
        ),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
        (
            {"key": "k", "operator": "Equal", "value": "w"},
            {"key": "k", "value": "v", "effect": "NoExecute"},
            False,
        ),
        ({"key": "j", "operator": "Exists"}, {"key": "k", "effect": "NoExecute"}, False),
        ({"operator": "Equal"}, {"key": "k", "effect": "NoExecute"}, False),
    ],
)
def test_tolerates(toleration: JSON, taint: JSON, expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


def test_toleration_seconds_takes_the_smallest_and_clamps_negatives() -> None:
    taint = {"key": TAINT_UNREACHABLE, "effect": "NoExecute"}
    assert (
        toleration_seconds(
            [tol(TAINT_UNREACHABLE, 30), {"operator": "Exists", "tolerationSeconds": 7}], taint, 5
        )
        == 7
    )
    assert toleration_seconds([tol(TAINT_UNREACHABLE, -3)], taint, 5) == 0
    assert toleration_seconds([], taint, 5) == 5


def test_heartbeat_tracker_uses_the_controller_clock() -> None:
    tracker = HeartbeatTracker()
    lease = {"spec": {"renewTime": "2020-01-01T00:00:00.000000Z"}}  # a skewed agent clock does not matter
    assert tracker.observe("n1", node(), lease, at(0)) == at(0)
    assert tracker.observe("n1", node(), lease, at(7)) == at(0)
    renewed = {"spec": {"renewTime": "2020-01-01T00:00:02.000000Z"}}
    assert tracker.observe("n1", node(), renewed, at(9)) == at(9)
    tracker.forget("n1")
    assert tracker.observe("n1", node(), renewed, at(20)) == at(20)


# ----------------------------------------------------------------------------------------- properties

TOLERATION = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"key": st.sampled_from([TAINT_UNREACHABLE, TAINT_NOT_READY, ""]), "operator": st.just("Exists")},
        optional={
            "effect": st.sampled_from(["NoExecute", "NoSchedule", ""]),
            "tolerationSeconds": st.integers(-5, 120),
        },
    ),
)


@given(
    ready=st.sampled_from(["True", "False", "Unknown", None]),
    heard=st.floats(-100, 0),
    now=st.floats(0, 200),
    taint_added=st.floats(-100, 0),
    tolerations=st.lists(TOLERATION, max_size=3),
    with_taints=st.booleans(),
)
def test_properties(
    ready: str | None,
    heard: float,
    now: float,
    taint_added: float,
    tolerations: list[JSON | None],
    with_taints: bool,
) -> None:
    current = node(ready=ready, taints=unreachable(taint_added) if with_taints else None)
    the_pod = pod("p", tolerations=[t for t in tolerations if t is not None])
    plan = plan_node(current, at(heard), [the_pod], at(now), CONFIG)
    after = plan.status or current
    # Taints only on nodes whose Ready condition is not True; a Ready node loses them.
    final_taints = (plan.taints or after)["spec"].get("taints") or []
    owned = [t for t in final_taints if t["key"] in (TAINT_UNREACHABLE, TAINT_NOT_READY)]
    posted = node_condition(after, "Ready") is not None
    assert bool(owned) == (posted and ready_status(after) != "True")
    # A pod is never evicted before its toleration runs out, counted from when the taint was added.
    no_execute = [t for t in final_taints if t["effect"] == "NoExecute"]
    for eviction in plan.evictions:
        deadline = eviction_deadline(eviction.pod, no_execute, CONFIG.default_toleration_seconds)
        assert deadline is not None and at(now) >= deadline
        tainted_at = min(datetime.fromisoformat(t["timeAdded"].replace("Z", "+00:00")) for t in no_execute)
        tolerated = toleration_seconds(
            the_pod["spec"]["tolerations"], no_execute[0], CONFIG.default_toleration_seconds
        )
        assert at(now) >= tainted_at + timedelta(seconds=tolerated)
    # Nothing is evicted or marked from a node that is Ready.
    if not posted or ready_status(after) == "True":
        assert plan.evictions == [] and plan.pods_not_ready == []
    # A requeue is asked for whenever a deadline is still ahead.
    if plan.requeue_after is not None:
        assert plan.requeue_after >= 0


def test_node_without_status_yet_is_left_alone_within_the_grace_period() -> None:
    plan = plan_node(node(ready=None), at(0), [pod()], at(3), CONFIG)
    assert plan.status is None and plan.taints is None and plan.pods_not_ready == []
