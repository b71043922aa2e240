"""The endpoints planner: which pods become endpoints, port resolution, slices, mirroring, determinism."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.controllers.endpointsplan import (
    CONTROLLER_NAME,
    MANAGED_ANNOTATION,
    MANAGED_BY_LABEL,
    MIRROR_CONTROLLER_NAME,
    SERVICE_NAME_LABEL,
    SKIP_MIRROR_LABEL,
    PortFailure,
    ServicePlan,
    desired_subsets,
    plan_service,
    plan_slices,
    resolve_target_port,
    service_slice_owner,
)
from corral.proxy.backends import backends_by_port, routable

JSON = dict[str, Any]
NODE_IP = "127.0.0.1"


def service(
    name: str = "web",
    selector: dict[str, str] | None = None,
    ports: list[JSON] | None = None,
    **spec: Any,
) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-svc-{name}",
            "labels": {"tier": "fe"},
        },
        "spec": {
            "selector": {"app": "web"} if selector is None else selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
            if ports is None
            else ports,
            **spec,
        },
    }


def pod(
    name: str,
    *,
    ready: bool = True,
    labels: dict[str, str] | None = None,
    ports: list[JSON] | None = None,
    allocated: dict[str, int] | None = None,
    ip: str | None = NODE_IP,
    phase: str = "Running",
    terminating: bool = False,
    namespace: str = "default",
    node: str = "n1",
) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "labels": {"app": "web"} if labels is None else labels,
    }
    declared = [{"name": "http", "containerPort": 8080, "protocol": "TCP"}] if ports is None else ports
    if allocated is None:
        allocated = {
            f"c/{p['containerPort']}/{p.get('protocol', 'TCP')}": 20000 + i for i, p in enumerate(declared)
        }
    if allocated:
        meta["annotations"] = {"corral.dev/ports": json.dumps(allocated)}
    if terminating:
        meta["deletionTimestamp"] = "2024-05-01T12:00:00Z"
    status: JSON = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "ports": declared}]},
        "status": status,
    }


def with_port(name: str, host_port: int, **kw: Any) -> JSON:
    """A pod whose container port ``http`` (8080) was allocated ``host_port``."""
    return pod(name, allocated={"c/8080/TCP": host_port}, **kw)


def stored(obj: JSON, rv: int = 1) -> JSON:
    """``obj`` as the API would return it after a create (server metadata added)."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta.setdefault("uid", f"uid-{meta['name']}")
    meta["resourceVersion"] = str(rv)
    return out


def apply(plan: ServicePlan, endpoints: JSON | None, slices: list[JSON]) -> tuple[JSON | None, list[JSON]]:
    """What the store holds after the plan's writes (no conflicts), as the controller would leave it."""
    if plan.endpoints_create is not None:
        endpoints = stored(plan.endpoints_create)
    if plan.endpoints_update is not None:
        endpoints = stored(plan.endpoints_update, 2)
    if plan.endpoints_delete is not None:
        endpoints = None
    by_name = {s["metadata"]["name"]: s for s in slices}
    for body in plan.slices.create:
        assert body["metadata"]["name"] not in by_name
        by_name[body["metadata"]["name"]] = stored(body)
    for body in plan.slices.update:
        by_name[body["metadata"]["name"]] = stored(body, 2)
    for gone in plan.slices.delete:
        del by_name[gone["metadata"]["name"]]
    return endpoints, list(by_name.values())


def converge(
    svc: JSON | None, pods: list[JSON], endpoints: JSON | None = None, slices: list[JSON] | None = None
):  # type: ignore[no-untyped-def]
    plan = plan_service(svc, pods, endpoints, slices or [])
    endpoints, slices = apply(plan, endpoints, slices or [])
    return plan, endpoints, slices


def addresses(endpoints: JSON | None, field: str = "addresses") -> list[tuple[str, int]]:
    out = []
    for subset in (endpoints or {}).get("subsets", []):
        for address in subset.get(field, []):
            for port in subset.get("ports", [{"port": 0}]):
                out.append((address["targetRef"]["name"], port["port"]))
    return sorted(out)


def slice_endpoints(slices: list[JSON]) -> dict[str, JSON]:
    return {e["targetRef"]["name"]: e for s in slices for e in s["endpoints"]}


# --- which pods -----------------------------------------------------------------------------------------


