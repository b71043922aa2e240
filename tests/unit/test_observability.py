"""Metrics: request naming (verbs, resources, long-running), store/proxy/queue families read at scrape time,
the request middleware's bookkeeping, and the exposition parsing with the Prometheus text parser."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from corral.client.workqueue import WorkQueue
from corral.observability.collectors import (
    LiveState,
    Sources,
    proxy_families,
    resource_of_prefix,
    service_labels,
    storage_prefixes,
)
from corral.observability.http import ApiMetrics, exposition, metrics_handler
from corral.observability.registry import REGISTRY, STATE_SERIES
from corral.observability.requestinfo import RequestInfo, clean_method, request_info
from corral.observability.requeststats import RequestStats
from corral.store import MemoryStore

# ---------------------------------------------------------------------------------------------- request naming

CASES = [
    # method, path, query, content type → verb, group, resource, subresource, long-running
    ("GET", "/api/v1/namespaces/default/pods", {}, "", ("LIST", "", "pods", "", False)),
    ("GET", "/api/v1/pods", {}, "", ("LIST", "", "pods", "", False)),
    ("GET", "/api/v1/namespaces/default/pods/web-1", {}, "", ("GET", "", "pods", "", False)),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "true"}, "", ("WATCH", "", "pods", "", True)),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "1"}, "", ("WATCH", "", "pods", "", True)),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "false"}, "", ("LIST", "", "pods", "", False)),
    ("GET", "/apis/apps/v1/namespaces/x/deployments", {}, "", ("LIST", "apps", "deployments", "", False)),
    ("POST", "/apis/apps/v1/namespaces/x/deployments", {}, "", ("POST", "apps", "deployments", "", False)),
    ("PUT", "/apis/apps/v1/namespaces/x/deployments/d/status", {}, "", ("PUT", "apps", "deployments", "status", False)),
    ("GET", "/apis/apps/v1/namespaces/x/deployments/d/scale", {}, "", ("GET", "apps", "deployments", "scale", False)),
    ("PATCH", "/api/v1/namespaces/x/configmaps/c", {}, "application/merge-patch+json", ("PATCH", "", "configmaps", "", False)),
    ("PATCH", "/api/v1/namespaces/x/configmaps/c", {}, "application/apply-patch+yaml; charset=utf-8", ("APPLY", "", "configmaps", "", False)),
    ("DELETE", "/api/v1/namespaces/x/configmaps/c", {}, "", ("DELETE", "", "configmaps", "", False)),
    ("DELETE", "/api/v1/namespaces/x/configmaps", {}, "", ("DELETECOLLECTION", "", "configmaps", "", False)),
    ("GET", "/api/v1/namespaces/x/pods/p/log", {"follow": "true"}, "", ("GET", "", "pods", "log", True)),
    ("GET", "/api/v1/namespaces/x/pods/p/log", {}, "", ("GET", "", "pods", "log", True)),
    ("POST", "/api/v1/namespaces/x/pods/p/exec", {"command": "ls"}, "", ("CONNECT", "", "pods", "exec", True)),
    ("GET", "/api/v1/namespaces/x/pods/p/exec", {}, "", ("CONNECT", "", "pods", "exec", True)),
    ("POST", "/api/v1/namespaces/x/pods/p/binding", {}, "", ("POST", "", "pods", "binding", False)),
    ("get", "/api/v1/nodes/n1", {}, "", ("GET", "", "nodes", "", False)),
    # outside the resource tree, or naming nothing served: the method alone, no resource
    ("GET", "/metrics", {}, "", ("GET", "", "", "", False)),
    ("GET", "/apis/apps/v1", {}, "", ("GET", "", "", "", False)),
    ("GET", "/api", {}, "", ("GET", "", "", "", False)),
    ("GET", "/api/v1/namespaces/x/widgets", {"watch": "true"}, "", ("GET", "", "", "", False)),
    ("GET", "/api/v1/namespaces/x/pods/p/nonsense", {}, "", ("GET", "", "", "", False)),
    ("BREW", "/api/v1/pods", {}, "", ("other", "", "pods", "", False)),
]


@pytest.mark.parametrize(("method", "path", "query", "content_type", "expected"), CASES)
def test_request_info(
    method: str, path: str, query: dict[str, str], content_type: str, expected: tuple[Any, ...]
) -> None:
    info = request_info(method, path, query, content_type)
    assert (info.verb, info.group, info.resource, info.subresource, info.long_running) == expected


def test_methods_are_a_closed_set() -> None:
    assert clean_method("patch") == "PATCH"
    assert clean_method("X-INVENTED-1") == clean_method("X-INVENTED-2") == "other"


def test_labels_never_carry_names_from_the_path() -> None:
    """However many objects are requested, the label values stay the same few."""
    infos = {
        request_info("GET", f"/api/v1/namespaces/ns-{i}/pods/pod-{i}", {}) for i in range(100)
    } | {request_info("GET", f"/no/such/{i}", {}) for i in range(100)}
    assert infos == {RequestInfo("GET", "", "pods"), RequestInfo("GET")}


# ---------------------------------------------------------------------------------------------- store naming


@pytest.mark.parametrize(
    ("prefix", "resource"),
    [
        ("/core/pods/", "pods"),
        ("/core/pods/default/", "pods"),
        ("/apps/deployments/", "deployments.apps"),
        ("/apps/deployments/ns/", "deployments.apps"),
        ("/discovery.k8s.io/endpointslices/", "endpointslices.discovery.k8s.io"),
        ("/", ""),
    ],
)
def test_resource_of_prefix(prefix: str, resource: str) -> None:
    assert resource_of_prefix(prefix) == resource


def test_every_served_kind_has_a_storage_resource() -> None:
    prefixes = storage_prefixes()
    assert prefixes["/core/pods/"] == "pods"
    assert prefixes["/apps/deployments/"] == "deployments.apps"
    assert all(prefixes.values())


def test_service_labels() -> None:
    assert service_labels("default/web") == ("default", "web")
    assert service_labels("odd") == ("", "odd")


# ---------------------------------------------------------------------------------------------- live state


def _scrape(collector: Collector) -> dict[str, Any]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = _text(registry)
    return {family.name: family for family in text_string_to_metric_families(text)}


def _text(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def _value(family: Any, suffix: str = "", **labels: str) -> float:
    for sample in family.samples:
        if sample.name == family.name + suffix and sample.labels == labels:
            return float(sample.value)
    raise AssertionError(f"no sample {family.name}{suffix}{labels} in {family.samples}")


class FakeAgent:
    def running_counts(self) -> tuple[int, int]:
        return 2, 3


PROXY_STATS: dict[str, Any] = {
    "services": {
        "default/web": {
            "connections_total": 7,
            "connections_active": 1,
            "requests": 9,
            "bytes_in": 100,
            "bytes_out": 2000,
            "connect_errors": 1,
            "retries": 1,
            "failed": 0,
            "datagrams_in": 0,
            "datagrams_out": 0,
            "endpoints": {"127.0.0.1:20000": {"connections_total": 7}},
        }
    },
    "listeners": 2,
}


class FakeProxy:
    def stats(self) -> dict[str, Any]:
        return PROXY_STATS


async def test_live_state_reads_every_source_and_names_what_registry_lists(tmp_path: Any) -> None:
    store = MemoryStore()
    await store.create("/core/pods/default/a", {"metadata": {"name": "a"}})
    await store.create("/core/pods/default/b", {"metadata": {"name": "b"}})
    await store.create("/apps/deployments/default/d", {"metadata": {"name": "d"}})
    watch = store.watch("/core/pods/default/", store.revision)
    db = tmp_path / "state.db"
    db.write_bytes(b"x" * 100)
    (tmp_path / "state.db-wal").write_bytes(b"y" * 20)
    store.path = str(db)  # type: ignore[attr-defined]  # as SqliteStore has it
    queue: WorkQueue[str] = WorkQueue()
    queue.add("one")
    queue.add("two")
    agent, proxy = FakeAgent(), FakeProxy()
    sources = Sources()
    sources.track_store(store)
    sources.track_queue("test-controller", queue)
    sources.track_agent(agent)
    sources.track_proxy(proxy)
    families = _scrape(LiveState(sources))
    try:
        assert sorted(f.name + ("_total" if f.type == "counter" else "") for f in families.values()) == sorted(
            STATE_SERIES
        )
        assert _value(families["apiserver_storage_objects"], resource="pods") == 2
        assert _value(families["apiserver_storage_objects"], resource="deployments.apps") == 1
        assert _value(families["apiserver_storage_objects"], resource="services") == 0
        assert _value(families["apiserver_registered_watchers"], group="", kind="Pod") == 1
        assert _value(families["corral_store_revision"]) == store.revision == 3
        assert _value(families["corral_store_writes"], "_total") == 3
        assert _value(families["corral_store_size_bytes"]) == 120
        assert _value(families["workqueue_depth"], name="test-controller") == 2
        assert _value(families["corral_agent_running_pods"]) == 2
        assert _value(families["corral_agent_running_containers"]) == 3
        web_svc = {"namespace": "default", "service": "web"}
        assert _value(families["corral_proxy_connections"], "_total", **web_svc) == 7
        assert _value(families["corral_proxy_active_connections"], **web_svc) == 1
        assert _value(families["corral_proxy_bytes"], "_total", direction="out", **web_svc) == 2000
        assert _value(families["corral_proxy_backend_errors"], "_total", **web_svc) == 1
        assert _value(families["corral_proxy_listeners"]) == 2
    finally:
        watch.close()
        await store.close()


def test_sources_are_weak_a_stopped_agent_leaves_the_output() -> None:
    sources = Sources()
    agent = FakeAgent()
    sources.track_agent(agent)
    assert "corral_agent_running_pods" in _scrape(LiveState(sources))
    del agent
    gc.collect()
    assert "corral_agent_running_pods" not in _scrape(LiveState(sources))


def test_proxy_families_leave_endpoints_out() -> None:
    for family in proxy_families(PROXY_STATS):
        for sample in family.samples:
            assert set(sample.labels) <= {"namespace", "service", "direction"}


async def test_named_queue_counts_adds_and_retries() -> None:
    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"name": "unit-test-queue"}) or 0.0

    adds, retries = sample("workqueue_adds_total"), sample("workqueue_retries_total")
    queue: WorkQueue[str] = WorkQueue(name="unit-test-queue")
    queue.add("a")
    queue.add("a")  # already waiting: not an add
    queue.add("b")
    assert sample("workqueue_adds_total") == adds + 2
    assert sample("workqueue_depth") == 2
    queue.add_rate_limited("c")
    assert sample("workqueue_retries_total") == retries + 1
    queue.shutdown()


# ---------------------------------------------------------------------------------------------- middleware


def _requests(**labels: str) -> float:
    return REGISTRY.get_sample_value("apiserver_request_total", labels) or 0.0


def _latency_count(**labels: str) -> float:
    return REGISTRY.get_sample_value("apiserver_request_duration_seconds_count", labels) or 0.0


def _running(**labels: str) -> float:
    return REGISTRY.get_sample_value("apiserver_longrunning_requests", labels) or 0.0


@pytest.fixture
def watch_gate() -> Iterator[asyncio.Event]:
    yield asyncio.Event()


async def test_middleware_counts_times_and_tracks_long_running(watch_gate: asyncio.Event) -> None:
    metrics = ApiMetrics()

    async def pods(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"{}\n")
            await watch_gate.wait()
            return response
        if request.match_info["tail"].endswith("missing"):
            raise web.HTTPNotFound()
        return web.json_response({"kind": "PodList", "items": []})

    app = web.Application(middlewares=[metrics.middleware()])
    metrics.install(app)
    app.router.add_get("/api/v1/{tail:.+}", pods)
    app.router.add_get("/metrics", metrics_handler)
    pods_list = {"verb": "LIST", "group": "", "resource": "pods", "subresource": ""}
    pods_get = {"verb": "GET", "group": "", "resource": "pods", "subresource": ""}
    watch = {"verb": "WATCH", "group": "", "resource": "pods", "subresource": ""}
    before = (_requests(code="200", **pods_list), _latency_count(**pods_list), _requests(code="404", **pods_get))
    watches_before = (_requests(code="200", **watch), _latency_count(**watch))
    async with TestClient(TestServer(app)) as client:
        for _ in range(5):
            assert (await client.get("/api/v1/namespaces/default/pods")).status == 200
        assert (await client.get("/api/v1/namespaces/default/pods/missing")).status == 404
        assert _requests(code="200", **pods_list) == before[0] + 5
        assert _latency_count(**pods_list) == before[1] + 5
        assert _requests(code="404", **pods_get) == before[2] + 1

        # A watch is long-running while it streams; when it ends it is counted, never timed.
        response = await client.get("/api/v1/namespaces/default/pods?watch=true")
        await response.content.readline()
        assert _running(**watch) == 1
        watch_gate.set()
        await response.read()
        assert _running(**watch) == 0
        assert _requests(code="200", **watch) == watches_before[0] + 1

        # A watch cut by its client (the handler is cancelled) still counts, with the status it sent.
        watch_gate.clear()
        response = await client.get("/api/v1/namespaces/default/pods?watch=true")
        await response.content.readline()
        assert _running(**watch) == 1
        response.close()
        for _ in range(200):
            if _running(**watch) == 0:
                break
            await asyncio.sleep(0.01)
        assert _running(**watch) == 0
        assert _requests(code="200", **watch) == watches_before[0] + 2
        assert _latency_count(**watch) == watches_before[1] == 0

        scraped = await client.get("/metrics")
        assert scraped.status == 200
        assert scraped.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        names = {f.name for f in text_string_to_metric_families(await scraped.text())}
        assert {"apiserver_request", "apiserver_request_duration_seconds", "process_cpu_seconds"} <= names


def test_exposition_negotiates_openmetrics() -> None:
    body, content_type = exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    body, content_type = exposition("application/json, */*")
    assert content_type.startswith("text/plain")
    assert any(f.name == "apiserver_request" for f in text_string_to_metric_families(body.decode()))


# ---------------------------------------------------------------------------------------------- request stats


def test_request_stats_histogram_is_cumulative_with_le_edges() -> None:
    stats = RequestStats((0.001, 0.01, 0.1))
    info = RequestInfo("LIST", "", "pods")
    for seconds in (0.0005, 0.001, 0.002, 0.01, 0.5):  # 0.001 sits on an edge: le="0.001" includes it
        stats.record(info, 200, seconds)
    stats.record(info, 500, 0.002)
    watch = RequestInfo("WATCH", "", "pods", long_running=True)
    stats.started(watch)
    stats.record(watch, 200, None)
    families = _scrape(stats)
    duration = families["apiserver_request_duration_seconds"]
    labels = {"verb": "LIST", "group": "", "resource": "pods", "subresource": ""}
    assert [_value(duration, "_bucket", **labels, le=le) for le in ("0.001", "0.01", "0.1", "+Inf")] == [
        2,
        5,
        5,
        6,
    ]
    assert _value(duration, "_count", **labels) == 6
    assert _value(duration, "_sum", **labels) == pytest.approx(0.5155)
    requests = families["apiserver_request"]
    assert _value(requests, "_total", code="200", **labels) == 5
    assert _value(requests, "_total", code="500", **labels) == 1
    watch_labels = {**labels, "verb": "WATCH"}
    assert _value(requests, "_total", code="200", **watch_labels) == 1
    assert not [s for s in duration.samples if s.labels.get("verb") == "WATCH"]
    assert _value(families["apiserver_longrunning_requests"], **watch_labels) == 1
    stats.ended(watch)
    assert _value(_scrape(stats)["apiserver_longrunning_requests"], **watch_labels) == 0
