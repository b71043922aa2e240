"""HorizontalPodAutoscaler controller: the IO around :func:`corral.controllers.hpaplan.plan_hpa`.

Every ``sync_period`` seconds per HPA (upstream: 15 s; Corral defaults to 5 s because its resource metrics are
sampled every few seconds, not every 15), a reconcile:

1. reads the target's ``scale`` subresource (any kind that has one: Deployments, ReplicaSets…) — failure is
   ``AbleToScale=False`` / ``FailedGetScale`` with an event;
2. finds the target's pods from the scale's ``status.selector`` in the pod cache;
3. asks the metrics sources, one answer per ``spec.metrics`` entry: Resource metrics from the
   ``metrics.k8s.io`` API (PodMetrics, summed over containers), Pods and Object metrics from a
   :class:`CustomMetrics` source when one is plugged in (the service proxy's traffic counters);
4. plans, writes the new replica count through the scale subresource (compare-and-set on its
   resourceVersion), records ``SuccessfulRescale`` / ``FailedRescale`` events, and writes the status through
   ``/status`` when it changed.

Scale to zero (``minReplicas: 0``): the target's Services (those whose selector the target's pods match) get
the annotation ``corral.dev/scale-from-zero``, which makes every node's proxy hold their new connections
instead of refusing them while there is no endpoint. The target goes to 0 after
``corral.dev/scale-to-zero-idle-seconds`` (default 300) without traffic on those Services; a held connection
writes ``corral.dev/activation-requested-at`` on its Service, whose watch event brings this controller at
once, and the target goes to 1.

Recommendation and scale-event history (for ``behavior``) live in memory per HPA, as upstream's; a restart
forgets them, which at worst delays one scale-down by a stabilization window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from corral.api.quantity import parse_quantity
from corral.api.resources import REGISTRY, ResourceType
from corral.api.selectors import LabelSelector, Op, SelectorError, parse_label_selector
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer
from corral.controllers.events import EventRecorder
from corral.controllers.hpaplan import (
    ABLE_TO_SCALE,
    History,
    HPAPlan,
    MetricInput,
    PodView,
    Sample,
    ZeroState,
    plan_hpa,
    pod_view,
)
from corral.controllers.replicaset import PODS
from corral.controllers.runtime import ControllerManager
from corral.proxy.node import TrafficReport
from corral.proxy.traffic import Rate
from corral.util.clock import Clock, SystemClock, parse_rfc3339, rfc3339

log = logging.getLogger(__name__)

JSON = dict[str, Any]
HPAS = REGISTRY.require("horizontalpodautoscalers.autoscaling")
SYNC_PERIOD = 5.0


class CustomMetrics(Protocol):
    """Pods and Object metrics (``requests_per_second``, ``inflight_requests``) and Service idleness."""

    async def pod_metric(self, namespace: str, pod_names: list[str], metric: str) -> Mapping[str, Sample]: ...

    async def object_metric(self, namespace: str, described: Mapping[str, Any], metric: str) -> float: ...

    async def idle_seconds(self, namespace: str, services: list[str]) -> float | None: ...


SERVICES = REGISTRY.require("services")
SCALE_FROM_ZERO = "corral.dev/scale-from-zero"
ACTIVATION_REQUESTED = "corral.dev/activation-requested-at"
IDLE_ANNOTATION = "corral.dev/scale-to-zero-idle-seconds"
DEFAULT_IDLE_SECONDS = 300.0
MERGE = "application/merge-patch+json"


class MetricUnavailable(Exception):
    pass


def _resource_type(api_version: str, kind: str) -> ResourceType | None:
    rt = REGISTRY.by_kind(api_version, kind)
    if rt is None:
        return None
    return rt if any(sub.name == "scale" for sub in rt.subresources) else None


class HorizontalPodAutoscalerController:
    name = "horizontal-pod-autoscaler"
    workers = 2

    def __init__(
        self,
        transport: Transport,
        clock: Clock | None = None,
        *,
        sync_period: float = SYNC_PERIOD,
        custom: CustomMetrics | None = None,
    ) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.sync_period = sync_period
        self.custom = custom
        self.events = EventRecorder(transport, "horizontal-pod-autoscaler", self.clock)
        self.history: dict[str, History] = {}
        self.hpas: Informer | None = None
        self.pods: Informer | None = None
        self.services: Informer | None = None

    def setup(self, manager: ControllerManager) -> None:
        self.hpas = manager.watch(self, HPAS)
        self.pods = manager.informer(PODS)
        self.services = manager.watch(self, SERVICES, self._service_keys)

    def _service_keys(self, service: JSON) -> list[str]:
        """A Service change (above all an activation request) wakes its namespace's scale-to-zero HPAs."""
        if self.hpas is None:
            return []
        namespace = (service.get("metadata") or {}).get("namespace")
        return [
            f"{namespace}/{h['metadata']['name']}"
            for h in self.hpas.list()
            if h["metadata"].get("namespace") == namespace and (h.get("spec") or {}).get("minReplicas") == 0
        ]

    async def reconcile(self, key: str) -> float | None:
        assert self.hpas is not None
        hpa = self.hpas.get(key)
        if hpa is None or (hpa.get("metadata") or {}).get("deletionTimestamp"):
            self.history.pop(key, None)
            return None
        history = self.history.setdefault(key, History())
        meta = hpa["metadata"]
        namespace = str(meta.get("namespace"))
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        target = f"{ref.get('kind')}/{ref.get('name')}"
        rt = _resource_type(str(ref.get("apiVersion") or ""), str(ref.get("kind") or ""))
        if rt is None:
            message = (
                "the HPA controller was unable to get the target's current scale: "
                f"no scale subresource for {target}"
            )
            await self._unable(hpa, "FailedGetScale", message)
            return self.sync_period
        try:
            scale = await self.transport.get(rt, namespace, str(ref.get("name")), "scale")
        except st.ApiError as exc:
            message = f"the HPA controller was unable to get the target's current scale: {exc.message}"
            await self._unable(hpa, "FailedGetScale", message)
            return self.sync_period
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        now = self.clock.now()
        try:
            pods = self._pods(namespace, scale)
        except SelectorError as exc:
            await self._unable(
                hpa,
                "InvalidSelector",
                f"couldn't convert selector into a corresponding internal selector object: {exc}",
                active=True,
            )
            return self.sync_period
        inputs = [
            await self._metric(namespace, metric, pods)
            for metric in (hpa.get("spec") or {}).get("metrics") or []
        ]
        zero = await self._zero_state(hpa, namespace, scale, history, now)
        plan = plan_hpa(hpa, current, pods, inputs, history, now, zero)
        for event in plan.events:
            await self.events.record(hpa, event.type, event.reason, event.message)
        if plan.rescale and not await self._rescale(hpa, rt, namespace, scale, plan):
            return self.sync_period
        await self._write_status(hpa, plan.status)
        return self.sync_period

    # ------------------------------------------------------------------ reading

    def _pods(self, namespace: str, scale: JSON) -> list[PodView]:
        assert self.pods is not None
        raw = str((scale.get("status") or {}).get("selector") or "")
        if not raw:
            return []
        selector: LabelSelector = parse_label_selector(raw)
        return [
            pod_view(pod)
            for pod in self.pods.list()
            if (pod.get("metadata") or {}).get("namespace") == namespace
            and selector.matches((pod.get("metadata") or {}).get("labels") or {})
        ]

    async def _metric(self, namespace: str, metric: Mapping[str, Any], pods: list[PodView]) -> MetricInput:
        kind = metric.get("type")
        try:
            if kind == "Resource":
                resource = str((metric.get("resource") or {}).get("name"))
                target = ((metric.get("resource") or {}).get("target") or {}).get("type")
                if target == "Utilization" and any(resource not in p.requests for p in pods):
                    return MetricInput(per_pod={})  # the planner names the pods without a request
                return MetricInput(per_pod=await self._resource_usage(namespace, resource, pods))
            if kind == "Pods":
                name = str(((metric.get("pods") or {}).get("metric") or {}).get("name"))
                if self.custom is None:
                    raise MetricUnavailable(f"unable to get metric {name}: no custom metrics source")
                samples = await self.custom.pod_metric(namespace, [p.name for p in pods], name)
                return MetricInput(per_pod=samples)
            if kind == "Object":
                source = metric.get("object") or {}
                name = str((source.get("metric") or {}).get("name"))
                if self.custom is None:
                    raise MetricUnavailable(f"unable to get metric {name}: no custom metrics source")
                value = await self.custom.object_metric(namespace, source.get("describedObject") or {}, name)
                return MetricInput(value=value)
        except MetricUnavailable as exc:
            return MetricInput(error=str(exc), reason=_failed_reason(kind))
        except st.ApiError as exc:
            return MetricInput(error=f"unable to get metrics: {exc.message}", reason=_failed_reason(kind))
        return MetricInput(error=f"unsupported metric type {kind!r}", reason="InvalidMetricSourceType")

    async def _resource_usage(self, namespace: str, resource: str, pods: list[PodView]) -> dict[str, Sample]:
        if resource not in ("cpu", "memory"):
            raise MetricUnavailable(
                f"unable to get metrics for resource {resource}: only cpu and memory exist"
            )
        wanted = {p.name for p in pods}
        if not wanted:
            return {}
        items = (await self.transport.list(PODMETRICS, namespace)).items
        samples: dict[str, Sample] = {}
        for item in items:
            name = str((item.get("metadata") or {}).get("name"))
            if name not in wanted:
                continue
            total = 0.0
            for container in item.get("containers") or []:
                value = (container.get("usage") or {}).get(resource)
                if value is not None:
                    total += float(parse_quantity(value))
            samples[name] = Sample(
                total, _time(item.get("timestamp")) or self.clock.now(), _window(item.get("window"))
            )
        if not samples:
            raise MetricUnavailable(
                f"unable to get metrics for resource {resource}: "
                "no metrics returned from resource metrics API"
            )
        return samples

    # ------------------------------------------------------------------ scale to zero

    def _target_services(self, namespace: str, scale: JSON) -> list[JSON]:
        """Services whose selector the target's pods match (judged on the equality terms of the target's
        selector, so it works while there is no pod)."""
        assert self.services is not None
        try:
            selector = parse_label_selector(str((scale.get("status") or {}).get("selector") or ""))
        except SelectorError:
            return []
        labels = {
            r.key: next(iter(r.values))
            for r in selector.requirements
            if r.op in (Op.EQ, Op.IN) and len(r.values) == 1
        }
        found = []
        for service in self.services.list():
            if (service.get("metadata") or {}).get("namespace") != namespace:
                continue
            wanted = (service.get("spec") or {}).get("selector") or {}
            if wanted and all(labels.get(k) == v for k, v in wanted.items()):
                found.append(service)
        return found

    async def _zero_state(
        self, hpa: JSON, namespace: str, scale: JSON, history: History, now: datetime
    ) -> ZeroState | None:
        services = self._target_services(namespace, scale)
        to_zero = (hpa.get("spec") or {}).get("minReplicas") == 0
        for service in services:
            await self._mark(service, to_zero)
        if not to_zero:
            return None
        names = [str(s["metadata"]["name"]) for s in services]
        idle = await self.custom.idle_seconds(namespace, names) if self.custom is not None and names else None
        # The last rescale, to the microsecond when this process made it; status keeps whole seconds, so
        # after a restart count a second more (an activation in that second is taken as older).
        last_scale = history.last_scale
        if last_scale is None:
            recorded = _time((hpa.get("status") or {}).get("lastScaleTime"))
            last_scale = recorded + timedelta(seconds=1) if recorded is not None else None
        if idle is not None and last_scale is not None:
            # A target just woken had no traffic sample yet: its idle clock starts at the wake.
            idle = min(idle, max(0.0, (now - last_scale).total_seconds()))
        requested = [
            _time(((s.get("metadata") or {}).get("annotations") or {}).get(ACTIVATION_REQUESTED))
            for s in services
        ]
        wake = any(t is not None and (last_scale is None or t > last_scale) for t in requested)
        return ZeroState(idle, self._idle_limit(hpa), wake)

    def _idle_limit(self, hpa: JSON) -> float:
        raw = ((hpa.get("metadata") or {}).get("annotations") or {}).get(IDLE_ANNOTATION)
        if raw is None:
            return DEFAULT_IDLE_SECONDS
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if value < 0:
            log.warning(
                "hpa %s: %s=%r is not a number of seconds; using %g",
                hpa["metadata"].get("name"),
                IDLE_ANNOTATION,
                raw,
                DEFAULT_IDLE_SECONDS,
            )
            return DEFAULT_IDLE_SECONDS
        return value

    async def _mark(self, service: JSON, hold: bool) -> None:
        """Set (or clear) the annotation that makes proxies hold connections while the target is at zero."""
        meta = service.get("metadata") or {}
        marked = ((meta.get("annotations") or {}).get(SCALE_FROM_ZERO)) == "true"
        if marked == hold:
            return
        patch = {"metadata": {"annotations": {SCALE_FROM_ZERO: "true" if hold else None}}}
        try:
            await self.transport.patch(SERVICES, meta.get("namespace"), str(meta.get("name")), MERGE, patch)
        except st.ApiError as exc:
            if exc.code != 404:
                raise

    # ------------------------------------------------------------------ writing

    async def _rescale(self, hpa: JSON, rt: ResourceType, namespace: str, scale: JSON, plan: HPAPlan) -> bool:
        body = {**scale, "spec": {**(scale.get("spec") or {}), "replicas": plan.desired}}
        try:
            await self.transport.update(
                rt, namespace, str(scale["metadata"]["name"]), body, subresource="scale"
            )
        except st.ApiError as exc:
            message = f"New size: {plan.desired}; reason: {plan.reason}; error: {exc.message}"
            await self.events.record(hpa, "Warning", "FailedRescale", message)
            await self._unable(
                hpa,
                "FailedUpdateScale",
                f"the HPA controller was unable to update the target scale: {exc.message}",
            )
            return False
        return True

    async def _unable(self, hpa: JSON, reason: str, message: str, *, active: bool = False) -> None:
        """A sync that could not scale: a condition, an event, and the rest of the status kept."""
        if reason != "FailedUpdateScale":
            await self.events.record(hpa, "Warning", reason, message)
        status = dict(hpa.get("status") or {})
        now = rfc3339(self.clock.now())
        ctype, cond_status = ("ScalingActive", "False") if active else (ABLE_TO_SCALE, "False")
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
        previous = next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)
        since = (
            previous.get("lastTransitionTime") if previous and previous.get("status") == cond_status else None
        )
        conditions.insert(
            0,
            {
                "type": ctype,
                "status": cond_status,
                "lastTransitionTime": since or now,
                "reason": reason,
                "message": message,
            },
        )
        status["conditions"] = conditions
        status.setdefault("currentReplicas", 0)
        status.setdefault("desiredReplicas", 0)
        await self._write_status(hpa, status)

    async def _write_status(self, hpa: JSON, status: JSON) -> None:
        if status == hpa.get("status"):
            return
        meta = hpa["metadata"]
        body = {**hpa, "status": status}
        try:
            await self.transport.update(
                HPAS, meta.get("namespace"), str(meta.get("name")), body, subresource="status"
            )
        except st.ApiError as exc:
            if exc.code not in (404, 409):
                raise
            # Deleted meanwhile, or changed: the next sync (its update event) writes a fresh status.


