"""Deployment rollout planning, as upstream's deployment controller (``pkg/controller/deployment``). Pure.

:func:`plan_deployment` takes a Deployment, the ReplicaSets of its namespace and a little about their pods,
plus ``now``, and returns the writes one sync makes: ReplicaSets to adopt, release, create, update (scale,
annotations) or delete, events, and the Deployment's new annotations + status (written together through the
``/status`` subresource, as upstream does so that a revision bump does not bump ``generation``).

It follows upstream's ``syncDeployment`` step by step — claim, paused conditions, scaling events with
proportional scaling, ``RollingUpdate`` (scale the new ReplicaSet up within ``maxSurge``, clean up unhealthy
old replicas, scale old ones down within ``maxUnavailable``) or ``Recreate``, revision annotations with
rollback history, ``revisionHistoryLimit`` clean-up, and the ``Available`` / ``Progressing`` conditions
that ``kubectl rollout status`` reads. Deliberate tightenings against ReplicaSet status that lags
its pods (upstream has these windows): for the surge bound a ReplicaSet counts as the largest of its
``spec.replicas``, ``status.replicas`` and its live pods in the pod cache (so a new pod is not created while
an old one is still to be deleted, or before a status caught up with pods just created); when scaling down
it counts as ``min(status.availableReplicas, spec.replicas)`` available pods, and old ReplicaSets never
scale down further than ``maxScaledDown`` (so a status not yet updated after one scale-down does not allow
a second).

Also here: the pod-template-hash (a stable FNV-1a hash of the template rendered with upstream's
``SafeEncodeString``; equal templates give equal hashes across restarts, the hash label itself is ignored),
``EqualIgnoreHash``, ``maxSurge``/``maxUnavailable`` resolution, and pod readiness/availability.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral.api.configrefs import CONFIG_OBSERVED
from corral.api.selectors import LabelSelector, SelectorError, selector_from_object
from corral.controllers.claiming import claim, controller_ref, is_terminating, owner_reference
from corral.util.clock import parse_rfc3339, rfc3339

JSON = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
# Deployment annotations that are not copied to its ReplicaSets (``annotationsToSkip``), plus Corral's
# observed config hashes, which must not come back from an old ReplicaSet on undo (see configpins).
SKIPPED_ANNOTATIONS = frozenset(
    {LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, ROLLBACK_TO, CONFIG_OBSERVED}
)
REVISION_HISTORY_CHARS = 2000  # kube-controller-manager's default --deployment-... history length

AVAILABLE = "Available"
PROGRESSING = "Progressing"
REPLICA_FAILURE = "ReplicaFailure"
# Reasons (``deploymentutil``).
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"

MAX_INT32 = 2**31 - 1


# ------------------------------------------------------------------------------------------------ pods


def pod_condition(pod: Mapping[str, Any], ctype: str) -> JSON | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """Counted by its controller: not finished and not being deleted (``FilterActivePods``)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    cond = pod_condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod last became Ready (the Ready condition's lastTransitionTime), if it is Ready."""
    cond = pod_condition(pod, "Ready")
    if cond is None or cond.get("status") != "True" or not cond.get("lastTransitionTime"):
        return None
    try:
        return parse_rfc3339(str(cond["lastTransitionTime"]))
    except ValueError:
        return None


def seconds_until_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> float | None:
    """0 when available now, the remaining seconds while Ready but younger than ``minReadySeconds``,
    None when not Ready. Available means Ready for strictly longer than ``minReadySeconds``
    (``podutil.IsPodAvailable``)."""
    if not is_pod_ready(pod):
        return None
    if min_ready_seconds <= 0:
        return 0.0
    since = ready_since(pod)
    if since is None:
        return float(min_ready_seconds)
    deadline = since + timedelta(seconds=min_ready_seconds)
    if deadline < now:
        return 0.0
    # Timestamps have second precision: "strictly before" holds one tick after the deadline.
    return (deadline - now).total_seconds() + 0.001


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    return seconds_until_available(pod, min_ready_seconds, now) == 0.0


# ------------------------------------------------------------------------------------------------ hashing

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode(text: str) -> str:
    """``rand.SafeEncodeString``: map each byte to consonants and digits that never spell words."""
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in text.encode())


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def _semantic(value: Any) -> Any:
    """Drop nulls, empty maps and empty lists, recursively: ``apiequality.Semantic`` holds them equal to
    absent fields (kubectl's rollback sends Go's ``creationTimestamp: null`` and ``resources: {}``)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _semantic(item)
            if item is None or item == {} or item == []:
                continue
            out[key] = item
        return out
    if isinstance(value, list):
        return [_semantic(item) for item in value]
    return value


def strip_hash_label(template: Mapping[str, Any]) -> JSON:
    """A semantic copy (see :func:`_semantic`) of a pod template without the pod-template-hash label."""
    out: JSON = _semantic(copy.deepcopy(dict(template)))
    labels = (out.get("metadata") or {}).get("labels")
    if isinstance(labels, dict) and HASH_LABEL in labels:
        del labels[HASH_LABEL]
        if not labels:
            del out["metadata"]["labels"]
            if not out["metadata"]:
                del out["metadata"]
    return out


def template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """The pod-template-hash of ``template`` (``controller.ComputeHash``).

    Upstream hashes a Go dump of the struct; here a canonical JSON rendering (sorted keys, nulls and empty
    maps/lists dropped) of the template without the hash label, then FNV-1a 32 plus the collision count as
    little-endian bytes, rendered like upstream (decimal, then ``SafeEncodeString``). Same template, same
    hash, on every run.
    """
    canonical = json.dumps(strip_hash_label(template), sort_keys=True, separators=(",", ":"), default=str)
    data = canonical.encode()
    if collision_count is not None:
        data += int(collision_count & 0xFFFFFFFF).to_bytes(4, "little")
    return safe_encode(str(fnv32a(data)))


def equal_ignore_hash(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """``EqualIgnoreHash``: two pod templates are semantically equal once the pod-template-hash label is
    ignored."""
    return strip_hash_label(a or {}) == strip_hash_label(b or {})


# ------------------------------------------------------------------------------------------------ surge


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``: an int, or ``"N%"`` of ``total`` rounded up or down."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = int(text[:-1])
        except ValueError:
            return 0
        scaled = percent * total / 100
        return int(math.ceil(scaled) if round_up else math.floor(scaled))
    try:
        return int(text)
    except ValueError:
        return 0


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """(surge, unavailable) for ``desired`` replicas: surge rounds up, unavailable down; both 0 → (0, 1)."""
    surge = scaled_value(max_surge if max_surge is not None else 0, desired, True)
    unavailable = scaled_value(max_unavailable if max_unavailable is not None else 0, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1  # quota may stop surging: let one old pod go instead of stalling
    return surge, unavailable


def _spec(obj: Mapping[str, Any]) -> JSON:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _status(obj: Mapping[str, Any]) -> JSON:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def is_rolling(d: Mapping[str, Any]) -> bool:
    return bool((_spec(d).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate")


def desired_replicas(d: Mapping[str, Any]) -> int:
    return _int(_spec(d).get("replicas", 1), 1)


def _rolling_params(d: Mapping[str, Any]) -> tuple[int, int]:
    rolling = (_spec(d).get("strategy") or {}).get("rollingUpdate") or {}
    return resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"), desired_replicas(d))


def max_surge(d: Mapping[str, Any]) -> int:
    if not is_rolling(d):
        return 0
    return _rolling_params(d)[0]


def max_unavailable(d: Mapping[str, Any]) -> int:
    replicas = desired_replicas(d)
    if not is_rolling(d) or replicas == 0:
        return 0
    return min(_rolling_params(d)[1], replicas)


# ------------------------------------------------------------------------------------------------ RS views


def rs_replicas(rs: Mapping[str, Any]) -> int:
    return _int(_spec(rs).get("replicas", 1), 1)


def rs_status(rs: Mapping[str, Any], key: str) -> int:
    return _int(_status(rs).get(key, 0))


def revision_of(obj: Mapping[str, Any]) -> int:
    return _int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION), 0)


def _created(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("creationTimestamp") or "")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def by_creation(rss: Sequence[JSON]) -> list[JSON]:
    return sorted(rss, key=lambda rs: (_created(rs), _name(rs)))


def find_new_replica_set(d: Mapping[str, Any], rss: Sequence[JSON]) -> JSON | None:
    """The oldest ReplicaSet whose template equals the Deployment's (ignoring the hash label)."""
    template = _spec(d).get("template")
    for rs in by_creation(rss):
        if equal_ignore_hash(_spec(rs).get("template"), template):
            return rs
    return None


