"""The Store contract, run against every backend (memory and SQLite)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from corral.store import (
    AlreadyExists,
    Conflict,
    EngineStore,
    Event,
    EventType,
    Expired,
    MemoryStore,
    NotFound,
    SqliteStore,
    StoreClosed,
    StoreWatch,
)
from corral.store.base import Trigger

MakeStore = Callable[..., Awaitable[EngineStore]]
DEADLINE = 5.0


@pytest.fixture(params=["memory", "sqlite"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeStore]:
    stores: list[EngineStore] = []

    async def make(**options: Any) -> EngineStore:
        store: EngineStore
        if request.param == "memory":
            store = MemoryStore(**options)
        else:
            store = await SqliteStore.open(tmp_path / f"store-{len(stores)}.db", **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def store(make_store: MakeStore) -> EngineStore:
    return await make_store()


def pod(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, **extra}


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def take(watch: StoreWatch, count: int) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(DEADLINE):
        async for event in watch:
            events.append(event)
            if len(events) == count:
                break
    return events


async def test_create_then_get_returns_stored_object(store: EngineStore) -> None:
    original = pod("a", spec={"x": 1})
    created = await store.create("/core/pods/default/a", original)
    assert created["metadata"]["resourceVersion"] == "1"
    assert created["spec"] == {"x": 1}
    assert await store.get("/core/pods/default/a") == created
    # The caller's dict and its metadata were not changed behind its back.
    assert "resourceVersion" not in original["metadata"]
    assert created is not original


async def test_object_without_metadata_gets_one(store: EngineStore) -> None:
    created = await store.create("/k", {"data": 1})
    assert created == {"data": 1, "metadata": {"resourceVersion": "1"}}


async def test_list_is_ordered_by_key_and_isolates_prefixes(store: EngineStore) -> None:
    keys = ["/core/pods/b/z", "/core/pods/ab/y", "/core/pods/a/z", "/core/pods/a/x", "/core/podsx/a/q"]
    for key in keys:
        await store.create(key, pod(key))
    under_a = await store.list("/core/pods/a/")
    assert [o["metadata"]["name"] for o in under_a.items] == ["/core/pods/a/x", "/core/pods/a/z"]
    assert under_a.revision == store.revision == 5
    under_pods = await store.list("/core/pods/")
    assert [o["metadata"]["name"] for o in under_pods.items] == sorted(k for k in keys if "podsx" not in k)
    assert [o["metadata"]["name"] for o in (await store.list("")).items] == sorted(keys)
    assert (await store.list("/core/pods/c/")).items == []
    assert (await store.list("/core/pods/a/x")).items[0]["metadata"]["name"] == "/core/pods/a/x"


async def test_revisions_strictly_increase_and_are_shared_across_keys(store: EngineStore) -> None:
    assert store.revision == 0
    a = await store.create("/r/a", pod("a"))
    b = await store.create("/r/b", pod("b"))
    a2 = await store.update("/r/a", pod("a", spec=1), None)
    gone = await store.delete("/r/b", None)
    assert [rv(a), rv(b), rv(a2), rv(gone)] == [1, 2, 3, 4]
    assert store.revision == 4
    assert (await store.list("/r/")).revision == 4


async def test_update_compare_and_set(store: EngineStore) -> None:
    created = await store.create("/u/a", pod("a"))
    with pytest.raises(Conflict) as info:
        await store.update("/u/a", pod("a", spec="stale"), rv(created) + 10)
    assert (info.value.key, info.value.expected, info.value.actual) == ("/u/a", rv(created) + 10, rv(created))
    assert await store.get("/u/a") == created
    updated = await store.update("/u/a", pod("a", spec="new"), rv(created))
    assert updated["spec"] == "new" and rv(updated) == rv(created) + 1
    forced = await store.update("/u/a", pod("a", spec="forced"), None)
    assert await store.get("/u/a") == forced
    with pytest.raises(NotFound):
        await store.update("/u/missing", pod("m"), None)
    assert store.revision == rv(forced)


async def test_delete_compare_and_set_returns_last_state(store: EngineStore) -> None:
    created = await store.create("/d/a", pod("a", spec="last"))
    with pytest.raises(Conflict):
        await store.delete("/d/a", rv(created) - 1 if rv(created) > 1 else 99)
    gone = await store.delete("/d/a", rv(created))
    assert gone["spec"] == "last"
    assert rv(gone) == rv(created) + 1 == store.revision
    with pytest.raises(NotFound):
        await store.get("/d/a")
    with pytest.raises(NotFound):
        await store.delete("/d/a", None)
    assert (await store.list("/d/")).items == []


async def test_create_existing_key_fails_and_recreate_after_delete_works(store: EngineStore) -> None:
    await store.create("/c/a", pod("a"))
    with pytest.raises(AlreadyExists) as info:
        await store.create("/c/a", pod("a"))
    assert info.value.key == "/c/a"
    await store.delete("/c/a", None)
    again = await store.create("/c/a", pod("a"))
    assert rv(again) == 3


async def test_watch_replays_from_revision_then_follows_live_events(store: EngineStore) -> None:
    for name in "abc":
        await store.create(f"/w/{name}", pod(name))
    watch = store.watch("/w/", 1)
    replayed = await take(watch, 2)
    assert [(e.type, e.key, e.revision) for e in replayed] == [
        (EventType.ADDED, "/w/b", 2),
        (EventType.ADDED, "/w/c", 3),
    ]
    updated = await store.update("/w/a", pod("a", spec=1), None)
    deleted = await store.delete("/w/b", None)
    live = await take(watch, 2)
    assert [(e.type, e.key, e.revision) for e in live] == [
        (EventType.MODIFIED, "/w/a", 4),
        (EventType.DELETED, "/w/b", 5),
    ]
    assert live[0].obj == updated
    assert live[1].obj == deleted and rv(live[1].obj) == 5
    # Writes carry the store's own encoding of the object (what watchers decode or forward); a delete has
    # none (nothing was persisted for it).
    assert live[0].raw is not None and orjson.loads(live[0].raw) == updated
    assert all(e.raw is not None and orjson.loads(e.raw) == e.obj for e in replayed)
    assert live[1].raw is None
    watch.close()


async def test_watch_from_current_revision_sees_only_new_events(store: EngineStore) -> None:
    await store.create("/w/a", pod("a"))
    watch = store.watch("/w/", store.revision)
    await store.create("/w/b", pod("b"))
    [event] = await take(watch, 1)
    assert event.key == "/w/b"
    watch.close()


async def test_watch_filters_by_prefix(store: EngineStore) -> None:
    narrow = store.watch("/core/pods/a/", 0)
    wide = store.watch("/core/pods/", 0)
    await store.create("/core/pods/ab/x", pod("x"))
    await store.create("/core/pods/a/y", pod("y"))
    await store.create("/core/services/a/z", pod("z"))
    assert [e.key for e in await take(narrow, 1)] == ["/core/pods/a/y"]
    assert [e.key for e in await take(wide, 2)] == ["/core/pods/ab/x", "/core/pods/a/y"]
    # Nothing else is pending for the narrow watch: its next event is a later write under its prefix.
    await store.create("/core/pods/a/w", pod("w"))
    assert [e.key for e in await take(narrow, 1)] == ["/core/pods/a/w"]
    narrow.close()
    wide.close()


async def test_many_watchers_only_matching_prefixes_get_events(store: EngineStore) -> None:
    watches = {i: store.watch(f"/many/{i}/", 0) for i in range(300)}
    await store.create("/many/7/x", pod("x"))
    for i in (3, 7, 250):
        await store.create(f"/many/{i}/last", pod("last"))
    assert [e.key for e in await take(watches[7], 2)] == ["/many/7/x", "/many/7/last"]
    assert [e.key for e in await take(watches[3], 1)] == ["/many/3/last"]
    assert [e.key for e in await take(watches[250], 1)] == ["/many/250/last"]
    for watch in watches.values():
        watch.close()
    assert store._watchers == {}


def _node_of(obj: dict[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("nodeName") or "")


def on_node(node: str) -> Trigger:
    return Trigger("spec.nodeName", node, _node_of)


async def test_triggered_watch_gets_only_events_touching_its_value(store: EngineStore) -> None:
    early = await store.create("/t/early", pod("early", spec={"nodeName": "n1"}))
    n1 = store.watch("/t/", 0, on_node("n1"))  # replays from history: only n1's event
    n2 = store.watch("/t/", rv(early), on_node("n2"))
    pending = store.watch("/t/", rv(early), on_node(""))
    everything = store.watch("/t/", rv(early))
    assert store.watch_counts()["/t/"] == 4
    moving = await store.create("/t/moving", pod("moving"))
    await store.update("/t/moving", pod("moving", spec={"nodeName": "n2"}), rv(moving))  # "" -> n2
    await store.create("/t/other", pod("other", spec={"nodeName": "n3"}))
    await store.update("/t/early", pod("early", spec={"nodeName": "n2"}), rv(early))  # leaves n1 for n2
    await store.delete("/t/early", None)
    assert [(e.type, e.key) for e in await take(n1, 2)] == [
        (EventType.ADDED, "/t/early"),
        (EventType.MODIFIED, "/t/early"),  # its old value was n1: the watcher sees it go
    ]
    assert [(e.type, e.key) for e in await take(n2, 3)] == [
        (EventType.MODIFIED, "/t/moving"),
        (EventType.MODIFIED, "/t/early"),
        (EventType.DELETED, "/t/early"),
    ]
    assert [(e.type, e.key) for e in await take(pending, 2)] == [
        (EventType.ADDED, "/t/moving"),
        (EventType.MODIFIED, "/t/moving"),
    ]
    assert len(await take(everything, 5)) == 5
    for watch in (n1, n2, pending, everything):
        watch.close()
    assert store.watch_counts() == {}
    assert store._triggered == {}


async def test_close_ends_triggered_watches_too(make_store: MakeStore) -> None:
    store = await make_store()
    watch = store.watch("/tc/", 0, on_node("n1"))
    await store.create("/tc/a", pod("a", spec={"nodeName": "n1"}))
    await store.close()
    async with asyncio.timeout(DEADLINE):
        assert [e.key async for e in watch] == ["/tc/a"]


async def test_watch_from_compacted_history_raises_expired(make_store: MakeStore) -> None:
    store = await make_store(history_window=3)
    for i in range(5):
        await store.create(f"/e/{i}", pod(str(i)))
    for since in (0, 1):
        with pytest.raises(Expired) as info:
            store.watch("/e/", since)
        assert (info.value.requested, info.value.oldest) == (since, 2)
    watch = store.watch("/e/", 2)
    assert [e.revision for e in await take(watch, 3)] == [3, 4, 5]
    watch.close()
    store.watch("/e/", 5).close()


async def test_watch_from_future_revision_waits_for_it(store: EngineStore) -> None:
    watch = store.watch("/f/", 2)
    for name in "abc":
        await store.create(f"/f/{name}", pod(name))
    assert [e.revision for e in await take(watch, 1)] == [3]
    watch.close()


async def test_watch_close_ends_iteration_promptly(store: EngineStore) -> None:
    watch = store.watch("/c/", 0)
    seen: list[Event] = []
    got_one = asyncio.Event()

    async def consume() -> None:
        async for event in watch:
            seen.append(event)
            got_one.set()

    consumer = asyncio.create_task(consume())
    await store.create("/c/a", pod("a"))
    async with asyncio.timeout(DEADLINE):
        await got_one.wait()
    watch.close()
    async with asyncio.timeout(DEADLINE):
        await consumer
    assert [e.key for e in seen] == ["/c/a"]


async def test_lagging_watch_is_terminated(make_store: MakeStore) -> None:
    store = await make_store(watch_buffer=5)
    for i in range(8):
        await store.create(f"/l/{i}", pod(str(i)))
    # A replay longer than the bound is fine: only live lag counts.
    watch = store.watch("/l/", 0)
    assert [e.revision for e in await take(watch, 3)] == [1, 2, 3]
    for i in range(8, 13):
        await store.create(f"/l/{i}", pod(str(i)))
    assert not watch.overflowed
    await store.create("/l/13", pod("13"))
    assert watch.overflowed
    async with asyncio.timeout(DEADLINE):
        remaining = [e async for e in watch]
    assert remaining == []
    assert store._watchers == {}


async def test_concurrent_cas_writers_exactly_one_winner(store: EngineStore) -> None:
    base = await store.create("/cas/x", pod("x", spec=0))
    results = await asyncio.gather(
        *(store.update("/cas/x", pod("x", spec=i), rv(base)) for i in range(20)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict))
    assert await store.get("/cas/x") == winners[0]
    assert store.revision == rv(base) + 1


async def test_concurrent_cas_increments_lose_no_update(store: EngineStore) -> None:
    await store.create("/cas/counter", pod("counter", count=0))
    conflicts = 0

    async def increment(times: int) -> None:
        nonlocal conflicts
        for _ in range(times):
            while True:
                current = await store.get("/cas/counter")
                try:
                    replacement = pod("counter", count=current["count"] + 1)
                    await store.update("/cas/counter", replacement, rv(current))
                    break
                except Conflict:
                    conflicts += 1

    await asyncio.gather(*(increment(10) for _ in range(10)))
    final = await store.get("/cas/counter")
    assert final["count"] == 100
    assert rv(final) == 101 == store.revision
    assert conflicts > 0


async def test_failing_operation_in_a_batch_fails_alone(store: EngineStore) -> None:
    await store.create("/b/existing", pod("existing"))
    batches_before = store.stats.batches
    results = await asyncio.gather(
        store.create("/b/new1", pod("new1")),
        store.create("/b/existing", pod("dup")),
        store.update("/b/missing", pod("missing"), None),
        store.update("/b/existing", pod("existing"), 999),
        store.create("/b/bad", {"metadata": {}, "value": object()}),
        store.create("/b/new2", pod("new2")),
        store.delete("/b/new1", None),  # sees the create earlier in the same batch
        return_exceptions=True,
    )
    assert store.stats.batches == batches_before + 1
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["dict", "AlreadyExists", "NotFound", "Conflict", "TypeError", "dict", "dict"]
    assert [rv(r) for r in results if isinstance(r, dict)] == [2, 3, 4]
    assert [o["metadata"]["name"] for o in (await store.list("/b/")).items] == ["existing", "new2"]
    assert store.revision == 4


async def test_cancelled_caller_withdraws_a_queued_write(store: EngineStore) -> None:
    task = asyncio.create_task(store.create("/x/withdrawn", pod("w")))
    await asyncio.sleep(0)  # let the task queue its write; the writer has not run yet
    task.cancel()
    kept = await store.create("/x/kept", pod("k"))
    assert rv(kept) == 1
    with pytest.raises(NotFound):
        await store.get("/x/withdrawn")
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_close_drains_queued_writes_and_ends_watches(store: EngineStore) -> None:
    watch = store.watch("/q/", 0)
    writes = [asyncio.create_task(store.create(f"/q/{i:03d}", pod(str(i)))) for i in range(100)]
    await asyncio.sleep(0)  # the writes are queued
    await store.close()
    assert [rv(t.result()) for t in writes] == list(range(1, 101))
    async with asyncio.timeout(DEADLINE):
        events = [e async for e in watch]
    assert len(events) == 100
    with pytest.raises(StoreClosed):
        await store.create("/q/late", pod("late"))
    with pytest.raises(StoreClosed):
        await store.get("/q/000")
    with pytest.raises(StoreClosed):
        store.watch("/q/", 0)
    await store.close()  # idempotent


async def test_values_that_are_not_plain_json_are_rejected(store: EngineStore) -> None:
    bad_values: list[Any] = [{"n": 2**64}, {"when": object()}, {"metadata": "not-a-dict"}, {1: "int key"}]
    for bad in bad_values:
        with pytest.raises(TypeError):
            await store.create("/j/bad", bad)
    with pytest.raises(TypeError):
        await store.create("/j/bad", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert store.revision == 0
    with pytest.raises(NotFound):
        await store.get("/j/bad")


async def test_a_stopped_writer_fails_calls_instead_of_hanging(store: EngineStore) -> None:
    await store.create("/s/a", pod("a"))
    writer = store._writer
    assert writer is not None
    writer.cancel()  # what event-loop shutdown does to a store nobody closed
    async with asyncio.timeout(DEADLINE):
        await asyncio.wait([writer])
        with pytest.raises(StoreClosed):
            await store.create("/s/b", pod("b"))
        await store.close()
