"""``corral describe svc``: the Service section as kubectl 1.32 prints it, endpoints read from slices."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from corral.cli.describers import Related, describe, format_endpoint_slices, format_endpoints

JSON = dict[str, Any]
NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def endpoint_slice(ports: list[JSON], *endpoints: tuple[str, bool | None]) -> JSON:
    items = []
    for ip, ready in endpoints:
        conditions = {} if ready is None else {"ready": ready}
        items.append({"addresses": [ip], "conditions": conditions})
    return {"addressType": "IPv4", "ports": ports, "endpoints": items}


HTTP = [{"name": "http", "port": 20001, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("slices", "port", "expected"),
    [
        ([], "http", "<none>"),
        ([endpoint_slice(HTTP, ("127.0.0.1", True))], "http", "127.0.0.1:20001"),
        # Not-ready endpoints are skipped; an unset ready counts as ready.
        ([endpoint_slice(HTTP, ("10.0.0.1", False), ("10.0.0.2", None))], "http", "10.0.0.2:20001"),
        ([endpoint_slice(HTTP, ("10.0.0.1", False))], "http", ""),
        ([endpoint_slice(HTTP, ("10.0.0.1", True))], "metrics", ""),
        # Slice order is kept (the server lists them by name).
        (
            [
                endpoint_slice([{"name": "http", "port": 20003}], ("127.0.0.1", True)),
                endpoint_slice([{"name": "http", "port": 20001}], ("127.0.0.1", True)),
            ],
            "http",
            "127.0.0.1:20003,127.0.0.1:20001",
        ),
        (
            [endpoint_slice(HTTP, *[(f"10.0.0.{i}", True) for i in range(1, 6)])],
            "http",
            "10.0.0.1:20001,10.0.0.2:20001,10.0.0.3:20001 + 2 more...",
        ),
        ([endpoint_slice([], ("10.0.0.1", True), ("10.0.0.2", True))], "", "10.0.0.1,10.0.0.2"),
        ([endpoint_slice(HTTP, ("fd00::1", True))], "http", "[fd00::1]:20001"),
    ],
)
def test_format_endpoint_slices(slices: list[JSON], port: str, expected: str) -> None:
    assert format_endpoint_slices(slices, port) == expected


def test_format_endpoints_fallback() -> None:
    endpoints = {
        "subsets": [
            {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": 20001}]},
            {"notReadyAddresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": 20002}]},
        ]
    }
    assert format_endpoints(endpoints, "http") == "127.0.0.1:20001"
    assert format_endpoints(None, "http") == "<none>"


def test_load_balancer_service_section() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "lb", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web"},
            "clusterIP": "127.96.0.2",
            "clusterIPs": ["127.96.0.2"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "nodePort": 30000, "protocol": "TCP"}
            ],
            "sessionAffinity": "None",
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}},
    }
    related = Related(endpoint_slices=[endpoint_slice(HTTP, ("127.0.0.1", True))])
    text = describe("Service", service, related, NOW, namespaced=True)
    assert text.splitlines() == [
        "Name:                     lb",
        "Namespace:                default",
        "Labels:                   <none>",
        "Annotations:              <none>",
        "Selector:                 app=web",
        "Type:                     LoadBalancer",
        "IP Family Policy:         SingleStack",
        "IP Families:              IPv4",
        "IP:                       127.96.0.2",
        "IPs:                      127.96.0.2",
        "LoadBalancer Ingress:     127.0.0.1 (VIP)",
        "Port:                     http  80/TCP",
        "TargetPort:               http/TCP",
        "NodePort:                 http  30000/TCP",
        "Endpoints:                127.0.0.1:20001",
        "Session Affinity:         None",
        "External Traffic Policy:  Cluster",
        "Internal Traffic Policy:  Cluster",
        "Events:                   <none>",
    ]
