"""autoscaling/v1 <-> v2 HorizontalPodAutoscaler conversion: tables and round-trip properties."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.conversion import from_storage, hpa_v1_to_v2, hpa_v2_to_v1, to_storage

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

JSON = dict[str, Any]

REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


def cpu(target: int) -> JSON:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
    }


MEMORY = {
    "type": "Resource",
    "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}},
}
PODS = {
    "type": "Pods",
    "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}},
}


def v1(**spec: Any) -> JSON:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5, **spec},
    }


def test_v1_to_v2_spec() -> None:
    out = hpa_v1_to_v2(v1(targetCPUUtilizationPercentage=50))
    assert out["apiVersion"] == "autoscaling/v2"
    assert out["spec"] == {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5, "metrics": [cpu(50)]}


def test_v1_to_v2_without_target_leaves_metrics_to_defaulting() -> None:
    assert "metrics" not in hpa_v1_to_v2(v1())["spec"]


def test_v1_to_v2_keeps_stored_v2_only_metrics_and_behavior() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    stored = {"spec": {"metrics": [cpu(80), MEMORY, PODS], "behavior": behavior}}
    out = hpa_v1_to_v2(v1(targetCPUUtilizationPercentage=60), stored)
    assert out["spec"]["metrics"] == [cpu(60), MEMORY, PODS]
    assert out["spec"]["behavior"] == behavior
    assert out["spec"]["behavior"] is not behavior  # a copy, not the stored object itself
    dropped = hpa_v1_to_v2(v1(), stored)
    assert dropped["spec"]["metrics"] == [MEMORY, PODS]


def test_v1_to_v2_status() -> None:
    obj = v1()
    obj["status"] = {"currentReplicas": 2, "currentCPUUtilizationPercentage": 37, "observedGeneration": 3}
    out = hpa_v1_to_v2(obj)
    assert out["status"] == {
        "currentReplicas": 2,
        "desiredReplicas": 2,
        "observedGeneration": 3,
        "currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 37}}}
        ],
    }


def test_v2_to_v1() -> None:
    obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": REF, "maxReplicas": 5, "metrics": [MEMORY, cpu(70)], "behavior": {}},
        "status": {
            "currentReplicas": 3,
            "desiredReplicas": 4,
            "conditions": [{"type": "AbleToScale", "status": "True"}],
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "1"}}},
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 55}}},
            ],
        },
    }
    out = hpa_v2_to_v1(obj)
    assert out["apiVersion"] == "autoscaling/v1"
    assert out["spec"] == {"scaleTargetRef": REF, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}
    assert out["status"] == {
        "currentReplicas": 3,
        "desiredReplicas": 4,
        "currentCPUUtilizationPercentage": 55,
    }
    assert obj["spec"]["metrics"] == [MEMORY, cpu(70)]  # the input is not changed


def test_v2_to_v1_status_gets_required_fields() -> None:
    out = hpa_v2_to_v1({"spec": {"metrics": [MEMORY]}, "status": {}})
    assert out["status"] == {"currentReplicas": 0, "desiredReplicas": 0}
    assert "targetCPUUtilizationPercentage" not in out["spec"]


def test_v2_cpu_metric_without_utilization_has_no_v1_target() -> None:
    metric = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}
    assert "targetCPUUtilizationPercentage" not in hpa_v2_to_v1({"spec": {"metrics": [metric]}})["spec"]


def test_storage_dispatch() -> None:
    obj = v1(targetCPUUtilizationPercentage=50)
    assert to_storage("autoscaling/v1", "HorizontalPodAutoscaler", obj)["apiVersion"] == "autoscaling/v2"
    assert (
        from_storage("autoscaling/v1", "HorizontalPodAutoscaler", hpa_v1_to_v2(obj))["apiVersion"]
        == "autoscaling/v1"
    )
    v2obj = hpa_v1_to_v2(obj)
    assert to_storage("autoscaling/v2", "HorizontalPodAutoscaler", v2obj) is v2obj
    assert from_storage("autoscaling/v2", "HorizontalPodAutoscaler", v2obj) is v2obj
    pod = {"kind": "Pod"}
    assert to_storage("v1", "Pod", pod) is pod and from_storage("v1", "Pod", pod) is pod


# ---------------------------------------------------------------------------------------------- properties

_OPT_INT = st.none() | st.integers(0, 1000)


@st.composite
def _v1_objects(draw: st.DrawFn) -> JSON:
    spec: JSON = {"scaleTargetRef": REF, "maxReplicas": draw(st.integers(1, 100))}
    for key in ("minReplicas", "targetCPUUtilizationPercentage"):
        if (value := draw(_OPT_INT)) is not None:
            spec[key] = value
    obj: JSON = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "h", "labels": {"a": "b"}},
        "spec": spec,
    }
    if draw(st.booleans()):
        status: JSON = {
            "currentReplicas": draw(st.integers(0, 9)),
            "desiredReplicas": draw(st.integers(0, 9)),
        }
        for key in ("currentCPUUtilizationPercentage", "observedGeneration"):
            if (value := draw(_OPT_INT)) is not None:
                status[key] = value
        if draw(st.booleans()):
            status["lastScaleTime"] = "2024-01-01T00:00:00Z"
        obj["status"] = status
    return obj


_V2_ONLY = st.lists(st.sampled_from([MEMORY, PODS, cpu(90)]), max_size=3)


@SETTINGS
@given(
    _v1_objects(), st.none() | _V2_ONLY.map(lambda m: {"spec": {"metrics": m, "behavior": {"scaleUp": {}}}})
)
def test_v1_round_trip_preserves_v1_fields(obj: JSON, stored: JSON | None) -> None:
    before = copy.deepcopy(obj)
    back = hpa_v2_to_v1(hpa_v1_to_v2(obj, stored))
    assert back == obj
    assert obj == before


@SETTINGS
@given(_v1_objects(), _V2_ONLY)
def test_v2_metrics_survive_a_v1_read_modify_write(obj: JSON, metrics: list[JSON]) -> None:
    stored = hpa_v1_to_v2(obj)
    stored["spec"]["metrics"] = stored["spec"].get("metrics", []) + metrics
    rewritten = hpa_v1_to_v2(hpa_v2_to_v1(stored), stored)
    # v1 carries the first CPU utilisation target; every other metric comes back from the stored object.
    cpu_metrics = [m for m in stored["spec"]["metrics"] if m.get("resource", {}).get("name") == "cpu"]
    others = [m for m in stored["spec"]["metrics"] if m not in cpu_metrics]
    assert rewritten["spec"].get("metrics", []) == cpu_metrics[:1] + others
