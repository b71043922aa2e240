"""ReplicaSet controller: keep ``spec.replicas`` active pods that match the selector. After upstream's
``pkg/controller/replicaset``.

Pure part (:func:`plan_replica_set`, :func:`replica_set_status`, :func:`pods_to_delete`): claim pods (adopt
matching orphans, release owned pods whose labels stopped matching), decide how many pods to create or which
to delete — not-ready before ready, recently ready before long ready, more restarts first, newest first, as
upstream's ``ActivePodsWithRanks`` — and compute the status (replicas, fullyLabeled, ready, available after
``minReadySeconds``, observedGeneration, the ReplicaFailure condition).

IO part (:class:`ReplicaSetController`): reads the informer caches, sends the patches, creates (slow-start
batches, generateName ``<rs>-``) and deletes, records ``SuccessfulCreate`` / ``SuccessfulDelete`` events, and
writes status. *Expectations* keep a burst of creates or deletes from being repeated before the pod informer
has seen them: a ReplicaSet is not managed again until every pod it created is in the cache (or the cache's
resourceVersion has passed the create) and every pod it deleted is gone or terminating.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from corral.api.resources import REGISTRY
from corral.api.selectors import LabelSelector, SelectorError, selector_from_object
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.controllers.claiming import (
    adopt_patch,
    claim,
    controller_ref,
    is_terminating,
    owner_reference,
    release_patch,
)
from corral.controllers.events import EventRecorder
from corral.controllers.rollout import (
    is_pod_active,
    is_pod_ready,
    ready_since,
    seconds_until_available,
)
from corral.controllers.runtime import ControllerManager
from corral.util.clock import Clock, SystemClock, parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

JSON = dict[str, Any]
PODS = REGISTRY.require("pods")
REPLICASETS = REGISTRY.require("replicasets.apps")
STRATEGIC = "application/strategic-merge-patch+json"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
REPLICA_FAILURE = "ReplicaFailure"
BURST_REPLICAS = 500
EXPECTATION_TIMEOUT = 60.0


# ------------------------------------------------------------------------------------------------ pure


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def rs_selector(rs: Mapping[str, Any]) -> LabelSelector | None:
    try:
        return selector_from_object((rs.get("spec") or {}).get("selector"))
    except SelectorError:
        return None


@dataclass(slots=True)
class ReplicaSetPlan:
    owned: list[JSON] = field(default_factory=list)
    """Active pods the ReplicaSet owns once the claim is done."""
    adopt: list[JSON] = field(default_factory=list)
    release: list[JSON] = field(default_factory=list)
    create: int = 0
    delete: list[JSON] = field(default_factory=list)


def plan_replica_set(
    rs: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime, burst: int = BURST_REPLICAS
) -> ReplicaSetPlan:
    """What one sync of ``rs`` does, given the pods of its namespace."""
    plan = ReplicaSetPlan()
    selector = rs_selector(rs)
    if selector is None or selector.empty:
        return plan  # an invalid or empty selector never selects (validation rejects both)
    active = [p for p in pods if is_pod_active(p)]
    claimed = claim(rs, selector, active)
    plan.owned, plan.adopt, plan.release = claimed.owned, claimed.adopt, claimed.release
    if is_terminating(rs):
        return plan
    want = _int((rs.get("spec") or {}).get("replicas", 1), 1)
    diff = len(plan.owned) - want
    if diff < 0:
        plan.create = min(-diff, burst)
    elif diff > 0:
        plan.delete = pods_to_delete(plan.owned, min(diff, burst))
    return plan


_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def _restarts(pod: Mapping[str, Any]) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return max((_int(s.get("restartCount")) for s in statuses if isinstance(s, dict)), default=0)


def _timestamp(text: Any) -> float | None:
    if not text:
        return None
    try:
        return parse_rfc3339(str(text)).timestamp()
    except ValueError:
        return None


def _deletion_rank(pod: Mapping[str, Any], same_node: Mapping[str, int]) -> tuple[Any, ...]:
    """Sort key: pods that sort first are deleted first (``ActivePodsWithRanks.Less``)."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    node = spec.get("nodeName") or ""
    ready = is_pod_ready(pod)
    since = ready_since(pod) if ready else None
    # Never ready / ready for less time first: a later (or missing) ready time sorts first.
    ready_key = -(since.timestamp()) if since is not None else float("-inf")
    created = _timestamp(meta.get("creationTimestamp"))
    created_key = -created if created is not None else float("-inf")
    return (
        1 if node else 0,  # 1. unassigned before assigned
        _PHASE_ORDER.get(str(status.get("phase")), 0),  # 2. Pending < Unknown < Running
        1 if ready else 0,  # 3. not ready before ready
        _int(((meta.get("annotations") or {}).get(DELETION_COST)), 0),  # 4. lower deletion cost first
        -same_node.get(node, 0),  # 5. doubled up on a node before alone
        ready_key if ready else 0.0,  # 6. ready for less time first
        -_restarts(pod),  # 7. more restarts first
        created_key,  # 8. newer first
        str(meta.get("name", "")),
    )


