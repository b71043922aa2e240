"""The cluster DNS zone (corral.proxy.dnszone) and the server's packet handling (corral.proxy.dns.respond).

Table tests per record type against the Kubernetes DNS specification as CoreDNS answers it, negative answers
(NXDOMAIN / NODATA with the SOA, REFUSED outside the zone), case-insensitivity, the convenience short names, and
a Hypothesis property: every ClusterIP Service of any generated set resolves to its own address.
"""

from __future__ import annotations

from typing import Any

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.proxy.dns import DnsServer, respond
from corral.proxy.dnszone import TTL, Answer, Rcode, Record, Soa, Srv, Zone, build_zone

JSON = dict[str, Any]


def service(
    name: str,
    ip: str | None = "127.96.0.10",
    *,
    ns: str = "default",
    ports: list[tuple[str, int, str]] | None = None,
    rv: str = "1",
    **spec: Any,
) -> JSON:
    body: JSON = {"type": "ClusterIP", **spec}
    if ip is not None:
        body["clusterIP"] = ip
        body["clusterIPs"] = spec.get("clusterIPs") or [ip]
    body["ports"] = [
        {"name": n, "port": p, "protocol": proto} for n, p, proto in (ports or [("", 80, "TCP")])
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
        "spec": body,
    }


def headless(
    name: str, *, ns: str = "default", ports: list[tuple[str, int, str]] | None = None, **spec: Any
) -> JSON:
    return service(name, "None", ns=ns, ports=ports, **spec)


def endpoint(
    ip: str,
    pod: str = "",
    *,
    ready: bool = True,
    terminating: bool = False,
    hostname: str = "",
    ns: str = "default",
) -> JSON:
    ep: JSON = {
        "addresses": [ip],
        "conditions": {"ready": ready, "serving": ready, "terminating": terminating},
    }
    if pod:
        ep["targetRef"] = {"kind": "Pod", "namespace": ns, "name": pod, "uid": f"uid-{pod}"}
    if hostname:
        ep["hostname"] = hostname
    return ep


def endpoint_slice(
    svc: str, name: str, endpoints: list[JSON], ports: list[tuple[str, int, str]], *, ns: str = "default"
) -> JSON:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": "1",
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
    }


WEB = service("web", "127.96.0.10", ports=[("http", 80, "TCP"), ("dns", 53, "UDP")])
API = service("api", "127.96.0.11", ns="shop", ports=[("", 8080, "TCP")])
DUAL = service("dual", "127.96.0.12", clusterIPs=["127.96.0.12", "fd00::12"], ipFamilies=["IPv4", "IPv6"])
NOT_ALLOCATED = service("pending", None)
# Headless: three pods of one node (same address, each with its own host port), one not ready.
DB = headless("db", ports=[("pg", 5432, "TCP")])
DB_SLICES = [
    endpoint_slice("db", "db-aaaaa", [endpoint("127.0.0.1", "db-0")], [("pg", 20001, "TCP")]),
    endpoint_slice("db", "db-bbbbb", [endpoint("127.0.0.1", "db-1")], [("pg", 20002, "TCP")]),
    endpoint_slice(
        "db", "db-ccccc", [endpoint("127.0.0.2", "db-2", hostname="primary")], [("pg", 20003, "TCP")]
    ),
    endpoint_slice("db", "db-ddddd", [endpoint("127.0.0.9", "db-3", ready=False)], [("pg", 20004, "TCP")]),
]
EMPTY = headless("empty", ports=[("pg", 5432, "TCP")])
EMPTY_SLICES = [
    endpoint_slice("empty", "empty-aaaaa", [endpoint("127.0.0.3", "e-0", ready=False)], [("pg", 1, "TCP")])
]
EAGER = headless("eager", ports=[("pg", 5432, "TCP")], publishNotReadyAddresses=True)
EAGER_SLICES = [
    endpoint_slice("eager", "eager-aaaaa", [endpoint("127.0.0.4", "g-0", ready=False)], [("pg", 2, "TCP")])
]
PORTLESS = headless("bare", ports=None)
PORTLESS["spec"]["ports"] = []
PORTLESS_SLICES = [endpoint_slice("bare", "bare-aaaaa", [endpoint("127.0.0.5", "b-0")], [])]
EXTERNAL = {
    "metadata": {"name": "ext", "namespace": "default", "resourceVersion": "1"},
    "spec": {"type": "ExternalName", "externalName": "www.example.com."},
}
ALIAS = {
    "metadata": {"name": "alias", "namespace": "default", "resourceVersion": "1"},
    "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"},
}

