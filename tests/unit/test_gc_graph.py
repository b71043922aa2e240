"""The garbage collector's ownership graph and its pure cascade decisions."""

from __future__ import annotations

import pytest

from corral.controllers.gcgraph import (
    FOREGROUND,
    ORPHAN,
    Graph,
    Node,
    OwnerRef,
    OwnerState,
    Verdict,
    affected_by_change,
    classify,
    decide,
)

RS = "apps/replicasets"
POD = "/pods"


def ref(uid: str, *, block: bool = False) -> OwnerRef:
    return OwnerRef("apps/v1", "ReplicaSet", f"rs-{uid}", uid, block=block, controller=True)


def pod(uid: str, *owners: OwnerRef, deleting: bool = False, finalizers: tuple[str, ...] = ()) -> Node:
    return Node(POD, "ns", f"pod-{uid}", uid, owners, deleting, finalizers)


def owner(uid: str, *, deleting: bool = False, finalizers: tuple[str, ...] = ()) -> Node:
    return Node(RS, "ns", f"rs-{uid}", uid, (), deleting, finalizers)


def test_node_from_object_reads_owners_and_deletion() -> None:
    obj = {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u1",
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "finalizers": [FOREGROUND],
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "r",
                    "uid": "o1",
                    "blockOwnerDeletion": True,
                }
            ],
        }
    }
    node = Node.from_object(POD, obj)
    assert node.owners == (OwnerRef("apps/v1", "ReplicaSet", "r", "o1", True, False),)
    assert node.deleting_dependents and not node.orphaning


def test_graph_tracks_dependents_and_blocking() -> None:
    graph = Graph()
    graph.upsert("ns/rs-o", owner("o"))
    graph.upsert("ns/pod-a", pod("a", ref("o", block=True)))
    graph.upsert("ns/pod-b", pod("b", ref("o")))
    assert [d.uid for d in graph.dependents("o")] == ["a", "b"]
    assert [d.uid for d in graph.blocking_dependents("o")] == ["a"]
    # An update that drops the reference unlinks the dependent.
    graph.upsert("ns/pod-a", pod("a"))
    assert [d.uid for d in graph.dependents("o")] == ["b"]
    gone = graph.remove(POD, "ns/pod-b")
    assert gone is not None and gone.uid == "b"
    assert graph.dependents("o") == []
    assert graph.remove(POD, "ns/pod-b") is None


def test_graph_replaces_a_recreated_object_of_the_same_name() -> None:
    graph = Graph()
    graph.upsert("ns/pod-x", pod("old", ref("o")))
    previous, replaced = graph.upsert("ns/pod-x", Node(POD, "ns", "pod-x", "new", (ref("p"),)))
    assert previous is None
    assert replaced is not None and replaced.uid == "old"
    assert "old" not in graph.nodes
    assert graph.dependents("o") == []
    assert [d.uid for d in graph.dependents("p")] == ["new"]
    assert graph.uid_of(POD, "ns/pod-x") == "new"


def test_affected_by_change() -> None:
    a = pod("a", ref("o"))
    assert affected_by_change(a, a) == set()
    assert affected_by_change(None, a) == {"a", "o"}
    assert affected_by_change(a, None) == {"o"}
    assert affected_by_change(a, pod("a", ref("p"))) == {"a", "o", "p"}
    assert affected_by_change(None, owner("o", deleting=True, finalizers=(ORPHAN,))) == {"o"}
    assert affected_by_change(None, owner("o")) == set()


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (None, OwnerState.DANGLING),
        (owner("other"), OwnerState.DANGLING),  # same name, another uid: the owner we knew is gone
        (owner("o"), OwnerState.SOLID),
        (owner("o", deleting=True), OwnerState.SOLID),  # background deletion in progress
        (owner("o", deleting=True, finalizers=(FOREGROUND,)), OwnerState.WAITING),
        (owner("o", deleting=True, finalizers=(ORPHAN,)), OwnerState.SOLID),
    ],
)
def test_classify(node: Node | None, expected: OwnerState) -> None:
    assert classify(node, ref("o")) is expected


S, W, D = OwnerState.SOLID, OwnerState.WAITING, OwnerState.DANGLING


@pytest.mark.parametrize(
    ("states", "has_deps", "finalizers", "verdict", "policy", "removed"),
    [
        ({"o": S}, False, (), Verdict.KEEP, "Background", set()),
        ({"o": D}, False, (), Verdict.DELETE, "Background", set()),
        ({"o": D}, False, (ORPHAN,), Verdict.DELETE, "Orphan", set()),
        ({"o": D}, False, (FOREGROUND,), Verdict.DELETE, "Foreground", set()),
        ({"o": W}, False, (), Verdict.DELETE, "Background", set()),
        ({"o": W}, True, (), Verdict.DELETE, "Foreground", set()),
        ({"o": S, "p": D}, False, (), Verdict.REMOVE_REFS, "Background", {"p"}),
        ({"o": S, "p": W}, True, (), Verdict.REMOVE_REFS, "Background", {"p"}),
        ({"o": D, "p": W}, True, (), Verdict.DELETE, "Foreground", set()),
    ],
)
def test_decide(
    states: dict[str, OwnerState],
    has_deps: bool,
    finalizers: tuple[str, ...],
    verdict: Verdict,
    policy: str,
    removed: set[str],
) -> None:
    node = Node(POD, "ns", "x", "x", tuple(ref(u) for u in states), False, finalizers)
    decision = decide(node, states, has_deps)
    assert decision.verdict is verdict
    if verdict is Verdict.DELETE:
        assert decision.policy == policy
    assert set(decision.remove_uids) == removed


def test_decide_leaves_objects_alone_that_are_already_deleting_or_unowned() -> None:
    assert decide(pod("a", ref("o"), deleting=True), {"o": D}, False).verdict is Verdict.KEEP
    assert decide(pod("a"), {}, False).verdict is Verdict.KEEP


def test_collected_resources_skip_events_and_version_aliases() -> None:
    from corral.controllers.gc import collectable_resources, resource_id

    ids = [resource_id(r) for r in collectable_resources()]
    assert "/events" not in ids
    assert {"/pods", "/configmaps", "apps/replicasets", "batch/jobs", "coordination.k8s.io/leases"} <= set(ids)
    assert len(ids) == len(set(ids))


def test_owner_kinds_resolve_by_api_version_then_group() -> None:
    from corral.controllers.gc import resolve_owner_type

    found = resolve_owner_type(OwnerRef("apps/v1", "ReplicaSet", "r", "u"))
    assert found is not None and found.plural == "replicasets"
    hpa = resolve_owner_type(OwnerRef("autoscaling/v1", "HorizontalPodAutoscaler", "h", "u"))
    assert hpa is not None and hpa.plural == "horizontalpodautoscalers"
    assert resolve_owner_type(OwnerRef("example.com/v1", "Widget", "w", "u")) is None
