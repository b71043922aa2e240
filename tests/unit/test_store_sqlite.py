"""SQLite backend specifics: reopening, the file format, locking, corruption, failed commits, throughput."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.store import (
    CommitFailed,
    Expired,
    MemoryStore,
    NotFound,
    SqliteStore,
    StoreCorrupt,
    StoreLocked,
    open_store,
)


def pod(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, **extra}


async def test_reopen_keeps_objects_and_revision(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    for i in range(50):
        await store.create(f"/core/pods/default/p{i:02d}", pod(f"p{i:02d}", spec={"i": i}))
    await store.update("/core/pods/default/p00", pod("p00", spec="changed"), 1)
    await store.delete("/core/pods/default/p49", None)  # the last write is a delete: revision must persist
    before = await store.list("")
    await store.close()

    store = await SqliteStore.open(path)
    try:
        after = await store.list("")
        assert after.items == before.items
        assert store.revision == before.revision == 52
        with pytest.raises(NotFound):
            await store.get("/core/pods/default/p49")
        created = await store.create("/core/pods/default/new", pod("new"))
        assert created["metadata"]["resourceVersion"] == "53"
    finally:
        await store.close()

    store = await SqliteStore.open(path)
    try:
        assert store.revision == 53
    finally:
        await store.close()


async def test_history_is_empty_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    await store.create("/a", pod("a"))
    await store.create("/b", pod("b"))
    await store.close()
    store = await SqliteStore.open(path)
    try:
        with pytest.raises(Expired) as info:
            store.watch("", 1)
        assert info.value.oldest == 2
        watch = store.watch("", 2)
        await store.create("/c", pod("c"))
        async with asyncio.timeout(5):
            event = await anext(watch)
        assert (event.key, event.revision) == ("/c", 3)
        watch.close()
    finally:
        await store.close()


async def test_file_layout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    created = await store.create("/x", pod("x", spec={"k": [1, 2]}))
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        [(key, value)] = conn.execute("SELECT key, value FROM objects").fetchall()
        assert key == "/x" and orjson.loads(value) == created
        assert dict(conn.execute("SELECT name, value FROM meta").fetchall()) == {"revision": 1, "schema": 1}
    conn.close()


async def test_second_open_of_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    await store.create("/a", pod("a"))
    with pytest.raises(StoreLocked):
        await SqliteStore.open(path)
    await store.close()
    again = await SqliteStore.open(path)
    assert again.revision == 1
    await again.close()


async def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(StoreCorrupt, match=r"state\.db"):
        await SqliteStore.open(path)


async def test_damaged_pages_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    for i in range(300):
        config = {"metadata": {"name": str(i)}, "data": "x" * 200}
        await store.create(f"/core/configmaps/default/c{i:03d}", config)
    await store.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    page = 4096  # the default page size: scribble over pages 2..5 (page 1 holds the header)
    data[page : 5 * page] = b"\xa5" * (4 * page)
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorrupt):
        await SqliteStore.open(path)


async def test_failed_commit_fails_the_whole_batch_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = await SqliteStore.open(path)
    await store.create("/ok/first", pod("first"))
    await store.close()
    # A trigger makes SQLite itself abort any transaction that writes a "poison" key.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON objects WHEN NEW.key LIKE '%poison%'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
    conn.close()

    store = await SqliteStore.open(path)
    try:
        watch = store.watch("", store.revision)
        results = await asyncio.gather(
            store.create("/ok/a", pod("a")),
            store.create("/x/poison", pod("poison")),
            store.update("/ok/first", pod("first", spec=1), None),
            return_exceptions=True,
        )
        assert all(isinstance(r, CommitFailed) for r in results), results
        assert all(isinstance(r, BaseException) and isinstance(r.__cause__, sqlite3.Error) for r in results)
        assert store.revision == 1
        assert [o["metadata"]["name"] for o in (await store.list("")).items] == ["first"]
        # The store keeps working, and the watch saw nothing of the failed batch.
        later = await store.create("/ok/b", pod("b"))
        assert later["metadata"]["resourceVersion"] == "2"
        async with asyncio.timeout(5):
            event = await anext(watch)
        assert (event.key, event.revision) == ("/ok/b", 2)
        watch.close()
    finally:
        await store.close()

    store = await SqliteStore.open(path)
    try:
        assert store.revision == 2
        assert [o["metadata"]["name"] for o in (await store.list("")).items] == ["b", "first"]
    finally:
        await store.close()


async def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    memory = await open_store("memory")
    assert isinstance(memory, MemoryStore)
    await memory.close()
    for target in (tmp_path / "a.db", str(tmp_path / "b.db"), f"sqlite://{tmp_path / 'c.db'}"):
        store = await open_store(target, history_window=5)
        assert isinstance(store, SqliteStore)
        await store.create("/k", pod("k"))
        await store.close()
    assert set(os.listdir(tmp_path)) == {"a.db", "b.db", "c.db"}
    with pytest.raises(ValueError):
        await open_store("sqlite://")


async def test_concurrent_creates_are_group_committed(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "state.db")
    total, workers = 3000, 50
    names = iter(range(total))

    async def worker() -> None:
        for i in names:
            await store.create(f"/core/pods/default/p{i:05d}", pod(f"p{i:05d}", spec={"containers": []}))

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        rate = total / (time.perf_counter() - started)
        assert store.revision == total
        # Conservative floor for a loaded shared machine; batching typically gives well over 10x this.
        assert rate >= 300, f"{rate:.0f} creates/s"
        assert store.stats.batches < total / 5, store.stats
    finally:
        await store.close()
