"""Choosing a backend for a new connection of one route: round-robin, least-connections, ClientIP affinity.

Pure state machine with injected time (a ``Clock``'s monotonic seconds); no sockets. The TCP and UDP
forwarders call ``pick(client_ip, exclude)``, and ``exclude`` lets them try the next backend when a connect
fails, until every backend has been tried. ``opened``/``closed`` keep the active-connection counts that
least-connections reads; they are counted from the pick on (as HAProxy does), so a burst of new connections
spreads even before any of them finished connecting.

State survives ``set_backends`` (the route changing): the round-robin position, the counts of backends that
stay, and affinity entries whose backend is still routable. Backends are identified by address (ip, port),
so an endpoint that goes from ready to serving-terminating keeps its state.

Passive health: a backend whose connect just failed (``failed``) is skipped for ``failure_cooldown`` seconds
(5 s by default) or until a connect to it succeeds, unless every backend left is in that state. Without
it, a dead endpoint still listed would cost every connection that round-robin sends there first a failed
connect (up to the connect timeout) before the retry; nginx does the same (``max_fails=1``,
``fail_timeout=10s`` by default). The endpoint list remains the authority: the cooldown only reorders.

Affinity follows kube-proxy: a client IP sticks to the backend it last went to for ``timeout`` seconds after
its last new connection; a client whose backend is gone or excluded gets a new pick and sticks to that.
Expired entries are dropped lazily and by a sweep every ``SWEEP_EVERY`` picks, so the table stays bounded by
the number of clients seen within one timeout.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from corral.proxy.backends import Backend
from corral.proxy.table import Algorithm
from corral.util.clock import Clock

Address = tuple[str, int]

SWEEP_EVERY = 1024
FAILURE_COOLDOWN = 5.0


class Picker:
    """Backend choice for one route (one Service port)."""

    __slots__ = (
        "_active",
        "_addresses",
        "_affinity",
        "_backends",
        "_clock",
        "_down",
        "_next",
        "_picks",
        "affinity_timeout",
        "algorithm",
        "failure_cooldown",
    )

    def __init__(
        self,
        backends: Sequence[Backend],
        clock: Clock,
        algorithm: Algorithm = Algorithm.ROUND_ROBIN,
        affinity_timeout: float | None = None,
        failure_cooldown: float = FAILURE_COOLDOWN,
    ) -> None:
        self._clock = clock
        self._down: dict[Address, float] = {}
        self.failure_cooldown = failure_cooldown
        self._backends: tuple[Backend, ...] = ()
        self._addresses: dict[Address, Backend] = {}
        self._active: dict[Address, int] = {}
        self._affinity: dict[str, tuple[Address, float]] = {}
        self._next = 0
        self._picks = 0
        self.algorithm = algorithm
        self.affinity_timeout = affinity_timeout
        self.set_backends(backends, algorithm, affinity_timeout)

    @property
    def backends(self) -> tuple[Backend, ...]:
        return self._backends

    def set_backends(
        self,
        backends: Sequence[Backend],
        algorithm: Algorithm = Algorithm.ROUND_ROBIN,
        affinity_timeout: float | None = None,
    ) -> None:
        """Swap in the route's current backends (and settings), keeping what still applies."""
        self._backends = tuple(backends)
        self._addresses = {backend.address: backend for backend in self._backends}
        if self._down:
            self._down = {a: until for a, until in self._down.items() if a in self._addresses}
        self.algorithm = algorithm
        if affinity_timeout is None:
            self._affinity.clear()
        elif self._affinity:
            self._affinity = {
                client: entry for client, entry in self._affinity.items() if entry[0] in self._addresses
            }
        self.affinity_timeout = affinity_timeout
        if self._backends:
            self._next %= len(self._backends)
        else:
            self._next = 0

    def active(self, address: Address) -> int:
        return self._active.get(address, 0)

    def opened(self, address: Address) -> None:
        """A connection to ``address`` started (call once per ``pick`` that is used)."""
        self._active[address] = self._active.get(address, 0) + 1

    def closed(self, address: Address) -> None:
        """A connection counted by ``opened`` ended (failed connect or closed)."""
        count = self._active.get(address, 0) - 1
        if count > 0:
            self._active[address] = count
        else:
            self._active.pop(address, None)

    def failed(self, address: Address) -> None:
        """A connect to ``address`` failed: prefer the other backends for a while."""
        if address in self._addresses and self.failure_cooldown > 0:
            self._down[address] = self._clock.monotonic() + self.failure_cooldown

    def succeeded(self, address: Address) -> None:
        """A connect to ``address`` worked: it is a normal candidate again."""
        if self._down:
            self._down.pop(address, None)

    def is_down(self, address: Address) -> bool:
        until = self._down.get(address)
        return until is not None and until > self._clock.monotonic()

    def pick(self, client_ip: str, exclude: Collection[Address] = ()) -> Backend | None:
        """The backend for a new connection from ``client_ip``, or None when every backend is excluded."""
        if not self._backends:
            return None
        if self._down:
            now = self._clock.monotonic()
            down = {address for address, until in self._down.items() if until > now}
            if len(down) != len(self._down):
                self._down = {address: self._down[address] for address in down}
            if down:
                chosen = self._pick(client_ip, down.union(exclude))
                if chosen is not None:
                    return chosen
        return self._pick(client_ip, exclude)

    def _pick(self, client_ip: str, exclude: Collection[Address]) -> Backend | None:
        timeout = self.affinity_timeout
        if timeout is None:
            return self._choose(exclude)
        now = self._clock.monotonic()
        self._picks += 1
        if self._picks % SWEEP_EVERY == 0:
            self.sweep(now)
        entry = self._affinity.get(client_ip)
        if entry is not None and entry[1] > now:
            backend = self._addresses.get(entry[0])
            if backend is not None and entry[0] not in exclude:
                self._affinity[client_ip] = (entry[0], now + timeout)
                return backend
        chosen = self._choose(exclude)
        if chosen is not None:
            self._affinity[client_ip] = (chosen.address, now + timeout)
        return chosen

    def sweep(self, now: float | None = None) -> None:
        """Drop expired affinity entries."""
        moment = self._clock.monotonic() if now is None else now
        self._affinity = {client: entry for client, entry in self._affinity.items() if entry[1] > moment}

    def affinity_size(self) -> int:
        return len(self._affinity)

    def _choose(self, exclude: Collection[Address]) -> Backend | None:
        backends = self._backends
        count = len(backends)
        start = self._next
        if self.algorithm is Algorithm.ROUND_ROBIN:
            for step in range(count):
                index = (start + step) % count
                backend = backends[index]
                if backend.address not in exclude:
                    self._next = (index + 1) % count
                    return backend
            return None
        # Least connections; ties are broken in round-robin order, or idle backends would all lose to the
        # first one and short connections would pile onto it.
        active = self._active
        best_index = -1
        best_count = 0
        for step in range(count):
            index = (start + step) % count
            address = backends[index].address
            if address in exclude:
                continue
            load = active.get(address, 0)
            if best_index < 0 or load < best_count:
                best_index, best_count = index, load
                if load == 0:
                    break
        if best_index < 0:
            return None
        self._next = (best_index + 1) % count
        return backends[best_index]