def test_ready_and_not_ready_pods_split_into_addresses() -> None:
    pods = [with_port("a", 20001), with_port("b", 20002, ready=False)]
    _, endpoints, slices = converge(service(), pods)
    assert addresses(endpoints) == [("a", 20001)]
    assert addresses(endpoints, "notReadyAddresses") == [("b", 20002)]
    conditions = {name: e["conditions"] for name, e in slice_endpoints(slices).items()}
    assert conditions == {
        "a": {"ready": True, "serving": True, "terminating": False},
        "b": {"ready": False, "serving": False, "terminating": False},
    }


@pytest.mark.parametrize(
    ("case", "candidate"),
    [
        ("no pod IP", with_port("x", 20009, ip=None)),
        ("succeeded", with_port("x", 20009, phase="Succeeded")),
        ("failed", with_port("x", 20009, phase="Failed")),
        ("other labels", with_port("x", 20009, labels={"app": "db"})),
        ("other namespace", with_port("x", 20009, namespace="other")),
    ],
)
def test_pods_that_never_count(case: str, candidate: JSON) -> None:
    _, endpoints, slices = converge(service(), [with_port("a", 20001), candidate])
    assert addresses(endpoints) == [("a", 20001)], case
    assert set(slice_endpoints(slices)) == {"a"}, case


def test_terminating_pod_leaves_endpoints_but_stays_in_slices_draining() -> None:
    pods = [with_port("a", 20001), with_port("b", 20002, terminating=True)]
    _, endpoints, slices = converge(service(), pods)
    assert addresses(endpoints) == [("a", 20001)]
    assert addresses(endpoints, "notReadyAddresses") == []
    assert slice_endpoints(slices)["b"]["conditions"] == {
        "ready": False,
        "serving": True,
        "terminating": True,
    }
    # The data plane sends new connections to "a" only.
    backends = backends_by_port(slices)["http"]
    assert [b.port for b in routable(backends)] == [20001]


def test_publish_not_ready_addresses_keeps_everything_ready() -> None:
    pods = [with_port("a", 20001, ready=False), with_port("b", 20002, terminating=True)]
    _, endpoints, slices = converge(service(publishNotReadyAddresses=True), pods)
    assert addresses(endpoints) == [("a", 20001), ("b", 20002)]
    assert slice_endpoints(slices)["b"]["conditions"] == {"ready": True, "serving": True, "terminating": True}


def test_service_selecting_nothing_gets_an_empty_endpoints_object() -> None:
    plan, endpoints, slices = converge(service(selector={"app": "nothing"}), [with_port("a", 20001)])
    assert endpoints is not None and "subsets" not in endpoints
    assert endpoints["metadata"]["labels"][SKIP_MIRROR_LABEL] == "true"
    assert endpoints["metadata"]["annotations"][MANAGED_ANNOTATION]
    assert slices == [] and plan.failures == []


# --- ports ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "declared", "allocated", "expected"),
    [
        ("http", [{"name": "http", "containerPort": 8080}], {"c/8080/TCP": 20005}, 20005),
        (8080, [{"name": "http", "containerPort": 8080}], {"c/8080/TCP": 20005}, 20005),
        # Undeclared number: the process listens on it itself (host network).
        (9090, [{"name": "http", "containerPort": 8080}], {"c/8080/TCP": 20005}, 9090),
        # Declared but not (yet) allocated: the hostPort, else the containerPort.
        ("http", [{"name": "http", "containerPort": 8080, "hostPort": 30080}], {}, 30080),
        ("http", [{"name": "http", "containerPort": 8080}], {}, 8080),
        # A name that exists only with another protocol does not resolve.
        ("dns", [{"name": "dns", "containerPort": 53, "protocol": "UDP"}], {"c/53/UDP": 20001}, None),
        ("nope", [{"name": "http", "containerPort": 8080}], {"c/8080/TCP": 20005}, None),
    ],
)
def test_resolve_target_port(
    target: Any, declared: list[JSON], allocated: dict[str, int], expected: int | None
) -> None:
    p = pod("p", ports=declared, allocated=allocated)
    assert resolve_target_port(p, {"port": 80, "targetPort": target, "protocol": "TCP"}) == expected


