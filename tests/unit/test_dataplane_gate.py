"""The termination gate's view: a pod is an endpoint while this node's proxy would route new connections to it."""

from __future__ import annotations

from typing import Any

from corral.proxy.node import NodeDataPlane
from corral.proxy.service_proxy import ServiceProxy
from corral.testing.controllers import InProcessCluster

SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "uid": "s1", "resourceVersion": "1"},
    "spec": {"clusterIP": "127.96.3.4", "ports": [{"name": "http", "port": 18080, "protocol": "TCP"}]},
}
POD: dict[str, Any] = {"metadata": {"name": "web-1", "namespace": "default"}}


def endpoint_slice(terminating: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abcde",
            "namespace": "default",
            "resourceVersion": "2" if terminating else "1",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 20001, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": not terminating, "serving": True, "terminating": terminating},
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-1"},
            },
            {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-2"},
            },
        ],
    }


async def test_a_terminating_pod_stops_being_an_endpoint() -> None:
    async with InProcessCluster() as cluster:
        proxy = ServiceProxy(["127.0.0.1"])
        await proxy.start()
        plane = NodeDataPlane(cluster.transport, proxy=proxy)
        try:
            plane.services.apply_event("ADDED", SERVICE)
            plane.slices.apply_event("ADDED", endpoint_slice(terminating=False))
            plane._push()
            assert plane.is_endpoint(POD) and plane.was_endpoint(POD)

            plane.slices.apply_event("MODIFIED", endpoint_slice(terminating=True))
            plane._push()
            # Another pod is ready, so the terminating one gets no new connections but is still listed.
            assert not plane.is_endpoint(POD) and plane.was_endpoint(POD)
        finally:
            await plane.close()
