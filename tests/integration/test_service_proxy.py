"""The service proxy on real loopback sockets: spread, retry, drain, UDP, NodePort, bind errors, scale.

Backends are small asyncio HTTP servers started in the test on port 0; the proxy is fed hand-built Service
and EndpointSlice dicts shaped as the API serves them. ClusterIPs are random addresses in 127.96.0.0/12 so
that runs in parallel do not collide; ports are taken free from the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest

from corral.proxy.service_proxy import ServiceProxy
from corral.proxy.table import Frontend, Problem
from corral.proxy.tcp import TcpOptions
from corral.proxy.udp import UdpOptions

JSON = dict[str, Any]


# ---------------------------------------------------------------------------------------------- fixtures


def cluster_ip() -> str:
    return f"127.{random.randint(96, 111)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service(
    name: str,
    ip: str,
    port: int,
    *,
    kind: str = "ClusterIP",
    protocol: str = "TCP",
    node_port: int | None = None,
    annotations: dict[str, str] | None = None,
    namespace: str = "default",
) -> JSON:
    spec_port: JSON = {"name": "http", "port": port, "protocol": protocol, "targetPort": port}
    if node_port is not None:
        spec_port["nodePort"] = node_port
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {"type": kind, "clusterIP": ip, "clusterIPs": [ip], "ports": [spec_port]},
    }


def endpoint_slice(
    service_name: str,
    addresses: list[tuple[str, int]],
    *,
    protocol: str = "TCP",
    namespace: str = "default",
    suffix: str = "",
) -> list[JSON]:
    """One slice per distinct port, as the endpoints controller writes them for Corral's per-pod ports."""
    slices = []
    for i, (ip, port) in enumerate(addresses):
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{service_name}-{suffix}{i}",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": service_name},
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [ip],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "targetRef": {"kind": "Pod", "namespace": namespace, "name": f"pod-{port}"},
                    }
                ],
                "ports": [{"name": "http", "port": port, "protocol": protocol}],
            }
        )
    return slices


class HttpBackend:
    """A tiny HTTP/1.1 server answering every request with its name; ``/slow`` waits for ``release``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: asyncio.AbstractServer | None = None
        self.port = 0
        self.hits = 0
        self.received = 0
        self.release = asyncio.Event()
        self.hang = False
        self.dead = False
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def start(self) -> HttpBackend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if self.dead:
                    # Accepted just before the kill, handled after it: a dead process answers nothing.
                    writer.transport.abort()
                    return
                self.received += 1
                line = head.split(b"\r\n", 1)[0].decode()
                _method, path, _ = line.split(" ")
                length = 0
                for header in head.split(b"\r\n")[1:]:
                    if header.lower().startswith(b"content-length:"):
                        length = int(header.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if self.hang:
                    await asyncio.Event().wait()  # never answers; the test kills us
                if path == "/slow":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"s" * 50000)
                    await writer.drain()
                    await self.release.wait()
                    writer.write(b"s" * 50000)
                    await writer.drain()
                    self.hits += 1
                    continue
                body = self.name.encode()
                self.hits += 1
                close = b"connection: close" in head.lower()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (len(body), b"Connection: close\r\n" if close else b"", body)
                )
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    def kill(self) -> None:
        """Like a SIGKILL: stop listening and reset every open connection."""
        assert self.server is not None
        self.dead = True
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()

    async def stop(self) -> None:
        if self.server is not None:
            self.kill()
            await asyncio.sleep(0)


async def http_get(
    ip: str, port: int, path: str = "/", method: str = "GET", timeout: float = 10.0
) -> tuple[int, bytes]:
    """One request on a new connection (``Connection: close``); raises on any transport failure."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(ip, port)
        try:
            body = b"x" if method == "POST" else b""
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = next(
                int(h.split(b":", 1)[1])
                for h in head.split(b"\r\n")
                if h.lower().startswith(b"content-length:")
            )
            return status, await reader.readexactly(length)
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_backends() -> AsyncIterator[list[HttpBackend]]:
    started = [await HttpBackend(name).start() for name in ("a", "b", "c")]
    try:
        yield started
    finally:
        for backend in started:
            await backend.stop()


