"""``corral logs`` and ``corral exec``: a pod's output and a command inside it, as kubectl offers them.

``logs`` is one ``GET pods/{name}/log`` whose body is copied to stdout as it arrives (with ``-f`` until the
server ends the stream or the user presses Ctrl-C, which exits 0 as kubectl does). ``exec`` is a WebSocket to
``pods/{name}/exec`` speaking the ``v5.channel.k8s.io`` protocol: every binary frame starts with its channel
(0 stdin, 1 stdout, 2 stderr, 3 the final Status); ``[255, 0]`` closes stdin. The remote exit code becomes
ours, and kubectl's ``command terminated with exit code N`` line goes to stderr.

The API server answers both for pods on its built-in node only; a pod on a node that joined with
``corral agent`` gets a 503 (the server does not proxy to remote agents yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import sys
import threading
from datetime import datetime
from typing import Annotated, BinaryIO
from urllib.parse import quote

import aiohttp
import orjson
import typer

from corral.apiserver.status import ApiError, Cause
from corral.cli.errors import CliError
from corral.cli.output import Printer
from corral.cli.session import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    cluster_options,
    connected,
    run,
)

EXEC_PROTOCOL = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, STATUS, CLOSE = 0, 1, 2, 3, 255
STDIN_CHUNK = 32 * 1024

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

ContainerOption = Annotated[
    str | None,
    typer.Option(
        "--container",
        "-c",
        help="Container name (default: the only one, or the default-container annotation).",
        show_default=False,
    ),
]


def parse_duration(text: str) -> float:
    """A Go duration (``30s``, ``5m``, ``1h30m``, ``1.5h``) in seconds, as ``--since`` takes it."""
    value = text.strip()
    if value in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if match is None:
            raise CliError(f'invalid argument "{text}" for "--since" flag: time: invalid duration "{text}"')
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total


def pod_name(argument: str) -> str:
    """``web`` or ``pod/web`` / ``pods/web`` → ``web``; other kinds are refused (no controller lookup yet)."""
    if "/" not in argument:
        return argument
    kind, name = argument.split("/", 1)
    if kind.lower() not in ("pod", "pods", "po") or not name:
        raise CliError(f"cannot use {argument!r}: only pods are supported (give a pod name or pod/NAME)")
    return name


def _pod_path(namespace: str, name: str, subresource: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/{subresource}"


def _write(stream: BinaryIO, data: bytes) -> None:
    stream.write(data)
    stream.flush()


# --- logs ----------------------------------------------------------------------------------------------


def logs(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument(help="Pod name (or pod/NAME).", show_default=False)],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new output.")] = False,
    container: ContainerOption = None,
    tail: Annotated[
        int, typer.Option("--tail", help="Lines of recent output to show; -1 shows everything.")
    ] = -1,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Only output newer than this duration (5s, 2m, 3h).", show_default=False
        ),
    ] = None,
    since_time: Annotated[
        str | None,
        typer.Option("--since-time", help="Only output after this RFC 3339 time.", show_default=False),
    ] = None,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", help="Prefix each line with its RFC 3339 time.")
    ] = False,
    previous: Annotated[
        bool, typer.Option("--previous", "-p", help="Output of the previous (restarted) instance.")
    ] = False,
    limit_bytes: Annotated[
        int, typer.Option("--limit-bytes", help="Stop after this many bytes; 0 means no limit.", min=0)
    ] = 0,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Print a container's output (stdout and stderr, interleaved as written).

    Pods on nodes joined with `corral agent` are not served yet (the API server answers 503).
    """
    name = pod_name(pod)
    params: dict[str, str] = {}
    if follow:
        params["follow"] = "true"
    if container:
        params["container"] = container
    if tail >= 0:
        params["tailLines"] = str(tail)
    if since is not None and since_time is not None:
        raise CliError("at most one of `sinceTime` or `sinceSeconds` may be specified")
    if since is not None:
        seconds = parse_duration(since)
        if seconds > 0:
            params["sinceSeconds"] = str(math.ceil(seconds))  # kubectl rounds up to whole seconds
    if since_time is not None:
        try:
            datetime.fromisoformat(since_time.replace("Z", "+00:00"))
        except ValueError as exc:
            raise CliError(
                f'invalid argument "{since_time}" for "--since-time": not an RFC 3339 time'
            ) from exc
        params["sinceTime"] = since_time
    if timestamps:
        params["timestamps"] = "true"
    if previous:
        params["previous"] = "true"
    if limit_bytes:
        params["limitBytes"] = str(limit_bytes)
    options = cluster_options(ctx, kubeconfig, context)
    out = sys.stdout.buffer

    async def _logs() -> None:
        async with connected(options) as (transport, access):
            path = _pod_path(namespace or access.namespace, name, "log")
            async for chunk in transport.stream(path, params=params):
                _write(out, chunk)

    try:
        run(_logs())
    except KeyboardInterrupt:
        if not follow:
            raise
    except BrokenPipeError:  # `corral logs web | head`: the reader is gone, which is not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# --- exec ----------------------------------------------------------------------------------------------


