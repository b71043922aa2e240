"""Persistence behind the API server: the :class:`Store` protocol, its errors, and the local backends.

``await open_store("memory")`` gives a :class:`MemoryStore`; ``await open_store(path)`` (or
``"sqlite://" + path``) gives a :class:`SqliteStore` on that file.
"""

from __future__ import annotations

import os

from corral.store.base import (
    AlreadyExists,
    Conflict,
    Event,
    EventType,
    Expired,
    JSONObject,
    ListResult,
    NotFound,
    Store,
    StoreClosed,
    StoreError,
    Watch,
)
from corral.store.core import (
    DEFAULT_HISTORY_WINDOW,
    DEFAULT_MAX_BATCH,
    DEFAULT_WATCH_BUFFER,
    CommitFailed,
    EngineStore,
    StoreStats,
    StoreWatch,
)
from corral.store.memory import MemoryStore
from corral.store.sqlite import SqliteStore, StoreCorrupt, StoreLocked

__all__ = [
    "AlreadyExists",
    "CommitFailed",
    "Conflict",
    "EngineStore",
    "Event",
    "EventType",
    "Expired",
    "JSONObject",
    "ListResult",
    "MemoryStore",
    "NotFound",
    "SqliteStore",
    "Store",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "StoreLocked",
    "StoreStats",
    "StoreWatch",
    "Watch",
    "open_store",
]

_MEMORY_URLS = frozenset({"memory", "memory:", "memory://"})
_SQLITE_SCHEME = "sqlite://"


async def open_store(
    url_or_path: str | os.PathLike[str],
    *,
    history_window: int = DEFAULT_HISTORY_WINDOW,
    watch_buffer: int = DEFAULT_WATCH_BUFFER,
    max_batch: int = DEFAULT_MAX_BATCH,
    key_file: str | os.PathLike[str] | None = None,
) -> EngineStore:
    """Open ``"memory"`` (a :class:`MemoryStore`) or a SQLite file path, ``sqlite://`` prefix optional.

    ``key_file`` turns on encryption of Secrets at rest (SQLite only; memory keeps nothing at rest).
    """
    target = os.fspath(url_or_path)
    if target in _MEMORY_URLS:
        return MemoryStore(history_window=history_window, watch_buffer=watch_buffer, max_batch=max_batch)
    if target.startswith(_SQLITE_SCHEME):
        target = target[len(_SQLITE_SCHEME) :]
    if not target:
        raise ValueError(f"no database path in {url_or_path!r}")
    return await SqliteStore.open(
        target,
        history_window=history_window,
        watch_buffer=watch_buffer,
        max_batch=max_batch,
        key_file=key_file,
    )


def _check_protocol(
    memory: MemoryStore, sqlite: SqliteStore, watch: StoreWatch
) -> tuple[Store, Store, Watch]:
    # Never called: lets mypy prove the backends satisfy the protocols.
    return memory, sqlite, watch
