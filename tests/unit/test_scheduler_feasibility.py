"""Filters: one table per filter, toleration matching, and the FailedScheduling message."""

from __future__ import annotations

import pytest

from corral.scheduler.feasibility import (
    NO_NODES,
    REASON_CPU,
    REASON_MEMORY,
    REASON_PORTS,
    REASON_SELECTOR,
    REASON_TOO_MANY_PODS,
    REASON_UNSCHEDULABLE,
    failure_message,
    feasible_nodes_to_find,
    find_feasible,
    host_ports,
    node_affinity,
    node_failures,
    node_ready,
    node_unschedulable,
    resources_fit,
    taint_toleration,
    tolerates,
)
from corral.scheduler.snapshot import (
    HostPort,
    NodeInfo,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodInfo,
    Resources,
    Snapshot,
    Taint,
    Toleration,
)

BIG = Resources(4000, 8 * 1024**3, 110)


def mk_pod(**kw: object) -> PodInfo:
    return PodInfo("default", "p", "uid-p", **kw)  # type: ignore[arg-type]


def mk_node(name: str = "n", **kw: object) -> NodeInfo:
    kw.setdefault("allocatable", BIG)
    return NodeInfo(name, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- tolerations

NS = "NoSchedule"
NE = "NoExecute"


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        (Toleration("k", "Equal", "v", NS), Taint("k", "v", NS), True),
        (Toleration("k", "", "v", NS), Taint("k", "v", NS), True),  # empty operator means Equal
        (Toleration("k", "Equal", "w", NS), Taint("k", "v", NS), False),
        (Toleration("k", "Equal", "", NS), Taint("k", "", NS), True),
        (Toleration("k", "Exists", "", NS), Taint("k", "anything", NS), True),
        (Toleration("k", "Exists", "", ""), Taint("k", "v", NE), True),  # empty effect matches all effects
        (Toleration("k", "Exists", "", NE), Taint("k", "v", NS), False),
        (Toleration("", "Exists", "", ""), Taint("any", "v", NE), True),  # tolerates everything
        (Toleration("", "Exists", "", NS), Taint("any", "v", NE), False),
        (Toleration("other", "Exists", "", NS), Taint("k", "v", NS), False),
        (Toleration("k", "Bogus", "v", NS), Taint("k", "v", NS), False),
    ],
)
def test_tolerates(toleration: Toleration, taint: Taint, expected: bool) -> None:
    assert tolerates(toleration, taint) is expected


# ---------------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("ready", "tolerations", "expected"),
    [
        ("True", (), ()),
        ("False", (), ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)),
        ("Unknown", (), ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)),
        ("False", (Toleration("node.kubernetes.io/not-ready", "Exists", "", NS),), ()),
        # the default NoExecute tolerations every pod gets do not let it onto a not-ready node
        (
            "False",
            (Toleration("node.kubernetes.io/not-ready", "Exists", "", NE),),
            ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",),
        ),
        ("Unknown", (Toleration("", "Exists"),), ()),
    ],
)
def test_node_ready(ready: str, tolerations: tuple[Toleration, ...], expected: tuple[str, ...]) -> None:
    assert node_ready(mk_pod(tolerations=tolerations), mk_node(ready=ready)) == expected


@pytest.mark.parametrize(
    ("unschedulable", "tolerations", "expected"),
    [
        (False, (), ()),
        (True, (), (REASON_UNSCHEDULABLE,)),
        (True, (Toleration("node.kubernetes.io/unschedulable", "Exists", "", NS),), ()),
        (True, (Toleration("node.kubernetes.io/unschedulable", "Exists", "", NE),), (REASON_UNSCHEDULABLE,)),
    ],
)
def test_node_unschedulable(
    unschedulable: bool, tolerations: tuple[Toleration, ...], expected: tuple[str, ...]
) -> None:
    assert (
        node_unschedulable(mk_pod(tolerations=tolerations), mk_node(unschedulable=unschedulable)) == expected
    )


