"""``pods/log`` (chunked text) and ``pods/exec`` (WebSocket, v5/v4 channel protocol) handlers.

Exec framing (reference §11.1): binary frames whose first byte is the channel — 0 stdin, 1 stdout,
2 stderr, 3 error/status, 4 resize; in v5 a frame ``[0xFF, ch]`` closes channel ``ch``. The final Status
goes on channel 3, then a close frame with code 1000. aiohttp implements RFC 6455 itself; only the channel
layer is ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from corral.agent import nodewire as wire
from corral.apiserver import status as st
from corral.apiserver.nodeproxy import NodeDirectory, NodeEndpoint
from corral.apiserver.rest import ResourceAPI

log = logging.getLogger(__name__)

JSON = dict[str, Any]
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def pick_container(pod: JSON, requested: str | None) -> str:
    """The container a log/exec request means, with upstream's errors for ambiguous or unknown names."""
    spec = pod.get("spec") or {}
    names = [c.get("name", "") for c in spec.get("containers") or []]
    init = [c.get("name", "") for c in spec.get("initContainers") or []]
    pod_name = pod["metadata"]["name"]
    if requested:
        if requested not in names and requested not in init:
            raise st.bad_request(f"container {requested} is not valid for pod {pod_name}")
        return str(requested)
    default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if default in names:
        return str(default)
    if len(names) == 1:
        return str(names[0])
    raise st.bad_request(
        f"a container name must be specified for pod {pod_name}, choose one of: "
        f"[{' '.join(names)}]" + (f" or one of the init containers: [{' '.join(init)}]" if init else "")
    )


async def stream_logs(request: web.Request, logs: AsyncIterator[bytes]) -> web.StreamResponse:
    """A log stream as a chunked text/plain response. The first chunk is read before the headers go out,
    so an error raised by then (container not started, bad options) is still answered as a Status."""
    chunks = logs.__aiter__()
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = b""
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        if first:
            await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    return response


class PodStreams:
    def __init__(self, api: ResourceAPI, nodes: NodeDirectory) -> None:
        self.api = api
        self.nodes = nodes

    async def _pod_and_node(self, rt: Any, namespace: str | None, name: str) -> tuple[JSON, NodeEndpoint]:
        pod = await self.api.get(rt, namespace, name)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise st.bad_request(f"pod {name} does not have a host assigned")
        endpoint = self.nodes.get(node_name)
        if endpoint is None:
            raise st.ApiError(
                503,
                "ServiceUnavailable",
                f'the node "{node_name}" running pod {name} is not reachable from the API server',
            )
        return pod, endpoint

    async def logs(
        self, request: web.Request, rt: Any, namespace: str | None, name: str
    ) -> web.StreamResponse:
        pod, endpoint = await self._pod_and_node(rt, namespace, name)
        options = wire.log_options(pick_container(pod, request.query.get("container")), request.query)
        return await stream_logs(request, endpoint.container_logs(pod, options))

    async def exec(
        self, request: web.Request, rt: Any, namespace: str | None, name: str
    ) -> web.StreamResponse:
        pod, endpoint = await self._pod_and_node(rt, namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise st.bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        argv = request.query.getall("command", [])
        if not argv:
            raise st.bad_request("you must specify at least one command for the container")
        container = pick_container(pod, request.query.get("container"))
        use_stdin = request.query.get("stdin", "").lower() in ("true", "1")
        tty = request.query.get("tty", "").lower() in ("true", "1")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise st.ApiError(
                400,
                "BadRequest",
                "exec requires a WebSocket upgrade (v5.channel.k8s.io); SPDY is not supported",
            )
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, autoping=True, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        streams = _WebSocketStreams(ws, use_stdin, ws.ws_protocol == "v5.channel.k8s.io")
        reader = asyncio.create_task(streams.pump())
        try:
            code = await endpoint.exec(pod, container, argv, streams, tty)
            status: JSON = (
                {"metadata": {}, "status": "Success"}
                if code == 0
                else {
                    "metadata": {},
                    "status": "Failure",
                    "message": f"command terminated with non-zero exit code: exit status {code}",
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
                }
            )
        except st.ApiError as err:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": err.message,
                "reason": err.reason,
                "code": err.code,
            }
        except Exception as exc:  # after the upgrade an escaped error would corrupt the WebSocket stream
            log.warning("exec in %s/%s failed: %s", namespace, name, exc)
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"Internal error occurred: error executing command in container: {exc}",
                "reason": "InternalError",
                "code": 500,
            }
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await ws.send_bytes(bytes([ERROR]) + orjson.dumps(status))
            await ws.close(code=1000)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        return ws


class _WebSocketStreams:
    """ExecStreams over the channel protocol."""

    def __init__(self, ws: web.WebSocketResponse, use_stdin: bool, v5: bool) -> None:
        self.ws = ws
        self.v5 = v5
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue()
        if not use_stdin:
            self._stdin.put_nowait(None)
        self._stdin_open = use_stdin

    async def pump(self) -> None:
        async for msg in self.ws:
            if msg.type is not WSMsgType.BINARY or not msg.data:
                continue
            channel, payload = msg.data[0], msg.data[1:]
            if channel == STDIN and self._stdin_open:
                self._stdin.put_nowait(bytes(payload))
            elif channel == CLOSE and payload[:1] == bytes([STDIN]) and self._stdin_open:
                self._stdin_open = False
                self._stdin.put_nowait(None)
        if self._stdin_open:
            self._stdin_open = False
            self._stdin.put_nowait(None)

    async def read_stdin(self) -> bytes | None:
        return await self._stdin.get()

    async def write_stdout(self, data: bytes) -> None:
        if data and not self.ws.closed:
            await self.ws.send_bytes(bytes([STDOUT]) + data)

    async def write_stderr(self, data: bytes) -> None:
        if data and not self.ws.closed:
            await self.ws.send_bytes(bytes([STDERR]) + data)
