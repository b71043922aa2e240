"""Deployment controller: the IO around :func:`corral.controllers.rollout.plan_deployment`.

Each reconcile reads the Deployment and its namespace's ReplicaSets (and, for Recreate, which pods still
run) from the informer caches, asks the pure planner for one sync's writes and sends them in order: claim
patches, ReplicaSet creates / updates (CAS on the cached resourceVersion) / deletes, each followed by its
``ScalingReplicaSet`` event, then the Deployment's annotations + status through ``/status``. A create that
hits an existing name with a different template bumps ``status.collisionCount`` (the next hash differs).

Like the ReplicaSet controller it keeps *expectations*: after writing ReplicaSets it does not plan again
until the ReplicaSet cache has caught up with its own writes, so a stale cache never drives a second scale.
Deletion cascades are the garbage collector's business, not this controller's.

Before planning, the sync pins the ConfigMaps and Secrets the template reads (``configpins``): it creates
snapshot copies and writes the Deployment's new pins, then stops; the Deployment's own update event brings the
next sync, which rolls out the changed template. Pinning first means a new Deployment starts on its pinned
configuration instead of rolling twice. Snapshots no longer pinned are released once both caches have caught
up with this controller's writes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable
from typing import Any

from corral.api.resources import REGISTRY
from corral.api.selectors import LabelSelector
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.controllers.claiming import adopt_patch, controller_ref, owner_reference, release_patch
from corral.controllers.configpins import (
    SNAPSHOT_LABEL,
    SnapshotWrite,
    content_hash,
    owned_by,
    plan_pins,
    plan_releases,
    snapshot_name,
    snapshot_owner,
    template_pins,
    template_refs,
)
from corral.controllers.events import EventRecorder
from corral.controllers.replicaset import PODS, REPLICASETS, STRATEGIC, rs_selector
from corral.controllers.rollout import (
    FAILED_RS_CREATE,
    PROGRESSING,
    DeploymentPlan,
    PodCounts,
    RSWrite,
    equal_ignore_hash,
    has_progress_deadline,
    is_pod_active,
    is_rolling,
    new_condition,
    plan_deployment,
    set_condition,
)
from corral.controllers.runtime import ControllerManager
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
DEPLOYMENTS = REGISTRY.require("deployments.apps")
CONFIGMAPS = REGISTRY.require("configmaps")
SECRETS = REGISTRY.require("secrets")
CONFIG_KINDS = {"ConfigMap": CONFIGMAPS, "Secret": SECRETS}
EXPECTATION_TIMEOUT = 60.0


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class DeploymentController:
    name = "deployment-controller"
    workers = 2

    def __init__(self, transport: Transport, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.events = EventRecorder(transport, "deployment-controller", self.clock)
        # Deployment key → (resourceVersion the ReplicaSet cache must reach, monotonic time recorded).
        self._expected: dict[str, tuple[int, float]] = {}
        self._selectors: dict[str, LabelSelector | None] = {}
        # Deployment key → resourceVersion of our last pin write, which the Deployment cache must reach.
        self._pinned: dict[str, int] = {}
        self._refs: dict[str, set[tuple[str, str]]] = {}  # uid/generation → what the template reads
        self.deployments: Informer | None = None
        self.replica_sets: Informer | None = None
        self.pods: Informer | None = None
        self.config: dict[str, Informer] = {}

    def setup(self, manager: ControllerManager) -> None:
        self.deployments = manager.watch(self, DEPLOYMENTS)
        self.replica_sets = manager.watch(self, REPLICASETS, self._rs_keys)
        self.pods = manager.watch(self, PODS, self._pod_keys)
        for kind, rt in CONFIG_KINDS.items():
            self.config[kind] = manager.watch(self, rt, self._config_keys(kind))

    # ------------------------------------------------------------------ event → key

    def _selector(self, d: JSON) -> LabelSelector | None:
        meta = d.get("metadata") or {}
        cache_key = f"{meta.get('uid')}/{meta.get('generation')}"
        if cache_key not in self._selectors:
            if len(self._selectors) > 10000:
                self._selectors.clear()
            self._selectors[cache_key] = rs_selector(d)
        return self._selectors[cache_key]

    def _rs_keys(self, rs: JSON) -> list[str]:
        """A ReplicaSet wakes its controlling Deployment, or — as an orphan — each Deployment selecting it."""
        ref = controller_ref(rs)
        meta = rs.get("metadata") or {}
        namespace = meta.get("namespace")
        if ref is not None:
            return [f"{namespace}/{ref.get('name')}"] if ref.get("kind") == "Deployment" else []
        if self.deployments is None:
            return []
        labels = meta.get("labels") or {}
        keys = []
        for d in self.deployments.list():
            if (d.get("metadata") or {}).get("namespace") != namespace:
                continue
            selector = self._selector(d)
            if selector is not None and not selector.empty and selector.matches(labels):
                keys.append(object_key(d))
        return keys

    def _template_refs(self, d: JSON) -> set[tuple[str, str]]:
        meta = d.get("metadata") or {}
        cache_key = f"{meta.get('uid')}/{meta.get('generation')}"
        if cache_key not in self._refs:
            if len(self._refs) > 10000:
                self._refs.clear()
            self._refs[cache_key] = template_refs(d)
        return self._refs[cache_key]

    def _config_keys(self, kind: str) -> Callable[[JSON], list[str]]:
        """A ConfigMap or Secret wakes the Deployments whose template reads it (snapshots wake nobody)."""

        def keys(obj: JSON) -> list[str]:
            meta = obj.get("metadata") or {}
            if (meta.get("labels") or {}).get(SNAPSHOT_LABEL) or self.deployments is None:
                return []
            namespace, ref = meta.get("namespace"), (kind, str(meta.get("name")))
            return [
                object_key(d)
                for d in self.deployments.list()
                if (d.get("metadata") or {}).get("namespace") == namespace and ref in self._template_refs(d)
            ]

        return keys

    def _pod_keys(self, pod: JSON) -> list[str]:
        """Only Recreate waits on pods (for the old ones to be gone): wake those Deployments."""
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet" or self.replica_sets is None:
            return []
        namespace = (pod.get("metadata") or {}).get("namespace")
        rs = self.replica_sets.get(f"{namespace}/{ref.get('name')}")
        if rs is None:
            return []
        keys = self._rs_keys(rs) if controller_ref(rs) is not None else []
        if not keys or self.deployments is None:
            return []
        d = self.deployments.get(keys[0])
        return keys if d is not None and not is_rolling(d) else []

    # ------------------------------------------------------------------ expectations

    def _expect(self, key: str, obj: JSON) -> None:
        rv = _int((obj.get("metadata") or {}).get("resourceVersion"))
        current = self._expected.get(key)
        if rv and (current is None or rv > current[0]):
            self._expected[key] = (rv, self.clock.monotonic())

    def _satisfied(self, key: str) -> bool:
        assert self.replica_sets is not None
        expected = self._expected.get(key)
        if expected is None:
            return True
        rv, since = expected
        if (
            _int(self.replica_sets.resource_version) >= rv
            or self.clock.monotonic() - since > EXPECTATION_TIMEOUT
        ):
            del self._expected[key]
            return True
        return False

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        assert self.deployments is not None and self.replica_sets is not None and self.pods is not None
        d = self.deployments.get(key)
        if d is None:
            self._expected.pop(key, None)
            return None
        if not self._satisfied(key) or not self._pins_seen(key, d):
            return 1.0  # our own writes will arrive as events; this only guards against a lost one
        if not (d.get("metadata") or {}).get("deletionTimestamp") and await self._pin_config(key, d):
            return None  # the Deployment's update event brings the sync that rolls out
        namespace = (d.get("metadata") or {}).get("namespace")
        rss = [
            rs for rs in self.replica_sets.list() if (rs.get("metadata") or {}).get("namespace") == namespace
        ]
        plan = plan_deployment(d, rss, self.clock.now(), self._pod_counts(namespace, rss))
        await self._apply(key, d, plan)
        if self._satisfied(key):
            await self._release_snapshots(d, rss)
        return plan.requeue_after

    # ------------------------------------------------------------------ config pins

    def _pins_seen(self, key: str, d: JSON) -> bool:
        expected = self._pinned.get(key)
        if expected is None:
            return True
        if _int((d.get("metadata") or {}).get("resourceVersion")) >= expected:
            del self._pinned[key]
            return True
        return False

    async def _pin_config(self, key: str, d: JSON) -> bool:
        """Create snapshots and move pins (``configpins.plan_pins``); True when the Deployment was written."""
        meta = d.get("metadata") or {}
        namespace = meta.get("namespace")
        live: dict[tuple[str, str], JSON | None] = {}
        snapshots: dict[tuple[str, str], JSON | None] = {}
        for kind, name in self._template_refs(d):
            obj = self.config[kind].get(f"{namespace}/{name}")
            live[(kind, name)] = obj
            if obj is not None:
                target = snapshot_name(name, content_hash(kind, name, obj))
                snapshots[(kind, target)] = self.config[kind].get(f"{namespace}/{target}")
        plan = plan_pins(d, live, snapshots)
        for write in plan.snapshots:
            if not await self._snapshot_write(d, write):
                return True  # a snapshot appeared meanwhile: sync again once the cache has it
        for event in plan.events:
            await self.events.record(d, event.type, event.reason, event.message)
        if plan.deployment is None:
            return False
        result = await self.transport.update(DEPLOYMENTS, namespace, str(meta.get("name")), plan.deployment)
        self._pinned[key] = _int((result.get("metadata") or {}).get("resourceVersion"))
        return True

    async def _snapshot_write(self, d: JSON, write: SnapshotWrite) -> bool:
        rt = CONFIG_KINDS[write.kind]
        namespace = (d.get("metadata") or {}).get("namespace")
        uid = str((d.get("metadata") or {}).get("uid"))
        try:
            if write.op == "create":
                assert write.body is not None
                await self.transport.create(rt, namespace, write.body)
            elif write.op == "own":
                body = {"metadata": {"ownerReferences": [snapshot_owner(d)]}}
                await self.transport.patch(rt, namespace, write.name, STRATEGIC, body)
            elif write.delete:
                await self.transport.delete(rt, namespace, write.name)
            else:
                body = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}]}}
                await self.transport.patch(rt, namespace, write.name, STRATEGIC, body)
        except st.ApiError as exc:
            if exc.reason == "AlreadyExists" or exc.code == 404:
                return False
            raise
        return True

    async def _release_snapshots(self, d: JSON, rss: list[JSON]) -> None:
        """Release snapshots that neither the template nor any ReplicaSet of the Deployment pins any more."""
        meta = d.get("metadata") or {}
        uid, namespace = str(meta.get("uid")), meta.get("namespace")
        own = [rs for rs in rss if (controller_ref(rs) or {}).get("uid") == uid]
        if not any(template_pins(obj) for obj in (d, *own)):
            return  # nothing was ever pinned here: spare the scan over every ConfigMap and Secret
        owned = [
            (kind, obj)
            for kind, informer in self.config.items()
            for obj in informer.list()
            if (obj.get("metadata") or {}).get("namespace") == namespace
            and ((obj.get("metadata") or {}).get("labels") or {}).get(SNAPSHOT_LABEL)
            and owned_by(obj, uid)
        ]
        if not owned:
            return
        for write in plan_releases(d, own, owned, self.clock.now()):
            await self._snapshot_write(d, write)

    def _pod_counts(self, namespace: Any, rss: list[JSON]) -> dict[str, PodCounts]:
        assert self.pods is not None
        uids = {(rs.get("metadata") or {}).get("uid") for rs in rss}
        active: dict[str, int] = {}
        running: dict[str, int] = {}
        for pod in self.pods.list():
            meta = pod.get("metadata") or {}
            ref = controller_ref(pod)
            if meta.get("namespace") != namespace or ref is None or ref.get("uid") not in uids:
                continue
            uid = str(ref.get("uid"))
            if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                running[uid] = running.get(uid, 0) + 1
            if is_pod_active(pod):
                active[uid] = active.get(uid, 0) + 1
        return {
            uid: PodCounts(active.get(uid, 0), running.get(uid, 0)) for uid in running.keys() | active.keys()
        }

    async def _apply(self, key: str, d: JSON, plan: DeploymentPlan) -> None:
        for event in plan.events:
            await self.events.record(d, event.type, event.reason, event.message)
        if plan.adopt or plan.release:
            await self._claim(key, d, plan)
            return  # plan again on the claimed set once the cache shows it
        for write in plan.writes:
            if not await self._write(key, d, write):
                return
        if plan.deployment is not None:
            meta = d.get("metadata") or {}
            await self.transport.update(
                DEPLOYMENTS,
                meta.get("namespace"),
                str(meta.get("name")),
                plan.deployment,
                subresource="status",
            )

    async def _claim(self, key: str, d: JSON, plan: DeploymentPlan) -> None:
        meta = d.get("metadata") or {}
        if plan.adopt:
            try:
                fresh = await self.transport.get(DEPLOYMENTS, meta.get("namespace"), str(meta.get("name")))
            except st.ApiError as exc:
                if exc.code == 404:
                    return
                raise
            fmeta = fresh.get("metadata") or {}
            if fmeta.get("uid") != meta.get("uid") or fmeta.get("deletionTimestamp"):
                return
        ref = owner_reference(d, "apps/v1", "Deployment")
        for rs, body in [
            *((rs, release_patch(rs, str(meta.get("uid")))) for rs in plan.release),
            *((rs, adopt_patch(rs, ref)) for rs in plan.adopt),
        ]:
            rmeta = rs.get("metadata") or {}
            try:
                result = await self.transport.patch(
                    REPLICASETS, rmeta.get("namespace"), str(rmeta.get("name")), STRATEGIC, body
                )
            except st.ApiError as exc:
                if exc.code == 404:
                    continue
                raise
            self._expect(key, result)

    async def _write(self, key: str, d: JSON, write: RSWrite) -> bool:
        """Send one ReplicaSet write; False when the sync must stop here (and will be retried)."""
        meta = write.rs.get("metadata") or {}
        namespace, name = meta.get("namespace"), str(meta.get("name"))
        if write.op == "create":
            body = copy.deepcopy(write.rs)
            body.pop("status", None)
            try:
                result = await self.transport.create(REPLICASETS, namespace, body)
            except st.ApiError as exc:
                if exc.reason == "AlreadyExists":
                    return await self._collision(d, write)
                await self._create_failed(d, name, exc)
                raise
        elif write.op == "update":
            result = await self.transport.update(REPLICASETS, namespace, name, write.rs)
        else:
            try:
                result = await self.transport.delete(REPLICASETS, namespace, name)
            except st.ApiError as exc:
                if exc.code != 404:
                    raise
                return True
        self._expect(key, result)
        for event in write.events:
            await self.events.record(d, event.type, event.reason, event.message)
        return True

    async def _collision(self, d: JSON, write: RSWrite) -> bool:
        """The ReplicaSet name is taken. Ours with the same template: wait for the cache. Otherwise the hash
        collided: bump collisionCount so the next name differs (``getNewReplicaSet``)."""
        meta = write.rs.get("metadata") or {}
        dmeta = d.get("metadata") or {}
        try:
            existing = await self.transport.get(REPLICASETS, meta.get("namespace"), str(meta.get("name")))
        except st.ApiError as exc:
            if exc.code == 404:
                return False  # gone meanwhile: try again on the next sync
            raise
        ref = controller_ref(existing)
        template = (d.get("spec") or {}).get("template")
        if (
            ref is not None
            and ref.get("uid") == dmeta.get("uid")
            and equal_ignore_hash((existing.get("spec") or {}).get("template"), template)
        ):
            return False
        updated = copy.deepcopy(d)
        status = updated.setdefault("status", {})
        status["collisionCount"] = _int(status.get("collisionCount")) + 1
        await self.transport.update(
            DEPLOYMENTS, dmeta.get("namespace"), str(dmeta.get("name")), updated, subresource="status"
        )
        raise st.ApiError(
            409, "AlreadyExists", f"replica set {meta.get('name')} exists with another template"
        )

    async def _create_failed(self, d: JSON, name: str, exc: st.ApiError) -> None:
        message = f'Failed to create new replica set "{name}": {exc.message}'
        dmeta = d.get("metadata") or {}
        if has_progress_deadline(d):
            updated = copy.deepcopy(d)
            set_condition(
                updated.setdefault("status", {}),
                new_condition(PROGRESSING, "False", FAILED_RS_CREATE, message, self.clock.now()),
            )
            with contextlib.suppress(st.ApiError):  # the bigger problem is reported by the event
                await self.transport.update(
                    DEPLOYMENTS, dmeta.get("namespace"), str(dmeta.get("name")), updated, subresource="status"
                )
        await self.events.record(d, "Warning", FAILED_RS_CREATE, message)
