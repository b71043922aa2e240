"""Scoring: least allocated, balanced allocation, soft taints, preferred node affinity, spreading by
controller or labels, the default profile's weights and the name tie-break."""

from __future__ import annotations

import math

import pytest

from corral.scheduler.scoring import (
    balanced_allocation,
    group_count,
    least_allocated,
    preferred_node_affinity,
    same_group,
    score_nodes,
    untolerated_preferred_taints,
)
from corral.scheduler.snapshot import (
    NodeInfo,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodInfo,
    PreferredSchedulingTerm,
    Resources,
    Taint,
    Toleration,
)

ALLOC = Resources(1000, 1000, 110)


def replica(
    name: str, owner: str = "rs-1", labels: dict[str, str] | None = None, ns: str = "default"
) -> PodInfo:
    return PodInfo(
        ns,
        name,
        f"uid-{name}",
        labels=labels or {},
        owner_uid=owner,
        non_zero_requests=Resources(100, 100, 1),
    )


def mk_node(name: str, *pods: PodInfo, allocatable: Resources = ALLOC) -> NodeInfo:
    return NodeInfo(name, allocatable=allocatable).with_pods(pods)


@pytest.mark.parametrize(
    ("allocatable", "used", "want", "expected"),
    [
        (Resources(1000, 1000, 1), Resources(), Resources(100, 100, 1), 90.0),
        (Resources(1000, 1000, 1), Resources(500, 0, 1), Resources(100, 100, 1), (40 + 90) / 2),
        (
            Resources(1000, 1000, 1),
            Resources(1000, 1000, 1),
            Resources(100, 100, 1),
            0.0,
        ),  # over: 0, not negative
        (Resources(0, 0, 0), Resources(), Resources(100, 100, 1), 0.0),
    ],
)
def test_least_allocated(allocatable: Resources, used: Resources, want: Resources, expected: float) -> None:
    node = NodeInfo("n", allocatable=allocatable, non_zero_requested=used)
    pod = PodInfo("default", "p", non_zero_requests=want)
    assert least_allocated(pod, node) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (replica("a"), replica("b"), True),
        (replica("a"), replica("b", owner="rs-2"), False),
        (replica("a"), replica("a"), False),  # a pod is not its own peer
        (replica("a", owner="", labels={"app": "x"}), replica("b", owner="", labels={"app": "x"}), True),
        (replica("a", owner="", labels={"app": "x"}), replica("b", owner="", labels={"app": "y"}), False),
        (
            replica("a", owner="", labels={"app": "x"}),
            replica("b", owner="", labels={"app": "x"}, ns="o"),
            False,
        ),
        (
            replica("a", owner="", labels={"app": "x"}),
            replica("b", owner="", labels={"app": "x", "v": "2"}),
            False,
        ),
        (replica("a", owner=""), replica("b", owner=""), False),  # bare pods without labels are no group
    ],
)
def test_same_group(a: PodInfo, b: PodInfo, expected: bool) -> None:
    assert same_group(a, b) is expected


def test_group_count() -> None:
    node = mk_node("n", replica("x"), replica("y"), replica("z", owner="other"))
    assert group_count(replica("new"), node) == 2


def test_spreading_beats_a_slightly_emptier_node() -> None:
    # n1 holds one replica of ours, n2 holds a larger pod of someone else: the replica goes to n2.
    n1 = mk_node("n1", replica("r0"))
    stranger = PodInfo("default", "s", "uid-s", owner_uid="other", non_zero_requests=Resources(300, 300, 1))
    n2 = mk_node("n2", stranger)
    scores = score_nodes(replica("r1"), [n1, n2])
    assert [s.name for s in scores] == ["n2", "n1"]
    # Upstream's system-default hostname constraint (maxSkew 3): raw n1 = 1·log(2+2) + 2, n2 = 0 + 2;
    # normalised 100·(max + min - raw)/max.
    raw_n1 = math.log(4) + 2
    assert scores[0].spread == 100.0
    assert scores[1].spread == pytest.approx(100 * 2 / raw_n1)


def test_least_allocated_decides_without_peers() -> None:
    busy = mk_node("a", PodInfo("default", "s", "uid-s", non_zero_requests=Resources(500, 500, 1)))
    scores = score_nodes(replica("r", owner=""), [busy, mk_node("b")])
    assert [s.name for s in scores] == ["b", "a"]


def test_ties_break_by_name() -> None:
    nodes = [mk_node(name) for name in ("c", "a", "b")]
    assert [s.name for s in score_nodes(replica("r"), nodes)] == ["a", "b", "c"]


