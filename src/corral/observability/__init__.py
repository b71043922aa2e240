"""Prometheus metrics of a Corral process (issue 7): definitions, collectors and the ``/metrics`` endpoints.

* ``registry`` — the process's registry and every counter, gauge and histogram, by subsystem.
* ``collectors`` — series read from live state at scrape time (store, work queues, agent, service proxy).
* ``requestinfo`` — pure naming of API requests (verb, resource) for the request metrics.
* ``http`` — the API request middleware, the ``/metrics`` handler and the agent's metrics listener.

Subsystems that keep state call the ``track_*`` functions below once; subsystems that see events increment
the objects of ``registry`` directly. See ``docs/observability.md`` for the series and how to scrape them.
"""

from __future__ import annotations

from corral.observability.collectors import AgentSource, ProxySource, QueueSource, StoreSource
from corral.observability.registry import REGISTRY, SOURCES


def track_store(store: StoreSource) -> None:
    """Export ``store``'s object counts, revision, watches and (SQLite) size."""
    SOURCES.track_store(store)


def track_queue(name: str, queue: QueueSource) -> None:
    """Export ``len(queue)`` as ``workqueue_depth{name}`` while the queue lives."""
    SOURCES.track_queue(name, queue)


def track_agent(agent: AgentSource) -> None:
    SOURCES.track_agent(agent)


def track_proxy(proxy: ProxySource) -> None:
    """Export the service proxy's counters (``ServiceProxy.stats()``)."""
    SOURCES.track_proxy(proxy)


__all__ = ["REGISTRY", "track_agent", "track_proxy", "track_queue", "track_store"]
