"""The client's transport seam: resource operations that both the HTTP and the in-process transport provide.

Errors are :class:`corral.apiserver.status.ApiError` on both transports, so callers (controllers, CLI)
handle ``e.code == 404`` or ``e.reason == "Conflict"`` the same way whether they run inside ``corral up``
or on another machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from corral.api.resources import ResourceType

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[JSON]
    resource_version: str
    continue_token: str | None = None


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: str
    obj: JSON


class Transport(Protocol):
    async def get(
        self, rt: ResourceType, namespace: str | None, name: str, subresource: str | None = None
    ) -> JSON: ...

    async def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 0,
        continue_token: str | None = None,
    ) -> ObjectList: ...

    async def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: JSON,
        *,
        dry_run: bool = False,
        field_manager: str = "",
    ) -> JSON: ...

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
    ) -> JSON: ...

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
    ) -> JSON: ...

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
    ) -> JSON: ...

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str | None = None) -> None:
        """Assign a pod to a node (``POST pods/{name}/binding``); 409 if already bound or uid differs."""
        ...

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[WatchEvent]: ...

    async def close(self) -> None: ...
