"""The endpoints controller in process: Endpoints and EndpointSlices follow pods, through the real API.

Pods are created through the API and the test plays the node agent: it writes ``status`` (podIP, the Ready
condition) and the ``corral.dev/ports`` annotation itself, so no process runs. Every wait polls with a
deadline; "nothing happens" is checked after the controllers settle.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from corral.apiserver import status as st
from corral.client.local import LocalTransport
from corral.controllers.endpoints import EndpointsController
from corral.controllers.endpointsplan import MANAGED_BY_LABEL, MIRROR_CONTROLLER_NAME, SERVICE_NAME_LABEL
from corral.controllers.servicelb import ServiceLoadBalancerController
from corral.proxy.backends import backends_by_port, routable
from corral.testing.clock import FakeClock
from corral.testing.controllers import InProcessCluster, rt

JSON = dict[str, Any]
NS = "default"
NODE_IP = "127.0.0.1"


def cluster(transport_wrapper: Callable[[LocalTransport], Any] | None = None) -> InProcessCluster:
    def endpoints(t: LocalTransport, clock: FakeClock) -> EndpointsController:
        return EndpointsController(transport_wrapper(t) if transport_wrapper else t, clock)

    return InProcessCluster(endpoints, lambda t, _: ServiceLoadBalancerController(t))


async def make_service(c: InProcessCluster, name: str, selector: dict[str, str] | None, **spec: Any) -> JSON:
    body: JSON = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}], **spec},
    }
    if selector is not None:
        body["spec"]["selector"] = selector
    return await c.transport.create(rt("services"), NS, body)


async def make_pod(
    c: InProcessCluster,
    name: str,
    host_port: int,
    *,
    labels: dict[str, str] | None = None,
    port_name: str = "http",
    ready: bool = True,
) -> JSON:
    """A bound pod whose container port ``port_name`` (8080) got ``host_port``, running, Ready or not."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels if labels is not None else {"app": "web"},
            "annotations": {"corral.dev/ports": json.dumps({"c/8080/TCP": host_port})},
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "c", "image": "x", "ports": [{"name": port_name, "containerPort": 8080}]}
            ],
        },
    }
    await c.transport.create(rt("pods"), NS, body)
    return await set_ready(c, name, ready)


