"""The Store protocol: a versioned key-value store of JSON objects, with compare-and-set and watch.

This is the only thing the API server knows about persistence. Keys are strings shaped like
``/<group>/<resource>/<namespace>/<name>`` (the API layer builds them; the store does not parse them beyond
prefix matching). Values are plain JSON dicts (Kubernetes objects).

Semantics every backend keeps:

* One global revision, strictly increasing, shared by all keys. Every successful write (create, update,
  delete) takes the next revision. The store writes that revision into the object as
  ``metadata.resourceVersion`` (a decimal string), so the object a caller gets back is exactly what is stored.
* ``update`` and ``delete`` take ``expected_revision``: when it is given and differs from the stored object's
  current revision the write fails with :class:`Conflict`. ``None`` means unconditional.
* ``list`` returns the objects under a prefix, ordered by key, with the revision at which the snapshot is
  consistent.
* ``watch`` yields every event with revision > ``since`` for keys under the prefix, in revision order,
  then live events. A ``since`` older than the retained history window raises :class:`Expired` (HTTP 410
  upstream).
* Ownership: objects handed to ``create``/``update`` belong to the store afterwards, and objects the store
  returns (from any call or event) are shared and must be treated as read-only. Copy before changing.
* Durability (persistent backends): a write is acknowledged (its awaitable returns) only after it is durable.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

JSONObject = dict[str, Any]


class StoreError(Exception):
    """Base class of the store's errors; each names the key it concerns."""

    def __init__(self, key: str, message: str = "") -> None:
        super().__init__(message or key)
        self.key = key


class NotFound(StoreError):
    """The key does not exist."""


class AlreadyExists(StoreError):
    """``create`` of a key that exists."""


class Conflict(StoreError):
    """The object's current revision is not the expected one (optimistic concurrency failed)."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(key, f"{key}: expected revision {expected}, found {actual}")
        self.expected = expected
        self.actual = actual


class Expired(StoreError):
    """A watch asked for a revision older than the retained history."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__("", f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class StoreClosed(StoreError):
    """The store was closed while the call was pending."""


class EventType(enum.StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETED, ``obj`` is the last state, its ``resourceVersion`` the delete revision."""

    type: EventType
    key: str
    obj: JSONObject
    revision: int
    prev: JSONObject | None = None
    """The state before this change (MODIFIED and DELETED), so filtered watches can see objects leave."""
    raw: bytes | None = None
    """``obj`` as JSON, when the store encoded it anyway (to persist it): watchers decode or forward these
    bytes instead of each copying or encoding the object again."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """Narrows a watch to the events whose object, before or after the change, has ``value`` in ``field``
    (``value_of`` reads it): the store then wakes only the watches that can care, as upstream's watch cache
    does for pods by ``spec.nodeName`` — so a thousand agents, each watching its own pods, are not each
    woken by every pod event. Events are only routed, never changed: the watcher still applies its
    selectors."""

    field: str
    value: str
    value_of: Callable[[JSONObject], str]


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[JSONObject]
    revision: int


class Watch(Protocol):
    """A live subscription. Iterate for events; ``close`` ends the iteration."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def next_or_tick(self) -> Event | None:
        """The next event, or None once :meth:`tick` was called while none was buffered; raises
        StopAsyncIteration at the end. How a watch waits for an event or a timer without a task per event."""
        ...

    def tick(self) -> None:
        """Make a waiting (or the next) ``next_or_tick`` return None if no event is buffered by then."""
        ...

    def close(self) -> None: ...


class Store(Protocol):
    async def get(self, key: str) -> JSONObject:
        """Return the object at ``key`` or raise :class:`NotFound`."""
        ...

    async def list(self, prefix: str) -> ListResult:
        """All objects whose key starts with ``prefix``, ordered by key."""
        ...

    async def create(self, key: str, obj: JSONObject) -> JSONObject:
        """Store a new object; raise :class:`AlreadyExists` if the key is taken."""
        ...

    async def update(self, key: str, obj: JSONObject, expected_revision: int | None) -> JSONObject:
        """Replace the object; raise :class:`NotFound` or :class:`Conflict`."""
        ...

    async def delete(self, key: str, expected_revision: int | None) -> JSONObject:
        """Remove the object and return its last state (with the delete revision)."""
        ...

    def watch(self, prefix: str, since: int, trigger: Trigger | None = None) -> Watch:
        """Events after revision ``since`` under ``prefix`` (only those ``trigger`` matches, when given).
        Raises :class:`Expired` synchronously."""
        ...

    @property
    def revision(self) -> int:
        """The newest committed revision."""
        ...

    async def close(self) -> None: ...
