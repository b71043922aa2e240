"""HorizontalPodAutoscaler planning, as upstream's ``pkg/controller/podautoscaler``. Pure.

:func:`plan_hpa` takes an autoscaling/v2 HPA, the target's current scale, its pods, what the metrics sources
answered for each of ``spec.metrics`` (:class:`MetricInput`), the controller's remembered recommendations and
scale events, and ``now``; it returns the desired replica count, the new status (current metrics and the
``AbleToScale`` / ``ScalingActive`` / ``ScalingLimited`` conditions) and the events to record.

It follows upstream step by step:

- per metric, a proposal (``replica_calculator.go``): Resource ``Utilization`` against the pods' requests or
  ``AverageValue``, Pods metrics (average value), Object metrics (``Value`` against the ready pod count, or
  ``AverageValue``); the 10 % tolerance; pods being deleted or failed ignored; pending pods and, for CPU, pods
  still starting (not Ready, or Ready so recently that the sample predates it) treated as 0 % on a scale-up
  and left out otherwise; pods without a sample assumed at 100 % of request on a scale-down and 0 % on a
  scale-up; no change when filling in those pods would flip the direction;
- the largest proposal wins; invalid metrics block a scale-down and, when all are invalid, scaling;
- ``behavior`` (``normalizeDesiredReplicasWithBehaviors``): stabilization windows over past
  recommendations (scale-up: the smallest in the window; scale-down: the largest, default 300 s), then rate
  policies over the scale events of each policy's period (defaults: up 4 pods or 100 % per 15 s, whichever is
  more; down 100 % per 15 s), then ``minReplicas``/``maxReplicas``.

Corral allows ``minReplicas: 0`` (scale to zero, :class:`ZeroState`): after ``idle_limit`` seconds without
traffic on the target's Services the target goes to 0; at 0 it stays until a held connection asks for a
replica, then goes to 1 at once (no stabilization, no rate policy: someone is waiting). Metrics never take a
running target below 1; only idleness does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral.api.quantity import parse_quantity
from corral.util.clock import parse_rfc3339, rfc3339

JSON = dict[str, Any]

TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = timedelta(minutes=5)
INITIAL_READINESS_DELAY = timedelta(seconds=30)
DEFAULT_DOWN_WINDOW = 300

ABLE_TO_SCALE = "AbleToScale"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"


# ------------------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True, slots=True)
class PodView:
    """What the calculator needs of one pod of the target."""

    name: str
    phase: str
    deleting: bool
    ready: bool
    started: datetime | None
    ready_since: datetime | None
    """``lastTransitionTime`` of the Ready condition."""
    requests: Mapping[str, float]
    """Sum over containers per resource (cpu in cores, memory in bytes); a resource some container does not
    request is absent."""


@dataclass(frozen=True, slots=True)
class Sample:
    value: float
    timestamp: datetime
    window: timedelta = timedelta(seconds=0)


@dataclass(frozen=True, slots=True)
class MetricInput:
    """What the metrics source answered for one entry of ``spec.metrics``.

    ``per_pod`` for Resource and Pods metrics (pod name → sample), ``value`` for Object metrics; ``error``
    (with a reason like ``FailedGetResourceMetric``) when it could not answer."""

    per_pod: Mapping[str, Sample] | None = None
    value: float | None = None
    error: str | None = None
    reason: str = ""


@dataclass
class History:
    """Kept by the controller between syncs, per HPA (upstream keeps it in memory too)."""

    recommendations: list[tuple[datetime, int]] = field(default_factory=list)
    scale_up_events: list[tuple[datetime, int]] = field(default_factory=list)
    scale_down_events: list[tuple[datetime, int]] = field(default_factory=list)
    last_scale: datetime | None = None
    """When this controller last rescaled the target (``status.lastScaleTime`` keeps whole seconds only)."""


@dataclass(frozen=True, slots=True)
class ZeroState:
    """Scale to zero inputs (``minReplicas: 0``)."""

    idle_seconds: float | None
    """Seconds since the target's Services last had traffic; None when no Service of it is known."""
    idle_limit: float
    wake_requested: bool
    """A connection is waiting for a replica (an activation request newer than the last scale to zero)."""


