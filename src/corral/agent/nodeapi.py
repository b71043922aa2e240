"""The agent's node API (the kubelet's port 10250): container logs, exec and the usage sample of one node,
served over mutual TLS to the API server only. Wire format: ``agent/nodewire.py``.

Trust: the listener presents the node's serving certificate (signed by the cluster CA at join, see
``apiserver/nodecerts.py``) and requires a client certificate signed by the cluster CA; a request is then
served only when that certificate is the API server's (CN ``corral:apiserver-kubelet-client``, usable for
client authentication): a node's own certificate, also signed by the CA, gets 403. A client without a
certificate fails the TLS handshake. There are no tokens: kubectl never talks to this port, the API server
authorizes the user (``pods/log``, ``pods/exec``) and relays.

Boundary: HTTP and WebSocket plumbing over a :class:`NodeEndpoint` (the agent); the agent's own checks
(container known, running) raise the ApiErrors that travel back as Status bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiohttp import WSMsgType, web

from corral.agent import nodewire as wire
from corral.apiserver import status as st
from corral.apiserver.nodecerts import peer_identity, serving_cert_problem
from corral.apiserver.nodeproxy import NodeEndpoint
from corral.apiserver.podstreams import stream_logs

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVING_CERT, SERVING_KEY = "node-api.crt", "node-api.key"
"""The serving certificate and key in the agent's data dir (from the join exchange, ``cli/join.py``)."""


