"""The node's HTTP ingress: an HTTP/1.1 reverse proxy routing by Ingress host and path to Service endpoints.

Boundary: routing decisions come from the pure :mod:`corral.proxy.ingressroutes` table (rebuilt from a full
snapshot on each :meth:`IngressServer.update`); this module only does the IO — accept requests, forward
them, stream the answers back, count. Events and Ingress status are the node glue's job (it reads
:attr:`IngressServer.problems` and :func:`corral.proxy.ingressroutes.load_balancer_ingress`).

Why by hand on aiohttp rather than a library: there is no maintained asyncio reverse-proxy library; aiohttp
gives both halves (server, pooled keep-alive client), so the proxy itself is only the forwarding policy:

- Bodies stream both ways in chunks as they arrive; nothing is buffered whole. The client's
  ``Content-Length`` is kept (else the upstream request is chunked); responses are passed through
  undecoded (``auto_decompress=False``), so lengths and encodings stay the backend's.
- Hop-by-hop headers (RFC 9110 §7.6.1: ``Connection`` and the headers it names, ``Keep-Alive``,
  ``Transfer-Encoding``, ``TE``, ``Trailer``, ``Upgrade``, ``Proxy-*``) are not forwarded either way;
  ``Expect: 100-continue`` is answered here, once a route with a ready endpoint was found. The original
  ``Host`` is kept. ``X-Forwarded-For`` gets the client address appended; ``X-Forwarded-Host``, ``-Proto``,
  ``-Port`` and ``X-Real-IP`` are set by the proxy (incoming values are not trusted).
- Backends of a route are taken round-robin. A connect failure moves to the next backend; so does a backend
  closing the connection before any response byte (a stale keep-alive connection, a process that just
  died) when the method is idempotent and no body byte was sent yet. Each backend is tried at most once per
  request. No cookies are kept (a shared jar would leak one client's cookies to another).
- Answers of the proxy itself: 404 (no rule and no default backend), 503 (the route's Service has no ready
  endpoint, or cannot be resolved — the page says which), 502 (every backend failed), 504 (the backend did
  not answer within ``read_timeout``). Plain text, or HTML when the client accepts it.

Not supported (yet): protocol upgrades (WebSocket), TLS termination (``spec.tls`` is ignored), HTTP/2.
"""

from __future__ import annotations