@dataclass(frozen=True, slots=True)
class PodCounts:
    """What the pod cache says about one ReplicaSet's pods."""

    active: int = 0
    """Neither finished nor terminating."""
    running: int = 0
    """Not Succeeded/Failed, terminating ones included (Recreate waits for these)."""


NO_PODS = PodCounts()


def _surge_count(rs: Mapping[str, Any], pods: Mapping[str, PodCounts]) -> int:
    # Pods an RS has or will have. Its spec counts pods still to be created; its status and the pod cache
    # count pods still to be deleted after a scale-down, or created before a status update caught up.
    return max(rs_replicas(rs), rs_status(rs, "replicas"), pods.get(_uid(rs), NO_PODS).active)


def _available(rs: Mapping[str, Any]) -> int:
    return min(rs_status(rs, "availableReplicas"), rs_replicas(rs))


def new_rs_replicas(
    d: Mapping[str, Any],
    all_rss: Sequence[JSON],
    new_rs: Mapping[str, Any],
    pods: Mapping[str, PodCounts] | None = None,
) -> int:
    """``NewRSNewReplicas``: how far the new ReplicaSet may scale up now."""
    replicas = desired_replicas(d)
    if not is_rolling(d):
        return replicas
    current = sum(_surge_count(rs, pods or {}) for rs in all_rss)
    max_total = replicas + max_surge(d)
    if current >= max_total:
        return rs_replicas(new_rs)
    scale_up = min(max_total - current, replicas - rs_replicas(new_rs))
    return rs_replicas(new_rs) + max(0, scale_up)


