"""The cluster DNS zone: records for Services and their endpoints, and the answer to one question.

Pure logic over plain JSON dicts (Services, EndpointSlices) with no IO and no DNS wire format: the server in
``corral.proxy.dns`` parses packets, asks :func:`Zone.answer`, and encodes what it gets back. Records follow
the Kubernetes DNS-Based Service Discovery specification as CoreDNS's ``kubernetes`` plugin serves it, for the
zone ``cluster.local``:

- ``<svc>.<ns>.svc.cluster.local`` A/AAAA: the ClusterIP(s). For a headless Service (``clusterIP: None``) the
  addresses of its ready endpoints (NXDOMAIN when none is ready, as the spec says). ExternalName: a CNAME.
- ``_<port>._<proto>.<svc>.<ns>.svc.cluster.local`` SRV: ``0 100 <port> <svc>.<ns>.svc.cluster.local.`` for a
  ClusterIP Service (the Service port, reached through the proxy); for a headless Service one record per
  ready endpoint, ``<endpoint>.<svc>.<ns>.svc.cluster.local.`` with the endpoint's own port, plus its A record
  in the additional section. Corral pods share the node's address and each gets its own host port, so for
  headless Services SRV is the only record that tells endpoints apart; the endpoint label is the endpoint's
  ``hostname``, else the pod name, else the dashed address. An SRV question for the bare Service name answers
  every port, named or not (CoreDNS does the same; unnamed ports have no ``_<port>`` name).
- ``<endpoint>.<svc>.<ns>.svc.cluster.local`` A for a headless Service's ready endpoints.
- ``<a>-<b>-<c>-<d>.<ns>.pod.cluster.local`` A (the spec's deprecated pod records, CoreDNS ``pods insecure``).
- PTR for ClusterIPs under ``in-addr.arpa``/``ip6.arpa``. Endpoint addresses get no PTR: every pod of a node
  has the node's address, so an address does not name one endpoint.
- ``dns-version.cluster.local`` TXT (the spec's schema version), SOA and NS at the apex.

Unknown names inside the zone get NXDOMAIN, known names without the asked type NOERROR with no answer (both
with the SOA in the authority section, TTL 5 s for negative caching). Names outside the zone get REFUSED: this
is an authoritative server for the cluster zone only, not a recursive resolver. As a convenience the shorter
``<svc>.<ns>.svc`` and ``<svc>.<ns>`` (and ``_<port>._<proto>.`` in front of either) are answered when they
name something that exists; otherwise they are outside the zone and REFUSED too. Comparisons are
case-insensitive; answers repeat the question's spelling.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from corral.proxy.backends import Backend, backends_by_port, group_slices, service_key

JSON = dict[str, Any]

DOMAIN = "cluster.local"
TTL = 5
SCHEMA_VERSION = "1.0.1"
"""The version of the Kubernetes DNS schema served (``dns-version.<zone>`` TXT)."""
MAX_CNAME_CHAIN = 8


class Rcode(IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Soa:
    mname: str
    rname: str
    serial: int
    refresh: int = 7200
    retry: int = 1800
    expire: int = 86400
    minimum: int = TTL


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record. ``name`` and name-valued data are absolute (trailing dot)."""

    name: str
    rtype: str
    data: str | Srv | Soa
    ttl: int = TTL


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: Rcode
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    authoritative: bool = True


# ------------------------------------------------------------------------------------------------ zone data


class ServiceKind(IntEnum):
    CLUSTER_IP = 0
    HEADLESS = 1
    EXTERNAL_NAME = 2


