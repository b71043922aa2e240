"""HTTP side of the metrics: the API server's request middleware, the ``/metrics`` handler, and the small
plain-HTTP listener a remote ``corral agent`` serves its metrics on.

The middleware is on every API request, so it is kept to: classify the request (``requestinfo``, pure), then
one count and one latency observation into ``requeststats.RequestStats`` (plain integers, no locks).
Long-running requests (watches, exec, log streams) are not observed by the latency histogram, as in
Kubernetes: an hour-long watch is not a slow request. They are tracked by ``apiserver_longrunning_requests``
while they run and counted in ``apiserver_request_total`` when they end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import choose_encoder

from corral.observability.registry import API_REQUESTS, REGISTRY
from corral.observability.requestinfo import request_info
from corral.observability.requeststats import RequestStats

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
# The status of a response once it started, kept on the request for requests that then get cancelled.
# (aiohttp >= 3.12 wants typed request keys; older ones take the string.)
STATUS_KEY: Any = (
    web.RequestKey("corral.metrics.status", int) if hasattr(web, "RequestKey") else "corral.metrics.status"
)


def exposition(accept: str = "") -> tuple[bytes, str]:
    """The registry in the format the ``Accept`` header asks for (OpenMetrics or Prometheus text)."""
    encoder, content_type = choose_encoder(accept)
    if encoder is generate_latest:
        return generate_latest(REGISTRY), content_type
    return encoder(REGISTRY), content_type


async def metrics_handler(request: web.Request) -> web.Response:
    body, content_type = exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


class ApiMetrics:
    """Counts and times the API server's requests into ``registry.API_REQUESTS``."""

    def __init__(self, stats: RequestStats = API_REQUESTS) -> None:
        self.stats = stats

    def install(self, app: web.Application) -> None:
        """Record the status of each response as it starts, for requests cancelled mid-stream."""
        app.on_response_prepare.append(_remember_status)

    def middleware(self) -> Middleware:
        stats = self.stats
        record = stats.record
        clock = time.perf_counter

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            method = request.method
            info = request_info(
                method,
                request.path,
                request.query,
                request.headers.get("Content-Type", "") if method == "PATCH" else "",
            )
            long_running = info.long_running
            if long_running:
                stats.started(info)
            status = 0
            start = clock()
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except Exception:
                status = 500
                raise
            finally:
                if long_running:
                    stats.ended(info)
                # Cancelled (the client went away): count it if its response had started, e.g. a watch.
                status = status or request.get(STATUS_KEY, 0)
                if status:
                    record(info, status, None if long_running else clock() - start)

        return observe


async def _remember_status(request: web.Request, response: web.StreamResponse) -> None:
    request[STATUS_KEY] = response.status


class MetricsServer:
    """``/metrics`` and ``/healthz`` over plain HTTP, for a process without an API server (``corral agent``).

    Binds loopback by default; anything that can reach the port can read the series (no auth, as the
    kube-proxy and kubelet read-only metrics ports)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.address = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Start listening; returns ``host:port`` actually bound (``port`` 0 picks a free one)."""
        app = web.Application()
        app.router.add_get("/metrics", metrics_handler)
        app.router.add_get("/healthz", _ok)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.port
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.address = f"{host}:{port}"
        return self.address

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")
