"""A :class:`NodeEndpoint` for an agent in another process: the API server calls its node API over mutual TLS
(``agent/nodeapi.py``, wire format ``agent/nodewire.py``), as kube-apiserver calls a kubelet on port 10250.

:class:`RemoteNodes` is the :class:`NodeDirectory` fallback: a node with no in-process endpoint gets a
:class:`RemoteNode`, which finds its agent at request time from the Node object — the ``InternalIP`` of
``status.addresses`` and ``status.daemonEndpoints.kubeletEndpoint.Port`` (0: the agent serves no node API).
The agent's certificate must be signed by the cluster CA and valid for the *node's name* (TLS hostname
verification with the node name as server name; the join put it in the certificate's SANs beside the
node's addresses): the name, not the InternalIP dialled, because an address can be shared (several agents
on one host, as in tests) or reassigned, and only the name says which node answers. The API server
presents its client certificate (``apiserver/nodecerts.py``).

Failures are ApiErrors naming the node, never tracebacks: unreachable or untrusted agent → 503 ``error
dialing backend: …`` (upstream's wording); the agent's own refusals (container not started …) pass through
with their code. Connecting has a deadline, and so has every read except a followed log and an exec session
(those last as long as the user wants).

Usage samples: ``resource_usage`` is synchronous in the protocol (the metrics API computes its objects from
the samples per request), so each remote node keeps its last fetched sample and refreshes it in the
background when it is older than :data:`USAGE_REFRESH` seconds; a sample older than :data:`USAGE_MAX_AGE` is
not served. So the first ``kubectl top`` after a quiet spell may miss a remote node, as metrics-server has
nothing before its first scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from corral.agent import nodewire as wire
from corral.agent.runtimes.base import ExecStreams
from corral.agent.usage import NodeUsage
from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.apiserver.nodecerts import ensure_client_cert
from corral.apiserver.nodeproxy import LogOptions
from corral.apiserver.rest import ResourceAPI

log = logging.getLogger(__name__)

JSON = dict[str, Any]
NODES = REGISTRY.require("nodes")
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
USAGE_REFRESH = 1.0
USAGE_MAX_AGE = 60.0


def client_context(ca_pem: bytes, cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """Verify agents against the cluster CA (host name: the node's name); present our client cert."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.load_cert_chain(cert_path, key_path)
    return context


def node_target(node: JSON) -> tuple[str, int] | None:
    """``(InternalIP, node API port)`` a Node publishes; None when it publishes no node API."""
    status = node.get("status") or {}
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    addresses = [a.get("address") for a in status.get("addresses") or [] if a.get("type") == "InternalIP"]
    if not isinstance(port, int) or not 0 < port < 65536 or not addresses or not addresses[0]:
        return None
    return str(addresses[0]), port


def _unavailable(message: str) -> st.ApiError:
    return st.ApiError(503, "ServiceUnavailable", message)


class RemoteNodes:
    """Endpoints of agents reached over the network, one :class:`RemoteNode` per node name."""

    def __init__(self, api: ResourceAPI, context: ssl.SSLContext) -> None:
        self.api = api
        self.context = context
        self._nodes: dict[str, RemoteNode] = {}
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_pki(cls, api: ResourceAPI, pki_dir: Path) -> RemoteNodes:
        """With the cluster CA in ``pki_dir`` and the API server's client certificate (issued if missing)."""
        cert, key = ensure_client_cert(pki_dir)
        return cls(api, client_context((pki_dir / "ca.crt").read_bytes(), cert, key))

    def endpoint(self, node_name: str) -> RemoteNode:
        found = self._nodes.get(node_name)
        if found is None:
            found = self._nodes[node_name] = RemoteNode(self, node_name)
        return found

    def forget(self, node_name: str) -> None:
        """Drop a deleted node's endpoint (a request in flight keeps its own reference)."""
        self._nodes.pop(node_name, None)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No connection limit: each followed log or exec session holds one for as long as it lasts.
            connector = aiohttp.TCPConnector(ssl=self.context, limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                # Also bounds an exec upgrade; aiohttp lifts the read limit once the WebSocket is open.
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=2 * CONNECT_TIMEOUT,
                    sock_connect=CONNECT_TIMEOUT,
                    sock_read=READ_TIMEOUT,
                ),
            )
        return self._session

    async def close(self) -> None:
        for node in self._nodes.values():
            await node.close()
        self._nodes.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


