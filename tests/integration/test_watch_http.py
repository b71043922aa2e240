"""The HTTP watch stream of the real aiohttp app, in process (no TLS, no auth): events as lines, the
``timeoutSeconds`` end, and bookmarks after an idle interval — both driven by timers on the subscription,
not by a task per event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from corral.apiserver import handlers
from corral.apiserver.app import ApiServerApp
from corral.apiserver.rest import ResourceAPI
from corral.server import bootstrap
from corral.store import MemoryStore

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    app = ApiServerApp(api, None, "127.0.0.1").build()
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await store.close()


async def _create(client: TestClient, name: str) -> dict:  # type: ignore[type-arg]
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}
    response = await client.post(CONFIGMAPS, json=body)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def _watch(client: TestClient, since: dict, **params: str) -> Any:  # type: ignore[type-arg]
    """A watch of the configmaps after ``since`` (an object), with extra query ``params``."""
    query = {"watch": "true", "resourceVersion": since["metadata"]["resourceVersion"], **params}
    return await client.get(CONFIGMAPS, params=query)


async def test_events_then_the_stream_ends_at_its_timeout(client: TestClient) -> None:  # type: ignore[type-arg]
    first = await _create(client, "a")
    started = time.monotonic()
    response = await _watch(client, first, timeoutSeconds="1")
    await _create(client, "b")
    lines = []
    async with asyncio.timeout(10):
        async for line in response.content:
            lines.append(orjson.loads(line))
    elapsed = time.monotonic() - started
    assert [(e["type"], e["object"]["metadata"]["name"], e["object"]["data"]) for e in lines] == [
        ("ADDED", "b", {"k": "b"})
    ]
    assert lines[0]["object"]["kind"] == "ConfigMap"
    assert 0.9 <= elapsed < 5


async def test_an_idle_watch_with_bookmarks_gets_one_at_the_current_revision(
    client: TestClient,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "BOOKMARK_INTERVAL", 0.3)
    first = await _create(client, "a")
    response = await _watch(client, first, allowWatchBookmarks="true", timeoutSeconds="3")
    async with asyncio.timeout(10):
        line = await response.content.readline()
        event = orjson.loads(line)
        assert event["type"] == "BOOKMARK"
        assert event["object"]["kind"] == "ConfigMap"
        assert int(event["object"]["metadata"]["resourceVersion"]) >= int(first["metadata"]["resourceVersion"])
        # Events still flow after a bookmark.
        await _create(client, "b")
        while True:
            event = orjson.loads(await response.content.readline())
            if event["type"] != "BOOKMARK":
                break
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "b")
    response.close()


async def test_without_bookmarks_an_idle_watch_stays_silent(
    client: TestClient,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "BOOKMARK_INTERVAL", 0.2)
    first = await _create(client, "a")
    response = await _watch(client, first, timeoutSeconds="1")
    async with asyncio.timeout(10):
        body = await response.read()
    assert body == b""


async def test_a_field_selected_watch_sees_only_its_object(client: TestClient) -> None:  # type: ignore[type-arg]
    """``metadata.name=`` (like ``spec.nodeName=``) is routed by the store: other objects never reach it."""
    first = await _create(client, "a")
    response = await _watch(client, first, fieldSelector="metadata.name=b", timeoutSeconds="2")
    await _create(client, "c")
    await _create(client, "b")
    deleted = await client.delete(f"{CONFIGMAPS}/b")
    assert deleted.status == 200
    await _create(client, "d")
    async with asyncio.timeout(10):
        lines = [orjson.loads(line) async for line in response.content]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "b"), ("DELETED", "b")]
