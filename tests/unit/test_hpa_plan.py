"""The HPA algorithm as upstream's podautoscaler: proposals, tolerance, unready and missing pods, behavior."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as s

from corral.controllers.hpaplan import (
    History,
    MetricInput,
    PodView,
    Sample,
    ZeroState,
    plan_hpa,
    pod_view,
)

JSON = dict[str, Any]
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


def pod(
    name: str, cpu: float | None = 0.5, *, ready: bool = True, phase: str = "Running", **kw: Any
) -> PodView:
    return PodView(
        name=name,
        phase=phase,
        deleting=kw.get("deleting", False),
        ready=ready,
        started=kw.get("started", LONG_AGO),
        ready_since=kw.get("ready_since", LONG_AGO),
        requests={} if cpu is None else {"cpu": cpu},
    )


def cpu_hpa(target: int = 50, min_r: int = 1, max_r: int = 10, behavior: JSON | None = None) -> JSON:
    spec: JSON = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": min_r,
        "maxReplicas": max_r,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
            }
        ],
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return {"metadata": {"name": "web", "generation": 1}, "spec": spec, "status": {}}


def usage(**cores: float) -> MetricInput:
    return MetricInput(
        per_pod={n: Sample(v, NOW - timedelta(seconds=1), timedelta(seconds=5)) for n, v in cores.items()}
    )


def conditions(plan: Any) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def test_scales_out_by_the_utilization_ratio() -> None:
    pods = [pod("a"), pod("b")]
    plan = plan_hpa(cpu_hpa(), 2, pods, [usage(a=0.5, b=0.5)], History(), NOW)  # 100 % of request vs 50 %
    assert (plan.desired, plan.rescale) == (4, True)
    assert plan.status["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 100
    assert plan.events[0].message == (
        "New size: 4; reason: cpu resource utilization (percentage of request) above target"
    )
    assert conditions(plan)["ScalingLimited"] == ("False", "DesiredWithinRange")


def test_within_tolerance_nothing_changes() -> None:
    plan = plan_hpa(cpu_hpa(), 2, [pod("a"), pod("b")], [usage(a=0.26, b=0.26)], History(), NOW)  # 52 %
    assert (plan.desired, plan.rescale, plan.events) == (2, False, [])


def test_pods_without_cpu_requests_make_utilization_fail_loudly_without_rescale() -> None:
    plan = plan_hpa(cpu_hpa(), 2, [pod("a", cpu=None), pod("b")], [usage(a=0.5, b=0.5)], History(), NOW)
    assert not plan.rescale
    assert conditions(plan)["ScalingActive"] == ("False", "FailedGetResourceMetric")
    assert "missing request for cpu in pods a" in plan.status["conditions"][1]["message"]
    assert [e.reason for e in plan.events] == ["FailedGetResourceMetric"]


def test_unready_pods_count_as_idle_on_a_scale_up() -> None:
    pods = [pod("a"), pod("b"), pod("c", phase="Pending", ready=False)]
    plan = plan_hpa(cpu_hpa(), 3, pods, [usage(a=0.5, b=0.5)], History(), NOW)
    # Ready pods at 100 %: 4 by themselves; with c at 0 % the ratio is (1.0/1.5)/0.5 = 1.33 → ceil(1.33*3) = 4.
    assert plan.desired == 4


def test_a_starting_pod_whose_sample_predates_readiness_is_not_trusted() -> None:
    just_ready = NOW - timedelta(seconds=2)
    pods = [pod("a"), pod("b", started=NOW - timedelta(seconds=20), ready_since=just_ready)]
    plan = plan_hpa(cpu_hpa(), 2, pods, [usage(a=0.5, b=0.5)], History(), NOW)
    # b's sample window started before it was Ready: unready, counted as 0 on the scale-up → ratio 1.0 → 2.
    assert plan.desired == 2 and not plan.rescale


def test_missing_samples_assume_full_request_on_scale_down() -> None:
    hpa = cpu_hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    plan = plan_hpa(hpa, 4, [pod("a"), pod("b"), pod("c"), pod("d")], [usage(a=0.05, b=0.05)], History(), NOW)
    # Alone a, b (10 %) say 1 replica; c, d assumed at 100 % → (0.05+0.05+0.5+0.5)/2.0 = 55 % vs 50 → hold.
    assert plan.desired == 4


def test_scale_down_waits_for_the_stabilization_window() -> None:
    history = History()
    hpa = cpu_hpa()
    busy = plan_hpa(hpa, 4, [pod(n) for n in "abcd"], [usage(a=0.25, b=0.25, c=0.25, d=0.25)], history, NOW)
    assert busy.desired == 4  # 50 %: on target
    quiet = [pod(n) for n in "abcd"]
    later = NOW + timedelta(seconds=60)
    held = plan_hpa(hpa, 4, quiet, [usage(a=0.01, b=0.01, c=0.01, d=0.01)], history, later)
    assert held.desired == 4 and conditions(held)["AbleToScale"] == ("True", "ScaleDownStabilized")
    after = plan_hpa(
        hpa, 4, quiet, [usage(a=0.01, b=0.01, c=0.01, d=0.01)], history, NOW + timedelta(seconds=361)
    )
    assert after.desired == 1 and after.events[0].message == "New size: 1; reason: All metrics below target"


def test_scale_up_rate_is_limited_by_the_default_policies() -> None:
    history = History()
    plan = plan_hpa(cpu_hpa(max_r=100), 1, [pod("a")], [usage(a=5.0)], history, NOW)  # proposal 20
    assert plan.desired == 5  # max(1 + 4 pods, 1 * 200 %) per 15 s
    assert conditions(plan)["ScalingLimited"] == ("True", "ScaleUpLimit")
    # Within the same 15 s the events so far count against the period: still at most 5.
    again = plan_hpa(
        cpu_hpa(max_r=100),
        5,
        [pod(n) for n in "abcde"],
        [usage(**dict.fromkeys("abcde", 5.0))],
        history,
        NOW + timedelta(seconds=5),
    )
    assert again.desired == 5 and not again.rescale


def test_max_replicas_bounds_and_says_so() -> None:
    plan = plan_hpa(cpu_hpa(max_r=3), 2, [pod("a"), pod("b")], [usage(a=1.0, b=1.0)], History(), NOW)
    assert plan.desired == 3 and conditions(plan)["ScalingLimited"] == ("True", "TooManyReplicas")


def test_current_outside_min_max_is_brought_back_first() -> None:
    plan = plan_hpa(cpu_hpa(min_r=2, max_r=5), 8, [], [], History(), NOW)
    assert plan.desired == 5
    assert plan.events[0].message == "New size: 5; reason: Current number of replicas above Spec.MaxReplicas"


def test_target_at_zero_with_min_one_means_scaling_disabled() -> None:
    plan = plan_hpa(cpu_hpa(), 0, [], [usage()], History(), NOW)
    assert not plan.rescale and conditions(plan)["ScalingActive"] == ("False", "ScalingDisabled")


def test_invalid_metric_blocks_a_scale_down_but_not_a_scale_up() -> None:
    hpa = cpu_hpa(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    hpa["spec"]["metrics"].append(
        {
            "type": "Pods",
            "pods": {"metric": {"name": "nope"}, "target": {"type": "AverageValue", "averageValue": "1"}},
        }
    )
    missing = MetricInput(error='no metric "nope" for the pods', reason="FailedGetPodsMetric")
    down = plan_hpa(
        hpa, 4, [pod(n) for n in "abcd"], [usage(a=0.01, b=0.01, c=0.01, d=0.01), missing], History(), NOW
    )
    assert not down.rescale and conditions(down)["ScalingActive"] == ("False", "FailedGetPodsMetric")
    up = plan_hpa(hpa, 2, [pod("a"), pod("b")], [usage(a=1.0, b=1.0), missing], History(), NOW)
    assert up.rescale and up.desired > 2


def test_pods_metric_average_value() -> None:
    hpa = cpu_hpa()
    hpa["spec"]["metrics"] = [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "requests_per_second"},
                "target": {"type": "AverageValue", "averageValue": "10"},
            },
        }
    ]
    plan = plan_hpa(hpa, 1, [pod("a")], [MetricInput(per_pod={"a": Sample(45.0, NOW)})], History(), NOW)
    assert plan.desired == 5
    assert plan.status["currentMetrics"][0]["pods"]["current"]["averageValue"] == "45"


def test_scale_to_zero_when_idle_and_back_to_one_when_a_connection_waits() -> None:
    hpa = cpu_hpa(min_r=0)
    history = History()
    busy = ZeroState(idle_seconds=3, idle_limit=300, wake_requested=False)
    plan = plan_hpa(hpa, 2, [pod("a"), pod("b")], [usage(a=0.25, b=0.25)], history, NOW, busy)
    assert plan.desired == 2  # traffic: the metrics decide
    idle = ZeroState(idle_seconds=301, idle_limit=300, wake_requested=False)
    plan = plan_hpa(hpa, 2, [pod("a"), pod("b")], [usage(a=0.25, b=0.25)], history, NOW, idle)
    assert (plan.desired, plan.rescale) == (0, True)
    assert plan.events[0].message == "New size: 0; reason: no traffic for 301 s"
    asleep = plan_hpa(hpa, 0, [], [usage()], history, NOW, idle)
    assert not asleep.rescale and conditions(asleep)["ScalingActive"] == ("True", "ScaledToZero")
    waiting = ZeroState(idle_seconds=0, idle_limit=300, wake_requested=True)
    woken = plan_hpa(hpa, 0, [], [usage()], history, NOW + timedelta(seconds=1), waiting)
    assert (woken.desired, woken.rescale) == (1, True)
    assert woken.events[0].message == "New size: 1; reason: traffic arrived while scaled to zero"


def test_metrics_never_take_a_running_target_to_zero() -> None:
    hpa = cpu_hpa(min_r=0, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    busy = ZeroState(idle_seconds=1, idle_limit=300, wake_requested=False)
    plan = plan_hpa(hpa, 3, [pod(n) for n in "abc"], [usage(a=0, b=0, c=0)], History(), NOW, busy)
    assert plan.desired == 1


def test_disabled_scale_down_policy_never_scales_down() -> None:
    hpa = cpu_hpa(behavior={"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}})
    plan = plan_hpa(hpa, 4, [pod(n) for n in "abcd"], [usage(a=0.01, b=0.01, c=0.01, d=0.01)], History(), NOW)
    assert plan.desired == 4 and conditions(plan)["ScalingLimited"] == ("True", "ScaleDownLimit")


def test_pod_view_sums_requests_and_drops_partially_requested_resources() -> None:
    view = pod_view(
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                    {"resources": {"requests": {"cpu": "250m"}}},
                ]
            },
            "status": {
                "phase": "Running",
                "startTime": "2026-11-26T11:00:00Z",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-26T11:00:01Z"}
                ],
            },
        }
    )
    assert view.requests == {"cpu": 0.5} and view.ready and view.ready_since is not None


@given(
    loads=s.lists(s.floats(0, 4, allow_nan=False), min_size=1, max_size=20),
    min_r=s.integers(1, 5),
    span=s.integers(0, 15),
)
def test_desired_stays_within_bounds_and_follows_the_direction(
    loads: list[float], min_r: int, span: int
) -> None:
    """One pod per current replica (as when the target is settled): bounded, and never against the load."""
    max_r = min_r + span
    current = len(loads)
    names = [f"p{i}" for i in range(current)]
    hpa = cpu_hpa(min_r=min_r, max_r=max_r, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    samples = MetricInput(per_pod={n: Sample(v, NOW) for n, v in zip(names, loads, strict=True)})
    plan = plan_hpa(hpa, current, [pod(n) for n in names], [samples], History(), NOW)
    assert min_r <= plan.desired <= max_r
    if min_r <= current <= max_r:
        ratio = (sum(loads) / (0.5 * current)) / 0.5
        if ratio > 1.1:
            assert plan.desired >= current
        if ratio < 0.9:
            assert plan.desired <= current


@pytest.mark.parametrize("bad", ["Utilization", "AverageValue"])
def test_targets_without_numbers_are_invalid(bad: str) -> None:
    hpa = cpu_hpa()
    hpa["spec"]["metrics"][0]["resource"]["target"] = {"type": bad}
    plan = plan_hpa(hpa, 2, [pod("a"), pod("b")], [usage(a=1, b=1)], History(), NOW)
    assert not plan.rescale and conditions(plan)["ScalingActive"][0] == "False"
