"""The DNS server (corral.proxy.dns.DnsServer) on real sockets: 127.0.0.1, port 0, UDP and TCP.

Queries go out as raw datagrams and length-prefixed TCP messages built with dnslib, and through ``dig`` when
it is installed (Debian's ``dnsutils``), so a real resolver's view is checked too.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from corral.proxy.dns import DnsServer

JSON = dict[str, Any]
TIMEOUT = 5.0


def service(
    name: str, ip: str, ports: list[tuple[str, int, str]], ns: str = "default", rv: str = "1"
) -> JSON:
    return {
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
        "spec": {
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ports": [{"name": n, "port": p, "protocol": proto} for n, p, proto in ports],
        },
    }


def pod_slice(svc: str, pod: str, host_port: int, *, ready: bool = True) -> JSON:
    return {
        "metadata": {
            "name": f"{svc}-{pod[-5:]}",
            "namespace": "default",
            "resourceVersion": "1",
            "labels": {"kubernetes.io/service-name": svc},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "targetRef": {"kind": "Pod", "namespace": "default", "name": pod, "uid": f"uid-{pod}"},
            }
        ],
        "ports": [{"name": "http", "port": host_port, "protocol": "TCP"}],
    }


WEB = service("web", "127.96.0.10", [("http", 80, "TCP")])
HEADLESS = service("hl", "None", [("http", 80, "TCP")])
SLICES = [pod_slice("hl", "hl-aaaaa", 20001), pod_slice("hl", "hl-bbbbb", 20002)]


@pytest.fixture
async def dns(caplog: pytest.LogCaptureFixture) -> AsyncIterator[DnsServer]:
    caplog.set_level(logging.INFO, logger="corral.proxy.dns")
    server = DnsServer("127.0.0.1", 0)
    await server.start()
    server.update([WEB, HEADLESS], SLICES)
    try:
        yield server
    finally:
        await server.stop()


async def udp_query(port: int, qname: str, qtype: str = "A") -> DNSRecord:
    request = DNSRecord.question(qname, qtype)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, bytes(request.pack()))
        data = await asyncio.wait_for(loop.sock_recv(sock, 65535), TIMEOUT)
    reply = DNSRecord.parse(data)
    assert reply.header.id == request.header.id
    return reply


async def tcp_queries(port: int, *questions: tuple[str, str]) -> list[DNSRecord]:
    """Several questions on one TCP connection, each length-prefixed (RFC 7766)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    try:
        requests = [DNSRecord.question(name, qtype) for name, qtype in questions]
        for request in requests:
            packed = bytes(request.pack())
            writer.write(struct.pack("!H", len(packed)) + packed)
        await writer.drain()
        replies = []
        for request in requests:
            (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), TIMEOUT))
            reply = DNSRecord.parse(await asyncio.wait_for(reader.readexactly(size), TIMEOUT))
            assert reply.header.id == request.header.id
            replies.append(reply)
        return replies
    finally:
        writer.close()
        await writer.wait_closed()


