"""Conversion between served versions that share storage: autoscaling/v1 and v2 HorizontalPodAutoscalers.

HPAs are stored as autoscaling/v2. The v1 API exposes only the CPU utilisation target, as upstream does;
other v2 metrics are kept across a v1 round trip by carrying them over from the stored object. Pure logic.
"""

from __future__ import annotations

import copy
from typing import Any

JSON = dict[str, Any]


def _cpu_metric(target: int) -> JSON:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
    }


def _is_cpu_utilization(metric: Any) -> bool:
    return (
        isinstance(metric, dict)
        and metric.get("type") == "Resource"
        and (metric.get("resource") or {}).get("name") == "cpu"
        and ((metric.get("resource") or {}).get("target") or {}).get("type") == "Utilization"
    )


def hpa_v1_to_v2(obj: JSON, stored: JSON | None = None) -> JSON:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v2"
    spec = out.get("spec")
    if isinstance(spec, dict):
        target = spec.pop("targetCPUUtilizationPercentage", None)
        kept = [
            m for m in ((stored or {}).get("spec") or {}).get("metrics") or [] if not _is_cpu_utilization(m)
        ]
        metrics = ([_cpu_metric(int(target))] if target is not None else []) + kept
        if metrics:
            spec["metrics"] = metrics
        # v1 cannot express scaling behavior either; keep the stored one (upstream keeps it in an annotation).
        behavior = ((stored or {}).get("spec") or {}).get("behavior")
        if behavior is not None and "behavior" not in spec:
            spec["behavior"] = copy.deepcopy(behavior)
    status = out.get("status")
    if isinstance(status, dict):
        current = status.pop("currentCPUUtilizationPercentage", None)
        if current is not None:
            status["currentMetrics"] = [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}
            ]
        status.setdefault("desiredReplicas", status.get("currentReplicas", 0))
    return out


def hpa_v2_to_v1(obj: JSON) -> JSON:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v1"
    spec = out.get("spec")
    if isinstance(spec, dict):
        metrics = spec.pop("metrics", None) or []
        spec.pop("behavior", None)
        for metric in metrics:
            if _is_cpu_utilization(metric):
                target = metric["resource"]["target"].get("averageUtilization")
                if target is not None:
                    spec["targetCPUUtilizationPercentage"] = target
                break
    status = out.get("status")
    if isinstance(status, dict):
        current = status.pop("currentMetrics", None) or []
        status.pop("conditions", None)
        for metric in current:
            if isinstance(metric, dict) and (metric.get("resource") or {}).get("name") == "cpu":
                value = (metric["resource"].get("current") or {}).get("averageUtilization")
                if value is not None:
                    status["currentCPUUtilizationPercentage"] = value
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", 0)
    return out


def to_storage(api_version: str, kind: str, obj: JSON, stored: JSON | None = None) -> JSON:
    if kind == "HorizontalPodAutoscaler" and api_version == "autoscaling/v1":
        return hpa_v1_to_v2(obj, stored)
    return obj


def from_storage(api_version: str, kind: str, obj: JSON) -> JSON:
    if kind == "HorizontalPodAutoscaler" and api_version == "autoscaling/v1":
        return hpa_v2_to_v1(obj)
    return obj


def needs_conversion(api_version: str, kind: str) -> bool:
    """Whether objects of this served version differ from their stored form."""
    return kind == "HorizontalPodAutoscaler" and api_version == "autoscaling/v1"