def test_score_nodes_of_nothing() -> None:
    assert score_nodes(replica("r"), []) == []


# ---------------------------------------------------------------------------------------------- default profile


@pytest.mark.parametrize(
    ("allocatable", "used", "want", "expected"),
    [
        (Resources(1000, 1000, 10), Resources(), Resources(0, 0, 1), 100.0),
        (Resources(1000, 1000, 10), Resources(500, 0, 1), Resources(0, 0, 1), 75.0),  # |0.5 - 0| / 2
        (Resources(1000, 1000, 10), Resources(200, 0, 1), Resources(0, 600, 1), 80.0),  # |0.2 - 0.6| / 2
        (Resources(1000, 1000, 10), Resources(3000, 0, 1), Resources(), 50.0),  # fractions cap at 1
        (Resources(0, 1000, 10), Resources(0, 500, 1), Resources(), 100.0),  # one resource: no spread
    ],
)
def test_balanced_allocation(
    allocatable: Resources, used: Resources, want: Resources, expected: float
) -> None:
    node = NodeInfo("n", allocatable=allocatable, requested=used)
    assert balanced_allocation(PodInfo("default", "p", requests=want), node) == pytest.approx(expected)


def test_prefer_no_schedule_taints_are_avoided_and_tolerations_help() -> None:
    soft = Taint("spot", "", "PreferNoSchedule")
    nodes = [
        NodeInfo("a", taints=(soft, Taint("old", "", "PreferNoSchedule")), allocatable=ALLOC),
        NodeInfo("b", taints=(soft,), allocatable=ALLOC),
        NodeInfo("c", allocatable=ALLOC),
    ]
    pod = PodInfo("default", "p")
    assert [untolerated_preferred_taints(pod, n) for n in nodes] == [2, 1, 0]
    scores = {s.name: s.taint for s in score_nodes(pod, nodes)}
    assert scores == {"a": 0.0, "b": 50.0, "c": 100.0}
    tolerant = PodInfo("default", "p", tolerations=(Toleration("spot", "Exists", "", "PreferNoSchedule"),))
    assert [untolerated_preferred_taints(tolerant, n) for n in nodes] == [1, 0, 0]
    # A NoSchedule-only toleration does not count for soft taints.
    strict = PodInfo("default", "p", tolerations=(Toleration("spot", "Exists", "", "NoSchedule"),))
    assert untolerated_preferred_taints(strict, nodes[1]) == 1


def _preferring(*terms: tuple[int, str, str]) -> PodInfo:
    return PodInfo(
        "default",
        "p",
        preferred_node_affinity=tuple(
            PreferredSchedulingTerm(w, NodeSelectorTerm((NodeSelectorRequirement(k, "In", (v,)),)))
            for w, k, v in terms
        ),
    )


def test_preferred_node_affinity_sums_weights_and_scales_to_the_best() -> None:
    pod = _preferring((20, "disk", "ssd"), (60, "zone", "a"))
    nodes = [
        NodeInfo("both", labels={"disk": "ssd", "zone": "a"}, allocatable=ALLOC),
        NodeInfo("ssd", labels={"disk": "ssd"}, allocatable=ALLOC),
        NodeInfo("none", allocatable=ALLOC),
    ]
    assert [preferred_node_affinity(pod, n) for n in nodes] == [80, 20, 0]
    scores = score_nodes(pod, nodes)
    assert [s.name for s in scores] == ["both", "ssd", "none"]
    assert {s.name: s.node_affinity for s in scores} == pytest.approx(
        {"both": 100.0, "ssd": 25.0, "none": 0.0}
    )


def test_weights_of_the_default_profile() -> None:
    # Node affinity (weight 2 · 100) outweighs the idle node's 50-point least-allocated lead (weight 1).
    pod = _preferring((1, "fast", "yes"))
    fast_but_busy = mk_node("fast", PodInfo("default", "s", non_zero_requests=Resources(500, 500, 1)))
    fast_but_busy = NodeInfo(
        "fast", labels={"fast": "yes"}, allocatable=ALLOC, non_zero_requested=fast_but_busy.non_zero_requested
    )
    idle = mk_node("idle")
    scores = {s.name: s for s in score_nodes(pod, [fast_but_busy, idle])}
    for s in scores.values():
        assert s.total == pytest.approx(
            s.least_allocated
            + s.balanced
            + 3 * s.taint
            + 2 * s.node_affinity
            + 2 * s.spread
            + 2 * s.inter_pod
        )
    assert scores["fast"].total > scores["idle"].total
