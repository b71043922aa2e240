"""The ingress proxy on real sockets: a real IngressServer on 127.0.0.1 port 0 in front of small aiohttp
backends started in the test (also on port 0). Routing by host and path, X-Forwarded-* headers, streaming
both ways, keep-alive to backends, 503/404/502 pages, retries on the next backend."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from corral.proxy.ingress import IngressServer

JSON = dict[str, Any]
NS = "default"
FIRST_CHUNK = b"first-chunk:" + b"x" * 1000


class EchoBackend:
    """An HTTP backend that says who it is and what it received; streams on /upload and /download."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.peers: set[tuple[str, int]] = set()
        self.got_first_chunk = asyncio.Event()
        self.release_download = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/upload", self.upload)
        app.router.add_route("GET", "/download", self.download)
        app.router.add_route("GET", "/fail", self.fail)
        app.router.add_route("*", "/{tail:.*}", self.echo)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _seen(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add((peer[0], peer[1]))

    async def echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        body = await request.read()
        response = web.json_response(
            {
                "backend": self.name,
                "method": request.method,
                "path": request.raw_path,
                "headers": {k: request.headers.getall(k) for k in request.headers},
                "length": len(body),
            },
            headers={"X-Backend": self.name, "Keep-Alive": "timeout=30", "X-Hop": "secret"},
        )
        response.headers["Connection"] = "keep-alive, X-Hop"
        response.set_cookie("one", "1")
        response.set_cookie("two", "2")
        return response

    async def upload(self, request: web.Request) -> web.Response:
        self._seen(request)
        digest, length = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            if length == 0 and chunk:
                self.got_first_chunk.set()
            digest.update(chunk)
            length += len(chunk)
        return web.json_response({"backend": self.name, "sha256": digest.hexdigest(), "length": length})

    async def download(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(FIRST_CHUNK)
        # Waits for the client to have seen the first chunk; a buffering proxy would never deliver it.
        try:
            await asyncio.wait_for(self.release_download.wait(), 10)
            await response.write(b"rest")
        except TimeoutError:
            await response.write(b"timeout")
        await response.write_eof()
        return response

    async def fail(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="backend error")


class CloseBeforeAnswer:
    """A TCP server that reads a request head and closes without answering (a process dying mid-request)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                await reader.readuntil(b"\r\n\r\n")
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


# -- snapshot builders ---------------------------------------------------------------------------------------


def service(name: str) -> JSON:
    return {"metadata": {"name": name, "namespace": NS}, "spec": {"ports": [{"name": "http", "port": 80}]}}


def slices_for(name: str, ports: list[int], ready: bool = True) -> list[JSON]:
    # Corral pods share the node address and differ by port, so each backend port is its own slice.
    return [
        {
            "metadata": {
                "name": f"{name}-{port}",
                "namespace": NS,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["127.0.0.1"],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                }
            ],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        }
        for port in ports
    ]


def route(host: str | None, path: str, svc: str, path_type: str = "Prefix") -> JSON:
    rule: JSON = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": svc, "port": {"number": 80}}},
                }
            ]
        }
    }
    if host:
        rule["host"] = host
    return rule


def ingress(name: str, *rules: JSON, default: str | None = None) -> JSON:
    spec: JSON = {"ingressClassName": "corral", "rules": list(rules)}
    if default:
        spec["defaultBackend"] = {"service": {"name": default, "port": {"number": 80}}}
    return {
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": spec,
    }


# -- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture
async def proxy() -> AsyncIterator[IngressServer]:
    server = IngressServer("127.0.0.1", 0, read_timeout=10, shutdown_timeout=2)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


BackendFactory = Callable[[str], Awaitable[EchoBackend]]


@pytest.fixture
async def backends() -> AsyncIterator[BackendFactory]:
    started: list[EchoBackend] = []

    async def start(name: str) -> EchoBackend:
        backend = EchoBackend(name)
        await backend.start()
        started.append(backend)
        return backend

    try:
        yield start
    finally:
        for backend in started:
            await backend.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
def refused_port() -> Any:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def url(proxy: IngressServer, path: str) -> str:
    return f"http://127.0.0.1:{proxy.bound_port}{path}"


async def get_json(
    client: aiohttp.ClientSession, proxy: IngressServer, host: str, path: str
) -> tuple[int, Any]:
    async with client.get(url(proxy, path), headers={"Host": host}) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


# -- tests ---------------------------------------------------------------------------------------------------


async def test_start_logs_one_listening_line(caplog: pytest.LogCaptureFixture) -> None:
    server = IngressServer("127.0.0.1", 0)
    with caplog.at_level(logging.INFO, logger="corral.proxy.ingress"):
        await server.start()
    try:
        lines = [r.getMessage() for r in caplog.records if r.name == "corral.proxy.ingress"]
        assert lines == [f"ingress listening on 127.0.0.1:{server.bound_port}"]
        assert server.bound_port > 0
    finally:
        await server.stop()


async def test_hosts_and_paths_route_to_different_services(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a, b = await backends("a"), await backends("b")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"), route("b.example", "/api", "svc-b"))],
        [service("svc-a"), service("svc-b")],
        slices_for("svc-a", [a.port]) + slices_for("svc-b", [b.port]),
    )
    assert proxy.problems == ()
    for host, path, expected in [
        ("a.example", "/", "a"),
        ("a.example", "/deep/path?x=1", "a"),
        ("b.example", "/api", "b"),
        ("b.example:80", "/api/users?id=7", "b"),
    ]:
        status, body = await get_json(client, proxy, host, path)
        assert (status, body["backend"]) == (200, expected), (host, path)
        assert body["path"] == path, "the request target reaches the backend unchanged"
    status, text = await get_json(client, proxy, "b.example", "/apix")
    assert status == 404 and text.startswith("404 Not Found — no ingress rule matches host 'b.example'")


async def test_forwarded_headers_and_hop_by_hop_stripping(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    headers = {
        "Host": "a.example",
        "X-Forwarded-For": "203.0.113.7",
        "X-Real-IP": "6.6.6.6",  # forged: replaced
        "X-Forwarded-Host": "evil.example",  # forged: replaced
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "hop",
        "Keep-Alive": "timeout=5",
        "X-End-To-End": "kept",
    }
    async with client.get(url(proxy, "/h"), headers=headers) as response:
        assert response.status == 200
        seen = (await response.json())["headers"]
        assert response.headers["X-Backend"] == "a"
        assert "X-Hop" not in response.headers, (
            "a header named by the backend's Connection header is hop-by-hop"
        )
        assert "Keep-Alive" not in response.headers
        assert sorted(response.headers.getall("Set-Cookie")) == ["one=1; Path=/", "two=2; Path=/"]
    assert seen["X-Forwarded-For"] == ["203.0.113.7, 127.0.0.1"]
    assert seen["X-Real-IP"] == ["127.0.0.1"]
    assert seen["X-Forwarded-Host"] == ["a.example"]
    assert seen["X-Forwarded-Proto"] == ["http"]
    assert seen["X-Forwarded-Port"] == [str(proxy.bound_port)]
    assert seen["Host"] == ["a.example"]
    assert seen["X-End-To-End"] == ["kept"]
    assert "X-Drop-Me" not in seen and "Keep-Alive" not in seen


async def test_post_body_streams_to_the_backend(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    rest = os.urandom(4 * 1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        yield FIRST_CHUNK
        # The backend must see the first chunk while the client still holds the rest: no full buffering.
        await asyncio.wait_for(a.got_first_chunk.wait(), 10)
        for offset in range(0, len(rest), 256 * 1024):
            yield rest[offset : offset + 256 * 1024]

    async with client.post(url(proxy, "/upload"), data=body(), headers={"Host": "a.example"}) as response:
        assert response.status == 200
        answer = await response.json()
    assert answer == {
        "backend": "a",
        "sha256": hashlib.sha256(FIRST_CHUNK + rest).hexdigest(),
        "length": len(FIRST_CHUNK) + len(rest),
    }
    # With a Content-Length and Expect: 100-continue (as curl sends large bodies) too.
    payload = os.urandom(300_000)
    async with client.post(
        url(proxy, "/upload"), data=payload, headers={"Host": "a.example"}, expect100=True
    ) as response:
        assert response.status == 200
        assert (await response.json())["sha256"] == hashlib.sha256(payload).hexdigest()
    stats = proxy.stats()["default/web a.example Prefix /"]
    assert stats["bytes_in"] == len(FIRST_CHUNK) + len(rest) + len(payload)
    assert stats["requests"] == 2 and stats["responses_5xx"] == 0


async def test_response_streams_to_the_client(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    async with client.get(url(proxy, "/download"), headers={"Host": "a.example"}) as response:
        assert response.status == 200
        first = await asyncio.wait_for(response.content.readexactly(len(FIRST_CHUNK)), 5)
        assert first == FIRST_CHUNK
        a.release_download.set()
        assert await response.read() == b"rest"


async def test_backend_connections_are_kept_alive(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    for _ in range(20):
        status, _body = await get_json(client, proxy, "a.example", "/")
        assert status == 200
    assert len(a.peers) == 1, f"sequential requests should reuse one pooled connection, saw {len(a.peers)}"


async def test_no_ready_endpoint_gives_the_503_page(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))],
        [service("svc-a")],
        slices_for("svc-a", [a.port], False),
    )
    status, text = await get_json(client, proxy, "a.example", "/")
    assert status == 503
    assert text == "503 Service Unavailable — no ready endpoint for service default/svc-a\n"
    async with client.get(url(proxy, "/"), headers={"Host": "a.example", "Accept": "text/html"}) as response:
        assert response.status == 503 and response.content_type == "text/html"
        page = await response.text()
        assert "503 Service Unavailable — no ready endpoint for service default/svc-a" in page
    # The endpoint becomes ready: the same route answers.
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    status, body = await get_json(client, proxy, "a.example", "/")
    assert (status, body["backend"]) == (200, "a")
    stats = proxy.stats()["default/web a.example Prefix /"]
    assert stats["requests"] == 3 and stats["responses_5xx"] == 2


async def test_missing_service_is_reported_and_answers_503(
    proxy: IngressServer, client: aiohttp.ClientSession
) -> None:
    proxy.update([ingress("web", route("a.example", "/", "ghost"))], [], [])
    assert [(p.ingress, p.message) for p in proxy.problems] == [
        ("default/web", "rule a.example Prefix /: service default/ghost not found")
    ]
    status, text = await get_json(client, proxy, "a.example", "/")
    assert (status, text) == (503, "503 Service Unavailable — service default/ghost not found\n")


async def test_unknown_host_gives_404_unless_a_default_backend_exists(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a, d = await backends("a"), await backends("d")
    services = [service("svc-a"), service("svc-d")]
    slices = slices_for("svc-a", [a.port]) + slices_for("svc-d", [d.port])
    proxy.update([ingress("web", route("a.example", "/", "svc-a"))], services, slices)
    status, text = await get_json(client, proxy, "unknown.example", "/x")
    assert status == 404
    assert text == "404 Not Found — no ingress rule matches host 'unknown.example' and path '/x'\n"
    assert proxy.stats()["(no route)"]["requests"] == 1
    proxy.update([ingress("web", route("a.example", "/", "svc-a"), default="svc-d")], services, slices)
    status, body = await get_json(client, proxy, "unknown.example", "/x")
    assert (status, body["backend"]) == (200, "d")


async def test_round_robin_over_ready_backends(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    pool = [await backends(f"r{i}") for i in range(3)]
    proxy.update(
        [ingress("web", route("a.example", "/", "svc"))],
        [service("svc")],
        slices_for("svc", [b.port for b in pool]),
    )
    seen = [(await get_json(client, proxy, "a.example", "/"))[1]["backend"] for _ in range(30)]
    assert {name: seen.count(name) for name in set(seen)} == {"r0": 10, "r1": 10, "r2": 10}


async def test_refused_backend_is_skipped_then_all_down_gives_502(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession, refused_port: int
) -> None:
    good = await backends("good")
    web_ingress = [ingress("web", route("a.example", "/", "svc"))]
    proxy.update(web_ingress, [service("svc")], slices_for("svc", [refused_port, good.port]))
    for _ in range(4):
        status, body = await get_json(client, proxy, "a.example", "/")
        assert (status, body["backend"]) == (200, "good")
    # Nothing reached the refusing backend, so a non-idempotent request moves on as well.
    for _ in range(2):
        async with client.post(url(proxy, "/p"), data=b"payload", headers={"Host": "a.example"}) as response:
            assert response.status == 200 and (await response.json())["length"] == 7
    stats = proxy.stats()["default/web a.example Prefix /"]
    assert stats["backend_errors"] == 3 and stats["retries"] == 3 and stats["responses_5xx"] == 0

    await good.stop()
    status, text = await get_json(client, proxy, "a.example", "/")
    assert status == 502
    assert text == "502 Bad Gateway — no endpoint of service default/svc answered\n"


async def test_backend_closing_before_answering_is_retried_only_when_safe(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    good = await backends("good")
    closer = CloseBeforeAnswer()
    await closer.start()
    try:
        proxy.update(
            [ingress("web", route("a.example", "/", "svc"))],
            [service("svc")],
            slices_for("svc", [closer.port, good.port]),
        )
        for _ in range(4):
            status, body = await get_json(client, proxy, "a.example", "/")
            assert (status, body["backend"]) == (200, "good")
        assert closer.accepted >= 2, "half the GETs went to the closing backend first"
        # A POST may have been acted on: never sent twice. One of two goes to the closer first → 502.
        statuses = []
        for _ in range(2):
            async with client.post(url(proxy, "/p"), data=b"once", headers={"Host": "a.example"}) as response:
                statuses.append(response.status)
        assert sorted(statuses) == [200, 502]
    finally:
        await closer.stop()


async def test_backend_5xx_is_passed_through_and_counted(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    async with client.get(url(proxy, "/fail"), headers={"Host": "a.example"}) as response:
        assert (response.status, await response.text()) == (500, "backend error")
    stats = proxy.stats()["default/web a.example Prefix /"]
    assert stats["responses_5xx"] == 1 and stats["bytes_out"] == len("backend error")


async def test_head_request_passes_through(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    async with client.head(url(proxy, "/"), headers={"Host": "a.example"}) as response:
        assert response.status == 200 and response.headers["X-Backend"] == "a"
        assert await response.read() == b""
    # The connection stays usable after a body-less answer.
    status, body = await get_json(client, proxy, "a.example", "/after-head")
    assert (status, body["path"]) == (200, "/after-head")


async def test_client_disconnects_are_counted_not_blamed_on_backends(
    proxy: IngressServer, backends: BackendFactory, client: aiohttp.ClientSession
) -> None:
    a = await backends("a")
    proxy.update(
        [ingress("web", route("a.example", "/", "svc-a"))], [service("svc-a")], slices_for("svc-a", [a.port])
    )
    # Half an upload, then the client is gone.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.bound_port)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: 1000000\r\n\r\n" + FIRST_CHUNK)
    await writer.drain()
    await asyncio.wait_for(a.got_first_chunk.wait(), 5)
    writer.close()
    # Part of a download, then the client is gone.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.bound_port)
    writer.write(b"GET /download HTTP/1.1\r\nHost: a.example\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.readuntil(FIRST_CHUNK), 5)
    writer.close()
    a.release_download.set()

    stats = proxy.stats()["default/web a.example Prefix /"]
    deadline = asyncio.get_running_loop().time() + 5
    while stats["client_aborts"] < 2:
        assert asyncio.get_running_loop().time() < deadline, stats
        await asyncio.sleep(0.01)
        stats = proxy.stats()["default/web a.example Prefix /"]
    assert stats["responses_5xx"] == 0 and stats["backend_errors"] == 0
    status, body = await get_json(client, proxy, "a.example", "/still-serving")
    assert (status, body["backend"]) == (200, "a")