def test_sidecar_ports_resolve_and_plain_init_containers_do_not() -> None:
    p = pod("p", allocated={"side/9000/TCP": 20010, "init/9100/TCP": 20011})
    p["spec"]["initContainers"] = [
        {
            "name": "side",
            "image": "i",
            "restartPolicy": "Always",
            "ports": [{"name": "metrics", "containerPort": 9000}],
        },
        {"name": "init", "image": "i", "ports": [{"name": "setup", "containerPort": 9100}]},
    ]
    assert resolve_target_port(p, {"port": 1, "targetPort": "metrics"}) == 20010
    assert resolve_target_port(p, {"port": 1, "targetPort": "setup"}) is None


def test_missing_port_name_leaves_that_pod_out_of_that_port_only() -> None:
    svc = service(
        ports=[
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "metrics", "port": 9000, "targetPort": "metrics", "protocol": "TCP"},
        ]
    )
    both = pod(
        "both",
        ports=[{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9000}],
        allocated={"c/8080/TCP": 20001, "c/9000/TCP": 20002},
    )
    web_only = with_port("web-only", 20003)
    plan, endpoints, slices = converge(svc, [both, web_only])
    assert addresses(endpoints) == [("both", 20001), ("both", 20002), ("web-only", 20003)]
    assert plan.failures == [PortFailure("metrics", "metrics", "TCP", "web-only")]
    assert "metrics" in plan.failures[0].message("web") and "web-only" in plan.failures[0].message("web")
    by_port = backends_by_port(slices)
    assert [b.port for b in by_port["http"]] == [20001, 20003]
    assert [b.port for b in by_port["metrics"]] == [20002]


def test_pod_resolving_no_port_at_all_is_left_out() -> None:
    stray = pod("stray", ports=[{"name": "other", "containerPort": 1234}])
    plan, endpoints, slices = converge(service(), [with_port("a", 20001), stray])
    assert addresses(endpoints) == [("a", 20001)]
    assert set(slice_endpoints(slices)) == {"a"}
    assert [f.pod for f in plan.failures] == ["stray"]


def test_subsets_and_slices_group_by_resolved_ports() -> None:
    shared = [pod(f"s{i}", ports=[], allocated={}) for i in range(3)]  # numeric targetPort used as-is
    svc = service(ports=[{"name": "", "port": 80, "targetPort": 8000, "protocol": "TCP"}])
    _, endpoints, slices = converge(
        svc, [*shared, pod("own", allocated={"c/8000/TCP": 20001}, ports=[{"containerPort": 8000}])]
    )
    assert endpoints is not None
    assert [s["ports"] for s in endpoints["subsets"]] == [
        [{"port": 8000, "protocol": "TCP"}],
        [{"port": 20001, "protocol": "TCP"}],
    ]
    assert sorted(len(s["endpoints"]) for s in slices) == [1, 3]
    assert all(s["ports"][0]["name"] == "" for s in slices)


