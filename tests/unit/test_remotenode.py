"""The API server's side of the node API (``apiserver/remotenode.py``) against a real in-process node API
(``agent/nodeapi.py``) over mutual TLS on loopback, with a fake agent behind it; and the failures: unknown
node, no node API, a refused port, a silent one (a deadline, not a hang), a certificate for another node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from corral.agent.nodeapi import NodeApiServer, server_context
from corral.agent.usage import NodeUsage, PodUsage, Usage
from corral.apiserver import remotenode
from corral.apiserver import status as st
from corral.apiserver.nodecerts import load_ca, make_serving_csr, sign_serving_csr
from corral.apiserver.nodeproxy import LogOptions
from corral.apiserver.remotenode import RemoteNodes
from corral.apiserver.tls import ensure_pki

JSON = dict[str, Any]
NOW = datetime.now(UTC)
POD: JSON = {"metadata": {"namespace": "ns", "name": "p", "uid": "u1"}}


@dataclass
class FakeAgent:
    """A NodeEndpoint that records what it was asked."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def container_logs(self, pod: JSON, options: LogOptions) -> AsyncIterator[bytes]:
        self.calls.append(("logs", pod["metadata"], options))
        if options.previous:
            raise st.bad_request('previous terminated container "c" in pod "p" not found')
        yield b"one\n"
        yield b"two\n"

    async def exec(self, pod: JSON, container: str, argv: list[str], streams: Any, tty: bool) -> int:
        self.calls.append(("exec", pod["metadata"], container, argv, tty))
        data = b""
        while (chunk := await streams.read_stdin()) is not None:
            data += chunk
        await streams.write_stdout(b"in:" + data)
        await streams.write_stderr(b"err")
        return 3

    def resource_usage(self) -> NodeUsage | None:
        u = Usage(NOW, 1.0, 5000, 4096)
        return NodeUsage(u, {"u1": PodUsage(NOW, 1.0, {"c": u})})


class FakeApi:
    def __init__(self) -> None:
        self.nodes: dict[str, JSON] = {}

    async def get(self, rt: Any, namespace: str | None, name: str) -> JSON:
        if name not in self.nodes:
            raise st.ApiError(404, "NotFound", f'nodes "{name}" not found')
        return self.nodes[name]


