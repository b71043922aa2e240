"""The node API's wire format (what the agent serves on its kubelet-like port, see ``agent/nodeapi.py``, and
what the API server's ``apiserver/remotenode.py`` speaks): paths, log query parameters, exec channel frames,
exec Status ↔ exit code, and usage samples as JSON. Pure: no IO, shared by both ends.

Paths (the kubelet's shapes):

* ``GET /containerLogs/{namespace}/{pod}/{container}?podUID=…`` with the ``pods/log`` query parameters
  (``follow``, ``tailLines``, ``sinceSeconds``, ``sinceTime``, ``timestamps``, ``previous``, ``limitBytes``):
  ``text/plain`` chunks, streamed while ``follow``.
* ``GET /exec/{namespace}/{pod}/{uid}/{container}?command=…&command=…&tty=…``: a WebSocket with subprotocol
  ``v5.channel.k8s.io`` — the same channel protocol the API server speaks to kubectl (reference §11.1), so
  the API server relays frames without translation: binary frames whose first byte is the channel (0 stdin,
  1 stdout, 2 stderr, 3 status, 4 resize), ``[255, ch]`` closes channel ``ch`` (the API server sends
  ``[255, 0]`` at end of stdin), and the last frame is a ``metav1.Status`` on channel 3: ``Success``, or
  ``Failure`` with reason ``NonZeroExitCode`` and the exit code as an ``ExitCode`` cause, or any other
  Failure (code, reason, message of the agent's ApiError). The agent then closes with code 1000.
* ``GET /stats/usage``: the node's latest :class:`NodeUsage` as JSON (``{"node": null, "pods": {}}`` before
  the first sample).

Errors other than exec's are ``metav1.Status`` JSON bodies with the ApiError's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from corral.agent.usage import NodeUsage, PodUsage, Usage
from corral.apiserver import status as st
from corral.apiserver.nodeproxy import LogOptions
from corral.util.clock import parse_rfc3339

JSON = dict[str, Any]

DEFAULT_PORT = 10250
"""The kubelet's port; published in the Node's ``status.daemonEndpoints.kubeletEndpoint.Port``."""
APISERVER_CLIENT_CN = "corral:apiserver-kubelet-client"
"""Common name of the API server's client certificate: the only client the node API serves."""
EXEC_PROTOCOL = "v5.channel.k8s.io"
USAGE_PATH = "/stats/usage"
STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


# --------------------------------------------------------------------------------------------- paths


def _seg(text: str) -> str:
    return quote(text, safe="")


def logs_path(namespace: str, pod: str, container: str) -> str:
    return f"/containerLogs/{_seg(namespace)}/{_seg(pod)}/{_seg(container)}"


def exec_path(namespace: str, pod: str, uid: str, container: str) -> str:
    return f"/exec/{_seg(namespace)}/{_seg(pod)}/{_seg(uid)}/{_seg(container)}"


def pod_stub(namespace: str, name: str, uid: str) -> JSON:
    """The part of a pod the agent's logs and exec look at (its own state is keyed by uid)."""
    return {"metadata": {"namespace": namespace, "name": name, "uid": uid}}


# --------------------------------------------------------------------------------------------- logs


