"""Scoring: least allocated, spreading by controller or labels, weights and the name tie-break."""

from __future__ import annotations

import pytest

from corral.scheduler.scoring import group_count, least_allocated, same_group, score_nodes
from corral.scheduler.snapshot import NodeInfo, PodInfo, Resources

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
    assert scores[0].spread == 100.0 and scores[1].spread == 0.0


def test_least_allocated_decides_without_peers() -> None:
    busy = mk_node("a", PodInfo("default", "s", "uid-s", non_zero_requests=Resources(500, 500, 1)))
    scores = score_nodes(replica("r", owner=""), [busy, mk_node("b")])
    assert [s.name for s in scores] == ["b", "a"]


def test_ties_break_by_name() -> None:
    nodes = [mk_node(name) for name in ("c", "a", "b")]
    assert [s.name for s in score_nodes(replica("r"), nodes)] == ["a", "b", "c"]


def test_score_nodes_of_nothing() -> None:
    assert score_nodes(replica("r"), []) == []