@dataclass(frozen=True, slots=True)
class PortInfo:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One ready endpoint address of a headless Service, with the port it serves per Service port."""

    label: str
    ip: str
    ports: tuple[PortInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """What the zone knows about one Service (names lower-cased)."""

    namespace: str
    name: str
    kind: ServiceKind
    ips: tuple[str, ...] = ()
    external_name: str = ""
    ports: tuple[PortInfo, ...] = ()
    endpoints: tuple[EndpointInfo, ...] = ()


_LABEL_INVALID = re.compile(r"[^a-z0-9-]+")


def _label(text: str) -> str:
    """A single DNS label from a pod name or hostname (pod names may contain dots)."""
    label = _LABEL_INVALID.sub("-", text.lower()).strip("-")
    return label[:63].rstrip("-") or "endpoint"


def _endpoint_label(backend: Backend) -> str:
    if backend.hostname:
        return _label(backend.hostname)
    if backend.pod:
        return _label(backend.pod.rsplit("/", 1)[-1])
    return _label(backend.ip.replace(".", "-").replace(":", "-"))


def _is_ipv6(ip: str) -> bool:
    return ":" in ip


def _service_ports(spec: Mapping[str, Any]) -> tuple[PortInfo, ...]:
    ports = []
    for port in spec.get("ports") or []:
        number = port.get("port")
        if isinstance(number, int) and 0 < number < 65536:
            protocol = str(port.get("protocol") or "TCP").upper()
            ports.append(PortInfo(str(port.get("name") or "").lower(), protocol, number))
    return tuple(ports)


def _headless_endpoints(
    slices: Sequence[Mapping[str, Any]], ports: tuple[PortInfo, ...], publish_not_ready: bool
) -> tuple[EndpointInfo, ...]:
    protocols = {p.name: p.protocol for p in ports}
    for endpoint_slice in slices:
        for port in endpoint_slice.get("ports") or []:
            protocols.setdefault(
                str(port.get("name") or "").lower(), str(port.get("protocol") or "TCP").upper()
            )
    # backends_by_port reads endpoints per slice port; a headless Service may declare no ports, and then its
    # slices have none either. A placeholder port lets the shared reading of the conditions apply to them too.
    readable = [
        s if s.get("ports") else {**s, "ports": [{"name": "\0placeholder", "port": 1}]} for s in slices
    ]
    found: dict[tuple[str, str], list[PortInfo]] = {}
    for port_name, backends in backends_by_port(readable).items():
        for backend in backends:
            if not (backend.ready or publish_not_ready):
                continue
            entry = found.setdefault((_endpoint_label(backend), backend.ip), [])
            if port_name != "\0placeholder":
                name = port_name.lower()
                entry.append(PortInfo(name, protocols.get(name, "TCP"), backend.port))
    return tuple(
        EndpointInfo(label, ip, tuple(sorted(set(entry), key=lambda p: (p.name, p.protocol, p.port))))
        for (label, ip), entry in sorted(found.items())
    )


def service_record(service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]]) -> ServiceRecord | None:
    """The zone's view of one Service and its EndpointSlices; None when it has no name in the zone yet
    (a ClusterIP Service whose address is not allocated)."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    name = str(meta.get("name") or "").lower()
    namespace = str(meta.get("namespace") or "default").lower()
    if not name:
        return None
    ports = _service_ports(spec)
    if spec.get("type") == "ExternalName":
        target = str(spec.get("externalName") or "").rstrip(".").lower()
        if not target:
            return None
        return ServiceRecord(namespace, name, ServiceKind.EXTERNAL_NAME, external_name=target, ports=ports)
    cluster_ips = [str(ip) for ip in spec.get("clusterIPs") or [] if ip] or (
        [str(spec["clusterIP"])] if spec.get("clusterIP") else []
    )
    if cluster_ips and cluster_ips[0] == "None":
        endpoints = _headless_endpoints(slices, ports, bool(spec.get("publishNotReadyAddresses")))
        return ServiceRecord(namespace, name, ServiceKind.HEADLESS, ports=ports, endpoints=endpoints)
    ips = tuple(ip for ip in cluster_ips if ip != "None")
    if not ips:
        return None
    return ServiceRecord(namespace, name, ServiceKind.CLUSTER_IP, ips=ips, ports=ports)


