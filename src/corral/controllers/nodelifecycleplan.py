"""Node lifecycle planning (pure): node health from heartbeats, NoExecute/NoSchedule taints, pods marked
NotReady, and taint-based eviction — upstream's node lifecycle controller (``monitorNodeHealth``,
``doNoScheduleTaintingPass``, ``doNoExecuteTaintingPass``, ``MarkPodsNotReady``) and taint-eviction
controller in one planner.

Input is one node, the controller-local time its agent was last heard from (``HeartbeatTracker``), the pods
bound to it, ``now`` and a ``LifecycleConfig``; output is a ``NodePlan`` of writes. No IO, no clock: the
controller (``nodelifecycle.py``) reads the caches, calls ``plan_node`` and applies the plan.

Rules, in the order the controller applies them:

1. **Health.** When the agent has not been heard from for ``grace_period`` seconds (Lease ``renewTime`` or
   the Ready condition's ``lastHeartbeatTime`` changing, as seen by the controller's clock, so clock skew
   between machines does not matter), every node condition the agent posts goes ``Unknown`` with reason
   ``NodeStatusUnknown`` and message ``Kubelet stopped posting node status.`` (``NodeStatusNeverUpdated`` /
   ``Kubelet never posted node status.`` for a condition it never posted). Only the agent sets them back.
2. **Taints** follow the Ready condition: ``Unknown`` → ``node.kubernetes.io/unreachable``, ``False`` →
   ``node.kubernetes.io/not-ready``, each with effect NoExecute (``timeAdded`` set, eviction counts from
   it) and NoSchedule; ``True`` removes them. Pressure conditions and ``spec.unschedulable`` get their
   NoSchedule taints as upstream's TaintNodesByCondition does. Taints of other owners are kept.
3. **Pods NotReady.** While the node is ``Unknown`` its pods get the Ready condition ``False`` at once, so
   the endpoints controller drops them. (Upstream also does this for ``Ready=False``; there the agent is
   alive and reports its pods' readiness itself, so Corral leaves them to it.)
4. **Eviction.** A pod on a node with a NoExecute taint is deleted when its toleration runs out: the
   smallest ``tolerationSeconds`` over its tolerations matching the node's NoExecute taints, counted from
   the taint's ``timeAdded`` (or the pod's creation, when later). A toleration without ``tolerationSeconds``
   tolerates for ever. A taint the pod has no toleration for uses ``default_toleration_seconds`` (upstream
   evicts at once, but there admission gives every pod tolerations for the two node taints; Corral's API
   defaulting does too, with the same cluster default, so this covers pods stored before).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral.util.clock import parse_rfc3339, rfc3339

JSON = dict[str, Any]

TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
PRESSURE_TAINTS = {
    "MemoryPressure": "node.kubernetes.io/memory-pressure",
    "DiskPressure": "node.kubernetes.io/disk-pressure",
    "PIDPressure": "node.kubernetes.io/pid-pressure",
}
NO_EXECUTE, NO_SCHEDULE = "NoExecute", "NoSchedule"
# Every taint key this controller owns; taints with other keys are never touched.
OWNED_TAINT_KEYS = frozenset(
    {TAINT_UNREACHABLE, TAINT_NOT_READY, TAINT_UNSCHEDULABLE, *PRESSURE_TAINTS.values()}
)
AGENT_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
EVICTION_REASON = "TaintManagerEviction"
NODE_NOT_READY_REASON = "NodeNotReady"

DEFAULT_GRACE_PERIOD = 10.0
DEFAULT_TOLERATION_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    grace_period: float = DEFAULT_GRACE_PERIOD
    """Seconds without a heartbeat before a node's conditions go Unknown (upstream: 40 s)."""
    default_toleration_seconds: float = DEFAULT_TOLERATION_SECONDS
    """Eviction delay for a pod without a toleration of the node taint (upstream's admission: 300 s)."""


@dataclass(frozen=True, slots=True)
class Eviction:
    pod: JSON
    message: str


@dataclass(slots=True)
class NodePlan:
    status: JSON | None = None
    """The node with its new ``status`` (write through ``/status``), or None."""
    taints: JSON | None = None
    """The node with its new ``spec.taints`` (write the main resource), or None."""
    pods_not_ready: list[JSON] = field(default_factory=list)
    """Pods with their Ready condition set to False (write through ``/status``)."""
    evictions: list[Eviction] = field(default_factory=list)
    requeue_after: float | None = None
    """Seconds until something changes by time alone (a grace period or a toleration runs out)."""