# ------------------------------------------------------------------------------------------------ plan


@dataclass(slots=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(slots=True)
class RSWrite:
    """One ReplicaSet write. ``rs`` is the full object to send (creates carry no resourceVersion)."""

    op: str  # "create" | "update" | "delete"
    rs: JSON
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class DeploymentPlan:
    adopt: list[JSON] = field(default_factory=list)
    release: list[JSON] = field(default_factory=list)
    writes: list[RSWrite] = field(default_factory=list)
    deployment: JSON | None = None
    """The Deployment with new annotations and status, to write through ``/status``; None if unchanged."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    new_rs_name: str | None = None


def new_condition(ctype: str, status: str, reason: str, message: str, now: datetime) -> JSON:
    text = rfc3339(now)
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": text,
        "lastTransitionTime": text,
        "reason": reason,
        "message": message,
    }


def get_condition(status: Mapping[str, Any], ctype: str) -> JSON | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


def set_condition(status: JSON, cond: JSON) -> None:
    """``SetDeploymentCondition``: no-op for the same status and reason; keeps lastTransitionTime while the
    status holds; the changed condition moves to the end."""
    current = get_condition(status, cond["type"])
    if (
        current is not None
        and current.get("status") == cond["status"]
        and current.get("reason") == cond["reason"]
    ):
        return
    if current is not None and current.get("status") == cond["status"]:
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    remove_condition(status, cond["type"])
    status.setdefault("conditions", []).append(cond)


def remove_condition(status: JSON, ctype: str) -> None:
    conds = [
        c for c in status.get("conditions") or [] if not (isinstance(c, dict) and c.get("type") == ctype)
    ]
    if conds:
        status["conditions"] = conds
    else:
        status.pop("conditions", None)


def has_progress_deadline(d: Mapping[str, Any]) -> bool:
    value = _spec(d).get("progressDeadlineSeconds")
    return value is not None and _int(value, MAX_INT32) != MAX_INT32


def _omit_zero(status: JSON, *keys: str) -> JSON:
    for key in keys:
        if not status.get(key):
            status.pop(key, None)
    return status


def deployment_complete(d: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    replicas = desired_replicas(d)
    return (
        _int(status.get("updatedReplicas")) == replicas
        and _int(status.get("replicas")) == replicas
        and _int(status.get("availableReplicas")) == replicas
        and _int(status.get("observedGeneration")) >= _int((d.get("metadata") or {}).get("generation"))
    )


def deployment_progressing(d: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    old = _status(d)
    old_old = _int(old.get("replicas")) - _int(old.get("updatedReplicas"))
    new_old = _int(new.get("replicas")) - _int(new.get("updatedReplicas"))
    return (
        _int(new.get("updatedReplicas")) > _int(old.get("updatedReplicas"))
        or new_old < old_old
        or _int(new.get("readyReplicas")) > _int(old.get("readyReplicas"))
        or _int(new.get("availableReplicas")) > _int(old.get("availableReplicas"))
    )


def deployment_timed_out(d: Mapping[str, Any], status: Mapping[str, Any], now: datetime) -> bool:
    if not has_progress_deadline(d):
        return False
    cond = get_condition(status, PROGRESSING)
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    try:
        since = parse_rfc3339(str(cond.get("lastUpdateTime")))
    except ValueError:
        return False
    return since + timedelta(seconds=_int(_spec(d).get("progressDeadlineSeconds"))) < now


class _Sync:
    """One ``syncDeployment`` over in-memory copies; every write it would make is recorded in ``plan``."""

    def __init__(
        self,
        d: JSON,
        rss: list[JSON],
        pods: Mapping[str, PodCounts],
        now: datetime,
        plan: DeploymentPlan,
    ) -> None:
        self.original = d
        self.d = copy.deepcopy(d)
        self.rss = rss
        self.pods = pods
        self.now = now
        self.plan = plan
        self._writes: dict[str, RSWrite] = {}

    # ------------------------------------------------------------------ recording writes

    @property
    def name(self) -> str:
        return _name(self.d)

    def _record(self, rs: JSON, op: str, event: Event | None = None) -> None:
        key = _name(rs)
        write = self._writes.get(key)
        if write is None:
            write = self._writes[key] = RSWrite(op, rs)
            self.plan.writes.append(write)
        elif write.op == "update" and op == "delete":
            write.op = "delete"
        write.rs = rs
        if event is not None:
            write.events.append(event)

    def event(self, etype: str, reason: str, message: str) -> None:
        self.plan.events.append(Event(etype, reason, message))

    # ------------------------------------------------------------------ annotations

    def set_replicas_annotations(self, rs: JSON) -> bool:
        desired = desired_replicas(self.d)
        ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
        wanted = {DESIRED_REPLICAS: str(desired), MAX_REPLICAS: str(desired + max_surge(self.d))}
        changed = any(ann.get(k) != v for k, v in wanted.items())
        ann.update(wanted)
        return changed

    def copy_annotations(self, rs: JSON) -> bool:
        ann = rs.setdefault("metadata", {}).setdefault("annotations", {})
        changed = False
        for key, value in ((self.d.get("metadata") or {}).get("annotations") or {}).items():
            if key in SKIPPED_ANNOTATIONS or ann.get(key) == value:
                continue
            ann[key] = value
            changed = True
        return changed

    def set_new_rs_annotations(self, rs: JSON, new_revision: int, exists: bool) -> bool:
        """``SetNewReplicaSetAnnotations``: copy the Deployment's annotations, raise the revision (keeping
        the old one in revision-history when a rollback reuses this ReplicaSet)."""
        changed = self.copy_annotations(rs)
        ann = rs["metadata"]["annotations"]
        old_text = ann.get(REVISION)
        old_revision = _int(old_text, -1) if old_text is not None else 0
        if old_revision < 0:
            return changed  # unparsable revision: leave it alone, as upstream
        if old_revision < new_revision:
            ann[REVISION] = str(new_revision)
            changed = True
            if old_text is not None:
                history = ann.get(REVISION_HISTORY, "")
                entries = [e for e in history.split(",") if e] if history else []
                entries.append(old_text)
                while entries and len(",".join(entries)) > REVISION_HISTORY_CHARS:
                    entries.pop(0)
                ann[REVISION_HISTORY] = ",".join(entries)
        if not exists and self.set_replicas_annotations(rs):
            changed = True
        return changed

    def set_deployment_revision(self, revision: str) -> None:
        ann = self.d.setdefault("metadata", {}).setdefault("annotations", {})
        if ann.get(REVISION) != revision:
            ann[REVISION] = revision

    # ------------------------------------------------------------------ replica sets

    def old_and_new(self, create: bool) -> tuple[JSON | None, list[JSON]]:
        """``getAllReplicaSetsAndSyncRevision``."""
        new_rs = find_new_replica_set(self.d, self.rss)
        old = [rs for rs in self.rss if rs is not new_rs]
        new_rs = self.new_replica_set(new_rs, old, create)
        return new_rs, old

    def new_replica_set(self, existing: JSON | None, old: list[JSON], create: bool) -> JSON | None:
        max_old = max((revision_of(rs) for rs in old), default=0)
        new_revision = max_old + 1
        status = self.d.setdefault("status", {})
        if existing is not None:
            annotations_changed = self.set_new_rs_annotations(existing, new_revision, True)
            min_ready = _int(_spec(self.d).get("minReadySeconds"))
            if annotations_changed or _int(_spec(existing).get("minReadySeconds")) != min_ready:
                existing["spec"]["minReadySeconds"] = min_ready
                if not min_ready:
                    existing["spec"].pop("minReadySeconds", None)
                self._record(existing, "update")
                return existing  # the Deployment's revision follows on the next sync, as upstream
            rev = ((existing.get("metadata") or {}).get("annotations") or {}).get(REVISION, "")
            self.set_deployment_revision(rev)
            if has_progress_deadline(self.d) and get_condition(status, PROGRESSING) is None:
                set_condition(
                    status,
                    new_condition(
                        PROGRESSING,
                        "True",
                        FOUND_NEW_RS,
                        f'Found new replica set "{_name(existing)}"',
                        self.now,
                    ),
                )
            return existing
        if not create:
            return None
        template = copy.deepcopy(_spec(self.d).get("template") or {})
        collision = status.get("collisionCount")
        pod_hash = template_hash(template, _int(collision) if collision is not None else None)
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: pod_hash}
        selector = copy.deepcopy(_spec(self.d).get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: pod_hash}
        meta = self.d.get("metadata") or {}
        rs: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta.get('name')}-{pod_hash}",
                "namespace": meta.get("namespace"),
                "labels": dict(tmeta["labels"]),
                "annotations": {},
                "ownerReferences": [owner_reference(self.d, "apps/v1", "Deployment")],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }
        min_ready = _int(_spec(self.d).get("minReadySeconds"))
        if min_ready:
            rs["spec"]["minReadySeconds"] = min_ready
        replicas = new_rs_replicas(self.d, [*old, rs], rs, self.pods)
        rs["spec"]["replicas"] = replicas
        self.set_new_rs_annotations(rs, new_revision, False)
        event = (
            Event("Normal", "ScalingReplicaSet", f"Scaled up replica set {_name(rs)} from 0 to {replicas}")
            if replicas > 0
            else None
        )
        self._record(rs, "create", event)
        self.rss.append(rs)
        self.set_deployment_revision(str(new_revision))
        if has_progress_deadline(self.d):
            set_condition(
                status,
                new_condition(
                    PROGRESSING, "True", NEW_RS_CREATED, f'Created new replica set "{_name(rs)}"', self.now
                ),
            )
        return rs

    def scale(self, rs: JSON, new_scale: int, operation: str | None = None) -> bool:
        """``scaleReplicaSet``: size and replicas annotations; True when the size changed."""
        old_scale = rs_replicas(rs)
        size_changed = old_scale != new_scale
        desired = desired_replicas(self.d)
        ann = (rs.get("metadata") or {}).get("annotations") or {}
        annotations_stale = ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(
            desired + max_surge(self.d)
        )
        if not size_changed and not annotations_stale:
            return False
        rs.setdefault("spec", {})["replicas"] = new_scale
        self.set_replicas_annotations(rs)
        event = None
        if size_changed:
            op = operation or ("up" if new_scale > old_scale else "down")
            event = Event(
                "Normal",
                "ScalingReplicaSet",
                f"Scaled {op} replica set {_name(rs)} from {old_scale} to {new_scale}",
            )
        self._record(rs, "update", event)
        return size_changed

    def scale_and_record(self, rs: JSON, new_scale: int) -> bool:
        if rs_replicas(rs) == new_scale:
            return False
        return self.scale(rs, new_scale)

    # ------------------------------------------------------------------ strategies

    def rolling(self) -> None:
        new_rs, old = self.old_and_new(True)
        assert new_rs is not None
        all_rss = [*old, new_rs]
        if self.reconcile_new(all_rss, new_rs):
            self.sync_rollout_status(all_rss, new_rs)
            return
        active_old = [rs for rs in old if rs_replicas(rs) > 0]
        if self.reconcile_old(all_rss, active_old, new_rs):
            self.sync_rollout_status(all_rss, new_rs)
            return
        if deployment_complete(self.d, _status(self.d)):
            self.cleanup(old)
        self.sync_rollout_status(all_rss, new_rs)

    def reconcile_new(self, all_rss: list[JSON], new_rs: JSON) -> bool:
        replicas = desired_replicas(self.d)
        current = rs_replicas(new_rs)
        if current == replicas:
            return False
        if current > replicas:
            return self.scale_and_record(new_rs, replicas)
        return self.scale_and_record(new_rs, new_rs_replicas(self.d, all_rss, new_rs, self.pods))

    def reconcile_old(self, all_rss: list[JSON], old: list[JSON], new_rs: JSON) -> bool:
        if sum(rs_replicas(rs) for rs in old) == 0:
            return False
        all_pods = sum(rs_replicas(rs) for rs in all_rss)
        min_available = desired_replicas(self.d) - max_unavailable(self.d)
        new_unavailable = rs_replicas(new_rs) - _available(new_rs)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        cleaned = self.cleanup_unhealthy(old, max_scaled_down)
        scaled = self.scale_down_old(all_rss, old, max_scaled_down - cleaned)
        return cleaned + scaled > 0

    def cleanup_unhealthy(self, old: list[JSON], max_cleanup: int) -> int:
        """Scale old ReplicaSets down by their unavailable pods first: they would block the rollout."""
        total = 0
        for rs in by_creation(old):
            if total >= max_cleanup:
                break
            replicas = rs_replicas(rs)
            available = _available(rs)
            if replicas == 0 or replicas == available:
                continue
            count = min(max_cleanup - total, replicas - available)
            self.scale_and_record(rs, replicas - count)
            total += count
        return total

    def scale_down_old(self, all_rss: list[JSON], old: list[JSON], limit: int) -> int:
        min_available = desired_replicas(self.d) - max_unavailable(self.d)
        available = sum(_available(rs) for rs in all_rss)
        if available <= min_available or limit <= 0:
            return 0
        to_scale = min(available - min_available, limit)
        total = 0
        for rs in by_creation(old):
            if total >= to_scale:
                break
            replicas = rs_replicas(rs)
            if replicas == 0:
                continue
            count = min(replicas, to_scale - total)
            self.scale_and_record(rs, replicas - count)
            total += count
        return total

    def recreate(self) -> None:
        new_rs, old = self.old_and_new(False)
        all_rss = [*old, new_rs] if new_rs is not None else list(old)
        scaled_down = False
        for rs in old:
            if rs_replicas(rs) > 0 and self.scale_and_record(rs, 0):
                scaled_down = True
        if scaled_down:
            self.sync_rollout_status(all_rss, new_rs)
            return
        if self.old_pods_running(new_rs, old):
            self.sync_rollout_status(all_rss, new_rs)
            return
        if new_rs is None:
            new_rs, old = self.old_and_new(True)
            assert new_rs is not None
            all_rss = [*old, new_rs]
        self.scale_and_record(new_rs, desired_replicas(self.d))
        if deployment_complete(self.d, _status(self.d)):
            self.cleanup(old)
        self.sync_rollout_status(all_rss, new_rs)

    def old_pods_running(self, new_rs: JSON | None, old: list[JSON]) -> bool:
        if sum(rs_status(rs, "replicas") for rs in old) > 0:
            return True
        return any(self.pods.get(_uid(rs), NO_PODS).running > 0 for rs in old)

    # ------------------------------------------------------------------ scaling (paused / scaling event)

    def is_scaling_event(self) -> bool:
        new_rs, old = self.old_and_new(False)
        replicas = desired_replicas(self.d)
        for rs in [*old, *([new_rs] if new_rs is not None else [])]:
            if rs_replicas(rs) <= 0:
                continue
            ann = (rs.get("metadata") or {}).get("annotations") or {}
            if DESIRED_REPLICAS not in ann:
                continue
            if _int(ann[DESIRED_REPLICAS], -1) != replicas:
                return True
        return False

    def sync_scale(self) -> None:
        """``sync``: scale (proportionally during a rollout), clean up when paused, update status."""
        new_rs, old = self.old_and_new(False)
        self.proportional_scale(new_rs, old)
        if _spec(self.d).get("paused"):
            self.cleanup(old)
        all_rss = [*old, *([new_rs] if new_rs is not None else [])]
        self.d["status"] = self.calculate_status(all_rss, new_rs)

    def proportional_scale(self, new_rs: JSON | None, old: list[JSON]) -> None:
        replicas = desired_replicas(self.d)
        candidates = [*old, *([new_rs] if new_rs is not None else [])]
        active = [rs for rs in candidates if rs_replicas(rs) > 0]
        target: JSON | None = None
        if len(active) == 1:
            target = active[0]
        elif not active and candidates:
            target = new_rs if new_rs is not None else by_creation(old)[-1]
        if target is not None:
            # Also when the size already matches: a stale desired-replicas annotation would keep this a
            # "scaling event" forever and stall the rollout (upstream kubernetes/kubernetes#138036).
            self.scale(target, replicas)
            return
        if new_rs is not None and self.is_saturated(new_rs):
            for rs in old:
                if rs_replicas(rs) > 0:
                    self.scale_and_record(rs, 0)
            return
        if not is_rolling(self.d):
            return
        total = sum(rs_replicas(rs) for rs in active)
        allowed = replicas + max_surge(self.d) if replicas > 0 else 0
        to_add = allowed - total
        if to_add > 0:
            # Larger first; on equal sizes newer first when scaling up, older first when scaling down.
            ordered = sorted(active, key=lambda rs: (-rs_replicas(rs), _Reversed((_created(rs), _name(rs)))))
            operation = "up"
        elif to_add < 0:
            ordered = sorted(active, key=lambda rs: (-rs_replicas(rs), _created(rs), _name(rs)))
            operation = "down"
        else:
            ordered, operation = list(active), None
        added = 0
        sizes: dict[str, int] = {}
        for rs in ordered:
            if to_add != 0:
                proportion = self.proportion(rs, to_add, added)
                sizes[_name(rs)] = rs_replicas(rs) + proportion
                added += proportion
            else:
                sizes[_name(rs)] = rs_replicas(rs)
        for i, rs in enumerate(ordered):
            if i == 0 and to_add != 0:
                sizes[_name(rs)] = max(0, sizes[_name(rs)] + to_add - added)
            self.scale(rs, sizes[_name(rs)], operation)

    def proportion(self, rs: JSON, to_add: int, added: int) -> int:
        """``GetReplicaSetProportion``: this ReplicaSet's share of the replicas being added or removed."""
        if rs_replicas(rs) == 0 or to_add == 0 or to_add == added:
            return 0
        fraction = self.fraction(rs)
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    def fraction(self, rs: JSON) -> int:
        replicas = desired_replicas(self.d)
        if replicas == 0:
            return -rs_replicas(rs)
        max_now = replicas + max_surge(self.d)
        ann = (rs.get("metadata") or {}).get("annotations") or {}
        before = _int(ann.get(MAX_REPLICAS), 0)
        if before == 0:
            before = _int(_status(self.original).get("replicas"))
            if before == 0:
                return 0
        return _round_half_away(rs_replicas(rs) * max_now / before) - rs_replicas(rs)

    def is_saturated(self, rs: JSON) -> bool:
        replicas = desired_replicas(self.d)
        ann = (rs.get("metadata") or {}).get("annotations") or {}
        desired = _int(ann.get(DESIRED_REPLICAS), -1)
        return (
            rs_replicas(rs) == replicas
            and desired == replicas
            and rs_status(rs, "availableReplicas") == replicas
        )

    # ------------------------------------------------------------------ clean-up

    def cleanup(self, old: list[JSON]) -> None:
        """Delete the oldest empty ReplicaSets beyond ``revisionHistoryLimit``."""
        limit = _spec(self.d).get("revisionHistoryLimit")
        if limit is None:
            return
        alive = [rs for rs in old if not is_terminating(rs)]
        diff = len(alive) - _int(limit)
        if diff <= 0:
            return
        for rs in sorted(alive, key=lambda r: (revision_of(r), _created(r), _name(r)))[:diff]:
            meta = rs.get("metadata") or {}
            if (
                rs_status(rs, "replicas") != 0
                or rs_replicas(rs) != 0
                or _int(meta.get("generation")) > rs_status(rs, "observedGeneration")
            ):
                continue
            self._record(rs, "delete")

    # ------------------------------------------------------------------ status

    def calculate_status(self, all_rss: Sequence[JSON], new_rs: JSON | None) -> JSON:
        replicas = desired_replicas(self.d)
        available = sum(rs_status(rs, "availableReplicas") for rs in all_rss)
        total = sum(rs_replicas(rs) for rs in all_rss)
        old = _status(self.d)
        status: JSON = {
            "observedGeneration": _int((self.d.get("metadata") or {}).get("generation")),
            "replicas": sum(rs_status(rs, "replicas") for rs in all_rss),
            "updatedReplicas": rs_status(new_rs, "replicas") if new_rs is not None else 0,
            "readyReplicas": sum(rs_status(rs, "readyReplicas") for rs in all_rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available),
        }
        _omit_zero(
            status, "replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"
        )
        if old.get("conditions"):
            status["conditions"] = [dict(c) for c in old["conditions"]]
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if available >= replicas - max_unavailable(self.d):
            cond = new_condition(
                AVAILABLE,
                "True",
                MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.",
                self.now,
            )
        else:
            cond = new_condition(
                AVAILABLE,
                "False",
                MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.",
                self.now,
            )
        set_condition(status, cond)
        return status

    def sync_rollout_status(self, all_rss: Sequence[JSON], new_rs: JSON | None) -> None:
        status = self.calculate_status(all_rss, new_rs)
        d = self.d
        if not has_progress_deadline(d):
            remove_condition(status, PROGRESSING)
        current = get_condition(_status(d), PROGRESSING)
        complete_rollout = (
            _int(status.get("replicas")) == _int(status.get("updatedReplicas"))
            and current is not None
            and current.get("reason") == NEW_RS_AVAILABLE
        )
        if has_progress_deadline(d) and not complete_rollout:
            rs_name = _name(new_rs) if new_rs is not None else None
            if deployment_complete(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" has successfully progressed.'
                    if rs_name
                    else f'Deployment "{self.name}" has successfully progressed.'
                )
                set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, self.now))
            elif deployment_progressing(d, status):
                msg = (
                    f'ReplicaSet "{rs_name}" is progressing.'
                    if rs_name
                    else f'Deployment "{self.name}" is progressing.'
                )
                cond = new_condition(PROGRESSING, "True", RS_UPDATED, msg, self.now)
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    remove_condition(status, PROGRESSING)
                set_condition(status, cond)
            elif deployment_timed_out(d, status, self.now):
                msg = (
                    f'ReplicaSet "{rs_name}" has timed out progressing.'
                    if rs_name
                    else f'Deployment "{self.name}" has timed out progressing.'
                )
                set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT, msg, self.now))
        failure = self.replica_failure(all_rss, new_rs)
        if failure is not None:
            set_condition(status, failure)
        else:
            remove_condition(status, REPLICA_FAILURE)
        self.plan.requeue_after = self.stuck_requeue(current, status)
        d["status"] = status

    def replica_failure(self, all_rss: Sequence[JSON], new_rs: JSON | None) -> JSON | None:
        ordered = [new_rs, *all_rss] if new_rs is not None else list(all_rss)
        for rs in ordered:
            if rs is None:
                continue
            cond = get_condition(_status(rs), REPLICA_FAILURE)
            if cond is not None and cond.get("status") == "True":
                return {
                    "type": REPLICA_FAILURE,
                    "status": "True",
                    "lastUpdateTime": cond.get("lastTransitionTime") or rfc3339(self.now),
                    "lastTransitionTime": cond.get("lastTransitionTime") or rfc3339(self.now),
                    "reason": cond.get("reason", ""),
                    "message": cond.get("message", ""),
                }
        return None

    def stuck_requeue(self, current: Mapping[str, Any] | None, new_status: Mapping[str, Any]) -> float | None:
        """``requeueStuckDeployment``: look again once the progress deadline may have passed."""
        d = self.d
        if current is None:
            current = get_condition(new_status, PROGRESSING)
        if not has_progress_deadline(d) or current is None:
            return None
        if deployment_complete(d, new_status) or current.get("reason") == TIMED_OUT:
            return None
        try:
            since = parse_rfc3339(str(current.get("lastUpdateTime")))
        except ValueError:
            return None
        after = (
            since + timedelta(seconds=_int(_spec(d).get("progressDeadlineSeconds"))) - self.now
        ).total_seconds()
        return 0.5 if after < 1 else after + 1

    # ------------------------------------------------------------------ entry

    def check_paused_conditions(self) -> None:
        if not has_progress_deadline(self.d):
            return
        status = self.d.setdefault("status", {})
        cond = get_condition(status, PROGRESSING)
        if cond is not None and cond.get("reason") == TIMED_OUT:
            return
        paused_cond = cond is not None and cond.get("reason") == PAUSED
        if _spec(self.d).get("paused") and not paused_cond:
            set_condition(
                status, new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", self.now)
            )
        elif not _spec(self.d).get("paused") and paused_cond:
            set_condition(
                status, new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", self.now)
            )

    def run(self) -> None:
        d = self.d
        if is_terminating(d):
            new_rs, old = self.old_and_new(False)
            d["status"] = self.calculate_status([*old, *([new_rs] if new_rs else [])], new_rs)
            return
        self.check_paused_conditions()
        if _spec(d).get("paused") or self.is_scaling_event():
            self.sync_scale()
            return
        if is_rolling(d):
            self.rolling()
        else:
            self.recreate()