ZONE = build_zone(
    [WEB, API, DUAL, NOT_ALLOCATED, DB, EMPTY, EAGER, PORTLESS, EXTERNAL, ALIAS],
    DB_SLICES + EMPTY_SLICES + EAGER_SLICES + PORTLESS_SLICES,
    serial=7,
    nameserver_ip="127.0.0.1",
)
SOA = Record("cluster.local.", "SOA", Soa("ns.dns.cluster.local.", "hostmaster.cluster.local.", 7))


def data(answer: Answer) -> list[Any]:
    return [r.data for r in answer.answers]


# ------------------------------------------------------------------------------------------------ positive

POSITIVE = [
    # (question, type, expected answer data)
    ("web.default.svc.cluster.local", "A", ["127.96.0.10"]),
    ("web.default.svc.cluster.local.", "A", ["127.96.0.10"]),
    ("api.shop.svc.cluster.local", "A", ["127.96.0.11"]),
    ("dual.default.svc.cluster.local", "A", ["127.96.0.12"]),
    ("dual.default.svc.cluster.local", "AAAA", ["fd00::12"]),
    ("web.default.svc.cluster.local", "ANY", ["127.96.0.10"]),
    # SRV of a ClusterIP Service: the Service port, the Service name as target
    ("_http._tcp.web.default.svc.cluster.local", "SRV", [Srv(0, 100, 80, "web.default.svc.cluster.local.")]),
    ("_dns._udp.web.default.svc.cluster.local", "SRV", [Srv(0, 100, 53, "web.default.svc.cluster.local.")]),
    # SRV for the bare name: every port (also unnamed ones), weight shared as CoreDNS does
    (
        "web.default.svc.cluster.local",
        "SRV",
        [Srv(0, 50, 80, "web.default.svc.cluster.local."), Srv(0, 50, 53, "web.default.svc.cluster.local.")],
    ),
    ("api.shop.svc.cluster.local", "SRV", [Srv(0, 100, 8080, "api.shop.svc.cluster.local.")]),
    # headless: ready endpoint addresses (deduplicated: pods of one node share its address)
    ("db.default.svc.cluster.local", "A", ["127.0.0.1", "127.0.0.2"]),
    # headless SRV: one per ready endpoint, the endpoint's own port, named by hostname or pod name
    (
        "_pg._tcp.db.default.svc.cluster.local",
        "SRV",
        [
            Srv(0, 33, 20001, "db-0.db.default.svc.cluster.local."),
            Srv(0, 33, 20002, "db-1.db.default.svc.cluster.local."),
            Srv(0, 33, 20003, "primary.db.default.svc.cluster.local."),
        ],
    ),
    ("db-1.db.default.svc.cluster.local", "A", ["127.0.0.1"]),
    ("primary.db.default.svc.cluster.local", "A", ["127.0.0.2"]),
    ("eager.default.svc.cluster.local", "A", ["127.0.0.4"]),
    ("bare.default.svc.cluster.local", "A", ["127.0.0.5"]),
    ("b-0.bare.default.svc.cluster.local", "A", ["127.0.0.5"]),
    # ExternalName: a CNAME whatever the type; an in-zone target is chased
    ("ext.default.svc.cluster.local", "A", ["www.example.com."]),
    ("ext.default.svc.cluster.local", "CNAME", ["www.example.com."]),
    ("alias.default.svc.cluster.local", "A", ["web.default.svc.cluster.local.", "127.96.0.10"]),
    # reverse lookup of a ClusterIP
    ("10.0.96.127.in-addr.arpa", "PTR", ["web.default.svc.cluster.local."]),
    # pod records (deprecated in the spec, still required)
    ("127-0-0-42.default.pod.cluster.local", "A", ["127.0.0.42"]),
    ("dns-version.cluster.local", "TXT", ["1.0.1"]),
    ("cluster.local", "SOA", [SOA.data]),
    ("cluster.local", "NS", ["ns.dns.cluster.local."]),
    ("ns.dns.cluster.local", "A", ["127.0.0.1"]),
    # convenience short names
    ("web.default", "A", ["127.96.0.10"]),
    ("web.default.svc", "A", ["127.96.0.10"]),
    ("_http._tcp.web.default", "SRV", [Srv(0, 100, 80, "web.default.svc.cluster.local.")]),
    ("db-0.db.default", "A", ["127.0.0.1"]),
]


