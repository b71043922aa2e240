"""The node's data plane: one set of informers (Services, EndpointSlices, Ingresses) feeding the service
proxy, the DNS server and the ingress, plus the termination gate that makes rollouts lose no request.

Boundary: this module only moves snapshots from the API to the data-plane components and reports what they
could not do (Warning events, Ingress status). Routing, resolution and forwarding live in the components
(``service_proxy``, ``dns``, ``ingress``); what "ready" means lives in ``backends``.

Changes are coalesced: a burst of watch events (a rollout touching many slices, 1,000 Services created at
once) triggers one snapshot push after ``coalesce_seconds``, and each component diffs the snapshot itself.

Traffic for the autoscaler: every second the proxy's counters go into a ``traffic.TrafficWindow``;
:meth:`NodeDataPlane.traffic` reports requests per second and requests in flight per pod and per Service, and
how long each Service has been idle. A connection held because a Service's pods are at zero asks for a
replica by writing the annotation ``corral.dev/activation-requested-at`` on the Service (the autoscaler
watches it).

Termination gate: before the agent sends SIGTERM to a pod that is an endpoint of some Service, it awaits
:meth:`NodeDataPlane.drained`. That returns once this node's proxy no longer picks the pod for new
connections (the endpoints controller marked it terminating and the proxy applied that), then waits a short
margin so requests already accepted finish and proxies on other nodes catch up — the same job a
``preStop: sleep`` does in Kubernetes, without asking users to write one.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer
from corral.controllers.events import EventRecorder
from corral.proxy.dns import DnsServer
from corral.proxy.ingress import IngressServer
from corral.proxy.ingressroutes import load_balancer_ingress
from corral.proxy.service_proxy import ServiceProxy
from corral.proxy.traffic import Rate, TrafficWindow
from corral.util.clock import Clock, SystemClock


def rfc3339_micro(moment: Any) -> str:
    """A timestamp with microseconds: two activation requests within a second must differ."""
    return str(moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

log = logging.getLogger(__name__)

JSON = dict[str, Any]


def _rt(name: str) -> ResourceType:
    rt = REGISTRY.resolve(name)
    assert rt is not None, name
    return rt


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    timeout: float = 5.0
    """Longest wait for this node's proxy to stop picking a terminating pod."""
    margin: float = 1.0
    """Extra time for accepted requests to finish and other nodes' proxies to catch up."""


ACTIVATION_REQUESTED = "corral.dev/activation-requested-at"
TRAFFIC_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class TrafficReport:
    """One node's view of traffic: rates per pod and per Service (``namespace/name``), and per Service the
    seconds since it last had traffic."""

    pods: dict[str, Rate] = field(default_factory=dict)
    services: dict[str, Rate] = field(default_factory=dict)
    idle_seconds: dict[str, float] = field(default_factory=dict)


