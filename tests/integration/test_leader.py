"""Leader election on a Lease: one holder at a time, takeover after expiry, CAS against races."""

from __future__ import annotations

import asyncio
import contextlib

from corral.apiserver.rest import ResourceAPI
from corral.client.local import LocalTransport
from corral.controllers.leader import LeaderElector
from corral.server import bootstrap
from corral.store import MemoryStore
from corral.testing.clock import FakeClock


async def test_one_leader_then_takeover_after_expiry() -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    clock = FakeClock()
    a = LeaderElector(LocalTransport(api), "a", clock, lease_duration=15)
    b = LeaderElector(LocalTransport(api), "b", clock, lease_duration=15)
    assert await a.try_acquire() is True
    assert await b.try_acquire() is False
    clock.advance(5)
    assert await a.try_acquire() is True  # renewal
    clock.advance(10)
    assert await b.try_acquire() is False  # a renewed 10 s ago: still valid
    clock.advance(16)
    assert await b.try_acquire() is True  # a stopped renewing: b takes over
    assert await a.try_acquire() is False
    await store.close()


async def test_concurrent_candidates_never_both_win() -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    clock = FakeClock()
    electors = [LeaderElector(LocalTransport(api), f"c{i}", clock) for i in range(8)]
    results = await asyncio.gather(*(e.try_acquire() for e in electors))
    assert sum(results) == 1
    await store.close()


async def test_run_leads_and_steps_down_when_cancelled() -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    started = asyncio.Event()

    async def lead() -> None:
        started.set()
        await asyncio.Event().wait()

    elector = LeaderElector(LocalTransport(api), "solo", renew_every=0.05)
    task = asyncio.create_task(elector.run(lead))
    await asyncio.wait_for(started.wait(), 5)
    assert elector.is_leader
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not elector.is_leader
    await store.close()