def pods_to_delete(pods: Sequence[JSON], count: int) -> list[JSON]:
    """The ``count`` pods a scale-down removes first."""
    if count >= len(pods):
        return list(pods)
    same_node: dict[str, int] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName") or ""
        if node:
            same_node[node] = same_node.get(node, 0) + 1
    return sorted(pods, key=lambda p: _deletion_rank(p, same_node))[:count]


def replica_set_status(
    rs: Mapping[str, Any],
    owned: Sequence[Mapping[str, Any]],
    now: datetime,
    manage_error: str | None = None,
    failure_reason: str = "",
) -> JSON:
    """``calculateStatus`` plus observedGeneration; zero counts are omitted as Go's ``omitempty`` does."""
    spec = rs.get("spec") or {}
    old = rs.get("status") or {}
    min_ready = _int(spec.get("minReadySeconds"))
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    fully_labeled = ready = available = 0
    for pod in owned:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if is_pod_ready(pod):
            ready += 1
            if seconds_until_available(pod, min_ready, now) == 0.0:
                available += 1
    status: JSON = {"replicas": len(owned)}
    for key, value in (
        ("fullyLabeledReplicas", fully_labeled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("observedGeneration", _int((rs.get("metadata") or {}).get("generation"))),
    ):
        if value:
            status[key] = value
    conditions = [c for c in old.get("conditions") or [] if isinstance(c, dict)]
    failure = next((c for c in conditions if c.get("type") == REPLICA_FAILURE), None)
    if manage_error is not None and failure is None:
        conditions.append(
            {
                "type": REPLICA_FAILURE,
                "status": "True",
                "lastTransitionTime": rfc3339(now),
                "reason": failure_reason,
                "message": manage_error,
            }
        )
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != REPLICA_FAILURE]
    if conditions:
        status["conditions"] = conditions
    return status


def next_availability_check(
    rs: Mapping[str, Any], owned: Sequence[Mapping[str, Any]], now: datetime
) -> float | None:
    """Seconds until the next owned Ready pod becomes available (``minReadySeconds``), if any."""
    min_ready = _int((rs.get("spec") or {}).get("minReadySeconds"))
    if min_ready <= 0:
        return None
    waits = [w for p in owned if (w := seconds_until_available(p, min_ready, now))]
    return min(waits) if waits else None


