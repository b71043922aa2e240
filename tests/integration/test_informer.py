"""Informer over the in-process transport: initial sync, live events, relist after history expiry."""

from __future__ import annotations

import asyncio

from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.apiserver.rest import ResourceAPI
from corral.client.informer import Informer
from corral.client.local import LocalTransport
from corral.server import bootstrap
from corral.store import MemoryStore

CM = REGISTRY.resolve("configmaps")
assert CM is not None


async def _wait(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_informer_syncs_then_follows_changes() -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    transport = LocalTransport(api)
    await transport.create(CM, "default", {"metadata": {"name": "before"}})
    informer = Informer(transport, CM, "default")
    seen: list[str] = []
    informer.add_handler(seen.append)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.wait_synced(), 5)
        assert informer.get("default/before") is not None
        await transport.create(CM, "default", {"metadata": {"name": "after"}})
        await _wait(lambda: informer.get("default/after") is not None)
        await transport.delete(CM, "default", "before")
        await _wait(lambda: informer.get("default/before") is None)
        assert {"default/before", "default/after"} <= set(seen)
    finally:
        task.cancel()
        await store.close()


class ExpiringTransport(LocalTransport):
    """Answers the first watch with 410 Expired, as a server whose history window moved on would."""

    def __init__(self, api: ResourceAPI) -> None:
        super().__init__(api)
        self.lists = 0
        self.expired_once = False

    async def list(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.lists += 1
        return await super().list(*args, **kwargs)

    async def watch(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        if not self.expired_once:
            self.expired_once = True
            # Things change while we are "disconnected".
            await LocalTransport.create(self, CM, "default", {"metadata": {"name": "missed"}})
            raise st.expired("too old resource version: 1 (5)")
        async for event in super().watch(*args, **kwargs):
            yield event


async def test_informer_relists_after_410() -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    transport = ExpiringTransport(api)
    informer = Informer(transport, CM, "default")
    seen: list[str] = []
    informer.add_handler(seen.append)
    task = asyncio.create_task(informer.run())
    try:
        await _wait(lambda: informer.get("default/missed") is not None)
        assert transport.lists == 2 and "default/missed" in seen
    finally:
        task.cancel()
        await store.close()


async def test_local_watch_delivers_copies_and_ends_at_its_timeout() -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    transport = LocalTransport(api)
    created = await transport.create(CM, "default", {"metadata": {"name": "a"}, "data": {"k": "v"}})
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen = []
    try:
        watch = transport.watch(
            CM, "default", resource_version=created["metadata"]["resourceVersion"], timeout_seconds=1
        )
        await transport.create(CM, "default", {"metadata": {"name": "b"}, "data": {"k": "v"}})
        async with asyncio.timeout(5):  # a watch that never ends fails here instead of hanging
            async for event in watch:
                seen.append(event)
                event.obj["data"]["k"] = "changed by the watcher"
        elapsed = loop.time() - started
        # The one event after the starting revision arrived, then the watch ended on its own at ~1 s.
        assert [(e.type, e.obj["metadata"]["name"]) for e in seen] == [("ADDED", "b")]
        assert 0.9 <= elapsed < 3.0
        assert (await transport.get(CM, "default", "b"))["data"] == {"k": "v"}  # the store kept its copy
    finally:
        await store.close()


async def test_local_watch_of_a_converted_version_is_not_the_stored_encoding() -> None:
    """Watch events forward the store's JSON bytes only where the served version is the stored one."""
    hpa_v1 = REGISTRY.by_path("autoscaling", "v1", "horizontalpodautoscalers")
    assert hpa_v1 is not None
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    transport = LocalTransport(api)
    try:
        start = str(store.revision)
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 3,
                "targetCPUUtilizationPercentage": 60,
            },
        }
        await transport.create(hpa_v1, "default", body)
        watch = transport.watch(hpa_v1, "default", resource_version=start)
        async with asyncio.timeout(5):
            event = await anext(watch)
        await watch.aclose()  # type: ignore[attr-defined]
        assert event.obj["apiVersion"] == "autoscaling/v1"
        assert event.obj["spec"]["targetCPUUtilizationPercentage"] == 60
        assert "metrics" not in event.obj["spec"]
    finally:
        await store.close()
