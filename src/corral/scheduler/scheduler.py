"""The scheduler: a pure placement function, and the controller loop that feeds it and applies its answer.

``schedule(pod, snapshot)`` filters the nodes (``feasibility``), scores the rest (``scoring``) and names the
best, or says in upstream's words why none fits. It has no state and does no IO, so it is replaceable
wholesale by a fuller scheduler later.

``Scheduler`` is the IO edge: informers over pods (all namespaces), nodes and namespaces (their labels, for
affinity terms' ``namespaceSelector``), a work queue of pods waiting for a node, and a single worker, so
each decision sees the bindings made before it. A binding is *assumed* (counted on its node) from the
moment it is decided until the pod watch shows it, so a burst of replicas spreads instead of piling onto
the node that looked emptiest a moment ago. As in kube-scheduler, the bind runs in the background (up to
``MAX_BINDS_IN_FLIGHT`` at once, which the store commits together) and the worker goes on to the next pod;
a bind that fails forgets its assumption and requeues the pod. Events are recorded in the background too
(best effort, as always), so neither write's commit latency paces the decisions.

A pod that fits nowhere gets ``PodScheduled=False`` (reason Unschedulable) and one ``FailedScheduling``
event per distinct message (a repeat bumps the event's count), then waits for its backoff or a change that
could help: any node change, a pod leaving, a namespace's labels changing, and — for pods with required pod
affinity or hard spread constraints — a pod being placed or relabelled (upstream's queueing hints, coarsely).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from corral.api.quantity import QuantityError
from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer
from corral.client.workqueue import ShutDown, WorkQueue
from corral.scheduler.binder import Binder, BindOutcome
from corral.scheduler.feasibility import (
    failure_message,
    feasible_indices,
    feasible_nodes_to_find,
    find_feasible,
)
from corral.scheduler.scoring import NodeScore, score_indices, score_nodes
from corral.scheduler.snapshot import NodeInfo, PodInfo, Snapshot, placement
from corral.util.backoff import ExponentialBackoff
from corral.util.clock import Clock, SystemClock, rfc3339

log = logging.getLogger(__name__)

JSON = dict[str, Any]

DEFAULT_SCHEDULER = "default-scheduler"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
MAX_BINDS_IN_FLIGHT = 256
"""Binds awaiting the store at once; beyond that the worker waits for a slot (backpressure, bounded memory)"""
MAX_EVENTS_IN_FLIGHT = 256


def _rt(plural: str) -> ResourceType:
    rt = REGISTRY.by_path("", "v1", plural)
    assert rt is not None, plural
    return rt


PODS = _rt("pods")
NODES = _rt("nodes")
NAMESPACES = _rt("namespaces")
EVENTS = _rt("events")


# ---------------------------------------------------------------------------------------------- pure part


@dataclass(frozen=True, slots=True)
class Decision:
    node: str | None
    """The chosen node, or None when the pod fits nowhere."""
    reason: str
    """``Successfully assigned ns/pod to node``, or the FailedScheduling message."""
    scores: tuple[NodeScore, ...] = ()
    examined: int = field(default=0, compare=False)
    """How many nodes the filters looked at (the next decision starts after them, as kube-scheduler's)."""


def schedule(pod: PodInfo, snapshot: Snapshot, start: int = 0) -> Decision:
    """Where ``pod`` should run given ``snapshot``: the best-scoring node that passes every filter, among the
    first ``feasible_nodes_to_find`` feasible ones found from node index ``start``."""
    limit = feasible_nodes_to_find(len(snapshot.nodes))
    if snapshot.unique_names:
        # By node index, with per-lineage memos (same answers; tests/unit/test_scheduler_fastpath.py).
        indices, failures = feasible_indices(pod, snapshot, start=start, limit=limit)
        examined = len(indices) + len(failures)
        if not indices:
            return Decision(None, failure_message(len(snapshot.nodes), failures), examined=examined)
        scores = score_indices(pod, snapshot, sorted(indices))
    else:
        feasible, failures = find_feasible(pod, snapshot, start=start, limit=limit)
        examined = len(feasible) + len(failures)
        if not feasible:
            return Decision(None, failure_message(len(snapshot.nodes), failures), examined=examined)
        scores = score_nodes(pod, feasible, snapshot)
    best = scores[0].name
    message = f"Successfully assigned {pod.namespace}/{pod.name} to {best}"
    return Decision(best, message, tuple(scores), examined)


def needs_scheduling(obj: JSON, scheduler_name: str = DEFAULT_SCHEDULER) -> bool:
    """A live pod without a node that names this scheduler (or none, which means the default one)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or DEFAULT_SCHEDULER) == scheduler_name
        and not meta.get("deletionTimestamp")
        and (obj.get("status") or {}).get("phase") not in TERMINAL_PHASES
    )


def with_unschedulable_condition(pod: JSON, message: str, now: str) -> JSON | None:
    """A copy of ``pod`` with PodScheduled=False/Unschedulable/``message``; None when it already says so."""
    conditions = list((pod.get("status") or {}).get("conditions") or [])
    previous = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
    if (
        previous is not None
        and previous.get("status") == "False"
        and previous.get("reason") == "Unschedulable"
        and previous.get("message") == message
    ):
        return None
    since = now
    if previous is not None and previous.get("status") == "False" and previous.get("lastTransitionTime"):
        since = previous["lastTransitionTime"]
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": since,
    }
    out = copy.deepcopy(pod)
    status = out.setdefault("status", {})
    status["conditions"] = [c for c in conditions if c.get("type") != "PodScheduled"] + [condition]
    return out


def event_name(pod: JSON, reason: str, message: str) -> str:
    """Deterministic: the same pod, reason and message always name the same Event, so repeats collapse."""
    meta = pod.get("metadata") or {}
    digest = hashlib.sha256(f"{meta.get('uid')}\0{reason}\0{message}".encode()).hexdigest()[:16]
    prefix = str(meta.get("name") or "pod")[:236].rstrip(".-")
    return f"{prefix}.{digest}"


def new_event(pod: JSON, event_type: str, reason: str, message: str, now: str, component: str) -> JSON:
    meta = pod.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(pod, reason, message), "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": event_type,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def repeated_event(existing: JSON, now: str) -> JSON:
    out = copy.deepcopy(existing)
    out["count"] = int(existing.get("count") or 1) + 1
    out["lastTimestamp"] = now
    return out


def _pod_fingerprint(obj: JSON) -> tuple[Any, ...]:
    """What scheduling reads from a pod: a change here (not a status write) deserves a new attempt."""
    meta = obj.get("metadata") or {}
    return (meta.get("uid"), meta.get("labels"), meta.get("ownerReferences"), obj.get("spec"))


def _view_source(obj: JSON) -> tuple[Any, ...]:
    """Everything ``PodInfo.from_object`` reads except ``spec.nodeName``: equal sources, equal views."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return (
        meta.get("name"),
        meta.get("namespace"),
        meta.get("uid"),
        meta.get("labels"),
        meta.get("ownerReferences"),
        bool(meta.get("deletionTimestamp")),
        {k: v for k, v in spec.items() if k != "nodeName"} if isinstance(spec, dict) else spec,
    )


