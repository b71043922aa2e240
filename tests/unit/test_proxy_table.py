"""The service proxy's listener table (pure): frontends per Service type, routes, conflicts, and the diff."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.proxy.backends import Backend
from corral.proxy.table import (
    DEFAULT_AFFINITY_TIMEOUT,
    Algorithm,
    Frontend,
    Route,
    RouteKey,
    TableBuilder,
    apply_diff,
    build_table,
    diff,
)

JSON = dict[str, Any]
NODE = ["127.0.0.1"]


def svc(
    name: str,
    ports: list[JSON],
    *,
    ip: str | None = "127.96.0.10",
    kind: str = "ClusterIP",
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    affinity: JSON | None = None,
) -> JSON:
    spec: JSON = {"type": kind, "ports": ports}
    if ip is not None:
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
    if affinity is not None:
        spec.update(affinity)
    return {
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": spec,
    }


def eps(
    service: str,
    endpoints: list[tuple[str, bool, bool, bool]],
    ports: list[tuple[str, int]],
    *,
    namespace: str = "default",
) -> JSON:
    """A slice; endpoints are (ip, ready, serving, terminating)."""
    return {
        "metadata": {
            "name": f"{service}-x",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
            }
            for ip, ready, serving, terminating in endpoints
        ],
        "ports": [{"name": name, "port": port, "protocol": "TCP"} for name, port in ports],
    }


def test_cluster_ip_service_listens_on_cluster_ip_per_port() -> None:
    service = svc(
        "web",
        [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "sctp", "port": 99, "protocol": "SCTP"},
        ],
    )
    slices = [eps("web", [("127.0.0.1", True, True, False)], [("http", 31000), ("dns", 31001)])]
    table = build_table([service], slices, NODE)
    assert set(table.routes) == {Frontend("TCP", "127.96.0.10", 80), Frontend("UDP", "127.96.0.10", 53)}
    http = table.routes[Frontend("TCP", "127.96.0.10", 80)]
    assert http.key == RouteKey("default/web", "http", "TCP")
    assert [b.address for b in http.backends] == [("127.0.0.1", 31000)]
    assert http.algorithm is Algorithm.ROUND_ROBIN and http.affinity_timeout is None
    assert [b.address for b in table.routes[Frontend("UDP", "127.96.0.10", 53)].backends] == [
        ("127.0.0.1", 31001)
    ]
    assert table.conflicts == ()


def test_node_port_and_load_balancer_frontends() -> None:
    ports = [{"name": "", "port": 8080, "nodePort": 30080}]
    node_port = svc("np", ports, kind="NodePort", ip="127.96.0.11")
    balancer = svc("lb", [{"port": 9090, "nodePort": 30090}], kind="LoadBalancer", ip="127.96.0.12")
    table = build_table([node_port, balancer], [], ["127.0.0.1", "127.0.0.2"])
    assert set(table.routes) == {
        Frontend("TCP", "127.96.0.11", 8080),
        Frontend("TCP", "127.0.0.1", 30080),
        Frontend("TCP", "127.0.0.2", 30080),
        Frontend("TCP", "127.96.0.12", 9090),
        Frontend("TCP", "127.0.0.1", 30090),
        Frontend("TCP", "127.0.0.2", 30090),
        Frontend("TCP", "127.0.0.1", 9090),
        Frontend("TCP", "127.0.0.2", 9090),
    }
    # Every frontend of one Service port shares one route object (one balancer state).
    lb_routes = {id(r) for f, r in table.routes.items() if r.service == "default/lb"}
    assert len(lb_routes) == 1


def test_headless_external_name_and_unallocated_services_are_skipped() -> None:
    ports = [{"port": 80}]
    table = build_table(
        [
            svc("headless", ports, ip="None"),
            svc("external", ports, kind="ExternalName", ip=None),
            svc("pending", ports, ip=None),
            svc("headless-np", [{"port": 80, "nodePort": 30001}], kind="NodePort", ip="None"),
        ],
        [],
        NODE,
    )
    assert table.routes == {}


def test_routes_carry_routable_backends_only() -> None:
    service = svc("web", [{"port": 80}])
    slices = [
        eps(
            "web",
            [
                ("127.0.0.1", True, True, False),
                ("127.0.0.2", False, False, False),
                ("127.0.0.3", False, True, True),
            ],
            [("", 31000)],
        )
    ]
    route = build_table([service], slices, NODE).routes[Frontend("TCP", "127.96.0.10", 80)]
    assert [b.ip for b in route.backends] == ["127.0.0.1"]
    # With no ready endpoint, serving terminating ones take new connections.
    slices[0]["endpoints"] = slices[0]["endpoints"][1:]
    route = build_table([service], slices, NODE).routes[Frontend("TCP", "127.96.0.10", 80)]
    assert [b.ip for b in route.backends] == ["127.0.0.3"]


def test_service_without_endpoints_still_listens() -> None:
    table = build_table([svc("web", [{"port": 80}])], [], NODE)
    assert table.routes[Frontend("TCP", "127.96.0.10", 80)].backends == ()


def test_algorithm_annotation_and_affinity() -> None:
    least = svc("a", [{"port": 80}], annotations={"corral.dev/load-balancer": "least-connections"})
    typo = svc("b", [{"port": 80}], ip="127.96.0.20", annotations={"corral.dev/load-balancer": "fastest"})
    sticky = svc("c", [{"port": 80}], ip="127.96.0.21", affinity={"sessionAffinity": "ClientIP"})
    custom = svc(
        "d",
        [{"port": 80}],
        ip="127.96.0.22",
        affinity={
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        },
    )
    routes = {r.service: r for r in build_table([least, typo, sticky, custom], [], NODE).routes.values()}
    assert routes["default/a"].algorithm is Algorithm.LEAST_CONNECTIONS
    assert routes["default/b"].algorithm is Algorithm.ROUND_ROBIN
    assert routes["default/c"].affinity_timeout == DEFAULT_AFFINITY_TIMEOUT == 10800
    assert routes["default/d"].affinity_timeout == 60
    assert routes["default/a"].affinity_timeout is None


def test_two_services_on_one_frontend_the_first_by_name_wins() -> None:
    first = svc("alpha", [{"port": 80, "nodePort": 30001}], kind="LoadBalancer", ip="127.96.0.30")
    second = svc("beta", [{"port": 80, "nodePort": 30002}], kind="LoadBalancer", ip="127.96.0.31")
    for order in ([first, second], [second, first]):
        table = build_table(order, [], NODE)
        assert table.routes[Frontend("TCP", "127.0.0.1", 80)].service == "default/alpha"
        [conflict] = table.conflicts
        assert conflict.frontend == Frontend("TCP", "127.0.0.1", 80)
        assert conflict.service == "default/beta"
        assert "default/alpha" in conflict.message
        assert Frontend("TCP", "127.96.0.31", 80) in table.routes  # the rest of beta is served


def test_diff_opens_closes_and_swaps() -> None:
    web = svc("web", [{"port": 80}])
    slice_a = eps("web", [("127.0.0.1", True, True, False)], [("", 31000)])
    slice_b = eps("web", [("127.0.0.1", True, True, False)], [("", 31001)])
    other = svc("other", [{"port": 81}], ip="127.96.0.40")
    old = build_table([web, other], [slice_a], NODE).routes
    new = build_table([web], [slice_b], NODE).routes
    change = diff(old, new)
    assert change.added == {}
    assert change.removed == {Frontend("TCP", "127.96.0.40", 81)}
    assert list(change.changed) == [Frontend("TCP", "127.96.0.10", 80)]
    assert not diff(new, build_table([web], [slice_b], NODE).routes)


def test_builder_reuses_unchanged_services_and_sees_replaced_ones() -> None:
    web = svc("web", [{"port": 80}])
    slices = [eps("web", [("127.0.0.1", True, True, False)], [("", 31000)])]
    builder = TableBuilder(NODE)
    first = builder.build([web], slices)
    again = builder.build([web], slices)
    frontend = Frontend("TCP", "127.96.0.10", 80)
    assert again.routes[frontend] is first.routes[frontend]
    replaced = copy.deepcopy(slices)
    replaced[0]["ports"][0]["port"] = 31005
    third = builder.build([web], replaced)
    assert [b.port for b in third.routes[frontend].backends] == [31005]
    # A fresh copy with the same content gives an equal route (recomputed).
    assert builder.build([copy.deepcopy(web)], replaced).routes == third.routes


# ------------------------------------------------------------------------------- property: diff applies

frontends = st.builds(
    Frontend,
    st.sampled_from(["TCP", "UDP"]),
    st.sampled_from(["127.96.0.1", "127.96.0.2", "127.0.0.1"]),
    st.integers(80, 84),
)
routes = st.builds(
    Route,
    st.builds(
        RouteKey,
        st.sampled_from(["default/a", "default/b", "x/c"]),
        st.sampled_from(["", "http"]),
        st.just("TCP"),
    ),
    st.lists(
        st.builds(Backend, st.just("127.0.0.1"), st.integers(30000, 30004)), max_size=3, unique=True
    ).map(lambda backends: tuple(sorted(backends))),
    st.sampled_from(list(Algorithm)),
    st.sampled_from([None, 60.0, 10800.0]),
)
tables = st.dictionaries(frontends, routes, max_size=12)


@settings(max_examples=200)
@given(tables, tables)
def test_applying_the_diff_gives_the_new_table(
    old: dict[Frontend, Route], new: dict[Frontend, Route]
) -> None:
    change = diff(old, new)
    assert apply_diff(old, change) == new
    assert set(change.added).isdisjoint(old)
    assert change.removed <= set(old) and change.removed.isdisjoint(new)
    assert set(change.changed) <= set(old) & set(new)
    assert all(old[f] != r for f, r in change.changed.items())
    assert bool(change) == (old != new)


@settings(max_examples=100)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(80, 82), st.sampled_from(["ClusterIP", "NodePort"])))
)
def test_diff_of_built_tables_applies(spec: list[tuple[int, int, str]]) -> None:
    services = [
        svc(f"s{i}", [{"port": port, "nodePort": 30000 + i}], ip=f"127.96.1.{i + 1}", kind=kind)
        for i, port, kind in spec
    ]
    half = services[: len(services) // 2]
    old = build_table(services, [], NODE).routes
    new = build_table(half, [], NODE).routes
    assert apply_diff(old, diff(old, new)) == new
    assert apply_diff(new, diff(new, old)) == old
