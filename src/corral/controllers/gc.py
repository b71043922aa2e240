"""Garbage collector: cascading deletion along ``ownerReferences`` (Background, Foreground, Orphan).

The API server only marks: a Foreground DELETE leaves the owner with ``deletionTimestamp`` and the
``foregroundDeletion`` finalizer, an Orphan DELETE with the ``orphan`` finalizer, a Background DELETE
removes the owner at once. This controller does the rest, level-triggered, keyed by object uid:

- an owner deleting in the **foreground** gets its dependents deleted (in the foreground themselves when
  they have dependents), and loses its finalizer once no dependent with ``blockOwnerDeletion`` remains;
- an owner being **orphaned** has its reference removed from every dependent, then loses its finalizer;
- a dependent whose owners are all **gone** is deleted (this is Background cascade, and also collects the
  dependents of owners that were missing all along).

"Gone" is never concluded from the cache alone: an owner absent from the graph is looked up live, and
identity is the uid, so an owner recreated under the same name does not adopt the old one's dependents.
Every delete carries a uid precondition and every update is compare-and-set.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from typing import Any

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.controllers.gcgraph import (
    FOREGROUND,
    ORPHAN,
    Graph,
    Node,
    OwnerRef,
    OwnerState,
    Verdict,
    affected_by_change,
    classify,
    decide,
)
from corral.controllers.runtime import ControllerManager

log = logging.getLogger(__name__)

JSON = dict[str, Any]

# Upstream ignores events too: they are many, short-lived and never own anything.
IGNORED_RESOURCES = frozenset({"/events", "events.k8s.io/events"})

# After acting on a dependent whose cached state was stale, look again shortly (the watch catches up).
STALE_RETRY = 0.2
# Uids known to be gone (seen deleted, or a live lookup said 404): uids are never reused, so no GET is needed
# for them again. Bounded like upstream's absentOwnerCache.
ABSENT_CACHE_SIZE = 10_000


def resource_id(rt: ResourceType) -> str:
    return f"{rt.group}/{rt.plural}"


def collectable_resources() -> list[ResourceType]:
    out = []
    for rt in REGISTRY.preferred():
        if resource_id(rt) in IGNORED_RESOURCES or rt.storage_group:
            continue
        if "list" in rt.verbs and "watch" in rt.verbs:
            out.append(rt)
    return out


def resolve_owner_type(ref: OwnerRef) -> ResourceType | None:
    found = REGISTRY.by_kind(ref.api_version, ref.kind)
    if found is not None:
        return found
    group = ref.api_version.rsplit("/", 1)[0] if "/" in ref.api_version else ""
    for rt in REGISTRY.preferred():
        if rt.kind == ref.kind and rt.group == group:
            return rt
    return None


class GarbageCollector:
    name = "garbage-collector"
    workers = 4

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.graph = Graph()
        self._types: dict[str, ResourceType] = {}
        self._absent: OrderedDict[str, None] = OrderedDict()

    def _note_absent(self, uid: str) -> None:
        self._absent[uid] = None
        self._absent.move_to_end(uid)
        while len(self._absent) > ABSENT_CACHE_SIZE:
            self._absent.popitem(last=False)

    def setup(self, manager: ControllerManager) -> None:
        queue = manager.queue_of(self)
        for rt in collectable_resources():
            resource = resource_id(rt)
            self._types[resource] = rt
            informer = manager.informer(rt)

            def handler(key: str, resource: str = resource, informer: Any = informer) -> None:
                obj = informer.get(key)
                if obj is None:
                    gone = self.graph.remove(resource, key)
                    if gone is None:
                        return
                    self._note_absent(gone.uid)
                    uids = affected_by_change(gone, None)
                    uids.update(d.uid for d in self.graph.dependents(gone.uid))
                else:
                    node = Node.from_object(resource, obj)
                    previous, replaced = self.graph.upsert(key, node)
                    uids = affected_by_change(previous, node)
                    if replaced is not None:
                        self._note_absent(replaced.uid)
                        uids.update(affected_by_change(replaced, None))
                        uids.update(d.uid for d in self.graph.dependents(replaced.uid))
                for uid in uids:
                    if uid in self.graph.nodes:
                        queue.add(uid)

            informer.add_handler(handler)

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        node = self.graph.nodes.get(key)
        if node is None:
            return None
        if node.orphaning:
            await self._orphan_dependents(node)
            return None
        if node.deleting_dependents:
            return await self._delete_dependents(node)
        if node.owners and not node.deleting:
            return await self._attempt_to_delete(node)
        return None

    async def _owner_state(self, dependent: Node, ref: OwnerRef) -> OwnerState:
        cached = self.graph.nodes.get(ref.uid)
        if cached is not None:
            return classify(cached, ref)
        if ref.uid in self._absent:
            return OwnerState.DANGLING
        rt = resolve_owner_type(ref)
        if rt is None:
            return OwnerState.SOLID  # a kind we do not serve: never assume it is gone
        if rt.namespaced and dependent.namespace is None:
            return OwnerState.SOLID  # invalid (cluster-scoped dependent, namespaced owner): not collectable
        namespace = dependent.namespace if rt.namespaced else None
        # Not in the cache is not the same as gone: the owner may be newer than our watch. Ask the server.
        try:
            live = await self.transport.get(rt, namespace, ref.name)
        except st.ApiError as exc:
            if exc.code == 404:
                self._note_absent(ref.uid)
                return OwnerState.DANGLING
            raise
        state = classify(Node.from_object(resource_id(rt), live), ref)
        if state is OwnerState.DANGLING:
            self._note_absent(ref.uid)  # the name now belongs to another uid
        return state

    async def _attempt_to_delete(self, node: Node) -> float | None:
        states = {ref.uid: await self._owner_state(node, ref) for ref in node.owners}
        decision = decide(node, states, bool(self.graph.dependents(node.uid)))
        if decision.verdict is Verdict.KEEP:
            return None
        rt = self._types[node.resource]
        live = await self._get_live(rt, node)
        if live is None:
            return None
        if Node.from_object(node.resource, live).owners != node.owners:
            return STALE_RETRY  # the cache is behind the object: decide on what the watch will bring
        if decision.verdict is Verdict.REMOVE_REFS:
            updated = copy.deepcopy(live)
            refs = [
                r
                for r in updated["metadata"].get("ownerReferences") or []
                if str(r.get("uid")) not in decision.remove_uids
            ]
            _set_owner_refs(updated, refs)
            await self.transport.update(rt, node.namespace, node.name, updated)
            log.info("gc: removed dangling owner references from %s %s", rt.kind, _key(node))
            return None
        try:
            await self.transport.delete(
                rt, node.namespace, node.name, propagation_policy=decision.policy, precondition_uid=node.uid
            )
        except st.ApiError as exc:
            if exc.code != 404 and exc.reason != "Conflict":
                raise
        log.info("gc: deleted %s %s (%s), its owners are gone", rt.kind, _key(node), decision.policy)
        return None

    async def _delete_dependents(self, owner: Node) -> float | None:
        for dependent in self.graph.dependents(owner.uid):
            if not dependent.deleting:
                await self._attempt_to_delete(dependent)
        if self.graph.blocking_dependents(owner.uid):
            return None  # their deletion events bring the owner back here
        await self._remove_finalizer(owner, FOREGROUND)
        return None

    async def _orphan_dependents(self, owner: Node) -> None:
        for dependent in self.graph.dependents(owner.uid):
            rt = self._types[dependent.resource]
            live = await self._get_live(rt, dependent)
            if live is None:
                continue
            refs = live["metadata"].get("ownerReferences") or []
            kept = [r for r in refs if str(r.get("uid")) != owner.uid]
            if len(kept) == len(refs):
                continue
            updated = copy.deepcopy(live)
            _set_owner_refs(updated, kept)
            await self.transport.update(rt, dependent.namespace, dependent.name, updated)
        await self._remove_finalizer(owner, ORPHAN)

    async def _remove_finalizer(self, node: Node, finalizer: str) -> None:
        rt = self._types[node.resource]
        live = await self._get_live(rt, node)
        if live is None:
            return
        finalizers = live["metadata"].get("finalizers") or []
        if finalizer not in finalizers:
            return
        updated = copy.deepcopy(live)
        updated["metadata"]["finalizers"] = [f for f in finalizers if f != finalizer]
        await self.transport.update(rt, node.namespace, node.name, updated)
        log.info("gc: removed finalizer %s from %s %s", finalizer, rt.kind, _key(node))

    async def _get_live(self, rt: ResourceType, node: Node) -> JSON | None:
        """The object as stored now, or None when it is gone or is another object of the same name."""
        try:
            live = await self.transport.get(rt, node.namespace, node.name)
        except st.ApiError as exc:
            if exc.code == 404:
                return None
            raise
        return live if (live.get("metadata") or {}).get("uid") == node.uid else None


def _set_owner_refs(obj: JSON, refs: list[JSON]) -> None:
    if refs:
        obj["metadata"]["ownerReferences"] = refs
    else:
        obj["metadata"].pop("ownerReferences", None)


def _key(node: Node) -> str:
    return f"{node.namespace}/{node.name}" if node.namespace else node.name