async def test_start_logs_one_line_and_binds_udp_and_tcp_on_one_port(
    dns: DnsServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert dns.bound_port > 0
    started = caplog.get_records("setup")  # the fixture started the server
    lines = [r.getMessage() for r in started if r.name == "corral.proxy.dns" and r.levelno == logging.INFO]
    assert lines == [f"dns listening on 127.0.0.1:{dns.bound_port}"]
    # Both protocols are really bound there: nobody else can take the port for either.
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe, pytest.raises(OSError):
            probe.bind(("127.0.0.1", dns.bound_port))


async def test_udp_answers(dns: DnsServer) -> None:
    reply = await udp_query(dns.bound_port, "web.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR and reply.header.aa == 1
    assert [(str(rr.rname), QTYPE[rr.rtype], str(rr.rdata), rr.ttl) for rr in reply.rr] == [
        ("web.default.svc.cluster.local.", "A", "127.96.0.10", 5)
    ]
    srv = await udp_query(dns.bound_port, "_http._tcp.hl.default.svc.cluster.local", "SRV")
    assert sorted(str(rr.rdata) for rr in srv.rr) == [
        "0 50 20001 hl-aaaaa.hl.default.svc.cluster.local.",
        "0 50 20002 hl-bbbbb.hl.default.svc.cluster.local.",
    ]
    headless_a = await udp_query(dns.bound_port, "hl.default.svc.cluster.local")
    assert [str(rr.rdata) for rr in headless_a.rr] == ["127.0.0.1"]
    nx = await udp_query(dns.bound_port, "nope.default.svc.cluster.local")
    assert nx.header.rcode == RCODE.NXDOMAIN and QTYPE[nx.auth[0].rtype] == "SOA"
    refused = await udp_query(dns.bound_port, "example.com")
    assert refused.header.rcode == RCODE.REFUSED and refused.rr == []


async def test_tcp_answers_several_questions_per_connection(dns: DnsServer) -> None:
    a, srv, nx = await tcp_queries(
        dns.bound_port,
        ("web.default.svc.cluster.local", "A"),
        ("_http._tcp.web.default.svc.cluster.local", "SRV"),
        ("nope.default.svc.cluster.local", "A"),
    )
    assert [str(rr.rdata) for rr in a.rr] == ["127.96.0.10"]
    assert [str(rr.rdata) for rr in srv.rr] == ["0 100 80 web.default.svc.cluster.local."]
    assert nx.header.rcode == RCODE.NXDOMAIN


async def test_updates_are_seen_by_the_next_query(dns: DnsServer) -> None:
    moved = service("web", "127.96.0.77", [("http", 80, "TCP")], rv="2")
    dns.update([moved], [pod_slice("hl", "hl-aaaaa", 20001)])
    reply = await udp_query(dns.bound_port, "web.default.svc.cluster.local")
    assert [str(rr.rdata) for rr in reply.rr] == ["127.96.0.77"]
    gone = await udp_query(dns.bound_port, "hl.default.svc.cluster.local")
    assert gone.header.rcode == RCODE.NXDOMAIN


async def test_garbage_does_not_stop_the_server(dns: DnsServer) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", dns.bound_port))
        await loop.sock_sendall(sock, b"\xab\xcd" + b"\xff" * 30)
        data = await asyncio.wait_for(loop.sock_recv(sock, 65535), TIMEOUT)
    assert DNSRecord.parse(data).header.rcode == RCODE.FORMERR
    _, writer = await asyncio.open_connection("127.0.0.1", dns.bound_port)
    writer.write(b"\x00\x05abc")  # a length that promises more than ever comes, then the peer goes away
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    reply = await udp_query(dns.bound_port, "web.default.svc.cluster.local")
    assert reply.header.rcode == RCODE.NOERROR


async def test_stop_releases_the_port_and_a_taken_port_is_an_error() -> None:
    first = DnsServer("127.0.0.1", 0)
    await first.start()
    port = first.bound_port
    second = DnsServer("127.0.0.1", port)
    with pytest.raises(OSError):
        await second.start()
    await first.stop()
    again = DnsServer("127.0.0.1", port)
    await again.start()
    try:
        assert again.bound_port == port
    finally:
        await again.stop()


async def dig(port: int, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig", "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (apt-get install dnsutils)")
async def test_dig(dns: DnsServer) -> None:
    assert (await dig(dns.bound_port, "+short", "web.default.svc.cluster.local")).split() == ["127.96.0.10"]
    assert (await dig(dns.bound_port, "+short", "+tcp", "web.default.svc.cluster.local")).split() == [
        "127.96.0.10"
    ]
    srv = await dig(dns.bound_port, "+short", "SRV", "_http._tcp.web.default.svc.cluster.local")
    assert srv.strip() == "0 100 80 web.default.svc.cluster.local."
    headless_srv = await dig(dns.bound_port, "+short", "SRV", "hl.default.svc.cluster.local")
    assert sorted(headless_srv.strip().splitlines()) == [
        "0 50 20001 hl-aaaaa.hl.default.svc.cluster.local.",
        "0 50 20002 hl-bbbbb.hl.default.svc.cluster.local.",
    ]
    assert "status: NXDOMAIN" in await dig(dns.bound_port, "nope.default.svc.cluster.local")
    assert "status: REFUSED" in await dig(dns.bound_port, "example.com")


@pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed (apt-get install dnsutils)")
async def test_dig_retries_a_truncated_answer_over_tcp(dns: DnsServer) -> None:
    slices = [pod_slice("hl", f"hl-with-a-rather-long-pod-name-{i:05d}", 20000 + i) for i in range(60)]
    dns.update([WEB, HEADLESS], slices)
    out = await dig(dns.bound_port, "+noedns", "SRV", "_http._tcp.hl.default.svc.cluster.local")
    assert "Truncated, retrying in TCP mode" in out
    assert "ANSWER: 60" in out