def test_headless_service_without_ports() -> None:
    svc = service(ports=[], clusterIP="None")
    _, endpoints, slices = converge(svc, [with_port("a", 20001)])
    assert endpoints is not None and endpoints["subsets"] == [
        {
            "addresses": [
                {
                    "ip": NODE_IP,
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
                }
            ]
        }
    ]
    assert endpoints["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert (
        len(slices) == 1
        and slices[0]["ports"] == []
        and slices[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    )


def test_hostname_published_when_subdomain_names_the_service() -> None:
    p = with_port("a", 20001)
    p["spec"].update(hostname="a-host", subdomain="web")
    _, endpoints, slices = converge(service(), [p])
    assert endpoints is not None and endpoints["subsets"][0]["addresses"][0]["hostname"] == "a-host"
    assert slices[0]["endpoints"][0]["hostname"] == "a-host"


# --- slice shape and the data contract -----------------------------------------------------------------


def test_slice_follows_the_data_contract() -> None:
    _, _, slices = converge(service(), [with_port("a", 20001)])
    (s,) = slices
    meta = s["metadata"]
    assert meta["name"].startswith("web-") and len(meta["name"]) == len("web-") + 5
    assert meta["labels"] == {"tier": "fe", SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: CONTROLLER_NAME}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": "uid-svc-web",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "http", "port": 20001, "protocol": "TCP"}]
    assert s["endpoints"] == [
        {
            "addresses": [NODE_IP],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
            "nodeName": "n1",
        }
    ]


def test_slices_hold_at_most_max_and_keep_endpoints_in_place() -> None:
    svc = service(ports=[{"name": "", "port": 80, "targetPort": 8000, "protocol": "TCP"}])
    pods = [pod(f"p{i:02d}", ports=[], allocated={}) for i in range(5)]
    plan = plan_service(svc, pods, None, [], max_per_slice=2)
    _, slices = apply(plan, None, [])
    assert sorted(len(s["endpoints"]) for s in slices) == [1, 2, 2]
    before = {e["targetRef"]["name"]: s["metadata"]["name"] for s in slices for e in s["endpoints"]}
    # One pod goes, one comes: no slice is created or deleted and no endpoint moves; the newcomer fills
    # the first slice with room.
    pods = [p for p in pods if p["metadata"]["name"] != "p02"] + [pod("p99", ports=[], allocated={})]
    plan = plan_service(svc, pods, None, slices, max_per_slice=2)
    assert plan.slices.create == [] and plan.slices.delete == []
    _, slices = apply(plan, None, slices)
    after = {e["targetRef"]["name"]: s["metadata"]["name"] for s in slices for e in s["endpoints"]}
    assert set(after) == {"p00", "p01", "p03", "p04", "p99"}
    assert all(after[name] == before[name] for name in after if name in before)
    assert sorted(len(s["endpoints"]) for s in slices) == [1, 2, 2]


def test_emptied_slices_are_deleted_and_foreign_slices_untouched() -> None:
    foreign = stored(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "web-custom",
                "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: "web", MANAGED_BY_LABEL: "someone-else"},
            },
            "addressType": "IPv4",
            "endpoints": [],
            "ports": [],
        }
    )
    _, endpoints, slices = converge(service(), [with_port("a", 20001)])
    plan, endpoints, slices = converge(service(), [], endpoints, [*slices, foreign])
    assert [s["metadata"]["name"] for s in slices] == ["web-custom"]
    assert len(plan.slices.delete) == 1


def test_new_slice_names_avoid_taken_ones() -> None:
    owner = service_slice_owner(service())
    groups = {("IPv4", ()): [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}
    first = plan_slices(owner, groups, []).create[0]["metadata"]["name"]
    second = plan_slices(owner, groups, [], taken_names={first}).create[0]["metadata"]["name"]
    assert first != second and second.startswith("web-")
    assert plan_slices(owner, groups, []).create[0]["metadata"]["name"] == first  # deterministic


# --- labels, stale objects, modes ----------------------------------------------------------------------


def test_hand_edited_endpoints_and_slices_are_restored() -> None:
    _, endpoints, slices = converge(service(), [with_port("a", 20001)])
    assert endpoints is not None
    tampered = copy.deepcopy(endpoints)
    tampered["subsets"] = []
    tampered["metadata"]["annotations"]["keep"] = "me"
    tampered_slice = copy.deepcopy(slices[0])
    tampered_slice["endpoints"] = []
    plan = plan_service(service(), [with_port("a", 20001)], tampered, [tampered_slice])
    assert (
        plan.endpoints_update is not None and plan.endpoints_update["metadata"]["annotations"]["keep"] == "me"
    )
    assert plan.endpoints_update["metadata"]["resourceVersion"] == tampered["metadata"]["resourceVersion"]
    assert [s["endpoints"] for s in plan.slices.update] == [slices[0]["endpoints"]]


def test_service_labels_follow_to_endpoints_and_slices() -> None:
    _, endpoints, slices = converge(service(), [with_port("a", 20001)])
    relabelled = service()
    relabelled["metadata"]["labels"] = {"tier": "be"}
    plan = plan_service(relabelled, [with_port("a", 20001)], endpoints, slices)
    assert plan.endpoints_update is not None and plan.endpoints_update["metadata"]["labels"]["tier"] == "be"
    assert plan.slices.update[0]["metadata"]["labels"]["tier"] == "be"


def test_gone_service_removes_only_what_this_controller_wrote() -> None:
    _, endpoints, slices = converge(service(), [with_port("a", 20001)])
    plan = plan_service(None, [], endpoints, slices)
    assert plan.endpoints_delete is not None and len(plan.slices.delete) == 1
    hand_written = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default"},
    }
    assert not plan_service(None, [], hand_written, []).writes


def test_external_name_service_has_no_managed_endpoints() -> None:
    _, endpoints, slices = converge(service(), [with_port("a", 20001)])
    plan = plan_service(
        service(type="ExternalName", externalName="example.com"), [with_port("a", 20001)], endpoints, slices
    )
    assert plan.endpoints_delete is not None and len(plan.slices.delete) == 1


