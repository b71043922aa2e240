"""HTTP transport: the Kubernetes REST API over aiohttp, for the CLI and for agents on other machines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from corral.api.resources import ResourceType
from corral.apiserver import status as st
from corral.client.base import JSON, ObjectList, WatchEvent
from corral.client.kubeconfig import ClusterAccess

_ERROR_FIELDS = ("code", "reason", "message")


def resource_path(
    rt: ResourceType, namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else "/api/v1"
    if rt.namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{rt.plural}"
    if name is not None:
        base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
    return base


def _error_from(status: int, body: bytes) -> st.ApiError:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        details = doc.get("details") or {}
        causes = [
            st.Cause(c.get("reason", ""), c.get("message", ""), c.get("field", ""))
            for c in details.get("causes") or []
        ]
        return st.ApiError(
            int(doc.get("code") or status),
            str(doc.get("reason", "")),
            str(doc.get("message", "")),
            str(details.get("name", "")),
            str(details.get("group", "")),
            str(details.get("kind", "")),
            causes,
        )
    text = body.decode(errors="replace").strip()[:500]
    return st.ApiError(status, "Unknown", text or f"HTTP {status}")


class HttpTransport:
    def __init__(self, access: ClusterAccess, *, timeout: float = 60.0) -> None:
        self.access = access
        headers = {"Accept": "application/json", "User-Agent": "corral-client/0.1"}
        if access.token:
            headers["Authorization"] = f"Bearer {access.token}"
        connector = aiohttp.TCPConnector(ssl=access.ssl_context(), limit=64)
        self._session = aiohttp.ClientSession(
            base_url=access.server,
            headers=headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None),
            json_serialize=lambda o: orjson.dumps(o).decode(),
        )
        self._timeout = timeout

    def _transport_error(self, exc: aiohttp.ClientError, what: str) -> st.ApiError:
        """A client-side failure (no HTTP answer) as the 503 Status every caller already handles."""
        if isinstance(exc, aiohttp.ClientConnectorError):
            message = f"cannot reach the Corral API server at {self.access.server}: {exc.os_error}"
        else:
            message = f"{what} {self.access.server} failed: {exc}"
        return st.ApiError(503, "ServiceUnavailable", message)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str | None = None,
    ) -> Any:
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        if accept:
            headers["Accept"] = accept
        try:
            async with self._session.request(
                method,
                path,
                params=params,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _error_from(resp.status, raw)
                return orjson.loads(raw) if raw else None
        except aiohttp.ClientError as exc:
            raise self._transport_error(exc, "request to") from exc

    async def get(
        self, rt: ResourceType, namespace: str | None, name: str, subresource: str | None = None
    ) -> JSON:
        result: JSON = await self.request("GET", resource_path(rt, namespace, name, subresource))
        return result

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
        params = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if continue_token:
            params["continue"] = continue_token
        doc = await self.request("GET", resource_path(rt, namespace), params=params)
        meta = doc.get("metadata") or {}
        return ObjectList(doc.get("items") or [], str(meta.get("resourceVersion", "")), meta.get("continue"))

    @staticmethod
    def _write_params(dry_run: bool, field_manager: str, force: bool = False) -> dict[str, str]:
        params = {"fieldValidation": "Strict"}
        if dry_run:
            params["dryRun"] = "All"
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        return params

    async def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: JSON,
        *,
        dry_run: bool = False,
        field_manager: str = "",
    ) -> JSON:
        result: JSON = await self.request(
            "POST", resource_path(rt, namespace), body=obj, params=self._write_params(dry_run, field_manager)
        )
        return result

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
        result: JSON = await self.request(
            "PUT",
            resource_path(rt, namespace, name, subresource),
            body=obj,
            params=self._write_params(dry_run, field_manager),
        )
        return result

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
        result: JSON = await self.request(
            "PATCH",
            resource_path(rt, namespace, name, subresource),
            body=body,
            content_type=patch_type,
            params=self._write_params(dry_run, field_manager, force),
        )
        return result

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
        body: JSON = {"propagationPolicy": propagation_policy}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if dry_run:
            body["dryRun"] = ["All"]
        if precondition_uid:
            body["preconditions"] = {"uid": precondition_uid}
        result: JSON = await self.request("DELETE", resource_path(rt, namespace, name), body=body)
        return result

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str | None = None) -> None:
        metadata: JSON = {"name": name, "namespace": namespace}
        if uid:
            metadata["uid"] = uid  # upstream checks it as a precondition
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": metadata,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
        }
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/binding"
        await self.request("POST", path, body=body)

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
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds:
            params["timeoutSeconds"] = str(timeout_seconds)
        try:
            async with self._session.get(resource_path(rt, namespace), params=params) as resp:
                if resp.status >= 400:
                    raise _error_from(resp.status, await resp.read())
                async for line in _lines(resp.content):
                    doc = orjson.loads(line)
                    if doc.get("type") == "ERROR":
                        raise _error_from(
                            int((doc.get("object") or {}).get("code") or 500), orjson.dumps(doc.get("object"))
                        )
                    yield WatchEvent(str(doc.get("type")), doc.get("object") or {})
        except aiohttp.ClientError as exc:
            raise self._transport_error(exc, "watch on") from exc

    async def stream(self, path: str, *, params: dict[str, str] | None = None) -> AsyncIterator[bytes]:
        """GET ``path`` and yield the body as it arrives (``pods/{name}/log?follow=true``); no timeout, so a
        followed stream lasts until the server ends it or the caller stops iterating."""
        try:
            async with self._session.get(path, params=params, headers={"Accept": "*/*"}) as resp:
                if resp.status >= 400:
                    raise _error_from(resp.status, await resp.read())
                async for chunk in resp.content.iter_any():
                    yield chunk
        except aiohttp.ClientError as exc:
            raise self._transport_error(exc, "stream from") from exc

    @asynccontextmanager
    async def websocket(
        self, path: str, *, params: Sequence[tuple[str, str]], protocols: tuple[str, ...]
    ) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket to ``path`` (``pods/{name}/exec``). A refused upgrade becomes the server's own Status
        error: the handshake response carries no body in aiohttp, so the same URL is fetched once more
        without the upgrade (the server validates pod and container before it looks at the upgrade)."""
        try:
            ws = await self._session.ws_connect(
                path, params=params, protocols=protocols, max_msg_size=16 * 1024 * 1024, autoping=True
            )
        except aiohttp.WSServerHandshakeError as exc:
            try:
                async with self._session.get(path, params=params) as resp:
                    body, status = await resp.read(), resp.status
            except aiohttp.ClientError:
                body, status = b"", exc.status
            error = _error_from(status if status >= 400 else exc.status, body or exc.message.encode())
            raise error from None  # the server answered: not chained, so it never reads as a connection error
        except aiohttp.ClientError as exc:
            raise self._transport_error(exc, "connection to") from exc
        try:
            yield ws
        finally:
            await ws.close()

    async def close(self) -> None:
        await self._session.close()


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """NDJSON lines of any length (aiohttp's readline caps lines at 128 KiB; objects may reach 3 MiB)."""
    buffer = b""
    async for chunk in stream.iter_any():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
