"""Pod topology spread: filter and score tables with Kubernetes' behaviour as the oracle (cases re-expressed
from upstream's ``podtopologyspread`` plugin tests), the FailedScheduling text, system-default spreading,
the snapshot's count cache, and Hypothesis properties for maxSkew."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.scheduler.feasibility import find_feasible
from corral.scheduler.scheduler import schedule
from corral.scheduler.snapshot import NodeInfo, PodInfo, Resources, Snapshot, Taint
from corral.scheduler.spread import REASON_SPREAD, REASON_SPREAD_LABEL, spread_scores

JSON = dict[str, Any]
HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
WEB = {"app": "web"}


def node(
    name: str, zone: str | None = None, *, cpu: int = 4000, taints: tuple[Taint, ...] = (), **labels: str
) -> NodeInfo:
    all_labels = {HOST: name, **labels}
    if zone is not None:
        all_labels[ZONE] = zone
    return NodeInfo(name, labels=all_labels, taints=taints, allocatable=Resources(cpu, 8 * 1024**3, 110))


def constraint(
    key: str = HOST,
    max_skew: int = 1,
    when: str = "DoNotSchedule",
    selector: JSON | None = None,
    **extra: Any,
) -> JSON:
    out: JSON = {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when, **extra}
    out["labelSelector"] = {"matchLabels": WEB} if selector is None else selector
    return out


def pod(
    name: str,
    labels: dict[str, str] | None = None,
    *,
    ns: str = "default",
    constraints: list[JSON] | None = None,
    node_selector: dict[str, str] | None = None,
    cpu: int = 0,
    terminating: bool = False,
    owner: str = "",
) -> PodInfo:
    meta: JSON = {
        "name": name,
        "namespace": ns,
        "uid": f"uid-{ns}-{name}",
        "labels": WEB if labels is None else labels,
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet", "name": owner}]
    spec: JSON = {
        "containers": [{"name": "c", "resources": {"requests": {"cpu": f"{cpu}m"}} if cpu else {}}],
        "topologySpreadConstraints": constraints or [],
        "nodeSelector": node_selector or {},
    }
    return PodInfo.from_object({"metadata": meta, "spec": spec})


def webs(n: int, prefix: str, **kw: Any) -> list[PodInfo]:
    return [pod(f"{prefix}-{i}", **kw) for i in range(n)]


def snap(*placed: tuple[NodeInfo, list[PodInfo]]) -> Snapshot:
    return Snapshot(tuple(n.with_pods(ps) for n, ps in placed))


def verdicts(incoming: PodInfo, snapshot: Snapshot) -> dict[str, str]:
    feasible, failures = find_feasible(incoming, snapshot)
    out = {n.name: "" for n in feasible}
    out.update({name: reasons[0] for name, reasons in failures.items()})
    return out


# ---------------------------------------------------------------------------------------------- filter


FILTER_CASES = [
    pytest.param(
        pod("new", constraints=[constraint()]),
        snap((node("n1"), webs(2, "a")), (node("n2"), webs(1, "b")), (node("n3"), [])),
        {"n1": REASON_SPREAD, "n2": REASON_SPREAD, "n3": ""},
        id="hostname-max-skew-1-only-the-emptiest",
    ),
    pytest.param(
        pod("new", constraints=[constraint(max_skew=2)]),
        snap((node("n1"), webs(2, "a")), (node("n2"), webs(1, "b")), (node("n3"), [])),
        {"n1": REASON_SPREAD, "n2": "", "n3": ""},
        id="hostname-max-skew-2",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE)]),
        snap((node("n1", "a"), webs(1, "a")), (node("n2", "a"), []), (node("n3", "b"), [])),
        {"n1": REASON_SPREAD, "n2": REASON_SPREAD, "n3": ""},
        id="zone-domains-sum-their-nodes",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE)]),
        snap((node("n1", "a"), []), (node("n2"), [])),
        {"n1": "", "n2": REASON_SPREAD_LABEL},
        id="node-without-the-key-fails-with-missing-label",
    ),
    pytest.param(
        pod("new", {"app": "other"}, constraints=[constraint()]),
        snap((node("n1"), webs(1, "a")), (node("n2"), [])),
        {"n1": "", "n2": ""},
        id="a-pod-not-matching-its-selector-does-not-add-to-the-skew",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE, minDomains=3)]),
        snap((node("n1", "a"), webs(1, "a")), (node("n2", "b"), webs(1, "b"))),
        {"n1": REASON_SPREAD, "n2": REASON_SPREAD},
        id="fewer-domains-than-minDomains-makes-the-minimum-zero",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE, minDomains=2)]),
        snap((node("n1", "a"), webs(1, "a")), (node("n2", "b"), webs(1, "b"))),
        {"n1": "", "n2": ""},
        id="enough-domains-for-minDomains",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE)], node_selector={"pool": "x"}),
        snap(
            (node("n1", "a", pool="x"), webs(1, "a")),
            (node("n2", "b", pool="x"), webs(1, "b")),
            (node("n3", "c"), []),
        ),
        {"n1": "", "n2": "", "n3": "node(s) didn't match Pod's node affinity/selector"},
        id="nodeAffinityPolicy-Honor-leaves-out-domains-the-pod-cannot-use",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE, nodeAffinityPolicy="Ignore")], node_selector={"pool": "x"}),
        snap(
            (node("n1", "a", pool="x"), webs(1, "a")),
            (node("n2", "b", pool="x"), webs(1, "b")),
            (node("n3", "c"), []),
        ),
        {"n1": REASON_SPREAD, "n2": REASON_SPREAD, "n3": "node(s) didn't match Pod's node affinity/selector"},
        id="nodeAffinityPolicy-Ignore-counts-every-domain",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE)]),
        snap(
            (node("n1", "a"), webs(1, "a")),
            (node("n2", "b"), webs(1, "b")),
            (node("n3", "c", taints=(Taint("t", "", "PreferNoSchedule"), Taint("x", "", "NoSchedule"))), []),
        ),
        {"n1": REASON_SPREAD, "n2": REASON_SPREAD, "n3": "node(s) had untolerated taint {x: }"},
        id="nodeTaintsPolicy-Ignore-counts-tainted-domains",
    ),
    pytest.param(
        pod("new", constraints=[constraint(ZONE, nodeTaintsPolicy="Honor")]),
        snap(
            (node("n1", "a"), webs(1, "a")),
            (node("n2", "b"), webs(1, "b")),
            (node("n3", "c", taints=(Taint("x", "", "NoSchedule"),)), []),
        ),
        {"n1": "", "n2": "", "n3": "node(s) had untolerated taint {x: }"},
        id="nodeTaintsPolicy-Honor-leaves-out-untolerated-domains",
    ),
    pytest.param(
        pod("new", constraints=[constraint()]),
        snap((node("n1"), webs(2, "a", terminating=True)), (node("n2"), [])),
        {"n1": "", "n2": ""},
        id="terminating-pods-do-not-count",
    ),
    pytest.param(
        pod("new", constraints=[constraint()]),
        snap((node("n1"), webs(2, "a", ns="other")), (node("n2"), [])),
        {"n1": "", "n2": ""},
        id="pods-of-other-namespaces-do-not-count",
    ),
    pytest.param(
        pod("new", {"app": "web", "rev": "2"}, constraints=[constraint(matchLabelKeys=["rev"])]),
        snap((node("n1"), webs(2, "a", labels={"app": "web", "rev": "1"})), (node("n2"), [])),
        {"n1": "", "n2": ""},
        id="matchLabelKeys-count-only-the-same-revision",
    ),
    pytest.param(
        pod("new", {"app": "web", "rev": "1"}, constraints=[constraint(matchLabelKeys=["rev"])]),
        snap((node("n1"), webs(2, "a", labels={"app": "web", "rev": "1"})), (node("n2"), [])),
        {"n1": REASON_SPREAD, "n2": ""},
        id="matchLabelKeys-same-revision-counts",
    ),
    pytest.param(
        pod("new", constraints=[{"maxSkew": 1, "topologyKey": HOST, "whenUnsatisfiable": "DoNotSchedule"}]),
        snap((node("n1"), webs(3, "a")), (node("n2"), [])),
        {"n1": "", "n2": ""},
        id="no-label-selector-counts-nothing",
    ),
    pytest.param(
        pod("new", constraints=[constraint(), constraint(ZONE)]),
        snap(
            (node("n1", "a"), []),
            (node("n2", "a"), webs(1, "b")),
            (node("n3", "b"), webs(1, "c")),
            (node("n4", "b"), webs(1, "d")),
        ),
        {"n1": "", "n2": REASON_SPREAD, "n3": REASON_SPREAD, "n4": REASON_SPREAD},
        id="every-constraint-must-hold",
    ),
    pytest.param(
        pod("new", constraints=[constraint(when="ScheduleAnyway")]),
        snap((node("n1"), webs(5, "a")), (node("n2"), [])),
        {"n1": "", "n2": ""},
        id="ScheduleAnyway-never-filters",
    ),
]


@pytest.mark.parametrize(("incoming", "snapshot", "expected"), FILTER_CASES)
def test_filter(incoming: PodInfo, snapshot: Snapshot, expected: dict[str, str]) -> None:
    assert verdicts(incoming, snapshot) == expected


def test_failure_message() -> None:
    snapshot = snap(
        (node("n1"), webs(1, "a")),
        (node("n2"), webs(1, "b")),
        (node("n3", cpu=100), []),
    )
    decision = schedule(pod("new", constraints=[constraint()], cpu=500), snapshot)
    assert decision.node is None
    assert decision.reason == (
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match pod topology spread constraints."
    )


# ---------------------------------------------------------------------------------------------- score


def scores_of(incoming: PodInfo, snapshot: Snapshot, nodes: list[NodeInfo] | None = None) -> dict[str, float]:
    candidates = list(snapshot.nodes) if nodes is None else nodes
    return dict(zip((n.name for n in candidates), spread_scores(incoming, snapshot, candidates), strict=True))


def test_schedule_anyway_on_hostname() -> None:
    snapshot = snap((node("n1"), webs(2, "a")), (node("n2"), webs(1, "b")), (node("n3"), []))
    # raw = count · log(3 + 2) + (maxSkew - 1); normalised 100 · (max + min - raw) / max.
    assert scores_of(pod("new", constraints=[constraint(when="ScheduleAnyway")]), snapshot) == pytest.approx(
        {"n1": 0.0, "n2": 50.0, "n3": 100.0}
    )


def test_schedule_anyway_on_zone_counts_nodes_that_are_not_candidates() -> None:
    snapshot = snap((node("n1", "a"), webs(3, "a")), (node("n2", "a"), []), (node("n3", "b"), webs(1, "b")))
    candidates = [snapshot.nodes[1], snapshot.nodes[2]]  # n1 was filtered out
    w = math.log(2 + 2)
    raw = {"n2": 3 * w + 1, "n3": 1 * w + 1}  # maxSkew 2 adds 1
    high, low = raw["n2"], raw["n3"]
    expected = {k: 100 * (high + low - v) / high for k, v in raw.items()}
    incoming = pod("new", constraints=[constraint(ZONE, max_skew=2, when="ScheduleAnyway")])
    assert scores_of(incoming, snapshot, candidates) == pytest.approx(expected)


def test_nodes_missing_a_key_score_zero() -> None:
    snapshot = snap((node("n1", "a"), webs(1, "a")), (node("n2"), []))
    incoming = pod("new", constraints=[constraint(ZONE, when="ScheduleAnyway")])
    assert scores_of(incoming, snapshot) == {"n1": 100.0, "n2": 0.0}


def test_only_hard_constraints_leave_no_soft_score() -> None:
    snapshot = snap((node("n1"), webs(1, "a", owner="rs")), (node("n2"), []))
    incoming = pod("new", constraints=[constraint(max_skew=5)], owner="rs")
    assert scores_of(incoming, snapshot) == {"n1": 0.0, "n2": 0.0}  # no system defaults either


def test_system_defaults_spread_a_controllers_replicas() -> None:
    snapshot = snap(
        (node("n1"), webs(2, "a", owner="rs")), (node("n2"), webs(3, "x", owner="other")), (node("n3"), [])
    )
    scores = scores_of(pod("new", owner="rs"), snapshot)
    assert scores["n2"] == scores["n3"] == 100.0
    assert scores["n1"] < 100.0


def test_scores_steer_schedule_anyway_pods() -> None:
    snapshot = snap((node("n1"), webs(2, "a")), (node("n2"), webs(1, "b")))
    assert schedule(pod("new", constraints=[constraint(when="ScheduleAnyway")]), snapshot).node == "n2"


# ---------------------------------------------------------------------------------------------- cache


def test_counts_are_cached_and_carried_by_with_pod() -> None:
    snapshot = snap((node("n1"), webs(1, "a")), (node("n2"), []))
    incoming = pod("new", constraints=[constraint()])
    assert verdicts(incoming, snapshot) == {"n1": REASON_SPREAD, "n2": ""}
    after = snapshot.with_pod(incoming, "n2")
    after = after.with_pod(pod("third", constraints=[constraint()]), "n2")
    # Recounting from scratch on an equal snapshot must give the same answer as the carried counts.
    fresh = Snapshot(after.nodes)
    nxt = pod("fourth", constraints=[constraint()])
    assert verdicts(nxt, after) == verdicts(nxt, fresh) == {"n1": "", "n2": REASON_SPREAD}


# ---------------------------------------------------------------------------------------------- properties


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.integers(0, 4)), min_size=1, max_size=6),
    st.integers(1, 3),
    st.sampled_from([HOST, ZONE]),
    st.integers(1, 12),
)
def test_do_not_schedule_never_exceeds_max_skew(
    layout: list[tuple[str | None, int]], max_skew: int, key: str, k: int
) -> None:
    snapshot = snap(*((node(f"n{i}", zone), webs(count, f"p{i}")) for i, (zone, count) in enumerate(layout)))

    def domain_counts(s: Snapshot) -> Counter[str]:
        out: Counter[str] = Counter()
        for n in s.nodes:
            if key in n.labels:
                out[n.labels[key]] += len(n.pods)
        return out

    for i in range(k):
        incoming = pod(f"new-{i}", constraints=[constraint(key, max_skew)])
        before = domain_counts(snapshot)
        decision = schedule(incoming, snapshot)
        if not before:
            assert decision.node is None  # no node carries the key at all
            continue
        # The emptiest domain always accepts one more, so a labelled node is always found ...
        assert decision.node is not None
        chosen = snapshot.node(decision.node)
        assert chosen is not None and key in chosen.labels
        # ... and the domain it lands in never goes beyond the minimum before it plus maxSkew.
        assert before[chosen.labels[key]] + 1 - min(before.values()) <= max_skew
        snapshot = snapshot.with_pod(incoming, decision.node)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 20))
def test_replicas_with_a_hostname_constraint_stay_within_one(n: int, k: int) -> None:
    snapshot = Snapshot(tuple(node(f"n{i}") for i in range(n)))
    for i in range(k):
        incoming = pod(f"web-{i}", constraints=[constraint()])
        decision = schedule(incoming, snapshot)
        assert decision.node is not None
        snapshot = snapshot.with_pod(incoming, decision.node)
        counts = [len(nd.pods) for nd in snapshot.nodes]
        assert max(counts) - min(counts) <= 1