def node(address: str, port: int) -> JSON:
    return {
        "status": {
            "addresses": [{"type": "InternalIP", "address": address}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }
    }


class Streams:
    def __init__(self, stdin: list[bytes]) -> None:
        self.stdin: list[bytes | None] = [*stdin, None]
        self.out = b""
        self.err = b""

    async def read_stdin(self) -> bytes | None:
        return self.stdin.pop(0)

    async def write_stdout(self, data: bytes) -> None:
        self.out += data

    async def write_stderr(self, data: bytes) -> None:
        self.err += data


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "pki"
    ensure_pki(directory, ["127.0.0.1"])
    for name in ("n1", "n2"):
        csr, key = make_serving_csr(name)
        (tmp_path / f"{name}.crt").write_bytes(
            sign_serving_csr(load_ca(directory), csr, name, ["127.0.0.1"], NOW)
        )
        (tmp_path / f"{name}.key").write_bytes(key)
    yield directory


async def _serve(pki: Path, name: str, agent: FakeAgent) -> tuple[NodeApiServer, int]:
    ca = (pki / "ca.crt").read_bytes()
    server = NodeApiServer(agent, server_context(ca, pki.parent / f"{name}.crt", pki.parent / f"{name}.key"))
    return server, await server.start("127.0.0.1", 0)


async def test_logs_exec_and_usage_are_relayed(pki: Path) -> None:
    agent = FakeAgent()
    server, port = await _serve(pki, "n1", agent)
    api = FakeApi()
    api.nodes["n1"] = node("127.0.0.1", port)
    nodes = RemoteNodes.for_pki(api, pki)  # type: ignore[arg-type]
    try:
        endpoint = nodes.endpoint("n1")
        options = LogOptions("c", follow=True, tail_lines=5)
        chunks = [c async for c in endpoint.container_logs(POD, options)]
        assert b"".join(chunks) == b"one\ntwo\n"
        assert agent.calls[-1] == ("logs", POD["metadata"], options)

        streams = Streams([b"a", b"b"])
        assert await endpoint.exec(POD, "c", ["sh", "-c", "x"], streams, False) == 3
        assert (streams.out, streams.err) == (b"in:ab", b"err")
        assert agent.calls[-1] == ("exec", POD["metadata"], "c", ["sh", "-c", "x"], False)

        # The agent's refusal comes back with its code and message.
        with pytest.raises(st.ApiError) as err:
            [c async for c in endpoint.container_logs(POD, LogOptions("c", previous=True))]
        assert (err.value.code, err.value.message) == (
            400,
            'previous terminated container "c" in pod "p" not found',
        )

        assert await endpoint.fetch_usage() == agent.resource_usage()
        # The synchronous read serves the cached sample: none at first, then the fetched one.
        assert endpoint.resource_usage() is None
        deadline = time.monotonic() + 10
        while endpoint.resource_usage() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert endpoint.resource_usage() == agent.resource_usage()
    finally:
        await nodes.close()
        await server.stop()


async def test_a_certificate_of_another_node_is_refused(pki: Path) -> None:
    server, port = await _serve(pki, "n2", FakeAgent())  # n2's certificate, at the address n1 publishes
    api = FakeApi()
    api.nodes["n1"] = node("127.0.0.1", port)
    nodes = RemoteNodes.for_pki(api, pki)  # type: ignore[arg-type]
    try:
        with pytest.raises(st.ApiError) as err:
            await nodes.endpoint("n1").fetch_usage()
        assert err.value.code == 503
        assert err.value.message.startswith(f'error dialing backend: node "n1" at https://127.0.0.1:{port}: ')
        assert "n1" in err.value.message and "certificate" in err.value.message.lower()
    finally:
        await nodes.close()
        await server.stop()


async def test_unknown_nodes_and_nodes_without_a_node_api(pki: Path) -> None:
    api = FakeApi()
    api.nodes["quiet"] = node("127.0.0.1", 0)
    nodes = RemoteNodes.for_pki(api, pki)  # type: ignore[arg-type]
    try:
        with pytest.raises(st.ApiError) as err:
            await nodes.endpoint("ghost").fetch_usage()
        assert (err.value.code, err.value.message) == (503, 'node "ghost" not found')
        with pytest.raises(st.ApiError) as err:
            await nodes.endpoint("quiet").exec(POD, "c", ["true"], Streams([]), False)
        assert err.value.code == 503 and err.value.message.startswith('node "quiet" publishes no node API')
    finally:
        await nodes.close()


async def test_refused_and_silent_ports_fail_within_a_deadline(
    pki: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remotenode, "CONNECT_TIMEOUT", 0.3)
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never speaks TLS
    silent_port = silent.sockets[0].getsockname()[1]
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    api = FakeApi()
    api.nodes["silent"] = node("127.0.0.1", silent_port)
    api.nodes["closed"] = node("127.0.0.1", closed_port)
    nodes = RemoteNodes.for_pki(api, pki)  # type: ignore[arg-type]
    try:
        for name, port in (("closed", closed_port), ("silent", silent_port)):
            started = time.monotonic()
            with pytest.raises(st.ApiError) as err:
                [c async for c in nodes.endpoint(name).container_logs(POD, LogOptions("c"))]
            assert time.monotonic() - started < 5
            assert err.value.code == 503
            assert err.value.message.startswith(
                f'error dialing backend: node "{name}" at https://127.0.0.1:{port}: '
            )
    finally:
        await nodes.close()
        silent.close()
        await silent.wait_closed()