def hand_written_endpoints(**labels: str) -> JSON:
    return stored(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "web", "namespace": "default", "labels": {"team": "x", **labels}},
            "subsets": [
                {
                    "addresses": [{"ip": "127.0.0.5"}],
                    "notReadyAddresses": [{"ip": "127.0.0.6"}],
                    "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
                },
                {"addresses": [{"ip": "127.0.0.7"}], "ports": [{"name": "http", "port": 8001}]},
            ],
        }
    )


def test_selectorless_service_mirrors_hand_written_endpoints() -> None:
    svc = service(selector={})
    endpoints = hand_written_endpoints()
    plan, after, slices = converge(svc, [with_port("a", 20001)], endpoints)
    assert plan.endpoints_create is None and plan.endpoints_update is None and plan.endpoints_delete is None
    assert after == endpoints
    assert {s["metadata"]["labels"][MANAGED_BY_LABEL] for s in slices} == {MIRROR_CONTROLLER_NAME}
    assert all(s["metadata"]["labels"]["team"] == "x" for s in slices)
    assert all(s["metadata"]["ownerReferences"][0]["kind"] == "Endpoints" for s in slices)
    backends = backends_by_port(slices)["http"]
    assert [(b.ip, b.port, b.ready) for b in backends] == [
        ("127.0.0.5", 8000, True),
        ("127.0.0.6", 8000, False),
        ("127.0.0.7", 8001, True),
    ]
    # Converged: nothing more to do.
    assert not plan_service(svc, [], after, slices).writes


def test_skip_mirror_label_and_missing_endpoints_mean_no_mirrored_slices() -> None:
    svc = service(selector={})
    _, _, slices = converge(svc, [], hand_written_endpoints())
    assert slices
    plan = plan_service(svc, [], hand_written_endpoints(**{SKIP_MIRROR_LABEL: "true"}), slices)
    assert len(plan.slices.delete) == len(slices)
    assert len(plan_service(svc, [], None, slices).slices.delete) == len(slices)


def test_service_losing_its_selector_drops_generated_endpoints() -> None:
    _, endpoints, slices = converge(service(), [with_port("a", 20001)])
    _, endpoints, slices = converge(service(selector={}), [with_port("a", 20001)], endpoints, slices)
    assert endpoints is None and slices == []


def test_service_gaining_a_selector_replaces_mirrored_slices() -> None:
    _, endpoints, slices = converge(service(selector={}), [], hand_written_endpoints())
    _, endpoints, slices = converge(service(), [with_port("a", 20001)], endpoints, slices)
    assert {s["metadata"]["labels"][MANAGED_BY_LABEL] for s in slices} == {CONTROLLER_NAME}
    assert addresses(endpoints) == [("a", 20001)]


# --- properties -----------------------------------------------------------------------------------------

PORT_NAMES = ["http", "admin", "grpc"]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[JSON, list[JSON]]:
    svc_ports = draw(st.lists(st.sampled_from(PORT_NAMES), min_size=1, max_size=3, unique=True))
    svc = service(
        ports=[
            {"name": n, "port": 80 + i, "targetPort": n, "protocol": "TCP"} for i, n in enumerate(svc_ports)
        ]
    )
    pods = []
    for i in range(draw(st.integers(0, 12))):
        declared = draw(st.lists(st.sampled_from(PORT_NAMES), max_size=3, unique=True))
        ports = [{"name": n, "containerPort": 8000 + j, "protocol": "TCP"} for j, n in enumerate(declared)]
        allocated = {f"c/{p['containerPort']}/TCP": draw(st.integers(20000, 20005)) for p in ports}
        pods.append(
            pod(
                f"p{i}",
                ready=draw(st.booleans()),
                terminating=draw(st.booleans()),
                labels=draw(st.sampled_from([{"app": "web"}, {"app": "web", "x": "y"}, {"app": "db"}])),
                phase=draw(st.sampled_from(["Running", "Running", "Pending", "Succeeded"])),
                ip=draw(st.sampled_from([NODE_IP, NODE_IP, None])),
                ports=ports,
                allocated=allocated,
            )
        )
    return svc, draw(st.permutations(pods))


