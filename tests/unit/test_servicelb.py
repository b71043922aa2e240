"""LoadBalancer Service status: the InternalIPs of the Ready nodes, cleared for other types."""

from __future__ import annotations

from typing import Any

from corral.controllers.servicelb import EXCLUDE_LABEL, load_balancer_status

JSON = dict[str, Any]


def node(name: str, ip: str | None, ready: bool | None = True, labels: dict[str, str] | None = None) -> JSON:
    status: JSON = {"addresses": [{"type": "Hostname", "address": name}]}
    if ip is not None:
        status["addresses"].append({"type": "InternalIP", "address": ip})
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": {"name": name, "labels": labels or {}}, "status": status}


def service(svc_type: str | None) -> JSON:
    spec: JSON = {"ports": [{"port": 80}]}
    if svc_type is not None:
        spec["type"] = svc_type
    return {"metadata": {"name": "lb", "namespace": "default"}, "spec": spec}


def test_ready_nodes_internal_ips_sorted_and_deduplicated() -> None:
    nodes = [
        node("c", "127.0.0.10"),
        node("a", "127.0.0.2"),
        node("b", "127.0.0.2"),  # two agents on one address: one entry
        node("down", "127.0.0.3", ready=False),
        node("unknown", "127.0.0.4", ready=None),
        node("excluded", "127.0.0.5", labels={EXCLUDE_LABEL: ""}),
        node("no-ip", None),
    ]
    assert load_balancer_status(service("LoadBalancer"), nodes) == {
        "ingress": [{"ip": "127.0.0.2", "ipMode": "VIP"}, {"ip": "127.0.0.10", "ipMode": "VIP"}]
    }


def test_no_ready_node_means_pending() -> None:
    assert load_balancer_status(service("LoadBalancer"), [node("down", "127.0.0.3", ready=False)]) == {}


def test_other_types_have_no_load_balancer_status() -> None:
    nodes = [node("a", "127.0.0.1")]
    for svc_type in (None, "ClusterIP", "NodePort", "ExternalName"):
        assert load_balancer_status(service(svc_type), nodes) == {}
