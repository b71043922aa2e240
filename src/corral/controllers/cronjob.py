"""CronJob controller (batch/v1): starts Jobs on schedule, applying what ``cronplan.plan_cronjob`` decides.

The IO layer only: read the cronjob and the jobs it controls from the caches, confirm with live lookups what
the cache cannot tell (an active job that seems gone, a job missing from a possibly stale status), delete
replaced and expired jobs, create the scheduled job (its deterministic name makes a retry an AlreadyExists),
write the status compare-and-set, then record events. Time comes from the injected clock; the reconcile
returns the delay until the next schedule time.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer
from corral.controllers.cronplan import CronPlan, job_ref, plan_cronjob
from corral.controllers.events import EventRecorder
from corral.controllers.job import controller_uid
from corral.controllers.runtime import ControllerManager, controller_owner_keys
from corral.util.clock import Clock, SystemClock, rfc3339

log = logging.getLogger(__name__)

JSON = dict[str, Any]
CRONJOBS = REGISTRY.require("cronjobs.batch")
JOBS = REGISTRY.require("jobs.batch")


class CronJobController:
    name = "cronjob-controller"
    workers = 2

    def __init__(self, transport: Transport, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.recorder = EventRecorder(transport, "cronjob-controller", self.clock)
        self.cronjobs: Informer | None = None
        self.jobs: Informer | None = None

    def setup(self, manager: ControllerManager) -> None:
        self.cronjobs = manager.watch(self, CRONJOBS)
        self.jobs = manager.watch(self, JOBS, controller_owner_keys("CronJob"))

    async def reconcile(self, key: str) -> float | None:
        assert self.cronjobs is not None and self.jobs is not None
        cj = self.cronjobs.get(key)
        if cj is None:
            return None
        uid = str(cj["metadata"].get("uid"))
        jobs = [j for j in self.jobs.list() if controller_uid(j, "CronJob") == uid]
        now = self.clock.now()
        plan = plan_cronjob(cj, jobs, now)
        if plan.unexpected:
            # Our own status write may not be in the cache yet: check the stored cronjob before complaining.
            live = await self._get(cj)
            if live is None:
                return None
            if live["metadata"].get("resourceVersion") != cj["metadata"].get("resourceVersion"):
                cj = live
                plan = plan_cronjob(cj, jobs, now)
        if plan.lookups:
            missing = {str(ref.get("uid")) for ref in plan.lookups if await self._job_gone(ref)}
            if missing:
                plan = plan_cronjob(cj, jobs, now, missing)
        await self._apply(cj, plan)
        return plan.requeue_after

    async def _apply(self, cj: JSON, plan: CronPlan) -> None:
        namespace = cj["metadata"]["namespace"]
        for gone in plan.replace + plan.cleanup:
            try:
                await self.transport.delete(JOBS, namespace, gone.name, precondition_uid=gone.uid)
            except st.ApiError as exc:
                if exc.code != 404 and exc.reason != "Conflict":
                    raise
        status = copy.deepcopy(plan.status)
        if plan.create is not None and plan.scheduled is not None:
            job = await self._create(cj, plan.create)
            if job is not None:
                refs = list(status.get("active") or [])
                if not any(r.get("uid") == job["metadata"].get("uid") for r in refs):
                    refs.append(job_ref(job))
                status["active"] = refs
                status["lastScheduleTime"] = rfc3339(plan.scheduled)
        if status != (cj.get("status") or {}):
            updated = copy.deepcopy(cj)
            updated["status"] = status
            await self.transport.update(
                CRONJOBS, namespace, cj["metadata"]["name"], updated, subresource="status"
            )
        for event in plan.events:
            await self.recorder.record(cj, event.type, event.reason, event.message)
        for name in plan.unexpected:
            await self.recorder.record(
                cj,
                "Warning",
                "UnexpectedJob",
                f"Saw a job that the controller did not create or forgot: {name}",
            )

    async def _create(self, cj: JSON, body: JSON) -> JSON | None:
        """Create the scheduled job; the stored one when it already exists and is ours, else None."""
        namespace = cj["metadata"]["namespace"]
        try:
            job = await self.transport.create(JOBS, namespace, body)
        except st.ApiError as exc:
            if exc.reason != "AlreadyExists":
                await self.recorder.record(
                    cj, "Warning", "FailedCreate", f"Error creating job: {exc.message}"
                )
                raise
            existing = await self.transport.get(JOBS, namespace, body["metadata"]["name"])
            if controller_uid(existing, "CronJob") != cj["metadata"].get("uid"):
                return None  # someone else's job of that name: leave it and its status alone
            return existing
        await self.recorder.record(cj, "Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}")
        return job

    async def _get(self, cj: JSON) -> JSON | None:
        meta = cj["metadata"]
        try:
            live = await self.transport.get(CRONJOBS, meta["namespace"], meta["name"])
        except st.ApiError as exc:
            if exc.code == 404:
                return None
            raise
        return live if live["metadata"].get("uid") == meta.get("uid") else None

    async def _job_gone(self, ref: JSON) -> bool:
        try:
            live = await self.transport.get(JOBS, str(ref.get("namespace")), str(ref.get("name")))
        except st.ApiError as exc:
            if exc.code == 404:
                return True
            raise
        return bool(live["metadata"].get("uid") != ref.get("uid"))
