"""The node's DNS server: UDP and TCP on one address and port, answering the cluster zone.

IO and wire format only. Packets are parsed and built with **dnslib** (a small, well-kept pure-Python DNS
codec); what to answer comes from the pure zone in ``corral.proxy.dnszone``. The node glue calls
:meth:`DnsServer.update` with full snapshots of Services and EndpointSlices; a Service whose object and slices
did not change (same resourceVersions) keeps its already-built records, so an update with 1,000 Services of
which one changed rebuilds one. Each update swaps in a new immutable :class:`Zone`, so a question is always
answered from one consistent snapshot.

It is authoritative for ``cluster.local`` only and not a recursive resolver: names outside the zone get
REFUSED (a stub resolver then moves on to its next nameserver). UDP answers larger than the client's limit
(512 bytes, or its EDNS0 size) come back truncated with TC set, and the client retries over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any, cast

from dnslib import (
    AAAA,
    CNAME,
    EDNS0,
    NS,
    PTR,
    QTYPE,
    RR,
    SOA,
    SRV,
    TXT,
    A,
    DNSError,
    DNSHeader,
    DNSRecord,
)

from corral.proxy.backends import group_slices, service_key
from corral.proxy.dnszone import DOMAIN, Answer, Rcode, Record, ServiceRecord, Soa, Srv, Zone, service_record

log = logging.getLogger(__name__)

JSON = dict[str, Any]

UDP_DEFAULT_LIMIT = 512
EDNS_PAYLOAD = 1232  # the size the DNS flag day 2020 settled on: no IP fragmentation on common paths
TCP_IDLE_SECONDS = 10.0
BIND_ATTEMPTS = 20

_QUERY = 0


# ------------------------------------------------------------------------------------------------ wire format


def _rdata(record: Record) -> Any:
    data = record.data
    if isinstance(data, Srv):
        return SRV(data.priority, data.weight, data.port, data.target)
    if isinstance(data, Soa):
        return SOA(data.mname, data.rname, (data.serial, data.refresh, data.retry, data.expire, data.minimum))
    kinds = {"A": A, "AAAA": AAAA, "CNAME": CNAME, "NS": NS, "PTR": PTR, "TXT": TXT}
    return kinds[record.rtype](data)


def _rr(record: Record) -> Any:
    return RR(record.name, getattr(QTYPE, record.rtype), rdata=_rdata(record), ttl=record.ttl)


def _error_reply(data: bytes, rcode: Rcode) -> bytes | None:
    """A bare header answering an unparseable packet, when at least its id can be read."""
    if len(data) < 12:
        return None
    (ident,) = struct.unpack("!H", data[:2])
    return bytes(DNSRecord(DNSHeader(id=ident, qr=1, rcode=int(rcode))).pack())


def respond(zone: Zone, data: bytes, *, udp: bool) -> bytes | None:
    """The reply to one DNS message (None: send nothing). Pure apart from dnslib's codec."""
    try:
        request = DNSRecord.parse(data)
    except (DNSError, ValueError, IndexError, UnicodeDecodeError):
        return _error_reply(data, Rcode.FORMERR)
    if request.header.qr:
        return None  # a response, not a question: never answer it (reflection loops)
    header = DNSHeader(
        id=request.header.id, qr=1, aa=0, ra=0, rd=request.header.rd, opcode=request.header.opcode
    )
    reply = DNSRecord(header, questions=list(request.questions))
    opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
    answer: Answer
    if request.header.opcode != _QUERY:
        answer = Answer(Rcode.NOTIMP, authoritative=False)
    elif len(request.questions) != 1:
        answer = Answer(Rcode.FORMERR, authoritative=False)
    else:
        question = request.questions[0]
        if question.qclass not in (1, 255):  # IN, ANY
            answer = Answer(Rcode.REFUSED, authoritative=False)
        else:
            answer = zone.answer(str(question.qname), str(QTYPE.get(question.qtype)))
    header.rcode = int(answer.rcode)
    header.aa = 1 if answer.authoritative else 0
    for record in answer.answers:
        reply.add_answer(_rr(record))
    for record in answer.authority:
        reply.add_auth(_rr(record))
    for record in answer.additional:
        reply.add_ar(_rr(record))
    if opt is not None:
        reply.add_ar(EDNS0(udp_len=EDNS_PAYLOAD))
    packed = bytes(reply.pack())
    limit = max(UDP_DEFAULT_LIMIT, min(int(opt.rclass), 65535)) if opt is not None else UDP_DEFAULT_LIMIT
    if udp and len(packed) > limit:
        # Too big for this client over UDP: the question and the TC flag tell it to ask again over TCP.
        header.tc = 1
        truncated = DNSRecord(header, questions=list(request.questions))
        if opt is not None:
            truncated.add_ar(EDNS0(udp_len=EDNS_PAYLOAD))
        packed = bytes(truncated.pack())
    return packed


