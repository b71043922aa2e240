"""The ingress routing table: which Service endpoints answer an HTTP request, by host and path.

Pure: built from plain JSON snapshots of Ingresses (networking.k8s.io/v1), Services and EndpointSlices; no IO.
The HTTP proxy (:mod:`corral.proxy.ingress`) asks :meth:`RoutingTable.route` per request; the node glue reads
:attr:`RoutingTable.problems` to emit Warning events and :func:`load_balancer_ingress` to fill the Ingress
status. What "ready" means comes from :mod:`corral.proxy.backends`, shared with the service proxy and DNS.

Semantics, as the Kubernetes Ingress API defines them (and ingress-nginx implements them where it is silent):

- **Which Ingresses.** Those whose class (``spec.ingressClassName``, else the legacy annotation
  ``kubernetes.io/ingress.class``) is empty or one of the handled class names: ``corral`` plus, through
  :func:`handled_classes`, every IngressClass whose controller is ``corral.dev/ingress`` or that is marked
  default (``ingressclass.kubernetes.io/is-default-class: "true"``). Everything else belongs to another
  controller and is ignored silently.
- **Host.** A rule's ``host`` is exact (``a.example``) or a wildcard whose ``*`` is the whole first label
  (``*.example.com`` matches ``x.example.com``, not ``example.com`` nor ``y.x.example.com``). The request's
  host comes from the Host header, lower-cased, port and trailing dot removed. An exact host beats a
  wildcard, a wildcard beats rules without a host. Rules for the same host from several Ingresses merge.
- **Path.** ``Exact`` compares the whole path, case-sensitively. ``Prefix`` compares '/'-separated elements:
  ``/foo`` (or ``/foo/``) matches ``/foo``, ``/foo/`` and ``/foo/bar`` but not ``/foobar``.
  ``ImplementationSpecific`` is treated as ``Prefix`` (an empty path then means ``/``). The longest path
  wins (a Prefix path's length ignores its trailing '/'); at equal length ``Exact`` beats ``Prefix``; then
  the older Ingress wins. A later duplicate of the same host, path and kind is reported and ignored.
- **Default backend.** When the chosen host has no matching path, the request goes to the ``defaultBackend``
  of the oldest Ingress that has one and declares rules for that host, else to the cluster default: the
  ``defaultBackend`` of the oldest Ingress without rules (else of the oldest Ingress having one). No
  default at all → the proxy answers 404. Like ingress-nginx, a host that matched never falls through to
  less specific hosts' paths.
- **Backend.** ``service.name`` in the Ingress's namespace, ``service.port.number`` (a Service ``port``) or
  ``service.port.name`` (a Service port ``name``). The endpoints are that Service port's routable backends
  (read by its port name, as EndpointSlices carry it). A missing Service, a missing port, an ExternalName
  Service or a ``resource`` backend is a :class:`Problem`; the route still exists and answers 503 with the
  reason, so one bad Ingress never changes how the others route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from corral.proxy.backends import Backend, backends_by_port, routable, slice_service_key

JSON = dict[str, Any]

DEFAULT_CLASS = "corral"
"""The IngressClass name this ingress always handles."""
CONTROLLER = "corral.dev/ingress"
"""``spec.controller`` of an IngressClass handled by this ingress."""
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASSES: frozenset[str] = frozenset({DEFAULT_CLASS})


class PathType(StrEnum):
    EXACT = "Exact"
    PREFIX = "Prefix"
    IMPLEMENTATION_SPECIFIC = "ImplementationSpecific"


class Problem(NamedTuple):
    """Something in an Ingress that cannot be routed as written; the node glue turns it into an Event."""

    ingress: str
    """``namespace/name`` of the Ingress."""
    message: str


@dataclass(frozen=True, slots=True)
class Target:
    """Where a route sends requests: one Service port and its routable endpoints, or why it cannot."""

    ingress: str
    service: str
    """``namespace/name`` of the Service ("" for an unsupported ``resource`` backend)."""
    port: str
    """The port as the Ingress wrote it (a number or a name), for messages."""
    port_name: str = ""
    """The resolved Service port's name ("" when unnamed): the key of its backends in the slices."""
    backends: tuple[Backend, ...] = ()
    """Routable backends (ready, else serving terminating), sorted."""
    problem: str = ""
    """Why this target cannot be resolved (missing Service, missing port …); "" when it resolved."""

    @property
    def pool(self) -> tuple[str, str]:
        """Identity of the backend pool, stable across table rebuilds (for round-robin state)."""
        return (self.service, self.port_name)

    @property
    def unavailable_reason(self) -> str:
        """Why no request can be forwarded now, or "" when some backend is routable."""
        if self.problem:
            return self.problem
        if not self.backends:
            return f"no ready endpoint for service {self.service}"
        return ""


