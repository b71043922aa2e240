"""The API server's request series, kept as plain integers and turned into Prometheus families when scraped.

Why not prometheus-client's ``Counter`` and ``Histogram``: every API request updates these, and each of
their updates takes a lock per value touched (a histogram observation two or three) plus a label lookup;
measured inside the server that was about 6 µs per request. The server's requests are all served on the
event loop thread, and the scrape runs there too, so plain dictionaries of integers need no lock, and an
update is two dictionary lookups and three additions. Label values come from ``requestinfo`` (closed sets),
so the dictionaries stay small.

Series: ``apiserver_request_total{verb,group,resource,subresource,code}``,
``apiserver_request_duration_seconds{verb,group,resource,subresource}`` (histogram; long-running requests
are not observed), ``apiserver_longrunning_requests{verb,group,resource,subresource}`` (gauge).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from corral.observability.requestinfo import RequestInfo

LABELS = ["verb", "group", "resource", "subresource"]


class _Timing:
    __slots__ = ("buckets", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last one is +Inf
        self.total = 0.0


class RequestStats(Collector):
    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(sorted(buckets))
        self._counts: dict[tuple[RequestInfo, int], int] = {}
        self._timings: dict[RequestInfo, _Timing] = {}
        self._running: dict[RequestInfo, int] = {}

    # ------------------------------------------------------------------ updates (event loop thread)

    def record(self, info: RequestInfo, status: int, seconds: float | None) -> None:
        """One answered request; ``seconds`` None for a long-running one (not timed)."""
        key = (info, status)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1
        if seconds is not None:
            timing = self._timings.get(info)
            if timing is None:
                timing = self._timings[info] = _Timing(len(self.bounds) + 1)
            timing.buckets[bisect_left(self.bounds, seconds)] += 1
            timing.total += seconds

    def started(self, info: RequestInfo) -> None:
        self._running[info] = self._running.get(info, 0) + 1

    def ended(self, info: RequestInfo) -> None:
        self._running[info] -= 1

    # ------------------------------------------------------------------ scrape

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "apiserver_request",
            "API requests answered, by verb (GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE, "
            "DELETECOLLECTION, CONNECT), group, resource, subresource and HTTP status code.",
            labels=[*LABELS, "code"],
        )
        for (info, status), count in sorted(self._counts.items()):
            requests.add_metric([*_values(info), str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "apiserver_request_duration_seconds",
            "Time to answer an API request, from the server receiving it to the handler returning; "
            "long-running requests (WATCH, CONNECT, pods/log) are not observed.",
            labels=LABELS,
        )
        edges = [_bound(b) for b in self.bounds] + ["+Inf"]
        for info, timing in sorted(self._timings.items()):
            cumulative, running = [], 0
            for edge, count in zip(edges, timing.buckets, strict=True):
                running += count
                cumulative.append((edge, float(running)))
            durations.add_metric(_values(info), cumulative, timing.total)
        yield durations
        longrunning = GaugeMetricFamily(
            "apiserver_longrunning_requests",
            "Long-running API requests in progress (watches, exec, log streams).",
            labels=LABELS,
        )
        for info, count in sorted(self._running.items()):
            longrunning.add_metric(_values(info), count)
        yield longrunning


def _values(info: RequestInfo) -> list[str]:
    return [info.verb, info.group, info.resource, info.subresource]


def _bound(value: float) -> str:
    """Bucket edges as prometheus-client spells them (``0.005``, ``1.0``)."""
    return repr(float(value))