async def set_ready(c: InProcessCluster, name: str, ready: bool) -> JSON:
    current = await c.get("pods", NS, name)
    assert current is not None
    current["status"] = {
        "phase": "Running",
        "podIP": NODE_IP,
        "podIPs": [{"ip": NODE_IP}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    return await c.transport.update(rt("pods"), NS, name, current, subresource="status")


def endpoint_addresses(endpoints: JSON | None, field: str = "addresses") -> list[str]:
    out = []
    for subset in (endpoints or {}).get("subsets") or []:
        for address in subset.get(field) or []:
            for port in subset.get("ports") or []:
                out.append(f"{address['targetRef']['name']}:{port['port']}")
    return sorted(out)


async def slices_of(c: InProcessCluster, service: str) -> list[JSON]:
    return await c.list("endpointslices", NS, label_selector=f"{SERVICE_NAME_LABEL}={service}")


async def slice_conditions(c: InProcessCluster, service: str) -> dict[str, JSON]:
    return {
        e["targetRef"]["name"]: e["conditions"] for s in await slices_of(c, service) for e in s["endpoints"]
    }


def endpoints_are(c: InProcessCluster, service: str, ready: list[str], not_ready: list[str] | None = None):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        found = await c.get("endpoints", NS, service)
        return (
            found is not None
            and endpoint_addresses(found) == sorted(ready)
            and endpoint_addresses(found, "notReadyAddresses") == sorted(not_ready or [])
        )

    return check


def slices_are(c: InProcessCluster, service: str, expected: dict[str, JSON]):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await slice_conditions(c, service) == expected

    return check


READY = {"ready": True, "serving": True, "terminating": False}
NOT_READY = {"ready": False, "serving": False, "terminating": False}


async def test_endpoints_and_slices_follow_pod_readiness() -> None:
    async with cluster() as c:
        await make_service(c, "web", {"app": "web"})
        await make_pod(c, "web-a", 20001, ready=False)
        await make_pod(c, "web-b", 20002, ready=False)
        await c.wait_for(
            endpoints_are(c, "web", [], ["web-a:20001", "web-b:20002"]), what="not-ready endpoints"
        )
        await c.wait_for(
            slices_are(c, "web", {"web-a": NOT_READY, "web-b": NOT_READY}), what="not-ready slices"
        )

        await set_ready(c, "web-a", True)
        await c.wait_for(endpoints_are(c, "web", ["web-a:20001"], ["web-b:20002"]), what="web-a ready")
        await c.wait_for(slices_are(c, "web", {"web-a": READY, "web-b": NOT_READY}), what="web-a ready slice")
        backends = backends_by_port(await slices_of(c, "web"))["http"]
        assert [(b.ip, b.port) for b in routable(backends)] == [(NODE_IP, 20001)]

        # Each pod has its own host port: one slice per resolved port, as the data contract says.
        slices = await slices_of(c, "web")
        assert sorted(s["ports"][0]["port"] for s in slices) == [20001, 20002]
        for s in slices:
            assert s["metadata"]["labels"][MANAGED_BY_LABEL] == "endpointslice-controller.k8s.io"
            assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"

        # Nothing changed: nothing is written (resourceVersions stay).
        await c.settle()
        before = [s["metadata"]["resourceVersion"] for s in await slices_of(c, "web")]
        endpoints_rv = (await c.get("endpoints", NS, "web") or {})["metadata"]["resourceVersion"]
        pod = await c.get("pods", NS, "web-b")
        assert pod is not None
        pod["metadata"]["annotations"]["unrelated"] = "change"
        await c.transport.update(rt("pods"), NS, "web-b", pod)
        await c.settle()
        assert [s["metadata"]["resourceVersion"] for s in await slices_of(c, "web")] == before
        assert (await c.get("endpoints", NS, "web") or {})["metadata"]["resourceVersion"] == endpoints_rv


async def test_terminating_pod_leaves_endpoints_and_drains_in_slices() -> None:
    async with cluster() as c:
        await make_service(c, "web", {"app": "web"})
        await make_pod(c, "web-a", 20001)
        await make_pod(c, "web-b", 20002)
        await c.wait_for(endpoints_are(c, "web", ["web-a:20001", "web-b:20002"]), what="both ready")

        # A graceful delete marks the bound pod (deletionTimestamp); the agent would now stop it.
        deleted = await c.transport.delete(rt("pods"), NS, "web-b")
        assert deleted["metadata"].get("deletionTimestamp")
        await c.wait_for(endpoints_are(c, "web", ["web-a:20001"]), what="terminating pod out of Endpoints")
        draining = {"ready": False, "serving": True, "terminating": True}
        await c.wait_for(slices_are(c, "web", {"web-a": READY, "web-b": draining}), what="draining slice")

        await c.transport.delete(rt("pods"), NS, "web-b", grace_period_seconds=0)
        await c.wait_for(slices_are(c, "web", {"web-a": READY}), what="pod gone from slices")
        assert len(await slices_of(c, "web")) == 1  # its slice was emptied, so deleted


async def test_label_change_moves_a_pod_between_services() -> None:
    async with cluster() as c:
        await make_service(c, "blue", {"app": "web", "track": "blue"})
        await make_service(c, "green", {"app": "web", "track": "green"})
        await make_pod(c, "web-a", 20001, labels={"app": "web", "track": "blue"})
        await c.wait_for(endpoints_are(c, "blue", ["web-a:20001"]), what="pod in blue")
        await c.wait_for(endpoints_are(c, "green", []), what="green empty")

        await c.transport.patch(
            rt("pods"),
            NS,
            "web-a",
            "application/merge-patch+json",
            {"metadata": {"labels": {"track": "green"}}},
        )
        await c.wait_for(endpoints_are(c, "green", ["web-a:20001"]), what="pod in green")
        await c.wait_for(endpoints_are(c, "blue", []), what="pod left blue")
        await c.wait_for(slices_are(c, "blue", {}), what="blue slices emptied")
        await c.wait_for(slices_are(c, "green", {"web-a": READY}), what="green slice")


async def test_port_names_resolve_per_pod_and_a_missing_name_is_an_event() -> None:
    async with cluster() as c:
        await make_service(c, "web", {"app": "web"})
        await make_service(c, "other", {"app": "other"})
        await make_pod(c, "web-a", 20001)
        await make_pod(c, "web-b", 20002)
        await make_pod(c, "web-odd", 20003, port_name="admin")
        await make_pod(c, "other-a", 20004, labels={"app": "other"})
        await c.wait_for(endpoints_are(c, "web", ["web-a:20001", "web-b:20002"]), what="named port resolved")
        await c.wait_for(endpoints_are(c, "other", ["other-a:20004"]), what="other service unaffected")

        async def failure_event() -> JSON | None:
            for event in await c.list("events", NS):
                if event["reason"] == "FailedToResolvePort":
                    return event
            return None

        event = await c.wait_for(failure_event, what="FailedToResolvePort event")
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "Service" and event["involvedObject"]["name"] == "web"
        assert '"http"' in event["message"] and "web-odd" in event["message"]
        assert "web-odd" not in json.dumps(await slices_of(c, "web"))

        # While the problem merely persists (other pods change), the event is not repeated.
        await set_ready(c, "web-a", False)
        await c.wait_for(endpoints_are(c, "web", ["web-b:20002"], ["web-a:20001"]), what="web-a not ready")
        await c.settle()
        events = [e for e in await c.list("events", NS) if e["reason"] == "FailedToResolvePort"]
        assert len(events) == 1 and events[0].get("count", 1) == 1


async def test_service_selecting_nothing_gets_empty_endpoints_and_others_are_unaffected() -> None:
    async with cluster() as c:
        await make_service(c, "ghost", {"app": "nothing"})
        await make_service(c, "web", {"app": "web"})
        await make_pod(c, "web-a", 20001)
        await c.wait_for(endpoints_are(c, "web", ["web-a:20001"]), what="web endpoints")
        ghost = await c.wait_for(lambda: c.get("endpoints", NS, "ghost"), what="ghost Endpoints object")
        assert not ghost.get("subsets")
        assert await slices_of(c, "ghost") == []


async def test_deleting_the_service_removes_its_endpoints_and_slices() -> None:
    async with cluster() as c:
        await make_service(c, "web", {"app": "web"})
        await make_pod(c, "web-a", 20001)
        await c.wait_for(slices_are(c, "web", {"web-a": READY}), what="slice")
        await c.transport.delete(rt("services"), NS, "web")

        async def all_gone() -> bool:
            return await c.get("endpoints", NS, "web") is None and await slices_of(c, "web") == []

        await c.wait_for(all_gone, what="Endpoints and slices removed")


async def test_a_deleted_or_edited_slice_is_repaired() -> None:
    async with cluster() as c:
        await make_service(c, "web", {"app": "web"})
        await make_pod(c, "web-a", 20001)
        await c.wait_for(slices_are(c, "web", {"web-a": READY}), what="slice")
        (only,) = await slices_of(c, "web")
        edited = copy.deepcopy(only)
        edited["endpoints"] = []
        await c.transport.update(rt("endpointslices"), NS, only["metadata"]["name"], edited)
        await c.wait_for(slices_are(c, "web", {"web-a": READY}), what="edited slice restored")
        await c.transport.delete(rt("endpointslices"), NS, only["metadata"]["name"])
        await c.wait_for(slices_are(c, "web", {"web-a": READY}), what="deleted slice recreated")


async def test_selectorless_service_keeps_hand_written_endpoints_mirrored_into_slices() -> None:
    async with cluster() as c:
        await make_service(c, "db", None, ports=[{"name": "pg", "port": 5432}])
        hand_written = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "db"},
            "subsets": [{"addresses": [{"ip": "127.0.0.9"}], "ports": [{"name": "pg", "port": 15432}]}],
        }
        created = await c.transport.create(rt("endpoints"), NS, hand_written)

        async def mirrored() -> list[tuple[str, int]]:
            slices = await slices_of(c, "db")
            if not slices or any(
                s["metadata"]["labels"][MANAGED_BY_LABEL] != MIRROR_CONTROLLER_NAME for s in slices
            ):
                return []
            return [(b.ip, b.port) for b in backends_by_port(slices).get("pg", ())]

        assert await c.wait_for(mirrored, what="mirrored slice") == [("127.0.0.9", 15432)]
        await c.settle()
        # The controller never rewrites a hand-written Endpoints object.
        stored = await c.get("endpoints", NS, "db")
        assert (
            stored is not None
            and stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        )

        stored["subsets"][0]["addresses"].append({"ip": "127.0.0.10"})
        await c.transport.update(rt("endpoints"), NS, "db", stored)

        async def two() -> bool:
            return sorted(await mirrored()) == [("127.0.0.10", 15432), ("127.0.0.9", 15432)]

        await c.wait_for(two, what="mirrored slice follows the Endpoints")
        await c.transport.delete(rt("endpoints"), NS, "db")

        async def none_left() -> bool:
            return await slices_of(c, "db") == []

        await c.wait_for(none_left, what="mirrored slices removed with the Endpoints")