class NodeDataPlane:
    def __init__(
        self,
        transport: Transport,
        *,
        proxy: ServiceProxy | None = None,
        dns: DnsServer | None = None,
        ingress: IngressServer | None = None,
        node_name: str = "",
        coalesce_seconds: float = 0.005,
        drain: DrainPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.transport = transport
        self.proxy, self.dns, self.ingress = proxy, dns, ingress
        self.coalesce_seconds = coalesce_seconds
        self.drain_policy = drain or DrainPolicy()
        self.services = Informer(transport, _rt("services"))
        self.slices = Informer(transport, _rt("endpointslices.discovery.k8s.io"))
        self.ingresses: Informer | None = (
            Informer(transport, _rt("ingresses.networking.k8s.io")) if ingress is not None else None
        )
        self.events = EventRecorder(transport, "corral-proxy", clock or SystemClock(), host=node_name)
        self._dirty = asyncio.Event()
        self._applied = asyncio.Condition()
        self._routable_pods: frozenset[str] = frozenset()
        self._tasks: list[asyncio.Task[Any]] = []
        self._reported: dict[str, str] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.clock: Clock = clock or SystemClock()
        self.window = TrafficWindow()
        if proxy is not None:
            proxy.on_activate = self._request_activation

    @property
    def dns_address(self) -> str:
        """``HOST:PORT`` of the node's DNS server, or "" when it is off."""
        return self.dns.address if self.dns is not None else ""

    @property
    def ingress_address(self) -> str:
        if self.ingress is None:
            return ""
        host, port = self.ingress.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        informers = [self.services, self.slices] + ([self.ingresses] if self.ingresses else [])
        for informer in informers:
            informer.add_handler(self._changed)
        self._tasks = [asyncio.create_task(i.run(), name=f"dataplane-{i.rt.plural}") for i in informers]
        for informer in informers:
            await informer.wait_synced()
        self._push()
        self._tasks.append(asyncio.create_task(self._pusher(), name="dataplane-push"))
        if self.proxy is not None:
            self._tasks.append(asyncio.create_task(self._sample_traffic(), name="dataplane-traffic"))

    async def stop(self) -> None:
        """Stop following the API (the listeners keep their last state)."""
        tasks = self._tasks + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def close(self) -> None:
        """Stop following the API and close every listener of the node."""
        await self.stop()
        for part in (self.ingress, self.dns, self.proxy):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.stop()

    # ------------------------------------------------------------------ snapshots

    def _changed(self, _key: str) -> None:
        self._dirty.set()

    async def _pusher(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.coalesce_seconds)
            self._dirty.clear()
            try:
                self._push()
            except Exception:  # a consumer bug must not stop updates for the others
                log.exception("data plane update failed")
            async with self._applied:
                self._applied.notify_all()

    def _push(self) -> None:
        services = self.services.list()
        slices = self.slices.list()
        if self.proxy is not None:
            self.proxy.update(services, slices)
        if self.dns is not None:
            self.dns.update(services, slices)
        if self.ingress is not None and self.ingresses is not None:
            self.ingress.update(self.ingresses.list(), services, slices)
        self._routable_pods = self._proxied_pods()
        self._spawn(self._report())

    def _proxied_pods(self) -> frozenset[str]:
        """``namespace/name`` of every pod this node's proxy would send a new connection to: read from the
        table it just built (its routes carry only routable backends), not worked out a second time."""
        if self.proxy is None:
            return frozenset()
        return frozenset(b.pod for route in self.proxy.table.routes.values() for b in route.backends if b.pod)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _report(self) -> None:
        """Warning events for what the proxy and ingress could not do; the ingresses' status address."""
        problems: dict[str, str] = {}
        if self.proxy is not None:
            for proxy_problem in self.proxy.problems():
                message = proxy_problem.message
                if proxy_problem.frontend.port < 1024 and "ermission denied" in message:
                    message += (
                        " (ports below 1024 need root, CAP_NET_BIND_SERVICE or "
                        "sysctl net.ipv4.ip_unprivileged_port_start=0)"
                    )
                problems[f"services/{proxy_problem.service}"] = message
        if self.ingress is not None:
            for problem in self.ingress.problems:
                problems[f"ingresses/{problem.ingress}"] = problem.message
        for key, message in problems.items():
            if self._reported.get(key) == message:
                continue
            kind, _, name = key.partition("/")
            informer = self.services if kind == "services" else self.ingresses
            obj = informer.get(name) if informer is not None else None
            if obj is not None:
                reason = "FailedToListen" if kind == "services" else "BackendNotFound"
                await self.warn(obj, reason, message)
        self._reported = problems
        if self.ingress is not None and self.ingresses is not None:
            load_balancer = load_balancer_ingress([self.ingress.host], self.ingress.bound_port)
            for ingress in self.ingresses.list():
                if self.ingress.handles(ingress):
                    with contextlib.suppress(Exception):
                        await self.set_ingress_status(ingress, load_balancer)

    # ------------------------------------------------------------------ traffic

    async def _sample_traffic(self) -> None:
        assert self.proxy is not None
        while True:
            self.window.add(self.clock.monotonic(), self.proxy.stats())
            await asyncio.sleep(TRAFFIC_INTERVAL)

    def traffic(self) -> TrafficReport:
        """Rates per pod and per Service over the last few seconds, and each Service's idle time."""
        if self.proxy is None:
            return TrafficReport()
        pods_by_address = {
            (route.service, f"{b.ip}:{b.port}"): b.pod
            for route in self.proxy.table.routes.values()
            for b in route.backends
            if b.pod
        }
        pods: dict[str, Rate] = {}
        for key, rate in self.window.endpoints().items():
            pod = pods_by_address.get(key)
            if pod is None:
                continue
            known = pods.get(pod)
            # A pod behind several Services (or ports) gets their sum.
            pods[pod] = rate if known is None else Rate(
                known.requests_per_second + rate.requests_per_second,
                known.inflight + rate.inflight,
                known.http or rate.http,
            )
        now = self.clock.monotonic()
        services = self.window.services()
        idle = {
            name: now - last
            for name in services
            if (last := self.window.last_active(name)) is not None
        }
        return TrafficReport(pods, services, idle)

    def _request_activation(self, service: str) -> None:
        """A connection waits for a Service whose pods are at zero: ask the autoscaler for a replica."""
        self._spawn(self._annotate_activation(service))

    async def _annotate_activation(self, service: str) -> None:
        namespace, _, name = service.partition("/")
        patch = {"metadata": {"annotations": {ACTIVATION_REQUESTED: rfc3339_micro(self.clock.now())}}}
        try:
            await self.transport.patch(
                _rt("services"), namespace, name, "application/merge-patch+json", patch
            )
        except st.ApiError as exc:
            log.warning("cannot request activation of service %s: %s", service, exc.message)

    # ------------------------------------------------------------------ termination gate

    def is_endpoint(self, pod: JSON) -> bool:
        """Whether new connections may still go to this pod through some Service."""
        meta = pod.get("metadata") or {}
        return f"{meta.get('namespace')}/{meta.get('name')}" in self._routable_pods

    def was_endpoint(self, pod: JSON) -> bool:
        """Whether any slice lists this pod (ready or not): such pods get the drain margin."""
        meta = pod.get("metadata") or {}
        name = f"{meta.get('namespace')}/{meta.get('name')}"
        for endpoint_slice in self.slices.list():
            for endpoint in endpoint_slice.get("endpoints") or []:
                ref = endpoint.get("targetRef") or {}
                if f"{ref.get('namespace')}/{ref.get('name')}" == name:
                    return True
        return False

    async def drained(self, pod: JSON, budget: float) -> None:
        """Wait until this node stops sending new connections to ``pod`` (at most ``budget`` seconds)."""
        if not self.was_endpoint(pod) or budget <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(budget, self.drain_policy.timeout)
        async with self._applied:
            while self.is_endpoint(pod):
                left = deadline - loop.time()
                if left <= 0:
                    log.info("pod %s still routable after the drain timeout", pod["metadata"].get("name"))
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._applied.wait(), left)
        margin = min(self.drain_policy.margin, max(0.0, deadline - loop.time()))
        if margin > 0:
            await asyncio.sleep(margin)

    # ------------------------------------------------------------------ reporting

    async def warn(self, obj: JSON, reason: str, message: str) -> None:
        with contextlib.suppress(Exception):
            await self.events.record(obj, "Warning", reason, message)

    async def set_ingress_status(self, ingress: JSON, load_balancer: list[JSON]) -> None:
        """Write ``status.loadBalancer.ingress`` when it differs (CAS; a lost race is retried next push)."""
        current = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if current == load_balancer:
            return
        updated = copy.deepcopy(ingress)
        updated.setdefault("status", {})["loadBalancer"] = {"ingress": load_balancer}
        meta = ingress["metadata"]
        rt = _rt("ingresses.networking.k8s.io")
        try:
            await self.transport.update(
                rt, meta.get("namespace"), meta["name"], updated, subresource="status"
            )
        except st.ApiError as exc:
            if exc.code not in (404, 409):
                raise


