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

Secrets at rest: opened with a ``key_file``, the rows under
:data:`~corral.store.encryption.ENCRYPTED_PREFIXES` are sealed with AES-GCM on their way into SQLite and
opened on load (see :mod:`corral.store.encryption`), so memory and watches stay plaintext. A row that fails
to open does not stop the store: it stays out of memory and ``get`` of its key raises
:class:`~corral.store.encryption.DecryptError` (a 500 upstream) until the key is written again.
:meth:`SqliteStore.rotate_key` re-seals every such row with a new key while serving.

If a commit fails, SQLite rolls the transaction back and the batch's writes fail with
:class:`~corral.store.core.CommitFailed`; if even the rollback fails, the store refuses every later write
(reopen it once the disk is sorted out).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
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
from corral.store.encryption import (
    DataKey,
    DecryptError,
    KeyRing,
    is_sealed,
    load_or_create_key_file,
    needs_encryption,
    new_data_key,
    new_nonce,
    open_envelope,
    seal,
    write_key_file,
)

log = logging.getLogger(__name__)

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

    def __init__(self, path: str, keyring: KeyRing | None = None) -> None:
        self.path = path
        self.keyring = keyring
        self.broken: BaseException | None = None
        self.unreadable: dict[str, DecryptError] = {}
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
                if is_sealed(value):
                    try:
                        value = self._open(key, value)
                    except DecryptError as exc:
                        # One damaged secret must not keep the cluster down; it fails loudly on its own.
                        self.unreadable[key] = exc
                        continue
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
                    if self.keyring is not None and needs_encryption(key):
                        value = seal(self.keyring.current, key, value, new_nonce())
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

    def _open(self, key: str, value: bytes) -> bytes:
        if not is_sealed(value):
            return value  # written before encryption was on; the next write or rotation seals it
        if self.keyring is None:
            raise DecryptError(key, f"{key}: stored value is encrypted but the store has no key file")
        return open_envelope(self.keyring, key, value)

    def reseal(self, ring: KeyRing) -> int:
        """Switch to ``ring`` and re-seal every encrypted row with its current key, in one transaction."""
        if self.broken is not None:
            raise StoreError(self.path, f"{self.path}: store is unusable after a failed rollback")
        conn = self.conn
        resealed = 0
        conn.execute("BEGIN")
        try:
            self.keyring = ring
            rows = conn.execute("SELECT key, value FROM objects").fetchall()
            updates: list[tuple[bytes, str]] = []
            for key, value in rows:
                if not needs_encryption(key) and not is_sealed(value):
                    continue
                try:
                    plain = self._open(key, value)
                except DecryptError:
                    continue  # already unreadable: reported by get(); nothing to save
                updates.append((seal(ring.current, key, plain, new_nonce()), key))
                resealed += 1
            conn.executemany("UPDATE objects SET value = ? WHERE key = ?", updates)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                self.broken = exc
            raise
        # Old ciphertexts in the WAL are useless without the old key, but fold them in anyway.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return resealed

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True, slots=True)
class RotationResult:
    """What :meth:`SqliteStore.rotate_key` did: new key id, keys retired, rows re-sealed, rows unreadable."""

    key_id: str
    retired: list[str]
    resealed: int
    unreadable: list[str]


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
        key_file: Path | None = None,
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
        self.key_file = key_file
        self._rotation = asyncio.Lock()

    @property
    def encrypted(self) -> bool:
        return self._database.keyring is not None

    async def get(self, key: str) -> JSONObject:
        broken = self._database.unreadable.get(key)
        if broken is not None and key not in self._objects:
            raise DecryptError(key, str(broken))
        return await super().get(key)

    async def rotate_key(self, new_key: DataKey | None = None) -> RotationResult:
        """Re-seal every encrypted row with a new key while serving; then drop the old keys from the file.

        Order makes a crash at any point safe: the key file first gains the new key (old ones kept), then the
        rows are re-sealed in one transaction on the writer thread (so no commit interleaves), and only then
        is the key file rewritten with the new key alone.
        """
        if self.key_file is None or self._database.keyring is None:
            raise StoreError(self.path, f"{self.path}: encryption at rest is off for this store")
        key_file = self.key_file
        loop = asyncio.get_running_loop()
        async with self._rotation:
            old = self._database.keyring
            ring = old.rotated(new_key or new_data_key())
            await loop.run_in_executor(self._executor, write_key_file, key_file, ring)
            done = await loop.run_in_executor(self._executor, self._database.reseal, ring)
            final = ring.retired()
            self._database.keyring = final
            await loop.run_in_executor(self._executor, write_key_file, key_file, final)
        return RotationResult(final.current.id, old.ids, done, sorted(self._database.unreadable))

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        history_window: int = DEFAULT_HISTORY_WINDOW,
        watch_buffer: int = DEFAULT_WATCH_BUFFER,
        max_batch: int = DEFAULT_MAX_BATCH,
        key_file: str | os.PathLike[str] | None = None,
    ) -> SqliteStore:
        """Open (creating if needed) the store at ``path`` and load it into memory.

        With ``key_file``, Secrets are encrypted at rest; the file is created with a fresh key when missing.
        """
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="corral-sqlite")
        database: _Database | None = None
        keys_path = None if key_file is None else Path(key_file)
        try:
            keyring = None
            if keys_path is not None:
                keyring = await loop.run_in_executor(executor, load_or_create_key_file, keys_path)
            database = await loop.run_in_executor(executor, _Database, os.fspath(path), keyring)
            objects, revision = await loop.run_in_executor(executor, database.load)
            for error in database.unreadable.values():
                # Messages name the key and the key id only, never a value.
                log.error("stored object left out (reads of it fail until it is written again): %s", error)
            return cls(
                database=database,
                executor=executor,
                objects=objects,
                revision=revision,
                history_window=history_window,
                watch_buffer=watch_buffer,
                max_batch=max_batch,
                key_file=keys_path,
            )
        except BaseException:
            if database is not None:
                await loop.run_in_executor(executor, database.close)
            executor.shutdown(wait=False)
            raise

    async def _persist(self, writes: builtins.list[Write], revision: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._database.commit, writes, revision)
        unreadable = self._database.unreadable
        if unreadable:
            for key, _ in writes:  # a rewritten row is sealed afresh: no longer damaged
                unreadable.pop(key, None)

    async def _close_backend(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._database.close)
        finally:
            self._executor.shutdown(wait=False)