def _node_fingerprint(obj: JSON | None) -> tuple[Any, ...] | None:
    """What scheduling reads from a node: heartbeats that change nothing here do not requeue anyone."""
    if obj is None:
        return None
    info = NodeInfo.from_object(obj)
    return (info.labels, info.ready, info.unschedulable, info.taints, info.allocatable)


# ---------------------------------------------------------------------------------------------- controller


class Scheduler:
    """Binds pending pods to nodes until cancelled: ``await Scheduler(transport).run()``."""

    def __init__(
        self,
        transport: Transport,
        clock: Clock | None = None,
        *,
        name: str = DEFAULT_SCHEDULER,
        backoff: ExponentialBackoff | None = None,
    ) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.name = name
        self.pods = Informer(transport, PODS)
        self.nodes = Informer(transport, NODES)
        self.namespaces = Informer(transport, NAMESPACES)  # their labels, for affinity namespaceSelectors
        self.queue: WorkQueue[str] = WorkQueue(backoff or ExponentialBackoff(base=1.0, cap=60.0))
        self.binder = Binder(transport)
        self._next_start = 0  # where the next decision's filters begin (kube-scheduler's nextStartNodeIndex)
        self._assumed: dict[str, tuple[str, str]] = {}  # pod key → (uid, node) bound but not yet watched
        self._unschedulable: dict[str, tuple[Any, ...]] = {}  # pod key → fingerprint when it did not fit
        self._node_fingerprints: dict[str, tuple[Any, ...] | None] = {}
        # Unschedulable pods that another pod's arrival could help (required pod affinity, hard spread
        # constraints): upstream's queueing hints requeue exactly those on a pod add or label change.
        self._waiting_for_pods: set[str] = set()
        self._assigned: dict[str, tuple[str, Any]] = {}  # pod key → (node, labels) of placed pods
        self._namespace_labels: dict[str, tuple[str, Any]] = {}  # namespace → (resourceVersion, labels)
        # pod key → (resourceVersion, view, what the view was read from; see _view)
        self._pod_infos: dict[str, tuple[str, PodInfo, tuple[Any, ...]]] = {}
        # The snapshot is kept between decisions and rebuilt only when a watch event changes what it holds
        # (a node's fingerprint, a placed pod's view or placement, namespace labels). Our own bindings are
        # added with ``place`` (``with_pod`` reusing the storage of the snapshot it replaces, which nothing
        # else holds), carrying the derived counts forward, so a burst of replicas costs one rebuild.
        self._snapshot: Snapshot | None = None
        self._snapshot_pods: dict[str, tuple[str, PodInfo]] = {}  # pod key → (node, view) it holds
        self._bind_slots = asyncio.Semaphore(MAX_BINDS_IN_FLIGHT)
        self._event_slots = asyncio.Semaphore(MAX_EVENTS_IN_FLIGHT)
        self._in_flight: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        self.pods.add_handler(self._on_pod)
        self.nodes.add_handler(self._on_node)
        self.namespaces.add_handler(self._on_namespace)
        tasks = [
            asyncio.create_task(self.pods.run()),
            asyncio.create_task(self.nodes.run()),
            asyncio.create_task(self.namespaces.run()),
        ]
        try:
            await self.pods.wait_synced()
            await self.nodes.wait_synced()
            await self.namespaces.wait_synced()
            while True:
                key = await self.queue.get()
                try:
                    await self.reconcile(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("scheduling %s failed; retrying with backoff", key)
                    self.queue.add_rate_limited(key)
                finally:
                    self.queue.done(key)
        except ShutDown:
            pass
        finally:
            self.queue.shutdown()
            for task in [*tasks, *self._in_flight]:
                task.cancel()
            await asyncio.gather(*tasks, *self._in_flight, return_exceptions=True)

    async def _spawn(self, slots: asyncio.Semaphore, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background once one of ``slots`` is free; the slot is released when it ends."""
        try:
            await slots.acquire()
        except BaseException:
            work.close()
            raise
        task = asyncio.create_task(work)
        self._in_flight.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            slots.release()
            self._in_flight.discard(done)

        task.add_done_callback(finished)

    async def idle(self) -> None:
        """Wait until no bind or event write started so far is still running (for tests and shutdown)."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    def _on_pod(self, key: str) -> None:
        obj = self.pods.get(key)
        self._note_pod_change(key, obj)
        assumed = self._assumed.get(key)
        if assumed is not None and (
            obj is None
            or (obj.get("spec") or {}).get("nodeName")
            or (obj.get("metadata") or {}).get("uid") != assumed[0]
        ):
            del self._assumed[key]
        if obj is not None and needs_scheduling(obj, self.name):
            # A status write on an unschedulable pod (ours, usually) is no reason to try again now.
            if self._unschedulable.get(key) != _pod_fingerprint(obj):
                self.queue.add(key)
            return
        self._unschedulable.pop(key, None)
        self._waiting_for_pods.discard(key)
        if obj is None or (obj.get("status") or {}).get("phase") in TERMINAL_PHASES:
            self._assigned.pop(key, None)
            self._requeue_unschedulable()  # its resources and ports are free again
            return
        node_name = (obj.get("spec") or {}).get("nodeName")
        if node_name:
            mark = (str(node_name), (obj.get("metadata") or {}).get("labels"))
            if self._assigned.get(key) != mark:
                self._assigned[key] = mark
                for waiting in self._waiting_for_pods:
                    self.queue.add(waiting)

    def _note_pod_change(self, key: str, obj: JSON | None) -> None:
        """Drop the kept snapshot when ``obj`` no longer looks to it as it did when it was built."""
        if self._snapshot is None:
            return
        held = self._snapshot_pods.get(key)
        assumed = self._assumed.get(key)  # only this pod's own assumption can place it
        node_name = "" if obj is None else placement(obj, {assumed[0]: assumed[1]} if assumed else None)
        if obj is None or not node_name:
            if held is not None:
                self._snapshot = None
            return
        if held is None or held[0] != node_name or held[1] != self._view(key, obj):
            self._snapshot = None

    def _view(self, key: str, obj: JSON) -> PodInfo:
        """The scheduling view of a cached pod object, parsed again only when what it reads has changed:
        a binding or a status write keeps the view (with the new node), which spares a parse per pod."""
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        cached = self._pod_infos.get(key)
        if cached is not None and cached[0] == rv:
            return cached[1]
        source = _view_source(obj)
        if cached is not None and cached[2] == source:
            node_name = str((obj.get("spec") or {}).get("nodeName") or "")
            info = cached[1] if cached[1].node_name == node_name else replace(cached[1], node_name=node_name)
        else:
            info = PodInfo.from_object(obj, strict=False)
        self._pod_infos[key] = (rv, info, source)
        return info

    def _on_node(self, key: str) -> None:
        fingerprint = _node_fingerprint(self.nodes.get(key))
        if self._node_fingerprints.get(key) == fingerprint and key in self._node_fingerprints:
            return
        self._snapshot = None
        if fingerprint is None:
            self._node_fingerprints.pop(key, None)
        else:
            self._node_fingerprints[key] = fingerprint
        self._requeue_unschedulable()

    def _on_namespace(self, key: str) -> None:
        obj = self.namespaces.get(key)
        labels = None if obj is None else (obj.get("metadata") or {}).get("labels")
        if (self._namespace_labels.get(key) or (None, None))[1] != labels:
            self._snapshot = None
            self._requeue_unschedulable()
        if obj is None:
            self._namespace_labels.pop(key, None)
        else:
            self._namespace_labels[key] = (str((obj.get("metadata") or {}).get("resourceVersion")), labels)

    def _requeue_unschedulable(self) -> None:
        for key in self._unschedulable:
            self.queue.add(key)

    # ------------------------------------------------------------------ one pod

    def snapshot(self) -> Snapshot:
        """The cluster as the caches show it, plus the bindings made but not yet watched."""
        if self._snapshot is not None:
            return self._snapshot
        assumed: Mapping[str, str] = {uid: node for uid, node in self._assumed.values()}
        held: dict[str, tuple[str, PodInfo]] = {}
        placements: list[tuple[str, PodInfo]] = []
        for obj in self.pods.list():
            node_name = placement(obj, assumed)
            if not node_name:
                continue
            meta = obj.get("metadata") or {}
            key = f"{meta.get('namespace')}/{meta.get('name')}"
            info = self._view(key, obj)
            held[key] = (node_name, info)
            placements.append((node_name, info))
        self._pod_infos = {key: view for key, view in self._pod_infos.items() if key in held}
        namespace_labels = {
            name: {str(k): str(v) for k, v in (labels or {}).items()}
            for name, (_, labels) in self._namespace_labels.items()
        }
        self._snapshot = Snapshot.assemble(
            (NodeInfo.from_object(n) for n in self.nodes.list()), placements, namespace_labels
        )
        self._snapshot_pods = held
        return self._snapshot

    async def reconcile(self, key: str) -> None:
        obj = self.pods.get(key)
        if obj is None or not needs_scheduling(obj, self.name):
            self.queue.forget(key)
            self._unschedulable.pop(key, None)
            self._waiting_for_pods.discard(key)
            return
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if uid and self._assumed.get(key, ("", ""))[0] == uid:
            return  # bound already; the pod watch has not caught up
        pod: PodInfo | None = None
        try:
            pod = PodInfo.from_object(obj)
        except QuantityError as exc:
            decision = Decision(None, f"invalid resource requests: {exc}")
        else:
            snapshot = self.snapshot()
            decision = schedule(pod, snapshot, self._next_start)
            if snapshot.nodes:
                self._next_start = (self._next_start + decision.examined) % len(snapshot.nodes)
        if decision.node is None:
            if pod is not None and (pod.affinity_terms or any(c.hard for c in pod.spread_constraints)):
                self._waiting_for_pods.add(key)
            await self._unschedulable_pod(key, obj, decision.reason)
            return
        assert pod is not None  # a node was chosen, so the pod parsed
        node = decision.node
        if self._snapshot is not None and key not in self._snapshot_pods:
            # Assumed before the bind, as upstream's scheduler cache does, so the watch event of the
            # binding (which may arrive before the bind returns) finds the snapshot already showing it:
            # on that node, with spec.nodeName set (see _note_pod_change).
            bound = replace(pod, node_name=node)
            self._snapshot = self._snapshot.place(bound, node)
            self._snapshot_pods[key] = (node, bound)
            # The watch event of the binding changes only spec.nodeName: _view then reuses this view.
            self._pod_infos[key] = (str(meta.get("resourceVersion") or ""), bound, _view_source(obj))
        self._assumed[key] = (uid, node)  # until the watch shows the binding (see _on_pod) or it fails
        self._unschedulable.pop(key, None)
        self._waiting_for_pods.discard(key)
        await self._spawn(self._bind_slots, self._bind(key, obj, node, decision.reason))

    async def _bind(self, key: str, obj: JSON, node: str, message: str) -> None:
        """The background half of a placement: the binding write, then its outcome."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        try:
            outcome = await self.binder.bind(str(meta.get("namespace")), str(meta.get("name")), node, uid)
        except Exception:  # not CancelledError (a BaseException): shutdown is not a failed bind
            log.exception("binding %s to %s failed; retrying with backoff", key, node)
            self._forget_assumption(key, uid, node)
            self.queue.add_rate_limited(key)
            return
        if outcome is BindOutcome.BOUND:
            self.queue.forget(key)
            await self._spawn(self._event_slots, self._record_event(obj, "Normal", "Scheduled", message))
            return
        self._forget_assumption(key, uid, node)
        if outcome is BindOutcome.GONE:
            self.queue.forget(key)
        else:  # CONFLICT: the next attempt reads the pod again
            self.queue.add_rate_limited(key)

    def _forget_assumption(self, key: str, uid: str, node: str) -> None:
        """Undo an assumed binding that did not happen; the snapshot is rebuilt from the caches."""
        if self._assumed.get(key) == (uid, node):
            del self._assumed[key]
        self._snapshot = None

    async def _unschedulable_pod(self, key: str, obj: JSON, message: str) -> None:
        self._unschedulable[key] = _pod_fingerprint(obj)
        try:
            now = rfc3339(self.clock.now())
            updated = with_unschedulable_condition(obj, message, now)
            if updated is not None:
                meta = obj["metadata"]
                try:
                    await self.transport.update(
                        PODS, meta["namespace"], meta["name"], updated, subresource="status"
                    )
                except st.ApiError as exc:
                    if exc.code not in (404, 409):
                        raise
                    # 404: gone, the watch will tell. 409: changed meanwhile; the backoff retry sees it.
            await self._record_event(obj, "Warning", "FailedScheduling", message)
        finally:
            self.queue.add_rate_limited(key)

    async def _record_event(self, pod: JSON, event_type: str, reason: str, message: str) -> None:
        """Create the event, or bump the count of the one with the same message; best effort."""
        now = rfc3339(self.clock.now())
        namespace = (pod.get("metadata") or {}).get("namespace")
        event = new_event(pod, event_type, reason, message, now, self.name)
        try:
            try:
                await self.transport.create(EVENTS, namespace, event)
            except st.ApiError as exc:
                if exc.code != 409:
                    raise
                name = event["metadata"]["name"]
                existing = await self.transport.get(EVENTS, namespace, name)
                await self.transport.update(EVENTS, namespace, name, repeated_event(existing, now))
        except st.ApiError as exc:
            log.debug(
                "event %s for pod %s not recorded: %s", reason, (pod.get("metadata") or {}).get("name"), exc
            )