@dataclass(frozen=True, slots=True)
class Route:
    """A matched rule: its stable name (the key of its counters) and its target."""

    name: str
    target: Target


@dataclass(frozen=True, slots=True)
class PathRule:
    path: str
    path_type: PathType
    segments: tuple[str, ...]
    route: Route

    @property
    def exact(self) -> bool:
        return self.path_type is PathType.EXACT

    @property
    def match_length(self) -> int:
        """The length that ranks matches: a Prefix path's trailing '/' does not make it longer."""
        if self.exact:
            return len(self.path)
        return len(self.path.rstrip("/")) or 1

    def matches(self, path: str, segments: tuple[str, ...]) -> bool:
        if self.exact:
            return path == self.path
        return prefix_matches(self.segments, segments)


@dataclass(frozen=True, slots=True)
class HostRules:
    """The path rules of one host (or of the rules without a host), best first, and the host's default."""

    paths: tuple[PathRule, ...]
    default: Route | None = None

    def match(self, path: str, segments: tuple[str, ...]) -> Route | None:
        for rule in self.paths:
            if rule.matches(path, segments):
                return rule.route
        return None


@dataclass(frozen=True)
class RoutingTable:
    exact_hosts: Mapping[str, HostRules] = field(default_factory=dict)
    wildcard_hosts: Mapping[str, HostRules] = field(default_factory=dict)
    """Keyed by the domain after ``*.``."""
    any_host: HostRules | None = None
    default: Route | None = None
    problems: tuple[Problem, ...] = ()
    ingresses: tuple[str, ...] = ()
    """``namespace/name`` of every Ingress this table serves (the ones whose status the node glue fills)."""

    def host_rules(self, host: str) -> HostRules | None:
        """The rules for a normalised request host: exact, else wildcard, else the host-less rules."""
        rules = self.exact_hosts.get(host)
        if rules is not None:
            return rules
        _, dot, parent = host.partition(".")
        if dot and parent:
            rules = self.wildcard_hosts.get(parent)
            if rules is not None:
                return rules
        return self.any_host

    def route(self, host_header: str, path: str) -> Route | None:
        """The route for a request (Host header as sent, decoded path without query); None → 404."""
        rules = self.host_rules(normalize_host(host_header))
        if rules is None:
            return self.default
        found = rules.match(path, path_segments(path))
        if found is not None:
            return found
        return rules.default or self.default


# -- matching primitives -----------------------------------------------------------------------------------


def path_segments(path: str) -> tuple[str, ...]:
    """The '/'-separated elements of a path; empty elements (from '//' or a trailing '/') are dropped."""
    return tuple(part for part in path.split("/") if part)


def prefix_matches(prefix: Sequence[str], request: Sequence[str]) -> bool:
    """Element-wise prefix: every element of ``prefix`` equals the request's element at the same place."""
    n = len(prefix)
    return len(request) >= n and tuple(request[:n]) == tuple(prefix)


def normalize_host(host_header: str) -> str:
    """The host of a Host header: lower-case, without port, brackets kept off IPv6, no trailing dot."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


# -- classes and status ------------------------------------------------------------------------------------


def ingress_class(ingress: Mapping[str, Any]) -> str:
    """The class an Ingress asks for: ``spec.ingressClassName``, else the legacy annotation, else ""."""
    name = (ingress.get("spec") or {}).get("ingressClassName")
    if name:
        return str(name)
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(LEGACY_CLASS_ANNOTATION) or "")


def handled_classes(
    ingress_classes: Iterable[Mapping[str, Any]] = (), controller: str = CONTROLLER
) -> frozenset[str]:
    """``corral`` plus the IngressClasses naming this controller or marked as the cluster default."""
    names = {DEFAULT_CLASS}
    for ingress_class_obj in ingress_classes:
        meta = ingress_class_obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            continue
        annotations = meta.get("annotations") or {}
        is_default = str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"
        if is_default or (ingress_class_obj.get("spec") or {}).get("controller") == controller:
            names.add(str(name))
    return frozenset(names)


def is_handled(ingress: Mapping[str, Any], classes: Collection[str] = DEFAULT_CLASSES) -> bool:
    cls = ingress_class(ingress)
    return not cls or cls in classes


def load_balancer_ingress(addresses: str | Sequence[str], port: int) -> list[JSON]:
    """``status.loadBalancer.ingress`` of an Ingress served on ``addresses`` (node IPs) at ``port``."""
    if isinstance(addresses, str):
        addresses = [addresses]
    entries: list[JSON] = []
    for address in addresses:
        try:
            ipaddress.ip_address(address)
            key = "ip"
        except ValueError:
            key = "hostname"
        entries.append({key: address, "ports": [{"port": port, "protocol": "TCP"}]})
    return entries


# -- building ----------------------------------------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is an object, else an empty one: tolerate hand-written input with nulls."""
    return value if isinstance(value, Mapping) else {}


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def _age(ingress: Mapping[str, Any]) -> tuple[str, str]:
    """Older first; RFC 3339 timestamps in the API's one format sort as strings. The key breaks ties."""
    meta = ingress.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or ""), _key(ingress))


