"""Corral's client library: one async API over two transports (HTTP and in-process), plus informers and a
work queue for controllers.

``connect(kubeconfig=None)`` gives an HTTP client from a kubeconfig; ``Client(LocalTransport(api))`` runs in
the server process with no sockets.
"""

from __future__ import annotations

from corral.client.base import JSON, ObjectList, Transport, WatchEvent
from corral.client.http import HttpTransport
from corral.client.kubeconfig import ClusterAccess, KubeconfigError, find_kubeconfig, load_access
from corral.client.local import LocalTransport

__all__ = [
    "JSON",
    "ClusterAccess",
    "HttpTransport",
    "KubeconfigError",
    "LocalTransport",
    "ObjectList",
    "Transport",
    "WatchEvent",
    "connect",
    "find_kubeconfig",
    "load_access",
]


def connect(kubeconfig: str | None = None, context: str | None = None) -> tuple[HttpTransport, ClusterAccess]:
    """An HTTP transport for the kubeconfig's current (or given) context."""
    access = load_access(find_kubeconfig(kubeconfig), context)
    return HttpTransport(access), access