# ------------------------------------------------------------------------------------------------ server


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Typed as BaseTransport; Python 3.11's selector transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            reply = respond(self.server.zone, data, udp=True)
        except Exception:  # one bad packet must not stop the server
            log.exception("dns: failed to answer a UDP query from %s", addr)
            reply = _error_reply(data, Rcode.SERVFAIL)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("dns: UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket bound to the same port; with port 0 the UDP socket picks it and TCP follows,
    and a port already taken for TCP means trying again with another."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last_error: OSError | None = None
    for _ in range(BIND_ATTEMPTS if port == 0 else 1):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind((host, port))
            chosen = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((host, chosen))
            except OSError as exc:
                tcp.close()
                raise exc
        except OSError as exc:
            udp.close()
            last_error = exc
            if port == 0 and exc.errno == errno.EADDRINUSE:
                continue
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        return udp, tcp
    assert last_error is not None
    raise last_error


def _fingerprint(service: Mapping[str, Any], slices: Sequence[Mapping[str, Any]]) -> tuple[Any, ...] | None:
    """What a Service's records depend on, by resourceVersion; None when a version is missing (rebuild)."""
    versions = [str((service.get("metadata") or {}).get("resourceVersion") or "")]
    for endpoint_slice in slices:
        meta = endpoint_slice.get("metadata") or {}
        versions.append(f"{meta.get('name')}@{meta.get('resourceVersion') or ''}")
    if any(v == "" or v.endswith("@") for v in versions):
        return None
    return (versions[0], tuple(sorted(versions[1:])))


class DnsServer:
    """One node's cluster DNS server: ``start()``, ``update(services, slices)`` on changes, ``stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, domain: str = DOMAIN) -> None:
        self.host = host
        self.port = port
        self.domain = domain
        self._nameserver_ip = host if host not in ("0.0.0.0", "::", "") else None
        self.zone = Zone(domain=domain, nameserver_ip=self._nameserver_ip)
        self._built: dict[str, tuple[tuple[Any, ...] | None, ServiceRecord | None]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _UdpProtocol | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._bound_port = 0

    @property
    def bound_port(self) -> int:
        """The port UDP and TCP listen on (the real one when constructed with port 0); 0 before start()."""
        return self._bound_port

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._bound_port}"

    async def start(self) -> None:
        udp_sock, tcp_sock = _bind_pair(self.host, self.port)
        self._bound_port = int(udp_sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=udp_sock
            )
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock, backlog=128)
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        self._udp, self._udp_protocol = transport, protocol
        log.info("dns listening on %s", self.address)

    async def stop(self) -> None:
        if self._udp is not None and self._udp_protocol is not None:
            self._udp.close()
            # The socket closes on a later loop turn; wait for it so the port is free when stop() returns.
            await self._udp_protocol.closed
            self._udp = self._udp_protocol = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._connections):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None

    def update(self, services: Sequence[Mapping[str, Any]], slices: Sequence[Mapping[str, Any]]) -> None:
        """Take a full snapshot; only Services whose object or slices changed are rebuilt."""
        grouped = group_slices(slices)
        built: dict[str, tuple[tuple[Any, ...] | None, ServiceRecord | None]] = {}
        changed = False
        for service in services:
            key = service_key(service)
            own = grouped.get(key, [])
            fingerprint = _fingerprint(service, own)
            previous = self._built.get(key)
            if fingerprint is not None and previous is not None and previous[0] == fingerprint:
                built[key] = previous
                continue
            record = service_record(service, own)
            built[key] = (fingerprint, record)
            changed = changed or previous is None or previous[1] != record
        changed = changed or built.keys() != self._built.keys()
        self._built = built
        if changed:
            self.zone = Zone(
                (record for _, record in built.values() if record is not None),
                domain=self.domain,
                serial=self.zone.serial + 1,
                nameserver_ip=self._nameserver_ip,
            )

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """RFC 7766: length-prefixed messages, several per connection, closed after an idle while."""
        self._connections.add(writer)
        try:
            while True:
                try:
                    size_bytes = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                    (size,) = struct.unpack("!H", size_bytes)
                    data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE_SECONDS)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                try:
                    reply = respond(self.zone, data, udp=False)
                except Exception:
                    log.exception("dns: failed to answer a TCP query")
                    reply = _error_reply(data, Rcode.SERVFAIL)
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
