"""Node lifecycle controller: node health from heartbeats, node taints, NotReady pods, taint-based eviction.

IO around the pure planner ``corral.controllers.nodelifecycleplan`` (read it for the rules). Keyed by node
name, level-triggered:

- A Node change enqueues itself; a Lease change in ``kube-node-lease`` enqueues the node of the same name,
  unless that node is healthy and already tracked: then the handler only records the renewal, and the pass
  queued for the node's grace deadline finds it (the hot path at scale: one renewal per node every 2 s);
  a pod change enqueues its node (``spec.nodeName``) only while that node is not healthy, since only then
  can a pod need marking or evicting.
- ``reconcile`` records when the agent was last heard from (``HeartbeatTracker``, the controller's clock),
  plans, and writes with compare-and-set: the node's conditions through ``/status`` first, then its taints
  (planned again from the written node), then pod Ready conditions through ``/status``, then evictions.
  It returns the time until the next deadline (a grace period or a toleration running out).
- Evictions are ordinary deletes, as upstream's taint-eviction controller does: the pod turns Terminating
  at once (so its ReplicaSet, which does not count terminating pods, creates a replacement), and the agent
  finishes the deletion when the node comes back. A conflict or 404 on one pod does not stop the others.
"""

from __future__ import annotations

import logging
from typing import Any

from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.controllers.events import EventRecorder
from corral.controllers.nodelifecycleplan import (
    EVICTION_REASON,
    NO_EXECUTE,
    NODE_NOT_READY_REASON,
    HeartbeatTracker,
    LifecycleConfig,
    plan_node,
    ready_status,
)
from corral.controllers.runtime import ControllerManager
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
NODES = REGISTRY.require("nodes")
PODS = REGISTRY.require("pods")
LEASES = REGISTRY.require("leases.coordination.k8s.io")
NODE_LEASE_NAMESPACE = "kube-node-lease"
RETRY_SOON = 0.2  # after a lost compare-and-set on one pod: look again shortly, not with backoff


def _healthy(node: JSON | None) -> bool:
    if node is None:
        return True
    taints = (node.get("spec") or {}).get("taints") or []
    return ready_status(node) == "True" and not any(
        isinstance(t, dict) and t.get("effect") == NO_EXECUTE for t in taints
    )


def _as_pod(pod: JSON) -> JSON:
    """Cached objects may lack kind/apiVersion; events name the kind of what they are about."""
    return {"apiVersion": "v1", "kind": "Pod", **pod}


class NodeLifecycleController:
    name = "node-lifecycle-controller"
    workers = 2

    def __init__(
        self, transport: Transport, clock: Clock | None = None, config: LifecycleConfig | None = None
    ) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.config = config or LifecycleConfig()
        self.events = EventRecorder(transport, "node-controller", self.clock)
        self.tracker = HeartbeatTracker()
        self.nodes: Informer | None = None
        self.leases: Informer | None = None
        self.pods: Informer | None = None
        self._manager: ControllerManager | None = None
        # node name → keys of the pods bound to it, and pod key → the node it was bound to last time.
        self._pods_by_node: dict[str, set[str]] = {}
        self._node_of: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------- wiring

    def setup(self, manager: ControllerManager) -> None:
        self._manager = manager
        self.nodes = manager.watch(self, NODES)
        self.leases = manager.informer(LEASES)
        self.leases.add_handler(self._on_lease)
        self.pods = manager.informer(PODS)
        self.pods.add_handler(self._on_pod)

    def _enqueue(self, name: str) -> None:
        assert self._manager is not None
        self._manager.queue_of(self).add(name)

    def _on_lease(self, key: str) -> None:
        namespace, _, name = key.partition("/")
        if namespace != NODE_LEASE_NAMESPACE or not name:
            return
        assert self.nodes is not None and self.leases is not None
        node = self.nodes.get(name)
        if node is not None and _healthy(node) and self.tracker.knows(name):
            # A renewal of a node that is fine: note the moment it was heard, as the reconcile would, and
            # leave the rest to the pass already queued for its grace deadline (every reconcile of a node
            # that is not stale queues one), which then finds it heard since. Upstream's controller too
            # looks at healthy nodes on a timer, not per renewal (1,000 nodes renew 500 times a second).
            self.tracker.observe(name, node, self.leases.get(key), self.clock.now())
            return
        self._enqueue(name)

    def _on_pod(self, key: str) -> None:
        assert self.pods is not None and self.nodes is not None
        pod = self.pods.get(key)
        old = self._node_of.pop(key, None)
        if old is not None:
            self._pods_by_node.get(old, set()).discard(key)
        new = str((pod.get("spec") or {}).get("nodeName") or "") if pod is not None else ""
        if new:
            self._node_of[key] = new
            self._pods_by_node.setdefault(new, set()).add(key)
            if not _healthy(self.nodes.get(new)):
                self._enqueue(new)

    # ---------------------------------------------------------------------------------------- reconcile

    async def reconcile(self, key: str) -> float | None:
        assert self.nodes is not None and self.leases is not None and self.pods is not None
        node = self.nodes.get(key)
        if node is None:
            self.tracker.forget(key)
            return None
        now = self.clock.now()
        heard = self.tracker.observe(key, node, self.leases.get(f"{NODE_LEASE_NAMESPACE}/{key}"), now)
        pods = [p for k in sorted(self._pods_by_node.get(key, ())) if (p := self.pods.get(k)) is not None]
        pods = [p for p in pods if (p.get("spec") or {}).get("nodeName") == key]

        plan = plan_node(node, heard, pods, now, self.config)
        if plan.status is not None:
            node = await self.transport.update(NODES, None, key, plan.status, subresource="status")
            if ready_status(node) != "True":
                await self.events.record(
                    {"apiVersion": "v1", "kind": "Node", **node},
                    "Normal",
                    NODE_NOT_READY_REASON,
                    f"Node {key} status is now: NodeNotReady",
                )
            # The taints and pods follow the condition just written; plan them from the written node.
            plan = plan_node(node, heard, pods, now, self.config)
        if plan.taints is not None:
            await self.transport.update(NODES, None, key, plan.taints)

        again = plan.requeue_after
        for pod in plan.pods_not_ready:
            if not await self._write_pod_status(pod):
                again = RETRY_SOON
        for eviction in plan.evictions:
            if not await self._evict(eviction.pod, eviction.message):
                again = RETRY_SOON
        # A hair past the deadline, so the next pass is not a few microseconds early.
        return None if again is None else again + 0.05

    async def _write_pod_status(self, pod: JSON) -> bool:
        meta = pod.get("metadata") or {}
        try:
            await self.transport.update(
                PODS, meta.get("namespace"), str(meta.get("name")), pod, subresource="status"
            )
        except st.ApiError as exc:
            if exc.code == 404:
                return True
            if exc.reason == "Conflict":
                return False
            raise
        await self.events.record(_as_pod(pod), "Warning", NODE_NOT_READY_REASON, "Node is not ready")
        return True

    async def _evict(self, pod: JSON, message: str) -> bool:
        meta = pod.get("metadata") or {}
        await self.events.record(_as_pod(pod), "Normal", EVICTION_REASON, message)
        try:
            await self.transport.delete(
                PODS, meta.get("namespace"), str(meta.get("name")), precondition_uid=meta.get("uid") or None
            )
        except st.ApiError as exc:
            if exc.code == 404:
                return True
            if exc.reason == "Conflict":
                return False
            raise
        log.info("evicted pod %s from node %s", object_key(pod), (pod.get("spec") or {}).get("nodeName"))
        return True
