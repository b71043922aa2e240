"""The node agent: registers its Node, renews its Lease, and converges the pods bound to it.

Everything it learns goes through ``corral.client`` (the in-process transport inside ``corral up``, HTTP for a
remote agent). Per pod it gathers observations (runtime instances, start failures, probe outcomes), asks the
pure planner (``podsync.plan_pod``) what to do, applies the actions with the runtime and writes the status.
Handlers only enqueue pod keys; the reconcile reads the whole state every time (level-triggered).

It is also the node's endpoint for ``pods/log`` and ``pods/exec`` (``apiserver.nodeproxy.NodeEndpoint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.agent import logs as logfiles
from corral.agent.atomicwriter import materialise_volumes
from corral.agent.environment import ConfigError, PodFacts, build_argv, build_environment
from corral.agent.mounting import bind_mounts, mount_memory_volumes, resolve_volume_mode, unmount_under
from corral.agent.mountplan import VolumeMode, memory_volumes
from corral.agent.node import lease_object, machine_facts, node_object, node_status
from corral.agent.podsync import (
    Action,
    ActionKind,
    BackoffPolicy,
    Observed,
    PodContext,
    ProbeOutcome,
    StartFailure,
    plan_pod,
)
from corral.agent.ports import (
    HostPortAllocator,
    PortAllocationError,
    declared_ports,
    encode_ports,
    pod_port_mapping,
    port_env,
    probe_host_ports,
)
from corral.agent.probes import (
    ContainerProber,
    Outcome,
    ProbeConfigError,
    ProbeKind,
    ProbeResult,
    ProbeTarget,
    parse_container_probes,
    runtime_exec_fn,
)
from corral.agent.runtimes.base import (
    BindMount,
    ContainerId,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ExecStreams,
    Runtime,
    StartError,
)
from corral.agent.servicelinks import service_environment
from corral.agent.usage import NodeUsage, UsageSampler
from corral.agent.volumes import (
    VOLUMES_ENV,
    VolumePlan,
    container_mounts,
    link_mounts,
    plan_volumes,
)
from corral.api.configrefs import (
    CONFIGMAP,
    SECRET,
    container_refs,
    is_snapshot_of,
    parse_pins,
    pinned_name,
    volume_refs,
)
from corral.api.quantity import parse_quantity
from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st
from corral.apiserver.nodeproxy import LogOptions
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.client.workqueue import ShutDown, WorkQueue
from corral.controllers.events import EventRecorder
from corral.observability import track_agent
from corral.observability.registry import (
    AGENT_CONTAINER_RESTARTS,
    AGENT_CONTAINER_START_ERRORS,
    AGENT_CONTAINER_STARTS,
    AGENT_POD_STARTS,
)
from corral.util.clock import Clock, SystemClock, parse_rfc3339

log = logging.getLogger(__name__)

JSON = dict[str, Any]
PORTS_ANNOTATION = "corral.dev/ports"
BACKOFF_BASE_ANNOTATION = "corral.dev/restart-backoff-base"
BACKOFF_CAP_ANNOTATION = "corral.dev/restart-backoff-cap"
HEARTBEAT_SECONDS = 2.0  # Lease renewal; the node lifecycle controller's grace period is 10 s (node.py)
NODE_STATUS_SECONDS = 60.0
SWEEP_SECONDS = 30.0
WORKERS = 4
SERVICES_SYNC_SECONDS = 10.0
VOLUME_RESYNC_SECONDS = 2.0
SNAPSHOT_CACHE_SIZE = 512  # config snapshots read (immutable, so never re-read); cleared when full


def _rt(plural: str) -> ResourceType:
    rt = REGISTRY.resolve(plural)
    assert rt is not None, plural
    return rt


PODS, NODES, LEASES = _rt("pods"), _rt("nodes"), _rt("leases.coordination.k8s.io")
CONFIGMAPS, SECRETS = _rt("configmaps"), _rt("secrets")


TerminationGate = Callable[[JSON, float], Awaitable[None]]
"""``gate(pod, budget_seconds)``: returns when the pod may get SIGTERM (see ``corral.proxy.node``)."""


@dataclass
class AgentConfig:
    node_name: str
    address: str
    data_dir: Path
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    port_range: tuple[int, int] = (20000, 29999)
    max_pods: int = 110
    workers: int = WORKERS
    dns_address: str | None = None
    """``addr:port`` of the node's DNS server, given to containers as ``CORRAL_DNS`` (servicelinks)."""
    volume_mode: str = "auto"
    """Where volumes appear: ``namespace`` (real ``mountPath`` in a private mount namespace, root on Linux),
    ``sandbox`` (under the pod's sandbox, ``$CORRAL_VOLUMES``) or ``auto`` (namespace when possible)."""
    readiness_warmup: bool = True
    """Probe readiness every 50 ms until the first success (``ProbeTracker``); False: kubelet timing."""
    metrics_interval: float = 5.0
    """Seconds between resource usage samples (``agent.usage``; served by the metrics API)."""
    node_api_port: int = 0
    """Port of this agent's node API (``agent.nodeapi``), published in the Node's daemonEndpoints; 0: none."""


