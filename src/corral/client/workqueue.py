"""A work queue for controllers: deduplicating, with per-key exponential backoff (client-go's workqueue).

Guarantees: a key is handed to at most one worker at a time; a key added while it is being processed is
processed again after ``done``; a key added many times before a worker takes it is processed once.
Written by hand because this small piece of controller machinery has no maintained asyncio library.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from corral import observability
from corral.observability.registry import WORKQUEUE_ADDS, WORKQUEUE_RETRIES
from corral.util.backoff import ExponentialBackoff

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down; workers should exit."""


class _Uncounted:
    """Stands in for the metric children of an unnamed queue (tests, short-lived queues)."""

    def inc(self) -> None:
        pass


class WorkQueue(Generic[K]):
    def __init__(self, backoff: ExponentialBackoff | None = None, name: str | None = None) -> None:
        """``name`` exports the queue's depth, adds and retries (``workqueue_*{name}``)."""
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._delayed: dict[K, asyncio.TimerHandle] = {}
        self._failures: dict[K, int] = {}
        self._backoff = backoff or ExponentialBackoff(base=0.005, cap=300.0)
        self._shutdown = False
        self._adds: Any = _Uncounted()
        self._retries: Any = _Uncounted()
        if name is not None:
            self._adds, self._retries = WORKQUEUE_ADDS.labels(name), WORKQUEUE_RETRIES.labels(name)
            observability.track_queue(name, self)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: K) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        self._adds.inc()
        if key in self._processing:
            return  # re-queued by done()
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        existing = self._delayed.get(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if existing is not None:
            if existing.when() <= when:
                return  # an earlier retry is already scheduled
            existing.cancel()
        self._delayed[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        """Requeue after a failure: the delay doubles with each consecutive failure of the key."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self._retries.inc()
        self.add_after(key, self._backoff.delay(failures))

    def forget(self, key: K) -> None:
        """Reset the key's failure count (after a success)."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> K:
        while not self._queue:
            if self._shutdown:
                raise ShutDown()
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutdown:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        self._shutdown = True
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