def pod_from_template(rs: Mapping[str, Any]) -> JSON:
    """A pod for ``rs``: generateName ``<rs>-``, the template's labels/annotations/spec, a controller ref."""
    meta = rs.get("metadata") or {}
    template = (rs.get("spec") or {}).get("template") or {}
    tmeta = template.get("metadata") or {}
    pod_meta: JSON = {
        "generateName": f"{meta.get('name')}-",
        "namespace": meta.get("namespace"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [owner_reference(rs, "apps/v1", "ReplicaSet")],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


# ------------------------------------------------------------------------------------------- expectations


@dataclass(slots=True)
class _Pending:
    since: float
    creates: dict[str, int] = field(default_factory=dict)  # pod name → resourceVersion of the create
    deletes: dict[str, str] = field(default_factory=dict)  # pod name → uid


class Expectations:
    """Writes a controller made that its pod cache has not shown yet, per owner key."""

    def __init__(self, clock: Clock, timeout: float = EXPECTATION_TIMEOUT) -> None:
        self.clock = clock
        self.timeout = timeout
        self._pending: dict[str, _Pending] = {}

    def _entry(self, key: str) -> _Pending:
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = _Pending(self.clock.monotonic())
        return entry

    def created(self, key: str, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self._entry(key).creates[str(meta.get("name"))] = _int(meta.get("resourceVersion"))

    def deleted(self, key: str, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self._entry(key).deletes[str(meta.get("name"))] = str(meta.get("uid"))

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)

    def satisfied(self, key: str, namespace: str, cache: Informer) -> bool:
        entry = self._pending.get(key)
        if entry is None:
            return True
        if self.clock.monotonic() - entry.since > self.timeout:
            log.warning("expectations of %s timed out; syncing anyway", key)
            self.forget(key)
            return True
        seen_rv = _int(cache.resource_version)
        for name, rv in list(entry.creates.items()):
            if cache.get(f"{namespace}/{name}") is not None or (rv and seen_rv >= rv):
                del entry.creates[name]
        for name, uid in list(entry.deletes.items()):
            pod = cache.get(f"{namespace}/{name}")
            if pod is None or (pod.get("metadata") or {}).get("uid") != uid or not is_pod_active(pod):
                del entry.deletes[name]
        if entry.creates or entry.deletes:
            return False
        self.forget(key)
        return True


# ------------------------------------------------------------------------------------------------ controller


class ReplicaSetController:
    name = "replicaset-controller"
    workers = 2

    def __init__(
        self, transport: Transport, clock: Clock | None = None, *, burst: int = BURST_REPLICAS
    ) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.burst = burst
        self.events = EventRecorder(transport, "replicaset-controller", self.clock)
        self.expectations = Expectations(self.clock)
        self._selectors: dict[str, LabelSelector | None] = {}
        self.replica_sets: Informer | None = None
        self.pods: Informer | None = None

    def setup(self, manager: ControllerManager) -> None:
        self.replica_sets = manager.watch(self, REPLICASETS)
        self.pods = manager.watch(self, PODS, self._pod_keys)

    def _selector(self, rs: JSON) -> LabelSelector | None:
        uid = str((rs.get("metadata") or {}).get("uid"))
        if uid not in self._selectors:
            if len(self._selectors) > 10000:
                self._selectors.clear()
            self._selectors[uid] = rs_selector(rs)
        return self._selectors[uid]

    def _pod_keys(self, pod: JSON) -> list[str]:
        """A pod wakes its controlling ReplicaSet, or — as an orphan — every ReplicaSet that selects it."""
        ref = controller_ref(pod)
        meta = pod.get("metadata") or {}
        namespace = meta.get("namespace")
        if ref is not None:
            return [f"{namespace}/{ref.get('name')}"] if ref.get("kind") == "ReplicaSet" else []
        if self.replica_sets is None:
            return []
        labels = meta.get("labels") or {}
        keys = []
        for rs in self.replica_sets.list():
            if (rs.get("metadata") or {}).get("namespace") != namespace:
                continue
            selector = self._selector(rs)
            if selector is not None and not selector.empty and selector.matches(labels):
                keys.append(object_key(rs))
        return keys

    async def reconcile(self, key: str) -> float | None:
        assert self.replica_sets is not None and self.pods is not None
        rs = self.replica_sets.get(key)
        if rs is None:
            self.expectations.forget(key)
            return None
        meta = rs.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        if not self.expectations.satisfied(key, namespace, self.pods):
            return 1.0  # the pod events will wake us sooner; this only guards against a lost one
        pods = [p for p in self.pods.list() if (p.get("metadata") or {}).get("namespace") == namespace]
        now = self.clock.now()
        plan = plan_replica_set(rs, pods, now, self.burst)
        if plan.adopt and not await self._can_adopt(rs):
            return None
        await self._claim(rs, plan)
        error, reason = await self._manage(key, rs, plan)
        status = replica_set_status(rs, plan.owned, now, error, reason)
        if status != (rs.get("status") or {}):
            updated = copy.deepcopy(rs)
            updated["status"] = status
            await self.transport.update(
                REPLICASETS, namespace, str(meta.get("name")), updated, subresource="status"
            )
        if error is not None:
            raise st.ApiError(500, "InternalError", error)
        return next_availability_check(rs, plan.owned, now)

    async def _can_adopt(self, rs: JSON) -> bool:
        """Adopt only for a live ReplicaSet (a fresh read, as upstream's ``RecheckDeletionTimestamp``)."""
        meta = rs.get("metadata") or {}
        try:
            fresh = await self.transport.get(REPLICASETS, meta.get("namespace"), str(meta.get("name")))
        except st.ApiError as exc:
            if exc.code == 404:
                return False
            raise
        fmeta = fresh.get("metadata") or {}
        return fmeta.get("uid") == meta.get("uid") and not fmeta.get("deletionTimestamp")

    async def _claim(self, rs: JSON, plan: ReplicaSetPlan) -> None:
        meta = rs.get("metadata") or {}
        ref = owner_reference(rs, "apps/v1", "ReplicaSet")
        for pod, body in [
            *((p, release_patch(p, str(meta.get("uid")))) for p in plan.release),
            *((p, adopt_patch(p, ref)) for p in plan.adopt),
        ]:
            pmeta = pod.get("metadata") or {}
            try:
                await self.transport.patch(
                    PODS, pmeta.get("namespace"), str(pmeta.get("name")), STRATEGIC, body
                )
            except st.ApiError as exc:
                if exc.code != 404:
                    raise
                if pod in plan.owned:
                    plan.owned.remove(pod)

    async def _manage(self, key: str, rs: JSON, plan: ReplicaSetPlan) -> tuple[str | None, str]:
        meta = rs.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        if plan.create:
            template = pod_from_template(rs)
            remaining, batch = plan.create, 1
            while remaining > 0:
                size = min(batch, remaining)
                results = await asyncio.gather(
                    *(self._create_pod(key, rs, namespace, template) for _ in range(size))
                )
                errors = [r for r in results if r is not None]
                if errors:
                    return errors[0], "FailedCreate"
                remaining -= size
                batch *= 2
        if plan.delete:
            results = await asyncio.gather(*(self._delete_pod(key, rs, pod) for pod in plan.delete))
            errors = [r for r in results if r is not None]
            if errors:
                return errors[0], "FailedDelete"
        return None, ""

    async def _create_pod(self, key: str, rs: JSON, namespace: str, template: JSON) -> str | None:
        try:
            pod = await self.transport.create(PODS, namespace, copy.deepcopy(template))
        except st.ApiError as exc:
            await self.events.record(rs, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            return exc.message
        self.expectations.created(key, pod)
        await self.events.record(
            rs, "Normal", "SuccessfulCreate", f"Created pod: {(pod.get('metadata') or {}).get('name')}"
        )
        return None

    async def _delete_pod(self, key: str, rs: JSON, pod: JSON) -> str | None:
        meta = pod.get("metadata") or {}
        try:
            await self.transport.delete(PODS, meta.get("namespace"), str(meta.get("name")))
        except st.ApiError as exc:
            if exc.code == 404:
                return None
            await self.events.record(rs, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
            return exc.message
        self.expectations.deleted(key, pod)
        await self.events.record(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {meta.get('name')}")
        return None