class _StdinPump:
    """Reads local stdin on a daemon thread (stdin may be a file, a pipe or a terminal, none of which
    asyncio can read portably) and hands the chunks to the event loop; None marks end of input.

    A daemon thread, because a blocked ``read`` cannot be cancelled: when the remote command ends first, the
    process exits without waiting for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._loop = loop
        self._fd = fd
        threading.Thread(target=self._run, name="corral-exec-stdin", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self._fd, STDIN_CHUNK)
            except OSError:
                data = b""
            with contextlib.suppress(RuntimeError):  # the loop is closed: the command is over
                self._loop.call_soon_threadsafe(self.queue.put_nowait, data or None)
            if not data:
                return


def exit_code_from_status(status: dict[str, object]) -> int | ApiError:
    """The remote exit code from the final Status on channel 3, or the error the Status reports."""
    if status.get("status") == "Success":
        return 0
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    if status.get("reason") == "NonZeroExitCode" and isinstance(causes, list):
        for cause in causes:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                with contextlib.suppress(TypeError, ValueError):
                    return int(str(cause.get("message")))
    code = status.get("code")
    return ApiError(
        int(code) if isinstance(code, int) else 500,
        str(status.get("reason") or "InternalError"),
        str(status.get("message") or "exec failed"),
        causes=[
            Cause(str(c.get("reason", "")), str(c.get("message", "")), str(c.get("field", "")))
            for c in causes or []
            if isinstance(c, dict)
        ],
    )


async def _send_stdin(ws: aiohttp.ClientWebSocketResponse, pump: _StdinPump) -> None:
    while True:
        data = await pump.queue.get()
        if ws.closed:
            return
        if data is None:
            await ws.send_bytes(bytes([CLOSE, STDIN]))
            return
        await ws.send_bytes(bytes([STDIN]) + data)


async def _receive(ws: aiohttp.ClientWebSocketResponse, out: BinaryIO, err: BinaryIO) -> int | ApiError:
    result: int | ApiError | None = None
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.ERROR:
            reason = ws.exception() or "malformed WebSocket frames"
            raise ApiError(503, "ServiceUnavailable", f"exec stream failed: {reason}")
        if msg.type is not aiohttp.WSMsgType.BINARY or not msg.data:
            continue
        channel, payload = msg.data[0], msg.data[1:]
        if channel == STDOUT:
            _write(out, payload)
        elif channel == STDERR:
            _write(err, payload)
        elif channel == STATUS:
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                doc = {"status": "Failure", "message": payload.decode(errors="replace")}
            result = exit_code_from_status(doc if isinstance(doc, dict) else {})
    if result is None:
        raise ApiError(503, "ServiceUnavailable", "the exec stream ended without reporting an exit status")
    return result


def exec_command(
    ctx: typer.Context,
    pod: Annotated[str, typer.Argument(help="Pod name (or pod/NAME).", show_default=False)],
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The command and its arguments, after `--`.", show_default=False),
    ] = None,
    container: ContainerOption = None,
    stdin: Annotated[
        bool, typer.Option("--stdin", "-i", help="Pass local stdin to the command (EOF closes it).")
    ] = False,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Run a command in a running container: corral exec POD [-c C] [-i] -- CMD ARGS...

    Exits with the command's exit code. No terminal (-t).

    Pods on nodes joined with `corral agent` are not served yet (the API server answers 503).
    """
    name = pod_name(pod)
    argv = list(command or [])
    if not argv:
        raise CliError("you must specify at least one command for the container")
    params = [("command", part) for part in argv]
    params += [("stdout", "true"), ("stderr", "true")]
    if stdin:
        params.append(("stdin", "true"))
    if container:
        params.append(("container", container))
    options = cluster_options(ctx, kubeconfig, context)
    out, err = sys.stdout.buffer, sys.stderr.buffer

    async def _exec() -> int | ApiError:
        async with connected(options) as (transport, access):
            path = _pod_path(namespace or access.namespace, name, "exec")
            async with transport.websocket(path, params=params, protocols=(EXEC_PROTOCOL,)) as ws:
                sender = None
                if stdin:
                    pump = _StdinPump(asyncio.get_running_loop(), sys.stdin.fileno())
                    sender = asyncio.create_task(_send_stdin(ws, pump))
                try:
                    return await _receive(ws, out, err)
                finally:
                    if sender is not None:
                        sender.cancel()
                        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                            await sender

    result = run(_exec())
    if isinstance(result, ApiError):
        raise result
    if result != 0:
        Printer().error(f"command terminated with exit code {result}")  # kubectl's line, no "error:" prefix
        raise typer.Exit(result)


def register(app: typer.Typer) -> None:
    app.command()(logs)
    app.command("exec")(exec_command)