@dataclass(frozen=True, slots=True)
class HPAEvent:
    type: str
    reason: str
    message: str


@dataclass
class HPAPlan:
    desired: int
    current: int
    rescale: bool
    status: JSON
    events: list[HPAEvent] = field(default_factory=list)
    reason: str = ""


class MetricError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------------------------ pods


def pod_view(pod: Mapping[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready, ready_since = False, None
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
            ready_since = _time(cond.get("lastTransitionTime"))
    requests: dict[str, float] = {}
    missing: set[str] = set()
    containers = (pod.get("spec") or {}).get("containers") or []
    for container in containers:
        declared = ((container.get("resources") or {}).get("requests")) or {}
        for resource in ("cpu", "memory"):
            if resource in declared:
                requests[resource] = requests.get(resource, 0.0) + float(parse_quantity(declared[resource]))
            else:
                missing.add(resource)
    for resource in missing:
        requests.pop(resource, None)
    return PodView(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        deleting=bool(meta.get("deletionTimestamp")),
        ready=ready,
        started=_time(status.get("startTime")),
        ready_since=ready_since,
        requests=requests,
    )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class PodGroups:
    ready: int
    unready: set[str]
    missing: set[str]
    ignored: set[str]


def group_pods(
    pods: Sequence[PodView], samples: Mapping[str, Sample], resource: str | None, now: datetime
) -> PodGroups:
    """``groupPods``: which pods count, which are still starting, which have no sample, which are ignored."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        sample = samples.get(pod.name)
        if sample is None:
            missing.add(pod.name)
            continue
        if resource == "cpu":
            if pod.ready_since is None or pod.started is None:
                unready.add(pod.name)
                continue
            if pod.started + CPU_INITIALIZATION_PERIOD > now:
                # Starting up: the sample must come entirely after the pod turned Ready.
                starting = not pod.ready or sample.timestamp < pod.ready_since + sample.window
            else:
                # Later: only a pod that has never been Ready since its start counts as not ready.
                starting = not pod.ready and pod.started + INITIAL_READINESS_DELAY > pod.ready_since
            if starting:
                unready.add(pod.name)
                continue
        ready += 1
    return PodGroups(ready, unready, missing, ignored)


# ------------------------------------------------------------------------------------------------ proposals


@dataclass(frozen=True, slots=True)
class Proposal:
    replicas: int
    current: JSON
    """The ``current`` part of this metric's status entry (averageUtilization / averageValue / value)."""


def _within_tolerance(ratio: float) -> bool:
    return abs(1.0 - ratio) <= TOLERANCE


def resource_utilization(
    current_replicas: int,
    target_percent: int,
    resource: str,
    pods: Sequence[PodView],
    samples: Mapping[str, Sample],
    now: datetime,
) -> Proposal:
    """``GetResourceReplicas`` with a Utilization target."""
    # Requests first (upstream asks after the metrics): a pod without one is a mistake worth naming even
    # before the first sample arrives.
    requests = {p.name: p.requests.get(resource) for p in pods}
    lacking = sorted(
        p.name for p in pods if requests[p.name] is None and not p.deleting and p.phase != "Failed"
    )
    if lacking:
        raise MetricError(
            "FailedGetResourceMetric",
            f"failed to get {resource} utilization: missing request for {resource} "
            f"in pods {', '.join(lacking)}",
        )
    if not samples:
        raise MetricError(
            "FailedGetResourceMetric", f"did not receive metrics for targeted pods ({resource})"
        )
    groups = group_pods(pods, samples, resource, now)
    by_name = {p.name: p for p in pods}
    usable = {
        name: s.value
        for name, s in samples.items()
        if name in by_name and name not in groups.unready and name not in groups.ignored
    }
    if not usable:
        raise MetricError("FailedGetResourceMetric", f"no ready pods with {resource} metrics")
    ratio, utilization, average = _utilization(usable, requests, target_percent)
    current = {"averageUtilization": utilization, "averageValue": _format(resource, average)}
    rebalance = bool(groups.unready) and ratio > 1.0
    if not rebalance and not groups.missing:
        if _within_tolerance(ratio):
            return Proposal(current_replicas, current)
        return Proposal(math.ceil(ratio * groups.ready), current)
    filled = dict(usable)
    if groups.missing:
        for name in groups.missing:
            request = requests.get(name) or 0.0
            filled[name] = request * max(100, target_percent) / 100 if ratio < 1.0 else 0.0
    if rebalance:
        for name in groups.unready:
            filled[name] = 0.0
    new_ratio, _, _ = _utilization(filled, requests, target_percent)
    if _within_tolerance(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return Proposal(current_replicas, current)
    proposal = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and proposal > current_replicas) or (new_ratio > 1.0 and proposal < current_replicas):
        return Proposal(current_replicas, current)
    return Proposal(proposal, current)


def _utilization(
    usage: Mapping[str, float], requests: Mapping[str, float | None], target_percent: int
) -> tuple[float, int, float]:
    total_usage = sum(usage.values())
    total_request = sum(requests.get(name) or 0.0 for name in usage)
    if total_request <= 0:
        raise MetricError("FailedGetResourceMetric", "no metrics returned matched known pods")
    utilization = int(total_usage * 100 / total_request)
    return utilization / target_percent if target_percent else 0.0, utilization, total_usage / len(usage)


def average_value(
    current_replicas: int,
    target: float,
    resource: str | None,
    pods: Sequence[PodView],
    samples: Mapping[str, Sample],
    now: datetime,
    metric_name: str,
) -> Proposal:
    """``calcPlainMetricReplicas``: Resource AverageValue and Pods metrics."""
    if not samples:
        raise MetricError(
            "FailedGetResourceMetric" if resource else "FailedGetPodsMetric",
            f"did not receive metrics for targeted pods ({metric_name})",
        )
    if target <= 0:
        raise MetricError("InvalidMetricSourceType", f"target for {metric_name} must be positive")
    groups = group_pods(pods, samples, resource, now)
    names = {p.name for p in pods}
    usable = {
        n: s.value for n, s in samples.items() if n in names and n not in groups.unready | groups.ignored
    }
    if not usable:
        raise MetricError("FailedGetPodsMetric", f"no ready pods with {metric_name} metrics")
    average = sum(usable.values()) / len(usable)
    ratio = average / target
    current = {"averageValue": _format(resource, average)}
    rebalance = bool(groups.unready) and ratio > 1.0
    if not rebalance and not groups.missing:
        if _within_tolerance(ratio):
            return Proposal(current_replicas, current)
        return Proposal(math.ceil(ratio * groups.ready), current)
    filled = dict(usable)
    for name in groups.missing:
        filled[name] = target if ratio < 1.0 else 0.0
    if rebalance:
        for name in groups.unready:
            filled[name] = 0.0
    new_ratio = sum(filled.values()) / len(filled) / target
    if _within_tolerance(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return Proposal(current_replicas, current)
    proposal = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and proposal > current_replicas) or (new_ratio > 1.0 and proposal < current_replicas):
        return Proposal(current_replicas, current)
    return Proposal(proposal, current)


def object_value(
    current_replicas: int,
    value: float,
    target_value: float | None,
    target_average: float | None,
    ready_pods: int,
) -> Proposal:
    """``GetObjectMetricReplicas`` (Value) and ``GetObjectPerPodMetricReplicas`` (AverageValue)."""
    if target_average is not None:
        if target_average <= 0:
            raise MetricError("InvalidMetricSourceType", "averageValue target must be positive")
        proposal = math.ceil(value / target_average)
        ratio = value / (target_average * current_replicas) if current_replicas else math.inf
        current = {"averageValue": _format(None, value / max(current_replicas, 1))}
        if current_replicas and _within_tolerance(ratio):
            return Proposal(current_replicas, current)
        return Proposal(proposal, current)
    if not target_value or target_value <= 0:
        raise MetricError("InvalidMetricSourceType", "value target must be positive")
    ratio = value / target_value
    current = {"value": _format(None, value)}
    if _within_tolerance(ratio):
        return Proposal(current_replicas, current)
    if ready_pods == 0:
        # At zero (scale to zero): any traffic asks for one replica; none keeps it at zero.
        return Proposal(1 if value > 0 else 0, current)
    return Proposal(math.ceil(ratio * ready_pods), current)


def _format(resource: str | None, value: float) -> str:
    if resource == "memory":
        return str(int(value))
    if value == int(value) and resource != "cpu":
        return str(int(value))
    return f"{max(0, round(value * 1000))}m"


# ------------------------------------------------------------------------------------------------ behavior


def _scaling_rules(hpa: Mapping[str, Any], direction: str) -> JSON:
    behavior = ((hpa.get("spec") or {}).get("behavior") or {}).get(direction) or {}
    if direction == "scaleUp":
        defaults: JSON = {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        }
    else:
        defaults = {
            "stabilizationWindowSeconds": DEFAULT_DOWN_WINDOW,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        }
    return {**defaults, **{k: v for k, v in behavior.items() if v is not None}}


def stabilize(
    hpa: Mapping[str, Any], history: History, current: int, proposal: int, now: datetime
) -> tuple[int, str, str]:
    """``stabilizeRecommendationWithBehaviors``; records ``proposal``. Returns (replicas, reason, message)."""
    up_window = int(_scaling_rules(hpa, "scaleUp")["stabilizationWindowSeconds"])
    down_window = int(_scaling_rules(hpa, "scaleDown")["stabilizationWindowSeconds"])
    up_cutoff, down_cutoff = now - timedelta(seconds=up_window), now - timedelta(seconds=down_window)
    up, down = proposal, proposal
    for when, replicas in history.recommendations:
        if when > up_cutoff:
            up = min(up, replicas)
        if when > down_cutoff:
            down = max(down, replicas)
    keep = max(up_window, down_window)
    history.recommendations = [
        (w, r) for w, r in history.recommendations if w > now - timedelta(seconds=keep)
    ] + [(now, proposal)]
    result = current
    if result < up:
        result = up
    if result > down:
        result = down
    if result != proposal:
        return (
            result,
            "ScaleDownStabilized" if proposal < current else "ScaleUpStabilized",
            (
                "recent recommendations were higher than current one, "
                "applying the highest recent recommendation"
                if proposal < current
                else "recent recommendations were lower than current one, "
                "applying the lowest recent recommendation"
            ),
        )
    return result, "ReadyForNewScale", "recommended size matches current size"


def _changed_in_period(events: list[tuple[datetime, int]], period: int, now: datetime) -> int:
    cutoff = now - timedelta(seconds=period)
    return sum(change for when, change in events if when > cutoff)


def rate_limit(
    hpa: Mapping[str, Any],
    history: History,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    now: datetime,
) -> tuple[int, str, str]:
    """``convertDesiredReplicasWithBehaviorRate``: the rate policies, then the min/max bounds. Returns
    (replicas, reason, message) for the ScalingLimited condition (``DesiredWithinRange`` when not limited)."""
    if desired > current:
        limit = max(_up_limit(_scaling_rules(hpa, "scaleUp"), history, current, now), current)
        if max_replicas > limit:
            allowed, reason = limit, "ScaleUpLimit"
            message = "the desired replica count is increasing faster than the maximum scale rate"
        else:
            allowed, reason = max_replicas, "TooManyReplicas"
            message = "the desired replica count is more than the maximum replica count"
        if desired > allowed:
            return allowed, reason, message
    elif desired < current:
        limit = min(_down_limit(_scaling_rules(hpa, "scaleDown"), history, current, now), current)
        if min_replicas < limit:
            allowed, reason = limit, "ScaleDownLimit"
            message = "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            allowed, reason = min_replicas, "TooFewReplicas"
            message = "the desired replica count is less than the minimum replica count"
        if desired < allowed:
            return allowed, reason, message
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def _up_limit(rules: Mapping[str, Any], history: History, current: int, now: datetime) -> int:
    select = rules.get("selectPolicy", "Max")
    if select == "Disabled":
        return current
    limits: list[int] = []
    for policy in rules.get("policies") or []:
        added = _changed_in_period(history.scale_up_events, int(policy.get("periodSeconds", 15)), now)
        removed = _changed_in_period(history.scale_down_events, int(policy.get("periodSeconds", 15)), now)
        start = current - added + removed
        if policy.get("type") == "Pods":
            limits.append(start + int(policy.get("value", 0)))
        else:
            limits.append(math.ceil(start * (1 + int(policy.get("value", 0)) / 100)))
    if not limits:
        return current
    return min(limits) if select == "Min" else max(limits)


def _down_limit(rules: Mapping[str, Any], history: History, current: int, now: datetime) -> int:
    select = rules.get("selectPolicy", "Max")
    if select == "Disabled":
        return current
    limits: list[int] = []
    for policy in rules.get("policies") or []:
        added = _changed_in_period(history.scale_up_events, int(policy.get("periodSeconds", 15)), now)
        removed = _changed_in_period(history.scale_down_events, int(policy.get("periodSeconds", 15)), now)
        start = current - added + removed
        if policy.get("type") == "Pods":
            limits.append(start - int(policy.get("value", 0)))
        else:
            limits.append(int(start * (1 - int(policy.get("value", 0)) / 100)))
    if not limits:
        return current
    return max(limits) if select == "Min" else min(limits)


def record_scale(history: History, old: int, new: int, now: datetime, keep_seconds: int = 1800) -> None:
    cutoff = now - timedelta(seconds=keep_seconds)
    history.scale_up_events = [(w, c) for w, c in history.scale_up_events if w > cutoff]
    history.scale_down_events = [(w, c) for w, c in history.scale_down_events if w > cutoff]
    if new > old:
        history.scale_up_events.append((now, new - old))
    elif new < old:
        history.scale_down_events.append((now, old - new))
    history.last_scale = now


# ------------------------------------------------------------------------------------------------ the plan


def _condition(ctype: str, status: str, reason: str, message: str, now: datetime, old: JSON) -> JSON:
    previous = next(
        (c for c in old.get("conditions") or [] if isinstance(c, dict) and c.get("type") == ctype), None
    )
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == status else None
    return {
        "type": ctype,
        "status": status,
        "lastTransitionTime": since or rfc3339(now),
        "reason": reason,
        "message": message,
    }


def _metric_status(metric: Mapping[str, Any], current: JSON) -> JSON:
    kind = str(metric.get("type"))
    source_key = {
        "Resource": "resource",
        "Pods": "pods",
        "Object": "object",
        "ContainerResource": "containerResource",
    }
    key = source_key.get(kind, kind.lower())
    source = dict(metric.get(key) or {})
    entry: JSON = {"current": current}
    if kind == "Resource":
        entry["name"] = source.get("name")
    elif kind == "Pods":
        entry["metric"] = source.get("metric")
    elif kind == "Object":
        entry["metric"] = source.get("metric")
        entry["describedObject"] = source.get("describedObject")
    return {"type": kind, key: entry}


def proposal_for(
    metric: Mapping[str, Any], data: MetricInput, current: int, pods: Sequence[PodView], now: datetime
) -> Proposal:
    """One ``spec.metrics`` entry's proposal (raises :class:`MetricError`)."""
    if data.error is not None:
        raise MetricError(data.reason or "FailedGetMetric", data.error)
    kind = metric.get("type")
    if kind == "Resource":
        source = metric.get("resource") or {}
        resource = str(source.get("name"))
        target = source.get("target") or {}
        samples = data.per_pod or {}
        if target.get("type") == "Utilization" and target.get("averageUtilization") is not None:
            return resource_utilization(
                current, int(target["averageUtilization"]), resource, pods, samples, now
            )
        if target.get("averageValue") is not None:
            value = float(parse_quantity(target["averageValue"]))
            return average_value(current, value, resource, pods, samples, now, resource)
        raise MetricError("InvalidMetricSourceType", f"invalid target for resource metric {resource}")
    if kind == "Pods":
        source = metric.get("pods") or {}
        name = str((source.get("metric") or {}).get("name"))
        target = source.get("target") or {}
        if target.get("averageValue") is None:
            raise MetricError("InvalidMetricSourceType", f"pods metric {name} needs an averageValue target")
        value = float(parse_quantity(target["averageValue"]))
        return average_value(current, value, None, pods, data.per_pod or {}, now, name)
    if kind == "Object":
        source = metric.get("object") or {}
        target = source.get("target") or {}
        if data.value is None:
            raise MetricError("FailedGetObjectMetric", "no value for the object metric")
        ready = sum(1 for p in pods if p.ready and not p.deleting)
        target_value = float(parse_quantity(target["value"])) if target.get("value") is not None else None
        target_average = (
            float(parse_quantity(target["averageValue"])) if target.get("averageValue") is not None else None
        )
        return object_value(current, data.value, target_value, target_average, ready)
    raise MetricError(
        "InvalidMetricSourceType", f"metric type {kind!r} is not supported (Resource, Pods, Object)"
    )


def plan_hpa(
    hpa: Mapping[str, Any],
    current: int,
    pods: Sequence[PodView],
    inputs: Sequence[MetricInput],
    history: History,
    now: datetime,
    zero: ZeroState | None = None,
) -> HPAPlan:
    """One sync: the replica count to set (``rescale``), the status and the events."""
    spec = hpa.get("spec") or {}
    old_status = dict(hpa.get("status") or {})
    min_replicas = int(spec.get("minReplicas", 1) if spec.get("minReplicas") is not None else 1)
    max_replicas = int(spec.get("maxReplicas") or 1)
    metrics = list(spec.get("metrics") or [])
    events: list[HPAEvent] = []
    conditions: list[JSON] = []

    def status(desired: int, current_metrics: list[JSON], last_scale: str | None) -> JSON:
        body: JSON = {
            "currentReplicas": current,
            "desiredReplicas": desired,
            "currentMetrics": current_metrics or None,
            "conditions": conditions,
        }
        if hpa.get("metadata", {}).get("generation") is not None:
            body["observedGeneration"] = hpa["metadata"]["generation"]
        if last_scale:
            body["lastScaleTime"] = last_scale
        return {k: v for k, v in body.items() if v is not None}

    last_scale = old_status.get("lastScaleTime")
    able = _condition(
        ABLE_TO_SCALE,
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
        old_status,
    )
    current_metrics: list[JSON] = []
    reason = ""
    if min_replicas == 0:
        woken = _scale_to_zero(zero, current, conditions, able, now, old_status)
        if woken is not None:
            desired, reason = woken
            if desired != current:
                events.append(
                    HPAEvent("Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
                )
                record_scale(history, current, desired, now)
                last_scale = rfc3339(now)
            return HPAPlan(
                desired, current, desired != current, status(desired, [], last_scale), events, reason
            )
        min_replicas = 1  # metrics never take a running target to zero; idleness does
    if current == 0 and min_replicas > 0:
        conditions.extend(
            [
                able,
                _condition(
                    SCALING_ACTIVE,
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                    now,
                    old_status,
                ),
            ]
        )
        return HPAPlan(0, 0, False, status(0, [], last_scale), events)
    if current > max_replicas or current < min_replicas:
        desired = max_replicas if current > max_replicas else min_replicas
        reason = f"Current number of replicas {'above' if current > max_replicas else 'below'} Spec." + (
            "MaxReplicas" if current > max_replicas else "MinReplicas"
        )
        conditions.extend(
            [
                _rescaled(now, old_status),
                _condition(
                    SCALING_LIMITED,
                    "True",
                    "TooManyReplicas" if current > max_replicas else "TooFewReplicas",
                    reason,
                    now,
                    old_status,
                ),
            ]
        )
    else:
        proposals: list[tuple[int, Mapping[str, Any]]] = []
        found: Proposal
        errors: list[MetricError] = []
        for metric, data in zip(metrics, inputs, strict=False):
            try:
                found = proposal_for(metric, data, current, pods, now)
            except MetricError as exc:
                errors.append(exc)
                events.append(HPAEvent("Warning", exc.reason, str(exc)))
                continue
            proposals.append((found.replicas, metric))
            current_metrics.append(_metric_status(metric, found.current))
        if not proposals or (errors and max(p for p, _ in proposals) < current):
            # As upstream: no valid metric, or some invalid while the valid ones say "scale down": hold.
            first = errors[0] if errors else MetricError("FailedGetMetric", "no metrics configured")
            conditions.extend(
                [
                    able,
                    _condition(
                        SCALING_ACTIVE,
                        "False",
                        first.reason,
                        f"the HPA was unable to compute the replica count: {first}",
                        now,
                        old_status,
                    ),
                ]
            )
            return HPAPlan(current, current, False, status(current, current_metrics, last_scale), events)
        proposal, metric = max(proposals, key=lambda p: p[0])
        if proposal > current:
            reason = f"{_metric_label(metric)} above target"
        elif proposal < current:
            reason = "All metrics below target"
        stabilized, able_reason, able_message = stabilize(hpa, history, current, proposal, now)
        desired, limit_reason, limit_message = rate_limit(
            hpa, history, current, stabilized, min_replicas, max_replicas, now
        )
        conditions.extend(
            [
                _condition(ABLE_TO_SCALE, "True", able_reason, able_message, now, old_status),
                _condition(
                    SCALING_ACTIVE,
                    "True",
                    "ValidMetricFound",
                    "the HPA was able to successfully calculate a replica count from "
                    + _metric_label(metric),
                    now,
                    old_status,
                ),
                _condition(
                    SCALING_LIMITED,
                    "False" if limit_reason == "DesiredWithinRange" else "True",
                    limit_reason,
                    limit_message,
                    now,
                    old_status,
                ),
            ]
        )
    rescale = desired != current
    if rescale:
        events.append(HPAEvent("Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}"))
        record_scale(history, current, desired, now)
        last_scale = rfc3339(now)
    return HPAPlan(desired, current, rescale, status(desired, current_metrics, last_scale), events, reason)


def _rescaled(now: datetime, old_status: JSON) -> JSON:
    return _condition(
        ABLE_TO_SCALE,
        "True",
        "SucceededRescale",
        "the HPA controller was able to update the target scale",
        now,
        old_status,
    )


def _scale_to_zero(
    zero: ZeroState | None,
    current: int,
    conditions: list[JSON],
    able: JSON,
    now: datetime,
    old_status: JSON,
) -> tuple[int, str] | None:
    """The scale-to-zero decision, or None to let the metrics decide (a running, busy target)."""
    if current == 0:
        if zero is not None and zero.wake_requested:
            conditions.extend(
                [
                    _rescaled(now, old_status),
                    _condition(
                        SCALING_ACTIVE,
                        "True",
                        "ScaledFromZero",
                        "a connection is waiting for a replica",
                        now,
                        old_status,
                    ),
                ]
            )
            return 1, "traffic arrived while scaled to zero"
        conditions.extend(
            [
                able,
                _condition(
                    SCALING_ACTIVE,
                    "True",
                    "ScaledToZero",
                    "the target is scaled to zero; the first request wakes it",
                    now,
                    old_status,
                ),
            ]
        )
        return 0, ""
    if zero is not None and zero.idle_seconds is not None and zero.idle_seconds >= zero.idle_limit:
        conditions.extend(
            [
                _rescaled(now, old_status),
                _condition(
                    SCALING_ACTIVE,
                    "True",
                    "ScaledToZero",
                    f"no traffic for {int(zero.idle_seconds)} s (idle limit {zero.idle_limit:g} s)",
                    now,
                    old_status,
                ),
            ]
        )
        return 0, f"no traffic for {int(zero.idle_seconds)} s"
    return None


def _metric_label(metric: Mapping[str, Any]) -> str:
    kind = metric.get("type")
    if kind == "Resource":
        source = metric.get("resource") or {}
        target = (source.get("target") or {}).get("type")
        what = "resource utilization (percentage of request)" if target == "Utilization" else "resource"
        return f"{source.get('name')} {what}"
    if kind == "Pods":
        return f"pods metric {((metric.get('pods') or {}).get('metric') or {}).get('name')}"
    if kind == "Object":
        source = metric.get("object") or {}
        return f"{((source.get('describedObject') or {}).get('kind') or '').lower()} metric " + str(
            (source.get("metric") or {}).get("name")
        )
    return "metric"