def server_context(ca_pem: bytes, cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """TLS for the listener: our serving certificate, and a client certificate of the cluster CA required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=ca_pem.decode())
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _status_response(err: st.ApiError) -> web.Response:
    return web.Response(status=err.code, body=st.encode_status(err.status()), content_type="application/json")


@web.middleware
async def _only_the_apiserver(request: web.Request, handler: Handler) -> web.StreamResponse:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:  # the handshake requires one; this is a guard against a misconfigured context
        return _status_response(st.unauthorized())
    cn, client_use = peer_identity(der)
    if cn != wire.APISERVER_CLIENT_CN or not client_use:
        return _status_response(
            st.ApiError(403, "Forbidden", f'forbidden: User "{cn}" may not use the node API')
        )
    try:
        return await handler(request)
    except st.ApiError as err:
        return _status_response(err)


class NodeApiServer:
    """The HTTPS listener; :meth:`start` binds, :meth:`stop` closes (open streams are cut)."""

    def __init__(self, endpoint: NodeEndpoint, context: ssl.SSLContext) -> None:
        self.endpoint = endpoint
        self.context = context
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_only_the_apiserver])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        app.router.add_get("/exec/{namespace}/{pod}/{uid}/{container}", self._exec)
        app.router.add_get(wire.USAGE_PATH, self._usage)
        return app

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port. Raises OSError when it is taken."""
        self._runner = web.AppRunner(
            self.app(), handler_cancellation=True, access_log=None, shutdown_timeout=1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self.context, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self.stop()
            raise
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _usage(self, request: web.Request) -> web.Response:
        return web.json_response(wire.usage_to_json(self.endpoint.resource_usage()), dumps=_dumps)

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        uid = request.query.get("podUID", "")
        if not uid:
            raise st.bad_request("podUID is required")
        options = wire.log_options(m["container"], request.query)
        pod = wire.pod_stub(m["namespace"], m["pod"], uid)
        return await stream_logs(request, self.endpoint.container_logs(pod, options))

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        argv = request.query.getall("command", [])
        if not argv:
            raise st.bad_request("you must specify at least one command for the container")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise st.bad_request(f"exec requires a WebSocket upgrade ({wire.EXEC_PROTOCOL})")
        tty = request.query.get("tty", "").lower() in ("true", "1")
        use_stdin = request.query.get("stdin", "").lower() in ("true", "1")
        ws = web.WebSocketResponse(protocols=(wire.EXEC_PROTOCOL,), max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        streams = _Streams(ws, use_stdin)
        reader = asyncio.create_task(streams.pump())
        pod = wire.pod_stub(m["namespace"], m["pod"], m["uid"])
        try:
            status = wire.exit_status(await self.endpoint.exec(pod, m["container"], argv, streams, tty))
        except st.ApiError as err:
            status = wire.error_status(err)
        except Exception as exc:  # after the upgrade an escaped error would only cut the stream
            log.warning("exec in %s/%s failed: %s", m["namespace"], m["pod"], exc)
            status = wire.error_status(st.internal(f"error executing command in container: {exc}"))
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await ws.send_bytes(wire.frame(wire.STATUS, orjson.dumps(status)))
            await ws.close(code=1000)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        return ws


def _dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


class _Streams:
    """``ExecStreams`` over the channel frames of one WebSocket."""

    def __init__(self, ws: web.WebSocketResponse, use_stdin: bool) -> None:
        self.ws = ws
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._open = use_stdin
        if not use_stdin:
            self._stdin.put_nowait(None)

    def _end_stdin(self) -> None:
        if self._open:
            self._open = False
            self._stdin.put_nowait(None)

    async def pump(self) -> None:
        async for msg in self.ws:
            parsed = wire.parse_frame(msg.data) if msg.type is WSMsgType.BINARY else None
            if parsed is None:
                continue
            channel, payload = parsed
            if channel == wire.STDIN and self._open:
                self._stdin.put_nowait(payload)
            elif channel == wire.CLOSE and payload[:1] == bytes([wire.STDIN]):
                self._end_stdin()
        self._end_stdin()

    async def read_stdin(self) -> bytes | None:
        return await self._stdin.get()

    async def write_stdout(self, data: bytes) -> None:
        if data and not self.ws.closed:
            await self.ws.send_bytes(wire.frame(wire.STDOUT, data))

    async def write_stderr(self, data: bytes) -> None:
        if data and not self.ws.closed:
            await self.ws.send_bytes(wire.frame(wire.STDERR, data))


async def open_node_api(
    endpoint: NodeEndpoint, node_name: str, data_dir: Path, ca_pem: bytes | None, address: str, port: int
) -> tuple[NodeApiServer | None, int]:
    """Start the node API on ``address:port`` when the agent can: it needs the cluster CA (to verify the API
    server) and a serving certificate for ``node_name``. Otherwise, and when the port is taken, the node
    runs without it (its pods' logs, exec and metrics are then unavailable): a warning says why, and the
    port published is 0. Returns the server and its port."""
    cert_path, key_path = data_dir / SERVING_CERT, data_dir / SERVING_KEY
    why = None
    if ca_pem is None:
        why = (
            "the cluster CA is unknown (a plain-HTTP server, or --insecure-skip-tls-verify): it could not "
            "verify the API server"
        )
    elif not cert_path.exists() or not key_path.exists():
        why = (
            f"no serving certificate in {data_dir} (the node joined before node APIs existed, or without a "
            "join token): delete node.kubeconfig there and start the agent again with a join token"
        )
    else:
        problem = serving_cert_problem(cert_path.read_bytes(), node_name, datetime.now(UTC))
        if problem is not None:
            why = (
                f"its serving certificate {cert_path} cannot be used: {problem} (delete "
                "node.kubeconfig there and start the agent again with a join token to get a new one)"
            )
    if why is not None:
        log.warning("node API off: %s; logs, exec and metrics of this node's pods are unavailable", why)
        return None, 0
    assert ca_pem is not None
    server = NodeApiServer(endpoint, server_context(ca_pem, cert_path, key_path))
    try:
        bound = await server.start(address, port)
    except OSError as exc:
        log.warning("node API off: cannot listen on %s:%s: %s", address, port, exc.strerror or exc)
        return None, 0
    log.info("node API listening on https://%s:%s", address, bound)
    return server, bound