@dataclass(frozen=True, slots=True)
class _Reversed:
    """A sort key that orders its value descending."""

    value: tuple[str, str]

    def __lt__(self, other: _Reversed) -> bool:
        return other.value < self.value


def _round_half_away(value: float) -> int:
    """``integer.RoundToInt32``: round half away from zero."""
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def plan_deployment(
    d: Mapping[str, Any],
    replica_sets: Sequence[Mapping[str, Any]],
    now: datetime,
    pods: Mapping[str, PodCounts] | None = None,
) -> DeploymentPlan:
    """One sync of Deployment ``d``.

    ``replica_sets``: the ReplicaSets of its namespace (it claims its own). ``pods``: per ReplicaSet uid,
    what the pod cache shows of its pods (missing means none). Nothing passed in is modified.
    """
    plan = DeploymentPlan()
    d_copy = copy.deepcopy(dict(d))
    selector_obj = _spec(d_copy).get("selector")
    try:
        selector = selector_from_object(selector_obj)
    except SelectorError as exc:
        plan.events.append(Event("Warning", "InvalidSelector", f"invalid label selector: {exc}"))
        return plan
    if _selects_everything(selector_obj, selector):
        plan.events.append(
            Event(
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
        )
        status = _status(d_copy)
        generation = _int((d_copy.get("metadata") or {}).get("generation"))
        if _int(status.get("observedGeneration")) < generation:
            d_copy.setdefault("status", {})["observedGeneration"] = generation
            plan.deployment = d_copy
        return plan
    namespace = (d_copy.get("metadata") or {}).get("namespace")
    candidates = [
        copy.deepcopy(dict(rs))
        for rs in replica_sets
        if (rs.get("metadata") or {}).get("namespace") == namespace
    ]
    claimed = claim(d_copy, selector, candidates)
    plan.adopt, plan.release = claimed.adopt, claimed.release
    if claimed.adopt:
        ref = owner_reference(d_copy, "apps/v1", "Deployment")
        for rs in claimed.owned:
            if controller_ref(rs) is None:
                rs["metadata"]["ownerReferences"] = [*(rs["metadata"].get("ownerReferences") or []), ref]
    sync = _Sync(d_copy, claimed.owned, pods or {}, now, plan)
    sync.run()
    new_rs = find_new_replica_set(sync.d, sync.rss)
    plan.new_rs_name = _name(new_rs) if new_rs is not None else None
    if _changed(sync.d, d):
        plan.deployment = sync.d
    return plan


def _selects_everything(selector_obj: Any, selector: LabelSelector) -> bool:
    return (
        isinstance(selector_obj, dict)
        and not selector_obj.get("matchLabels")
        and not selector_obj.get("matchExpressions")
        and selector.empty
    )


def _changed(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    old_ann = (old.get("metadata") or {}).get("annotations") or {}
    new_ann = (new.get("metadata") or {}).get("annotations") or {}
    return bool(old_ann != new_ann or _status(new) != _status(old))
