"""Endpoints controller: keeps each Service's core/v1 Endpoints and discovery/v1 EndpointSlices current.

IO around the pure planner ``corral.controllers.endpointsplan`` (read that module for what is written and
why). Level-triggered, keyed by Service (``namespace/name``):

- Service and Endpoints changes enqueue their own key; an EndpointSlice change enqueues the Service named by
  its ``kubernetes.io/service-name`` label (before and after the change), so an edited or deleted slice is
  repaired.
- A pod change enqueues the Services of its namespace whose selector matches the pod's labels before *or*
  after the change (a relabelled pod must leave the old Service), and only when something endpoints depend
  on changed (labels, IP, readiness, deletion, phase, allocated ports, node, hostname).
- ``reconcile`` reads the caches, plans, and writes with compare-and-set: creates carry deterministic
  names, updates the resourceVersion they were planned from, so a stale cache costs a conflict and a retry,
  never a duplicate. Errors requeue that Service alone with backoff; other Services are not affected.
- A ``targetPort`` name a selected pod does not declare becomes a ``FailedToResolvePort`` Warning event on
  the Service (once per port and pod while it lasts); the pod is left out of that port.

Services without a selector keep hand-written Endpoints, which are mirrored into slices (the proxy reads
slices only), like upstream's endpointslicemirroring controller.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer
from corral.controllers.endpointsplan import (
    CONTROLLER_NAME,
    MIRROR_CONTROLLER_NAME,
    SERVICE_NAME_LABEL,
    PortFailure,
    ServicePlan,
    is_pod_ready,
    is_terminating,
    plan_service,
    pod_ip,
    selects,
    service_selector,
    slice_manager,
)
from corral.controllers.events import EventRecorder
from corral.controllers.runtime import ControllerManager
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
SERVICES = REGISTRY.require("services")
PODS = REGISTRY.require("pods")
ENDPOINTS = REGISTRY.require("endpoints")
ENDPOINT_SLICES = REGISTRY.require("endpointslices.discovery.k8s.io")
PORTS_ANNOTATION = "corral.dev/ports"
FAILED_TO_RESOLVE_PORT = "FailedToResolvePort"


def _meta(obj: Mapping[str, Any]) -> JSON:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def pod_fingerprint(pod: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything about a pod that its endpoints depend on: an unchanged fingerprint enqueues nothing."""
    meta = _meta(pod)
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    return (
        meta.get("uid"),
        tuple(sorted((meta.get("labels") or {}).items())),
        (meta.get("annotations") or {}).get(PORTS_ANNOTATION),
        pod_ip(pod),
        is_pod_ready(pod),
        is_terminating(pod),
        status.get("phase"),
        spec.get("nodeName"),
        spec.get("hostname"),
        spec.get("subdomain"),
    )


class _TakenNames:
    """Slice names already used in a namespace, looked up in the slice cache (a ``Container``)."""

    def __init__(self, cache: Informer, namespace: str) -> None:
        self.cache, self.namespace = cache, namespace

    def __contains__(self, name: object) -> bool:
        return self.cache.get(f"{self.namespace}/{name}") is not None


