"""Every Prometheus series Corral exports, defined in one place and grouped by subsystem.

One :class:`~prometheus_client.CollectorRegistry` per process (:data:`REGISTRY`), owned here instead of
prometheus-client's global default registry: what ``/metrics`` shows is exactly what is listed in this module
(and in ``collectors.py``, whose live-state series are read when scraped), nothing a library registered on
the side. ``corral up`` runs the API server, the controllers and the node agent in one process, so they all
appear on the API server's ``/metrics``; a remote ``corral agent`` serves its own.

Two kinds of series:

* **Events** (requests served, reconciles, container starts, probe results) are counted where they happen,
  through the objects below (API requests through ``requeststats.RequestStats``, which is cheaper on that
  path than prometheus-client's own metric objects). Call sites keep the label values bounded: resource,
  verb, code, controller and probe names, never pod or object names.
* **State** that the code already keeps (store object counts, work queue depth, the service proxy's
  counters, running containers) is read at scrape time by ``collectors.LiveState`` — nothing on the hot
  paths. Those names are listed here too (``STATE_SERIES``) so this module stays the index of all names.

Names follow Prometheus conventions (base units, ``_total`` for counters, ``_seconds``, ``_bytes``) and reuse
the Kubernetes names where Kubernetes has the same series (``apiserver_request_total``, ``workqueue_depth``).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector

from corral.observability.collectors import LiveState, Sources
from corral.observability.requeststats import RequestStats

# ``*_created`` companions double the output and no dashboard of ours reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds…
PlatformCollector(registry=REGISTRY)  # python_info
GCCollector(registry=REGISTRY)  # python_gc_*
SOURCES = Sources()
"""The live objects ``LiveState`` reads; see ``track_*`` in the package."""
REGISTRY.register(LiveState(SOURCES))

# Request latencies of this server are mostly well under a millisecond, so the buckets start lower than
# Kubernetes' (5 ms) and stop at its 60 s request timeout.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0
)  # fmt: skip
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# ---------------------------------------------------------------------------------------------- API server

API_REQUESTS = RequestStats(LATENCY_BUCKETS)
"""``apiserver_request_total``, ``apiserver_request_duration_seconds``, ``apiserver_longrunning_requests``
(plain integers updated on every request; see ``requeststats``)."""
REGISTRY.register(API_REQUESTS)

# ---------------------------------------------------------------------------------------------- controllers

WORKQUEUE_ADDS = Counter(
    "workqueue_adds",
    "Keys added to a work queue (a key already waiting is not counted again).",
    ("name",),
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries",
    "Keys requeued with backoff after a failed reconcile.",
    ("name",),
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "corral_controller_reconcile_duration_seconds",
    "Time of one reconcile call of a controller, successful or not.",
    ("controller",),
    buckets=RECONCILE_BUCKETS,
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "corral_controller_reconcile_errors",
    "Reconcile calls that raised (the key is retried with backoff).",
    ("controller",),
    registry=REGISTRY,
)

# ---------------------------------------------------------------------------------------------- node agent

AGENT_POD_STARTS = Counter(
    "corral_agent_pod_starts",
    "Pods whose first container this agent started (a pod adopted from a previous agent is not counted).",
    registry=REGISTRY,
)
AGENT_CONTAINER_STARTS = Counter(
    "corral_agent_container_starts",
    "Container processes started by this agent, first starts and restarts.",
    registry=REGISTRY,
)
AGENT_CONTAINER_RESTARTS = Counter(
    "corral_agent_container_restarts",
    "Container processes started again after an earlier instance of the same container ended or was "
    "killed (what restartCount counts).",
    registry=REGISTRY,
)
AGENT_CONTAINER_START_ERRORS = Counter(
    "corral_agent_container_start_errors",
    "Container starts that failed, by reason (CreateContainerConfigError, CreateContainerError, …).",
    ("reason",),
    registry=REGISTRY,
)
PROBE_KINDS = ("liveness", "readiness", "startup")
AGENT_PROBES = Counter(
    "corral_agent_probes",
    "Probe runs by probe kind and result (success, failure, error: the prober itself raised).",
    ("probe", "result"),
    registry=REGISTRY,
)
AGENT_PROBE_FAILURES = Counter(
    "corral_agent_probe_failures",
    "Probe runs that failed (result failure or error), by probe kind.",
    ("probe",),
    registry=REGISTRY,
)

# ---------------------------------------------------------------------------------------------- at scrape

# The names ``collectors.LiveState`` produces (help texts and labels are there; docs/observability.md lists
# them all). A unit test keeps this list and the collector in step.
STATE_SERIES = (
    "apiserver_storage_objects",
    "apiserver_registered_watchers",
    "corral_store_revision",
    "corral_store_size_bytes",
    "corral_store_writes_total",
    "corral_store_commit_batches_total",
    "workqueue_depth",
    "corral_agent_running_pods",
    "corral_agent_running_containers",
    "corral_proxy_connections_total",
    "corral_proxy_requests_total",
    "corral_proxy_backend_errors_total",
    "corral_proxy_retries_total",
    "corral_proxy_failed_connections_total",
    "corral_proxy_active_connections",
    "corral_proxy_bytes_total",
    "corral_proxy_datagrams_total",
    "corral_proxy_listeners",
)
