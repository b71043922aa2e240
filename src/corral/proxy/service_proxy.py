"""The node's service proxy: listens on every Service frontend and forwards to the Service's endpoints.

``ServiceProxy`` is the IO shell around the pure parts: ``update(services, slices)`` (a full snapshot, as
the node glue delivers it) builds the listener table (``corral.proxy.table``), diffs it against the table
in force, and applies only the difference: listeners opened and closed, routes swapped, pickers given
their new backends (``corral.proxy.balancer``). The data path is ``corral.proxy.tcp`` and
``corral.proxy.udp``.

``update`` is synchronous and does its socket work synchronously too: a new frontend's socket is created,
bound and (TCP) listening before ``update`` returns, so a bind failure is known at once and a client that
connects right after ``update`` is queued in the kernel's backlog until the event loop starts serving it
(``settle()`` waits for that, for tests). Taking a frontend away closes only its listening socket; the
connections it accepted drain (see ``corral.proxy.tcp``). ``stop()`` closes listeners and connections.

Bind failures (a port another process holds, an address not on this host, a port below 1024 without the
privilege) and frontends two Services both claim do not stop anything else. They are listed by
``problems()`` (``table.Problem``: frontend, the Service concerned, message) and ``errors()`` (frontend to
message), logged, and passed to the optional ``on_error`` callback once when they appear, so the node glue
can post a Warning event on the Service. Failed binds are retried on every ``update`` and every
``retry_interval`` seconds.

Counters live per Service and per endpoint; ``stats()`` returns a plain dict snapshot
(``corral.proxy.traffic`` turns it into rates). A Service that may be scaled to zero holds new connections
instead of refusing them (``corral.proxy.tcp``), and ``on_activate(service)`` is called (at most once a
second) so the node glue can ask for a replica.
Counters of a Service or endpoint that left the table are dropped once nothing is connected to it.

Listening on 127.96.x.y (the ClusterIP range) needs no root on Linux: all of 127.0.0.0/8 is local.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from corral.proxy.balancer import Picker
from corral.proxy.table import EMPTY_TABLE, Frontend, Problem, Route, RouteKey, Table, TableBuilder, diff
from corral.proxy.tcp import ClientSide, RouteState, ServiceStats, TcpFrontend, TcpOptions, close_all
from corral.proxy.udp import UdpFrontend, UdpOptions
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
ErrorCallback = Callable[[Problem], None]

LISTEN_BACKLOG = 4096
ACTIVATE_INTERVAL = 1.0


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit: every listener and connection is a descriptor."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _bind(frontend: Frontend) -> socket.socket:
    family = socket.AF_INET6 if ":" in frontend.ip else socket.AF_INET
    kind = socket.SOCK_STREAM if frontend.protocol == "TCP" else socket.SOCK_DGRAM
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            # Rebinding a port right after the previous listener closed must work (TIME_WAIT of its conns).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((frontend.ip, frontend.port))
        if kind == socket.SOCK_STREAM:
            sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ServiceProxy:
    """TCP and UDP listeners for every Service frontend of this node, kept in line with ``update``."""

    def __init__(
        self,
        node_addresses: Sequence[str],
        *,
        clock: Clock | None = None,
        tcp: TcpOptions | None = None,
        udp: UdpOptions | None = None,
        on_error: ErrorCallback | None = None,
        on_activate: Callable[[str], None] | None = None,
        retry_interval: float = 5.0,
    ) -> None:
        self.node_addresses = tuple(node_addresses)
        self._clock: Clock = clock or SystemClock()
        self._tcp_options = tcp or TcpOptions()
        self._udp_options = udp or UdpOptions()
        self._on_error = on_error
        self.on_activate = on_activate
        self._activated: dict[str, float] = {}  # Service → monotonic time of its last activation request
        self._retry_interval = retry_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._builder = TableBuilder(self.node_addresses)
        self._table: Table = EMPTY_TABLE
        self._snapshot: Table | None = None
        self._states: dict[RouteKey, RouteState] = {}
        self._stats: dict[str, ServiceStats] = {}
        self._tcp: dict[Frontend, TcpFrontend] = {}
        self._udp: dict[Frontend, UdpFrontend] = {}
        self._connections: set[ClientSide] = set()
        self._bind_errors: dict[Frontend, str] = {}
        self._reported: set[Problem] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retry_timer: asyncio.TimerHandle | None = None
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        raise_open_file_limit()
        if self._snapshot is not None:
            pending, self._snapshot = self._snapshot, None
            self._apply(pending)
        self._retry_timer = self._loop.call_later(self._retry_interval, self._retry_tick)

    async def stop(self) -> None:
        self._stopped = True
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        await self.settle()
        for frontend in list(self._tcp):
            self._close_tcp(frontend)
        for frontend in list(self._udp):
            self._close_udp(frontend)
        close_all(self._connections)
        self._table = EMPTY_TABLE
        self._states.clear()
        # Let the transports run their close callbacks before the loop goes away.
        await asyncio.sleep(0)

    async def settle(self) -> None:
        """Wait until every listener opened so far is served by the event loop (for tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ snapshots

    def update(self, services: Sequence[Mapping[str, Any]], slices: Sequence[Mapping[str, Any]]) -> None:
        """Program the proxy for this full snapshot of Services and EndpointSlices."""
        table = self._builder.build(services, slices)
        if self._loop is None or self._stopped:
            self._snapshot = table
            return
        self._apply(table)

    def _apply(self, table: Table) -> None:
        change = diff(self._table.routes, table.routes)
        touched_services: set[str] = set()
        for frontend in change.removed:
            touched_services.add(self._table.routes[frontend].service)
            if frontend.protocol == "TCP":
                self._close_tcp(frontend)
            else:
                self._close_udp(frontend)
            self._bind_errors.pop(frontend, None)
        for frontend, route in change.changed.items():
            touched_services.add(self._table.routes[frontend].service)
            touched_services.add(route.service)
            state = self._state(route)
            if frontend.protocol == "TCP":
                tcp = self._tcp.get(frontend)
                if tcp is not None:
                    tcp.route = state
            else:
                udp = self._udp.get(frontend)
                if udp is not None:
                    udp.set_route(state)
        for frontend, route in change.added.items():
            touched_services.add(route.service)
            self._open(frontend, self._state(route))
        self._table = table
        if change.removed or change.changed:
            self._forget_unused(touched_services)
        self._retry_failed()
        self._report()

    def _state(self, route: Route) -> RouteState:
        """The shared state of ``route``'s Service port, created or brought up to date."""
        state = self._states.get(route.key)
        stats = self._stats.get(route.service)
        if stats is None:
            stats = self._stats[route.service] = ServiceStats()
        if state is None:
            picker = Picker(route.backends, self._clock, route.algorithm, route.affinity_timeout)
            state = self._states[route.key] = RouteState(route.key, picker, stats, route.hold, self._activate)
        elif (
            state.picker.backends != route.backends
            or state.picker.algorithm is not route.algorithm
            or state.picker.affinity_timeout != route.affinity_timeout
        ):
            state.picker.set_backends(route.backends, route.algorithm, route.affinity_timeout)
        state.hold = route.hold
        if state.held and state.picker.backends:
            state.release_held()
        return state

    def _activate(self, key: RouteKey) -> None:
        """A held connection wants a backend: tell the node glue, at most once a second per Service."""
        if self.on_activate is None:
            return
        now = self._clock.monotonic()
        if now - self._activated.get(key.service, -ACTIVATE_INTERVAL) < ACTIVATE_INTERVAL:
            return
        self._activated[key.service] = now
        try:
            self.on_activate(key.service)
        except Exception:
            log.exception("service proxy: activation callback failed")

    def _forget_unused(self, services: set[str]) -> None:
        in_use_keys = {route.key for route in self._table.routes.values() if route.service in services}
        for key in [key for key in self._states if key.service in services and key not in in_use_keys]:
            del self._states[key]
        for service in services:
            stats = self._stats.get(service)
            if stats is None:
                continue
            routed = {
                backend.address
                for key, state in self._states.items()
                if key.service == service
                for backend in state.picker.backends
            }
            for address in [
                a for a, c in stats.endpoints.items() if a not in routed and not c.connections_active
            ]:
                del stats.endpoints[address]
            if not stats.total.connections_active and not any(k.service == service for k in self._states):
                del self._stats[service]

    # ------------------------------------------------------------------ listeners

    def _open(self, frontend: Frontend, state: RouteState) -> None:
        loop = self._loop
        assert loop is not None
        try:
            sock = _bind(frontend)
        except OSError as exc:
            self._bind_errors[frontend] = f"cannot listen on {frontend}: {exc.strerror or exc}"
            return
        self._bind_errors.pop(frontend, None)
        if frontend.protocol == "TCP":
            tcp = TcpFrontend(state, self._tcp_options, self._connections, loop)
            self._tcp[frontend] = tcp
            task: asyncio.Task[Any] = loop.create_task(
                loop.create_server(tcp.protocol, sock=sock, backlog=LISTEN_BACKLOG)
            )
            task.add_done_callback(lambda done: self._served_tcp(frontend, tcp, sock, done))
        else:
            udp = UdpFrontend(state, self._udp_options, loop)
            self._udp[frontend] = udp
            task = loop.create_task(loop.create_datagram_endpoint(lambda: udp, sock=sock))
            task.add_done_callback(lambda done: self._served_udp(frontend, udp, sock, done))
        self._tasks.add(task)

    def _served_tcp(
        self, frontend: Frontend, tcp: TcpFrontend, sock: socket.socket, task: asyncio.Task[Any]
    ) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            sock.close()
            if self._tcp.get(frontend) is tcp:
                del self._tcp[frontend]
                self._bind_errors[frontend] = (
                    f"cannot serve {frontend}: {task.exception() if not task.cancelled() else 'cancelled'}"
                )
                self._report()
            return
        tcp.server = task.result()
        if self._tcp.get(frontend) is not tcp:
            tcp.server.close()  # removed while it was starting

    def _served_udp(
        self, frontend: Frontend, udp: UdpFrontend, sock: socket.socket, task: asyncio.Task[Any]
    ) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            sock.close()
            if self._udp.get(frontend) is udp:
                del self._udp[frontend]
                self._bind_errors[frontend] = (
                    f"cannot serve {frontend}: {task.exception() if not task.cancelled() else 'cancelled'}"
                )
                self._report()
            return
        if self._udp.get(frontend) is not udp:
            udp.close()

    def _close_tcp(self, frontend: Frontend) -> None:
        tcp = self._tcp.pop(frontend, None)
        if tcp is not None and tcp.server is not None:
            tcp.server.close()  # stops accepting; accepted connections go on (drain)

    def _close_udp(self, frontend: Frontend) -> None:
        udp = self._udp.pop(frontend, None)
        if udp is not None:
            udp.close()

    def _retry_failed(self) -> None:
        for frontend in list(self._bind_errors):
            route = self._table.routes.get(frontend)
            if route is None:
                del self._bind_errors[frontend]
                continue
            if frontend in self._tcp or frontend in self._udp:
                continue
            self._open(frontend, self._state(route))

    def _retry_tick(self) -> None:
        self._retry_timer = None
        if self._stopped or self._loop is None:
            return
        if self._bind_errors:
            self._retry_failed()
            self._report()
        self._retry_timer = self._loop.call_later(self._retry_interval, self._retry_tick)

    def _report(self) -> None:
        current = set(self.problems())
        for problem in sorted(current - self._reported):
            log.warning("service proxy: %s", problem.message)
            if self._on_error is not None:
                try:
                    self._on_error(problem)
                except Exception:
                    log.exception("service proxy: error callback failed")
        for frontend in {p.frontend for p in self._reported} - {p.frontend for p in current}:
            log.info("service proxy: %s is served again", frontend)
        self._reported = current

    # ------------------------------------------------------------------ views

    def problems(self) -> list[Problem]:
        """Every frontend of the table that is not served, with the Service to tell and why."""
        found = list(self._table.conflicts)
        for frontend, message in self._bind_errors.items():
            route = self._table.routes.get(frontend)
            if route is not None:
                found.append(Problem(frontend, route.service, message))
        return sorted(found)

    def errors(self) -> dict[Frontend, str]:
        """Frontends not served and why (bind failures and frontends another Service holds)."""
        found: dict[Frontend, str] = {}
        for problem in self.problems():
            found[problem.frontend] = (
                f"{found[problem.frontend]}; {problem.message}"
                if problem.frontend in found
                else problem.message
            )
        return found

    def listening(self) -> set[Frontend]:
        """Frontends with a bound socket."""
        return set(self._tcp) | set(self._udp)

    @property
    def table(self) -> Table:
        return self._table

    def stats(self) -> dict[str, Any]:
        """Counters per Service (``namespace/name``), each with its endpoints by ``ip:port``."""
        services: dict[str, Any] = {}
        for service, stats in self._stats.items():
            entry: dict[str, Any] = stats.total.snapshot()
            entry["endpoints"] = {
                f"{address[0]}:{address[1]}": counters.snapshot()
                for address, counters in stats.endpoints.items()
            }
            services[service] = entry
        return {"services": services, "listeners": len(self._tcp) + len(self._udp)}
