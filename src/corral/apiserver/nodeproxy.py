"""How the API server reaches a node's agent for ``pods/log``, ``pods/exec`` and resource usage (metrics API).

A node agent implements :class:`NodeEndpoint`; agents running inside ``corral up`` register themselves in the
:class:`NodeDirectory` directly (no sockets). Other nodes are reached through the directory's ``fallback``
(``apiserver/remotenode.py``: the agent's node API over mutual TLS), when the server has one (TLS on).
Requests for a node that has no endpoint get a clear 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from corral.agent.runtimes.base import ExecStreams
from corral.agent.usage import NodeUsage

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogOptions:
    container: str
    follow: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: datetime | None = None
    timestamps: bool = False
    previous: bool = False
    limit_bytes: int | None = None


class NodeEndpoint(Protocol):
    def container_logs(self, pod: JSON, options: LogOptions) -> AsyncIterator[bytes]:
        """The container's log bytes (then, with ``follow``, new bytes as they come). Raises ApiError."""
        ...

    async def exec(self, pod: JSON, container: str, argv: list[str], streams: ExecStreams, tty: bool) -> int:
        """Run ``argv`` in the container's environment; returns the exit code. Raises ApiError."""
        ...

    def resource_usage(self) -> NodeUsage | None:
        """The node's latest usage sample (node totals and running pods by uid); None before the first."""
        ...


class NodeDirectory:
    def __init__(self) -> None:
        self._endpoints: dict[str, NodeEndpoint] = {}
        self.fallback: Callable[[str], NodeEndpoint] | None = None
        """The endpoint of a node that registered none (a remote agent's), if the server can reach those."""

    def register(self, node_name: str, endpoint: NodeEndpoint) -> None:
        self._endpoints[node_name] = endpoint

    def unregister(self, node_name: str) -> None:
        self._endpoints.pop(node_name, None)

    def get(self, node_name: str) -> NodeEndpoint | None:
        found = self._endpoints.get(node_name)
        if found is None and self.fallback is not None:
            return self.fallback(node_name)
        return found
