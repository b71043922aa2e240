"""In-process transport: calls :class:`ResourceAPI` directly — same validation path as HTTP, no sockets.

Used by the controllers, scheduler and agent inside ``corral up``. Objects are copied on the way out so a
caller can never change what the store holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from corral.api.resources import ResourceType
from corral.apiserver import status as st
from corral.apiserver.rest import DeleteOptions, ResourceAPI, WriteOptions
from corral.client.base import JSON, ObjectList, WatchEvent
from corral.util.jsoncopy import json_copy


class LocalTransport:
    def __init__(self, api: ResourceAPI) -> None:
        self.api = api

    async def get(
        self, rt: ResourceType, namespace: str | None, name: str, subresource: str | None = None
    ) -> JSON:
        if subresource == "scale":
            return await self.api.get_scale(rt, namespace, name)
        return json_copy(await self.api.get(rt, namespace, name))

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        continue_token: str | None = None,
    ) -> ObjectList:
        result = await self.api.list(
            rt,
            namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=limit,
            continue_token=continue_token,
        )
        return ObjectList(json_copy(result.items), result.resource_version, result.continue_token)

    async def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: JSON,
        *,
        dry_run: bool = False,
        field_manager: str = "",
    ) -> JSON:
        opts = WriteOptions(dry_run=dry_run, field_validation="Strict", field_manager=field_manager)
        return json_copy((await self.api.create(rt, namespace, obj, opts)).obj)

    async def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        obj: JSON,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str = "",
    ) -> JSON:
        opts = WriteOptions(dry_run=dry_run, field_validation="Strict", field_manager=field_manager)
        if subresource == "scale":
            return await self.api.update_scale(rt, namespace, name, lambda _old: obj, opts)
        return json_copy((await self.api.update(rt, namespace, name, obj, opts, subresource)).obj)

    async def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch_type: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str = "",
        force: bool = False,
    ) -> JSON:
        opts = WriteOptions(
            dry_run=dry_run, field_validation="Strict", field_manager=field_manager, force=force
        )
        result = await self.api.patch(rt, namespace, name, patch_type, body, opts, subresource)
        return json_copy(result.obj)

    async def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "Background",
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
        precondition_uid: str | None = None,
    ) -> JSON:
        opts = DeleteOptions(
            propagation_policy=propagation_policy,
            grace_period_seconds=grace_period_seconds,
            dry_run=dry_run,
            precondition_uid=precondition_uid,
        )
        obj, finished = await self.api.delete(rt, namespace, name, opts)
        if finished and not rt.returns_deleted_object:
            return st.success_status(rt, name, str((obj.get("metadata") or {}).get("uid", "")))
        return json_copy(obj)

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str | None = None) -> None:
        await self.api.bind(namespace, name, node_name, uid)

    async def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]:
        deadline = asyncio.get_running_loop().time() + timeout_seconds if timeout_seconds else None
        events = await self.api.watch(
            rt,
            namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            deadline=deadline,
        )
        iterator = events.__aiter__()
        try:
            async for event in iterator:
                # The store's own encoding, decoded per watcher, is a private copy at half the cost.
                obj = json_copy(event.obj) if event.raw is None else orjson.loads(event.raw)
                yield WatchEvent(event.type, obj)
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]

    async def close(self) -> None:
        return None
