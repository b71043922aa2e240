"""The service proxy's listener table: which (protocol, address, port) to listen on and where it leads.

Pure: Services and EndpointSlices (plain JSON dicts, as the API serves them) plus the node's addresses in,
an immutable table out, and a diff between two tables so the IO layer only touches what changed. No sockets
here; ``corral.proxy.service_proxy`` applies the diff.

Frontends, following kube-proxy:

- ``clusterIP:port`` for every port of a Service that has a ClusterIP. Headless Services (``None``),
  ExternalName Services and Services without an allocated address are skipped entirely, as kube-proxy does.
- ``NodePort`` and ``LoadBalancer``: also ``node_address:nodePort`` on each node address.
- ``LoadBalancer``: also ``node_address:port`` (Corral's meaning of "load balancer": bound on the node).
- Protocols TCP and UDP; SCTP ports are ignored (no SCTP data plane).

Every frontend of one Service port shares one *route* (``RouteKey``), so the balancer state (round-robin
position, least-connections counts, ClientIP affinity) is the same whether a client comes in through the
ClusterIP or a NodePort, as with kube-proxy's per-service-port chains.

Backends are read only through ``corral.proxy.backends`` (the shared reading of EndpointSlices): the route
carries the ``routable`` ones (ready, else serving-and-terminating).

Two Services cannot share a frontend (for instance two LoadBalancer Services both asking for port 80 on the
node). The first by ``namespace/name`` order keeps it and the other is reported in ``Table.conflicts``, so the
result does not depend on the order the snapshot lists them in.

Cost: building is linear in Services + slices; ``TableBuilder`` reuses the routes of Services whose objects
did not change since the last snapshot, and ``diff`` compares routes by identity first, so a snapshot of
1,000 Services where one changed costs little more than walking the lists.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.proxy.backends import Backend, backends_by_port, group_slices, routable, service_key

LOAD_BALANCER_ANNOTATION = "corral.dev/load-balancer"
DEFAULT_AFFINITY_TIMEOUT = 10800
SUPPORTED_PROTOCOLS = ("TCP", "UDP")


class Algorithm(enum.Enum):
    ROUND_ROBIN = "round-robin"
    LEAST_CONNECTIONS = "least-connections"


@dataclass(frozen=True, slots=True, order=True)
class Frontend:
    """One listening socket: protocol (``TCP`` or ``UDP``), local address and port."""

    protocol: str
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.protocol} {self.ip}:{self.port}"


@dataclass(frozen=True, slots=True, order=True)
class RouteKey:
    """One Service port: the unit balancer state and counters are kept per."""

    service: str
    """``namespace/name``."""
    port_name: str
    protocol: str


@dataclass(frozen=True, slots=True)
class Route:
    key: RouteKey
    backends: tuple[Backend, ...]
    """Where new connections may go (``backends.routable``), sorted."""
    algorithm: Algorithm = Algorithm.ROUND_ROBIN
    affinity_timeout: float | None = None
    """Seconds a client IP sticks to its backend (``sessionAffinity: ClientIP``), or None for no affinity."""
    hold: float = 0.0
    """Seconds a new connection waits for a backend when there is none (scale from zero; 0: reset)."""

    @property
    def service(self) -> str:
        return self.key.service


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """A frontend a Service asked for but does not get: taken by another Service, or (in the proxy) a failed
    bind. ``service`` is the Service to tell (``namespace/name``), e.g. with a Warning event."""

    frontend: Frontend
    service: str
    message: str


@dataclass(frozen=True, slots=True)
class Table:
    routes: Mapping[Frontend, Route]
    conflicts: tuple[Problem, ...]
    """Frontends more than one Service asked for, one entry per Service that did not get it."""


@dataclass(frozen=True, slots=True)
class TableDiff:
    added: Mapping[Frontend, Route]
    """Frontends to open, with their route."""
    removed: frozenset[Frontend]
    """Frontends to close."""
    changed: Mapping[Frontend, Route]
    """Frontends that stay open but whose route (backends, algorithm, affinity, owner) changed."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


EMPTY_TABLE = Table(routes={}, conflicts=())


def _algorithm(service: Mapping[str, Any]) -> Algorithm:
    # Unknown values fall back to round-robin rather than failing the Service: a typo should not cut traffic.
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(LOAD_BALANCER_ANNOTATION, "")).strip().lower() == "least-connections":
        return Algorithm.LEAST_CONNECTIONS
    return Algorithm.ROUND_ROBIN


def _affinity_timeout(spec: Mapping[str, Any]) -> float | None:
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    config = ((spec.get("sessionAffinityConfig") or {}).get("clientIP")) or {}
    timeout = config.get("timeoutSeconds")
    if isinstance(timeout, int) and not isinstance(timeout, bool) and timeout > 0:
        return float(timeout)
    return float(DEFAULT_AFFINITY_TIMEOUT)