class FailingTransport:
    """Delegates to a real transport, but every write of the Endpoints object ``broken`` fails."""

    def __init__(self, inner: LocalTransport) -> None:
        self.inner = inner
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _check(self, rt_: Any, name: str) -> None:
        if rt_.plural == "endpoints" and name == "broken":
            self.failures += 1
            raise st.ApiError(500, "InternalError", "injected failure")

    async def create(self, rt_: Any, namespace: str | None, obj: JSON, **kw: Any) -> JSON:
        self._check(rt_, (obj.get("metadata") or {}).get("name", ""))
        return await self.inner.create(rt_, namespace, obj, **kw)

    async def update(self, rt_: Any, namespace: str | None, name: str, obj: JSON, **kw: Any) -> JSON:
        self._check(rt_, name)
        return await self.inner.update(rt_, namespace, name, obj, **kw)


async def test_a_failing_service_is_retried_without_holding_up_the_others() -> None:
    wrappers: list[FailingTransport] = []

    def wrap(t: LocalTransport) -> FailingTransport:
        wrappers.append(FailingTransport(t))
        return wrappers[-1]

    async with cluster(wrap) as c:
        await make_service(c, "broken", {"app": "web"})
        await make_service(c, "web", {"app": "web"})
        await make_pod(c, "web-a", 20001)
        await c.wait_for(endpoints_are(c, "web", ["web-a:20001"]), what="healthy service converged")
        await c.wait_for(lambda: wrappers[0].failures >= 3, what="broken service retried")
        await make_pod(c, "web-b", 20002)
        await c.wait_for(endpoints_are(c, "web", ["web-a:20001", "web-b:20002"]), what="still following pods")
        assert await c.get("endpoints", NS, "broken") is None


