"""The pure PodDisruptionBudget arithmetic: selection, expected/desired counts, status and condition."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.controllers.disruptionplan import (
    DELETION_TIMEOUT,
    ControllerScale,
    ExpectedCountError,
    budgets_for_pod,
    expected_counts,
    plan_budget,
    scaled_value,
    selects,
    with_condition,
)
from corral.util.clock import rfc3339

JSON = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def pod(
    name: str,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    namespace: str = "default",
    owner: JSON | None = None,
    deleting: bool = False,
) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "labels": labels or {"app": "web"},
        "uid": f"u-{name}",
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    if deleting:
        meta["deletionTimestamp"] = rfc3339(NOW)
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return {"metadata": meta, "spec": {}, "status": status}


def pdb(spec: JSON, *, status: JSON | None = None, generation: int = 1, name: str = "web") -> JSON:
    return {
        "metadata": {"name": name, "namespace": "default", "generation": generation, "uid": "pdb-uid"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
        "status": status
        or {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0},
    }


RS_REF = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "name": "web-abc",
    "uid": "rs-uid",
    "controller": True,
}


def scales(replicas: int) -> Any:
    def lookup(namespace: str, ref: Mapping[str, Any]) -> ControllerScale | None:
        return ("deploy-uid", replicas) if ref.get("uid") == "rs-uid" else None

    return lookup


def no_scale(namespace: str, ref: Mapping[str, Any]) -> ControllerScale | None:
    raise AssertionError("integer minAvailable must not look up controllers")


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [(2, 10, True, 2), ("50%", 3, True, 2), ("50%", 3, False, 1), ("100%", 7, True, 7), ("0%", 5, True, 0)],
)
def test_scaled_value(value: Any, total: int, up: bool, expected: int) -> None:
    assert scaled_value(value, total, up) == expected


@pytest.mark.parametrize("value", ["50", "x%", True, None, "5.5%"])
def test_scaled_value_refuses_garbage(value: Any) -> None:
    with pytest.raises(ValueError):
        scaled_value(value, 10)


@pytest.mark.parametrize(
    ("selector", "labels", "namespace", "expected"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web"}, "default", True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, "default", False),
        ({"matchLabels": {"app": "web"}}, {"app": "web"}, "other", False),
        ({}, {"anything": "x"}, "default", True),  # policy/v1: empty selects the whole namespace
        (None, {"app": "web"}, "default", False),  # missing selects nothing
        ({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}, {"app": "web"}, "default", False),
        (
            {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]},
            {"app": "api"},
            "default",
            True,
        ),
    ],
)
def test_selects(selector: Any, labels: dict[str, str], namespace: str, expected: bool) -> None:
    budget = pdb({})
    budget["spec"]["selector"] = selector
    assert selects(budget, pod("p", labels=labels, namespace=namespace)) is expected


def test_budgets_for_pod_sorted_by_name() -> None:
    found = budgets_for_pod(
        [pdb({}, name="b"), pdb({}, name="a"), pdb({"selector": {"matchLabels": {"x": "y"}}}, name="c")],
        pod("p"),
    )
    assert [b["metadata"]["name"] for b in found] == ["a", "b"]


@pytest.mark.parametrize(
    ("spec", "pods", "replicas", "expected"),
    [
        ({"minAvailable": 2}, 3, 5, (3, 2, [])),  # integer: covered pods, scale ignored
        ({"minAvailable": "50%"}, 3, 5, (5, 3, [])),  # percentage of the controller's scale, rounded up
        ({"maxUnavailable": 1}, 3, 4, (4, 3, [])),
        ({"maxUnavailable": "34%"}, 3, 3, (3, 1, [])),  # 34% of 3 → 2 (rounded up) may be unavailable
        ({"maxUnavailable": 9}, 3, 3, (3, 0, [])),  # never below 0
        ({}, 3, 3, (0, 0, [])),  # neither set: nothing expected, nothing may be disrupted
    ],
)
def test_expected_counts(spec: JSON, pods: int, replicas: int, expected: tuple[int, int, list[str]]) -> None:
    covered = [pod(f"p{i}", owner=RS_REF) for i in range(pods)]
    lookup = no_scale if isinstance(spec.get("minAvailable"), int) else scales(replicas)
    assert expected_counts(pdb(spec), covered, lookup) == expected


def test_unmanaged_pods_are_reported_not_counted() -> None:
    covered = [pod("a", owner=RS_REF), pod("solo")]
    assert expected_counts(pdb({"maxUnavailable": 1}), covered, scales(2)) == (2, 1, ["solo"])


def test_missing_controller_fails() -> None:
    with pytest.raises(ExpectedCountError, match='found no controllers for pod "a"'):
        expected_counts(pdb({"maxUnavailable": 1}), [pod("a", owner=RS_REF)], lambda namespace, ref: None)


def three_pods(**kw: Any) -> list[JSON]:
    return [pod(f"web-{i}", owner=RS_REF, **kw) for i in range(3)]


def test_status_of_a_fresh_budget() -> None:
    plan = plan_budget(pdb({"minAvailable": 2}), three_pods(), NOW, no_scale)
    assert plan.status == {
        "observedGeneration": 1,
        "disruptionsAllowed": 1,
        "currentHealthy": 3,
        "desiredHealthy": 2,
        "expectedPods": 3,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": rfc3339(NOW),
                "reason": "SufficientPods",
                "message": "",
            }
        ],
    }
    assert plan.recheck_after is None


def test_up_to_date_status_is_not_rewritten() -> None:
    first = plan_budget(pdb({"minAvailable": 2}), three_pods(), NOW, no_scale)
    assert first.status is not None
    again = plan_budget(
        pdb({"minAvailable": 2}, status=first.status), three_pods(), NOW + timedelta(seconds=5), no_scale
    )
    assert again.status is None


def test_unready_and_deleting_pods_are_not_healthy() -> None:
    pods = [
        pod("a", owner=RS_REF),
        pod("b", owner=RS_REF, ready=False),
        pod("c", owner=RS_REF, deleting=True),
    ]
    plan = plan_budget(pdb({"minAvailable": 2}), pods, NOW, no_scale)
    assert plan.status is not None
    assert (plan.status["currentHealthy"], plan.status["disruptionsAllowed"]) == (1, 0)
    assert plan.status["conditions"][0]["reason"] == "InsufficientPods"
    assert plan.status["conditions"][0]["status"] == "False"


def test_a_granted_eviction_counts_until_the_timeout() -> None:
    evicted_at = NOW - timedelta(seconds=30)
    status = {
        "disruptionsAllowed": 0,
        "currentHealthy": 3,
        "desiredHealthy": 2,
        "expectedPods": 3,
        "disruptedPods": {"web-0": rfc3339(evicted_at)},
        "observedGeneration": 1,
    }
    plan = plan_budget(pdb({"minAvailable": 2}, status=status), three_pods(), NOW, no_scale)
    assert plan.status is not None
    assert plan.status["currentHealthy"] == 2
    assert plan.status["disruptionsAllowed"] == 0
    assert plan.status["disruptedPods"] == {"web-0": rfc3339(evicted_at)}
    assert plan.recheck_after == pytest.approx((DELETION_TIMEOUT - timedelta(seconds=30)).total_seconds())


def test_an_overdue_eviction_is_forgotten_with_an_event() -> None:
    status = {"disruptedPods": {"web-0": rfc3339(NOW - DELETION_TIMEOUT - timedelta(seconds=1))}}
    plan = plan_budget(pdb({"minAvailable": 2}, status=status), three_pods(), NOW, no_scale)
    assert plan.status is not None
    assert "disruptedPods" not in plan.status
    assert plan.status["currentHealthy"] == 3
    assert [(e.reason, e.pod) for e in plan.events] == [("NotDeleted", "web-0")]


def test_a_deleted_pods_entry_is_dropped() -> None:
    status = {"disruptedPods": {"gone": rfc3339(NOW)}}
    plan = plan_budget(pdb({"minAvailable": 2}, status=status), three_pods(), NOW, no_scale)
    assert plan.status is not None and "disruptedPods" not in plan.status


def test_no_expected_pods_allows_nothing() -> None:
    plan = plan_budget(pdb({"minAvailable": 0}), [], NOW, no_scale)
    assert plan.status is not None and plan.status["disruptionsAllowed"] == 0
    assert [e.reason for e in plan.events] == ["NoPods"]


def test_unmanaged_pods_event() -> None:
    plan = plan_budget(pdb({"maxUnavailable": 1}), [pod("solo")], NOW, scales(1))
    assert [e.reason for e in plan.events] == ["UnmanagedPods"]
    assert "(selector: app=web)" in plan.events[0].message


def test_failure_fails_safe() -> None:
    job_ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "j", "controller": True}

    def lookup(namespace: str, ref: Mapping[str, Any]) -> ControllerScale | None:
        raise ExpectedCountError("jobs.batch does not implement the scale subresource")

    status = {
        "disruptionsAllowed": 2,
        "currentHealthy": 3,
        "desiredHealthy": 1,
        "expectedPods": 3,
        "observedGeneration": 1,
    }
    plan = plan_budget(pdb({"maxUnavailable": 1}, status=status), [pod("a", owner=job_ref)], NOW, lookup)
    assert plan.status is not None
    assert plan.status["disruptionsAllowed"] == 0
    cond = plan.status["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "SyncFailed")
    assert cond["message"] == "jobs.batch does not implement the scale subresource"
    assert plan.events[0].reason == "CalculateExpectedPodCountFailed"


def test_spec_change_is_observed() -> None:
    first = plan_budget(pdb({"minAvailable": 2}), three_pods(), NOW, no_scale).status
    plan = plan_budget(pdb({"minAvailable": 1}, status=first, generation=2), three_pods(), NOW, no_scale)
    assert plan.status is not None
    assert (plan.status["observedGeneration"], plan.status["disruptionsAllowed"]) == (2, 2)


def test_condition_transition_time_moves_only_on_flips() -> None:
    earlier = NOW - timedelta(minutes=5)
    old = [
        {
            "type": "DisruptionAllowed",
            "status": "True",
            "lastTransitionTime": rfc3339(earlier),
            "reason": "SufficientPods",
            "message": "",
        },
        {"type": "Other", "status": "True"},
    ]
    same = with_condition(old, "True", "SufficientPods", "", 3, NOW)
    assert same[0]["lastTransitionTime"] == rfc3339(earlier) and same[0]["observedGeneration"] == 3
    assert same[1] == {"type": "Other", "status": "True"}
    flipped = with_condition(old, "False", "InsufficientPods", "", 3, NOW)
    assert flipped[0]["lastTransitionTime"] == rfc3339(NOW)
    assert flipped[0]["reason"] == "InsufficientPods"