# ------------------------------------------------------------------------------------------ small readers


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def node_condition(node: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == ctype:
            return cond
    return None


def ready_status(node: Mapping[str, Any]) -> str:
    """``True``, ``False`` or ``Unknown`` (a node that never posted a Ready condition is Unknown)."""
    cond = node_condition(node, "Ready")
    status = cond.get("status") if cond is not None else None
    return status if status in ("True", "False") else "Unknown"


def _posted_ready(node: Mapping[str, Any]) -> str:
    """Like ``ready_status``, but a node without a Ready condition yet (just registered) counts as Ready
    for taints and pods: it becomes Unknown through the grace period like any silent node."""
    return ready_status(node) if node_condition(node, "Ready") is not None else "True"


def heartbeat_signature(node: Mapping[str, Any], lease: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What changes whenever the agent reports: its Lease renewal and its Ready heartbeat."""
    renew = ((lease or {}).get("spec") or {}).get("renewTime")
    ready = node_condition(node, "Ready") or {}
    return (_meta(node).get("uid"), renew, ready.get("lastHeartbeatTime"))


class HeartbeatTracker:
    """When each node's agent was last heard from, by the controller's clock (upstream's probeTimestamp).

    A node seen for the first time — a new node, or every node when the controller starts — gets a full
    grace period from that moment, as upstream does after a controller restart.
    """

    def __init__(self) -> None:
        self._seen: dict[str, tuple[tuple[Any, ...], datetime]] = {}

    def observe(
        self, name: str, node: Mapping[str, Any], lease: Mapping[str, Any] | None, now: datetime
    ) -> datetime:
        signature = heartbeat_signature(node, lease)
        previous = self._seen.get(name)
        if previous is not None and previous[0] == signature:
            return previous[1]
        self._seen[name] = (signature, now)
        return now

    def knows(self, name: str) -> bool:
        return name in self._seen

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)


# ------------------------------------------------------------------------------------------ tolerations


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``Toleration.ToleratesTaint``: effect (empty matches all), key (empty + Exists matches all), value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool(key) and (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def toleration_seconds(
    tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any], default: float
) -> float:
    """How long a pod tolerates ``taint``: the smallest ``tolerationSeconds`` of its matching tolerations
    (``math.inf`` if one has none; negative counts as 0, as upstream), or ``default`` if none matches."""
    matching = [t for t in tolerations if tolerates(t, taint)]
    if not matching:
        return default
    best = math.inf
    for toleration in matching:
        seconds = toleration.get("tolerationSeconds")
        if isinstance(seconds, int | float) and not isinstance(seconds, bool):
            best = min(best, max(0.0, float(seconds)))
    return best


def _pod_tolerations(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, Mapping)]


def eviction_deadline(
    pod: Mapping[str, Any], taints: Iterable[Mapping[str, Any]], default: float
) -> datetime | None:
    """When ``pod`` must leave a node with these NoExecute ``taints`` (None: it tolerates them for ever)."""
    created = _time(_meta(pod).get("creationTimestamp"))
    deadline: datetime | None = None
    for taint in taints:
        seconds = toleration_seconds(_pod_tolerations(pod), taint, default)
        if math.isinf(seconds):
            continue
        start = _time(taint.get("timeAdded")) or created
        if start is None:
            continue
        if created is not None and created > start:
            start = created  # a pod bound after the taint appeared gets its whole toleration
        moment = start + timedelta(seconds=seconds)
        deadline = moment if deadline is None else min(deadline, moment)
    return deadline


# ------------------------------------------------------------------------------------------ the planner


def _unknown_conditions(node: Mapping[str, Any], now: datetime) -> list[JSON] | None:
    """The node's conditions with every agent condition set to Unknown; None if nothing changes."""
    conditions = [
        copy.deepcopy(c) for c in (node.get("status") or {}).get("conditions") or [] if isinstance(c, dict)
    ]
    by_type = {c.get("type"): c for c in conditions}
    created = _meta(node).get("creationTimestamp") or rfc3339(now)
    changed = False
    for ctype in AGENT_CONDITIONS:
        cond = by_type.get(ctype)
        if cond is None:
            conditions.append(
                {
                    "type": ctype,
                    "status": "Unknown",
                    "reason": "NodeStatusNeverUpdated",
                    "message": "Kubelet never posted node status.",
                    "lastHeartbeatTime": created,
                    "lastTransitionTime": rfc3339(now),
                }
            )
            changed = True
        elif cond.get("status") != "Unknown":
            cond["status"] = "Unknown"
            cond["reason"] = "NodeStatusUnknown"
            cond["message"] = "Kubelet stopped posting node status."
            cond["lastTransitionTime"] = rfc3339(now)
            changed = True
    return conditions if changed else None


def desired_taints(node: Mapping[str, Any], now: datetime) -> list[JSON]:
    """The node's taints with the owned ones made to match its conditions (others kept, in order)."""
    current = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, Mapping)]
    wanted: list[tuple[str, str]] = []
    ready = _posted_ready(node)
    if ready == "Unknown":
        wanted += [(TAINT_UNREACHABLE, NO_EXECUTE), (TAINT_UNREACHABLE, NO_SCHEDULE)]
    elif ready == "False":
        wanted += [(TAINT_NOT_READY, NO_EXECUTE), (TAINT_NOT_READY, NO_SCHEDULE)]
    for ctype, key in PRESSURE_TAINTS.items():
        cond = node_condition(node, ctype)
        if cond is not None and cond.get("status") == "True":
            wanted.append((key, NO_SCHEDULE))
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append((TAINT_UNSCHEDULABLE, NO_SCHEDULE))
    result: list[JSON] = []
    for taint in current:
        pair = (taint.get("key"), taint.get("effect"))
        if taint.get("key") not in OWNED_TAINT_KEYS or pair in wanted:
            result.append(dict(taint))
    have = {(t.get("key"), t.get("effect")) for t in result}
    for key, effect in wanted:
        if (key, effect) not in have:
            added: JSON = {"key": key, "effect": effect}
            if effect == NO_EXECUTE:
                added["timeAdded"] = rfc3339(now)
            result.append(added)
    return result


def _mark_not_ready(pod: Mapping[str, Any], now: datetime) -> JSON | None:
    """The pod with Ready=False (upstream ``MarkPodsNotReady``); None if it is not Ready=True already."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    if not any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") != "False" for c in conditions
    ):
        return None
    updated = copy.deepcopy(dict(pod))
    for cond in updated["status"]["conditions"]:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            cond["status"] = "False"
            cond["lastTransitionTime"] = rfc3339(now)
    return updated


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())


def plan_node(
    node: Mapping[str, Any],
    last_heard: datetime,
    pods: Sequence[Mapping[str, Any]],
    now: datetime,
    config: LifecycleConfig = LifecycleConfig(),
) -> NodePlan:
    """Plan one node: status first (the taints and pods follow the condition the status write leaves)."""
    plan = NodePlan()
    waits: list[float] = []
    stale_at = last_heard + timedelta(seconds=config.grace_period)
    if now >= stale_at:
        conditions = _unknown_conditions(node, now)
        if conditions is not None:
            updated = copy.deepcopy(dict(node))
            updated.setdefault("status", {})["conditions"] = conditions
            plan.status = updated
            node = updated
    else:
        waits.append(_seconds(stale_at - now))

    taints = desired_taints(node, now)
    current = [dict(t) for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, Mapping)]
    if taints != current:
        updated = copy.deepcopy(dict(node))
        updated.setdefault("spec", {})["taints"] = taints
        if not taints:
            del updated["spec"]["taints"]
        plan.taints = updated

    if _posted_ready(node) == "Unknown":
        for pod in pods:
            marked = _mark_not_ready(pod, now)
            if marked is not None:
                plan.pods_not_ready.append(marked)

    no_execute = [t for t in taints if t.get("effect") == NO_EXECUTE]
    if no_execute:
        for pod in pods:
            if _meta(pod).get("deletionTimestamp"):
                continue  # already going; the agent (when back) finishes it
            deadline = eviction_deadline(pod, no_execute, config.default_toleration_seconds)
            if deadline is None:
                continue
            if now >= deadline:
                meta = _meta(pod)
                plan.evictions.append(
                    Eviction(
                        dict(pod), f"Marking for deletion Pod {meta.get('namespace')}/{meta.get('name')}"
                    )
                )
            else:
                waits.append(_seconds(deadline - now))
    plan.requeue_after = min(waits) if waits else None
    return plan