def _port_text(port: Mapping[str, Any]) -> str:
    if port.get("number") is not None:
        return str(port.get("number"))
    return str(port.get("name") or "")


class _Resolver:
    """Resolves Ingress backends against the snapshot, computing each Service's backends once."""

    def __init__(
        self, services: Mapping[str, Mapping[str, Any]], slices: Mapping[str, list[Mapping[str, Any]]]
    ) -> None:
        self.services = services
        self.slices = slices
        self._backends: dict[str, dict[str, tuple[Backend, ...]]] = {}

    def _service_backends(self, service: str) -> dict[str, tuple[Backend, ...]]:
        found = self._backends.get(service)
        if found is None:
            found = backends_by_port(self.slices.get(service, ()))
            self._backends[service] = found
        return found

    def resolve(self, ingress: str, namespace: str, backend: Mapping[str, Any]) -> Target:
        ref = _mapping(backend.get("service"))
        if not ref.get("name"):
            kind = _mapping(backend.get("resource")).get("kind")
            what = f"resource backend ({kind})" if kind else "backend without a service"
            return Target(ingress, "", "", problem=f"{what} is not supported; only service backends are")
        service = f"{namespace}/{ref['name']}"
        port = _mapping(ref.get("port"))
        port_text = _port_text(port)
        obj = self.services.get(service)
        if obj is None:
            return Target(ingress, service, port_text, problem=f"service {service} not found")
        spec = obj.get("spec") or {}
        if spec.get("type") == "ExternalName":
            problem = f"service {service} is of type ExternalName, which is not routable"
            return Target(ingress, service, port_text, problem=problem)
        number, name = port.get("number"), port.get("name")
        for service_port in spec.get("ports") or []:
            if (number is not None and service_port.get("port") == number) or (
                number is None and name and service_port.get("name") == name
            ):
                port_name = str(service_port.get("name") or "")
                backends = routable(self._service_backends(service).get(port_name, ()))
                return Target(ingress, service, port_text, port_name, backends)
        if not port_text:
            return Target(ingress, service, "", problem=f"backend for service {service} names no port")
        return Target(ingress, service, port_text, problem=f"service {service} has no port {port_text}")


@dataclass
class _HostGroup:
    rules: list[tuple[tuple[Any, ...], PathRule]] = field(default_factory=list)
    seen: dict[tuple[str, Any], str] = field(default_factory=dict)
    default: Route | None = None

    def freeze(self) -> HostRules:
        return HostRules(
            tuple(rule for _, rule in sorted(self.rules, key=lambda item: item[0])), self.default
        )


def _duplicate_key(path: str, path_type: PathType, segments: tuple[str, ...]) -> tuple[str, Any]:
    return ("exact", path) if path_type is PathType.EXACT else ("prefix", segments)


