"""The engine shared by every local store backend: in-memory state, one batching writer, history and watch.

Boundary: this module knows nothing about files. A backend subclasses :class:`EngineStore` and overrides
:meth:`EngineStore._persist` (write one batch durably, or raise) and :meth:`EngineStore._close_backend`.
The memory backend overrides neither.

How a write travels:

1. ``create``/``update``/``delete`` append an operation to a queue and await its future.
2. One writer task takes every queued operation (up to ``max_batch``) and applies them in order to a staged
   view. Compare-and-set checks see the committed state plus the earlier operations of the same batch; an
   operation that fails (:class:`NotFound`, :class:`AlreadyExists`, :class:`Conflict`, or a value that is not
   plain JSON) fails alone and takes no revision. Each successful one takes the next revision, which is
   written into a fresh copy of the object as ``metadata.resourceVersion``.
3. The whole batch is persisted at once (one transaction, one fsync for SQLite). Meanwhile new operations
   queue up and form the next batch: this is group commit, throughput is not bounded by one fsync per write.
4. Only after the persist succeeded is the batch published: state, revision, history, watchers, and then the
   callers' futures. If the persist raises, every operation of the batch fails with :class:`CommitFailed`
   (its ``__cause__`` is the backend's exception) and nothing changes.

A caller that is cancelled before its operation is staged withdraws it; once staging began the write may
still be applied.

Reads (``get``, ``list``) never wait for the writer: they see the committed state, which is exactly what has
been acknowledged. Objects are shared, not copied: the store replaces objects, never mutates them.

Watches: the last ``history_window`` events are kept in memory (the history starts empty when a persistent
store is reopened). ``watch(prefix, since)`` replays the retained events after ``since`` and then follows live
events. When an event after ``since`` is no longer retained, :class:`Expired` is raised at once; its
``oldest`` is the smallest ``since`` that would have been accepted. Each watch buffers its own events; a watch
whose consumer lags more than ``watch_buffer`` live events behind is terminated (its buffer is dropped,
``overflowed`` is set and its iteration ends) instead of growing without bound. The consumer then re-watches
from the last revision it processed, and gets :class:`Expired` if that is gone too: the usual list-then-watch
recovery. Fan-out goes by prefix group, so an event only touches the watches whose prefix matches its key.

Sorted keys are a plain list kept with :mod:`bisect` (no extra dependency): insert and remove are a memmove,
which stays cheap for the tens of thousands of objects a single node holds.
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import functools
import itertools
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from corral.store.base import (
    AlreadyExists,
    Conflict,
    Event,
    EventType,
    Expired,
    JSONObject,
    ListResult,
    NotFound,
    StoreClosed,
    StoreError,
    Trigger,
)

DEFAULT_HISTORY_WINDOW: Final = 10_000
DEFAULT_WATCH_BUFFER: Final = 10_000
DEFAULT_MAX_BATCH: Final = 512

# Larger than any character a key can hold, so ``prefix + _MAX_CHAR`` bounds the keys under ``prefix``.
_MAX_CHAR: Final = "\U0010ffff"
# Only plain JSON goes in: what the memory backend keeps must be what SQLite would give back.
_ORJSON_OPTIONS: Final = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

# One staged write handed to a backend: the key and the encoded object, or ``None`` for a delete.
Write = tuple[str, bytes | None]


class CommitFailed(StoreError):
    """The batch holding this write could not be persisted; nothing of it was applied.

    ``__cause__`` is the backend's exception.
    """


class _OpKind(enum.Enum):
    CREATE = enum.auto()
    UPDATE = enum.auto()
    DELETE = enum.auto()


@dataclass(slots=True)
class _Op:
    kind: _OpKind
    key: str
    obj: JSONObject | None
    expected: int | None
    future: asyncio.Future[JSONObject]


@dataclass(slots=True)
class StoreStats:
    """Counters of the writer, for benchmarks and tests."""

    batches: int = 0
    writes: int = 0
    largest_batch: int = 0


def revision_of(obj: JSONObject) -> int:
    """The revision the store wrote into ``obj``."""
    return int(obj["metadata"]["resourceVersion"])


def encode(obj: JSONObject) -> bytes:
    """Serialise a stored object; raise :class:`TypeError` when it is not plain JSON."""
    return orjson.dumps(obj, option=_ORJSON_OPTIONS)


def _stamp(obj: Any, revision: int) -> JSONObject:
    if not isinstance(obj, dict):
        raise TypeError(f"object must be a dict, not {type(obj).__name__}")
    metadata = obj.get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    return {**obj, "metadata": {**metadata, "resourceVersion": str(revision)}}


class StoreWatch:
    """One subscription: a private buffer of events and at most one waiting consumer."""

    __slots__ = (
        "_buffer",
        "_done",
        "_max_lag",
        "_prefix",
        "_replay_left",
        "_since",
        "_store",
        "_ticked",
        "_waiter",
        "overflowed",
        "trigger",
    )

    def __init__(
        self,
        store: EngineStore,
        prefix: str,
        since: int,
        replay: list[Event],
        max_lag: int,
        trigger: Trigger | None = None,
    ) -> None:
        self.trigger = trigger
        self._store: EngineStore | None = store
        self._prefix = prefix
        self._since = since
        self._buffer: deque[Event] = deque(replay)
        # Replayed events were chosen by the consumer; only live events count against the lag bound.
        self._replay_left = len(replay)
        self._max_lag = max_lag
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._ticked = False
        self.overflowed = False
        """True when the watch was ended because its consumer lagged too far behind."""

    @property
    def prefix(self) -> str:
        return self._prefix

    def __aiter__(self) -> StoreWatch:
        return self

    async def __anext__(self) -> Event:
        while True:
            event = await self.next_or_tick()
            if event is not None:
                return event

    async def next_or_tick(self) -> Event | None:
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            if self._ticked:
                self._ticked = False
                return None
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        self._ticked = False  # events are flowing: the tick has nothing to add
        if self._replay_left:
            self._replay_left -= 1
        return self._buffer.popleft()

    def tick(self) -> None:
        self._ticked = True
        self._wake()

    def close(self) -> None:
        """End the iteration now, dropping undelivered events."""
        self._buffer.clear()
        self._end()

    def _deliver(self, events: Sequence[Event]) -> None:
        if self._done:
            return
        since = self._since
        self._buffer.extend(e for e in events if e.revision > since)
        if len(self._buffer) - self._replay_left > self._max_lag:
            self.overflowed = True
            self.close()
            return
        self._wake()

    def _finish(self) -> None:
        """The store closed: deliver what is buffered, then end."""
        self._store = None
        self._done = True
        self._wake()

    def _end(self) -> None:
        self._done = True
        store, self._store = self._store, None
        if store is not None:
            store._unregister(self)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class EngineStore:
    """A :class:`~corral.store.base.Store` whose state lives in memory; subclasses add persistence."""

    def __init__(
        self,
        *,
        objects: dict[str, JSONObject] | None = None,
        revision: int = 0,
        history_window: int = DEFAULT_HISTORY_WINDOW,
        watch_buffer: int = DEFAULT_WATCH_BUFFER,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        if history_window < 0 or watch_buffer < 1 or max_batch < 1:
            raise ValueError("history_window must be >= 0, watch_buffer and max_batch >= 1")
        self._objects: dict[str, JSONObject] = objects if objects is not None else {}
        self._keys: list[str] = sorted(self._objects)
        self._revision = revision
        self._history: deque[Event] = deque(maxlen=history_window)
        self._watch_buffer = watch_buffer
        self._max_batch = max_batch
        self._watchers: dict[str, dict[StoreWatch, None]] = {}  # untriggered, by prefix
        # Triggered watches: prefix → field → (how to read it, value → watches).
        self._triggered: dict[
            str, dict[str, tuple[Callable[[JSONObject], str], dict[str, dict[StoreWatch, None]]]]
        ] = {}
        self._pending: deque[_Op] = deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self.stats = StoreStats()

    # ----- reads

    @property
    def revision(self) -> int:
        """The newest committed revision."""
        return self._revision

    async def get(self, key: str) -> JSONObject:
        self._check_open(key)
        try:
            return self._objects[key]
        except KeyError:
            raise NotFound(key) from None

    async def list(self, prefix: str) -> ListResult:
        self._check_open(prefix)
        keys = self._keys
        start = bisect_left(keys, prefix)
        end = bisect_left(keys, prefix + _MAX_CHAR, start)
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        objects = self._objects
        return ListResult([objects[k] for k in keys[start:end]], self._revision)

    # ----- read-only views for metrics (corral.observability); no copies, no awaits

    def count(self, prefix: str) -> int:
        """How many objects have a key under ``prefix``."""
        keys = self._keys
        start = bisect_left(keys, prefix)
        end = bisect_left(keys, prefix + _MAX_CHAR, start)
        while end < len(keys) and keys[end].startswith(prefix):
            end += 1
        return end - start

    def watch_counts(self) -> dict[str, int]:
        """Open watches per key prefix."""
        counts = {prefix: len(group) for prefix, group in self._watchers.items()}
        for prefix, fields in self._triggered.items():
            triggered = sum(len(group) for _, buckets in fields.values() for group in buckets.values())
            counts[prefix] = counts.get(prefix, 0) + triggered
        return counts

    # ----- writes

    async def create(self, key: str, obj: JSONObject) -> JSONObject:
        return await self._submit(_OpKind.CREATE, key, obj, None)

    async def update(self, key: str, obj: JSONObject, expected_revision: int | None) -> JSONObject:
        return await self._submit(_OpKind.UPDATE, key, obj, expected_revision)

    async def delete(self, key: str, expected_revision: int | None) -> JSONObject:
        return await self._submit(_OpKind.DELETE, key, None, expected_revision)

    def _submit(
        self, kind: _OpKind, key: str, obj: JSONObject | None, expected: int | None
    ) -> asyncio.Future[JSONObject]:
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        if self._closing:
            raise StoreClosed(key, f"{key}: store is closed")
        if self._writer is not None and self._writer.done():
            # Only cancellation (event loop shutdown) stops the writer; state may lag the disk now.
            raise StoreClosed(key, f"{key}: store writer has stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[JSONObject] = loop.create_future()
        self._pending.append(_Op(kind, key, obj, expected, future))
        if self._writer is None:
            self._writer = loop.create_task(self._run_writer(), name="corral-store-writer")
        self._wakeup.set()
        return future

    async def _run_writer(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [pending.popleft() for _ in range(min(len(pending), self._max_batch))]
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                self._fail(batch, lambda op: StoreClosed(op.key, f"{op.key}: store writer cancelled"))
                self._fail(pending, lambda op: StoreClosed(op.key, f"{op.key}: store writer cancelled"))
                raise
            except Exception as exc:  # a bug must not kill the writer and hang every later caller
                self._fail(batch, functools.partial(_commit_failed, cause=exc))

    async def _commit(self, batch: builtins.list[_Op]) -> None:
        objects = self._objects
        staged: dict[str, JSONObject | None] = {}
        revision = self._revision
        done: builtins.list[tuple[_Op, JSONObject]] = []
        events: builtins.list[Event] = []
        writes: builtins.list[Write] = []
        for op in batch:
            if op.future.done():  # the caller was cancelled before we got to it: withdrawn
                continue
            key = op.key
            try:
                current = staged[key] if key in staged else objects.get(key)
                if op.kind is _OpKind.CREATE:
                    if current is not None:
                        raise AlreadyExists(key, f"{key} already exists")
                    result = _stamp(op.obj, revision + 1)
                    stored: JSONObject | None = result
                    event_type = EventType.ADDED
                else:
                    if current is None:
                        raise NotFound(key, f"{key} not found")
                    if op.expected is not None:
                        actual = revision_of(current)
                        if actual != op.expected:
                            raise Conflict(key, op.expected, actual)
                    if op.kind is _OpKind.UPDATE:
                        result = _stamp(op.obj, revision + 1)
                        stored = result
                        event_type = EventType.MODIFIED
                    else:
                        result = _stamp(current, revision + 1)
                        stored = None
                        event_type = EventType.DELETED
                value = None if stored is None else encode(stored)
            except Exception as exc:  # not JSON, bad metadata, CAS failure: this op alone fails
                op.future.set_exception(exc)
                continue
            revision += 1
            staged[key] = stored
            writes.append((key, value))
            events.append(Event(event_type, key, result, revision, current, value))
            done.append((op, result))
        if not done:
            return
        try:
            await self._persist(writes, revision)
        except Exception as exc:
            self._fail([op for op, _ in done], functools.partial(_commit_failed, cause=exc))
            return
        self._publish(staged, revision, events)
        stats = self.stats
        stats.batches += 1
        stats.writes += len(done)
        stats.largest_batch = max(stats.largest_batch, len(done))
        for op, result in done:
            if not op.future.done():
                op.future.set_result(result)

    def _publish(
        self, staged: dict[str, JSONObject | None], revision: int, events: builtins.list[Event]
    ) -> None:
        objects = self._objects
        keys = self._keys
        for key, stored in staged.items():
            if stored is None:
                if objects.pop(key, None) is not None:
                    del keys[bisect_left(keys, key)]
            else:
                if key not in objects:
                    insort(keys, key)
                objects[key] = stored
        self._revision = revision
        self._history.extend(events)
        for prefix, group in list(self._watchers.items()):
            matching = [e for e in events if e.key.startswith(prefix)]
            if matching:
                for watch in list(group):
                    watch._deliver(matching)
        for prefix, fields in list(self._triggered.items()):
            matching = [e for e in events if e.key.startswith(prefix)]
            if not matching:
                continue
            for value_of, buckets in list(fields.values()):
                for value, routed in _route(matching, value_of).items():
                    for watch in list(buckets.get(value) or ()):
                        watch._deliver(routed)

    @staticmethod
    def _fail(ops: Iterable[_Op], error: Callable[[_Op], BaseException]) -> None:
        for op in ops:
            if not op.future.done():
                op.future.set_exception(error(op))

    # ----- watch

    def watch(self, prefix: str, since: int, trigger: Trigger | None = None) -> StoreWatch:
        """Events after revision ``since`` under ``prefix`` (only those ``trigger`` routes to it, when
        given); raises :class:`Expired` synchronously."""
        self._check_open(prefix)
        if since < 0:
            raise ValueError(f"since must be >= 0, not {since}")
        history = self._history
        # History revisions are contiguous (every committed write takes the next one), so positions are
        # arithmetic. An empty history (fresh window or just reopened) starts after the current revision.
        first = history[0].revision if history else self._revision + 1
        if since < self._revision and since + 1 < first:
            raise Expired(since, first - 1)
        start = max(0, since + 1 - first)
        replay = [e for e in itertools.islice(history, start, None) if e.key.startswith(prefix)]
        if trigger is not None:
            replay = _route(replay, trigger.value_of).get(trigger.value, [])
        watch = StoreWatch(self, prefix, since, replay, self._watch_buffer, trigger)
        if trigger is None:
            self._watchers.setdefault(prefix, {})[watch] = None
        else:
            fields = self._triggered.setdefault(prefix, {})
            _, buckets = fields.setdefault(trigger.field, (trigger.value_of, {}))
            buckets.setdefault(trigger.value, {})[watch] = None
        return watch

    def _unregister(self, watch: StoreWatch) -> None:
        trigger = watch.trigger
        if trigger is None:
            group = self._watchers.get(watch.prefix)
            if group is not None:
                group.pop(watch, None)
                if not group:
                    del self._watchers[watch.prefix]
            return
        fields = self._triggered.get(watch.prefix, {})
        _, buckets = fields.get(trigger.field, (None, {}))
        group = buckets.get(trigger.value)
        if group is not None:
            group.pop(watch, None)
            if not group:
                del buckets[trigger.value]
                if not buckets:
                    del fields[trigger.field]
                    if not fields:
                        del self._triggered[watch.prefix]

    # ----- lifecycle

    async def close(self) -> None:
        """Finish the queued writes, close the backend, end every watch after its buffered events."""
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(self._do_close())
        await asyncio.shield(self._close_task)

    async def _do_close(self) -> None:
        try:
            if self._writer is not None:
                self._wakeup.set()
                await asyncio.wait([self._writer])  # returns even if the writer was cancelled
        finally:
            self._closed = True
            watchers = [w for group in self._watchers.values() for w in group]
            watchers += [
                w
                for fields in self._triggered.values()
                for _, buckets in fields.values()
                for group in buckets.values()
                for w in group
            ]
            self._watchers.clear()
            self._triggered.clear()
            for watch in watchers:
                watch._finish()
            await self._close_backend()

    def _check_open(self, key: str) -> None:
        if self._closed:
            raise StoreClosed(key, f"{key}: store is closed")

    # ----- backend hooks

    async def _persist(self, writes: builtins.list[Write], revision: int) -> None:
        """Make ``writes`` and the new ``revision`` durable in one step, or raise and change nothing."""

    async def _close_backend(self) -> None:
        """Release the backend once the writer has stopped."""


def _commit_failed(op: _Op, cause: BaseException) -> CommitFailed:
    error = CommitFailed(op.key, f"{op.key}: commit failed: {cause!r}")
    error.__cause__ = cause
    return error


def _route(events: Sequence[Event], value_of: Callable[[JSONObject], str]) -> dict[str, list[Event]]:
    """Events by the trigger values they concern (before and after the change), in revision order."""
    routed: dict[str, list[Event]] = {}
    for event in events:
        now = value_of(event.obj)
        routed.setdefault(now, []).append(event)
        if event.prev is not None:
            before = value_of(event.prev)
            if before != now:
                routed.setdefault(before, []).append(event)
    return routed
