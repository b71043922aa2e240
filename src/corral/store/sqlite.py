"""The SQLite backend: the embedded, durable default.

Open it with ``store = await SqliteStore.open(path)`` (the file is created when missing) and finish with
``await store.close()``, which completes the queued writes before closing the file.

The whole state is loaded into memory on open and served from there (see :mod:`corral.store.core`); SQLite
is the durable copy. Layout: ``objects(key TEXT PRIMARY KEY, value BLOB)`` holds each stored object as orjson
bytes, and ``meta(name TEXT PRIMARY KEY, value INTEGER)`` holds ``revision`` (updated in the same transaction
as the objects, since deletes advance it too) and ``schema``.

Durability: WAL journal with ``synchronous=FULL``, so a write is acknowledged only after its transaction has
been fsynced; each writer batch is one transaction. The connection lives on one dedicated thread, so the event
loop never blocks on disk. The connection takes an exclusive lock for its lifetime: a second process opening
the same file gets :class:`StoreLocked` instead of silently forking the revision sequence. A file that is not
a SQLite database, fails ``PRAGMA quick_check`` or is inconsistent raises :class:`StoreCorrupt`.

If a commit fails, SQLite rolls the transaction back and the batch's writes fail with
:class:`~corral.store.core.CommitFailed`; if even the rollback fails, the store refuses every later write
(reopen it once the disk is sorted out).
"""

from __future__ import annotations

import asyncio
import builtins
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import orjson

from corral.store.base import JSONObject, StoreError
from corral.store.core import (
    DEFAULT_HISTORY_WINDOW,
    DEFAULT_MAX_BATCH,
    DEFAULT_WATCH_BUFFER,
    EngineStore,
    Write,
    revision_of,
)

SCHEMA_VERSION: Final = 1

_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26


class StoreCorrupt(StoreError):
    """The database file is damaged or is not a Corral store."""


class StoreLocked(StoreError):
    """Another process has the database open."""


class _Database:
    """The connection and everything done with it; used only from the store's single executor thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.broken: BaseException | None = None
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=0)
        except sqlite3.Error as exc:
            raise StoreError(path, f"{path}: cannot open database: {exc}") from exc
        try:
            self._prepare()
        except BaseException:
            self.conn.close()
            raise

    def _prepare(self) -> None:
        path = self.path
        conn = self.conn
        try:
            # Exclusive before the first access: no shared-memory index, and the lock taken by the first write
            # below is held until close.
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(path, f"{path}: cannot switch to WAL journal (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise StoreCorrupt(path, f"{path}: database is corrupt: {'; '.join(problems[:5])}")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER)")
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is not None and row[0] != SCHEMA_VERSION:
                raise StoreError(path, f"{path}: schema version {row[0]} is not supported ({SCHEMA_VERSION})")
            # Always write something, so the exclusive lock is taken now rather than at the first commit.
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0)")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                raise StoreLocked(path, f"{path}: database is in use by another process") from exc
            if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                raise StoreCorrupt(path, f"{path}: not a usable database: {exc}") from exc
            raise StoreError(path, f"{path}: cannot open database: {exc}") from exc

    def load(self) -> tuple[dict[str, JSONObject], int]:
        path = self.path
        try:
            revision = self.conn.execute("SELECT value FROM meta WHERE name = 'revision'").fetchone()[0]
            objects: dict[str, JSONObject] = {}
            newest = 0
            for key, value in self.conn.execute("SELECT key, value FROM objects"):
                obj = orjson.loads(value)
                newest = max(newest, revision_of(obj))
                objects[key] = obj
        except sqlite3.Error as exc:
            raise StoreCorrupt(path, f"{path}: cannot read database: {exc}") from exc
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupt(path, f"{path}: malformed stored object: {exc!r}") from exc
        if not isinstance(revision, int) or newest > revision:
            raise StoreCorrupt(path, f"{path}: revision {revision!r} is behind stored objects ({newest})")
        return objects, revision

    def commit(self, writes: list[Write], revision: int) -> None:
        if self.broken is not None:
            raise StoreError(self.path, f"{self.path}: store is unusable after a failed rollback") from (
                self.broken
            )
        conn = self.conn
        conn.execute("BEGIN")
        try:
            # Consecutive writes of one kind go in one executemany; order is kept, a key can repeat.
            run: list[tuple[str, bytes]] = []
            gone: list[tuple[str]] = []
            for key, value in writes:
                if value is None:
                    if run:
                        _upsert(conn, run)
                        run = []
                    gone.append((key,))
                else:
                    if gone:
                        conn.executemany("DELETE FROM objects WHERE key = ?", gone)
                        gone = []
                    run.append((key, value))
            if run:
                _upsert(conn, run)
            if gone:
                conn.executemany("DELETE FROM objects WHERE key = ?", gone)
            conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (revision,))
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                self.broken = exc
            raise

    def close(self) -> None:
        self.conn.close()


def _upsert(conn: sqlite3.Connection, rows: list[tuple[str, bytes]]) -> None:
    conn.executemany(
        "INSERT INTO objects (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        rows,
    )


class SqliteStore(EngineStore):
    """A store persisted in one SQLite file. Create it with :meth:`open`."""

    def __init__(
        self,
        *,
        database: _Database,
        executor: ThreadPoolExecutor,
        objects: dict[str, JSONObject],
        revision: int,
        history_window: int = DEFAULT_HISTORY_WINDOW,
        watch_buffer: int = DEFAULT_WATCH_BUFFER,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(
            objects=objects,
            revision=revision,
            history_window=history_window,
            watch_buffer=watch_buffer,
            max_batch=max_batch,
        )
        self._database = database
        self._executor = executor
        self.path = database.path

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        history_window: int = DEFAULT_HISTORY_WINDOW,
        watch_buffer: int = DEFAULT_WATCH_BUFFER,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> SqliteStore:
        """Open (creating if needed) the store at ``path`` and load it into memory."""
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-sqlite")
        database: _Database | None = None
        try:
            database = await loop.run_in_executor(executor, _Database, os.fspath(path))
            objects, revision = await loop.run_in_executor(executor, database.load)
            return cls(
                database=database,
                executor=executor,
                objects=objects,
                revision=revision,
                history_window=history_window,
                watch_buffer=watch_buffer,
                max_batch=max_batch,
            )
        except BaseException:
            if database is not None:
                await loop.run_in_executor(executor, database.close)
            executor.shutdown(wait=False)
            raise

    async def _persist(self, writes: builtins.list[Write], revision: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._database.commit, writes, revision)

    async def _close_backend(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._database.close)
        finally:
            self._executor.shutdown(wait=False)
