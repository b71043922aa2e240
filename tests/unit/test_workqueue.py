"""WorkQueue: dedup, one worker per key, re-queue after done, backoff growth, shutdown."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.client.workqueue import ShutDown, WorkQueue
from corral.util.backoff import ExponentialBackoff


async def test_duplicates_before_get_collapse() -> None:
    q: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        q.add("a")
    q.add("b")
    assert len(q) == 2
    assert [await q.get(), await q.get()] == ["a", "b"]


async def test_key_added_while_processing_comes_back_after_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    key = await q.get()
    q.add("a")  # changed while a worker holds it
    assert len(q) == 0, "must not be handed to a second worker concurrently"
    q.done(key)
    assert await asyncio.wait_for(q.get(), 1) == "a"


async def test_waiting_worker_is_woken() -> None:
    q: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_rate_limited_requeue_backs_off_and_forget_resets() -> None:
    q: WorkQueue[str] = WorkQueue(ExponentialBackoff(base=0.01, cap=1.0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_rate_limited("k")
    q.add_rate_limited("k")  # second failure: later retry, the earlier one stands
    assert await asyncio.wait_for(q.get(), 2) == "k"
    assert loop.time() - start >= 0.009
    assert q.failures("k") == 2
    q.forget("k")
    assert q.failures("k") == 0


async def test_shutdown_releases_workers() -> None:
    q: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(getter, 1)


@given(st.integers(min_value=0, max_value=200))
def test_backoff_is_monotonic_and_capped(n: int) -> None:
    b = ExponentialBackoff(base=0.005, cap=300.0)
    assert b.delay(n) <= b.delay(n + 1) <= 300.0


@given(st.lists(st.sampled_from("abcdef"), max_size=50))
def test_each_added_key_is_processed_once_per_round(keys: list[str]) -> None:
    async def run() -> list[str]:
        q: WorkQueue[str] = WorkQueue()
        for k in keys:
            q.add(k)
        out = []
        while len(q):
            k = await q.get()
            out.append(k)
            q.done(k)
        return out

    processed = asyncio.run(run())
    assert sorted(processed) == sorted(set(keys))