@dataclass
class _PodState:
    key: str
    instances: dict[str, list[ContainerStatus]] = field(default_factory=dict)
    failures: dict[str, StartFailure] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    probes: dict[str, ProbeOutcome] = field(default_factory=dict)
    probers: dict[str, ContainerProber] = field(default_factory=dict)
    last_status: JSON | None = None


class Agent:
    def __init__(
        self, transport: Transport, runtime: Runtime, config: AgentConfig, clock: Clock | None = None
    ) -> None:
        self.transport = transport
        self.runtime = runtime
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.facts = machine_facts()
        self.ports = HostPortAllocator(port_range=config.port_range, address=config.address)
        self.queue: WorkQueue[str] = WorkQueue(name="agent")
        self.events = EventRecorder(transport, "kubelet", self.clock, host=config.node_name)
        self.pods = Informer(transport, PODS, None, field_selector=f"spec.nodeName={config.node_name}")
        self._state: dict[str, _PodState] = {}  # by pod uid
        self._stopping: dict[ContainerId, asyncio.Task[None]] = {}
        self._node_uid = ""
        self._node_status: JSON | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._services: Informer | None = None  # all Services, for service env vars; started on first use
        self._volume_errors: dict[str, str] = {}  # by pod uid: last live-update failure, to event it once
        self.volume_mode = VolumeMode.SANDBOX
        """The volume mode in use; ``start`` resolves ``config.volume_mode``."""
        self._snapshots: dict[tuple[str, str, str], JSON] = {}  # (kind, namespace, name) → snapshot
        self.ready = asyncio.Event()
        self.termination_gate: TerminationGate | None = None
        """Awaited before SIGTERM of a deleted pod's containers (the node data plane's drain)."""
        self.usage = UsageSampler(self.clock, config.metrics_interval)
        self._usage: NodeUsage | None = None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a fire-and-forget coroutine (events, prober shutdown) while keeping a reference to it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # First: an impossible ``namespace`` request is a startup error (VolumeModeError), before anything.
        self.volume_mode, why = await asyncio.to_thread(resolve_volume_mode, self.config.volume_mode)
        log.info("volume mode: %s (%s)", self.volume_mode, why)
        (self.config.data_dir / "pods").mkdir(parents=True, exist_ok=True)
        await self._register_node()
        for status in await self.runtime.list():
            self._remember(status)
        self.runtime.on_exit(self._on_exit)
        self.pods.add_handler(self.queue.add)
        self._tasks = [
            asyncio.create_task(self.pods.run(), name="agent-pod-informer"),
            asyncio.create_task(self._heartbeat(), name="agent-heartbeat"),
            asyncio.create_task(self._sweeper(), name="agent-sweeper"),
            asyncio.create_task(self._volume_resync(), name="agent-volume-resync"),
            asyncio.create_task(self._sample_usage(), name="agent-usage"),
        ]
        self._tasks += [
            asyncio.create_task(self._worker(), name=f"agent-worker-{i}") for i in range(self.config.workers)
        ]
        await self.pods.wait_synced()
        # Only now report Ready: first stop what this node should no longer run (pods deleted or moved
        # while the agent was away were replaced elsewhere), so a returning node never adds replicas.
        await self._stop_unwanted(self.pods.list())
        await self._post_node_status()
        track_agent(self)
        self.ready.set()

    async def stop(self, stop_workloads: bool = False, grace_seconds: float = 10.0) -> None:
        """Stop the agent. The pods' processes keep running for the next agent to adopt, unless
        ``stop_workloads``: then each gets SIGTERM and at most ``grace_seconds`` before SIGKILL."""
        self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for state in self._state.values():
            for prober in state.probers.values():
                await prober.stop()
        if stop_workloads:
            running = [s.id for s in await self.runtime.list() if s.state is ContainerState.RUNNING]
            await asyncio.gather(
                *(self.runtime.stop(cid, grace_seconds) for cid in running), return_exceptions=True
            )
            unmount_under(self.config.data_dir / "pods")  # Memory emptyDirs (namespace mode): data goes too
        await self.runtime.close()

    # ------------------------------------------------------------------ node and lease

    async def _register_node(self) -> None:
        name = self.config.node_name
        try:
            node = await self.transport.get(NODES, None, name)
        except st.ApiError as exc:
            if exc.code != 404:
                raise
            node = await self.transport.create(NODES, None, node_object(name, self.facts))
        self._node_uid = node["metadata"]["uid"]
        # No status yet: ``start`` reports Ready once the pods this node should not run are stopped.

    async def _post_node_status(self, node: JSON | None = None) -> None:
        for attempt in range(3):
            if node is None:
                node = await self.transport.get(NODES, None, self.config.node_name)
            updated = copy.deepcopy(node)
            updated["status"] = node_status(
                self.facts,
                self.config.address,
                self.clock.now(),
                node.get("status"),
                agent_port=self.config.node_api_port,
                max_pods=self.config.max_pods,
            )
            try:
                self._node_status = await self.transport.update(
                    NODES, None, self.config.node_name, updated, subresource="status"
                )
                return
            except st.ApiError as exc:
                # The node lifecycle controller writes the Node too (taints, conditions): read it again.
                if exc.reason != "Conflict" or attempt == 2:
                    raise
                node = None

    async def _renew_lease(self) -> None:
        lease = lease_object(self.config.node_name, self._node_uid, self.clock.now())
        try:
            current = await self.transport.get(LEASES, "kube-node-lease", self.config.node_name)
        except st.ApiError as exc:
            if exc.code != 404:
                raise
            await self.transport.create(LEASES, "kube-node-lease", lease)
            return
        current = copy.deepcopy(current)
        current["spec"] = {**(current.get("spec") or {}), **lease["spec"]}
        await self.transport.update(LEASES, "kube-node-lease", self.config.node_name, current)

    async def _heartbeat(self) -> None:
        last_status = self.clock.monotonic()
        while True:
            try:
                await self._renew_lease()
                node = await self.transport.get(NODES, None, self.config.node_name)
                if self.ready.is_set() and not _reported_ready(node):
                    # The node lifecycle controller gave up on us (Ready Unknown): our pods were evicted and
                    # marked NotReady meanwhile. Stop what was replaced, re-post pod statuses, then Ready.
                    await self._stop_unwanted(await self._fresh_pods())
                    await self._post_node_status()
                    last_status = self.clock.monotonic()
                elif self.ready.is_set() and self.clock.monotonic() - last_status >= NODE_STATUS_SECONDS:
                    await self._post_node_status(node)
                    last_status = self.clock.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API may be briefly away; the next beat retries
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _fresh_pods(self) -> list[JSON]:
        """This node's pods as the API has them now (the informer may still be catching up after a gap),
        plus those the informer already has from after that list (bound meanwhile, maybe started)."""
        found = await self.transport.list(PODS, None, field_selector=f"spec.nodeName={self.config.node_name}")
        pods = {p["metadata"]["uid"]: p for p in found.items}
        with contextlib.suppress(ValueError):
            listed_at = int(found.resource_version)
            for pod in self.pods.list():
                if int(pod["metadata"].get("resourceVersion") or 0) > listed_at:
                    pods[pod["metadata"]["uid"]] = pod
        return list(pods.values())

    async def _stop_unwanted(self, pods: list[JSON]) -> None:
        """Stop every local container of a pod not in ``pods`` (deleted, or bound elsewhere) or being deleted,
        and wait until they have stopped; then have every pod's status written again."""
        live = {
            str(pod["metadata"]["uid"]): pod
            for pod in pods
            if (pod.get("spec") or {}).get("nodeName") == self.config.node_name
        }
        for uid in [u for u in self._state if u not in live]:
            log.info("stopping containers of pod %s, which is gone", uid)
            await self._forget(uid)
        statuses = await self.runtime.list()
        for uid in {s.id.pod_uid for s in statuses} - set(live):
            await self._forget(uid)
        now = self.clock.now()
        stopping: list[asyncio.Task[None]] = []
        for status in statuses:
            pod = live.get(status.id.pod_uid)
            deleted = (pod or {}).get("metadata", {}).get("deletionTimestamp")
            if pod is None or not deleted or status.state is not ContainerState.RUNNING:
                continue
            # Deleted while we were away: the grace period ran from the delete, so what is left of it.
            grace = max(0.0, (parse_rfc3339(deleted) - now).total_seconds())
            task = self._stopping.get(status.id)
            if task is None:
                state = self._pod_state(status.id.pod_uid, object_key(pod))
                task = self._stopping[status.id] = asyncio.create_task(self._stop(state, status.id, grace))
            stopping.append(task)
        await asyncio.gather(*stopping, return_exceptions=True)
        for state in self._state.values():
            state.last_status = None  # the controller may have marked them NotReady: write them again
        for pod in live.values():
            self.queue.add(object_key(pod))

    # ------------------------------------------------------------------ bookkeeping

    def running_counts(self) -> tuple[int, int]:
        """(pods with a running container, running containers), for ``/metrics``."""
        pods = containers = 0
        for state in self._state.values():
            running = sum(
                1 for instances in state.instances.values()
                if instances and instances[-1].state is ContainerState.RUNNING
            )
            containers += running
            pods += 1 if running else 0
        return pods, containers

    def _pod_state(self, uid: str, key: str = "") -> _PodState:
        state = self._state.get(uid)
        if state is None:
            state = self._state[uid] = _PodState(key)
        elif key:
            state.key = key
        return state

    def _remember(self, status: ContainerStatus) -> None:
        state = self._pod_state(status.id.pod_uid)
        instances = state.instances.setdefault(status.id.name, [])
        for i, known in enumerate(instances):
            if known.id == status.id:
                instances[i] = status
                break
        else:
            instances.append(status)
            instances.sort(key=lambda s: s.id.attempt)

    def _on_exit(self, status: ContainerStatus) -> None:
        self._remember(status)
        state = self._state.get(status.id.pod_uid)
        if state is None:
            return
        prober = state.probers.pop(status.id.name, None)
        if prober is not None:
            self._spawn(prober.stop())
        state.probes.pop(status.id.name, None)
        if state.key:
            self.queue.add(state.key)

    # ------------------------------------------------------------------ workers

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self._sync(key)
                self.queue.forget(key)
            except asyncio.CancelledError:
                raise
            except st.ApiError as exc:
                if exc.reason != "Conflict" and exc.code != 404:
                    log.warning("pod %s: %s", key, exc)
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("pod %s: sync failed", key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def _context(self) -> PodContext:
        return PodContext(node_name=self.config.node_name, host_ip=self.config.address)

    def _backoff_for(self, pod: JSON) -> BackoffPolicy:
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        base, cap = self.config.backoff.base, self.config.backoff.cap
        with contextlib.suppress(ValueError, TypeError):
            base = float(annotations.get(BACKOFF_BASE_ANNOTATION, base))
        with contextlib.suppress(ValueError, TypeError):
            cap = float(annotations.get(BACKOFF_CAP_ANNOTATION, cap))
        return BackoffPolicy(base=max(0.0, base), cap=max(0.0, cap))

    def _observed(self, state: _PodState) -> dict[str, Observed]:
        names = set(state.instances) | set(state.failures)
        return {
            name: Observed(
                tuple(state.instances.get(name, ())), state.failures.get(name), state.restarts.get(name, 0)
            )
            for name in names
        }

    async def _sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") != self.config.node_name:
            # Deleted (or force-deleted) from the API: stop whatever it left running, right away.
            for uid in [u for u, st_ in self._state.items() if st_.key == key]:
                await self._forget(uid)
            return
        uid = pod["metadata"]["uid"]
        for other in [u for u, st_ in self._state.items() if st_.key == key and u != uid]:
            await self._forget(other)  # a pod of the same name replaced an older one
        state = self._pod_state(uid, key)
        if not (pod["metadata"].get("deletionTimestamp")):
            pod = await self._ensure_ports(pod, state)
            self._resume_probes(pod, state)
        for _ in range(3):
            plan = plan_pod(
                pod,
                self._observed(state),
                state.probes,
                self.clock.now(),
                self._context(),
                self._backoff_for(pod),
            )
            acted = False
            for action in plan.actions:
                acted = await self._apply(pod, state, action) or acted
            if not acted:
                break
        if plan.status and not any(a.kind is ActionKind.DELETE_POD for a in plan.actions):
            await self._write_status(pod, state, plan.status)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after + 0.01)

    async def _apply(self, pod: JSON, state: _PodState, action: Action) -> bool:
        """Apply one action; True when the observed state changed (so the plan is recomputed)."""
        if action.kind is ActionKind.START:
            first_in_pod = not any(state.instances.values())
            again = bool(state.instances.get(action.container))
            started = await self._start(pod, state, action.container, action.attempt)
            if started:
                AGENT_CONTAINER_STARTS.inc()
                if again:
                    AGENT_CONTAINER_RESTARTS.inc()
                elif first_in_pod:
                    AGENT_POD_STARTS.inc()
            return started
        if action.kind is ActionKind.KILL and action.cid is None:
            instances = state.instances.get(action.container) or []
            if not instances:
                return False
            latest = instances[-1]
            action = Action(
                action.kind,
                action.container,
                action.attempt,
                action.grace_seconds,
                action.reason,
                action.message,
                latest.id,
            )
        if action.kind is ActionKind.KILL and action.cid is not None:
            if action.cid not in self._stopping:
                if action.reason == "Unhealthy":
                    await self._event(pod, state, "Warning", "Unhealthy", action.message)
                await self._event(pod, state, "Normal", "Killing", f"Stopping container {action.container}")
                draining = bool(pod["metadata"].get("deletionTimestamp"))
                self._stopping[action.cid] = asyncio.create_task(
                    self._stop(state, action.cid, action.grace_seconds, pod if draining else None)
                )
            return False
        if action.kind is ActionKind.DELETE_POD:
            await self._finish_deletion(pod, state)
        return False

    async def _stop(
        self, state: _PodState, cid: ContainerId, grace: float, drain: JSON | None = None
    ) -> None:
        """Stop one container; for a pod being deleted, first let the data plane stop routing to it
        (the termination gate), spending at most half the grace period there."""
        try:
            if drain is not None and self.termination_gate is not None:
                started = self.clock.monotonic()
                with contextlib.suppress(Exception):
                    await self.termination_gate(drain, grace / 2)
                grace = max(0.0, grace - (self.clock.monotonic() - started))
            final = await self.runtime.stop(cid, grace)
            if final is not None:
                self._remember(final)
        finally:
            self._stopping.pop(cid, None)
            if state.key:
                self.queue.add(state.key)

    # ------------------------------------------------------------------ starting containers

    async def _ensure_ports(self, pod: JSON, state: _PodState) -> JSON:
        uid = pod["metadata"]["uid"]
        recorded = pod_port_mapping(pod)
        if recorded is not None:
            if self.ports.mapping(uid) is None:
                with contextlib.suppress(PortAllocationError):
                    self.ports.restore(uid, recorded, owner=state.key)
            return pod
        wanted = declared_ports(pod.get("spec") or {})
        if not wanted:
            return pod
        try:
            mapping = self.ports.allocate(uid, wanted, owner=state.key)
        except PortAllocationError as exc:
            announced = False
            for container in (pod.get("spec") or {}).get("containers") or []:
                previous = state.failures.get(container["name"])
                state.failures[container["name"]] = StartFailure(
                    0, "CreateContainerConfigError", str(exc), self.clock.now()
                )
                if not announced and (previous is None or previous.message != str(exc)):
                    # Without it a port conflict showed only in status: _start_failed sees the same message
                    # again and records no event.
                    await self._event(pod, state, "Warning", "Failed", f"Error: {exc}")
                    announced = True
            return pod
        patch = {"metadata": {"annotations": {PORTS_ANNOTATION: encode_ports(mapping)}}}
        return await self.transport.patch(
            PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], "application/merge-patch+json", patch
        )

    def _sandbox(self, uid: str) -> Path:
        return self.config.data_dir / "pods" / uid

    async def _fetch_refs(
        self, pod: JSON, container: JSON
    ) -> tuple[dict[str, JSON | None], dict[str, JSON | None]]:
        return await self._fetch_named(pod, *container_refs(container))

    async def _fetch_named(
        self, pod: JSON, cm_names: set[str], secret_names: set[str]
    ) -> tuple[dict[str, JSON | None], dict[str, JSON | None]]:
        """The ConfigMaps and Secrets the pod reads, keyed by the names its spec uses (None: missing)."""
        namespace = str(pod["metadata"]["namespace"])
        pins = parse_pins(pod["metadata"].get("annotations"))
        configmaps: dict[str, JSON | None] = {}
        secrets: dict[str, JSON | None] = {}
        for kind, names, rt, out in (
            (CONFIGMAP, cm_names, CONFIGMAPS, configmaps),
            (SECRET, secret_names, SECRETS, secrets),
        ):
            for name in names:
                out[name] = await self._read_config(rt, kind, namespace, name, pins)
        return configmaps, secrets

    async def _read_config(
        self, rt: ResourceType, kind: str, namespace: str, name: str, pins: Mapping[str, str]
    ) -> JSON | None:
        """What a pod reads for ``kind/name``: its pinned snapshot when it has one (config-aware rollouts),
        else the live object. Snapshots are immutable copies, so they are read once and cached."""
        snapshot = pinned_name(pins, kind, name)
        if snapshot != name:
            cached = self._snapshots.get((kind, namespace, snapshot))
            if cached is not None:
                return cached
            obj = await self._get_or_none(rt, namespace, snapshot)
            if obj is not None and is_snapshot_of(obj, name):
                if len(self._snapshots) >= SNAPSHOT_CACHE_SIZE:
                    self._snapshots.clear()
                self._snapshots[(kind, namespace, snapshot)] = obj
                return obj
            # Someone deleted the snapshot: the live object is the only configuration left to run with.
            log.warning("%s %s/%s: snapshot %s gone, reading the live one", kind, namespace, name, snapshot)
        return await self._get_or_none(rt, namespace, name)

    async def _get_or_none(self, rt: ResourceType, namespace: str, name: str) -> JSON | None:
        try:
            return await self.transport.get(rt, namespace, name)
        except st.ApiError as exc:
            if exc.code != 404:
                raise
            return None

    def _facts(self, sandbox: Path) -> PodFacts:
        return PodFacts(
            node_name=self.config.node_name,
            host_ip=self.config.address,
            pod_ip=self.config.address,
            sandbox_dir=str(sandbox),
            node_cpu_millicores=self.facts.cpus * 1000,
            node_memory_bytes=self.facts.memory_bytes,
        )

    async def _volume_plans(self, pod: JSON, sandbox: Path) -> dict[str, VolumePlan]:
        volumes = (pod.get("spec") or {}).get("volumes") or []
        configmaps, secrets = await self._fetch_named(pod, *volume_refs(volumes))
        return plan_volumes(pod, configmaps, secrets, self._facts(sandbox))

    async def _volume_resync(self) -> None:
        """Live updates of mounted ConfigMaps, Secrets and downward API files of running pods (the kubelet's
        periodic volume sync). Unchanged content costs a GET per referenced object and no disk write."""
        await self.pods.wait_synced()
        while True:
            await asyncio.sleep(VOLUME_RESYNC_SECONDS)
            for uid, state in list(self._state.items()):
                pod = self.pods.get(state.key)
                running = any(
                    s.state is ContainerState.RUNNING for runs in state.instances.values() for s in runs[-1:]
                )
                if (
                    pod is None
                    or pod["metadata"].get("uid") != uid
                    or pod["metadata"].get("deletionTimestamp")
                    or not (pod.get("spec") or {}).get("volumes")
                    or not running
                ):
                    continue
                try:
                    plans = await self._volume_plans(pod, self._sandbox(uid))
                    if uid in self._state and self._sandbox(uid).is_dir():  # not forgotten while fetching
                        materialise_volumes(self._sandbox(uid), plans)
                    self._volume_errors.pop(uid, None)
                except asyncio.CancelledError:
                    raise
                except (ConfigError, OSError, st.ApiError) as exc:
                    # Keep the old files (as the kubelet does) and say so once per distinct problem.
                    if self._volume_errors.get(uid) != str(exc):
                        self._volume_errors[uid] = str(exc)
                        message = f"volume update failed: {exc}"
                        await self._event(pod, state, "Warning", "FailedMount", message)
                except Exception:
                    log.exception("pod %s: volume resync failed", state.key)

    async def _service_env(self, pod: JSON) -> dict[str, str]:
        """The pod's service variables from the Services that exist now (the kubelet's service informer)."""
        if self._services is None:
            self._services = Informer(self.transport, _rt("services"), None)
            self._tasks.append(asyncio.create_task(self._services.run(), name="agent-service-informer"))
        try:
            await asyncio.wait_for(self._services.wait_synced(), SERVICES_SYNC_SECONDS)
        except TimeoutError:
            # The kubelet's own words: a pod must not start with service variables silently missing.
            raise ConfigError(
                "services have not yet been read at least once, cannot construct envvars"
            ) from None
        spec = pod.get("spec") or {}
        return service_environment(
            self._services.list(),
            str(pod["metadata"]["namespace"]),
            enable_service_links=spec.get("enableServiceLinks") is not False,
            dns_address=self.config.dns_address,
        )

    def _container(self, pod: JSON, name: str) -> JSON:
        spec = pod.get("spec") or {}
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if container.get("name") == name:
                return dict(container)
        raise KeyError(name)

    async def _start(self, pod: JSON, state: _PodState, name: str, attempt: int) -> bool:
        meta = pod["metadata"]
        uid, namespace = meta["uid"], meta["namespace"]
        container = self._container(pod, name)
        sandbox = self._sandbox(uid)
        sandbox.mkdir(parents=True, exist_ok=True)
        now = self.clock.now()
        try:
            if (
                state.failures.get(name)
                and state.failures[name].reason == "CreateContainerConfigError"
                and "port" in state.failures[name].message
                and self.ports.mapping(uid) is None
            ):
                raise ConfigError(state.failures[name].message)
            runtime_class = (pod.get("spec") or {}).get("runtimeClassName")
            if runtime_class not in (None, "", "process"):
                raise ConfigError(
                    f'RuntimeClass "{runtime_class}" is not supported on node '
                    f'{self.config.node_name} (supported: "process")'
                )
            try:
                parse_container_probes(container, pod_ip=self.config.address)
            except ProbeConfigError as exc:
                raise ConfigError(f"invalid probe: {exc}") from exc
            configmaps, secrets = await self._fetch_refs(pod, container)
            mapping = self.ports.mapping(uid) or {}
            facts = self._facts(sandbox)
            # Volumes before the process: files under the sandbox, mounts as links under the container's root
            # (both modes, see docs/config.md); the root is CORRAL_VOLUMES and the default workingDir.
            # Namespace mode adds real mounts at each mountPath, made by the runtime in the container's own
            # mount namespace.
            mounts = container_mounts(pod, container)
            namespace_mode = self.volume_mode is VolumeMode.NAMESPACE
            if (pod.get("spec") or {}).get("volumes"):
                materialise_volumes(sandbox, await self._volume_plans(pod, sandbox))
                if namespace_mode:
                    mount_memory_volumes(sandbox, memory_volumes(pod))  # before subPath dirs are made in it
            root = link_mounts(sandbox, name, mounts, nested_ok=namespace_mode) if mounts else None
            binds: tuple[BindMount, ...] = bind_mounts(sandbox, mounts) if mounts and namespace_mode else ()
            env = build_environment(
                pod,
                container,
                facts,
                {**port_env(container, mapping), **({VOLUMES_ENV: str(root)} if root else {})},
                configmaps,
                secrets,
                service_env=await self._service_env(pod),
            )
            argv = build_argv(container, env)
            limits = (container.get("resources") or {}).get("limits") or {}
            spec = ContainerSpec(
                id=ContainerId(uid, name, attempt),
                pod_namespace=namespace,
                pod_name=meta["name"],
                argv=argv,
                env=env,
                working_dir=Path(container.get("workingDir") or root or sandbox),
                log_path=sandbox / "logs" / name / f"{attempt}.log",
                memory_limit_bytes=int(parse_quantity(str(limits["memory"]))) if "memory" in limits else None,
                cpu_limit_millicores=int(parse_quantity(str(limits["cpu"])) * 1000)
                if "cpu" in limits
                else None,
                mounts=binds,
            )
            status = await self.runtime.start(spec)
        except ConfigError as exc:
            return await self._start_failed(
                pod, state, name, attempt, "CreateContainerConfigError", str(exc), now
            )
        except StartError as exc:
            return await self._start_failed(
                pod, state, name, attempt, exc.reason or "StartError", exc.message, now
            )
        except (ValueError, OSError) as exc:
            return await self._start_failed(pod, state, name, attempt, "CreateContainerError", str(exc), now)
        if attempt > 0 and state.instances.get(name):
            state.restarts[name] = state.restarts.get(name, 0) + 1
        state.failures.pop(name, None)
        self._remember(status)
        await self._event(pod, state, "Normal", "Started", f"Started container {name}")
        self._start_probes(pod, state, container, status)
        return True

    async def _start_failed(
        self, pod: JSON, state: _PodState, name: str, attempt: int, reason: str, message: str, now: Any
    ) -> bool:
        previous = state.failures.get(name)
        state.failures[name] = StartFailure(attempt, reason, message, now)
        AGENT_CONTAINER_START_ERRORS.labels(reason).inc()
        if previous is None or previous.message != message or previous.attempt != attempt:
            await self._event(pod, state, "Warning", "Failed", f"Error: {message}")
        return False

    def _resume_probes(self, pod: JSON, state: _PodState) -> None:
        """Probe running instances that have no prober: those this agent adopted from its predecessor.

        Without this an adopted container with a readiness probe stayed NotReady forever, and its liveness
        probe never ran."""
        for container in (pod.get("spec") or {}).get("containers") or []:
            name = container.get("name", "")
            if name in state.probers or not any(
                container.get(k) for k in ("livenessProbe", "readinessProbe", "startupProbe")
            ):
                continue
            instances = state.instances.get(name) or []
            latest = instances[-1] if instances else None
            if (
                latest is not None
                and latest.state is ContainerState.RUNNING
                and latest.id not in self._stopping
            ):
                self._start_probes(pod, state, container, latest)

    def _start_probes(self, pod: JSON, state: _PodState, container: JSON, status: ContainerStatus) -> None:
        name = container["name"]
        if not any(container.get(k) for k in ("livenessProbe", "readinessProbe", "startupProbe")):
            return
        uid = pod["metadata"]["uid"]
        mapping = self.ports.mapping(uid) or {}
        key = state.key
        try:
            specs = parse_container_probes(container, pod_ip=self.config.address)
        except ProbeConfigError as exc:
            self._spawn(self._event(pod, state, "Warning", "Unhealthy", f"Probe configuration error: {exc}"))
            return
        prober: ContainerProber | None = None

        def current() -> bool:
            instances = state.instances.get(name) or []
            return bool(instances) and instances[-1].id == status.id

        def changed(kind: ProbeKind, outcome: Outcome, message: str) -> None:
            if prober is None or not current():
                return
            state.probes[name] = _probe_outcome(prober)
            self.queue.add(key)

        def result(kind: ProbeKind, probe_result: ProbeResult) -> None:
            if not probe_result.success and current():
                self._spawn(self._event(pod, state, "Warning", "Unhealthy", probe_result.message))

        target = ProbeTarget(
            pod_ip=self.config.address,
            host_ports=probe_host_ports(name, mapping),
            exec_fn=runtime_exec_fn(self.runtime, status.id),
            foreign_port=lambda port: self.ports.foreign_owner(port, uid),
        )
        prober = ContainerProber(
            specs,
            target,
            changed,
            started_at=status.started_at,
            clock=self.clock,
            on_result=result,
            name=f"{key}/{name}",
            readiness_warmup=self.config.readiness_warmup,
        )
        state.probes[name] = _probe_outcome(prober)
        old = state.probers.pop(name, None)
        if old is not None:
            self._spawn(old.stop())
        state.probers[name] = prober
        prober.start()

    # ------------------------------------------------------------------ status and deletion

    async def _write_status(self, pod: JSON, state: _PodState, status: JSON) -> None:
        if state.last_status == status or pod.get("status") == status:
            state.last_status = status
            return
        updated = copy.deepcopy(pod)
        updated["status"] = status
        result = await self.transport.update(
            PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], updated, subresource="status"
        )
        state.last_status = result.get("status")

    async def _finish_deletion(self, pod: JSON, state: _PodState) -> None:
        meta = pod["metadata"]
        try:
            await self.transport.delete(PODS, meta["namespace"], meta["name"], grace_period_seconds=0)
        except st.ApiError as exc:
            if exc.code != 404:
                raise
        await self._forget(meta["uid"])

    async def _forget(self, uid: str) -> None:
        self.events.forget(uid)
        self._volume_errors.pop(uid, None)
        state = self._state.pop(uid, None)
        if state is not None:
            for prober in state.probers.values():
                await prober.stop()
        for status in await self.runtime.list():
            if status.id.pod_uid == uid:
                if status.state is ContainerState.RUNNING:
                    await self.runtime.stop(status.id, 0)
                await self.runtime.remove(status.id)
        self.ports.release(uid)
        # Its Memory emptyDirs (namespace mode, even if the agent restarted in sandbox mode): rmtree must
        # not cross a mount.
        unmount_under(self._sandbox(uid))
        shutil.rmtree(self._sandbox(uid), ignore_errors=True)

    async def _sweeper(self) -> None:
        """Stop what belongs to pods that no longer exist here (deleted while the agent was down, too)."""
        await self.pods.wait_synced()
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(SWEEP_SECONDS)

    async def sweep(self) -> None:
        live = {(p.get("metadata") or {}).get("uid") for p in self.pods.list()}
        for uid in [u for u in self._state if u not in live]:
            log.info("stopping containers of pod %s, which is gone", uid)
            await self._forget(uid)
        for status in await self.runtime.list():
            if status.id.pod_uid not in live:
                await self._forget(status.id.pod_uid)
        for pod in self.pods.list():
            self.queue.add(object_key(pod))

    # ------------------------------------------------------------------ events

    async def _event(self, pod: JSON, state: _PodState, etype: str, reason: str, message: str) -> None:
        # Same recorder as the controllers (dedup bumps count); best effort, as in the kubelet.
        await self.events.record(pod, etype, reason, message)

    # ------------------------------------------------------------------ resource usage (NodeEndpoint)

    async def _sample_usage(self) -> None:
        """One pass over all running containers per interval; the result replaces the previous one."""
        while True:
            try:
                groups = self.runtime.running_groups()
                # /proc reads block (briefly); a worker thread keeps the event loop responsive meanwhile.
                self._usage = await asyncio.to_thread(self.usage.sample, groups)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("resource usage sampling failed")
            await asyncio.sleep(self.config.metrics_interval)

    def resource_usage(self) -> NodeUsage | None:
        return self._usage

    # ------------------------------------------------------------------ logs and exec (NodeEndpoint)

    def _instance_for(self, pod: JSON, container: str, previous: bool) -> ContainerStatus:
        uid = pod["metadata"]["uid"]
        instances = (self._state.get(uid) or _PodState("")).instances.get(container) or []
        name = pod["metadata"]["name"]
        if previous:
            if len(instances) < 2:
                raise st.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            return instances[-2]
        if not instances:
            raise st.bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        return instances[-1]

    async def container_logs(self, pod: JSON, options: LogOptions) -> AsyncIterator[bytes]:
        instance = self._instance_for(pod, options.container, options.previous)
        follow = options.follow and instance.state is ContainerState.RUNNING

        def still_running() -> bool:
            uid = pod["metadata"]["uid"]
            known = (self._state.get(uid) or _PodState("")).instances.get(options.container) or []
            current = known[-1] if known else None
            return (
                current is not None and current.id == instance.id and current.state is ContainerState.RUNNING
            )

        async for chunk in logfiles.read_log(
            instance.log_path, options, follow=follow, still_running=still_running, now=self.clock.now()
        ):
            yield chunk

    async def exec(self, pod: JSON, container: str, argv: list[str], streams: ExecStreams, tty: bool) -> int:
        instance = self._instance_for(pod, container, False)
        if instance.state is not ContainerState.RUNNING:
            raise st.bad_request(f'container "{container}" in pod "{pod["metadata"]["name"]}" is not running')
        try:
            result = await self.runtime.exec(instance.id, argv, streams, tty)
        except StartError as exc:
            # kubectl prints this like a runtime's exec failure: a clear message, not a broken stream.
            raise st.ApiError(
                500, "InternalError", f"error executing command in container: {exc.message}"
            ) from exc
        return result.exit_code


def _reported_ready(node: JSON) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _probe_outcome(prober: ContainerProber) -> ProbeOutcome:
    return ProbeOutcome(
        ready=prober.ready,
        started=prober.started,
        liveness_failed=prober.restart_needed,
        message=prober.restart_message,
    )
