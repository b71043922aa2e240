"""Traffic rates from the service proxy's counters, for the autoscaler. Pure.

The node glue feeds :class:`TrafficWindow` a snapshot of ``ServiceProxy.stats()`` every second; the window
keeps the last ``window`` seconds of them and answers, per Service and per endpoint (``ip:port``):

- ``requests_per_second``: HTTP requests (the proxy recognises HTTP/1.x) over the window, or, for a Service
  or endpoint that never carried HTTP, new connections per second;
- ``inflight``: HTTP requests sent and not yet answered, or open connections for plain TCP;
- when each Service last saw traffic (a new request or connection, an open connection, a connection held
  while its pods were at zero) — the autoscaler's idle clock for scale to zero.

Counters restart when a Service or endpoint leaves the proxy's table and comes back; a counter lower than
before counts from zero instead of going negative.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rate:
    requests_per_second: float
    inflight: float
    http: bool


def _delta(new: Mapping[str, Any], old: Mapping[str, Any] | None, field: str) -> int:
    now = int(new.get(field) or 0)
    before = int((old or {}).get(field) or 0)
    return now - before if now >= before else now


def rate_of(new: Mapping[str, Any], old: Mapping[str, Any] | None, seconds: float) -> Rate:
    """The rate between two counter snapshots of one Service or endpoint ``seconds`` apart."""
    http = int(new.get("requests") or 0) > 0
    if seconds <= 0:
        return Rate(0.0, float(new.get("inflight" if http else "connections_active") or 0), http)
    count = _delta(new, old, "requests" if http else "connections_total")
    inflight = float(new.get("inflight") or 0) if http else float(new.get("connections_active") or 0)
    return Rate(count / seconds, max(inflight, 0.0), http)


class TrafficWindow:
    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, Mapping[str, Any]]] = deque()
        self._last_active: dict[str, float] = {}

    def add(self, now: float, stats: Mapping[str, Any]) -> None:
        """Record ``ServiceProxy.stats()`` taken at monotonic time ``now``."""
        services: Mapping[str, Any] = stats.get("services") or {}
        previous: Mapping[str, Any] = (self._samples[-1][1].get("services") or {}) if self._samples else {}
        for service, counters in services.items():
            before = previous.get(service)
            first_seen = before is None and service not in self._last_active
            busy = int(counters.get("connections_active") or 0) > 0 or any(
                _delta(counters, before, f) > 0 for f in ("requests", "connections_total", "held")
            )
            if first_seen or busy:
                self._last_active[service] = now
        for gone in set(self._last_active) - set(services):
            del self._last_active[gone]
        self._samples.append((now, stats))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def _ends(self) -> tuple[float, Mapping[str, Any], Mapping[str, Any]]:
        if not self._samples:
            return 0.0, {}, {}
        (t0, old), (t1, new) = self._samples[0], self._samples[-1]
        return t1 - t0, old.get("services") or {}, new.get("services") or {}

    def services(self) -> dict[str, Rate]:
        """Rates per Service (``namespace/name``)."""
        seconds, old, new = self._ends()
        return {name: rate_of(counters, old.get(name), seconds) for name, counters in new.items()}

    def endpoints(self) -> dict[tuple[str, str], Rate]:
        """Rates per (Service, ``ip:port``)."""
        seconds, old, new = self._ends()
        rates: dict[tuple[str, str], Rate] = {}
        for service, counters in new.items():
            before = (old.get(service) or {}).get("endpoints") or {}
            for address, endpoint in (counters.get("endpoints") or {}).items():
                rates[(service, address)] = rate_of(endpoint, before.get(address), seconds)
        return rates

    def last_active(self, service: str) -> float | None:
        """Monotonic time the Service last had traffic (or was first seen); None when unknown."""
        return self._last_active.get(service)
