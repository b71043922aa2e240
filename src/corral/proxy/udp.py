"""UDP forwarding for the service proxy: one session per client address, each with its own upstream socket.

A datagram from a new client address opens a *session*: the route's ``Picker`` chooses a backend, and a
connected UDP socket to it carries the client's datagrams; replies on that socket go back to the client
from the frontend's address, so the client sees answers from the address it asked. A session ends after
``idle_timeout`` seconds without traffic in either direction (30 s by default, the kernel's conntrack
default for UDP), checked by a sweep every few seconds.

Retry: if the backend answers with ICMP port unreachable (``ConnectionRefusedError`` on the connected
socket) before it sent any reply, the session moves to the next backend and resends what the client sent so
far (at most ``replay_limit`` bytes), so a datagram is not lost to an endpoint list that was a moment
stale. A refusal after replies began ends the session; the client's next datagram opens a new one.

Unlike TCP there is nothing to drain: when a backend is no longer routable, its sessions end at once (as
kube-proxy clears stale UDP conntrack entries), so the next datagram from those clients picks a live
backend instead of going to a dead one until the idle timeout.

Counters (shared with TCP, ``corral.proxy.tcp.Counters``): sessions count as connections; datagrams and
bytes in (client to backend) and out; connect errors are refusals; ``failed`` counts datagrams dropped
because no backend could take them.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any, cast

from corral.proxy.balancer import Address
from corral.proxy.tcp import Counters, RouteState

ClientAddress = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class UdpOptions:
    idle_timeout: float = 30.0
    replay_limit: int = 64 * 1024
    sweep_interval: float = 5.0


class UdpSession(asyncio.DatagramProtocol):
    """One client address talking to one backend through its own connected socket."""

    __slots__ = (
        "address",
        "answered",
        "client",
        "closed",
        "endpoint",
        "frontend",
        "last_active",
        "queue",
        "sent",
        "sent_size",
        "transport",
        "tried",
    )

    def __init__(self, frontend: UdpFrontend, client: ClientAddress) -> None:
        self.frontend = frontend
        self.client = client
        self.address: Address | None = None
        self.endpoint = _NO_ENDPOINT
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []
        self.sent: list[bytes] | None = []
        self.sent_size = 0
        self.tried: set[Address] = set()
        self.answered = False
        self.closed = False
        self.last_active = frontend.loop.time()

    # ------------------------------------------------------------------ client side

    def send(self, data: bytes) -> None:
        self.last_active = self.frontend.loop.time()
        self.frontend.route.stats.total.datagrams_in += 1
        self.frontend.route.stats.total.bytes_in += len(data)
        if self.sent is not None:
            self.sent_size += len(data)
            if self.sent_size > self.frontend.options.replay_limit:
                self.sent = None
            else:
                self.sent.append(data)
        transport = self.transport
        if transport is None:
            self.queue.append(data)
            return
        transport.sendto(data)
        self.endpoint.datagrams_in += 1
        self.endpoint.bytes_in += len(data)

    def connect(self) -> bool:
        """Open the upstream socket to the next backend; False when no backend is left."""
        route = self.frontend.route
        backend = route.picker.pick(str(self.client[0]), self.tried)
        if backend is None:
            return False
        address = backend.address
        self.tried.add(address)
        route.picker.opened(address)
        self.address = address
        self.endpoint = route.stats.endpoint(address)
        self.endpoint.connections_total += 1
        self.endpoint.connections_active += 1
        family = socket.AF_INET6 if ":" in backend.ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address)  # UDP connect only sets the peer: immediate, and refusals become errors
        except OSError:
            sock.close()
            self._release()
            self.endpoint.connect_errors += 1
            return self.connect()
        loop = self.frontend.loop
        task = loop.create_task(loop.create_datagram_endpoint(lambda: self, sock=sock))
        task.add_done_callback(self._endpoint_done)
        return True

    def _endpoint_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.close()

    # ------------------------------------------------------------------ upstream side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.DatagramTransport, transport)  # asyncio's class does not subclass it
        if self.closed:
            transport.close()
            return
        self.transport = transport
        queued, self.queue = self.queue, []
        for data in queued:
            transport.sendto(data)
            self.endpoint.datagrams_in += 1
            self.endpoint.bytes_in += len(data)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        frontend = self.frontend
        if frontend.transport is None or self.closed:
            return
        frontend.transport.sendto(data, self.client)
        self.last_active = frontend.loop.time()
        if not self.answered:
            self.answered = True
            if self.address is not None:
                frontend.route.picker.succeeded(self.address)
        self.sent = None
        size = len(data)
        total = frontend.route.stats.total
        total.datagrams_out += 1
        total.bytes_out += size
        self.endpoint.datagrams_out += 1
        self.endpoint.bytes_out += size

    def error_received(self, exc: Exception) -> None:
        if self.closed:
            return
        self.endpoint.connect_errors += 1
        self.frontend.route.stats.total.connect_errors += 1
        if not isinstance(exc, ConnectionRefusedError):
            return
        if self.answered or self.sent is None:
            self.close()
            return
        # Refused before any reply: move to the next backend and resend what the client sent.
        if self.address is not None:
            self.frontend.route.picker.failed(self.address)
        old = self.transport
        self.transport = None
        self._release()
        if old is not None:
            old.close()
        self.queue = list(self.sent)
        self.frontend.route.stats.total.retries += 1
        if not self.connect():
            self.frontend.route.stats.total.failed += 1
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        # Closes this session made itself come without an error; an error ends the session, and the
        # client's next datagram opens a new one.
        if exc is not None and not self.closed:
            self.close()

    # ------------------------------------------------------------------ lifetime

    def _release(self) -> None:
        if self.address is not None:
            self.frontend.route.picker.closed(self.address)
            self.endpoint.connections_active -= 1
            self.address = None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._release()
        self.frontend.route.stats.total.connections_active -= 1
        if self.frontend.sessions.get(self.client) is self:
            del self.frontend.sessions[self.client]
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class UdpFrontend(asyncio.DatagramProtocol):
    """One listening UDP frontend and its sessions."""

    __slots__ = ("loop", "options", "route", "sessions", "sweeper", "transport")

    def __init__(self, route: RouteState, options: UdpOptions, loop: asyncio.AbstractEventLoop) -> None:
        self.route = route
        self.options = options
        self.loop = loop
        self.sessions: dict[ClientAddress, UdpSession] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # asyncio's class does not subclass it
        self._schedule_sweep()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        session = self.sessions.get(addr)
        if session is None:
            session = UdpSession(self, addr)
            if not session.connect():
                self.route.stats.total.failed += 1
                return
            self.sessions[addr] = session
            self.route.stats.total.connections_total += 1
            self.route.stats.total.connections_active += 1
        session.send(data)

    def error_received(self, exc: Exception) -> None:
        pass  # errors on the listening socket concern one client's datagram; nothing to clean up

    def connection_lost(self, exc: Exception | None) -> None:
        self.close_sessions()

    def set_route(self, route: RouteState) -> None:
        """Serve ``route`` from now on; sessions to backends no longer routable end (see module doc)."""
        # Sessions are closed while ``self.route`` is still the one they were counted and picked on.
        routable = {backend.address for backend in route.picker.backends}
        for session in list(self.sessions.values()):
            if self.route is not route or (session.address is not None and session.address not in routable):
                session.close()
        self.route = route

    def _schedule_sweep(self) -> None:
        interval = min(self.options.sweep_interval, max(self.options.idle_timeout / 2, 0.05))
        self.sweeper = self.loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        deadline = self.loop.time() - self.options.idle_timeout
        for session in [s for s in self.sessions.values() if s.last_active <= deadline]:
            session.close()
        if self.transport is not None and not self.transport.is_closing():
            self._schedule_sweep()

    def close_sessions(self) -> None:
        for session in list(self.sessions.values()):
            session.close()

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        self.close_sessions()
        if self.transport is not None:
            self.transport.close()


_NO_ENDPOINT = Counters()