class _Listener(Protocol):
    host: str
    port: int

    async def start(self) -> None: ...


_L = TypeVar("_L", bound=_Listener)


async def _started(part: _L, what: str) -> _L | None:
    """``part`` listening, or None (logged) when its port cannot be bound: that part stays off."""
    try:
        await part.start()
    except OSError as exc:
        log.error("%s not started on %s:%s: %s", what, part.host, part.port, exc)
        return None
    return part


async def open_dataplane(
    transport: Transport, address: str, node_name: str, dns_port: int | None, ingress_port: int | None
) -> NodeDataPlane:
    """Bind the node's service proxy, DNS server (unless ``dns_port`` is None) and ingress (unless
    ``ingress_port`` is None). Needs no API call, so the agent can be given the DNS address before it starts;
    :meth:`NodeDataPlane.start` then follows the API. A port already taken is logged and that part stays
    off: the rest of the node keeps working."""
    proxy = ServiceProxy([address])
    await proxy.start()
    dns = await _started(DnsServer(address, dns_port), "dns server") if dns_port is not None else None
    ingress = (
        await _started(IngressServer(address, ingress_port), "ingress") if ingress_port is not None else None
    )
    return NodeDataPlane(transport, proxy=proxy, dns=dns, ingress=ingress, node_name=node_name)
