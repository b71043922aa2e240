"""TCP forwarding for the service proxy: accept on a frontend, connect to a backend, splice both ways.

Built on asyncio ``Protocol``/``Transport`` callbacks, not ``StreamReader`` loops: each chunk read from one
side (uvloop and asyncio read up to 256 KiB at a time) is handed to the other side's ``transport.write``
as is, with a few integer additions for the counters and no per-byte Python work. Backpressure is
symmetric: when one side's write buffer passes its high-water mark (``pause_writing``), the other side
stops reading until it drains below the low-water mark (``resume_writing``). TCP_NODELAY is on for both
sockets (asyncio's and uvloop's transports set it). Half-closes are passed through (``write_eof``), so
protocols that shut down one direction work.

Connecting: the route's ``Picker`` chooses a backend; if the connect is refused or takes longer than
``connect_timeout`` (1 s by default), the next backend is tried, until every backend of the route was
tried; only then is the client reset. So a request is not lost because the endpoint list was a moment
stale (a pod that just died). The failed backend is also reported to the picker, which then prefers the
others for a few seconds (see ``corral.proxy.balancer``).

Draining: a connection keeps the backend it was connected to. Taking a backend out of the table (or
removing the Service, which closes the listener) only stops *new* connections from going there; open
connections go on until either side closes them. ``close_all`` (the proxy stopping) aborts them.

Automatic retry of idempotent HTTP requests (RFC 9110, section 9.2.2): if the backend closes or resets the
connection before sending a single byte back, and everything the client sent on this connection so far is
at most ``replay_limit`` bytes (64 KiB) and is one or more HTTP/1.x requests whose methods are all
idempotent (GET, HEAD, OPTIONS, TRACE, PUT, DELETE; HTTP is recognised by a first line ``METHOD target
HTTP/1.x``), those bytes are replayed to the next backend, as an HTTP client may do itself. A connection
on which the client sent nothing yet moves to the next backend too (nothing can have been processed).
Anything else (a POST, a non-HTTP protocol, a response already started, more than 64 KiB) is never
replayed: the client sees the close or reset. Recording stops at the first response byte or past the
limit, so long-lived and bulk connections keep no copy.

Counters (``Counters``, per Service and per endpoint ``ip:port``): connections total/active, bytes in
(client to backend) and out (backend to client), connect errors, retries (connect retries and replays),
failed (clients closed because no backend could be reached), and ``requests``. Request counting is kept
cheap: a connection whose first line is an HTTP/1.x request line counts one request, and after each
response chunk the next client chunk counts one more if it starts with an HTTP method token (a 4-byte
prefix test). That is exact for plain keep-alive request/response traffic; pipelined requests sent in one
chunk count as one, and a request body chunk that happens to start with ``GET `` right after a response
would count as a request. HTTP/2 and TLS are not counted.

``inflight`` (a gauge): HTTP requests sent to a backend that has not yet sent a byte of the answer; for a
connection that is not HTTP, ``connections_active`` is what is in flight (``corral.proxy.traffic``).

Holding (scale from zero): a route with ``hold > 0`` (its Service is annotated ``corral.dev/scale-from-zero``
by the autoscaler) does not reset a client when it has no backend. The connection waits, unread, in the
route's queue (at most ``MAX_HELD`` per route), the route's ``activate`` callback asks for a replica, and
the proxy's next update with a backend sends every held connection on (``release_held``). A backend that
refuses while it is still starting is retried every ``HOLD_RETRY`` seconds. When ``hold`` seconds pass
first, an HTTP client gets a ``503`` naming the Service, anything else a reset.

Boundary: this module owns the data path. The listening sockets, the table and the per-route state are
created by ``corral.proxy.service_proxy``; the backend choice is ``corral.proxy.balancer``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, cast

from corral.proxy.balancer import Address, Picker
from corral.proxy.table import RouteKey

REPLAY_LIMIT = 64 * 1024
MAX_HELD = 1000
HOLD_RETRY = 0.05

_METHOD_PREFIXES = (
    b"GET ",
    b"HEAD",
    b"POST",
    b"PUT ",
    b"DELE",
    b"OPTI",
    b"PATC",
    b"CONN",
    b"TRAC",
)
_IDEMPOTENT_START = (b"GET ", b"HEAD ", b"OPTIONS ", b"TRACE ", b"PUT ", b"DELETE ")
_REQUEST_LINE = re.compile(rb"([A-Z]+) [^ \r\n]+ HTTP/1\.[01]\r?\n")
# A request line of a method that is not idempotent anywhere in the bytes (a pipelined POST after a GET).
_UNSAFE_LINE = re.compile(
    rb"(?:^|\n)(?!(?:GET|HEAD|OPTIONS|TRACE|PUT|DELETE) )[A-Z]+ [^ \r\n]+ HTTP/1\.[01]\r?\n"
)


def looks_like_http(first: bytes) -> bool:
    """Whether ``first`` (a connection's first bytes) starts with an HTTP/1.x request line."""
    return first.startswith(_METHOD_PREFIXES) and _REQUEST_LINE.match(first) is not None


def replayable(sent: bytes) -> bool:
    """Whether ``sent`` may be sent again to another backend (see the module docstring)."""
    if not sent:
        return True
    if not sent.startswith(_IDEMPOTENT_START) or _REQUEST_LINE.match(sent) is None:
        return False
    return _UNSAFE_LINE.search(sent) is None


@dataclass(slots=True)
class Counters:
    """Monotonic counters (except ``connections_active``); UDP uses connections for sessions."""

    connections_total: int = 0
    connections_active: int = 0
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    connect_errors: int = 0
    retries: int = 0
    failed: int = 0
    datagrams_in: int = 0
    datagrams_out: int = 0
    inflight: int = 0
    held: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class ServiceStats:
    """The counters of one Service: its total and one set per endpoint ``ip:port``."""

    total: Counters = field(default_factory=Counters)
    endpoints: dict[Address, Counters] = field(default_factory=dict)

    def endpoint(self, address: Address) -> Counters:
        counters = self.endpoints.get(address)
        if counters is None:
            counters = self.endpoints[address] = Counters()
        return counters


@dataclass(slots=True)
class RouteState:
    """What a new connection on a frontend reads: the route's picker and its Service's counters.

    One per Service port (``RouteKey``), shared by every frontend of that port; the proxy updates the
    picker in place when the backends change and swaps a frontend's ``RouteState`` when its owner changes.
    """

    key: RouteKey
    picker: Picker
    stats: ServiceStats
    hold: float = 0.0
    """Seconds a new connection waits for a backend when there is none (0: reset at once)."""
    activate: Callable[[RouteKey], None] | None = None
    held: list[ClientSide] = field(default_factory=list)

    def release_held(self) -> None:
        """Send the waiting connections on (the route has backends again)."""
        waiting, self.held = self.held, []
        for client in waiting:
            if not client.closed:
                client.tried.clear()
                client._connect_next()


@dataclass(frozen=True, slots=True)
class TcpOptions:
    connect_timeout: float = 1.0
    write_buffer_high: int = 1024 * 1024
    write_buffer_low: int = 256 * 1024
    replay_limit: int = REPLAY_LIMIT


class TcpFrontend:
    """One listening TCP frontend: the route it currently serves and the connections it accepted."""

    __slots__ = ("connections", "loop", "options", "route", "server")

    def __init__(
        self,
        route: RouteState,
        options: TcpOptions,
        connections: set[ClientSide],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.route = route
        self.options = options
        self.connections = connections
        self.loop = loop
        self.server: asyncio.AbstractServer | None = None

    def protocol(self) -> ClientSide:
        return ClientSide(self)


def _tune(transport: asyncio.BaseTransport, options: TcpOptions) -> None:
    # TCP_NODELAY needs no call here: asyncio's and uvloop's TCP transports both set it on every socket,
    # and asking for the socket object (get_extra_info) would cost a few system calls per connection.
    cast(asyncio.WriteTransport, transport).set_write_buffer_limits(
        options.write_buffer_high, options.write_buffer_low
    )


class UpstreamSide(asyncio.Protocol):
    """The proxy's connection to a backend; every event is handed to its ``ClientSide``."""

    __slots__ = ("client",)

    def __init__(self, client: ClientSide) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client.upstream_connected(self, cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        client = self.client
        transport = client.transport
        assert transport is not None
        transport.write(data)
        size = len(data)
        client.service.bytes_out += size
        client.endpoint.bytes_out += size
        # The first response byte ends any chance of a replay; the next client chunk may be a new request.
        client.record = None
        client.expect_request = client.http
        if client.awaiting is not None:
            client._answered()

    def eof_received(self) -> bool:
        return self.client.upstream_eof(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.upstream_lost(self, exc)

    def pause_writing(self) -> None:
        self.client.pause_client_reading()

    def resume_writing(self) -> None:
        self.client.resume_client_reading()


class ClientSide(asyncio.Protocol):
    """One accepted client connection and the state of its forwarding."""

    __slots__ = (
        "address",
        "attempt",
        "awaiting",
        "client_eof",
        "client_ip",
        "closed",
        "connect_task",
        "connect_timer",
        "endpoint",
        "expect_request",
        "frontend",
        "hold_timer",
        "hold_until",
        "http",
        "pending",
        "pending_size",
        "reading_paused",
        "record",
        "record_size",
        "route",
        "service",
        "transport",
        "tried",
        "up",
        "upstream",
        "upstream_done",
    )

    def __init__(self, frontend: TcpFrontend) -> None:
        self.frontend = frontend
        self.route = frontend.route
        self.service = self.route.stats.total
        self.endpoint = _NO_ENDPOINT
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.address: Address | None = None
        self.attempt: UpstreamSide | None = None
        self.upstream: UpstreamSide | None = None
        self.up: asyncio.Transport | None = None
        self.connect_task: asyncio.Task[Any] | None = None
        self.connect_timer: asyncio.TimerHandle | None = None
        self.tried: set[Address] = set()
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.record: list[bytes] | None = []
        self.record_size = 0
        self.http = False
        self.expect_request = True
        self.client_eof = False
        self.upstream_done = False
        self.reading_paused = False
        self.closed = False
        self.awaiting: Counters | None = None  # the endpoint counting this connection's request in flight
        self.hold_until = 0.0
        self.hold_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ client events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        _tune(transport, self.frontend.options)
        if self.route.picker.affinity_timeout is not None:
            # Only ClientIP affinity needs the client's address; reading it costs system calls.
            peer = transport.get_extra_info("peername")
            self.client_ip = str(peer[0]) if peer else ""
        self.frontend.connections.add(self)
        self.service.connections_total += 1
        self.service.connections_active += 1
        self._connect_next()

    def data_received(self, data: bytes) -> None:
        up = self.up
        if up is None:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size > 4 * self.frontend.options.replay_limit and not self.reading_paused:
                self.pause_client_reading()
            return
        up.write(data)
        size = len(data)
        self.service.bytes_in += size
        self.endpoint.bytes_in += size
        if self.expect_request:
            self._count_request(data)
        if self.record is not None:
            self._record(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        up = self.up
        if up is not None:
            if self.upstream_done:
                self._close_both()
                return False
            if up.can_write_eof():
                up.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.frontend.connections.discard(self)
        self.service.connections_active -= 1
        self._answered()
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
            if self in self.route.held:
                self.route.held.remove(self)
        if self.connect_task is not None:
            self.connect_task.cancel()
        up = self.up
        if up is not None:
            # ``upstream_lost`` follows and settles the counts.
            if exc is None:
                up.close()
            else:
                up.abort()
        else:
            # Still connecting (or never connected): any late connect result finds ``attempt`` cleared.
            self.attempt = None
            self._release_backend()

    def pause_writing(self) -> None:
        # The client reads slower than the backend sends: stop reading the backend until it catches up.
        if self.up is not None:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    # ------------------------------------------------------------------ connecting

    def _connect_next(self) -> None:
        route = self.route
        backend = route.picker.pick(self.client_ip, self.tried)
        transport = self.transport
        assert transport is not None
        if backend is None:
            if route.hold > 0 and self._hold():
                return
            # Nobody (left) to connect to: a reset tells the client it failed, an orderly close would not.
            self._fail()
            return
        address = backend.address
        self.tried.add(address)
        route.picker.opened(address)
        self.address = address
        self.endpoint = route.stats.endpoint(address)
        attempt = UpstreamSide(self)
        self.attempt = attempt
        loop = self.frontend.loop
        task = loop.create_task(loop.create_connection(lambda: attempt, backend.ip, backend.port))
        self.connect_task = task
        self.connect_timer = loop.call_later(self.frontend.options.connect_timeout, task.cancel)
        task.add_done_callback(lambda done: self._connect_done(attempt, done))

    def _connect_done(self, attempt: UpstreamSide, task: asyncio.Task[Any]) -> None:
        if self.connect_timer is not None:
            self.connect_timer.cancel()
            self.connect_timer = None
        self.connect_task = None
        failed = task.cancelled() or task.exception() is not None
        if not failed or self.upstream is attempt:
            # Connected; or connected and then closed by the cancellation, which ``upstream_lost`` handles.
            return
        if self.attempt is not attempt:
            return
        self.attempt = None
        if self.address is not None:
            self.route.picker.failed(self.address)
        self._release_backend()
        if self.closed:
            return
        self.endpoint.connect_errors += 1
        self.service.connect_errors += 1
        self.service.retries += 1
        self._connect_next()

    def _release_backend(self) -> None:
        if self.address is not None:
            self.route.picker.closed(self.address)
            self.address = None

    def upstream_connected(self, attempt: UpstreamSide, transport: asyncio.Transport) -> None:
        if self.closed or self.attempt is not attempt:
            transport.abort()
            return
        self.upstream = attempt
        self.up = transport
        self.upstream_done = False
        if self.address is not None:
            self.route.picker.succeeded(self.address)
        _tune(transport, self.frontend.options)
        self.endpoint.connections_total += 1
        self.endpoint.connections_active += 1
        if self.awaiting is not None and self.awaiting is not self.endpoint:
            # A replayed request is in flight at its new endpoint now.
            self.awaiting.inflight -= 1
            self.endpoint.inflight += 1
            self.awaiting = self.endpoint
        if self.pending:
            data = b"".join(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending = []
            self.pending_size = 0
            self.data_received(data)
        if self.client_eof and transport.can_write_eof():
            transport.write_eof()
        if self.reading_paused:
            self.resume_client_reading()

    # ------------------------------------------------------------------ upstream events

    def upstream_eof(self, upstream: UpstreamSide) -> bool:
        if self.upstream is not upstream:
            return False
        if self._may_retry():
            return False  # the transport closes; ``upstream_lost`` moves the client to the next backend
        self.upstream_done = True
        transport = self.transport
        assert transport is not None
        if self.client_eof:
            self._close_both()
            return False
        if transport.can_write_eof():
            transport.write_eof()
        return True

    def upstream_lost(self, upstream: UpstreamSide, exc: Exception | None) -> None:
        if self.upstream is not upstream:
            return
        self.upstream = None
        self.up = None
        self.attempt = None
        self.endpoint.connections_active -= 1
        address = self.address
        self._release_backend()
        if self.closed:
            return
        if not self.upstream_done and self._may_retry():
            if address is not None:
                self.route.picker.failed(address)  # reset before answering: likely a process that died
            self.endpoint.connect_errors += 1
            self.service.retries += 1
            record = self.record or []
            self.pending = record + self.pending
            self.pending_size = self.record_size + self.pending_size
            self.record = []
            self.record_size = 0
            self.expect_request = False  # the replayed request was counted already
            self._connect_next()
            return
        transport = self.transport
        assert transport is not None
        if exc is not None and self.record is not None:
            transport.abort()  # failed before any response byte: make the failure visible
        else:
            transport.close()  # flushes what the backend sent, then FIN

    # ------------------------------------------------------------------ helpers

    def _may_retry(self) -> bool:
        if self.record is None or self.closed:
            return False
        if not self.record and self.client_eof and not self.pending:
            return False  # the client sent nothing and is done: the backend's close is the answer
        sent = b"".join(self.record) if len(self.record) != 1 else self.record[0]
        return replayable(sent)

    def _count_request(self, data: bytes) -> None:
        self.expect_request = False
        if self.http:
            if not data.startswith(_METHOD_PREFIXES):
                return
        elif looks_like_http(data):
            # Only ever reached for the first chunk: a non-HTTP connection never expects a request again.
            self.http = True
        else:
            return
        self.service.requests += 1
        self.endpoint.requests += 1
        if self.awaiting is None:
            self.service.inflight += 1
            self.endpoint.inflight += 1
            self.awaiting = self.endpoint

    def _answered(self) -> None:
        """The request in flight got its first response byte, or the connection ended."""
        if self.awaiting is not None:
            self.awaiting.inflight -= 1
            self.service.inflight -= 1
            self.awaiting = None

    def _hold(self) -> bool:
        """Wait for a backend instead of failing (scale from zero); False when the wait is over or full."""
        route = self.route
        loop = self.frontend.loop
        now = loop.time()
        if self.hold_until == 0.0:
            if len(route.held) >= MAX_HELD:
                return False
            self.hold_until = now + route.hold
            self.service.held += 1
            self.hold_timer = loop.call_at(self.hold_until, self._hold_expired)
        elif now >= self.hold_until:
            return False
        if route.activate is not None:
            route.activate(route.key)
        if route.picker.backends:
            # Backends exist but refused (still starting): try them again shortly.
            loop.call_later(HOLD_RETRY, self._retry_held)
        elif self not in route.held:
            route.held.append(self)
        return True

    def _retry_held(self) -> None:
        if not self.closed and self.up is None and self.attempt is None:
            self.tried.clear()
            self._connect_next()

    def _hold_expired(self) -> None:
        self.hold_timer = None
        if self.closed or self.up is not None or self.attempt is not None:
            return
        if self in self.route.held:
            self.route.held.remove(self)
        self._fail()

    def _fail(self) -> None:
        """No backend: an HTTP client that waited gets a 503 saying so, anyone else a reset."""
        self.service.failed += 1
        transport = self.transport
        assert transport is not None
        first = self.pending[0] if self.pending else b""
        if self.hold_until and looks_like_http(first):
            body = (
                f"no endpoint of service {self.route.key.service} became ready within "
                f"{self.route.hold:g} s\n"
            ).encode()
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            transport.close()
            return
        transport.abort()

    def _record(self, data: bytes) -> None:
        self.record_size += len(data)
        if self.record_size > self.frontend.options.replay_limit:
            self.record = None
        else:
            assert self.record is not None
            self.record.append(data)

    def pause_client_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_client_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def _close_both(self) -> None:
        if self.up is not None:
            self.up.close()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection now (the proxy is stopping)."""
        if self.up is not None:
            self.up.abort()
        if self.transport is not None:
            self.transport.abort()


_NO_ENDPOINT = Counters()
"""Placeholder until a backend is picked, so the hot path never tests for None."""


def close_all(connections: set[ClientSide]) -> None:
    for connection in list(connections):
        connection.abort()
