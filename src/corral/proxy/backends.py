"""Which endpoints of a Service may receive traffic, read from its EndpointSlices (discovery.k8s.io/v1).

One shared reading for every data-plane consumer (the service proxy, the DNS server, the ingress), so they
agree on what "ready" means. Pure functions over plain JSON dicts; no IO.

Rules, as kube-proxy applies them:

- An endpoint is *ready* when ``conditions.ready`` is true (absent counts as true, per the API docs) and it
  is not terminating. New connections go to ready endpoints.
- When a Service has no ready endpoint for a port, terminating endpoints that are still ``serving`` take new
  connections (upstream's ProxyTerminatingEndpoints), so a Service whose every pod is being replaced keeps
  answering until the last one stops serving.
- Slices carry their ports per slice, not per endpoint. In Corral every pod gets its own host port, so the
  endpoints controller groups pods with the same resolved ports into one slice; a backend is therefore the
  pair (address, port) taken from the slice the endpoint sits in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True, order=True)
class Backend:
    """One endpoint address and port of one Service port."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node: str = ""
    pod: str = ""
    """``namespace/name`` of the target pod, or "" when the endpoint has no pod (hand-written endpoints)."""
    hostname: str = ""

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)


def service_key(service: Mapping[str, Any]) -> str:
    meta = service.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


def slice_service_key(endpoint_slice: Mapping[str, Any]) -> str | None:
    """The ``namespace/name`` of the Service a slice belongs to (its ``kubernetes.io/service-name`` label)."""
    meta = endpoint_slice.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not name:
        return None
    return f"{meta.get('namespace') or 'default'}/{name}"


def group_slices(slices: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Slices grouped by the Service they belong to; slices without the service-name label are ignored."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for endpoint_slice in slices:
        key = slice_service_key(endpoint_slice)
        if key is not None:
            grouped.setdefault(key, []).append(endpoint_slice)
    return grouped


def _flag(conditions: Mapping[str, Any], name: str, default: bool) -> bool:
    value = conditions.get(name)
    return default if value is None else bool(value)


def backends_by_port(slices: Iterable[Mapping[str, Any]]) -> dict[str, tuple[Backend, ...]]:
    """Every endpoint of a Service's slices, per Service port name ("" for an unnamed port), sorted.

    Only IPv4/IPv6 slices count (FQDN slices are not routable here); duplicates across slices collapse.
    """
    found: dict[str, set[Backend]] = {}
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        for port in endpoint_slice.get("ports") or []:
            number = port.get("port")
            if not isinstance(number, int) or not 0 < number < 65536:
                continue
            name = str(port.get("name") or "")
            bucket = found.setdefault(name, set())
            for endpoint in endpoint_slice.get("endpoints") or []:
                conditions = endpoint.get("conditions") or {}
                terminating = _flag(conditions, "terminating", False)
                ready = _flag(conditions, "ready", True) and not terminating
                serving = _flag(conditions, "serving", ready)
                ref = endpoint.get("targetRef") or {}
                pod = f"{ref.get('namespace') or ''}/{ref.get('name')}" if ref.get("kind") == "Pod" else ""
                for ip in endpoint.get("addresses") or []:
                    bucket.add(
                        Backend(
                            ip=str(ip),
                            port=number,
                            ready=ready,
                            serving=serving,
                            terminating=terminating,
                            node=str(endpoint.get("nodeName") or ""),
                            pod=pod,
                            hostname=str(endpoint.get("hostname") or ""),
                        )
                    )
    return {name: tuple(sorted(bucket)) for name, bucket in found.items()}


def routable(backends: Iterable[Backend]) -> tuple[Backend, ...]:
    """The backends new connections may go to: the ready ones, else the serving terminating ones."""
    candidates = tuple(backends)
    ready = tuple(b for b in candidates if b.ready)
    if ready:
        return ready
    return tuple(b for b in candidates if b.terminating and b.serving)
