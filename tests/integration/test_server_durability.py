"""Acknowledged writes survive SIGKILL of the server: many kill/restart cycles under concurrent writers."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import ssl
from pathlib import Path

import aiohttp
import pytest

from corral.client.kubeconfig import load_access
from corral.testing.process import ServerProcess

WRITERS = 6
CYCLES = 8


async def _session(server: ServerProcess) -> aiohttp.ClientSession:
    access = load_access(server.kubeconfig)
    ctx = access.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    return aiohttp.ClientSession(
        base_url=access.server,
        connector=aiohttp.TCPConnector(ssl=ctx),
        headers={"Authorization": f"Bearer {access.token}"},
    )


async def _writer(
    session: aiohttp.ClientSession,
    writer: int,
    cycle: int,
    acked: dict[str, int],
    counters: dict[str, int],
    stop: asyncio.Event,
) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    counter = f"counter-{writer}"
    n = 0
    while not stop.is_set():
        n += 1
        name = f"w{writer}-c{cycle}-{n}"
        try:
            async with session.post(path, json={"metadata": {"name": name}, "data": {"n": str(n)}}) as resp:
                if resp.status == 201:
                    acked[name] = int((await resp.json())["metadata"]["resourceVersion"])
            value = counters.get(counter, 0) + 1
            async with session.patch(
                f"{path}/{counter}",
                json={"data": {"n": str(value)}},
                headers={"Content-Type": "application/merge-patch+json"},
            ) as resp:
                if resp.status == 200:
                    counters[counter] = value
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return  # the server died under us: whatever was not acknowledged may be lost


async def _run_cycles(data_dir: Path) -> None:
    acked: dict[str, int] = {}
    counters: dict[str, int] = {}
    rng = random.Random(2026)
    max_rv_seen = 0
    server = ServerProcess(data_dir).start()
    try:
        async with await _session(server) as session:
            for w in range(WRITERS):
                async with session.post(
                    "/api/v1/namespaces/default/configmaps",
                    json={"metadata": {"name": f"counter-{w}"}, "data": {"n": "0"}},
                ) as resp:
                    assert resp.status == 201
        for cycle in range(CYCLES):
            stop = asyncio.Event()
            async with await _session(server) as session:
                tasks = [
                    asyncio.create_task(_writer(session, w, cycle, acked, counters, stop))
                    for w in range(WRITERS)
                ]
                target = len(acked) + rng.randint(20, 200)
                deadline = asyncio.get_running_loop().time() + 20
                while len(acked) < target and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.005)
                server.kill()  # SIGKILL mid-write
                stop.set()
                await asyncio.gather(*tasks)
            db = data_dir / "state.db"
            with contextlib.closing(sqlite3.connect(db)) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            server = ServerProcess(data_dir).start()
            async with await _session(server) as session:
                async with session.get("/api/v1/namespaces/default/configmaps") as resp:
                    listing = await resp.json()
            present = {i["metadata"]["name"]: i for i in listing["items"]}
            missing = [name for name in acked if name not in present]
            assert not missing, f"cycle {cycle}: acknowledged writes lost: {missing[:5]}"
            for name, rv in acked.items():
                assert int(present[name]["metadata"]["resourceVersion"]) >= rv
            for counter, value in counters.items():
                assert int(present[counter]["data"]["n"]) >= value, f"{counter} went back"
            list_rv = int(listing["metadata"]["resourceVersion"])
            assert list_rv >= max(acked.values(), default=0) and list_rv >= max_rv_seen
            max_rv_seen = list_rv
        async with (
            await _session(server) as session,
            session.post(
                "/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "after-all"}}
            ) as resp,
        ):
            assert int((await resp.json())["metadata"]["resourceVersion"]) > max_rv_seen
    finally:
        server.stop()
    assert len(acked) > CYCLES * 20


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    asyncio.run(_run_cycles(tmp_path))
