"""Service load-balancer status: ``type: LoadBalancer`` means "bound on the nodes' addresses".

Corral has no cloud load balancer; the node proxy listens on every node's address at the Service ``port``
(see the issue's runtime model). This controller says so in ``status.loadBalancer.ingress``: one entry
``{ip: <InternalIP>, ipMode: VIP}`` per Ready node (deduplicated, sorted), so ``kubectl get svc`` shows the
addresses instead of ``<pending>``. When the Service's type changes away from LoadBalancer the status is
cleared. Nodes labelled ``node.kubernetes.io/exclude-from-external-load-balancers`` are left out, as upstream.

Pure part: :func:`load_balancer_status`. IO part: :class:`ServiceLoadBalancerController`, keyed by Service;
a Node change enqueues every LoadBalancer Service. A separate controller from the endpoints controller
because it depends on Nodes, not pods, and writes a different object (the Service's status).
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from corral.api.resources import REGISTRY
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.controllers.runtime import ControllerManager

JSON = dict[str, Any]
SERVICES = REGISTRY.require("services")
NODES = REGISTRY.require("nodes")
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def node_is_ready(node: Mapping[str, Any]) -> bool:
    for cond in _d(node.get("status")).get("conditions") or []:
        if _d(cond).get("type") == "Ready":
            return _d(cond).get("status") == "True"
    return False


def node_internal_ips(node: Mapping[str, Any]) -> list[str]:
    out = []
    for address in _d(node.get("status")).get("addresses") or []:
        address = _d(address)
        if address.get("type") == "InternalIP" and isinstance(address.get("address"), str):
            out.append(address["address"])
    return out


def _ip_sort_key(text: str) -> tuple[int, int, str]:
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return (9, 0, text)
    return (parsed.version, int(parsed), text)


def load_balancer_status(service: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]) -> JSON:
    """The desired ``status.loadBalancer`` of ``service`` given the cluster's nodes."""
    if _d(service.get("spec")).get("type") != "LoadBalancer":
        return {}
    ips: set[str] = set()
    for node in nodes:
        labels = _d(_d(node.get("metadata")).get("labels"))
        if EXCLUDE_LABEL in labels or not node_is_ready(node):
            continue
        ips.update(node_internal_ips(node))
    if not ips:
        return {}
    return {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in sorted(ips, key=_ip_sort_key)]}


class ServiceLoadBalancerController:
    name = "service-lb-controller"
    workers = 1

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.services: Informer | None = None
        self.nodes: Informer | None = None

    def setup(self, manager: ControllerManager) -> None:
        self.services = manager.watch(self, SERVICES)
        self.nodes = manager.watch(self, NODES, self._load_balancer_keys)

    def _load_balancer_keys(self, node: JSON) -> list[str]:
        """Any node change may change every LoadBalancer Service's addresses."""
        if self.services is None:
            return []
        return [
            object_key(s) for s in self.services.list() if _d(s.get("spec")).get("type") == "LoadBalancer"
        ]

    async def reconcile(self, key: str) -> float | None:
        assert self.services is not None and self.nodes is not None
        service = self.services.get(key)
        if service is None:
            return None
        desired = load_balancer_status(service, self.nodes.list())
        status = _d(service.get("status"))
        if _d(status.get("loadBalancer")) == desired:
            return None
        updated = copy.deepcopy(service)
        updated["status"] = {**copy.deepcopy(status), "loadBalancer": desired}
        meta = _d(service.get("metadata"))
        await self.transport.update(
            SERVICES, meta.get("namespace"), str(meta.get("name")), updated, subresource="status"
        )
        return None