class RemoteNode:
    """One remote agent, as a :class:`NodeEndpoint`."""

    def __init__(self, nodes: RemoteNodes, name: str) -> None:
        self.nodes = nodes
        self.name = name
        self._sample: NodeUsage | None = None
        self._fetched_at = float("-inf")
        self._refresh: asyncio.Task[None] | None = None

    async def _base_url(self) -> str:
        try:
            node = await self.nodes.api.get(NODES, None, self.name)
        except st.ApiError as exc:
            if exc.code == 404:
                self.nodes.forget(self.name)
                raise _unavailable(f'node "{self.name}" not found') from exc
            raise
        target = node_target(node)
        if target is None:
            raise _unavailable(
                f'node "{self.name}" publishes no node API (status.daemonEndpoints.kubeletEndpoint.Port is '
                "0): its agent cannot serve logs, exec or metrics — see its log for why"
            )
        host, port = target
        return f"https://{f'[{host}]' if ':' in host else host}:{port}"

    def _dial_error(self, url: str, exc: BaseException) -> st.ApiError:
        if isinstance(exc, TimeoutError):
            return _unavailable(f'error dialing backend: node "{self.name}" at {url}: timed out')
        return _unavailable(f'error dialing backend: node "{self.name}" at {url}: {exc}')

    @staticmethod
    async def _error_from(response: aiohttp.ClientResponse) -> st.ApiError:
        body = await response.read()
        try:
            status = orjson.loads(body)
        except orjson.JSONDecodeError:
            status = None
        if isinstance(status, dict) and status.get("kind") == "Status":
            return st.ApiError(response.status, str(status.get("reason") or ""), str(status.get("message")))
        return st.ApiError(
            response.status if response.status >= 400 else 502,
            "InternalError",
            f"the node API answered {response.status}: {body[:200].decode(errors='replace')}",
        )

    # ------------------------------------------------------------------ logs

    async def container_logs(self, pod: JSON, options: LogOptions) -> AsyncIterator[bytes]:
        meta = pod["metadata"]
        url = await self._base_url()
        path = wire.logs_path(meta.get("namespace", ""), meta["name"], options.container)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=2 * CONNECT_TIMEOUT,  # with the TLS handshake
            sock_connect=CONNECT_TIMEOUT,
            sock_read=None if options.follow else READ_TIMEOUT,
        )
        try:
            response = await self.nodes.session().get(
                url + path,
                params=wire.log_query(str(meta.get("uid", "")), options),
                timeout=timeout,
                server_hostname=self.name,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._dial_error(url, exc) from exc
        try:
            if response.status != 200:
                raise await self._error_from(response)
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Headers are out already: the log just ends (as when a kubelet goes away mid-follow).
                log.info("log stream from node %s ended: %s", self.name, exc)
        finally:
            response.release()

    # ------------------------------------------------------------------ exec

    async def exec(self, pod: JSON, container: str, argv: list[str], streams: ExecStreams, tty: bool) -> int:
        meta = pod["metadata"]
        url = await self._base_url()
        path = wire.exec_path(meta.get("namespace", ""), meta["name"], str(meta.get("uid", "")), container)
        params = [*(("command", a) for a in argv), ("stdin", "true"), ("tty", "true" if tty else "false")]
        try:
            ws = await self.nodes.session().ws_connect(
                url + path,
                params=params,
                protocols=(wire.EXEC_PROTOCOL,),
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                max_msg_size=16 * 1024 * 1024,
                autoping=True,
                server_hostname=self.name,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise self._dial_error(url, exc) from exc
            raise st.ApiError(
                exc.status or 502, "InternalError", f'node "{self.name}": {exc.message}'
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._dial_error(url, exc) from exc
        sender = asyncio.create_task(self._send_stdin(ws, streams))
        try:
            async for msg in ws:
                parsed = wire.parse_frame(msg.data) if msg.type is aiohttp.WSMsgType.BINARY else None
                if parsed is None:
                    continue
                channel, payload = parsed
                if channel == wire.STDOUT:
                    await streams.write_stdout(payload)
                elif channel == wire.STDERR:
                    await streams.write_stderr(payload)
                elif channel == wire.STATUS:
                    try:
                        outcome = wire.status_outcome(orjson.loads(payload))
                    except orjson.JSONDecodeError:
                        outcome = st.internal(f'node "{self.name}" sent a malformed exec status')
                    if isinstance(outcome, st.ApiError):
                        raise outcome
                    return outcome
            raise _unavailable(f'node "{self.name}" closed the exec stream without an exit status')
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            await ws.close()

    @staticmethod
    async def _send_stdin(ws: aiohttp.ClientWebSocketResponse, streams: ExecStreams) -> None:
        while True:
            data = await streams.read_stdin()
            if ws.closed:
                return
            if data is None:
                await ws.send_bytes(wire.close_frame(wire.STDIN))
                return
            if data:
                await ws.send_bytes(wire.frame(wire.STDIN, data))

    # ------------------------------------------------------------------ usage

    def resource_usage(self) -> NodeUsage | None:
        now = time.monotonic()
        if self._refresh is None and now - self._fetched_at >= USAGE_REFRESH:
            self._refresh = asyncio.get_running_loop().create_task(self._fetch_usage())
        return self._sample if now - self._fetched_at <= USAGE_MAX_AGE else None

    async def _fetch_usage(self) -> None:
        try:
            self._sample = await self.fetch_usage()
        except st.ApiError as exc:
            log.debug("usage of node %s: %s", self.name, exc.message)
            self._sample = None
        except Exception:
            log.exception("usage of node %s", self.name)
            self._sample = None
        finally:
            self._fetched_at = time.monotonic()
            self._refresh = None

    async def fetch_usage(self) -> NodeUsage:
        """The agent's latest sample now (raises ApiError)."""
        url = await self._base_url()
        timeout = aiohttp.ClientTimeout(
            total=READ_TIMEOUT, connect=2 * CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT
        )
        try:
            session = self.nodes.session()
            async with session.get(
                url + wire.USAGE_PATH, timeout=timeout, server_hostname=self.name
            ) as response:
                if response.status != 200:
                    raise await self._error_from(response)
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._dial_error(url, exc) from exc
        try:
            return wire.usage_from_json(orjson.loads(body))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise st.internal(f'node "{self.name}" sent a malformed usage sample: {exc}') from exc

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh
            self._refresh = None
