"""The resource metrics API (``metrics.k8s.io/v1beta1`` PodMetrics, NodeMetrics) as metrics-server serves it.

Boundary: objects are computed on each request from the agents' latest in-memory usage samples
(``agent.usage``), which the server reaches through the :class:`NodeDirectory` — the same way ``pods/log``
reaches a node. Nothing is stored. The provider plugs into :class:`ResourceAPI` as a computed resource, so
HTTP clients (``kubectl top``) and in-process ones (``LocalTransport``, e.g. an autoscaler) read the same
objects, and every write or watch is 405 MethodNotAllowed.

As metrics-server: a pod appears once its node has measured at least one of its containers (a pod that is not
running has no PodMetrics: 404 for a get, absent from lists); label selectors match the pod's (node's)
labels; a get of a missing object is ``podmetrics.metrics.k8s.io "<ns>/<name>" not found``. A remote agent's
sample comes from its node API through a small cache (``remotenode.py``: refreshed in the background, so a
remote node's first request after a quiet spell may find none yet); nodes the server cannot reach at all
have no metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from corral.agent.usage import NodeUsage, PodUsage, Usage, format_cpu, format_memory, go_duration
from corral.api.resources import REGISTRY, ResourceType
from corral.api.selectors import FieldSelector, LabelSelector, field_value
from corral.apiserver import status as st
from corral.apiserver.nodeproxy import NodeDirectory
from corral.apiserver.rest import ResourceAPI
from corral.util.clock import rfc3339

JSON = dict[str, Any]

POD_METRICS = REGISTRY.require("podmetrics.metrics.k8s.io")
NODE_METRICS = REGISTRY.require("nodemetrics.metrics.k8s.io")
PODS = REGISTRY.require("pods")
NODES = REGISTRY.require("nodes")

UsageLookup = Callable[[str], NodeUsage | None]
"""Node name → its latest usage sample (None when the node is unknown, remote, or not sampled yet)."""


# --------------------------------------------------------------------------------------------- pure builders


def _usage(u: Usage) -> JSON:
    return {"cpu": format_cpu(u.cpu_nanocores), "memory": format_memory(u.memory_bytes)}


def _metadata(obj: JSON, now: datetime, namespaced: bool) -> JSON:
    meta = obj.get("metadata") or {}
    out: JSON = {"name": meta.get("name", "")}
    if namespaced:
        out["namespace"] = meta.get("namespace", "")
    out["creationTimestamp"] = rfc3339(now)  # metrics objects are made at request time, as upstream
    if meta.get("labels"):
        out["labels"] = dict(meta["labels"])
    return out


def pod_metrics(pod: JSON, usage: PodUsage, now: datetime) -> JSON:
    """The PodMetrics of ``pod``; containers in the order of its spec (then any others by name)."""
    spec_order = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    names = [n for n in spec_order if n in usage.containers]
    names += sorted(n for n in usage.containers if n not in names)
    return {
        "kind": POD_METRICS.kind,
        "apiVersion": POD_METRICS.api_version,
        "metadata": _metadata(pod, now, True),
        "timestamp": rfc3339(usage.timestamp),
        "window": go_duration(usage.window),
        "containers": [{"name": n, "usage": _usage(usage.containers[n])} for n in names],
    }


def node_metrics(node: JSON, usage: Usage, now: datetime) -> JSON:
    return {
        "kind": NODE_METRICS.kind,
        "apiVersion": NODE_METRICS.api_version,
        "metadata": _metadata(node, now, False),
        "timestamp": rfc3339(usage.timestamp),
        "window": go_duration(usage.window),
        "usage": _usage(usage),
    }


def pod_usage(pod: JSON, lookup: UsageLookup) -> PodUsage | None:
    node_name = (pod.get("spec") or {}).get("nodeName")
    sample = lookup(node_name) if node_name else None
    if sample is None:
        return None
    found = sample.pods.get(str((pod.get("metadata") or {}).get("uid", "")))
    return found if found is not None and found.containers else None


def _selected(obj: JSON, labels: LabelSelector, fields: FieldSelector) -> bool:
    if not labels.matches((obj.get("metadata") or {}).get("labels")):
        return False
    return not fields.requirements or fields.matches(lambda path: field_value(obj, path))


# --------------------------------------------------------------------------------------------- provider


class MetricsProvider:
    """``ComputedResource`` for PodMetrics and NodeMetrics: the store's pods/nodes plus the nodes' samples."""

    def __init__(self, api: ResourceAPI, nodes: NodeDirectory) -> None:
        self.api = api
        self.nodes = nodes

    def _lookup(self) -> UsageLookup:
        cache: dict[str, NodeUsage | None] = {}

        def lookup(node_name: str) -> NodeUsage | None:
            if node_name not in cache:
                endpoint = self.nodes.get(node_name)
                cache[node_name] = endpoint.resource_usage() if endpoint is not None else None
            return cache[node_name]

        return lookup

    @staticmethod
    def _not_found(rt: ResourceType, namespace: str | None, name: str) -> st.ApiError:
        shown = f"{namespace}/{name}" if namespace else name
        resource = rt.kind.lower()  # metrics-server names its group resource podmetrics / nodemetrics
        return st.ApiError(
            404, "NotFound", f'{resource}.{rt.group} "{shown}" not found', shown, rt.group, resource
        )

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> JSON:
        now = self.api.clock.now()
        if rt.kind == POD_METRICS.kind:
            try:
                pod = await self.api.get(PODS, namespace, name)
            except st.ApiError as exc:
                if exc.code == 404:
                    raise self._not_found(rt, namespace, name) from exc
                raise
            usage = pod_usage(pod, self._lookup())
            if usage is None:
                raise self._not_found(rt, namespace, name)
            return pod_metrics(pod, usage, now)
        try:
            node = await self.api.get(NODES, None, name)
        except st.ApiError as exc:
            if exc.code == 404:
                raise self._not_found(rt, None, name) from exc
            raise
        sample = self._lookup()(name)
        if sample is None or sample.node is None:
            raise self._not_found(rt, None, name)
        return node_metrics(node, sample.node, now)

    async def list(
        self, rt: ResourceType, namespace: str | None, labels: LabelSelector, fields: FieldSelector
    ) -> list[JSON]:
        now = self.api.clock.now()
        lookup = self._lookup()
        out: list[JSON] = []
        if rt.kind == POD_METRICS.kind:
            for pod in (await self.api.list(PODS, namespace)).items:
                if not labels.matches((pod.get("metadata") or {}).get("labels")):
                    continue
                usage = pod_usage(pod, lookup)
                if usage is not None:
                    obj = pod_metrics(pod, usage, now)
                    if _selected(obj, labels, fields):
                        out.append(obj)
            return out
        for node in (await self.api.list(NODES, None)).items:
            sample = lookup(str((node.get("metadata") or {}).get("name", "")))
            if sample is not None and sample.node is not None:
                obj = node_metrics(node, sample.node, now)
                if _selected(obj, labels, fields):
                    out.append(obj)
        return out


def install(api: ResourceAPI, nodes: NodeDirectory) -> MetricsProvider:
    """Serve ``metrics.k8s.io`` from ``api`` (HTTP and in-process clients); samples come through ``nodes``."""
    provider = MetricsProvider(api, nodes)
    api.serve_computed(POD_METRICS, provider)
    api.serve_computed(NODE_METRICS, provider)
    return provider


__all__ = ["MetricsProvider", "install", "node_metrics", "pod_metrics", "pod_usage"]