PODMETRICS = REGISTRY.require("podmetrics.metrics.k8s.io")


def _failed_reason(kind: Any) -> str:
    return {
        "Resource": "FailedGetResourceMetric",
        "Pods": "FailedGetPodsMetric",
        "Object": "FailedGetObjectMetric",
    }.get(str(kind), "FailedGetMetric")


def _time(value: Any) -> datetime | None:
    try:
        return parse_rfc3339(str(value)) if value else None
    except ValueError:
        return None


def _window(value: Any) -> timedelta:
    text = str(value or "")
    try:
        if text.endswith("ms"):
            return timedelta(milliseconds=float(text[:-2]))
        if text.endswith("s"):
            return timedelta(seconds=float(text[:-1]))
    except ValueError:
        pass
    return timedelta(0)


class DataPlaneMetrics:
    """:class:`CustomMetrics` from the traffic reports of the node data planes this process runs
    (``NodeDataPlane.traffic``): ``requests_per_second`` and ``inflight_requests`` per pod and per Service,
    summed over nodes. Remote agents' data planes are not asked yet (as for ``pods/log``)."""

    METRICS = ("requests_per_second", "inflight_requests")

    def __init__(self, reports: Callable[[], list[TrafficReport]], clock: Clock | None = None) -> None:
        self.reports = reports
        self.clock: Clock = clock or SystemClock()

    def _check(self, metric: str) -> list[TrafficReport]:
        if metric not in self.METRICS:
            raise MetricUnavailable(
                f"unable to get metric {metric}: unknown metric (served: {', '.join(self.METRICS)})"
            )
        reports = self.reports()
        if not reports:
            raise MetricUnavailable(
                f"unable to get metric {metric}: no service proxy in this process reports traffic "
                "(remote nodes' proxies are not asked yet)"
            )
        return reports

    @staticmethod
    def _value(rate: Rate, metric: str) -> float:
        return rate.requests_per_second if metric == "requests_per_second" else rate.inflight

    async def pod_metric(self, namespace: str, pod_names: list[str], metric: str) -> Mapping[str, Sample]:
        totals: dict[str, float] = {}
        for report in self._check(metric):
            for name in pod_names:
                rate = report.pods.get(f"{namespace}/{name}")
                if rate is not None:
                    totals[name] = totals.get(name, 0.0) + self._value(rate, metric)
        now = self.clock.now()
        # A pod no proxy has sent anything to yet had no traffic: 0, not "missing".
        return {name: Sample(totals.get(name, 0.0), now) for name in pod_names}

    async def object_metric(self, namespace: str, described: Mapping[str, Any], metric: str) -> float:
        reports = self._check(metric)
        if described.get("kind") != "Service":
            raise MetricUnavailable(f"unable to get metric {metric}: only Services have traffic metrics")
        key = f"{namespace}/{described.get('name')}"
        return sum(self._value(r.services[key], metric) for r in reports if key in r.services)

    async def idle_seconds(self, namespace: str, services: list[str]) -> float | None:
        keys = [f"{namespace}/{name}" for name in services]
        idle = [r.idle_seconds[k] for r in self.reports() for k in keys if k in r.idle_seconds]
        return min(idle) if idle else None