def build_routing_table(
    ingresses: Iterable[Mapping[str, Any]],
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    *,
    classes: Collection[str] = DEFAULT_CLASSES,
) -> RoutingTable:
    """The routing table of a full snapshot. Cost is linear in the snapshot; only referenced Services'
    slices are read in depth, so 1,000 unrelated Services cost a dictionary lookup each."""
    handled = sorted((ing for ing in ingresses if is_handled(ing, classes)), key=_age)
    referenced: set[str] = set()
    for ingress in handled:
        namespace = (ingress.get("metadata") or {}).get("namespace") or "default"
        spec = ingress.get("spec") or {}
        backends = [spec.get("defaultBackend")]
        for rule in spec.get("rules") or []:
            backends += [p.get("backend") for p in ((rule or {}).get("http") or {}).get("paths") or []]
        for backend in backends:
            name = _mapping(_mapping(backend).get("service")).get("name")
            if name:
                referenced.add(f"{namespace}/{name}")
    service_index = {key: svc for svc in services if (key := _key(svc)) in referenced}
    slice_index: dict[str, list[Mapping[str, Any]]] = {}
    for endpoint_slice in slices:
        owner = slice_service_key(endpoint_slice)
        if owner is not None and owner in referenced:
            slice_index.setdefault(owner, []).append(endpoint_slice)
    resolver = _Resolver(service_index, slice_index)

    problems: list[Problem] = []
    exact: dict[str, _HostGroup] = {}
    wildcard: dict[str, _HostGroup] = {}
    any_host = _HostGroup()
    default_candidates: list[tuple[tuple[int, tuple[str, str]], str, Route]] = []

    for ingress in handled:
        key = _key(ingress)
        namespace = key.split("/", 1)[0]
        spec = ingress.get("spec") or {}
        ingress_default: Route | None = None
        default_backend = spec.get("defaultBackend")
        if isinstance(default_backend, Mapping):
            target = resolver.resolve(key, namespace, default_backend)
            if target.problem:
                problems.append(Problem(key, f"default backend: {target.problem}"))
            ingress_default = Route(f"{key} (default backend)", target)
            rules = spec.get("rules") or []
            default_candidates.append(((1 if rules else 0, _age(ingress)), key, ingress_default))

        for rule_index, rule in enumerate(spec.get("rules") or []):
            rule = rule or {}
            host = str(rule.get("host") or "").lower().rstrip(".")
            if host and ("*" in host.lstrip("*") or (host.startswith("*") and not host.startswith("*."))):
                problems.append(
                    Problem(key, f"host {host!r}: a wildcard must be the whole first label (*.domain)")
                )
                continue
            if host.startswith("*."):
                group = wildcard.setdefault(host[2:], _HostGroup())
            elif host:
                group = exact.setdefault(host, _HostGroup())
            else:
                group = any_host
            if group.default is None and ingress_default is not None and host:
                group.default = ingress_default
            for path_index, http_path in enumerate((rule.get("http") or {}).get("paths") or []):
                http_path = http_path or {}
                raw_type = http_path.get("pathType") or PathType.IMPLEMENTATION_SPECIFIC.value
                try:
                    path_type = PathType(raw_type)
                except ValueError:
                    problems.append(Problem(key, f"host {host or '*'}: unknown pathType {raw_type!r}"))
                    continue
                path = str(http_path.get("path") or "")
                if path_type is PathType.IMPLEMENTATION_SPECIFIC and not path:
                    path = "/"
                if not path.startswith("/"):
                    problems.append(Problem(key, f"host {host or '*'}: path {path!r} must start with '/'"))
                    continue
                segments = path_segments(path)
                where = f"{host or '*'} {path_type.value} {path}"
                duplicate = _duplicate_key(path, path_type, segments)
                if duplicate in group.seen:
                    problems.append(
                        Problem(
                            key, f"rule {where} is already routed by ingress {group.seen[duplicate]}; ignored"
                        )
                    )
                    continue
                group.seen[duplicate] = key
                target = resolver.resolve(key, namespace, _mapping(http_path.get("backend")))
                if target.problem:
                    problems.append(Problem(key, f"rule {where}: {target.problem}"))
                rule_obj = PathRule(path, path_type, segments, Route(f"{key} {where}", target))
                order = (
                    -rule_obj.match_length,
                    0 if rule_obj.exact else 1,
                    _age(ingress),
                    rule_index,
                    path_index,
                )
                group.rules.append((order, rule_obj))

    cluster_default: Route | None = None
    if default_candidates:
        default_candidates.sort(key=lambda item: item[0])
        (winner_has_rules, _), winner_key, cluster_default = default_candidates[0]
        # Two Ingresses that exist only to set the default backend conflict; an Ingress with rules whose
        # defaultBackend is not the cluster default still serves its own hosts, which is no conflict.
        for (has_rules, _), key, _route in default_candidates[1:]:
            if not has_rules and not winner_has_rules:
                problems.append(
                    Problem(
                        key, f"default backend ignored: ingress {winner_key} already sets the cluster default"
                    )
                )

    unique = tuple(dict.fromkeys(problems))
    return RoutingTable(
        exact_hosts={host: group.freeze() for host, group in exact.items()},
        wildcard_hosts={domain: group.freeze() for domain, group in wildcard.items()},
        any_host=any_host.freeze() if any_host.rules else None,
        default=cluster_default,
        problems=unique,
        ingresses=tuple(_key(ing) for ing in handled),
    )
