"""PodDisruptionBudget arithmetic: which pods a budget covers and the status it should have. Pure logic.

Mirrors upstream's disruption controller (``pkg/controller/disruption``) and the helpers the eviction
subresource shares with it (``component-helpers/apps/poddisruptionbudget``):

- A budget covers the pods of its namespace that its ``spec.selector`` matches. In ``policy/v1`` an empty
  selector (``{}``) matches every pod of the namespace and a missing (or malformed) one matches none; the
  eviction subresource and this controller use the same rule (:func:`selects`).
- **Expected pods** (``status.expectedPods``): with an integer ``minAvailable``, the number of covered pods;
  with a percentage or with ``maxUnavailable``, the sum of the scales of the pods' controllers (a
  Deployment's ``spec.replicas`` for pods of its ReplicaSets, else the ReplicaSet's). Covered pods without a
  controller are reported as *unmanaged* and not counted; a controller that has no scale (a Job) fails the
  computation, which then fails safe (``disruptionsAllowed: 0``, condition reason ``SyncFailed``).
- **Desired healthy**: ``minAvailable`` (percentages of expected, rounded up), or expected minus
  ``maxUnavailable`` (percentages rounded up), never below 0.
- **Current healthy**: covered pods that are Ready, not being deleted, and not recorded in
  ``status.disruptedPods`` within the last :data:`DELETION_TIMEOUT` (an eviction the API server has
  granted but whose deletion the controller has not seen yet).
- ``disruptionsAllowed = max(0, currentHealthy - desiredHealthy)``, and 0 while ``expectedPods`` is 0.
- The ``DisruptionAllowed`` condition: True/``SufficientPods`` when disruptions are allowed, else
  False/``InsufficientPods`` (``SyncFailed`` in the fail-safe case), as ``apimeta.SetStatusCondition``.

The controller (``disruption.py``) feeds informer caches in and writes what comes out; the eviction
handler (``apiserver/eviction.py``) uses :func:`selects`, :func:`is_pod_ready` and :func:`with_condition`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral.api.selectors import SelectorError, format_selector_object, selector_from_object
from corral.util.clock import parse_rfc3339, rfc3339

JSON = dict[str, Any]

DELETION_TIMEOUT = timedelta(minutes=2)
"""How long a granted eviction keeps its pod out of currentHealthy (upstream ``DeletionTimeout``)."""

CONDITION_DISRUPTION_ALLOWED = "DisruptionAllowed"
REASON_SUFFICIENT_PODS = "SufficientPods"
REASON_INSUFFICIENT_PODS = "InsufficientPods"
REASON_SYNC_FAILED = "SyncFailed"


class ExpectedCountError(Exception):
    """The expected pod count cannot be computed (a pod's controller is missing or has no scale)."""


ControllerScale = tuple[str, int]
"""(uid, replicas) of the workload whose scale counts for a pod: Deployment, else ReplicaSet."""

ScaleLookup = Callable[[str, Mapping[str, Any]], ControllerScale | None]
"""``(namespace, controllerRef) → scale``; None when the controller does not exist (any more)."""


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _meta(obj: Mapping[str, Any]) -> JSON:
    return _d(obj.get("metadata"))


# ------------------------------------------------------------------------------------------ selection


def selects(pdb: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether ``pdb`` covers ``pod``: same namespace, and its selector (present and valid) matches."""
    if _meta(pdb).get("namespace") != _meta(pod).get("namespace"):
        return False
    spec = _d(pdb.get("spec"))
    raw = spec.get("selector")
    if raw is None or not isinstance(raw, dict):
        return False
    try:
        selector = selector_from_object(raw)
    except SelectorError:
        return False
    return selector.matches(_meta(pod).get("labels") or {})


def budgets_for_pod(pdbs: Iterable[Mapping[str, Any]], pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The budgets that cover ``pod``, sorted by name (the eviction refuses more than one)."""
    found = [pdb for pdb in pdbs if selects(pdb, pod)]
    return sorted(found, key=lambda pdb: str(_meta(pdb).get("name", "")))


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in _d(pod.get("status")).get("conditions") or []:
        if _d(cond).get("type") == "Ready":
            return _d(cond).get("status") == "True"
    return False


def _deleting(pod: Mapping[str, Any]) -> bool:
    return bool(_meta(pod).get("deletionTimestamp"))


def _controller_ref(pod: Mapping[str, Any]) -> JSON | None:
    for ref in _meta(pod).get("ownerReferences") or []:
        if _d(ref).get("controller") is True:
            return _d(ref)
    return None


# ------------------------------------------------------------------------------------------ counting


def scaled_value(value: Any, total: int, round_up: bool = True) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an integer as is, ``"N%"`` of ``total``."""
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: invalid type: {value!r}")
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not value.endswith("%") or not value[:-1].isdigit():
        raise ValueError(f"invalid value for IntOrString: invalid value {value!r}")
    exact = int(value[:-1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def expected_scale(
    namespace: str, pods: Sequence[Mapping[str, Any]], scale_of: ScaleLookup
) -> tuple[int, list[str]]:
    """Sum of the scales of the covered pods' controllers, and the names of pods without a controller."""
    scales: dict[str, int] = {}
    unmanaged: list[str] = []
    for pod in pods:
        ref = _controller_ref(pod)
        if ref is None:
            unmanaged.append(str(_meta(pod).get("name", "")))
            continue
        if str(ref.get("uid", "")) in scales:
            continue
        found = scale_of(namespace, ref)
        if found is None:
            raise ExpectedCountError(f'found no controllers for pod "{_meta(pod).get("name", "")}"')
        uid, replicas = found
        scales[uid] = replicas
    return sum(scales.values()), unmanaged


def expected_counts(
    pdb: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], scale_of: ScaleLookup
) -> tuple[int, int, list[str]]:
    """(expectedPods, desiredHealthy, unmanaged pod names), as upstream's ``getExpectedPodCount``."""
    spec = _d(pdb.get("spec"))
    namespace = str(_meta(pdb).get("namespace", ""))
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    try:
        if max_unavailable is not None:
            expected, unmanaged = expected_scale(namespace, pods, scale_of)
            desired = max(0, expected - scaled_value(max_unavailable, expected))
            return expected, desired, unmanaged
        if min_available is not None:
            if isinstance(min_available, int) and not isinstance(min_available, bool):
                return len(pods), min_available, []
            expected, unmanaged = expected_scale(namespace, pods, scale_of)
            return expected, scaled_value(min_available, expected), unmanaged
    except ValueError as exc:
        raise ExpectedCountError(str(exc)) from exc
    # Neither is set (upstream accepts that): nothing is expected, so nothing may be disrupted.
    return 0, 0, []


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Disrupted:
    still_pending: dict[str, str]
    """Pod name → eviction time, for evictions granted less than DELETION_TIMEOUT ago."""
    recheck_at: datetime | None
    """When the oldest pending entry expires (the controller looks again then)."""
    overdue: list[str]
    """Pods evicted longer than DELETION_TIMEOUT ago that still exist undeleted."""


def build_disrupted(pdb: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime) -> Disrupted:
    """upstream ``buildDisruptedPodMap``: keep entries of covered, undeleted pods still within the timeout."""
    recorded = _d(_d(pdb.get("status")).get("disruptedPods"))
    pending: dict[str, str] = {}
    overdue: list[str] = []
    recheck: datetime | None = None
    for pod in pods:
        name = str(_meta(pod).get("name", ""))
        if _deleting(pod) or name not in recorded:
            continue
        when = _time(recorded[name])
        if when is None:
            continue
        expires = when + DELETION_TIMEOUT
        if expires < now:
            overdue.append(name)
            continue
        pending[name] = rfc3339(when)
        if recheck is None or expires < recheck:
            recheck = expires
    return Disrupted(pending, recheck, overdue)


def count_healthy(pods: Sequence[Mapping[str, Any]], disrupted: Mapping[str, str], now: datetime) -> int:
    healthy = 0
    for pod in pods:
        if _deleting(pod):
            continue
        when = _time(disrupted.get(str(_meta(pod).get("name", ""))))
        if when is not None and when + DELETION_TIMEOUT > now:
            continue  # evicted, deletion on its way
        if is_pod_ready(pod):
            healthy += 1
    return healthy


# ------------------------------------------------------------------------------------------ status


def with_condition(
    conditions: Any, status: str, reason: str, message: str, observed_generation: int, now: datetime
) -> list[JSON]:
    """``apimeta.SetStatusCondition`` for ``DisruptionAllowed``: a new list, the others kept as they were.

    ``lastTransitionTime`` moves only when the status flips; reason, message and generation always follow.
    """
    out: list[JSON] = []
    found = False
    for cond in conditions if isinstance(conditions, list) else []:
        cond = _d(cond)
        if cond.get("type") != CONDITION_DISRUPTION_ALLOWED:
            out.append(dict(cond))
            continue
        found = True
        since = cond.get("lastTransitionTime") if cond.get("status") == status else None
        out.append(_condition(status, reason, message, observed_generation, since or rfc3339(now)))
    if not found:
        out.append(_condition(status, reason, message, observed_generation, rfc3339(now)))
    return out


def _condition(status: str, reason: str, message: str, generation: int, since: str) -> JSON:
    # metav1.Condition field order; observedGeneration is omitempty, message is not.
    cond: JSON = {"type": CONDITION_DISRUPTION_ALLOWED, "status": status}
    if generation:
        cond["observedGeneration"] = generation
    cond.update({"lastTransitionTime": since, "reason": reason, "message": message})
    return cond


def allowed_condition(allowed: int) -> tuple[str, str]:
    """(status, reason) of ``DisruptionAllowed`` for a number of allowed disruptions."""
    return ("True", REASON_SUFFICIENT_PODS) if allowed > 0 else ("False", REASON_INSUFFICIENT_PODS)


def _conditions_up_to_date(status: Mapping[str, Any], generation: int) -> bool:
    """upstream ``ConditionsAreUpToDate``."""
    if status.get("observedGeneration", 0) != generation:
        return False
    for cond in status.get("conditions") or []:
        cond = _d(cond)
        if cond.get("type") == CONDITION_DISRUPTION_ALLOWED:
            wanted = allowed_condition(int(status.get("disruptionsAllowed") or 0))
            return (cond.get("status"), cond.get("reason")) == wanted
    return False


def _status_body(
    generation: int,
    disrupted: Mapping[str, str],
    allowed: int,
    healthy: int,
    desired: int,
    expected: int,
    conditions: list[JSON],
) -> JSON:
    # PodDisruptionBudgetStatus field order; observedGeneration and disruptedPods are omitempty.
    body: JSON = {}
    if generation:
        body["observedGeneration"] = generation
    if disrupted:
        body["disruptedPods"] = dict(disrupted)
    body.update(
        {
            "disruptionsAllowed": allowed,
            "currentHealthy": healthy,
            "desiredHealthy": desired,
            "expectedPods": expected,
            "conditions": conditions,
        }
    )
    return body


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """An Event to record: on the budget itself, or on one of its pods (``pod`` set)."""

    type: str
    reason: str
    message: str
    pod: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    status: JSON | None
    """The new ``status`` to write, or None when the stored one is already right."""
    recheck_after: float | None = None
    """Seconds until a pending disruption expires and the budget must be looked at again."""
    events: list[BudgetEvent] = field(default_factory=list)


def plan_budget(
    pdb: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], now: datetime, scale_of: ScaleLookup
) -> BudgetPlan:
    """The status ``pdb`` should have given the pods of its namespace (upstream ``trySync``)."""
    covered = [pod for pod in pods if selects(pdb, pod)]
    status = _d(pdb.get("status"))
    generation = int(_meta(pdb).get("generation") or 0)
    events: list[BudgetEvent] = []
    if not covered:
        events.append(BudgetEvent("Normal", "NoPods", "No matching pods found"))
    try:
        expected, desired, unmanaged = expected_counts(pdb, covered, scale_of)
    except ExpectedCountError as exc:
        message = f"Failed to calculate the number of expected pods: {exc}"
        events.append(BudgetEvent("Warning", "CalculateExpectedPodCountFailed", message))
        return BudgetPlan(fail_safe(pdb, str(exc), now), None, events)
    if unmanaged:
        selector = format_selector_object(_d(pdb.get("spec")).get("selector"))
        events.append(
            BudgetEvent(
                "Warning",
                "UnmanagedPods",
                f"Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be "
                "unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may "
                'result in undefined behavior. To account for these pods please set ".spec.minAvailable" '
                "field of the PDB to an integer value.",
            )
        )
    disrupted = build_disrupted(pdb, covered, now)
    namespace = _meta(pdb).get("namespace", "")
    for name in disrupted.overdue:
        # Upstream prints the namespace twice here (a bug kept for identical messages).
        message = f"Pod was expected by PDB {namespace}/{namespace} to be deleted but it wasn't"
        events.append(BudgetEvent("Warning", "NotDeleted", message, pod=name))
    healthy = count_healthy(covered, disrupted.still_pending, now)
    allowed = healthy - desired
    if expected <= 0 or allowed <= 0:
        allowed = 0
    recheck = None
    if disrupted.recheck_at is not None:
        recheck = max(0.0, (disrupted.recheck_at - now).total_seconds())
    unchanged = (
        status.get("currentHealthy") == healthy
        and status.get("desiredHealthy") == desired
        and status.get("expectedPods") == expected
        and status.get("disruptionsAllowed") == allowed
        and _d(status.get("disruptedPods")) == disrupted.still_pending
        and _conditions_up_to_date(status, generation)
    )
    if unchanged:
        # An overdue entry is dropped from disruptedPods, so "unchanged" has no NotDeleted event to lose;
        # NoPods / UnmanagedPods are reported with status writes only, not on every pod event.
        return BudgetPlan(None, recheck)
    cond_status, reason = allowed_condition(allowed)
    conditions = with_condition(status.get("conditions"), cond_status, reason, "", generation, now)
    body = _status_body(generation, disrupted.still_pending, allowed, healthy, desired, expected, conditions)
    return BudgetPlan(body, recheck, events)


def fail_safe(pdb: Mapping[str, Any], error: str, now: datetime) -> JSON:
    """upstream ``failSafe``: keep the counts, allow no disruption, say why in the condition."""
    status = dict(_d(pdb.get("status")))
    status["disruptionsAllowed"] = 0
    for key in ("currentHealthy", "desiredHealthy", "expectedPods"):
        status.setdefault(key, 0)
    generation = int(status.get("observedGeneration") or 0)
    status["conditions"] = with_condition(
        status.get("conditions"), "False", REASON_SYNC_FAILED, error, generation, now
    )
    return status