def _declared_host_port(p: JSON, name: str) -> int | None:
    annotations = json.loads(p["metadata"].get("annotations", {}).get("corral.dev/ports", "{}"))
    for port in p["spec"]["containers"][0]["ports"]:
        if port["name"] == name:
            return int(annotations[f"c/{port['containerPort']}/TCP"])
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), max_per_slice=st.integers(1, 4))
def test_every_ready_pod_appears_once_per_resolvable_port(
    scenario: tuple[JSON, list[JSON]], max_per_slice: int
) -> None:
    svc, pods = scenario
    plan = plan_service(svc, pods, None, [], max_per_slice=max_per_slice)
    endpoints, slices = apply(plan, None, [])
    assert all(len(s["endpoints"]) <= max_per_slice for s in slices)
    ready_in_endpoints = addresses(endpoints)
    per_slice_port: dict[tuple[str, str], list[int]] = {}
    for s in slices:
        for port in s["ports"]:
            for e in s["endpoints"]:
                per_slice_port.setdefault((port["name"], e["targetRef"]["name"]), []).append(port["port"])
    for p in pods:
        name = p["metadata"]["name"]
        counts = (
            p["metadata"]["labels"].get("app") == "web"
            and p["status"]["phase"] not in ("Succeeded", "Failed")
            and "podIP" in p["status"]
        )
        terminating = "deletionTimestamp" in p["metadata"]
        ready = p["status"]["conditions"][0]["status"] == "True"
        for sp in svc["spec"]["ports"]:
            host_port = _declared_host_port(p, sp["name"])
            in_endpoints = [port for n, port in ready_in_endpoints if n == name and port == host_port]
            in_slices = per_slice_port.get((sp["name"], name), [])
            if counts and host_port is not None:
                # Exactly once per port in the slices, and in Endpoints.addresses iff ready and not terminating.
                assert in_slices == [host_port]
                if ready and not terminating:
                    assert len([n for n, port in ready_in_endpoints if n == name and port == host_port]) >= 1
            else:
                assert in_slices == []
            if terminating:
                assert in_endpoints == []
    # No terminating pod among the ready addresses at all.
    terminating_names = {p["metadata"]["name"] for p in pods if "deletionTimestamp" in p["metadata"]}
    assert not terminating_names & {n for n, _ in ready_in_endpoints}
    # Failures name exactly the counted pods that lack a declared port name.
    expected_failures = sorted(
        PortFailure(sp["name"], sp["name"], "TCP", p["metadata"]["name"])
        for p in pods
        if p["metadata"]["labels"].get("app") == "web"
        and p["status"]["phase"] not in ("Succeeded", "Failed")
        and "podIP" in p["status"]
        for sp in svc["spec"]["ports"]
        if _declared_host_port(p, sp["name"]) is None
    )
    assert plan.failures == expected_failures


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), max_per_slice=st.integers(1, 4), data=st.data())
def test_plan_is_deterministic_and_idempotent(
    scenario: tuple[JSON, list[JSON]], max_per_slice: int, data: st.DataObject
) -> None:
    svc, pods = scenario
    first = plan_service(svc, pods, None, [], max_per_slice=max_per_slice)
    shuffled = data.draw(st.permutations(pods))
    assert plan_service(svc, shuffled, None, [], max_per_slice=max_per_slice) == first
    endpoints, slices = apply(first, None, [])
    # Applied once, the same input plans no write at all, whatever order the caches list things in.
    again = plan_service(
        svc, shuffled, endpoints, data.draw(st.permutations(slices)), max_per_slice=max_per_slice
    )
    assert not again.writes
    assert json.dumps(desired_subsets(svc, pods), sort_keys=True) == json.dumps(
        desired_subsets(svc, shuffled), sort_keys=True
    )


def test_an_endpoint_listed_in_two_slices_is_kept_in_one() -> None:
    svc = service(ports=[{"name": "", "port": 80, "targetPort": 8000, "protocol": "TCP"}])
    pods = [pod("a", ports=[], allocated={}), pod("b", ports=[], allocated={})]
    _, _, slices = converge(svc, pods)
    (only,) = slices
    twin = copy.deepcopy(only)
    twin["metadata"]["name"] = "web-zzzzzz"  # sorts after any generated name: the original keeps both
    plan, _, slices = converge(svc, pods, None, [only, twin])
    names = [e["targetRef"]["name"] for s in slices for e in s["endpoints"]]
    assert sorted(names) == ["a", "b"]
    assert [s["metadata"]["name"] for s in plan.slices.delete] == ["web-zzzzzz"]
