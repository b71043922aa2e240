"""The HPA controller in process: scale subresource writes, status, conditions and events.

Memory store, the Deployment + ReplicaSet controllers and the HPA controller; the test plays the node (marks
pods Running and Ready) and the metrics source (a Pods metric whose total it sets). The algorithm itself is
table-tested in tests/unit/test_hpa_plan.py; real metrics and real processes are in test_autoscaling.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from corral.controllers.deployment import DeploymentController
from corral.controllers.hpa import HorizontalPodAutoscalerController
from corral.controllers.hpaplan import Sample
from corral.controllers.replicaset import ReplicaSetController
from corral.testing.controllers import InProcessCluster, rt
from corral.util.clock import rfc3339

JSON = dict[str, Any]
NS = "default"


class TotalLoad:
    """A Pods metric: ``total`` spread evenly over the pods asked about."""

    def __init__(self, clock: Any) -> None:
        self.total = 0.0
        self.clock = clock

    async def pod_metric(self, namespace: str, pod_names: list[str], metric: str) -> Mapping[str, Sample]:
        if metric != "requests_per_second":
            from corral.controllers.hpa import MetricUnavailable

            raise MetricUnavailable(f"unable to get metric {metric}: unknown metric")
        share = self.total / max(len(pod_names), 1)
        return {name: Sample(share, self.clock.now()) for name in pod_names}

    async def object_metric(self, namespace: str, described: Mapping[str, Any], metric: str) -> float:
        return self.total

    async def idle_seconds(self, namespace: str, services: list[str]) -> float | None:
        return None


@pytest.fixture
async def env() -> AsyncIterator[tuple[InProcessCluster, TotalLoad]]:
    holder: dict[str, TotalLoad] = {}

    def hpa_controller(t: Any, clock: Any) -> HorizontalPodAutoscalerController:
        holder["load"] = TotalLoad(clock)
        return HorizontalPodAutoscalerController(t, clock, sync_period=0.05, custom=holder["load"])

    async with InProcessCluster(
        lambda t, clock: DeploymentController(t, clock),
        lambda t, clock: ReplicaSetController(t, clock),
        hpa_controller,
    ) as c:
        node = asyncio.create_task(_play_node(c))
        try:
            yield c, holder["load"]
        finally:
            node.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await node


async def _play_node(c: InProcessCluster) -> None:
    """Every pod the ReplicaSet controller creates turns Running and Ready (there is no agent here)."""
    while True:
        for pod in await c.list("pods", NS):
            if (pod.get("status") or {}).get("phase") == "Running":
                continue
            now = rfc3339(c.clock.now())
            pod["status"] = {
                "phase": "Running",
                "startTime": now,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
            }
            with contextlib.suppress(Exception):
                await c.transport.update(rt("pods"), NS, pod["metadata"]["name"], pod, subresource="status")
        await asyncio.sleep(0.02)


def deployment(replicas: int = 1) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "app", "command": ["serve"]}]},
            },
        },
    }


def hpa(target: str = "web", metric: str = "requests_per_second", **spec: Any) -> JSON:
    body: JSON = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": 1,
        "maxReplicas": 5,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": metric},
                    "target": {"type": "AverageValue", "averageValue": "10"},
                },
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
    }
    body.update(spec)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": body,
    }


async def replicas(c: InProcessCluster) -> int:
    d = await c.get("deployments.apps", NS, "web")
    assert d is not None
    return int(d["spec"]["replicas"])


async def hpa_status(c: InProcessCluster) -> JSON:
    obj = await c.get("horizontalpodautoscalers.autoscaling", NS, "web")
    assert obj is not None
    return dict(obj.get("status") or {})


def condition(status: JSON, ctype: str) -> tuple[str, str]:
    for cond in status.get("conditions") or []:
        if cond["type"] == ctype:
            return cond["status"], cond["reason"]
    return "", ""


async def events(c: InProcessCluster, reason: str) -> list[JSON]:
    return [e for e in await c.list("events", NS) if e.get("reason") == reason]


async def test_scales_out_with_load_and_back_in(env: tuple[InProcessCluster, TotalLoad]) -> None:
    c, load = env
    await c.transport.create(rt("deployments.apps"), NS, deployment())
    await c.transport.create(rt("horizontalpodautoscalers.autoscaling"), NS, hpa())
    await c.wait_for(lambda: _ready_pods(c, 1), what="one ready pod")

    load.total = 45.0  # needs 5 pods of 10
    await c.wait_for(lambda: _replicas_are(c, 5), what="scaled out to 5")
    status = await c.wait_for(lambda: _status_with(c, desired=5), what="status")
    assert status["currentMetrics"][0]["pods"]["metric"]["name"] == "requests_per_second"
    assert condition(status, "ScalingActive") == ("True", "ValidMetricFound")
    assert "lastScaleTime" in status
    (rescale,) = await events(c, "SuccessfulRescale")
    assert rescale["message"] == "New size: 5; reason: pods metric requests_per_second above target"

    load.total = 0.0
    await c.wait_for(lambda: _replicas_are(c, 1), what="scaled in to 1")
    messages = {e["message"] for e in await events(c, "SuccessfulRescale")}
    assert "New size: 1; reason: All metrics below target" in messages


async def test_default_scale_down_window_holds_replicas(env: tuple[InProcessCluster, TotalLoad]) -> None:
    c, load = env
    await c.transport.create(rt("deployments.apps"), NS, deployment(3))
    body = hpa()
    del body["spec"]["behavior"]  # the default: 300 s of stabilization before scaling down
    await c.transport.create(rt("horizontalpodautoscalers.autoscaling"), NS, body)
    await c.wait_for(lambda: _ready_pods(c, 3), what="three ready pods")
    load.total = 30.0
    await c.wait_for(lambda: _status_with(c, desired=3), what="a first recommendation")
    load.total = 0.0
    status = await c.wait_for(lambda: _stabilized(c), what="a held scale-down")
    assert await replicas(c) == 3 and status["desiredReplicas"] == 3
    c.clock.advance(timedelta(seconds=301).total_seconds())
    await c.wait_for(lambda: _replicas_are(c, 1), what="scaled in after the window")


async def test_bad_targets_and_metrics_give_conditions_not_storms(
    env: tuple[InProcessCluster, TotalLoad],
) -> None:
    c, _ = env
    await c.transport.create(rt("horizontalpodautoscalers.autoscaling"), NS, hpa(target="missing"))
    status = await c.wait_for(lambda: _condition_is(c, "AbleToScale", "False"), what="AbleToScale False")
    assert condition(status, "AbleToScale") == ("False", "FailedGetScale")
    assert 'deployments.apps "missing" not found' in status["conditions"][0]["message"]
    # Several sync periods later: one aggregated event whose count grows, not one event per sync.
    await c.wait_for(lambda: _event_count(c, "FailedGetScale", 3), what="repeated failures counted")
    assert len(await events(c, "FailedGetScale")) == 1

    await c.transport.delete(rt("horizontalpodautoscalers.autoscaling"), NS, "web")
    await c.transport.create(rt("deployments.apps"), NS, deployment(2))
    await c.transport.create(rt("horizontalpodautoscalers.autoscaling"), NS, hpa(metric="nonexistent"))
    status = await c.wait_for(lambda: _condition_is(c, "ScalingActive", "False"), what="ScalingActive False")
    assert condition(status, "ScalingActive") == ("False", "FailedGetPodsMetric")
    assert (
        "unknown metric" in next(x for x in status["conditions"] if x["type"] == "ScalingActive")["message"]
    )
    assert await replicas(c) == 2


async def _event_count(c: InProcessCluster, reason: str, at_least: int) -> bool:
    return any(int(e.get("count") or 1) >= at_least for e in await events(c, reason))


async def _ready_pods(c: InProcessCluster, n: int) -> bool:
    pods = [p for p in await c.list("pods", NS) if (p.get("status") or {}).get("phase") == "Running"]
    return len(pods) >= n


async def _replicas_are(c: InProcessCluster, n: int) -> bool:
    return await replicas(c) == n


async def _status_with(c: InProcessCluster, desired: int) -> JSON | None:
    status = await hpa_status(c)
    return status if status.get("desiredReplicas") == desired and status.get("currentMetrics") else None


async def _stabilized(c: InProcessCluster) -> JSON | None:
    status = await hpa_status(c)
    return status if condition(status, "AbleToScale") == ("True", "ScaleDownStabilized") else None


async def _condition_is(c: InProcessCluster, ctype: str, value: str) -> JSON | None:
    status = await hpa_status(c)
    return status if condition(status, ctype)[0] == value else None