@pytest.mark.parametrize(
    ("taints", "tolerations", "expected"),
    [
        ((), (), ()),
        ((Taint("gpu", "yes", NS),), (), ("node(s) had untolerated taint {gpu: yes}",)),
        ((Taint("gpu", "yes", NE),), (), ("node(s) had untolerated taint {gpu: yes}",)),
        ((Taint("gpu", "yes", "PreferNoSchedule"),), (), ()),  # a preference, not a filter
        ((Taint("gpu", "yes", NS),), (Toleration("gpu", "Equal", "yes", NS),), ()),
        (
            (Taint("a", "", NS), Taint("b", "", NE)),
            (Toleration("a", "Exists"),),
            ("node(s) had untolerated taint {b: }",),
        ),
    ],
)
def test_taint_toleration(
    taints: tuple[Taint, ...], tolerations: tuple[Toleration, ...], expected: tuple[str, ...]
) -> None:
    assert taint_toleration(mk_pod(tolerations=tolerations), mk_node(taints=taints)) == expected


def _req(key: str, op: str, *values: str) -> NodeSelectorRequirement:
    return NodeSelectorRequirement(key, op, values)


LABELS = {"zone": "a", "disk": "ssd", "cores": "8"}


@pytest.mark.parametrize(
    ("selector", "terms", "passes"),
    [
        ({}, None, True),
        ({"zone": "a"}, None, True),
        ({"zone": "a", "disk": "ssd"}, None, True),
        ({"zone": "b"}, None, False),
        ({"missing": ""}, None, False),
        ({}, (NodeSelectorTerm((_req("zone", "In", "a", "b"),)),), True),
        ({}, (NodeSelectorTerm((_req("zone", "In", "b"),)),), False),
        ({}, (NodeSelectorTerm((_req("zone", "NotIn", "b"),)),), True),
        ({}, (NodeSelectorTerm((_req("missing", "NotIn", "b"),)),), True),
        ({}, (NodeSelectorTerm((_req("disk", "Exists"),)),), True),
        ({}, (NodeSelectorTerm((_req("disk", "DoesNotExist"),)),), False),
        ({}, (NodeSelectorTerm((_req("cores", "Gt", "4"),)),), True),
        ({}, (NodeSelectorTerm((_req("cores", "Lt", "4"),)),), False),
        ({}, (NodeSelectorTerm((_req("zone", "Gt", "4"),)),), False),  # not a number
        ({}, (NodeSelectorTerm((_req("zone", "Unknown", "a"),)),), False),
        # expressions in a term are ANDed, terms are ORed
        ({}, (NodeSelectorTerm((_req("zone", "In", "a"), _req("disk", "In", "hdd"))),), False),
        (
            {},
            (NodeSelectorTerm((_req("zone", "In", "b"),)), NodeSelectorTerm((_req("disk", "In", "ssd"),))),
            True,
        ),
        ({}, (NodeSelectorTerm(),), False),  # an empty term selects nothing
        ({}, (), False),
        ({}, (NodeSelectorTerm(match_fields=(_req("metadata.name", "In", "n"),)),), True),
        ({}, (NodeSelectorTerm(match_fields=(_req("metadata.name", "NotIn", "n"),)),), False),
        ({"zone": "b"}, (NodeSelectorTerm((_req("zone", "In", "a"),)),), False),  # both must hold
    ],
)
def test_node_affinity(
    selector: dict[str, str], terms: tuple[NodeSelectorTerm, ...] | None, passes: bool
) -> None:
    got = node_affinity(mk_pod(node_selector=selector, required_affinity=terms), mk_node(labels=LABELS))
    assert got == (() if passes else (REASON_SELECTOR,))


TCP80 = HostPort("0.0.0.0", "TCP", 80)


@pytest.mark.parametrize(
    ("wanted", "used", "passes"),
    [
        ((), (TCP80,), True),
        ((TCP80,), (), True),
        ((TCP80,), (TCP80,), False),
        ((TCP80,), (HostPort("0.0.0.0", "UDP", 80),), True),
        ((TCP80,), (HostPort("0.0.0.0", "TCP", 81),), True),
        ((HostPort("127.0.0.1", "TCP", 80),), (HostPort("127.0.0.2", "TCP", 80),), True),
        ((HostPort("127.0.0.1", "TCP", 80),), (HostPort("127.0.0.1", "TCP", 80),), False),
        ((HostPort("127.0.0.1", "TCP", 80),), (TCP80,), False),  # the wildcard takes every address
        ((TCP80,), (HostPort("127.0.0.1", "TCP", 80),), False),
    ],
)
def test_host_ports(wanted: tuple[HostPort, ...], used: tuple[HostPort, ...], passes: bool) -> None:
    assert host_ports(mk_pod(host_ports=wanted), mk_node(used_ports=used)) == (
        () if passes else (REASON_PORTS,)
    )