def _reverse_name(ip: str) -> str | None:
    try:
        return ipaddress.ip_address(ip).reverse_pointer
    except ValueError:
        return None


def _dashed_ipv4(label: str) -> str | None:
    parts = label.split("-")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        return None
    return ".".join(str(int(p)) for p in parts)


def _absolute(name: str) -> str:
    return name if name.endswith(".") else name + "."


def _split(name: str) -> list[str]:
    stripped = name.rstrip(".").lower()
    return stripped.split(".") if stripped else []


@dataclass
class _Lookup:
    """The outcome inside the zone before it becomes an :class:`Answer`."""

    exists: bool
    answers: list[Record] = field(default_factory=list)
    additional: list[Record] = field(default_factory=list)


class Zone:
    """An immutable snapshot of the cluster zone, built from :class:`ServiceRecord`s; cheap to query."""

    def __init__(
        self,
        records: Iterable[ServiceRecord] = (),
        *,
        domain: str = DOMAIN,
        serial: int = 1,
        nameserver_ip: str | None = None,
    ) -> None:
        self.domain = domain.strip(".").lower()
        self.domain_labels = self.domain.split(".")
        self.serial = serial
        self.nameserver_ip = nameserver_ip
        self.services: dict[tuple[str, str], ServiceRecord] = {}
        self.namespaces: set[str] = set()
        self.reverse: dict[str, str] = {}
        for record in records:
            self.services[(record.namespace, record.name)] = record
            self.namespaces.add(record.namespace)
            for ip in record.ips:
                pointer = _reverse_name(ip)
                # Two Services never share a ClusterIP (the API server refuses it); keep the first if they do.
                if pointer is not None:
                    self.reverse.setdefault(pointer, self.service_fqdn(record))
        self.soa = Record(
            _absolute(self.domain),
            "SOA",
            Soa(f"ns.dns.{self.domain}.", f"hostmaster.{self.domain}.", serial),
        )

    def service_fqdn(self, record: ServiceRecord) -> str:
        return f"{record.name}.{record.namespace}.svc.{self.domain}."

    # -------------------------------------------------------------------------------------------- questions

    def answer(self, qname: str, qtype: str) -> Answer:
        """The answer to ``qname`` (any case, final dot optional) of type ``qtype`` (``A``, ``SRV``…)."""
        qtype = qtype.upper()
        owner = _absolute(qname) if qname.rstrip(".") else "."
        labels = _split(qname)
        count = len(self.domain_labels)
        if labels[-2:] in (["in-addr", "arpa"], ["ip6", "arpa"]):
            return self._reverse(owner, labels, qtype)
        if len(labels) >= count and labels[-count:] == self.domain_labels:
            lookup = self._lookup(labels[:-count], qtype, owner, 0)
            return self._finish(lookup, qtype, authority=True)
        # Convenience forms: "<svc>.<ns>.svc" and "<svc>.<ns>" stand for the names under svc.<zone>. They are
        # outside the zone, so they are answered only when they name a Service (or its endpoint or port).
        relative = labels if labels[-1:] == ["svc"] else [*labels, "svc"]
        if len(relative) >= 3:
            lookup = self._lookup(relative, qtype, owner, 0)
            if lookup.exists:
                return self._finish(lookup, qtype, authority=False)
        return Answer(Rcode.REFUSED, authoritative=False)

    def _finish(self, lookup: _Lookup, qtype: str, *, authority: bool) -> Answer:
        if not lookup.exists:
            return Answer(Rcode.NXDOMAIN, authority=(self.soa,) if authority else ())
        answers = tuple(dict.fromkeys(lookup.answers))
        additional = tuple(r for r in dict.fromkeys(lookup.additional) if r not in answers)
        if not answers:
            return Answer(Rcode.NOERROR, authority=(self.soa,) if authority else (), authoritative=authority)
        # A shortened name is outside the zone: answered as a convenience, not with authority.
        return Answer(Rcode.NOERROR, answers, (), additional, authoritative=authority)

    def _reverse(self, owner: str, labels: list[str], qtype: str) -> Answer:
        target = self.reverse.get(".".join(labels))
        if target is None:
            # Addresses that are not ClusterIPs belong to someone else's reverse zone.
            return Answer(Rcode.REFUSED, authoritative=False)
        if qtype in ("PTR", "ANY"):
            return Answer(Rcode.NOERROR, (Record(owner, "PTR", target),))
        return Answer(Rcode.NOERROR)

    def _lookup(self, rel: list[str], qtype: str, owner: str, depth: int) -> _Lookup:
        """Records at the zone-relative name ``rel`` (lower-case labels, zone suffix removed)."""
        n = len(rel)
        if n == 0:
            apex: list[Record] = []
            if qtype in ("SOA", "ANY"):
                apex.append(Record(owner, "SOA", self.soa.data))
            if qtype in ("NS", "ANY"):
                apex.append(Record(owner, "NS", f"ns.dns.{self.domain}."))
            return _Lookup(True, apex)
        if rel == ["dns-version"]:
            txt = [Record(owner, "TXT", SCHEMA_VERSION)] if qtype in ("TXT", "ANY") else []
            return _Lookup(True, txt)
        if rel == ["dns"] or (rel == ["ns", "dns"] and self.nameserver_ip is None):
            return _Lookup(True)
        if rel == ["ns", "dns"]:
            assert self.nameserver_ip is not None
            return _Lookup(True, self._addresses(owner, (self.nameserver_ip,), qtype))
        if rel[-1] == "pod":
            return self._pod(rel, qtype, owner)
        if rel[-1] != "svc":
            return _Lookup(False)
        if n == 1:
            return _Lookup(True)
        if n == 2:
            return _Lookup(rel[0] in self.namespaces)
        record = self.services.get((rel[-2], rel[-3]))
        if record is None:
            return _Lookup(False)
        if n == 3:
            return self._service(record, qtype, owner, depth)
        if n == 4:
            return self._below_service(record, rel[0], qtype, owner)
        if n == 5 and rel[0].startswith("_") and rel[1].startswith("_"):
            return self._srv(record, rel[0][1:], rel[1][1:].upper(), qtype, owner)
        return _Lookup(False)

    def _pod(self, rel: list[str], qtype: str, owner: str) -> _Lookup:
        if len(rel) <= 2:
            return _Lookup(True)  # "pod.<zone>" and "<ns>.pod.<zone>" are empty non-terminals
        ip = _dashed_ipv4(rel[0]) if len(rel) == 3 else None
        if ip is None:
            return _Lookup(False)
        return _Lookup(True, self._addresses(owner, (ip,), qtype))

    @staticmethod
    def _addresses(owner: str, ips: Iterable[str], qtype: str) -> list[Record]:
        records = []
        for ip in dict.fromkeys(ips):
            rtype = "AAAA" if _is_ipv6(ip) else "A"
            if qtype in (rtype, "ANY"):
                records.append(Record(owner, rtype, ip))
        return records

    def _service(self, record: ServiceRecord, qtype: str, owner: str, depth: int) -> _Lookup:
        if record.kind is ServiceKind.EXTERNAL_NAME:
            return self._cname(record, qtype, owner, depth)
        if record.kind is ServiceKind.HEADLESS:
            if not record.endpoints:
                return _Lookup(False)  # the spec: a headless Service without ready endpoints is NXDOMAIN
            if qtype == "SRV":
                return self._headless_srv(record, record.endpoints, owner)
            return _Lookup(True, self._addresses(owner, (e.ip for e in record.endpoints), qtype))
        if qtype == "SRV":
            return self._cluster_srv(record, record.ports, owner)
        return _Lookup(True, self._addresses(owner, record.ips, qtype))

    def _cname(self, record: ServiceRecord, qtype: str, owner: str, depth: int) -> _Lookup:
        cname = Record(owner, "CNAME", _absolute(record.external_name))
        if qtype == "CNAME" or depth >= MAX_CNAME_CHAIN:
            return _Lookup(True, [cname])
        # A target inside the zone is chased here, as CoreDNS does; an outside one is the client's to resolve.
        labels = _split(record.external_name)
        count = len(self.domain_labels)
        if len(labels) > count and labels[-count:] == self.domain_labels:
            chased = self._lookup(labels[:-count], qtype, _absolute(record.external_name), depth + 1)
            return _Lookup(True, [cname, *chased.answers], chased.additional)
        return _Lookup(True, [cname])

    def _below_service(self, record: ServiceRecord, label: str, qtype: str, owner: str) -> _Lookup:
        if label.startswith("_"):
            # "_<port>.<svc>…" is an empty non-terminal when the Service has such a named port.
            return _Lookup(any(p.name and p.name == label[1:] for p in record.ports))
        if record.kind is not ServiceKind.HEADLESS:
            return _Lookup(False)
        endpoints = [e for e in record.endpoints if e.label == label]
        if not endpoints:
            return _Lookup(False)
        return _Lookup(True, self._addresses(owner, (e.ip for e in endpoints), qtype))

    def _srv(self, record: ServiceRecord, port: str, protocol: str, qtype: str, owner: str) -> _Lookup:
        if record.kind is ServiceKind.CLUSTER_IP:
            ports = [p for p in record.ports if p.name and p.name == port and p.protocol == protocol]
            if not ports:
                return _Lookup(False)
            return self._cluster_srv(record, ports, owner) if qtype in ("SRV", "ANY") else _Lookup(True)
        if record.kind is ServiceKind.HEADLESS:
            selected = [
                EndpointInfo(
                    e.label, e.ip, tuple(p for p in e.ports if p.name == port and p.protocol == protocol)
                )
                for e in record.endpoints
            ]
            selected = [e for e in selected if e.ports]
            if not selected:
                return _Lookup(False)
            if qtype not in ("SRV", "ANY"):
                return _Lookup(True)
            return self._headless_srv(record, selected, owner)
        return _Lookup(False)

    def _cluster_srv(self, record: ServiceRecord, ports: Sequence[PortInfo], owner: str) -> _Lookup:
        target = self.service_fqdn(record)
        weight = _weight(len(ports))
        answers = [Record(owner, "SRV", Srv(0, weight, p.port, target)) for p in ports]
        return _Lookup(True, answers, self._addresses(target, record.ips, "ANY") if answers else [])

    def _headless_srv(self, record: ServiceRecord, endpoints: Sequence[EndpointInfo], owner: str) -> _Lookup:
        base = self.service_fqdn(record)
        pairs = [(e, p) for e in endpoints for p in e.ports]
        weight = _weight(len(pairs))
        answers = [Record(owner, "SRV", Srv(0, weight, p.port, f"{e.label}.{base}")) for e, p in pairs]
        additional = [r for e, _p in pairs for r in self._addresses(f"{e.label}.{base}", (e.ip,), "ANY")]
        return _Lookup(True, answers, additional)


def _weight(count: int) -> int:
    """CoreDNS spreads the weight 100 evenly over the records of one priority (rounded down)."""
    return math.floor(100 / count) if count else 100


# ------------------------------------------------------------------------------------------------ building


def build_zone(
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    *,
    domain: str = DOMAIN,
    serial: int = 1,
    nameserver_ip: str | None = None,
) -> Zone:
    """The zone for a full snapshot of Services and EndpointSlices."""
    grouped = group_slices(slices)
    records = []
    for service in services:
        record = service_record(service, grouped.get(service_key(service), []))
        if record is not None:
            records.append(record)
    return Zone(records, domain=domain, serial=serial, nameserver_ip=nameserver_ip)
