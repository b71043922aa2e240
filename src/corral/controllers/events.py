"""Recording core/v1 Events for controller actions, deduplicated like client-go's event correlator.

The same (object, reason, message) within a process bumps ``count`` and ``lastTimestamp`` of one Event
instead of creating another. Events are best effort: a failure to record never fails a reconcile.

The dedup memory is bounded (``max_entries``, oldest forgotten first) so a long-lived recorder does not grow
with every object it ever saw; forgetting only costs one AlreadyExists round trip if that event recurs.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from typing import Any

from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.util.clock import Clock, SystemClock, rfc3339

log = logging.getLogger(__name__)

JSON = dict[str, Any]
EVENTS = REGISTRY.require("events")


def involved_object(obj: JSON) -> JSON:
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion", ""),
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


class EventRecorder:
    def __init__(
        self,
        transport: Transport,
        component: str,
        clock: Clock | None = None,
        host: str = "",
        max_entries: int = 4096,
    ) -> None:
        self.transport = transport
        self.component = component
        self.host = host
        self.clock: Clock = clock or SystemClock()
        self.max_entries = max_entries
        self._seen: dict[str, int] = {}
        self._by_uid: dict[str, set[str]] = {}
        self._uid_of: dict[str, str] = {}

    def forget(self, uid: str) -> None:
        """Drop the dedup state of an object that is gone (keeps a long-lived recorder bounded)."""
        for name in self._by_uid.pop(uid, set()):
            self._seen.pop(name, None)
            self._uid_of.pop(name, None)

    def _remember(self, name: str, uid: str, count: int) -> None:
        self._seen[name] = count
        if name not in self._uid_of:
            self._uid_of[name] = uid
            self._by_uid.setdefault(uid, set()).add(name)
        while len(self._seen) > self.max_entries:
            self._drop(next(iter(self._seen)))

    def _drop(self, name: str) -> None:
        self._seen.pop(name, None)
        owner = self._uid_of.pop(name, None)
        names = self._by_uid.get(owner or "")
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_uid[owner or ""]

    def tracked(self) -> int:
        """How many events the recorder remembers (for tests of the bound)."""
        return len(self._seen)

    def _name(self, obj: JSON, reason: str, message: str) -> str:
        meta = obj.get("metadata") or {}
        digest = hashlib.sha1(f"{meta.get('uid')}|{reason}|{message}".encode()).hexdigest()[:16]
        return f"{meta.get('name', 'object')}.{digest}"

    async def record(self, obj: JSON, etype: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        name = self._name(obj, reason, message)
        now = rfc3339(self.clock.now())
        try:
            if name in self._seen:
                current = copy.deepcopy(await self.transport.get(EVENTS, namespace, name))
                current["count"] = int(current.get("count") or 1) + 1
                current["lastTimestamp"] = now
                await self.transport.update(EVENTS, namespace, name, current)
                self._remember(name, str(meta.get("uid", "")), int(current["count"]))
                return
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": involved_object(obj),
                "reason": reason,
                "message": message,
                "type": etype,
                "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                "reportingComponent": self.component,
                "reportingInstance": self.host,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }
            await self.transport.create(EVENTS, namespace, event)
            self._remember(name, str(meta.get("uid", "")), 1)
        except st.ApiError as exc:
            if exc.reason == "AlreadyExists":
                self._remember(name, str(meta.get("uid", "")), 1)
                await self.record(obj, etype, reason, message)
                return
            self._drop(name)
            log.debug("event %s on %s/%s not recorded: %s", reason, namespace, meta.get("name"), exc)