import html
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from corral.proxy.backends import Backend
from corral.proxy.ingressroutes import (
    DEFAULT_CLASSES,
    Problem,
    Route,
    RoutingTable,
    Target,
    build_routing_table,
    handled_classes,
    is_handled,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
"""Headers that describe one connection, never forwarded (RFC 9110 §7.6.1, and legacy Proxy-Connection)."""

SET_BY_PROXY = frozenset({"x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-real-ip", "expect"})
"""Request headers the proxy replaces (or, for Expect, answers itself)."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# Never let the client library invent request headers the client did not send.
SKIP_AUTO_HEADERS = (hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)

NO_ROUTE = "(no route)"
"""The counters' key for requests no rule matched."""


@dataclass(slots=True)
class RouteCounters:
    requests: int = 0
    responses_5xx: int = 0
    bytes_in: int = 0
    """Request body bytes forwarded to backends."""
    bytes_out: int = 0
    """Response body bytes forwarded to clients."""
    backend_errors: int = 0
    """Attempts that failed (connect refused, closed before answering, timeout)."""
    retries: int = 0
    """Attempts moved to a next backend."""
    client_aborts: int = 0
    """Clients that disconnected before the answer was complete."""


def connection_listed(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """The extra hop-by-hop headers a ``Connection`` header names."""
    names: set[str] = set()
    for value in headers.getall(hdrs.CONNECTION, []):
        names.update(part.strip().lower() for part in value.split(",") if part.strip())
    return frozenset(names)


def forwarded_request_headers(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], client_ip: str, proxy_port: int, scheme: str = "http"
) -> CIMultiDict[str]:
    """The headers sent to the backend: end-to-end ones as received, plus the ``X-Forwarded-*`` set."""
    dropped = HOP_BY_HOP | SET_BY_PROXY | connection_listed(headers)
    out: CIMultiDict[str] = CIMultiDict()
    prior_for: list[str] = []
    for name, value in headers.items():
        lower = name.lower()
        if lower == "x-forwarded-for":
            prior_for.append(value)
        elif lower not in dropped:
            out.add(name, value)
    chain = ", ".join([*prior_for, client_ip]) if client_ip else ", ".join(prior_for)
    if chain:
        out["X-Forwarded-For"] = chain
    host = headers.get(hdrs.HOST)
    if host:
        out["X-Forwarded-Host"] = host
    out["X-Forwarded-Proto"] = scheme
    out["X-Forwarded-Port"] = str(proxy_port)
    if client_ip:
        out["X-Real-IP"] = client_ip
    return out


def forwarded_response_headers(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    dropped = HOP_BY_HOP | connection_listed(headers)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        if name.lower() not in dropped:
            out.add(name, value)
    return out


def error_page(status: int, detail: str, accept: str = "") -> web.Response:
    """The proxy's own answer: ``<status> <reason> — <detail>``, as HTML when the client accepts it."""
    reason = _reason(status)
    line = f"{status} {reason} — {detail}"
    headers = {hdrs.CACHE_CONTROL: "no-store"}
    if "text/html" in accept:
        title = html.escape(f"{status} {reason}")
        body = (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
            f"{title}</title></head>\n<body><h1>{title}</h1>\n<p>{html.escape(line)}</p>\n"
            "<hr><p>corral ingress</p></body></html>\n"
        )
        return web.Response(status=status, text=body, content_type="text/html", headers=headers)
    return web.Response(status=status, text=line + "\n", content_type="text/plain", headers=headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _backend_url(backend: Backend, target: str) -> URL:
    host = f"[{backend.ip}]" if ":" in backend.ip else backend.ip
    return URL(f"http://{host}:{backend.port}{target}", encoded=True)


class _Body:
    """The client's request body as an async iterator for one upstream attempt; remembers whether any
    byte was taken, because only an untouched body can be sent again to the next backend."""

    def __init__(self, request: web.BaseRequest, counters: RouteCounters) -> None:
        self.request = request
        self.counters = counters
        self.started = False
        self.client_failed = False
        """The client stopped sending (disconnected mid-body): the failure is not the backend's."""

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            async for chunk in self.request.content.iter_any():
                self.counters.bytes_in += len(chunk)
                yield chunk
        except Exception:
            self.client_failed = True
            raise


class _ClientGone(Exception):
    """The client went away while its request was being forwarded; nobody is left to answer."""


class _Failed(Exception):
    """Every attempt failed: the proxy answers with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class IngressServer:
    """One HTTP listener serving every handled Ingress of the cluster on ``host:port``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        classes: Collection[str] = DEFAULT_CLASSES,
        connect_timeout: float = 5.0,
        read_timeout: float | None = 60.0,
        shutdown_timeout: float = 10.0,
        max_backend_connections: int = 1024,
        keepalive_timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.classes = frozenset(classes)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.shutdown_timeout = shutdown_timeout
        self.max_backend_connections = max_backend_connections
        self.keepalive_timeout = keepalive_timeout
        self._table = RoutingTable()
        self._counters: dict[str, RouteCounters] = {}
        self._next: dict[tuple[str, str], int] = {}
        self._runner: web.ServerRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._bound: tuple[str, int] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self.max_backend_connections,
                limit_per_host=0,
                keepalive_timeout=self.keepalive_timeout,
                use_dns_cache=False,
            ),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout
            ),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )
        server = web.Server(self._handle, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self._session.close()
            self._session = None
            raise
        self._runner = runner
        sockname = runner.addresses[0]
        self._bound = (str(sockname[0]), int(sockname[1]))
        log.info("ingress listening on %s:%d", self.host, self._bound[1])

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to ``shutdown_timeout``), close the pool."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def bound_port(self) -> int:
        if self._bound is None:
            raise RuntimeError("the ingress is not listening")
        return self._bound[1]

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.bound_port)

    # ------------------------------------------------------------------ snapshots

    def update(
        self,
        ingresses: Sequence[JSON],
        services: Sequence[JSON],
        slices: Sequence[JSON],
        *,
        ingress_classes: Sequence[JSON] | None = None,
    ) -> None:
        """Replace the routing table from a full snapshot. ``ingress_classes``, when given, adds the classes
        that name this controller or are marked default to the handled ones."""
        if ingress_classes is not None:
            self.classes = frozenset(self.classes | handled_classes(ingress_classes))
        self._table = build_routing_table(ingresses, services, slices, classes=self.classes)

    @property
    def table(self) -> RoutingTable:
        return self._table

    @property
    def problems(self) -> tuple[Problem, ...]:
        """What the current table could not resolve, as ``(ingress key, message)``."""
        return self._table.problems

    def handles(self, ingress: Mapping[str, Any]) -> bool:
        """Whether this ingress serves ``ingress`` (so its status should name this node)."""
        return is_handled(ingress, self.classes)

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per route name (``<ingress> <host> <pathType> <path>``, ``<ingress> (default backend)``,
        ``(no route)``); monotonic, kept for routes that disappeared."""
        return {name: asdict(counters) for name, counters in self._counters.items()}

    # ------------------------------------------------------------------ requests

    def _counters_for(self, name: str) -> RouteCounters:
        counters = self._counters.get(name)
        if counters is None:
            counters = self._counters[name] = RouteCounters()
        return counters

    def _attempt_order(self, target: Target) -> tuple[Backend, ...]:
        backends = target.backends
        start = self._next.get(target.pool, 0) % len(backends)
        self._next[target.pool] = start + 1
        return backends[start:] + backends[:start]

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        accept = request.headers.get(hdrs.ACCEPT, "")
        route = self._table.route(request.headers.get(hdrs.HOST, ""), request.path)
        if route is None:
            self._counters_for(NO_ROUTE).requests += 1
            host = request.headers.get(hdrs.HOST, "")
            return error_page(404, f"no ingress rule matches host {host!r} and path {request.path!r}", accept)
        counters = self._counters_for(route.name)
        counters.requests += 1
        reason = route.target.unavailable_reason
        if reason:
            counters.responses_5xx += 1
            return error_page(503, reason, accept)
        expect = request.headers.get(hdrs.EXPECT)
        if expect is not None:
            if expect.lower() != "100-continue":
                return error_page(417, f"unsupported Expect: {expect}", accept)
            if request.version >= HttpVersion11:
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
        try:
            return await self._forward(request, route, counters)
        except _Failed as failure:
            counters.responses_5xx += 1
            return error_page(failure.status, failure.detail, accept)
        except _ClientGone:
            counters.client_aborts += 1
            # What nginx logs as 499: the answer goes nowhere; closing is all that is left.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=400)

    async def _open_upstream(
        self, request: web.BaseRequest, route: Route, counters: RouteCounters
    ) -> aiohttp.ClientResponse:
        """The first backend response to arrive, trying backends in round-robin order."""
        session = self._session
        assert session is not None, "the ingress is not started"
        target = route.target
        raw = request.raw_path if request.raw_path.startswith("/") else request.rel_url.raw_path_qs
        headers = forwarded_request_headers(request.headers, request.remote or "", self.bound_port)
        has_body = request.body_exists
        retry_disconnect = request.method in IDEMPOTENT_METHODS
        order = self._attempt_order(target)
        last_error = ""
        for attempt, backend in enumerate(order):
            if attempt:
                counters.retries += 1
            body = _Body(request, counters)
            try:
                return await session.request(
                    request.method,
                    _backend_url(backend, raw),
                    headers=headers,
                    data=body.chunks() if has_body else None,
                    allow_redirects=False,
                    skip_auto_headers=SKIP_AUTO_HEADERS,
                )
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Nothing reached the backend: any request may go to the next one.
                counters.backend_errors += 1
                last_error = f"{backend.ip}:{backend.port}: {exc}"
                log.debug(
                    "ingress %s: connect to %s:%d failed: %s", route.name, backend.ip, backend.port, exc
                )
            except aiohttp.ServerTimeoutError as exc:
                counters.backend_errors += 1
                raise _Failed(504, f"service {target.service} did not answer in time") from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if body.client_failed:
                    raise _ClientGone from exc
                counters.backend_errors += 1
                last_error = f"{backend.ip}:{backend.port}: {exc}"
                log.debug("ingress %s: %s:%d closed early: %s", route.name, backend.ip, backend.port, exc)
                if not (retry_disconnect and not body.started):
                    break
            except aiohttp.ClientError as exc:
                if body.client_failed:
                    raise _ClientGone from exc
                counters.backend_errors += 1
                last_error = f"{backend.ip}:{backend.port}: {exc}"
                break
        # The page names the Service, not backend addresses; the log has the cause.
        log.warning(
            "ingress %s: no endpoint of %s answered; last error: %s", route.name, target.service, last_error
        )
        raise _Failed(502, f"no endpoint of service {target.service} answered")

    async def _forward(
        self, request: web.BaseRequest, route: Route, counters: RouteCounters
    ) -> web.StreamResponse:
        upstream = await self._open_upstream(request, route, counters)
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            response.headers.extend(forwarded_response_headers(upstream.headers))
            if upstream.status >= 500:
                counters.responses_5xx += 1
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                    counters.bytes_out += len(chunk)
            except ConnectionError:
                # The client went away: nothing to tell it. The upstream connection is closed below.
                counters.client_aborts += 1
                upstream.close()
                return response
            except (TimeoutError, aiohttp.ClientError) as exc:
                # The backend failed mid-body: the status line is gone, so the only honest signal left is
                # to cut the client connection (a short Content-Length or a missing last chunk).
                counters.backend_errors += 1
                log.debug("ingress %s: upstream body failed: %s", route.name, exc)
                upstream.close()
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
        finally:
            upstream.release()
