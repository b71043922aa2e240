"""Job controller (batch/v1): runs a Job's pods to completion, applying what ``jobplan.plan_job`` decides.

This module is the thin IO layer: it reads the job and the pods it controls from the informer caches,
asks the pure planner, and writes in a crash-safe order — uncounted pod uids first, then the pods' counted
marks, then pod deletions and creations, then the final status, then events.

The caches lag our own writes, so two kinds of expectations keep a quick second reconcile from acting on
stale state (client-go's ``ControllerExpectations``): creations (counted down as new pods appear in the
cache; pods have generated names, so a duplicate create would be a duplicate pod) and pods we marked
counted (treated as counted until the cache shows the mark). Deletions need no bookkeeping: a pod we
deleted is no longer active in the cache once its ``deletionTimestamp`` or its removal shows up, and
until then the plan is held back the same way.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.controllers.events import EventRecorder
from corral.controllers.jobplan import COUNTED_ANNOTATION, JobPlan, plan_job, pod_for
from corral.controllers.runtime import ControllerManager, controller_owner_keys
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
JOBS = REGISTRY.require("jobs.batch")
PODS = REGISTRY.require("pods")

EXPECTATIONS_TIMEOUT = 300.0  # seconds, as upstream: a lost watch event must not wedge a job forever
PATCH_MERGE = "application/merge-patch+json"


@dataclass(slots=True)
class _Expected:
    adds: int = 0
    deletes: set[str] = field(default_factory=set)  # pod uids
    counted: set[str] = field(default_factory=set)  # pod uids marked counted
    since: float = 0.0


def controller_uid(obj: JSON, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return str(ref.get("uid"))
    return None


class JobController:
    name = "job-controller"
    workers = 2

    def __init__(self, transport: Transport, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.recorder = EventRecorder(transport, "job-controller", self.clock)
        self._expected: dict[str, _Expected] = {}
        self._known_pods: set[str] = set()
        self.jobs: Informer | None = None
        self.pods: Informer | None = None

    def setup(self, manager: ControllerManager) -> None:
        self.jobs = manager.watch(self, JOBS)
        self.pods = manager.watch(self, PODS, controller_owner_keys("Job"))
        self.pods.add_handler(self._observe_pod)

    def _observe_pod(self, key: str) -> None:
        """Count down creation expectations as new pods of a job appear in the cache."""
        assert self.pods is not None
        obj = self.pods.get(key)
        if obj is None:
            self._known_pods.discard(key)
            return
        if key in self._known_pods:
            return
        self._known_pods.add(key)
        jobs = controller_owner_keys("Job")(obj)
        if jobs and jobs[0] in self._expected:
            self._expected[jobs[0]].adds -= 1

    def _satisfied(self, key: str, pods: list[JSON]) -> bool:
        expected = self._expected.get(key)
        if expected is None:
            return True
        if self.clock.monotonic() - expected.since > EXPECTATIONS_TIMEOUT:
            log.warning("job %s: expectations timed out, resyncing", key)
            self._expected.pop(key, None)
            return True
        live = {str(p["metadata"].get("uid")): p for p in pods if not p["metadata"].get("deletionTimestamp")}
        expected.deletes &= set(live)
        for uid in list(expected.counted):
            pod = live.get(uid)
            annotations = ((pod or {}).get("metadata") or {}).get("annotations") or {}
            if pod is None or annotations.get(COUNTED_ANNOTATION) == "true":
                expected.counted.discard(uid)
        return expected.adds <= 0 and not expected.deletes

    def _expect(self, key: str) -> _Expected:
        found = self._expected.get(key)
        if found is None:
            found = self._expected[key] = _Expected(since=self.clock.monotonic())
        return found

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: str) -> float | None:
        assert self.jobs is not None and self.pods is not None
        job = self.jobs.get(key)
        if job is None:
            self._expected.pop(key, None)
            return None
        meta = job.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # being deleted (the garbage collector takes the pods)
        uid = str(meta.get("uid"))
        pods = [p for p in self.pods.list() if controller_uid(p, "Job") == uid]
        satisfied = self._satisfied(key, pods)
        counted = frozenset(self._expected[key].counted) if key in self._expected else frozenset()
        plan = plan_job(job, pods, self.clock.now(), may_manage=satisfied, counted_uids=counted)
        if plan.delete_job:
            await self._delete_finished(job)
            return None
        await self._apply(key, job, plan)
        expected = self._expected.get(key)
        if expected is None:
            return plan.requeue_after
        if expected.adds <= 0 and not expected.deletes and not expected.counted:
            self._expected.pop(key, None)
            return plan.requeue_after
        # Waiting to see our own writes: their watch events requeue us; this is the fallback.
        return min(plan.requeue_after if plan.requeue_after is not None else 1.0, 1.0)

    async def _apply(self, key: str, job: JSON, plan: JobPlan) -> None:
        current = job
        namespace = job["metadata"]["namespace"]
        if plan.flush_status is not None:
            current = await self._write_status(current, plan.flush_status)
        for name in plan.mark_counted:
            pod_uid = await self._mark_counted(namespace, name)
            if pod_uid:
                self._expect(key).counted.add(pod_uid)
        for gone in plan.delete:
            self._expect(key).deletes.add(gone.uid)
            try:
                await self.transport.delete(PODS, namespace, gone.name, precondition_uid=gone.uid)
            except st.ApiError as exc:
                self._expect(key).deletes.discard(gone.uid)
                if exc.code != 404:
                    await self.recorder.record(
                        job, "Warning", "FailedDelete", f"Error deleting: {exc.message}"
                    )
                    raise
                continue
            await self.recorder.record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {gone.name}")
        created = 0
        if plan.create:
            expected = self._expect(key)
            expected.adds = len(plan.create)
            expected.since = self.clock.monotonic()
            failure: st.ApiError | None = None
            for index in plan.create:
                try:
                    pod = await self.transport.create(PODS, namespace, pod_for(job, index))
                except st.ApiError as exc:
                    expected.adds -= 1
                    failure = exc
                    await self.recorder.record(
                        job, "Warning", "FailedCreate", f"Error creating: {exc.message}"
                    )
                    continue
                created += 1
                name = pod["metadata"]["name"]
                await self.recorder.record(job, "Normal", "SuccessfulCreate", f"Created pod: {name}")
            if failure is not None and not created:
                raise failure
        status = copy.deepcopy(plan.status)
        if created:
            status["active"] = int(status.get("active") or 0) + created
        if status != (current.get("status") or {}):
            await self._write_status(current, status)
        for event in plan.events:
            await self.recorder.record(job, event.type, event.reason, event.message)

    async def _write_status(self, job: JSON, status: JSON) -> JSON:
        updated = copy.deepcopy(job)
        updated["status"] = status
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        return await self.transport.update(JOBS, ns, name, updated, subresource="status")

    async def _mark_counted(self, namespace: str, name: str) -> str | None:
        body = {"metadata": {"annotations": {COUNTED_ANNOTATION: "true"}}}
        try:
            pod = await self.transport.patch(PODS, namespace, name, PATCH_MERGE, body)
        except st.ApiError as exc:
            if exc.code == 404:
                return None
            raise
        return str(pod["metadata"].get("uid"))

    async def _delete_finished(self, job: JSON) -> None:
        """``ttlSecondsAfterFinished`` ran out: delete the job and, in the foreground, its pods."""
        meta = job["metadata"]
        try:
            await self.transport.delete(
                JOBS,
                meta["namespace"],
                meta["name"],
                propagation_policy="Foreground",
                precondition_uid=meta["uid"],
            )
        except st.ApiError as exc:
            if exc.code != 404 and exc.reason != "Conflict":
                raise
            return
        log.info("job %s: deleted, its ttlSecondsAfterFinished ran out", object_key(job))
