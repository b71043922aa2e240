"""Series read from live state at scrape time: the store, work queues, the node agent, the service proxy.

The objects that keep this state register themselves with :data:`SOURCES` (``track_store``,
``track_queue``…); :class:`LiveState` reads them when ``/metrics`` is scraped, so nothing is added to the
request, watch or data paths. Sources are held by weak reference: a stopped server or agent drops out of the
output on its own. One process normally has one store, one agent and one proxy; a process that holds more
(tests) reports the last one registered, and the depth of equally named queues added up.

The pure parts (``resource_of_prefix``, ``service_labels``, the family builders) are separate from the
reading so the unit tests can feed them fakes.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.api.resources import REGISTRY as RESOURCES
from corral.api.resources import Registry


class StoreSource(Protocol):
    @property
    def revision(self) -> int: ...

    def count(self, prefix: str) -> int: ...

    def watch_counts(self) -> dict[str, int]: ...


class QueueSource(Protocol):
    def __len__(self) -> int: ...


class AgentSource(Protocol):
    def running_counts(self) -> tuple[int, int]:
        """(pods with a running container, running containers)."""
        ...


class ProxySource(Protocol):
    def stats(self) -> dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------- pure parts


def resource_of_prefix(prefix: str) -> str:
    """``/apps/deployments/`` → ``deployments.apps``; ``/core/pods/default/`` → ``pods`` (as Kubernetes
    spells resources in ``apiserver_storage_objects``)."""
    parts = prefix.strip("/").split("/")
    if len(parts) < 2:
        return ""
    group, plural = parts[0], parts[1]
    return plural if group == "core" else f"{plural}.{group}"


def storage_prefixes(registry: Registry = RESOURCES) -> dict[str, str]:
    """Every store key prefix of a served kind → its resource label (kinds served at several versions share
    one prefix)."""
    return {rt.storage_prefix(): resource_of_prefix(rt.storage_prefix()) for rt in registry.resources}


def watcher_kinds(registry: Registry = RESOURCES) -> dict[str, tuple[str, str]]:
    """Resource label (``deployments.apps``) → (group, kind) for ``apiserver_registered_watchers``."""
    kinds: dict[str, tuple[str, str]] = {}
    for rt in registry.resources:
        kinds.setdefault(resource_of_prefix(rt.storage_prefix()), (rt.group, rt.kind))
    return kinds


def service_labels(service: str) -> tuple[str, str]:
    """``namespace/name`` (the proxy's key of a Service) → (namespace, name)."""
    namespace, _, name = service.partition("/")
    return (namespace, name) if name else ("", namespace)


def store_families(
    store: StoreSource, size_bytes: int | None, writes: int, batches: int, registry: Registry = RESOURCES
) -> list[Metric]:
    objects = GaugeMetricFamily(
        "apiserver_storage_objects", "Stored objects per resource.", labels=["resource"]
    )
    for prefix, resource in sorted(storage_prefixes(registry).items(), key=lambda item: item[1]):
        objects.add_metric([resource], store.count(prefix))
    watchers = GaugeMetricFamily(
        "apiserver_registered_watchers",
        "Open store watches (HTTP watches and in-process informers) per kind.",
        labels=["group", "kind"],
    )
    kinds = watcher_kinds(registry)
    by_kind: dict[tuple[str, str], int] = {}
    for prefix, count in store.watch_counts().items():
        key = kinds.get(resource_of_prefix(prefix))
        if key is not None:
            by_kind[key] = by_kind.get(key, 0) + count
    for (group, kind), count in sorted(by_kind.items()):
        watchers.add_metric([group, kind], count)
    families: list[Metric] = [
        objects,
        watchers,
        GaugeMetricFamily("corral_store_revision", "The newest committed store revision.", store.revision),
        CounterMetricFamily("corral_store_writes", "Committed store writes.", writes),
        CounterMetricFamily(
            "corral_store_commit_batches", "Store transactions (writes are committed in batches).", batches
        ),
    ]
    if size_bytes is not None:
        families.append(
            GaugeMetricFamily(
                "corral_store_size_bytes", "SQLite database plus write-ahead log on disk.", size_bytes
            )
        )
    return families


def queue_family(depths: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily("workqueue_depth", "Keys waiting in a work queue.", labels=["name"])
    for name, depth in sorted(depths.items()):
        family.add_metric([name], depth)
    return family


def agent_families(pods: int, containers: int) -> list[Metric]:
    return [
        GaugeMetricFamily(
            "corral_agent_running_pods", "Pods with at least one running container on this node.", pods
        ),
        GaugeMetricFamily(
            "corral_agent_running_containers", "Running container processes on this node.", containers
        ),
    ]


_PROXY_COUNTERS = (
    # (series, help, field of proxy.tcp.Counters)
    ("corral_proxy_connections", "Connections (UDP: sessions) the proxy accepted.", "connections_total"),
    ("corral_proxy_requests", "HTTP requests seen on connections through the proxy.", "requests"),
    ("corral_proxy_backend_errors", "Failed connection attempts to an endpoint.", "connect_errors"),
    ("corral_proxy_retries", "Connections the proxy retried on another endpoint.", "retries"),
    ("corral_proxy_failed_connections", "Connections no endpoint could take.", "failed"),
)


def proxy_families(stats: Mapping[str, Any]) -> list[Metric]:
    """Families from ``ServiceProxy.stats()`` (per-Service totals; per-endpoint counters are left out to keep
    the number of series independent of the number of pods)."""
    labels = ["namespace", "service"]
    counters = {name: CounterMetricFamily(name, text, labels=labels) for name, text, _ in _PROXY_COUNTERS}
    active = GaugeMetricFamily(
        "corral_proxy_active_connections", "Connections (UDP: sessions) open now.", labels=labels
    )
    byte_counts = CounterMetricFamily(
        "corral_proxy_bytes",
        "Bytes through the service proxy: in = from clients to endpoints, out = back to clients.",
        labels=[*labels, "direction"],
    )
    datagrams = CounterMetricFamily(
        "corral_proxy_datagrams", "UDP datagrams through the service proxy.", labels=[*labels, "direction"]
    )
    services: Mapping[str, Mapping[str, Any]] = stats.get("services") or {}
    for service, entry in sorted(services.items()):
        values = list(service_labels(service))
        for name, _, key in _PROXY_COUNTERS:
            counters[name].add_metric(values, int(entry.get(key, 0)))
        active.add_metric(values, int(entry.get("connections_active", 0)))
        byte_counts.add_metric([*values, "in"], int(entry.get("bytes_in", 0)))
        byte_counts.add_metric([*values, "out"], int(entry.get("bytes_out", 0)))
        datagrams.add_metric([*values, "in"], int(entry.get("datagrams_in", 0)))
        datagrams.add_metric([*values, "out"], int(entry.get("datagrams_out", 0)))
    listeners = GaugeMetricFamily(
        "corral_proxy_listeners", "Service frontends the proxy listens on.", int(stats.get("listeners", 0))
    )
    return [*counters.values(), active, byte_counts, datagrams, listeners]


def file_size(path: str) -> int:
    """Bytes of a SQLite database with its write-ahead log and shared-memory index (what it costs on disk)."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        try:
            total += os.stat(path + suffix).st_size
        except OSError:
            continue
    return total


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class Sources:
    """What the collector reads; weak references only."""

    store: weakref.ref[Any] | None = None
    agent: weakref.ref[Any] | None = None
    proxy: weakref.ref[Any] | None = None
    queues: weakref.WeakKeyDictionary[Any, str] = field(default_factory=weakref.WeakKeyDictionary)

    def track_store(self, store: StoreSource) -> None:
        self.store = weakref.ref(store)

    def track_agent(self, agent: AgentSource) -> None:
        self.agent = weakref.ref(agent)

    def track_proxy(self, proxy: ProxySource) -> None:
        self.proxy = weakref.ref(proxy)

    def track_queue(self, name: str, queue: QueueSource) -> None:
        self.queues[queue] = name


class LiveState(Collector):
    def __init__(self, sources: Sources, registry: Registry = RESOURCES) -> None:
        self.sources = sources
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        sources = self.sources
        store = sources.store() if sources.store is not None else None
        if store is not None:
            stats = getattr(store, "stats", None)
            path = getattr(store, "path", None)
            yield from store_families(
                store,
                file_size(path) if isinstance(path, str) else None,
                int(getattr(stats, "writes", 0)),
                int(getattr(stats, "batches", 0)),
                self.registry,
            )
        depths: dict[str, int] = {}
        for queue, name in list(sources.queues.items()):
            depths[name] = depths.get(name, 0) + len(queue)
        yield queue_family(depths)
        agent = sources.agent() if sources.agent is not None else None
        if agent is not None:
            yield from agent_families(*agent.running_counts())
        proxy = sources.proxy() if sources.proxy is not None else None
        if proxy is not None:
            yield from proxy_families(proxy.stats())
