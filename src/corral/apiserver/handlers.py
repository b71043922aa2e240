"""HTTP handlers for resource paths: a request becomes a ResourceAPI call, its result a response.

Everything protocol-specific lives here: query parameters, content negotiation (JSON, Table), body decoding,
Warning headers, chunked watch streams. Object semantics live in ``rest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from corral.api import printing
from corral.api.resources import ResourceType
from corral.apiserver import eviction, protobuf
from corral.apiserver import status as st
from corral.apiserver.auth import ADMIT_CREATE
from corral.apiserver.bodies import MAX_BODY_BYTES, BodyError, decode_body
from corral.apiserver.nodeproxy import NodeDirectory
from corral.apiserver.paths import Target, UnknownPath, parse_path
from corral.apiserver.podstreams import PodStreams
from corral.apiserver.rest import (
    PATCH_APPLY,
    PATCH_JSON,
    PATCH_STRATEGIC,
    PATCH_TYPES,
    DeleteOptions,
    ResourceAPI,
    WatchEvent,
    WriteOptions,
    WriteResult,
)

JSON = dict[str, Any]
JSON_CT = "application/json"
BODY_TYPES = ["application/json", "application/yaml", protobuf.CONTENT_TYPE]
BOOKMARK_INTERVAL = 30.0


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON_CT, headers=headers)


def error_response(err: st.ApiError) -> web.Response:
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after else None
    return web.Response(body=err.body(), status=err.code, content_type=JSON_CT, headers=headers)


def wants_table(request: web.Request) -> tuple[bool, str]:
    """Whether the Accept header prefers a meta.k8s.io Table, and the includeObject policy."""
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        segs = [s.strip() for s in part.split(";")]
        params = dict(s.split("=", 1) for s in segs[1:] if "=" in s)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            include = request.query.get("includeObject") or "Metadata"
            if include not in ("None", "Metadata", "Object"):
                raise st.bad_request(
                    f'includeObject "{include}" is invalid: must be None, Metadata or Object'
                )
            return True, include
        if segs[0] in ("application/json", "*/*", "application/*"):
            return False, ""
    return False, ""


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _int(request: web.Request, name: str, default: int = 0) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise st.bad_request(f"invalid value for {name}: {value!r} is not an integer") from exc


def write_options(request: web.Request) -> WriteOptions:
    dry_run = request.query.getall("dryRun", [])
    for value in dry_run:
        if value != "All":
            raise st.bad_request(f'Invalid dryRun value {value!r}: supported values: "All"')
    validation = request.query.get("fieldValidation", "Warn") or "Warn"
    if validation not in ("Strict", "Warn", "Ignore"):
        raise st.bad_request(
            f'fieldValidation {validation!r} is invalid: supported values: "Ignore", "Warn", "Strict"'
        )
    return WriteOptions(
        dry_run=bool(dry_run),
        field_validation=validation,
        field_manager=request.query.get("fieldManager", ""),
        force=_bool(request.query.get("force")),
    )


def body_content_type(request: web.Request) -> str:
    """The request's media type; a body without one is read as JSON (the Python client sends none)."""
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower() or "application/json"


async def read_body(request: web.Request, allowed: list[str]) -> Any:
    content_type = body_content_type(request)
    if content_type not in allowed:
        raise st.unsupported_media_type(content_type, allowed)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise st.too_large(MAX_BODY_BYTES)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise st.too_large(MAX_BODY_BYTES)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise st.bad_request("the request body is empty")
    if content_type == protobuf.CONTENT_TYPE:
        return decode_protobuf_body(raw, allowed)
    try:
        return decode_body(raw, content_type)
    except BodyError as exc:
        raise st.bad_request(str(exc)) from exc


def decode_protobuf_body(raw: bytes, allowed: list[str]) -> Any:
    """kubectl's typed-client POSTs (``create configmap`` …) as the JSON dict a JSON client would send."""
    try:
        return protobuf.decode(raw).obj
    except protobuf.UnsupportedKind as exc:  # no table for this kind: point the client at JSON or YAML
        raise st.unsupported_media_type(
            protobuf.CONTENT_TYPE, [t for t in allowed if t != protobuf.CONTENT_TYPE]
        ) from exc
    except protobuf.ProtobufError as exc:
        raise st.bad_request(f"the body of the request could not be decoded as protobuf: {exc}") from exc


