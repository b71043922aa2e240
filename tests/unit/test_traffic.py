"""Traffic rates from proxy counters (proxy/traffic.py) and the autoscaler's adapter over them (DataPlaneMetrics)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as s

from corral.controllers.hpa import DataPlaneMetrics, MetricUnavailable
from corral.proxy.node import TrafficReport
from corral.proxy.traffic import Rate, TrafficWindow, rate_of
from corral.testing.clock import FakeClock

JSON = dict[str, Any]


def stats(
    requests: int = 0, conns: int = 0, active: int = 0, inflight: int = 0, held: int = 0, **endpoints: JSON
) -> JSON:
    counters = {
        "requests": requests,
        "connections_total": conns,
        "connections_active": active,
        "inflight": inflight,
        "held": held,
        "endpoints": {k.replace("_", ":"): v for k, v in endpoints.items()},
    }
    return {"services": {"ns/web": counters}}


def test_http_rates_count_requests_and_plain_tcp_counts_connections() -> None:
    window = TrafficWindow(window=5)
    window.add(0.0, stats(requests=10, conns=2))
    window.add(5.0, stats(requests=60, conns=3, inflight=4, active=2))
    assert window.services()["ns/web"] == Rate(10.0, 4.0, True)
    tcp = TrafficWindow(window=5)
    tcp.add(0.0, stats(conns=5))
    tcp.add(2.0, stats(conns=9, active=3))
    assert tcp.services()["ns/web"] == Rate(2.0, 3.0, False)


def test_only_the_last_window_counts() -> None:
    window = TrafficWindow(window=5)
    window.add(0.0, stats(requests=0))
    window.add(1.0, stats(requests=1000))  # a burst long ago
    for t in range(2, 12):
        window.add(float(t), stats(requests=1000 + (t - 1) * 10))
    rate = window.services()["ns/web"].requests_per_second
    assert rate == pytest.approx(10.0)


def test_endpoints_have_their_own_rates() -> None:
    window = TrafficWindow(window=5)
    window.add(0.0, stats(requests=0, a_1={"requests": 0}, b_2={"requests": 0}))
    window.add(2.0, stats(requests=30, a_1={"requests": 20, "inflight": 1}, b_2={"requests": 10}))
    rates = window.endpoints()
    assert rates[("ns/web", "a:1")] == Rate(10.0, 1.0, True)
    assert rates[("ns/web", "b:2")].requests_per_second == 5.0


def test_last_activity_follows_traffic_and_held_connections() -> None:
    window = TrafficWindow()
    window.add(0.0, stats())
    assert window.last_active("ns/web") == 0.0  # first seen: the idle clock starts
    window.add(10.0, stats())
    assert window.last_active("ns/web") == 0.0
    window.add(20.0, stats(held=1, active=1))  # a connection waiting at zero is traffic
    assert window.last_active("ns/web") == 20.0
    window.add(30.0, stats(held=1))
    assert window.last_active("ns/web") == 20.0
    window.add(31.0, {"services": {}})
    assert window.last_active("ns/web") is None


@given(before=s.integers(0, 10**6), after=s.integers(0, 10**6), seconds=s.floats(0.5, 60))
def test_a_restarted_counter_never_gives_a_negative_rate(before: int, after: int, seconds: float) -> None:
    rate = rate_of({"requests": after, "connections_total": after}, {"requests": before}, seconds)
    assert rate.requests_per_second >= 0


async def test_data_plane_metrics_sum_nodes_and_fill_idle_pods_with_zero() -> None:
    reports = [
        TrafficReport(
            pods={"ns/a": Rate(3.0, 1.0, True)},
            services={"ns/web": Rate(3.0, 1.0, True)},
            idle_seconds={"ns/web": 7.0},
        ),
        TrafficReport(
            pods={"ns/a": Rate(2.0, 0.0, True)},
            services={"ns/web": Rate(2.0, 2.0, True)},
            idle_seconds={"ns/web": 2.0},
        ),
    ]
    metrics = DataPlaneMetrics(lambda: reports, FakeClock())
    samples = await metrics.pod_metric("ns", ["a", "b"], "requests_per_second")
    assert {k: v.value for k, v in samples.items()} == {"a": 5.0, "b": 0.0}
    assert await metrics.object_metric("ns", {"kind": "Service", "name": "web"}, "inflight_requests") == 3.0
    assert await metrics.idle_seconds("ns", ["web"]) == 2.0
    with pytest.raises(MetricUnavailable, match="unknown metric"):
        await metrics.pod_metric("ns", ["a"], "latency_p99")
    with pytest.raises(MetricUnavailable, match="no service proxy"):
        await DataPlaneMetrics(lambda: [], FakeClock()).pod_metric("ns", ["a"], "requests_per_second")