class EndpointsController:
    name = "endpoints-controller"
    workers = 4

    def __init__(self, transport: Transport, clock: Clock | None = None) -> None:
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.events = EventRecorder(transport, "endpoint-controller", self.clock)
        self.services: Informer | None = None
        self.pods: Informer | None = None
        self.endpoints: Informer | None = None
        self.slices: Informer | None = None
        self._manager: ControllerManager | None = None
        # Indexes kept by the event handlers (the informer offers none): namespace → selectors and pods,
        # Service → its slices, and what each pod looked like last time.
        self._selectors: dict[str, dict[str, dict[str, str]]] = {}
        self._pods_by_namespace: dict[str, set[str]] = {}
        self._pod_seen: dict[str, tuple[dict[str, Any], tuple[Any, ...]]] = {}
        self._slices_by_service: dict[str, set[str]] = {}
        self._slice_service: dict[str, str] = {}
        self._reported: dict[str, set[PortFailure]] = {}
        self._service_uids: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------- wiring

    def setup(self, manager: ControllerManager) -> None:
        self._manager = manager
        self.services = manager.watch(self, SERVICES)
        self.services.add_handler(self._on_service)
        self.endpoints = manager.watch(self, ENDPOINTS)
        self.pods = manager.informer(PODS)
        self.pods.add_handler(self._on_pod)
        self.slices = manager.informer(ENDPOINT_SLICES)
        self.slices.add_handler(self._on_slice)

    def _enqueue(self, key: str) -> None:
        assert self._manager is not None
        self._manager.queue_of(self).add(key)

    def _on_service(self, key: str) -> None:
        assert self.services is not None
        namespace = key.partition("/")[0]
        service = self.services.get(key)
        selectors = self._selectors.setdefault(namespace, {})
        if service is None:
            selectors.pop(key, None)
            # Gone: drop what the event recorder and the failure report remember about it.
            self.events.forget(self._service_uids.pop(key, ""))
            self._reported.pop(key, None)
        else:
            selectors[key] = service_selector(service)
            self._service_uids[key] = str(_meta(service).get("uid") or "")

    def _on_pod(self, key: str) -> None:
        assert self.pods is not None
        namespace = key.partition("/")[0]
        pod = self.pods.get(key)
        previous = self._pod_seen.pop(key, None)
        old_labels = previous[0] if previous is not None else None
        new_labels: dict[str, Any] | None = None
        if pod is None:
            self._pods_by_namespace.get(namespace, set()).discard(key)
        else:
            self._pods_by_namespace.setdefault(namespace, set()).add(key)
            new_labels = dict(_meta(pod).get("labels") or {})
            fingerprint = pod_fingerprint(pod)
            self._pod_seen[key] = (new_labels, fingerprint)
            if previous is not None and previous[1] == fingerprint:
                return
        for service_key, selector in self._selectors.get(namespace, {}).items():
            if selects(selector, old_labels) or selects(selector, new_labels):
                self._enqueue(service_key)

    def _on_slice(self, key: str) -> None:
        assert self.slices is not None
        endpoint_slice = self.slices.get(key)
        old = self._slice_service.pop(key, None)
        if old is not None:
            self._slices_by_service.get(old, set()).discard(key)
        new: str | None = None
        if endpoint_slice is not None:
            service_name = (_meta(endpoint_slice).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if service_name:
                new = f"{key.partition('/')[0]}/{service_name}"
                self._slice_service[key] = new
                self._slices_by_service.setdefault(new, set()).add(key)
        if endpoint_slice is not None and slice_manager(endpoint_slice) not in (
            CONTROLLER_NAME,
            MIRROR_CONTROLLER_NAME,
        ):
            return  # somebody else's slice: nothing of ours to repair
        for service_key in {old, new} - {None}:
            assert service_key is not None
            self._enqueue(service_key)

    # ---------------------------------------------------------------------------------------- reconcile

    async def reconcile(self, key: str) -> float | None:
        assert self.services and self.pods and self.endpoints and self.slices
        namespace = key.partition("/")[0]
        service = self.services.get(key)
        pods = [p for k in self._pods_by_namespace.get(namespace, ()) if (p := self.pods.get(k)) is not None]
        slices = [s for k in self._slices_by_service.get(key, ()) if (s := self.slices.get(k)) is not None]
        plan = plan_service(
            service, pods, self.endpoints.get(key), slices, taken_names=_TakenNames(self.slices, namespace)
        )
        await self._apply(namespace, plan)
        if service is not None:
            await self._report(key, service, plan.failures)
        return None

    async def _apply(self, namespace: str, plan: ServicePlan) -> None:
        if plan.endpoints_create is not None:
            await self.transport.create(ENDPOINTS, namespace, plan.endpoints_create)
        if plan.endpoints_update is not None:
            name = str(_meta(plan.endpoints_update).get("name"))
            await self.transport.update(ENDPOINTS, namespace, name, plan.endpoints_update)
        for body in plan.slices.create:
            await self.transport.create(ENDPOINT_SLICES, namespace, body)
        for body in plan.slices.update:
            name = str(_meta(body).get("name"))
            await self.transport.update(ENDPOINT_SLICES, namespace, name, body)
        for gone in plan.slices.delete:
            await self._delete(ENDPOINT_SLICES, namespace, gone)
        if plan.endpoints_delete is not None:
            await self._delete(ENDPOINTS, namespace, plan.endpoints_delete)

    async def _delete(self, rt: ResourceType, namespace: str, obj: JSON) -> None:
        meta = _meta(obj)
        try:
            await self.transport.delete(
                rt, namespace, str(meta.get("name")), precondition_uid=meta.get("uid") or None
            )
        except st.ApiError as exc:
            if exc.code != 404:
                raise

    async def _report(self, key: str, service: JSON, failures: list[PortFailure]) -> None:
        """One Warning event per (port, pod) failure when it appears; nothing while it merely persists."""
        current = set(failures)
        seen = self._reported.get(key, set())
        self._reported[key] = current
        if not current - seen:
            return
        involved = {"apiVersion": "v1", "kind": "Service", **copy.deepcopy(service)}
        name = str(_meta(service).get("name"))
        for failure in sorted(current - seen):
            await self.events.record(involved, "Warning", FAILED_TO_RESOLVE_PORT, failure.message(name))
