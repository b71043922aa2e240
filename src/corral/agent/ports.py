"""Host port allocation: every declared ``containerPort`` of a pod gets a port on the node.

Without per-pod network namespaces, replicas of one pod template cannot all bind the port their spec declares,
so the agent hands each declared ``containerPort`` a free host port from a configurable range (or the declared
``hostPort`` when set) and gives it to the process as env (``PORT`` for the container's first port,
``PORT_<NAME>`` per named port). The pod's ``status.podIP`` is the node's address, and the mapping is recorded
on the pod as the ``corral.dev/ports`` annotation so endpoints are ``nodeIP:allocatedPort``.

Boundary: the allocator is node-wide, in memory, and persists nothing. After an agent restart the agent
rebuilds it with :meth:`HostPortAllocator.restore` from the annotations of the pods it runs, so those pods
keep their ports. The only IO is the bind check (an injectable callable) that makes sure a port handed out is
not already held by some other process on the node address.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

PORTS_ANNOTATION = "corral.dev/ports"
DEFAULT_PORT_RANGE = (20000, 29999)
PROTOCOLS = ("TCP", "UDP", "SCTP")


class PortAllocationError(Exception):
    """A pod's ports cannot be allocated (or restored); the message is meant for users (pod event/status)."""


@dataclass(frozen=True, slots=True, order=True)
class PortKey:
    """One declared port of a pod: container name, ``containerPort`` and protocol."""

    container: str
    container_port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.container}/{self.container_port}/{self.protocol}"

    @classmethod
    def parse(cls, text: str) -> PortKey:
        """Inverse of ``str()``: ``"web/8080/TCP"``. Container names cannot contain ``/``."""
        parts = text.split("/")
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"port key {text!r} is not <container>/<containerPort>/<protocol>")
        container, port_text, protocol = parts
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port key {text!r}: containerPort must be a number in 1-65535")
        if protocol not in PROTOCOLS:
            raise ValueError(f"port key {text!r}: protocol must be one of {', '.join(PROTOCOLS)}")
        return cls(container, int(port_text), protocol)


PortMapping = dict[PortKey, int]
"""Declared port → allocated host port, for one pod."""


@dataclass(frozen=True, slots=True)
class DeclaredPort:
    """A ``containerPort`` entry of a container, as far as allocation cares."""

    container: str
    container_port: int
    protocol: str = "TCP"
    name: str = ""
    host_port: int | None = None

    @property
    def key(self) -> PortKey:
        return PortKey(self.container, self.container_port, self.protocol)


def declared_ports(pod_spec: Mapping[str, Any]) -> list[DeclaredPort]:
    """Every port declared by the pod's containers (init containers included: sidecars serve too), in order.

    The spec is assumed validated by the API server; malformed entries are skipped rather than raised.
    """
    out: list[DeclaredPort] = []
    for list_name in ("initContainers", "containers"):
        for container in pod_spec.get(list_name) or ():
            name = container.get("name")
            if not isinstance(name, str):
                continue
            for port in container.get("ports") or ():
                container_port = port.get("containerPort")
                if not isinstance(container_port, int) or isinstance(container_port, bool):
                    continue
                host_port = port.get("hostPort")
                out.append(
                    DeclaredPort(
                        container=name,
                        container_port=container_port,
                        protocol=str(port.get("protocol") or "TCP"),
                        name=str(port.get("name") or ""),
                        host_port=host_port if isinstance(host_port, int) and host_port > 0 else None,
                    )
                )
    return out


def encode_ports(mapping: Mapping[PortKey, int]) -> str:
    """The ``corral.dev/ports`` annotation value.

    JSON ``{"<container>/<containerPort>/<protocol>": hostPort}`` with sorted keys.
    """
    return orjson.dumps({str(key): mapping[key] for key in sorted(mapping)}).decode()


def decode_ports(text: str) -> PortMapping:
    """Parse a ``corral.dev/ports`` annotation value; raises ``ValueError`` naming the problem."""
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{PORTS_ANNOTATION} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{PORTS_ANNOTATION} must be a JSON object")
    out: PortMapping = {}
    for key_text, host_port in raw.items():
        key = PortKey.parse(key_text)
        if not isinstance(host_port, int) or isinstance(host_port, bool) or not 1 <= host_port <= 65535:
            raise ValueError(f"{PORTS_ANNOTATION}: host port for {key_text!r} must be a number in 1-65535")
        out[key] = host_port
    return out


