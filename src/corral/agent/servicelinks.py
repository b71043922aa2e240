"""Service environment variables of a container (Kubernetes ``enableServiceLinks``), as the kubelet sets them.

Pure logic over plain Service dicts; the agent lists the Services when a container starts and passes them in,
so a process sees the Services that existed at that moment and never learns of later ones (use DNS for those).
Mirrors ``pkg/kubelet/kubelet_pods.go`` ``getServiceEnvVarMap`` and ``pkg/kubelet/envvars/envvars.go``
``FromServices``:

- Services of the pod's namespace when ``enableServiceLinks`` is true (the default), plus the ``kubernetes``
  Service of ``default`` always (a Service named ``kubernetes`` in the pod's own namespace takes precedence).
- Only Services with a ClusterIP (not ``None``, not empty): headless and ExternalName Services get nothing.
- Name = Service name upper-cased with ``-`` → ``_``. ``<NAME>_SERVICE_HOST``, ``<NAME>_SERVICE_PORT`` (first
  port), ``<NAME>_SERVICE_PORT_<PORTNAME>`` per named port, and the Docker-link ones: ``<NAME>_PORT`` (first
  port, ``tcp://ip:port``), and per port ``<NAME>_PORT_<port>_<PROTO>`` with ``_PROTO``, ``_PORT``, ``_ADDR``.

Corral adds ``CORRAL_DNS=<addr>:<port>`` when the node runs a DNS server, so a process can find it (the pods
share the host network and its ``/etc/resolv.conf``, which Corral does not change).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASTER_SERVICE_NAMESPACE = "default"
MASTER_SERVICES = frozenset({"kubernetes"})
DNS_VARIABLE = "CORRAL_DNS"


def env_name(name: str) -> str:
    """The kubelet's ``makeEnvVariableName``: upper case, ``-`` becomes ``_`` (dots and digits stay)."""
    return name.replace("-", "_").upper()


def _cluster_ip(service: Mapping[str, Any]) -> str:
    ip = str((service.get("spec") or {}).get("clusterIP") or "")
    return "" if ip == "None" else ip


def _host_port(ip: str, port: int) -> str:
    """Go's ``net.JoinHostPort``: IPv6 addresses get brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def service_variables(service: Mapping[str, Any]) -> dict[str, str]:
    """The variables of one Service (``FromServices`` for a single Service); empty without a ClusterIP."""
    ip = _cluster_ip(service)
    if not ip:
        return {}
    name = env_name(str((service.get("metadata") or {}).get("name") or ""))
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p.get("port"), int)]
    env = {f"{name}_SERVICE_HOST": ip}
    if not ports:
        return env  # validation requires ports for a ClusterIP Service; the kubelet would not get here
    env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
    for port in ports:
        if port.get("name"):
            env[f"{name}_SERVICE_PORT_{env_name(str(port['name']))}"] = str(port["port"])
    for index, port in enumerate(ports):
        protocol = str(port.get("protocol") or "TCP")
        url = f"{protocol.lower()}://{_host_port(ip, port['port'])}"
        if index == 0:
            env[f"{name}_PORT"] = url  # Docker special-cases the first port
        prefix = f"{name}_PORT_{port['port']}_{protocol.upper()}"
        env[prefix] = url
        env[f"{prefix}_PROTO"] = protocol.lower()
        env[f"{prefix}_PORT"] = str(port["port"])
        env[f"{prefix}_ADDR"] = ip
    return env


def service_environment(
    services: Iterable[Mapping[str, Any]],
    namespace: str,
    *,
    enable_service_links: bool = True,
    dns_address: str | None = None,
) -> dict[str, str]:
    """The service variables of a pod in ``namespace``, from the Services that exist now (any namespaces may
    be passed; only the pod's own and the master Services of ``default`` count)."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for service in services:
        meta = service.get("metadata") or {}
        name = str(meta.get("name") or "")
        service_namespace = str(meta.get("namespace") or "")
        if not name or not _cluster_ip(service):
            continue
        if service_namespace == MASTER_SERVICE_NAMESPACE and name in MASTER_SERVICES:
            chosen.setdefault(name, service)
        elif service_namespace == namespace and enable_service_links:
            chosen[name] = service
    env: dict[str, str] = {}
    # Sorted by name so that the rare clash of two Services' variable names resolves the same way each time
    # (the kubelet's map iteration order is random there).
    for name in sorted(chosen):
        env.update(service_variables(chosen[name]))
    if dns_address:
        env[DNS_VARIABLE] = dns_address
    return env