@pytest.mark.parametrize(
    ("want", "allocatable", "requested", "pods_on_node", "expected"),
    [
        (Resources(1000, 100, 1), Resources(1000, 100, 10), Resources(), 0, ()),
        (Resources(1001, 100, 1), Resources(1000, 100, 10), Resources(), 0, (REASON_CPU,)),
        (Resources(500, 100, 1), Resources(1000, 100, 10), Resources(600, 0, 1), 1, (REASON_CPU,)),
        (Resources(400, 100, 1), Resources(1000, 100, 10), Resources(600, 0, 1), 1, ()),
        (Resources(100, 101, 1), Resources(1000, 100, 10), Resources(), 0, (REASON_MEMORY,)),
        (Resources(2000, 200, 1), Resources(1000, 100, 10), Resources(), 0, (REASON_CPU, REASON_MEMORY)),
        (Resources(0, 0, 1), Resources(1000, 100, 1), Resources(0, 0, 1), 1, (REASON_TOO_MANY_PODS,)),
        (
            Resources(2000, 0, 1),
            Resources(1000, 100, 1),
            Resources(0, 0, 1),
            1,
            (REASON_TOO_MANY_PODS, REASON_CPU),
        ),
        # a pod requesting nothing fits even on an overcommitted node, as upstream
        (Resources(0, 0, 1), Resources(1000, 100, 10), Resources(5000, 500, 1), 1, ()),
        (Resources(0, 0, 1), Resources(0, 0, 0), Resources(), 0, (REASON_TOO_MANY_PODS,)),
    ],
)
def test_resources_fit(
    want: Resources,
    allocatable: Resources,
    requested: Resources,
    pods_on_node: int,
    expected: tuple[str, ...],
) -> None:
    others = tuple(PodInfo("default", f"o{i}") for i in range(pods_on_node))
    node = mk_node(allocatable=allocatable, requested=requested, pods=others)
    assert resources_fit(mk_pod(requests=want), node) == expected


def test_first_failing_filter_decides_the_reason() -> None:
    node = mk_node(ready="False", unschedulable=True, allocatable=Resources())
    assert node_failures(mk_pod(), node) == (
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }",
    )
    assert node_failures(mk_pod(), mk_node()) == ()


def test_find_feasible() -> None:
    snap = Snapshot((mk_node("c"), mk_node("a", unschedulable=True), mk_node("b")))
    feasible, failures = find_feasible(mk_pod(), snap)
    assert [n.name for n in feasible] == ["b", "c"]
    assert failures == {"a": (REASON_UNSCHEDULABLE,)}


def test_failure_message_counts_and_sorts_like_upstream() -> None:
    failures = {
        "n1": ("Insufficient cpu",),
        "n2": ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",),
        "n3": ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",),
    }
    assert failure_message(3, failures) == (
        "0/3 nodes are available: 1 Insufficient cpu, "
        "2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }."
    )
    assert (
        failure_message(2, {"a": ("Insufficient cpu", "Insufficient memory"), "b": ("Insufficient cpu",)})
        == "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."
    )
    assert failure_message(0, {}) == NO_NODES


@pytest.mark.parametrize(
    ("nodes", "wanted"),
    [(1, 1), (99, 99), (100, 100), (200, 100), (1000, 420), (5000, 500), (6000, 300)],
)
def test_feasible_nodes_to_find_is_kube_schedulers_adaptive_default(nodes: int, wanted: int) -> None:
    # 50 % - nodes/125, at least 5 %, at least 100 nodes (numFeasibleNodesToFind).
    assert feasible_nodes_to_find(nodes) == wanted


def test_find_feasible_stops_at_the_limit_and_starts_where_told() -> None:
    snap = Snapshot(tuple(mk_node(f"n{i}") for i in range(6)))
    feasible, failures = find_feasible(mk_pod(), snap, start=4, limit=3)
    assert [n.name for n in feasible] == ["n4", "n5", "n0"] and failures == {}
    everything, _ = find_feasible(mk_pod(), snap, start=4)
    assert len(everything) == 6