def _warning_headers(warnings: list[str]) -> dict[str, str] | None:
    if not warnings:
        return None
    # aiohttp joins repeated headers poorly; Kubernetes clients accept one comma-separated Warning header.
    return {"Warning": ", ".join(f'299 - "{w.replace(chr(34), chr(92) + chr(34))}"' for w in warnings)}


class ResourceHandlers:
    """aiohttp handlers over one :class:`ResourceAPI`."""

    def __init__(self, api: ResourceAPI, nodes: NodeDirectory | None = None) -> None:
        self.api = api
        self.pod_streams = PodStreams(api, nodes or NodeDirectory())

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.route("*", "/api/v1/{tail:.+}", self.dispatch),
            web.route("*", "/apis/{group}/{version}/{tail:.+}", self.dispatch),
        ]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            target = parse_path(request.path)
        except UnknownPath:
            return error_response(st.not_found_url())
        try:
            return await self._dispatch(request, target)
        except st.ApiError as err:
            return error_response(err)

    async def _dispatch(self, request: web.Request, t: Target) -> web.StreamResponse:
        method = request.method
        if t.subresource == "log" and method == "GET" and t.name:
            return await self.pod_streams.logs(request, t.rt, t.namespace, t.name)
        if t.subresource == "exec" and method in ("GET", "POST") and t.name:
            return await self.pod_streams.exec(request, t.rt, t.namespace, t.name)
        if t.subresource == "binding" and method == "POST" and t.name:
            return await self._bind(request, t)
        if t.subresource == "eviction" and method == "POST" and t.name and t.namespace:
            body = await read_body(request, BODY_TYPES)
            opts = write_options(request)
            code, answer, notes = await eviction.evict(self.api, t.namespace, t.name, body, opts)
            return json_response(answer, code, _warning_headers(notes))
        if t.subresource in ("log", "exec", "portforward", "attach", "eviction", "binding"):
            raise st.ApiError(
                405,
                "MethodNotAllowed",
                f"the server does not allow this method on the requested resource: {t.subresource} "
                "is not served yet",
            )
        if t.subresource == "scale":
            return await self._scale(request, t)
        if t.name is None:
            if method == "GET":
                if _bool(request.query.get("watch")):
                    return await self._watch(request, t)
                return await self._list(request, t)
            if method == "POST":
                return await self._create(request, t)
            if method == "DELETE":
                return await self._delete_collection(request, t)
            raise st.method_not_allowed()
        if method == "GET":
            obj = await self.api.get(t.rt, t.namespace, t.name)
            if t.subresource == "status" or t.subresource is None:
                return self._object_response(request, t.rt, obj)
        if method == "PUT":
            body = await read_body(request, BODY_TYPES)
            result = await self.api.update(
                t.rt, t.namespace, t.name, body, write_options(request), t.subresource
            )
            return self._write_response(request, t.rt, result)
        if method == "PATCH":
            patch_type = body_content_type(request)
            body = await read_body(request, [*PATCH_TYPES, "application/json"])
            if patch_type == "application/json":
                # No patch type given: infer it as the Python client does (list → JSON patch, dict → SMP).
                patch_type = PATCH_JSON if isinstance(body, list) else PATCH_STRATEGIC
            if patch_type not in PATCH_TYPES:
                raise st.unsupported_media_type(patch_type, list(PATCH_TYPES))
            opts = write_options(request)
            if patch_type == PATCH_APPLY and not opts.field_manager:
                raise st.bad_request(
                    "PATCH with apply-patch+yaml requires a fieldManager query parameter "
                    "(fieldManager is required for apply requests)"
                )
            result = await self.api.patch(t.rt, t.namespace, t.name, patch_type, body, opts, t.subresource)
            return self._write_response(request, t.rt, result)
        if method == "DELETE" and t.subresource is None:
            delete_opts = await self._delete_options(request)
            obj, finished = await self.api.delete(t.rt, t.namespace, t.name, delete_opts)
            if finished and not t.rt.returns_deleted_object:
                meta = obj.get("metadata") or {}
                return json_response(st.success_status(t.rt, t.name, str(meta.get("uid", ""))))
            return json_response(obj)
        raise st.method_not_allowed()

    # ------------------------------------------------------------------ reads

    def _object_response(
        self,
        request: web.Request,
        rt: ResourceType,
        obj: JSON,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        table, include = wants_table(request)
        if table:
            body = printing.to_table(
                rt.kind,
                [obj],
                self.api.clock.now(),
                list_resource_version=str(obj["metadata"].get("resourceVersion", "")),
                include_object=include,
            )
            return json_response(body, status, headers)
        return json_response(obj, status, headers)

    async def _list(self, request: web.Request, t: Target) -> web.Response:
        limit = _int(request, "limit")
        if limit < 0:
            raise st.bad_request("limit must be non-negative")
        result = await self.api.list(
            t.rt,
            t.namespace,
            label_selector=request.query.get("labelSelector"),
            field_selector=request.query.get("fieldSelector"),
            limit=limit,
            continue_token=request.query.get("continue") or None,
        )
        table, include = wants_table(request)
        if table:
            body = printing.to_table(
                t.rt.kind,
                result.items,
                self.api.clock.now(),
                list_resource_version=result.resource_version,
                continue_token=result.continue_token,
                include_object=include,
            )
            return json_response(body)
        meta: JSON = {"resourceVersion": result.resource_version}
        if result.continue_token:
            meta["continue"] = result.continue_token
            meta["remainingItemCount"] = result.remaining
        payload = (
            b'{"kind":"'
            + t.rt.list_kind.encode()
            + b'","apiVersion":"'
            + t.rt.api_version.encode()
            + b'","metadata":'
            + orjson.dumps(meta)
            + b',"items":'
            + orjson.dumps(result.items)
            + b"}"
        )
        return web.Response(body=payload, content_type=JSON_CT)

    # ------------------------------------------------------------------ writes

    def _write_response(self, request: web.Request, rt: ResourceType, result: WriteResult) -> web.Response:
        return self._object_response(
            request, rt, result.obj, 201 if result.created else 200, _warning_headers(result.warnings)
        )

    async def _create(self, request: web.Request, t: Target) -> web.Response:
        body = await read_body(request, BODY_TYPES)
        admit = request.get(ADMIT_CREATE)  # set by the authenticator when the body decides (node identities)
        if admit is not None and (refused := admit(body)) is not None:
            raise refused
        result = await self.api.create(t.rt, t.namespace, body, write_options(request))
        return self._write_response(request, t.rt, result)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        body: Any = {}
        if request.can_read_body:
            raw = await request.content.read(MAX_BODY_BYTES + 1)
            if len(raw) > MAX_BODY_BYTES:
                raise st.too_large(MAX_BODY_BYTES)
            if raw.strip():
                try:
                    body = decode_body(raw, "application/json")
                except BodyError as exc:
                    raise st.bad_request(str(exc)) from exc
        if not isinstance(body, dict):
            raise st.bad_request("DeleteOptions must be a JSON object")
        policy = body.get("propagationPolicy") or request.query.get("propagationPolicy") or "Background"
        grace = body.get("gracePeriodSeconds")
        if grace is None and request.query.get("gracePeriodSeconds"):
            grace = _int(request, "gracePeriodSeconds")
        pre = body.get("preconditions") or {}
        dry = body.get("dryRun") or request.query.getall("dryRun", [])
        if body.get("orphanDependents") is True:
            policy = "Orphan"
        return DeleteOptions(
            propagation_policy=str(policy),
            grace_period_seconds=grace,
            precondition_uid=pre.get("uid"),
            precondition_rv=pre.get("resourceVersion"),
            dry_run=bool(dry),
        )

    async def _delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        deleted = await self.api.delete_collection(
            t.rt,
            t.namespace,
            label_selector=request.query.get("labelSelector"),
            field_selector=request.query.get("fieldSelector"),
            opts=opts,
        )
        return json_response(
            {
                "kind": t.rt.list_kind,
                "apiVersion": t.rt.api_version,
                "metadata": {"resourceVersion": str(self.api.store.revision)},
                "items": deleted,
            }
        )

    # ------------------------------------------------------------------ binding

    async def _bind(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None and t.namespace is not None
        body = await read_body(request, BODY_TYPES)
        if not isinstance(body, dict) or not isinstance(body.get("target"), dict):
            raise st.bad_request("a Binding needs a target (the node to bind the pod to)")
        meta: JSON = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
        if meta.get("name") not in (None, t.name):
            raise st.bad_request(
                f"the name of the Binding ({meta.get('name')}) does not match the pod ({t.name})"
            )
        await self.api.bind(t.namespace, t.name, str(body["target"].get("name") or ""), meta.get("uid"))
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    # ------------------------------------------------------------------ scale

    async def _scale(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        if request.method == "GET":
            return json_response(await self.api.get_scale(t.rt, t.namespace, t.name))
        if request.method == "PUT":
            body = await read_body(request, BODY_TYPES)
            scale = await self.api.update_scale(
                t.rt, t.namespace, t.name, lambda _old: body, write_options(request)
            )
            return json_response(scale)
        if request.method == "PATCH":
            patch_type = body_content_type(request)
            body = await read_body(request, [*PATCH_TYPES, "application/json"])
            from corral.apiserver.patch import PatchError
            from corral.apiserver.patch.jsonpatch import apply_json_patch
            from corral.apiserver.patch.merge import apply_merge_patch

            # Only a resourceVersion the patch itself sets pins the write. The one the patched Scale inherits
            # from the current object must not turn a CAS conflict with a concurrent writer (a controller
            # updating status) into a 409 instead of a retry.
            if isinstance(body, list):
                pinned = any(
                    isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" for op in body
                )
            else:
                pinned = isinstance(body, dict) and bool((body.get("metadata") or {}).get("resourceVersion"))

            def change(old: JSON) -> Any:
                if not pinned:
                    old = {
                        **old,
                        "metadata": {k: v for k, v in old["metadata"].items() if k != "resourceVersion"},
                    }
                try:
                    if patch_type == "application/json-patch+json":
                        return apply_json_patch(old, body)
                    if isinstance(body, dict):
                        return apply_merge_patch(old, body)
                except PatchError as exc:
                    raise st.ApiError(422, "Invalid", str(exc)) from exc
                raise st.bad_request("the patch must be a JSON object")

            return json_response(
                await self.api.update_scale(t.rt, t.namespace, t.name, change, write_options(request))
            )
        raise st.method_not_allowed()

    # ------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        timeout = _int(request, "timeoutSeconds", 0)
        bookmarks = _bool(request.query.get("allowWatchBookmarks"))
        table, include = wants_table(request)
        deadline = asyncio.get_running_loop().time() + timeout if timeout > 0 else None
        expired: st.ApiError | None = None
        try:
            events = await self.api.watch(
                t.rt,
                t.namespace,
                resource_version=request.query.get("resourceVersion"),
                label_selector=request.query.get("labelSelector"),
                field_selector=request.query.get("fieldSelector"),
                deadline=deadline,
                idle_interval=BOOKMARK_INTERVAL if bookmarks else None,
            )
        except st.ApiError as err:
            if err.code != 410:
                raise
            # Like the real apiserver: a too-old resourceVersion is an ERROR event in a 200 stream.
            expired = err
        response = web.StreamResponse(
            status=200, headers={"Content-Type": JSON_CT, "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        if expired is not None:
            await response.write(_event_line("ERROR", expired.status()))
            await response.write_eof()
            return response
        with contextlib.suppress(ConnectionResetError):
            async for line in self._watch_lines(t.rt, events, table, include):
                await response.write(line)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    async def _watch_lines(
        self, rt: ResourceType, events: AsyncIterator[WatchEvent], table: bool, include: str
    ) -> AsyncIterator[bytes]:
        """The stream's lines. Its end (deadline) and its bookmarks (an idle tick) come from ``events``."""
        iterator = events.__aiter__()
        try:
            async for event in iterator:
                if event.type == "BOOKMARK":
                    bookmark = {
                        "kind": rt.kind,
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": str(self.api.store.revision)},
                    }
                    yield _event_line("BOOKMARK", bookmark)
                    continue
                obj = event.obj
                if not table and event.raw is not None:
                    yield _event_line(event.type, obj, event.raw)
                    continue
                if table:
                    obj = printing.to_table(
                        rt.kind,
                        [obj],
                        self.api.clock.now(),
                        list_resource_version=str(obj["metadata"].get("resourceVersion", "")),
                        include_object=include,
                    )
                yield _event_line(event.type, obj)
        except st.ApiError as err:
            yield _event_line("ERROR", err.status())
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _event_line(kind: str, obj: JSON, raw: bytes | None = None) -> bytes:
    """One watch event; ``raw`` is ``obj`` already encoded (by the store), sent as it is."""
    body = orjson.dumps(obj) if raw is None else raw
    return b'{"type":"' + kind.encode() + b'","object":' + body + b"}\n"
