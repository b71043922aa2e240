"""Leader election on a coordination.k8s.io Lease: only the holder runs the controllers.

The Lease ``kube-system/corral-controller-manager`` holds the leader's identity and renew time; every write is
compare-and-set on its resourceVersion, so two candidates can never both believe they won. A leader that
cannot renew within the lease duration steps down (its ``run`` callable is cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
LEASES = REGISTRY.require("leases.coordination.k8s.io")
LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "corral-controller-manager"


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderElector:
    def __init__(
        self,
        transport: Transport,
        identity: str,
        clock: Clock | None = None,
        *,
        lease_duration: float = 15.0,
        renew_every: float = 5.0,
    ) -> None:
        self.transport = transport
        self.identity = identity
        self.clock: Clock = clock or SystemClock()
        self.lease_duration = lease_duration
        self.renew_every = renew_every
        self.is_leader = False

    def _spec(self, acquired: str | None, transitions: int) -> JSON:
        now = _micro(self.clock.now())
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire(self) -> bool:
        """One round of acquire-or-renew. True when this identity holds the lease afterwards."""
        try:
            lease = await self.transport.get(LEASES, LEASE_NAMESPACE, LEASE_NAME)
        except st.ApiError as exc:
            if exc.code != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE},
                "spec": self._spec(None, 0),
            }
            try:
                await self.transport.create(LEASES, LEASE_NAMESPACE, body)
            except st.ApiError as create_exc:
                if create_exc.reason == "AlreadyExists":
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = spec.get("renewTime")
        expired = True
        if renewed:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            expired = self.clock.now() > _parse_micro(renewed) + timedelta(seconds=duration)
        if holder not in (None, "", self.identity) and not expired:
            return False
        updated = copy.deepcopy(lease)
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        acquired = spec.get("acquireTime") if holder == self.identity else None
        updated["spec"] = self._spec(acquired, transitions)
        try:
            await self.transport.update(LEASES, LEASE_NAMESPACE, LEASE_NAME, updated)
        except st.ApiError as exc:
            if exc.reason == "Conflict":
                return False
            raise
        return True

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign forever; run ``lead()`` while leading and cancel it when leadership is lost."""
        task: asyncio.Task[None] | None = None
        last_renew = 0.0
        try:
            while True:
                try:
                    held = await self.try_acquire()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("leader election: %s", exc)
                    held = False
                now = self.clock.monotonic()
                if held:
                    last_renew = now
                if held and task is None:
                    log.info("%s became the controller-manager leader", self.identity)
                    self.is_leader = True
                    task = asyncio.create_task(lead())
                elif task is not None and not held and now - last_renew > self.lease_duration:
                    log.warning("%s lost the controller-manager lease", self.identity)
                    self.is_leader = False
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                    task = None
                if task is not None and task.done():
                    task.result()  # surface a crash of the controllers
                    task = None
                await asyncio.sleep(self.renew_every)
        finally:
            self.is_leader = False
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