@contextlib.asynccontextmanager
async def running_proxy() -> AsyncIterator[ServiceProxy]:
    errors: list[Problem] = []
    instance = ServiceProxy(
        ["127.0.0.1"],
        tcp=TcpOptions(connect_timeout=1.0),
        udp=UdpOptions(idle_timeout=0.3, sweep_interval=0.05),
        on_error=errors.append,
        retry_interval=0.2,
    )
    instance.reported = errors  # type: ignore[attr-defined]
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
async def backends() -> AsyncIterator[list[HttpBackend]]:
    async with running_backends() as started:
        yield started


@pytest.fixture
async def proxy() -> AsyncIterator[ServiceProxy]:
    async with running_proxy() as instance:
        yield instance


async def load(ip: str, port: int, total: int, concurrency: int = 20) -> tuple[Counter[bytes], list[str]]:
    bodies: Counter[bytes] = Counter()
    failures: list[str] = []
    queue = iter(range(total))

    async def worker() -> None:
        for _ in queue:
            try:
                status, body = await http_get(ip, port)
                if status != 200:
                    failures.append(f"status {status}")
                else:
                    bodies[body] += 1
            except Exception as exc:
                failures.append(repr(exc))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return bodies, failures


# ---------------------------------------------------------------------------------------------- tests