def pod_port_mapping(pod: Mapping[str, Any]) -> PortMapping | None:
    """The mapping recorded on a pod object, or None when the pod carries none (or an unreadable one)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(PORTS_ANNOTATION)
    if not isinstance(text, str):
        return None
    try:
        return decode_ports(text)
    except ValueError:
        return None


def _env_suffix(port_name: str) -> str:
    return port_name.upper().replace("-", "_")


def port_env(container: Mapping[str, Any], mapping: Mapping[PortKey, int]) -> dict[str, str]:
    """Env for a container's process.

    ``PORT`` = host port of its first declared port, ``PORT_<NAME>`` for each named port (name upper-cased,
    ``-`` → ``_``). Ports without an allocation are left out.
    """
    name = container.get("name", "")
    env: dict[str, str] = {}
    for index, port in enumerate(container.get("ports") or ()):
        key = PortKey(name, port.get("containerPort", 0), str(port.get("protocol") or "TCP"))
        host_port = mapping.get(key)
        if host_port is None:
            continue
        if index == 0:
            env["PORT"] = str(host_port)
        if port.get("name"):
            env[f"PORT_{_env_suffix(str(port['name']))}"] = str(host_port)
    return env


def probe_host_ports(container_name: str, mapping: Mapping[PortKey, int]) -> dict[int, int]:
    """TCP ``containerPort`` → host port as a probe of ``container_name`` sees the pod.

    Kubernetes containers of a pod share one network namespace, so a probe may target a port declared by a
    sibling; the container's own declaration wins when two containers declare the same number.
    """
    out: dict[int, int] = {}
    for key, host_port in sorted(mapping.items(), key=lambda item: item[0].container == container_name):
        if key.protocol == "TCP":
            out[key.container_port] = host_port
    return out


def port_is_free(address: str, port: int, protocol: str = "TCP") -> bool:
    """True when ``port`` can be bound on ``address`` right now (SCTP is not checked and counts as free).

    TCP uses ``SO_REUSEADDR`` like most servers do, so sockets lingering in TIME_WAIT do not make a port look
    taken, while a listener (on this address or the wildcard) does.
    """
    if protocol == "SCTP":
        return True
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        if protocol == "TCP":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


PortChecker = Callable[[str, int, str], bool]


@dataclass(slots=True)
class _Owner:
    name: str
    mapping: PortMapping


class HostPortAllocator:
    """Node-wide host port bookkeeping. Single-threaded (the agent's event loop); not persisted.

    Automatic ports are handed out next-fit from ``port_range`` (inclusive) with a moving cursor, so a
    port just released (whose process may still be dying) is the last to be reused. Declared ``hostPort``
    values may lie outside the range. Ports are per protocol, as in Kubernetes (TCP 53 and UDP 53 are
    different ports).
    """

    def __init__(
        self,
        address: str = "127.0.0.1",
        port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
        *,
        is_free: PortChecker = port_is_free,
    ) -> None:
        low, high = port_range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"port range {low}-{high} is not within 1-65535")
        self.address = address
        self.port_range = (low, high)
        self._is_free = is_free
        self._owners: dict[str, _Owner] = {}
        self._taken: dict[tuple[str, int], str] = {}
        self._cursor = low

    # -- queries -------------------------------------------------------------------------------------------

    def mapping(self, pod_uid: str) -> PortMapping | None:
        owner = self._owners.get(pod_uid)
        return dict(owner.mapping) if owner else None

    def owner_of(self, host_port: int, protocol: str = "TCP") -> str | None:
        """Pod uid holding ``host_port``, if any."""
        return self._taken.get((protocol, host_port))

    def foreign_owner(self, host_port: int, pod_uid: str, protocol: str = "TCP") -> str | None:
        """Name (``namespace/name``) of the pod holding ``host_port`` when that is not ``pod_uid``."""
        owner = self._taken.get((protocol, host_port))
        if owner is None or owner == pod_uid:
            return None
        return self._owners[owner].name or owner

    def pods(self) -> list[str]:
        return list(self._owners)

    # -- changes -------------------------------------------------------------------------------------------

    def restore(self, pod_uid: str, mapping: Mapping[PortKey, int], owner: str = "") -> None:
        """Re-register a mapping recorded on a pod (after an agent restart). No bind check: the pod's own
        processes may hold these ports. Replaces what ``pod_uid`` held before; all or nothing."""
        previous = self._owners.get(pod_uid)
        for key, host_port in mapping.items():
            holder = self._taken.get((key.protocol, host_port))
            if holder is not None and holder != pod_uid:
                raise PortAllocationError(self._conflict(host_port, key.protocol, holder))
        seen: dict[tuple[str, int], PortKey] = {}
        for key, host_port in mapping.items():
            if (key.protocol, host_port) in seen:
                raise PortAllocationError(
                    f"port {host_port}/{key.protocol} is recorded for both {seen[(key.protocol, host_port)]} "
                    f"and {key}"
                )
            seen[(key.protocol, host_port)] = key
        if previous is not None:
            self._forget(pod_uid)
        self._record(pod_uid, owner or (previous.name if previous else ""), dict(mapping))

    def allocate(self, pod_uid: str, container_ports: Iterable[DeclaredPort], owner: str = "") -> PortMapping:
        """Host ports for every declared port of a pod; ``owner`` (``namespace/name``) is used in messages.

        Idempotent: ports the pod already holds are kept and only new declarations get ports, so calling it
        again for a restarted container changes nothing. All or nothing: on error the pod holds what it held.
        """
        current = self._owners.get(pod_uid)
        mapping: PortMapping = dict(current.mapping) if current else {}
        wanted: list[DeclaredPort] = []
        for port in container_ports:
            if port.protocol not in PROTOCOLS:
                raise PortAllocationError(
                    f"container {port.container!r} port {port.container_port}: protocol {port.protocol!r} is "
                    f"not one of {', '.join(PROTOCOLS)}"
                )
            if port.key in mapping:
                continue
            twin = next((i for i, other in enumerate(wanted) if other.key == port.key), None)
            if twin is None:
                wanted.append(port)
            elif port.host_port is not None and wanted[twin].host_port not in (None, port.host_port):
                raise PortAllocationError(
                    f"port {port.key} is declared twice with different hostPorts "
                    f"({wanted[twin].host_port} and {port.host_port})"
                )
            elif port.host_port is not None:
                wanted[twin] = port
        claimed: dict[tuple[str, int], PortKey] = {(k.protocol, v): k for k, v in mapping.items()}
        # Declared hostPorts first, so an automatic pick never steals one the pod itself asked for.
        for port in sorted(wanted, key=lambda p: p.host_port is None):
            host_port = port.host_port
            if host_port is not None:
                if not 1 <= host_port <= 65535:
                    raise PortAllocationError(f"hostPort {host_port} is not within 1-65535")
                slot = (port.protocol, host_port)
                holder = self._taken.get(slot)
                if holder is not None and holder != pod_uid:
                    raise PortAllocationError(self._conflict(host_port, port.protocol, holder))
                if slot in claimed:
                    raise PortAllocationError(
                        f"hostPort {host_port}/{port.protocol} is declared by both {claimed[slot]} "
                        f"and {port.key}"
                    )
                if not self._is_free(self.address, host_port, port.protocol):
                    raise PortAllocationError(
                        f"port {host_port}/{port.protocol} is already in use on {self.address}"
                    )
            else:
                host_port = self._pick(port.protocol, claimed)
            claimed[(port.protocol, host_port)] = port.key
            mapping[port.key] = host_port
        if current is not None:
            self._forget(pod_uid)
        self._record(pod_uid, owner or (current.name if current else ""), mapping)
        return dict(mapping)

    def release(self, pod_uid: str) -> None:
        """Free every port of the pod; unknown pods are ignored."""
        self._forget(pod_uid)

    # -- internals -----------------------------------------------------------------------------------------

    def _conflict(self, host_port: int, protocol: str, holder: str) -> str:
        name = self._owners[holder].name or holder
        suffix = "" if protocol == "TCP" else f"/{protocol}"
        return f"port {host_port}{suffix} is already allocated to pod {name}"

    def _pick(self, protocol: str, claimed: Mapping[tuple[str, int], PortKey]) -> int:
        low, high = self.port_range
        size = high - low + 1
        for step in range(size):
            candidate = low + (self._cursor - low + step) % size
            slot = (protocol, candidate)
            if slot in self._taken or slot in claimed:
                continue
            if not self._is_free(self.address, candidate, protocol):
                continue
            self._cursor = low + (candidate - low + 1) % size
            return candidate
        raise PortAllocationError(
            f"no free {protocol} host port left in range {low}-{high} on {self.address}"
        )

    def _record(self, pod_uid: str, name: str, mapping: PortMapping) -> None:
        self._owners[pod_uid] = _Owner(name, mapping)
        for key, host_port in mapping.items():
            self._taken[(key.protocol, host_port)] = pod_uid

    def _forget(self, pod_uid: str) -> None:
        owner = self._owners.pop(pod_uid, None)
        if owner is None:
            return
        for key, host_port in owner.mapping.items():
            with contextlib.suppress(KeyError):
                if self._taken[(key.protocol, host_port)] == pod_uid:
                    del self._taken[(key.protocol, host_port)]


__all__ = [
    "DEFAULT_PORT_RANGE",
    "PORTS_ANNOTATION",
    "DeclaredPort",
    "HostPortAllocator",
    "PortAllocationError",
    "PortKey",
    "PortMapping",
    "declared_ports",
    "decode_ports",
    "encode_ports",
    "pod_port_mapping",
    "port_env",
    "port_is_free",
    "probe_host_ports",
]
