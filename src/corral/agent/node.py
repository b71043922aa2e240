"""The agent's Node object and heartbeat Lease: machine facts (IO, read once) and the objects built from them
(pure). ``nodeInfo`` carries every field the Python client requires (reference §9.4).
"""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from corral.util.clock import rfc3339

JSON = dict[str, Any]

KUBELET_VERSION = "v1.32.0-corral"
RUNTIME_VERSION = "process://corral-0.1"
MAX_PODS = 110
LEASE_DURATION = 10  # renewed every 2 s (agent.HEARTBEAT_SECONDS); upstream 40 s, renewed every 10 s


@dataclass(frozen=True, slots=True)
class MachineFacts:
    cpus: int
    memory_bytes: int
    hostname: str
    kernel: str
    os_image: str
    machine_id: str
    boot_id: str
    architecture: str


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _memory_bytes() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def machine_facts() -> MachineFacts:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return MachineFacts(
        cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
        memory_bytes=_memory_bytes(),
        hostname=socket.gethostname(),
        kernel=platform.release(),
        os_image=_os_image(),
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        architecture=arch,
    )


def node_status(
    facts: MachineFacts,
    address: str,
    now: datetime,
    previous: JSON | None = None,
    ready: bool = True,
    agent_port: int = 0,
    max_pods: int = MAX_PODS,
) -> JSON:
    resources = {
        "cpu": str(facts.cpus),
        "memory": f"{facts.memory_bytes // 1024}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": "0",
    }
    old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}

    def condition(ctype: str, status: str, reason: str, message: str) -> JSON:
        before = old.get(ctype) or {}
        transition = before.get("lastTransitionTime") if before.get("status") == status else rfc3339(now)
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": rfc3339(now),
            "lastTransitionTime": transition or rfc3339(now),
        }

    return {
        "capacity": resources,
        "allocatable": dict(resources),
        "addresses": [
            {"type": "InternalIP", "address": address},
            {"type": "Hostname", "address": facts.hostname},
        ],
        "conditions": [
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "agent has sufficient memory available",
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "agent has no disk pressure"),
            condition(
                "PIDPressure", "False", "KubeletHasSufficientPID", "agent has sufficient PID available"
            ),
            condition(
                "Ready",
                "True" if ready else "False",
                "KubeletReady" if ready else "KubeletNotReady",
                "corral agent is posting ready status" if ready else "corral agent is stopping",
            ),
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": agent_port}},
        "nodeInfo": {
            "architecture": facts.architecture,
            "bootID": facts.boot_id,
            "containerRuntimeVersion": RUNTIME_VERSION,
            "kernelVersion": facts.kernel,
            "kubeProxyVersion": "",
            "kubeletVersion": KUBELET_VERSION,
            "machineID": facts.machine_id,
            "operatingSystem": "linux",
            "osImage": facts.os_image,
            "systemUUID": facts.machine_id,
        },
        "images": [],
    }


def node_object(name: str, facts: MachineFacts) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": facts.architecture,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": facts.architecture,
            },
        },
        "spec": {},
    }


def lease_object(node_name: str, node_uid: str, now: datetime) -> JSON:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
        },
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": stamp},
    }