async def test_requests_spread_evenly_over_three_backends(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    proxy.update([service("web", ip, port)], endpoint_slice("web", [b.address for b in backends]))
    await proxy.settle()
    bodies, failures = await load(ip, port, 3000, concurrency=30)
    assert failures == []
    assert sum(bodies.values()) == 3000
    for name in (b"a", b"b", b"c"):
        assert 0.23 * 3000 <= bodies[name] <= 0.43 * 3000, bodies
    stats = proxy.stats()["services"]["default/web"]
    assert stats["connections_total"] == 3000
    assert stats["requests"] == 3000
    assert stats["connect_errors"] == 0
    await wait_for(lambda: proxy.stats()["services"]["default/web"]["connections_active"] == 0)
    per_endpoint = proxy.stats()["services"]["default/web"]["endpoints"]
    assert sorted(e["requests"] for e in per_endpoint.values()) == sorted(bodies.values())
    assert sum(e["bytes_out"] for e in per_endpoint.values()) == stats["bytes_out"] > 3000


async def test_least_connections_avoids_the_busy_backend(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    slow = backends[0]
    annotations = {"corral.dev/load-balancer": "least-connections"}
    proxy.update([service("lc", ip, port, annotations=annotations)], endpoint_slice("lc", [slow.address]))
    pending = asyncio.create_task(http_get(ip, port, "/slow"))
    await wait_for(lambda: slow.received == 1, what="slow request at the backend")
    proxy.update(
        [service("lc", ip, port, annotations=annotations)],
        endpoint_slice("lc", [b.address for b in backends]),
    )
    # One connection stays open on ``slow``: sequential requests all go to the idle backends.
    bodies, failures = await load(ip, port, 40, concurrency=1)
    assert failures == []
    assert bodies[b"a"] == 0 and bodies[b"b"] + bodies[b"c"] == 40
    slow.release.set()
    status, body = await pending
    assert status == 200 and len(body) == 100000


async def test_client_ip_affinity_keeps_a_client_on_one_backend(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    sticky = service("sticky", ip, port)
    sticky["spec"]["sessionAffinity"] = "ClientIP"
    proxy.update([sticky], endpoint_slice("sticky", [b.address for b in backends]))
    bodies, failures = await load(ip, port, 30, concurrency=3)
    assert failures == [] and len(bodies) == 1 and sum(bodies.values()) == 30
    # Without affinity the same client is spread again.
    proxy.update([service("sticky", ip, port)], endpoint_slice("sticky", [b.address for b in backends]))
    bodies, failures = await load(ip, port, 30, concurrency=3)
    assert failures == [] and set(bodies) == {b"a", b"b", b"c"}


async def test_connect_failure_moves_to_next_backend(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    proxy.update([service("web", ip, port)], endpoint_slice("web", [b.address for b in backends]))
    dead = backends[0]
    dead.kill()  # the table still lists it: connects are refused and the proxy must try the next one
    bodies, failures = await load(ip, port, 300, concurrency=10)
    assert failures == []
    assert bodies[b"a"] == 0 and bodies[b"b"] + bodies[b"c"] == 300
    assert proxy.stats()["services"]["default/web"]["connect_errors"] > 0


async def test_connect_timeout_moves_to_next_backend(backends: list[HttpBackend]) -> None:
    # A listener whose accept queue is full drops SYNs: connecting to it hangs, like an unreachable node.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    filler = socket.create_connection(blackhole.getsockname())
    instance = ServiceProxy(["127.0.0.1"], tcp=TcpOptions(connect_timeout=0.2))
    await instance.start()
    try:
        ip, port = cluster_ip(), free_port()
        addresses = [blackhole.getsockname(), backends[0].address]
        instance.update([service("web", ip, port)], endpoint_slice("web", addresses))
        started = time.monotonic()
        bodies, failures = await load(ip, port, 6, concurrency=1)
        assert failures == [] and bodies == Counter({b"a": 6})
        errors = instance.stats()["services"]["default/web"]["connect_errors"]
        # Only the first connection waits for the blackhole: after that failure the picker prefers the other.
        assert errors == 1
        assert time.monotonic() - started >= 0.2
    finally:
        await instance.stop()
        filler.close()
        blackhole.close()


async def test_backend_killed_under_load_gives_zero_failed_requests(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    proxy.update([service("web", ip, port)], endpoint_slice("web", [b.address for b in backends]))
    task = asyncio.create_task(load(ip, port, 1500, concurrency=20))
    await wait_for(lambda: backends[0].hits >= 100, what="traffic on the first backend")
    backends[0].kill()
    hits_at_kill = backends[0].hits
    bodies, failures = await task
    assert failures == []
    assert sum(bodies.values()) == 1500
    assert bodies[b"a"] <= hits_at_kill  # nothing answered by the killed backend after its death


async def test_in_flight_get_is_replayed_when_its_backend_dies(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    doomed, spare, _ = backends
    doomed.hang = True
    proxy.update([service("web", ip, port)], endpoint_slice("web", [doomed.address]))
    pending = asyncio.create_task(http_get(ip, port, "/"))
    await wait_for(lambda: doomed.received == 1, what="request at the doomed backend")
    proxy.update([service("web", ip, port)], endpoint_slice("web", [doomed.address, spare.address]))
    doomed.kill()  # reset before a single response byte
    assert await pending == (200, b"b")
    assert proxy.stats()["services"]["default/web"]["retries"] == 1


async def test_in_flight_post_is_not_replayed(proxy: ServiceProxy, backends: list[HttpBackend]) -> None:
    ip, port = cluster_ip(), free_port()
    doomed, spare, _ = backends
    doomed.hang = True
    proxy.update([service("web", ip, port)], endpoint_slice("web", [doomed.address]))
    pending = asyncio.create_task(http_get(ip, port, "/", method="POST"))
    await wait_for(lambda: doomed.received == 1, what="request at the doomed backend")
    proxy.update([service("web", ip, port)], endpoint_slice("web", [doomed.address, spare.address]))
    doomed.kill()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await pending
    assert spare.received == 0


async def test_removed_backend_drains_its_in_flight_response(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    old, new, _ = backends
    proxy.update([service("web", ip, port)], endpoint_slice("web", [old.address]))
    pending = asyncio.create_task(http_get(ip, port, "/slow"))
    await wait_for(lambda: old.received == 1, what="slow request at the old backend")
    proxy.update([service("web", ip, port)], endpoint_slice("web", [new.address]))
    bodies, failures = await load(ip, port, 30, concurrency=5)
    assert failures == [] and bodies == Counter({b"b": 30})
    assert not pending.done()
    old.release.set()
    status, body = await pending
    assert status == 200 and body == b"s" * 100000


async def test_service_removed_keeps_accepted_connections(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    slow = backends[0]
    proxy.update([service("web", ip, port)], endpoint_slice("web", [slow.address]))
    pending = asyncio.create_task(http_get(ip, port, "/slow"))
    await wait_for(lambda: slow.received == 1, what="slow request")
    proxy.update([], [])
    assert proxy.listening() == set()
    with pytest.raises(OSError):
        await http_get(ip, port)
    slow.release.set()
    assert (await pending)[1] == b"s" * 100000


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # asyncio's class does not subclass it

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.sendto(self.name + b":" + data, addr)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.replies.put_nowait(data)


async def test_udp_echo_through_the_proxy(proxy: ServiceProxy) -> None:
    loop = asyncio.get_running_loop()
    echoes = []
    for name in (b"u1", b"u2"):
        transport, _ = await loop.create_datagram_endpoint(
            lambda n=name: UdpEcho(n), local_addr=("127.0.0.1", 0)
        )
        echoes.append(transport)
    try:
        ip, port = cluster_ip(), free_port(socket.SOCK_DGRAM)
        addresses = [t.get_extra_info("sockname")[:2] for t in echoes]
        proxy.update(
            [service("dns", ip, port, protocol="UDP")], endpoint_slice("dns", addresses, protocol="UDP")
        )
        await proxy.settle()
        seen = set()
        for i in range(4):  # each client address is its own session; round-robin spreads sessions
            client_transport, client = await loop.create_datagram_endpoint(UdpClient, remote_addr=(ip, port))
            try:
                for j in range(3):
                    client_transport.sendto(b"ping%d-%d" % (i, j))
                    reply = await asyncio.wait_for(client.replies.get(), 5)
                    name, _, echoed = reply.partition(b":")
                    assert echoed == b"ping%d-%d" % (i, j)
                    seen.add(name)
            finally:
                client_transport.close()
        assert seen == {b"u1", b"u2"}
        stats = proxy.stats()["services"]["default/dns"]
        assert stats["datagrams_in"] == 12 and stats["datagrams_out"] == 12
        assert stats["connections_total"] == 4
        # Sessions end after the idle timeout (0.3 s in this fixture).
        await wait_for(lambda: proxy.stats()["services"]["default/dns"]["connections_active"] == 0)
    finally:
        for transport in echoes:
            transport.close()


async def test_udp_refused_backend_moves_to_next(proxy: ServiceProxy) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: UdpEcho(b"live"), local_addr=("127.0.0.1", 0))
    try:
        dead = ("127.0.0.1", free_port(socket.SOCK_DGRAM))
        live = transport.get_extra_info("sockname")[:2]
        ip, port = cluster_ip(), free_port(socket.SOCK_DGRAM)
        proxy.update(
            [service("dns", ip, port, protocol="UDP")], endpoint_slice("dns", [dead, live], protocol="UDP")
        )
        for i in range(4):
            client_transport, client = await loop.create_datagram_endpoint(UdpClient, remote_addr=(ip, port))
            try:
                client_transport.sendto(b"q%d" % i)
                assert await asyncio.wait_for(client.replies.get(), 5) == b"live:q%d" % i
            finally:
                client_transport.close()
        stats = proxy.stats()["services"]["default/dns"]
        assert stats["retries"] == 1 and stats["connect_errors"] >= 1  # then the dead one is skipped
    finally:
        transport.close()


async def test_node_port_listens_on_the_node_address(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port, node_port = cluster_ip(), free_port(), free_port()
    proxy.update(
        [service("np", ip, port, kind="NodePort", node_port=node_port)],
        endpoint_slice("np", [backends[0].address]),
    )
    assert Frontend("TCP", "127.0.0.1", node_port) in proxy.listening()
    assert await http_get("127.0.0.1", node_port) == (200, b"a")
    assert await http_get(ip, port) == (200, b"a")


async def test_load_balancer_listens_on_node_address_at_service_port(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port, node_port = cluster_ip(), free_port(), free_port()
    proxy.update(
        [service("lb", ip, port, kind="LoadBalancer", node_port=node_port)],
        endpoint_slice("lb", [backends[1].address]),
    )
    for address in ((ip, port), ("127.0.0.1", node_port), ("127.0.0.1", port)):
        assert await http_get(*address) == (200, b"b")


async def test_bind_failure_is_reported_and_other_services_work(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    try:
        ip1, ip2, port = cluster_ip(), cluster_ip(), free_port()
        services = [
            service("blocked", ip1, port, kind="NodePort", node_port=taken),
            service("fine", ip2, port),
        ]
        slices = endpoint_slice("blocked", [backends[0].address]) + endpoint_slice(
            "fine", [backends[1].address]
        )
        proxy.update(services, slices)
        failed = Frontend("TCP", "127.0.0.1", taken)
        assert set(proxy.errors()) == {failed}
        assert "Address already in use" in proxy.errors()[failed]
        assert [(p.frontend, p.service) for p in proxy.reported] == [(failed, "default/blocked")]  # type: ignore[attr-defined]
        assert await http_get(ip2, port) == (200, b"b")
        assert await http_get(ip1, port) == (200, b"a")
    finally:
        holder.close()
    # The port is free again: the periodic retry binds it without a new snapshot.
    await wait_for(lambda: not proxy.errors(), what="retry of the failed bind")
    assert await http_get("127.0.0.1", taken) == (200, b"a")


async def test_two_services_claiming_one_frontend_is_a_conflict(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip1, ip2, port = cluster_ip(), cluster_ip(), free_port()
    services = [
        service("first", ip1, port, kind="LoadBalancer", node_port=free_port()),
        service("second", ip2, port, kind="LoadBalancer", node_port=free_port()),
    ]
    slices = endpoint_slice("first", [backends[0].address]) + endpoint_slice("second", [backends[1].address])
    proxy.update(services, slices)
    conflict = Frontend("TCP", "127.0.0.1", port)
    assert list(proxy.errors()) == [conflict]
    assert [(p.frontend, p.service) for p in proxy.problems()] == [(conflict, "default/second")]
    assert [p.service for p in proxy.reported] == ["default/second"]  # type: ignore[attr-defined]
    assert await http_get("127.0.0.1", port) == (200, b"a")
    assert await http_get(ip2, port) == (200, b"b")


async def test_no_endpoint_resets_the_client(proxy: ServiceProxy, backends: list[HttpBackend]) -> None:
    ip, port = cluster_ip(), free_port()
    proxy.update([service("empty", ip, port)], [])
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await http_get(ip, port)
    assert proxy.stats()["services"]["default/empty"]["failed"] == 1


async def test_large_transfer_both_ways_with_backpressure(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    """An echo backend and 32 MiB each way: every byte arrives, in order, and reads pause meanwhile."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        backend = server.sockets[0].getsockname()[:2]
        ip, port = cluster_ip(), free_port()
        proxy.update([service("echo", ip, port)], endpoint_slice("echo", [backend]))
        reader, writer = await asyncio.open_connection(ip, port)
        payload = random.randbytes(1 << 20) * 32

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        received = await asyncio.wait_for(reader.read(-1), 60)  # EOF only after the half-close came back
        await sender
        writer.close()
        assert len(received) == len(payload) and received == payload
        stats = proxy.stats()["services"]["default/echo"]
        assert stats["bytes_in"] == stats["bytes_out"] == len(payload)
        assert stats["requests"] == 0  # not HTTP
    finally:
        server.close()


async def test_stop_closes_listeners_and_connections(backends: list[HttpBackend]) -> None:
    instance = ServiceProxy(["127.0.0.1"])
    await instance.start()
    ip, port = cluster_ip(), free_port()
    slow = backends[0]
    instance.update([service("web", ip, port)], endpoint_slice("web", [slow.address]))
    pending = asyncio.create_task(http_get(ip, port, "/slow"))
    await wait_for(lambda: slow.received == 1, what="slow request")
    await instance.stop()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await pending
    with pytest.raises(OSError):
        await http_get(ip, port)


async def test_thousand_services_are_programmed_quickly(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    port = free_port()
    base = random.randint(0, 200)
    services, slices = [], []
    for i in range(1000):
        ip = f"127.{100 + i // 250}.{base}.{1 + i % 250}"
        services.append(service(f"s{i}", ip, port))
        slices += endpoint_slice(f"s{i}", [backends[i % 3].address])
    started = time.perf_counter()
    proxy.update(services, slices)
    first = time.perf_counter() - started
    await proxy.settle()
    served = time.perf_counter() - started
    assert len(proxy.listening()) == 1000 and not proxy.errors()

    started = time.perf_counter()
    proxy.update(services, slices)
    unchanged = time.perf_counter() - started

    moved = list(slices)
    moved[500] = endpoint_slice("s500", [backends[2].address])[0]
    started = time.perf_counter()
    proxy.update(services, moved)
    one_change = time.perf_counter() - started

    print(
        f"\n1,000 Services: first update {first * 1000:.1f} ms (all listeners served after "
        f"{served * 1000:.1f} ms), unchanged snapshot {unchanged * 1000:.1f} ms, "
        f"one endpoint changed {one_change * 1000:.1f} ms"
    )
    assert first < 5.0 and unchanged < 1.0 and one_change < 1.0
    assert await http_get(f"127.{100 + 500 // 250}.{base}.{1 + 500 % 250}", port) == (200, b"c")
    assert await http_get(f"127.{100 + 999 // 250}.{base}.{1 + 999 % 250}", port) == (200, b"a")
    proxy.update([], [])
    assert proxy.listening() == set()


def test_data_path_on_uvloop() -> None:
    """The agent runs on uvloop when it is installed: the same scenarios on its transports."""
    uvloop = pytest.importorskip("uvloop")
    scenarios = [
        test_requests_spread_evenly_over_three_backends,
        test_connect_failure_moves_to_next_backend,
        test_backend_killed_under_load_gives_zero_failed_requests,
        test_in_flight_get_is_replayed_when_its_backend_dies,
        test_in_flight_post_is_not_replayed,
        test_removed_backend_drains_its_in_flight_response,
        test_large_transfer_both_ways_with_backpressure,
        test_no_endpoint_resets_the_client,
    ]

    async def main() -> None:
        for scenario in scenarios:
            async with running_proxy() as instance, running_backends() as started:
                await scenario(instance, started)  # type: ignore[operator]
        async with running_proxy() as instance:
            await test_udp_echo_through_the_proxy(instance)
        async with running_proxy() as instance:
            await test_udp_refused_backend_moves_to_next(instance)

    uvloop.run(main())


# ---------------------------------------------------------------------------------------------- scale from zero


async def test_held_connections_wait_for_a_backend_and_ask_for_one(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    """A Service marked scale-from-zero holds new connections while it has no endpoint, asks for a replica
    (once a second at most), and sends them on as soon as a backend appears."""
    activations: list[str] = []
    proxy.on_activate = activations.append
    ip, port = cluster_ip(), free_port()
    marked = service("sleepy", ip, port, annotations={"corral.dev/scale-from-zero": "true"})
    proxy.update([marked], [])
    await proxy.settle()
    waiting = [asyncio.create_task(http_get(ip, port, timeout=10)) for _ in range(5)]
    await wait_for(lambda: bool(activations), what="an activation request")
    assert activations == ["default/sleepy"]  # rate-limited: one for five connections
    await asyncio.sleep(0.1)
    assert not any(t.done() for t in waiting)  # held, not refused
    proxy.update([marked], endpoint_slice("sleepy", [backends[0].address]))
    results = await asyncio.gather(*waiting)
    assert results == [(200, b"a")] * 5
    assert proxy.stats()["services"]["default/sleepy"]["held"] == 5


async def test_an_unmarked_service_without_endpoints_refuses_at_once(proxy: ServiceProxy) -> None:
    ip, port = cluster_ip(), free_port()
    proxy.update([service("plain", ip, port)], [])
    await proxy.settle()
    started = time.monotonic()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await http_get(ip, port, timeout=5)
    assert time.monotonic() - started < 1


async def test_a_held_http_request_gets_a_clear_503_when_nothing_comes(
    proxy: ServiceProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.proxy import table

    monkeypatch.setattr(table, "HOLD_SECONDS", 0.3)
    ip, port = cluster_ip(), free_port()
    proxy.update([service("never", ip, port, annotations={"corral.dev/scale-from-zero": "true"})], [])
    await proxy.settle()
    status, body = await http_get(ip, port, timeout=5)
    assert status == 503
    assert body == b"no endpoint of service default/never became ready within 0.3 s\n"


async def test_inflight_counts_requests_awaiting_their_answer(
    proxy: ServiceProxy, backends: list[HttpBackend]
) -> None:
    ip, port = cluster_ip(), free_port()
    proxy.update([service("web", ip, port)], endpoint_slice("web", [backends[0].address]))
    await proxy.settle()
    backends[0].hang = True
    stuck = [asyncio.create_task(http_get(ip, port, timeout=10)) for _ in range(3)]
    await wait_for(lambda: backends[0].received == 3, what="three requests at the backend")
    stats = proxy.stats()["services"]["default/web"]
    assert stats["inflight"] == 3
    assert sum(e["inflight"] for e in stats["endpoints"].values()) == 3
    backends[0].kill()
    await asyncio.gather(*stuck, return_exceptions=True)
    await wait_for(
        lambda: proxy.stats()["services"]["default/web"]["inflight"] == 0, what="inflight back to 0"
    )
