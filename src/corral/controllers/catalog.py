"""The controllers ``corral up`` / ``corral server`` run, in one place so adding one is one line here."""

from __future__ import annotations

from corral.client.base import Transport
from corral.controllers.cronjob import CronJobController
from corral.controllers.deployment import DeploymentController
from corral.controllers.disruption import DisruptionController
from corral.controllers.endpoints import EndpointsController
from corral.controllers.gc import GarbageCollector
from corral.controllers.hpa import SYNC_PERIOD, CustomMetrics, HorizontalPodAutoscalerController
from corral.controllers.job import JobController
from corral.controllers.nodelifecycle import NodeLifecycleController
from corral.controllers.nodelifecycleplan import LifecycleConfig
from corral.controllers.replicaset import ReplicaSetController
from corral.controllers.runtime import Controller
from corral.controllers.servicelb import ServiceLoadBalancerController
from corral.controllers.tokencleaner import TokenCleaner
from corral.util.clock import Clock


def all_controllers(
    transport: Transport,
    clock: Clock,
    custom_metrics: CustomMetrics | None = None,
    hpa_sync_period: float = SYNC_PERIOD,
    node_lifecycle: LifecycleConfig | None = None,
) -> list[Controller]:
    controllers: list[Controller] = []
    controllers.append(GarbageCollector(transport))
    controllers.append(JobController(transport, clock))
    controllers.append(CronJobController(transport, clock))
    controllers.append(ReplicaSetController(transport, clock))
    controllers.append(DeploymentController(transport, clock))
    controllers.append(EndpointsController(transport, clock))
    controllers.append(ServiceLoadBalancerController(transport))
    controllers.append(DisruptionController(transport, clock))
    controllers.append(NodeLifecycleController(transport, clock, node_lifecycle))
    controllers.append(TokenCleaner(transport, clock))
    controllers.append(
        HorizontalPodAutoscalerController(
            transport, clock, sync_period=hpa_sync_period, custom=custom_metrics
        )
    )
    return controllers