def log_query(pod_uid: str, options: LogOptions) -> list[tuple[str, str]]:
    """``options`` as query parameters (only those that differ from the defaults)."""
    query = [("podUID", pod_uid)]
    if options.follow:
        query.append(("follow", "true"))
    if options.tail_lines is not None:
        query.append(("tailLines", str(options.tail_lines)))
    if options.since_seconds is not None:
        query.append(("sinceSeconds", str(options.since_seconds)))
    if options.since_time is not None:
        query.append(("sinceTime", options.since_time.isoformat()))
    if options.timestamps:
        query.append(("timestamps", "true"))
    if options.previous:
        query.append(("previous", "true"))
    if options.limit_bytes is not None:
        query.append(("limitBytes", str(options.limit_bytes)))
    return query


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def _int(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise st.bad_request(f"{name}: invalid value {value!r}: must be an integer") from exc


def log_options(container: str, query: Mapping[str, str]) -> LogOptions:
    """The inverse of :func:`log_query` (raises a 400 ApiError on a malformed value)."""
    since = query.get("sinceTime")
    try:
        since_time = parse_rfc3339(since) if since else None
    except ValueError as exc:
        raise st.bad_request(f"sinceTime: invalid value {since!r}") from exc
    return LogOptions(
        container=container,
        follow=_flag(query, "follow"),
        tail_lines=_int(query, "tailLines"),
        since_seconds=_int(query, "sinceSeconds"),
        since_time=since_time,
        timestamps=_flag(query, "timestamps"),
        previous=_flag(query, "previous"),
        limit_bytes=_int(query, "limitBytes"),
    )


# --------------------------------------------------------------------------------------------- exec


def frame(channel: int, data: bytes) -> bytes:
    return bytes([channel]) + data


def close_frame(channel: int) -> bytes:
    return bytes([CLOSE, channel])


def parse_frame(data: bytes) -> tuple[int, bytes] | None:
    """``(channel, payload)``; None for an empty frame (ignored, as upstream does)."""
    if not data:
        return None
    return data[0], bytes(data[1:])


def exit_status(code: int) -> JSON:
    """The channel-3 Status of a command that exited with ``code`` (upstream's exact shape)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def error_status(err: st.ApiError) -> JSON:
    return {
        "metadata": {},
        "status": "Failure",
        "message": err.message,
        "reason": err.reason,
        "code": err.code,
    }


def status_outcome(status: Any) -> int | st.ApiError:
    """The exit code a channel-3 Status reports, or the error it carries."""
    if not isinstance(status, dict):
        return st.internal("the node answered exec with a malformed status")
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                try:
                    return int(cause.get("message", ""))
                except ValueError:
                    break
        return st.internal("the node answered exec with a non-zero exit but no exit code")
    code = status.get("code")
    return st.ApiError(
        code if isinstance(code, int) and 400 <= code < 600 else 500,
        str(status.get("reason") or "InternalError"),
        str(status.get("message") or "exec failed on the node"),
    )


# --------------------------------------------------------------------------------------------- usage


def _usage_json(u: Usage) -> JSON:
    return {
        "timestamp": u.timestamp.isoformat(),
        "window": u.window,
        "cpuNanoCores": u.cpu_nanocores,
        "memoryWorkingSetBytes": u.memory_bytes,
    }


def _usage(d: Mapping[str, Any]) -> Usage:
    return Usage(
        datetime.fromisoformat(str(d["timestamp"])),
        float(d["window"]),
        int(d["cpuNanoCores"]),
        int(d["memoryWorkingSetBytes"]),
    )


def usage_to_json(sample: NodeUsage | None) -> JSON:
    if sample is None:
        return {"node": None, "pods": {}}
    return {
        "node": _usage_json(sample.node) if sample.node is not None else None,
        "pods": {
            uid: {
                "timestamp": p.timestamp.isoformat(),
                "window": p.window,
                "containers": {name: _usage_json(u) for name, u in p.containers.items()},
            }
            for uid, p in sample.pods.items()
        },
    }


def usage_from_json(doc: Any) -> NodeUsage:
    """Raises ValueError on a document :func:`usage_to_json` would not write."""
    try:
        node = doc["node"]
        pods = {
            str(uid): PodUsage(
                datetime.fromisoformat(str(p["timestamp"])),
                float(p["window"]),
                {str(name): _usage(u) for name, u in p["containers"].items()},
            )
            for uid, p in doc["pods"].items()
        }
        return NodeUsage(_usage(node) if node is not None else None, pods)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed usage sample: {exc}") from exc


__all__ = [
    "APISERVER_CLIENT_CN",
    "DEFAULT_PORT",
    "EXEC_PROTOCOL",
    "USAGE_PATH",
    "close_frame",
    "error_status",
    "exec_path",
    "exit_status",
    "frame",
    "log_options",
    "log_query",
    "logs_path",
    "parse_frame",
    "pod_stub",
    "status_outcome",
    "usage_from_json",
    "usage_to_json",
]
