"""Informers: a list+watch cache of one resource type that tells handlers which keys changed.

Level-triggered by design: handlers receive only the key (``namespace/name``) and read the current state
from the cache, never a diff. The informer lists, then watches from the list's resourceVersion; when the
watch ends it resumes from the last revision it saw, and when that is too old (410) it lists again and
reports every key whose object changed or disappeared meanwhile.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable
from typing import Any

from corral.api.resources import ResourceType
from corral.apiserver import status as st
from corral.client.base import Transport

log = logging.getLogger(__name__)

JSON = dict[str, Any]
Handler = Callable[[str], None]


def object_key(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Informer:
    def __init__(
        self,
        transport: Transport,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        watch_timeout: int = 300,
        retry_delay: float = 1.0,
    ) -> None:
        self.transport = transport
        self.rt = rt
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self._cache: dict[str, JSON] = {}
        self._handlers: builtins.list[Handler] = []
        self._synced = asyncio.Event()
        self._resource_version = ""

    # Read-only views: callers must copy before changing an object (cached objects are shared).
    def get(self, key: str) -> JSON | None:
        return self._cache.get(key)

    def list(self) -> builtins.list[JSON]:
        return list(self._cache.values())

    def keys(self) -> builtins.list[str]:
        return list(self._cache)

    @property
    def resource_version(self) -> str:
        return self._resource_version

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)
        for key in self._cache:
            handler(key)

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def _notify(self, key: str) -> None:
        for handler in self._handlers:
            handler(key)

    async def _relist(self) -> None:
        listed = await self.transport.list(
            self.rt, self.namespace, label_selector=self.label_selector, field_selector=self.field_selector
        )
        fresh = {object_key(obj): obj for obj in listed.items}
        changed = [k for k, v in fresh.items() if self._cache.get(k) != v]
        removed = [k for k in self._cache if k not in fresh]
        self._cache = fresh
        self._resource_version = listed.resource_version
        self._synced.set()
        for key in changed + removed:
            self._notify(key)

    def apply_event(self, event_type: str, obj: JSON) -> None:
        """Fold one watch event into the cache (exposed for tests of the folding logic)."""
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._resource_version = str(rv)
        if event_type == "BOOKMARK":
            return
        key = object_key(obj)
        if event_type == "DELETED":
            if self._cache.pop(key, None) is None:
                return
        else:
            self._cache[key] = obj
        self._notify(key)

    async def run(self) -> None:
        """List and watch until cancelled."""
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                async for event in self.transport.watch(
                    self.rt,
                    self.namespace,
                    resource_version=self._resource_version,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                    timeout_seconds=self.watch_timeout,
                ):
                    self.apply_event(event.type, event.obj)
            except asyncio.CancelledError:
                raise
            except st.ApiError as exc:
                if exc.code == 410:
                    need_list = True
                    continue
                log.warning("informer %s: %s; retrying", self.rt.plural, exc)
                need_list = True
                await asyncio.sleep(self.retry_delay)
            except Exception:
                log.exception("informer %s failed; relisting", self.rt.plural)
                need_list = True
                await asyncio.sleep(self.retry_delay)
