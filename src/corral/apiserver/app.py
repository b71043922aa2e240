"""The aiohttp application: middlewares (auth, error safety net), discovery, OpenAPI, version, health and the
resource routes. Assembly only; behaviour lives in the modules it wires together.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from corral.apiserver import discovery, metricsapi, openapi
from corral.apiserver import status as st
from corral.apiserver.auth import TokenAuthenticator
from corral.apiserver.handlers import ResourceHandlers, error_response, json_response
from corral.apiserver.nodeproxy import NodeDirectory
from corral.apiserver.rest import ResourceAPI
from corral.observability.http import ApiMetrics, metrics_handler

log = logging.getLogger(__name__)

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-corral",
    "gitCommit": "corral",
    "gitTreeState": "clean",
    "buildDate": "2026-11-26T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def safety_net(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No request may take the server down: unexpected errors become a 500 Status, logged once."""
    try:
        return await handler(request)
    except st.ApiError as err:
        return error_response(err)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(st.not_found_url())
        if exc.status == 405:
            return error_response(st.method_not_allowed())
        if exc.status == 413:
            return error_response(st.too_large(3 * 1024 * 1024))
        raise
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception as exc:
        log.exception("internal error serving %s %s", request.method, request.path)
        return error_response(st.internal(f"{type(exc).__name__}: {exc}"))


class ApiServerApp:
    def __init__(self, api: ResourceAPI, authenticator: TokenAuthenticator | None, advertise: str,
                 nodes: NodeDirectory | None = None) -> None:
        self.api = api
        self.nodes = nodes or NodeDirectory()
        # metrics.k8s.io is served by the ResourceAPI itself, so in-process clients of ``api`` see it too.
        metricsapi.install(api, self.nodes)
        self.authenticator = authenticator
        self.advertise = advertise
        self._agg_core = orjson.dumps(discovery.aggregated(core=True))
        self._agg_groups = orjson.dumps(discovery.aggregated(core=False))
        self._openapi_docs = openapi.documents()
        self._openapi_index = orjson.dumps(openapi.index(self._openapi_docs))

    def build(self) -> web.Application:
        middlewares: list[Any] = [safety_net]
        if self.authenticator is not None:
            middlewares.insert(0, self.authenticator.middleware())
        # Outermost, so refused (401) and failed requests are counted too.
        request_metrics = ApiMetrics()
        middlewares.insert(0, request_metrics.middleware())
        app = web.Application(middlewares=middlewares, client_max_size=4 * 1024 * 1024)
        request_metrics.install(app)
        app.router.add_get("/metrics", metrics_handler)
        app.router.add_get("/version", self.version)
        for probe in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(probe, self.health)
        app.router.add_get("/api", self.api_root)
        app.router.add_get("/apis", self.apis_root)
        app.router.add_get("/api/v1", self.core_resources)
        app.router.add_get("/apis/{group}", self.group)
        app.router.add_get("/apis/{group}/{version}", self.group_resources)
        app.router.add_get("/openapi/v3", self.openapi_index)
        app.router.add_get("/openapi/v3/{path:.+}", self.openapi_document)
        app.router.add_get("/openapi/v2", self.not_found)
        app.router.add_routes(ResourceHandlers(self.api, self.nodes).routes())
        return app

    async def version(self, request: web.Request) -> web.Response:
        return json_response(VERSION_INFO)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def not_found(self, request: web.Request) -> web.Response:
        return error_response(st.not_found_url())

    def _discovery(self, request: web.Request, aggregated: bytes, legacy: dict[str, object]) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            return web.Response(body=aggregated, headers={"Content-Type": discovery.AGGREGATED_V2})
        return json_response(legacy)

    async def api_root(self, request: web.Request) -> web.Response:
        return self._discovery(request, self._agg_core, discovery.api_versions(self.advertise))

    async def apis_root(self, request: web.Request) -> web.Response:
        return self._discovery(request, self._agg_groups, discovery.api_group_list())

    async def core_resources(self, request: web.Request) -> web.Response:
        doc = discovery.api_resource_list("", "v1")
        return json_response(doc)

    async def group(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        if not discovery.group_versions_exist(group):
            return error_response(st.not_found_url())
        return json_response(discovery.api_group(group))

    async def group_resources(self, request: web.Request) -> web.Response:
        doc = discovery.api_resource_list(request.match_info["group"], request.match_info["version"])
        if doc is None:
            return error_response(st.not_found_url())
        return json_response(doc)

    async def openapi_index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi_index, content_type="application/json")

    async def openapi_document(self, request: web.Request) -> web.Response:
        body = self._openapi_docs.get(request.match_info["path"])
        if body is None:
            return error_response(st.not_found_url())
        headers = {"Cache-Control": "public, immutable"} if request.query.get("hash") else None
        return web.Response(body=body, content_type="application/json", headers=headers)
