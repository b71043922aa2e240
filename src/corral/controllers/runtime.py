"""Controller runtime: shared informers → per-controller work queues → level-triggered ``reconcile``.

A controller declares which resources it watches and how an event maps to keys of its own kind (usually
the object itself, or its controlling owner through ``ownerReferences``); handlers only enqueue keys.
Workers take a key, call ``reconcile(key)`` — which reads the whole desired and observed state from the
informer caches and converges — and requeue with per-key exponential backoff when it raises, or after the
delay it returns.

Controllers run only while this process holds the controller-manager Lease (``leader.py``), so several
server replicas can run later with one active controller set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from corral.api.resources import ResourceType
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.client.workqueue import ShutDown, WorkQueue
from corral.observability.registry import RECONCILE_DURATION, RECONCILE_ERRORS
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
KeyMapper = Callable[[JSON], list[str]]


class Controller(Protocol):
    name: str
    workers: int

    def setup(self, manager: ControllerManager) -> None:
        """Ask the manager for informers and register event → key mappings with ``manager.watch``."""
        ...

    async def reconcile(self, key: str) -> float | None:
        """Converge one object. Return seconds until it should be looked at again, or None."""
        ...


def controller_owner_keys(kind: str) -> KeyMapper:
    """Map an object to the key of its controlling owner of ``kind`` (same namespace)."""

    def mapper(obj: JSON) -> list[str]:
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == kind:
                namespace = meta.get("namespace")
                return [f"{namespace}/{ref.get('name')}" if namespace else str(ref.get("name"))]
        return []

    return mapper


def own_key(obj: JSON) -> list[str]:
    return [object_key(obj)]


class ControllerManager:
    """Owns the shared informers and runs the controllers' workers."""

    def __init__(self, transport: Transport, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self._informers: dict[str, Informer] = {}
        self._controllers: list[tuple[Controller, WorkQueue[str]]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def informer(self, rt: ResourceType) -> Informer:
        """The shared, cluster-wide informer of ``rt`` (created on first request)."""
        key = f"{rt.group}/{rt.plural}"
        found = self._informers.get(key)
        if found is None:
            found = self._informers[key] = Informer(self.transport, rt, None)
        return found

    def queue_of(self, controller: Controller) -> WorkQueue[str]:
        for owner, queue in self._controllers:
            if owner is controller:
                return queue
        raise KeyError(controller.name)

    def watch(self, controller: Controller, rt: ResourceType, mapper: KeyMapper = own_key) -> Informer:
        """Enqueue ``mapper(obj)`` on ``controller``'s queue whenever an object of ``rt`` changes or goes."""
        informer = self.informer(rt)
        queue = self.queue_of(controller)
        last_seen: dict[str, JSON] = {}

        def handler(key: str) -> None:
            obj = informer.get(key)
            # A deleted object is gone from the cache: map it through the last state we saw.
            source = obj if obj is not None else last_seen.pop(key, None)
            if obj is not None:
                last_seen[key] = obj
            if source is None:
                return
            for target in mapper(source):
                queue.add(target)

        informer.add_handler(handler)
        return informer

    def add(self, controller: Controller) -> None:
        self._controllers.append((controller, WorkQueue(name=controller.name)))
        controller.setup(self)

    async def run(self) -> None:
        """Start informers, wait for their first sync, then run every controller's workers until cancelled."""
        self._tasks = [asyncio.create_task(i.run(), name=f"informer-{k}") for k, i in self._informers.items()]
        try:
            await asyncio.gather(*(i.wait_synced() for i in self._informers.values()))
            workers = [
                asyncio.create_task(self._worker(c, q), name=f"{c.name}-{n}")
                for c, q in self._controllers
                for n in range(max(1, c.workers))
            ]
            self._tasks += workers
            await asyncio.gather(*workers)
        finally:
            for _, queue in self._controllers:
                queue.shutdown()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _worker(self, controller: Controller, queue: WorkQueue[str]) -> None:
        reconciled = RECONCILE_DURATION.labels(controller.name)
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            started = time.perf_counter()
            try:
                again = await controller.reconcile(key)
                reconciled.observe(time.perf_counter() - started)
                queue.forget(key)
                if again is not None:
                    queue.add_after(key, again)
            except asyncio.CancelledError:
                raise
            except st.ApiError as exc:
                _failed(controller.name, reconciled, started)
                if exc.reason not in ("Conflict", "AlreadyExists") and exc.code != 404:
                    log.warning("%s %s: %s", controller.name, key, exc)
                queue.add_rate_limited(key)
            except Exception:
                _failed(controller.name, reconciled, started)
                log.exception("%s %s: reconcile failed", controller.name, key)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)


def _failed(controller: str, reconciled: Any, started: float) -> None:
    reconciled.observe(time.perf_counter() - started)
    RECONCILE_ERRORS.labels(controller).inc()
