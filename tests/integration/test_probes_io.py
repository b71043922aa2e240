"""Probes against real loopback servers: HTTP(S) status codes, headers, redirects, timeouts, refused ports,
TCP connects, exec through a fake exec function, and a ContainerProber end to end on real time."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from corral.agent.probes import (
    ContainerProber,
    Outcome,
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    ProbeTarget,
    TcpSocketAction,
    parse_probe,
    run_probe,
    runtime_exec_fn,
)
from corral.agent.runtimes.base import ContainerId, ExecResult, ExecStreams
from corral.apiserver.tls import ensure_pki

L, R, S = ProbeKind.LIVENESS, ProbeKind.READINESS, ProbeKind.STARTUP
CONTAINER_PORT = 8080  # what the pod spec declares; the server really listens on an allocated port


@dataclass
class Server:
    port: int
    seen_headers: list[dict[str, str]]
    state: dict[str, int]


def _app(seen: list[dict[str, str]], state: dict[str, int]) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.Response(text="ok")

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500, text="sick")

    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/healthz")

    async def redirect_away(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{state['other_port']}/healthz")

    async def redirect_loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def flappy(request: web.Request) -> web.Response:
        return web.Response(status=state["flappy"])

    app = web.Application()
    app.router.add_get("/healthz", ok)
    app.router.add_get("/fail", fail)
    app.router.add_get("/missing", not_found)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/away", redirect_away)
    app.router.add_get("/loop", redirect_loop)
    app.router.add_get("/flappy", flappy)
    return app


async def _serve(tmp_path: Path | None) -> AsyncIterator[Server]:
    seen: list[dict[str, str]] = []
    state = {"flappy": 200, "other_port": 1}
    runner = web.AppRunner(_app(seen, state), shutdown_timeout=0.1)
    await runner.setup()
    ssl_context = ensure_pki(tmp_path, ["127.0.0.1"]).server_context() if tmp_path else None
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Server(port, seen, state)
    finally:
        await runner.cleanup()


@pytest.fixture
async def http_server() -> AsyncIterator[Server]:
    async for server in _serve(None):
        yield server


@pytest.fixture
async def https_server(tmp_path: Path) -> AsyncIterator[Server]:
    async for server in _serve(tmp_path):
        yield server


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def target(host_port: int, **kw: object) -> ProbeTarget:
    return ProbeTarget("127.0.0.1", {CONTAINER_PORT: host_port}, **kw)  # type: ignore[arg-type]


def http(kind: ProbeKind = L, path: str = "/healthz", **kw: object) -> ProbeSpec:
    probe = {"httpGet": {"port": "web", "path": path, **kw}}
    container = {"name": "app", "ports": [{"containerPort": CONTAINER_PORT, "name": "web"}]}
    return parse_probe(kind, probe, container, pod_ip="127.0.0.1")


# -- httpGet ------------------------------------------------------------------------------------------------


async def test_http_success_goes_to_the_allocated_port(http_server: Server) -> None:
    spec = http(httpHeaders=[{"name": "X-Probe", "value": "yes"}, {"name": "user-agent", "value": "mine"}])
    assert await run_probe(spec, target(http_server.port)) == ProbeResult(True, "")
    headers = http_server.seen_headers[-1]
    assert headers["X-Probe"] == "yes"
    assert headers["User-Agent"] == "mine"  # user headers replace the defaults, case-insensitively
    assert headers["Accept"] == "*/*"
    await run_probe(http(), target(http_server.port))
    assert http_server.seen_headers[-1]["User-Agent"] == "kube-probe/1.32"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/fail", "Liveness probe failed: HTTP probe failed with statuscode: 500"),
        ("/missing", "Liveness probe failed: HTTP probe failed with statuscode: 404"),
    ],
)
async def test_http_failure_status(http_server: Server, path: str, message: str) -> None:
    assert await run_probe(http(path=path), target(http_server.port)) == ProbeResult(False, message)


async def test_http_connection_refused(closed_port: int) -> None:
    result = await run_probe(http(R), target(closed_port))
    assert result == ProbeResult(
        False,
        f'Readiness probe failed: Get "http://127.0.0.1:{closed_port}/healthz": dial tcp 127.0.0.1:{closed_port}: '
        "connect: connection refused",
    )


async def test_http_timeout(http_server: Server) -> None:
    spec = replace(http(S, path="/slow"), timeout=0.3)
    began = time.monotonic()
    result = await run_probe(spec, target(http_server.port))
    assert time.monotonic() - began < 3
    assert result == ProbeResult(
        False,
        f'Startup probe failed: Get "http://127.0.0.1:{http_server.port}/slow": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)",
    )


async def test_http_redirects(http_server: Server) -> None:
    # Same host and port: followed.
    assert await run_probe(http(path="/redirect"), target(http_server.port)) == ProbeResult(True, "")
    # Elsewhere (another port on the node may be another pod): not contacted, success with a warning.
    http_server.state["other_port"] = http_server.port + 1
    result = await run_probe(http(path="/away"), target(http_server.port))
    assert result.success and result.message.startswith("Probe terminated redirects")
    # A loop stops after 10 redirects.
    result = await run_probe(http(path="/loop"), target(http_server.port))
    assert result == ProbeResult(
        False,
        f'Liveness probe failed: Get "http://127.0.0.1:{http_server.port}/loop": stopped after 10 redirects',
    )


async def test_https_without_certificate_verification(https_server: Server) -> None:
    assert await run_probe(http(scheme="HTTPS"), target(https_server.port)) == ProbeResult(True, "")
    result = await run_probe(http(scheme="HTTPS", path="/fail"), target(https_server.port))
    assert result.message == "Liveness probe failed: HTTP probe failed with statuscode: 500"


async def test_http_host_localhost(http_server: Server) -> None:
    spec = http(host="localhost")
    assert (await run_probe(spec, target(http_server.port))).success


# -- tcpSocket ----------------------------------------------------------------------------------------------


async def test_tcp(http_server: Server, closed_port: int) -> None:
    spec = parse_probe(R, {"tcpSocket": {"port": CONTAINER_PORT}})
    assert await run_probe(spec, target(http_server.port)) == ProbeResult(True, "")
    assert await run_probe(spec, target(closed_port)) == ProbeResult(
        False, f"Readiness probe failed: dial tcp 127.0.0.1:{closed_port}: connect: connection refused"
    )


async def test_tcp_undeclared_port_is_probed_literally(http_server: Server) -> None:
    spec = ProbeSpec(L, TcpSocketAction(http_server.port))
    assert (await run_probe(spec, ProbeTarget("127.0.0.1"))).success


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener that never accepts, with its backlog filled, so a further connect hangs (SYN dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    clients: list[socket.socket] = []
    try:
        for _ in range(8):
            client = socket.socket()
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", port))
            clients.append(client)
        yield port
    finally:
        for client in clients:
            client.close()
        listener.close()


async def test_tcp_timeout(full_backlog: int) -> None:
    spec = replace(ProbeSpec(L, TcpSocketAction(CONTAINER_PORT)), timeout=0.3)
    result = await run_probe(spec, target(full_backlog))
    if result.success:
        pytest.skip("the kernel accepted the connection despite the full backlog")
    assert result == ProbeResult(
        False, f"Liveness probe failed: dial tcp 127.0.0.1:{full_backlog}: i/o timeout"
    )


# -- exec -----------------------------------------------------------------------------------------------------


class FakeExec:
    def __init__(self, exit_code: int, output: str) -> None:
        self.exit_code, self.output = exit_code, output
        self.calls: list[list[str]] = []

    async def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.calls.append(argv)
        return self.exit_code, self.output


async def test_exec() -> None:
    spec = parse_probe(L, {"exec": {"command": ["cat", "/tmp/healthy"]}})
    ok = FakeExec(0, "fine\n")
    assert await run_probe(spec, ProbeTarget("127.0.0.1", exec_fn=ok)) == ProbeResult(True, "fine\n")
    assert ok.calls == [["cat", "/tmp/healthy"]]
    bad = FakeExec(1, "cat: /tmp/healthy: No such file or directory\n")
    assert await run_probe(spec, ProbeTarget("127.0.0.1", exec_fn=bad)) == ProbeResult(
        False, "Liveness probe failed: cat: /tmp/healthy: No such file or directory"
    )
    silent = FakeExec(2, "")
    assert await run_probe(spec, ProbeTarget("127.0.0.1", exec_fn=silent)) == ProbeResult(
        False, 'Liveness probe failed: command "cat /tmp/healthy" exited with code 2'
    )


async def test_exec_timeout_cancels_the_command() -> None:
    cancelled = asyncio.Event()

    async def hang(argv: list[str]) -> tuple[int, str]:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0, ""

    spec = replace(parse_probe(R, {"exec": {"command": ["sleep", "10"]}}), timeout=0.2)
    result = await run_probe(spec, ProbeTarget("127.0.0.1", exec_fn=hang))
    assert result == ProbeResult(False, 'Readiness probe failed: command "sleep 10" timed out')
    assert cancelled.is_set()


async def test_exec_error_is_reported_as_errored() -> None:
    async def broken(argv: list[str]) -> tuple[int, str]:
        raise FileNotFoundError('exec: "nope": executable file not found in $PATH')

    spec = parse_probe(L, {"exec": {"command": ["nope"]}})
    result = await run_probe(spec, ProbeTarget("127.0.0.1", exec_fn=broken))
    assert result == ProbeResult(
        False, 'Liveness probe errored: exec: "nope": executable file not found in $PATH', errored=True
    )


class FakeRuntime:
    """Only ``exec`` of the Runtime protocol, writing a lot of output to both streams."""

    def __init__(self) -> None:
        self.calls: list[tuple[ContainerId, list[str]]] = []

    async def exec(
        self, cid: ContainerId, argv: list[str], streams: ExecStreams, tty: bool = False
    ) -> ExecResult:
        self.calls.append((cid, argv))
        assert await streams.read_stdin() is None
        await streams.write_stdout(b"out:")
        await streams.write_stderr(b"err:" + b"x" * 20000)
        return ExecResult(exit_code=3)


async def test_runtime_exec_fn_collects_limited_output() -> None:
    runtime = FakeRuntime()
    cid = ContainerId("uid", "app", 0)
    exec_fn = runtime_exec_fn(runtime, cid, limit=100)  # type: ignore[arg-type]
    code, output = await exec_fn(["check"])
    assert code == 3 and output == "out:err:" + "x" * 92
    assert runtime.calls == [(cid, ["check"])]


# -- ContainerProber on real time ------------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


async def test_prober_end_to_end(http_server: Server) -> None:
    changes: list[tuple[ProbeKind, Outcome, str]] = []
    fast: dict[str, Any] = {"period": 0.05, "timeout": 0.5}
    prober = ContainerProber(
        [
            replace(http(S, path="/healthz"), **fast),
            replace(http(L, path="/flappy"), failure_threshold=3, **fast),
            replace(http(R, path="/flappy"), failure_threshold=1, **fast),
        ],
        target(http_server.port),
        lambda *change: changes.append(change),
        name="default/web/app",
    )
    prober.start()
    try:
        await wait_for(lambda: prober.ready)
        assert prober.started and not prober.restart_needed
        http_server.state["flappy"] = 503
        await wait_for(lambda: prober.restart_needed)
        assert not prober.ready
        message = "Liveness probe failed: HTTP probe failed with statuscode: 503"
        assert prober.restart_message == message
        assert (L, Outcome.FAILURE, message) in changes
        assert changes[:2] == [(S, Outcome.SUCCESS, ""), (R, Outcome.SUCCESS, "")] or changes[:2] == [
            (S, Outcome.SUCCESS, ""),
            (L, Outcome.FAILURE, message),
        ]
        assert (
            R,
            Outcome.FAILURE,
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
        ) in changes
    finally:
        await prober.stop()


async def test_prober_against_a_closed_port_never_gets_ready(closed_port: int) -> None:
    results: list[ProbeResult] = []
    prober = ContainerProber(
        [replace(http(R), period=0.05)],
        target(closed_port),
        lambda *_: None,
        on_result=lambda _, result: results.append(result),
    )
    prober.start()
    try:
        await wait_for(lambda: len(results) >= 3)
        assert not prober.ready
        assert all("connection refused" in r.message for r in results)
    finally:
        await prober.stop()