@pytest.mark.parametrize(("qname", "qtype", "expected"), POSITIVE)
def test_positive_answers(qname: str, qtype: str, expected: list[Any]) -> None:
    answer = ZONE.answer(qname, qtype)
    assert answer.rcode is Rcode.NOERROR
    assert data(answer) == expected
    assert all(r.ttl == TTL for r in answer.answers)
    # The owner of the direct answer is the question as asked, absolute.
    assert answer.answers[0].name == qname.rstrip(".") + "."


def test_answers_are_case_insensitive_and_echo_the_question() -> None:
    answer = ZONE.answer("WeB.DeFault.SVC.Cluster.LOCAL.", "a")
    assert answer.rcode is Rcode.NOERROR
    assert answer.answers == (Record("WeB.DeFault.SVC.Cluster.LOCAL.", "A", "127.96.0.10"),)
    srv = ZONE.answer("_HTTP._TCP.web.default.svc.cluster.local", "SRV")
    assert data(srv) == [Srv(0, 100, 80, "web.default.svc.cluster.local.")]


def test_srv_additional_section_carries_target_addresses() -> None:
    cluster = ZONE.answer("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert cluster.additional == (Record("web.default.svc.cluster.local.", "A", "127.96.0.10"),)
    headless_srv = ZONE.answer("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert {(r.name, r.data) for r in headless_srv.additional} == {
        ("db-0.db.default.svc.cluster.local.", "127.0.0.1"),
        ("db-1.db.default.svc.cluster.local.", "127.0.0.1"),
        ("primary.db.default.svc.cluster.local.", "127.0.0.2"),
    }


def test_headless_excludes_terminating_and_not_ready_endpoints() -> None:
    slices = [
        endpoint_slice(
            "db",
            "db-aaaaa",
            [endpoint("127.0.0.1", "db-0"), endpoint("127.0.0.7", "db-old", ready=False, terminating=True)],
            [("pg", 20001, "TCP")],
        )
    ]
    zone = build_zone([DB], slices)
    assert data(zone.answer("db.default.svc.cluster.local", "A")) == ["127.0.0.1"]
    assert zone.answer("db-old.db.default.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN


# ------------------------------------------------------------------------------------------------ negative

NEGATIVE = [
    # (question, type, rcode, SOA in authority)
    ("nope.default.svc.cluster.local", "A", Rcode.NXDOMAIN, True),
    ("web.nowhere.svc.cluster.local", "A", Rcode.NXDOMAIN, True),
    ("nowhere.svc.cluster.local", "A", Rcode.NXDOMAIN, True),
    ("pending.default.svc.cluster.local", "A", Rcode.NXDOMAIN, True),  # no ClusterIP allocated yet
    ("empty.default.svc.cluster.local", "A", Rcode.NXDOMAIN, True),  # headless, nothing ready (the spec)
    ("_https._tcp.web.default.svc.cluster.local", "SRV", Rcode.NXDOMAIN, True),
    ("_http._udp.web.default.svc.cluster.local", "SRV", Rcode.NXDOMAIN, True),
    ("db-3.db.default.svc.cluster.local", "A", Rcode.NXDOMAIN, True),  # endpoint not ready
    ("x.web.default.svc.cluster.local", "A", Rcode.NXDOMAIN, True),  # no endpoint names for ClusterIP
    ("a.b.c.d.e.f.svc.cluster.local", "A", Rcode.NXDOMAIN, True),
    ("300-0-0-1.default.pod.cluster.local", "A", Rcode.NXDOMAIN, True),
    ("something.cluster.local", "A", Rcode.NXDOMAIN, True),
    # names that exist without records of the asked type: NODATA
    ("web.default.svc.cluster.local", "AAAA", Rcode.NOERROR, True),
    ("web.default.svc.cluster.local", "MX", Rcode.NOERROR, True),
    ("_http._tcp.web.default.svc.cluster.local", "A", Rcode.NOERROR, True),
    ("default.svc.cluster.local", "A", Rcode.NOERROR, True),
    ("svc.cluster.local", "A", Rcode.NOERROR, True),
    ("cluster.local", "A", Rcode.NOERROR, True),
    ("bare.default.svc.cluster.local", "SRV", Rcode.NOERROR, True),  # headless without ports
    # outside the zone: not ours to answer
    ("example.com", "A", Rcode.REFUSED, False),
    ("www.google.com.", "AAAA", Rcode.REFUSED, False),
    ("local", "A", Rcode.REFUSED, False),
    (".", "NS", Rcode.REFUSED, False),
    ("nope.default", "A", Rcode.REFUSED, False),  # a short form that names nothing is just outside
    ("nope.default.svc", "A", Rcode.REFUSED, False),
    ("default.svc", "A", Rcode.REFUSED, False),
    ("1.0.0.127.in-addr.arpa", "PTR", Rcode.REFUSED, False),  # not a ClusterIP
]


@pytest.mark.parametrize(("qname", "qtype", "rcode", "soa"), NEGATIVE)
def test_negative_answers(qname: str, qtype: str, rcode: Rcode, soa: bool) -> None:
    answer = ZONE.answer(qname, qtype)
    assert answer.rcode is rcode
    assert answer.answers == ()
    assert answer.authority == ((SOA,) if soa else ())
    assert answer.authoritative is (rcode is not Rcode.REFUSED)


def test_endpoint_labels_are_single_dns_labels() -> None:
    slices = [endpoint_slice("db", "db-a", [endpoint("127.0.0.1", "Web.V2_x")], [("pg", 1, "TCP")])]
    zone = build_zone([DB], slices)
    assert data(zone.answer("_pg._tcp.db.default.svc.cluster.local", "SRV")) == [
        Srv(0, 100, 1, "web-v2-x.db.default.svc.cluster.local.")
    ]
    no_pod = [endpoint_slice("db", "db-a", [endpoint("127.0.0.8")], [("pg", 1, "TCP")])]
    zone = build_zone([DB], no_pod)
    assert data(zone.answer("127-0-0-8.db.default.svc.cluster.local", "A")) == ["127.0.0.8"]


def test_cname_loop_terminates() -> None:
    loop_a = {
        "metadata": {"name": "a", "namespace": "x"},
        "spec": {"type": "ExternalName", "externalName": "b.x.svc.cluster.local"},
    }
    loop_b = {
        "metadata": {"name": "b", "namespace": "x"},
        "spec": {"type": "ExternalName", "externalName": "a.x.svc.cluster.local"},
    }
    answer = build_zone([loop_a, loop_b], []).answer("a.x.svc.cluster.local", "A")
    assert answer.rcode is Rcode.NOERROR
    assert 2 <= len(answer.answers) <= 10
    assert {r.rtype for r in answer.answers} == {"CNAME"}


# ------------------------------------------------------------------------------------------------ property

names = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@st.composite
def service_sets(draw: st.DrawFn) -> list[JSON]:
    keys = draw(
        st.lists(
            st.tuples(names, st.sampled_from(["default", "shop", "kube-system"])), max_size=30, unique=True
        )
    )
    ips = draw(st.lists(st.integers(0, 2**20 - 1), min_size=len(keys), max_size=len(keys), unique=True))
    result = []
    for (name, ns), offset in zip(keys, ips, strict=True):
        ip = f"127.{96 + (offset >> 16)}.{(offset >> 8) & 255}.{offset & 255}"
        result.append(service(name, ip, ns=ns, ports=[("http", 80, "TCP")]))
    extras = draw(st.lists(st.tuples(names, st.booleans()), max_size=5))
    for name, is_headless in extras:  # noise: headless and ExternalName Services that must not interfere
        if is_headless:
            result.append(headless(f"h-{name}", ns="default"))
        else:
            result.append(
                {
                    "metadata": {"name": f"x-{name}", "namespace": "shop"},
                    "spec": {"type": "ExternalName", "externalName": "example.com"},
                }
            )
    return result


@settings(max_examples=100, deadline=None)
@given(service_sets(), st.booleans())
def test_every_cluster_ip_service_resolves_to_its_ip(services: list[JSON], upper: bool) -> None:
    zone = build_zone(services, [])
    for svc in services:
        spec = svc["spec"]
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            continue
        meta = svc["metadata"]
        qname = f"{meta['name']}.{meta['namespace']}.svc.cluster.local"
        answer = zone.answer(qname.upper() if upper else qname, "A")
        assert answer.rcode is Rcode.NOERROR
        assert data(answer) == [spec["clusterIP"]]
        srv = zone.answer(f"_http._tcp.{qname}", "SRV")
        assert data(srv) == [Srv(0, 100, 80, f"{qname}.")]


# ------------------------------------------------------------------------------------------------ wire


def ask(zone: Zone, qname: str, qtype: str = "A", *, udp: bool = True, edns: int | None = None) -> DNSRecord:
    request = DNSRecord.question(qname, qtype)
    if edns is not None:
        request.add_ar(EDNS0(udp_len=edns))
    reply = respond(zone, bytes(request.pack()), udp=udp)
    assert reply is not None
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == request.header.id
    return parsed


def test_wire_answer_flags_and_records() -> None:
    reply = ask(ZONE, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert reply.header.qr == 1 and reply.header.aa == 1 and reply.header.ra == 0
    assert reply.header.rcode == RCODE.NOERROR
    assert sorted(str(rr.rdata) for rr in reply.rr) == [
        "0 33 20001 db-0.db.default.svc.cluster.local.",
        "0 33 20002 db-1.db.default.svc.cluster.local.",
        "0 33 20003 primary.db.default.svc.cluster.local.",
    ]
    assert all(rr.ttl == TTL for rr in reply.rr)
    assert {str(rr.rname) for rr in reply.ar} == {
        "db-0.db.default.svc.cluster.local.",
        "db-1.db.default.svc.cluster.local.",
        "primary.db.default.svc.cluster.local.",
    }
    nx = ask(ZONE, "nope.default.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and QTYPE[nx.auth[0].rtype] == "SOA"
    refused = ask(ZONE, "example.com")
    assert refused.header.rcode == RCODE.REFUSED and refused.header.aa == 0


def test_wire_truncates_large_udp_answers_but_not_tcp() -> None:
    slices = [
        endpoint_slice(
            "db",
            f"db-{i:05d}",
            [endpoint("127.0.0.1", f"pod-with-a-long-name-{i}")],
            [("pg", 20000 + i, "TCP")],
        )
        for i in range(40)
    ]
    zone = build_zone([DB], slices)
    small = ask(zone, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert (
        small.header.tc == 1
        and small.rr == []
        and str(small.q.qname) == "_pg._tcp.db.default.svc.cluster.local."
    )
    big = ask(zone, "_pg._tcp.db.default.svc.cluster.local", "SRV", edns=65000)
    assert big.header.tc == 0 and len(big.rr) == 40
    tcp = ask(zone, "_pg._tcp.db.default.svc.cluster.local", "SRV", udp=False)
    assert tcp.header.tc == 0 and len(tcp.rr) == 40


def test_wire_bad_packets() -> None:
    assert respond(ZONE, b"\x00", udp=True) is None  # too short to even carry an id
    garbage = respond(ZONE, b"\x12\x34" + b"\x01\x00\x00\x01" + b"\xff" * 12, udp=True)
    assert garbage is not None
    parsed = DNSRecord.parse(garbage)
    assert parsed.header.id == 0x1234 and parsed.header.rcode == RCODE.FORMERR
    response = DNSRecord.question("web.default.svc.cluster.local").reply()
    assert respond(ZONE, bytes(response.pack()), udp=True) is None  # never answer a response
    notify = DNSRecord.question("cluster.local", "SOA")
    notify.header.opcode = 4
    assert DNSRecord.parse(respond(ZONE, bytes(notify.pack()), udp=True) or b"").header.rcode == RCODE.NOTIMP


# ------------------------------------------------------------------------------------------------ updates


def test_server_update_rebuilds_only_what_changed() -> None:
    server = DnsServer("127.0.0.1", 0)
    server.update([WEB, API], [])
    first = server.zone
    assert data(first.answer("web.default.svc.cluster.local", "A")) == ["127.96.0.10"]
    server.update([WEB, API], [])
    assert server.zone is first  # nothing changed: same snapshot, same serial
    moved = service("web", "127.96.0.99", ports=[("http", 80, "TCP")], rv="2")
    server.update([moved, API], [])
    assert server.zone.serial == first.serial + 1
    assert data(server.zone.answer("web.default.svc.cluster.local", "A")) == ["127.96.0.99"]
    assert server.zone.services[("shop", "api")] is first.services[("shop", "api")]  # reused, not rebuilt
    server.update([API], [])
    assert server.zone.answer("web.default.svc.cluster.local", "A").rcode is Rcode.NXDOMAIN
    server.update([API, DB], DB_SLICES[:1])
    assert data(server.zone.answer("db.default.svc.cluster.local", "A")) == ["127.0.0.1"]
    changed = [
        dict(DB_SLICES[0], metadata={**DB_SLICES[0]["metadata"], "resourceVersion": "2"}),
        DB_SLICES[2],
    ]
    server.update([API, DB], changed)
    assert data(server.zone.answer("db.default.svc.cluster.local", "A")) == ["127.0.0.1", "127.0.0.2"]