async def make_node(c: InProcessCluster, name: str, ip: str, ready: bool) -> None:
    await c.transport.create(
        rt("nodes"), None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
    )
    await set_node_ready(c, name, ip, ready)


async def set_node_ready(c: InProcessCluster, name: str, ip: str, ready: bool) -> None:
    node = await c.get("nodes", None, name)
    assert node is not None
    node["status"] = {
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    await c.transport.update(rt("nodes"), None, name, node, subresource="status")


async def test_load_balancer_status_lists_ready_nodes_and_clears_on_type_change() -> None:
    async with cluster() as c:
        await make_node(c, "node-1", "127.0.0.1", True)
        await make_node(c, "node-2", "127.0.0.2", False)
        await make_service(c, "lb", {"app": "web"}, type="LoadBalancer")
        await make_service(c, "plain", {"app": "web"})

        def ingress_is(name: str, expected: list[JSON]):  # type: ignore[no-untyped-def]
            async def check() -> bool:
                svc = await c.get("services", NS, name)
                return (
                    svc is not None
                    and (svc.get("status") or {}).get("loadBalancer", {}).get("ingress", []) == expected
                )

            return check

        await c.wait_for(ingress_is("lb", [{"ip": "127.0.0.1", "ipMode": "VIP"}]), what="one ready node")
        await set_node_ready(c, "node-2", "127.0.0.2", True)
        both = [{"ip": "127.0.0.1", "ipMode": "VIP"}, {"ip": "127.0.0.2", "ipMode": "VIP"}]
        await c.wait_for(ingress_is("lb", both), what="second node ready")

        svc = await c.get("services", NS, "lb")
        assert svc is not None
        svc["spec"]["type"] = "ClusterIP"
        for port in svc["spec"]["ports"]:
            port.pop("nodePort", None)
        svc["spec"].pop("allocateLoadBalancerNodePorts", None)
        svc["spec"].pop("externalTrafficPolicy", None)
        await c.transport.update(rt("services"), NS, "lb", svc)
        await c.wait_for(ingress_is("lb", []), what="status cleared")
        await c.settle()
        plain = await c.get("services", NS, "plain")
        assert plain is not None and plain["status"] == {"loadBalancer": {}}
