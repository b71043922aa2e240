"""Hollow nodes: many simulated agents in one asyncio process, for scheduler scale tests and benchmarks.

A hollow node registers a Node exactly as the real agent does (the same ``node_object`` / ``node_status``
builders from ``corral.agent.node``, with made-up machine facts), reports Ready, and renews its Lease in
``kube-node-lease`` on the agent's interval (``HEARTBEAT_SECONDS``), re-posting its Node status every
``NODE_STATUS_SECONDS``. It runs no processes. Optionally it marks pods bound to it Running and Ready, so
controllers that wait for readiness (Deployments' availability) make progress; that is off by default,
because the scheduler benchmark measures binding, not starting.

Boundary: this module only talks to the API through ``Transport`` objects (HTTP for a real server). It never
touches the scheduler or the agent. The pure part (names, facts, objects, the Running status) is separated
from the IO class ``HollowNodes``.

Heartbeat shape, and how it differs from the real agent on purpose: the agent reads the Lease before each
renewal and reads its Node after it (3 requests per beat); a hollow node keeps the Lease the server last
returned and writes it back (1 request per beat; a GET only after a conflict), as the kubelet's lease
controller does. So N hollow nodes are a background load of N / 2 Lease writes per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.agent.agent import HEARTBEAT_SECONDS, NODE_STATUS_SECONDS
from corral.agent.node import MAX_PODS, MachineFacts, lease_object, node_object, node_status
from corral.api.quantity import parse_quantity
from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer
from corral.util.clock import rfc3339

log = logging.getLogger(__name__)

JSON = dict[str, Any]

HOLLOW_LABEL = "corral.dev/hollow"
ZONE_LABEL = "topology.kubernetes.io/zone"
LEASE_NAMESPACE = "kube-node-lease"


def _rt(group: str, version: str, plural: str) -> ResourceType:
    rt = REGISTRY.by_path(group, version, plural)
    assert rt is not None, plural
    return rt


NODES = _rt("", "v1", "nodes")
PODS = _rt("", "v1", "pods")
LEASES = _rt("coordination.k8s.io", "v1", "leases")


# ---------------------------------------------------------------------------------------------- pure part


@dataclass(frozen=True, slots=True)
class HollowConfig:
    count: int
    prefix: str = "hollow"
    zones: int = 0
    """Spread the nodes round-robin over this many ``topology.kubernetes.io/zone`` values (0: no label)."""
    cpu: int = 8
    memory: str = "32Gi"
    max_pods: int = MAX_PODS
    heartbeat_seconds: float = HEARTBEAT_SECONDS
    status_seconds: float = NODE_STATUS_SECONDS
    mark_running: bool = False
    """Mark pods bound to a hollow node Running and Ready (off: pods stay Pending with a nodeName)."""
    register_concurrency: int = 32


def node_name(config: HollowConfig, index: int) -> str:
    return f"{config.prefix}-{index:05d}"


def zone_of(config: HollowConfig, index: int) -> str | None:
    return f"zone-{index % config.zones}" if config.zones > 0 else None


def node_address(index: int) -> str:
    """A loopback address per node (127.1.x.y): unique, never routed off the machine."""
    return f"127.1.{(index >> 8) & 0xFF}.{index & 0xFF}"


def hollow_facts(config: HollowConfig, name: str) -> MachineFacts:
    return MachineFacts(
        cpus=config.cpu,
        memory_bytes=int(parse_quantity(config.memory)),
        hostname=name,
        kernel="hollow",
        os_image="Corral hollow node",
        machine_id=name,
        boot_id=name,
        architecture="amd64",
    )


def hollow_node_object(config: HollowConfig, index: int) -> JSON:
    name = node_name(config, index)
    obj = node_object(name, hollow_facts(config, name))
    labels = obj["metadata"]["labels"]
    labels[HOLLOW_LABEL] = "true"
    zone = zone_of(config, index)
    if zone is not None:
        labels[ZONE_LABEL] = zone
    return obj


def running_status(pod: JSON, host_ip: str, now: datetime) -> JSON:
    """A kubelet-shaped status of a pod whose containers all started and are ready (nothing runs)."""
    stamp = rfc3339(now)
    spec = pod.get("spec") or {}
    conditions = [
        {"type": ctype, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for ctype in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    containers = [
        {
            "name": c.get("name", ""),
            "image": c.get("image", ""),
            "imageID": "",
            "containerID": f"hollow://{c.get('name', '')}",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": stamp}},
        }
        for c in spec.get("containers") or []
    ]
    return {
        **(pod.get("status") or {}),
        "phase": "Running",
        "conditions": conditions,
        "containerStatuses": containers,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": stamp,
    }


@dataclass(slots=True)
class HeartbeatStats:
    renewals: int = 0
    failures: int = 0
    max_gap: float = 0.0
    """Longest time between two successful renewals of one node, in seconds (the lifecycle controller marks
    a node Unknown after 10 s)."""
    latencies: list[float] = field(default_factory=list)
    """Seconds per successful Lease write (every one: for tests and benchmarks of minutes, not days)."""


# ---------------------------------------------------------------------------------------------- IO part


class HollowNodes:
    """``await HollowNodes(transports, config).start()`` … ``await nodes.stop()``.

    Nodes are spread round-robin over ``transports`` (one is plenty up to a few hundred requests per second;
    each HttpTransport pools 64 connections). The caller owns the transports and closes them.
    """

    def __init__(self, transports: Sequence[Transport], config: HollowConfig) -> None:
        if not transports:
            raise ValueError("HollowNodes needs at least one transport")
        self.transports = list(transports)
        self.config = config
        self.names = [node_name(config, i) for i in range(config.count)]
        self.stats = HeartbeatStats()
        self._uids: dict[str, str] = {}
        self._leases: dict[str, JSON] = {}
        self._nodes: dict[str, JSON] = {}
        self._index = {name: i for i, name in enumerate(self.names)}
        self._tasks: list[asyncio.Task[None]] = []
        self._pods: Informer | None = None
        self._pending: asyncio.Queue[str] = asyncio.Queue()
        self._marked: set[str] = set()

    def _transport(self, index: int) -> Transport:
        return self.transports[index % len(self.transports)]

    async def start(self) -> None:
        """Register every node (Ready) and its Lease, start the heartbeats; returns once all are Ready."""
        gate = asyncio.Semaphore(max(1, self.config.register_concurrency))

        async def register(index: int) -> None:
            async with gate:
                await self._register(index)

        await asyncio.gather(*(register(i) for i in range(self.config.count)))
        interval = self.config.heartbeat_seconds
        for i, name in enumerate(self.names):
            # Phases spread evenly over one interval: a steady load, not a burst every interval.
            offset = interval * i / max(1, self.config.count)
            self._tasks.append(asyncio.create_task(self._heartbeat(i, offset), name=f"hollow-{name}"))
        if self.config.mark_running:
            self._pods = Informer(self.transports[0], PODS)
            self._pods.add_handler(self._on_pod)
            self._tasks.append(asyncio.create_task(self._pods.run(), name="hollow-pods"))
            for _ in range(4):
                self._tasks.append(asyncio.create_task(self._status_worker(), name="hollow-status"))
            await self._pods.wait_synced()

    async def stop(self, *, delete_nodes: bool = False) -> None:
        """Stop the heartbeats (and the pod worker); ``delete_nodes`` also deletes the Nodes and Leases."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if delete_nodes:
            for i, name in enumerate(self.names):
                transport = self._transport(i)
                for rt, ns in ((LEASES, LEASE_NAMESPACE), (NODES, None)):
                    with contextlib.suppress(st.ApiError):
                        await transport.delete(rt, ns, name)

    # ------------------------------------------------------------------ node and lease

    async def _register(self, index: int) -> None:
        name = self.names[index]
        transport = self._transport(index)
        try:
            node = await transport.create(NODES, None, hollow_node_object(self.config, index))
        except st.ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise
            node = await transport.get(NODES, None, name)
        self._uids[name] = str(node["metadata"]["uid"])
        await self._post_status(index, node)
        lease = lease_object(name, self._uids[name], datetime.now(UTC))
        try:
            self._leases[name] = await transport.create(LEASES, LEASE_NAMESPACE, lease)
        except st.ApiError as exc:
            if exc.reason != "AlreadyExists":
                raise
            await self._renew(index)

    async def _post_status(self, index: int, node: JSON | None) -> None:
        name = self.names[index]
        transport = self._transport(index)
        for attempt in range(3):
            if node is None:
                node = await transport.get(NODES, None, name)
            updated = copy.deepcopy(node)
            updated["status"] = node_status(
                hollow_facts(self.config, name),
                node_address(index),
                datetime.now(UTC),
                node.get("status"),
                max_pods=self.config.max_pods,
            )
            try:
                self._nodes[name] = await transport.update(NODES, None, name, updated, subresource="status")
                return
            except st.ApiError as exc:
                # The node lifecycle controller writes Nodes too (taints): read it again, as the agent does.
                if exc.reason != "Conflict" or attempt == 2:
                    raise
                node = None

    async def _renew(self, index: int) -> None:
        name = self.names[index]
        transport = self._transport(index)
        fresh = lease_object(name, self._uids[name], datetime.now(UTC))
        current = self._leases.get(name)
        for attempt in range(2):
            if current is None:
                current = await transport.get(LEASES, LEASE_NAMESPACE, name)
            updated = {**current, "spec": {**(current.get("spec") or {}), **fresh["spec"]}}
            try:
                self._leases[name] = await transport.update(LEASES, LEASE_NAMESPACE, name, updated)
                return
            except st.ApiError as exc:
                if exc.reason != "Conflict" or attempt == 1:
                    raise
                current = None

    async def _heartbeat(self, index: int, offset: float) -> None:
        name = self.names[index]
        await asyncio.sleep(offset)
        last_ok = last_status = time.monotonic()
        while True:
            started = time.monotonic()
            try:
                await self._renew(index)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server may be briefly busy or away; the next beat retries
                self.stats.failures += 1
                log.warning("hollow node %s: lease renewal failed: %s", name, exc)
            else:
                now = time.monotonic()
                self.stats.renewals += 1
                self.stats.latencies.append(now - started)
                self.stats.max_gap = max(self.stats.max_gap, now - last_ok)
                last_ok = now
                if now - last_status >= self.config.status_seconds:
                    last_status = now
                    try:
                        await self._post_status(index, self._nodes.get(name))
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        self.stats.failures += 1
                        log.warning("hollow node %s: status post failed: %s", name, exc)
            # Sleep to the next slot of this node's schedule, so a slow write does not drift the phase.
            elapsed = time.monotonic() - started
            await asyncio.sleep(max(0.0, self.config.heartbeat_seconds - elapsed))

    # ------------------------------------------------------------------ optional: pods Running

    def _on_pod(self, key: str) -> None:
        assert self._pods is not None
        pod = self._pods.get(key)
        if pod is None:
            self._marked.discard(key)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if (
            node in self._index
            and key not in self._marked
            and (pod.get("status") or {}).get("phase") in (None, "Pending")
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
        ):
            self._marked.add(key)
            self._pending.put_nowait(key)

    async def _status_worker(self) -> None:
        assert self._pods is not None
        while True:
            key = await self._pending.get()
            pod = self._pods.get(key)
            if pod is None:
                continue
            node = str((pod.get("spec") or {}).get("nodeName"))
            namespace = str(pod["metadata"]["namespace"])
            updated = copy.deepcopy(pod)
            updated["status"] = running_status(pod, node_address(self._index[node]), datetime.now(UTC))
            try:
                await self.transports[0].update(
                    PODS, namespace, pod["metadata"]["name"], updated, subresource="status"
                )
            except asyncio.CancelledError:
                raise
            except st.ApiError as exc:
                if exc.reason == "Conflict":
                    # Our cached copy was stale: try again once the informer has (probably) caught up.
                    await asyncio.sleep(0.05)
                    self._pending.put_nowait(key)
                elif exc.code != 404:
                    log.warning("hollow: pod %s status not written: %s", key, exc)