def cluster_ips(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The Service's virtual addresses, or () for headless, ExternalName and unallocated Services."""
    if spec.get("type") == "ExternalName":
        return ()
    ips = [str(ip) for ip in spec.get("clusterIPs") or () if ip]
    if not ips and spec.get("clusterIP"):
        ips = [str(spec["clusterIP"])]
    if not ips or "None" in ips:
        return ()
    return tuple(dict.fromkeys(ips))


def service_frontends(
    service: Mapping[str, Any], node_addresses: Sequence[str]
) -> list[tuple[Frontend, RouteKey, str]]:
    """Every frontend one Service asks for, with its route key and the Service port name."""
    spec = service.get("spec") or {}
    ips = cluster_ips(spec)
    if not ips:
        return []
    key = service_key(service)
    kind = spec.get("type") or "ClusterIP"
    found: list[tuple[Frontend, RouteKey, str]] = []
    for port in spec.get("ports") or ():
        protocol = str(port.get("protocol") or "TCP")
        number = port.get("port")
        if protocol not in SUPPORTED_PROTOCOLS or not isinstance(number, int) or not 0 < number < 65536:
            continue
        name = str(port.get("name") or "")
        route_key = RouteKey(key, name, protocol)
        for ip in ips:
            found.append((Frontend(protocol, ip, number), route_key, name))
        if kind in ("NodePort", "LoadBalancer"):
            node_port = port.get("nodePort")
            if isinstance(node_port, int) and 0 < node_port < 65536:
                for address in node_addresses:
                    found.append((Frontend(protocol, address, node_port), route_key, name))
        if kind == "LoadBalancer":
            for address in node_addresses:
                found.append((Frontend(protocol, address, number), route_key, name))
    return found


SCALE_FROM_ZERO = "corral.dev/scale-from-zero"
"""Service annotation set by the autoscaler while the Service's pods may be scaled to zero."""
HOLD_SECONDS = 30.0


def hold_seconds(service: Mapping[str, Any]) -> float:
    """How long a connection waits for a backend: ``HOLD_SECONDS`` for a Service its autoscaler may have
    scaled to zero (the annotation), else 0 (no endpoint: reset at once, as kube-proxy's reject rule)."""
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    return HOLD_SECONDS if str(annotations.get(SCALE_FROM_ZERO, "")).lower() == "true" else 0.0


def service_routes(
    service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]], node_addresses: Sequence[str]
) -> list[tuple[Frontend, Route]]:
    """One Service's frontends and routes (before conflicts with other Services are resolved)."""
    wanted = service_frontends(service, node_addresses)
    if not wanted:
        return []
    spec = service.get("spec") or {}
    algorithm = _algorithm(service)
    affinity = _affinity_timeout(spec)
    backends = backends_by_port(slices)
    made: dict[RouteKey, Route] = {}
    found: list[tuple[Frontend, Route]] = []
    for frontend, route_key, name in wanted:
        route = made.get(route_key)
        if route is None:
            route = made[route_key] = Route(
                route_key, routable(backends.get(name, ())), algorithm, affinity, hold_seconds(service)
            )
        found.append((frontend, route))
    return found


@dataclass(frozen=True, slots=True)
class _Cached:
    service: Mapping[str, Any]
    slices: tuple[Mapping[str, Any], ...]
    routes: list[tuple[Frontend, Route]]


class TableBuilder:
    """``build_table`` that remembers each Service's routes between snapshots.

    The node glue hands over informer-cached objects, which are replaced, never mutated, when they change
    (DESIGN.md rule 5). A Service whose own dict and whose slices are the very same objects as last time
    therefore has the same routes, found by identity without reading the objects again. Anything else is
    recomputed, so passing fresh copies is correct, only slower.
    """

    def __init__(self, node_addresses: Sequence[str]) -> None:
        self.node_addresses = tuple(node_addresses)
        self._cache: dict[str, _Cached] = {}

    def build(self, services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]) -> Table:
        by_service = group_slices(slices)
        routes: dict[Frontend, Route] = {}
        conflicts: list[Problem] = []
        cache: dict[str, _Cached] = {}
        keyed = sorted(((service_key(service), service) for service in services), key=lambda pair: pair[0])
        for key, service in keyed:
            mine = by_service.get(key, ())
            entry = self._cache.get(key)
            if entry is None or entry.service is not service or not _same_objects(entry.slices, mine):
                entry = _Cached(service, tuple(mine), service_routes(service, mine, self.node_addresses))
            cache[key] = entry
            for frontend, route in entry.routes:
                owner = routes.get(frontend)
                if owner is None:
                    routes[frontend] = route
                elif owner.key != route.key:
                    message = (
                        f"{frontend} is already used by Service {owner.key.service} "
                        f"(port {owner.key.port_name or frontend.port}); "
                        f"Service {route.key.service} port {route.key.port_name or frontend.port} "
                        "is not served there"
                    )
                    conflicts.append(Problem(frontend, route.key.service, message))
        self._cache = cache
        return Table(routes=routes, conflicts=tuple(dict.fromkeys(conflicts)))


def _same_objects(before: Sequence[object], now: Sequence[object]) -> bool:
    return len(before) == len(now) and all(a is b for a, b in zip(before, now, strict=True))


def build_table(
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    node_addresses: Sequence[str],
) -> Table:
    """The whole listener table for one snapshot of Services and EndpointSlices."""
    return TableBuilder(node_addresses).build(services, slices)


def diff(old: Mapping[Frontend, Route], new: Mapping[Frontend, Route]) -> TableDiff:
    """What to do to go from ``old`` routes to ``new``: listeners to open, to close, and routes to swap."""
    added: dict[Frontend, Route] = {}
    changed: dict[Frontend, Route] = {}
    for frontend, route in new.items():
        before = old.get(frontend)
        if before is None:
            added[frontend] = route
        elif before is not route and before != route:
            changed[frontend] = route
    removed = frozenset(frontend for frontend in old if frontend not in new)
    return TableDiff(added=added, removed=removed, changed=changed)


def apply_diff(old: Mapping[Frontend, Route], change: TableDiff) -> dict[Frontend, Route]:
    """``old`` with ``change`` applied; ``apply_diff(a, diff(a, b)) == b``."""
    result = {frontend: route for frontend, route in old.items() if frontend not in change.removed}
    result.update(change.added)
    result.update(change.changed)
    return result
