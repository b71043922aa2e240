"""Inter-pod affinity and anti-affinity: filter and score tables with Kubernetes' behaviour as the oracle
(cases re-expressed from upstream's ``interpodaffinity`` plugin tests), the FailedScheduling text, and a
Hypothesis property for hard anti-affinity."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.scheduler.feasibility import find_feasible
from corral.scheduler.interpod import (
    REASON_AFFINITY,
    REASON_ANTI_AFFINITY,
    REASON_EXISTING_ANTI_AFFINITY,
    affinity_scores,
)
from corral.scheduler.scheduler import schedule
from corral.scheduler.snapshot import NodeInfo, PodInfo, Resources, Snapshot

JSON = dict[str, Any]
HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def node(name: str, zone: str | None = None, **labels: str) -> NodeInfo:
    all_labels = {HOST: name, **labels}
    if zone is not None:
        all_labels[ZONE] = zone
    return NodeInfo(name, labels=all_labels, allocatable=Resources(4000, 8 * 1024**3, 110))


def term(
    key: str = HOST,
    selector: JSON | None = None,
    namespaces: list[str] | None = None,
    namespace_selector: JSON | None = None,
    **match_labels: str,
) -> JSON:
    out: JSON = {"topologyKey": key}
    if selector is not None:
        out["labelSelector"] = selector
    elif match_labels:
        out["labelSelector"] = {"matchLabels": match_labels}
    if namespaces is not None:
        out["namespaces"] = namespaces
    if namespace_selector is not None:
        out["namespaceSelector"] = namespace_selector
    return out


def pod(
    name: str,
    labels: dict[str, str] | None = None,
    *,
    ns: str = "default",
    affinity: list[JSON] | None = None,
    anti: list[JSON] | None = None,
    preferred: list[tuple[int, JSON]] | None = None,
    preferred_anti: list[tuple[int, JSON]] | None = None,
) -> PodInfo:
    spec_affinity: JSON = {}
    if affinity or preferred:
        spec_affinity["podAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": affinity or [],
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": w, "podAffinityTerm": t} for w, t in preferred or []
            ],
        }
    if anti or preferred_anti:
        spec_affinity["podAntiAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": anti or [],
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": w, "podAffinityTerm": t} for w, t in preferred_anti or []
            ],
        }
    obj = {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "labels": labels or {}},
        "spec": {"containers": [{"name": "c"}], "affinity": spec_affinity},
    }
    return PodInfo.from_object(obj)


def snap(
    *placed: tuple[NodeInfo, list[PodInfo]], ns_labels: dict[str, dict[str, str]] | None = None
) -> Snapshot:
    return Snapshot(tuple(n.with_pods(ps) for n, ps in placed), namespace_labels=ns_labels or {})


def verdicts(incoming: PodInfo, snapshot: Snapshot) -> dict[str, str]:
    """Node name → "" when feasible, else its (single) reason."""
    feasible, failures = find_feasible(incoming, snapshot)
    out = {n.name: "" for n in feasible}
    out.update({name: reasons[0] for name, reasons in failures.items()})
    return out


WEB = {"app": "web"}
DB = {"app": "db"}


# ---------------------------------------------------------------------------------------------- filter


FILTER_CASES = [
    pytest.param(
        pod("new", affinity=[term(app="db")]),
        snap((node("n1"), [pod("db", DB)]), (node("n2"), [])),
        {"n1": "", "n2": REASON_AFFINITY},
        id="affinity-on-hostname-follows-the-matching-pod",
    ),
    pytest.param(
        pod("new", affinity=[term(ZONE, app="db")]),
        snap((node("n1", "a"), [pod("db", DB)]), (node("n2", "a"), []), (node("n3", "b"), [])),
        {"n1": "", "n2": "", "n3": REASON_AFFINITY},
        id="affinity-on-zone-accepts-every-node-of-the-zone",
    ),
    pytest.param(
        pod("new", affinity=[term(ZONE, app="db")]),
        snap((node("n1", "a"), [pod("db", DB)]), (node("n2"), [])),
        {"n1": "", "n2": REASON_AFFINITY},
        id="affinity-fails-where-the-topology-label-is-missing",
    ),
    pytest.param(
        pod("first", WEB, affinity=[term(ZONE, app="web")]),
        snap((node("n1", "a"), []), (node("n2", "b"), []), (node("n3"), [])),
        {"n1": "", "n2": "", "n3": REASON_AFFINITY},
        id="first-pod-of-a-self-affine-group-may-go-anywhere-with-the-label",
    ),
    pytest.param(
        pod("lonely", DB, affinity=[term(app="web")]),
        snap((node("n1"), []), (node("n2"), [])),
        {"n1": REASON_AFFINITY, "n2": REASON_AFFINITY},
        id="affinity-to-pods-that-do-not-exist-fails-when-not-self-matching",
    ),
    pytest.param(
        pod("new", affinity=[term()]),
        snap((node("n1"), [pod("db", DB)])),
        {"n1": REASON_AFFINITY},
        id="nil-label-selector-matches-nothing",
    ),
    pytest.param(
        pod("new", affinity=[term(app="db"), term(tier="cache")]),
        snap((node("n1"), [pod("db", DB), pod("cache", {"tier": "cache"})])),
        {"n1": REASON_AFFINITY},
        id="all-terms-must-be-matched-by-the-same-pod",
    ),
    pytest.param(
        pod("new", affinity=[term(app="db"), term(tier="cache")]),
        snap((node("n1"), [pod("both", {"app": "db", "tier": "cache"})]), (node("n2"), [])),
        {"n1": "", "n2": REASON_AFFINITY},
        id="one-pod-matching-all-terms",
    ),
    pytest.param(
        pod("new", affinity=[term(app="db")]),
        snap((node("n1"), [pod("db", DB, ns="other")])),
        {"n1": REASON_AFFINITY},
        id="terms-default-to-the-pods-own-namespace",
    ),
    pytest.param(
        pod("new", affinity=[term(namespaces=["other"], app="db")]),
        snap((node("n1"), [pod("db", DB, ns="other")]), (node("n2"), [pod("db", DB)])),
        {"n1": "", "n2": REASON_AFFINITY},
        id="listed-namespaces-replace-the-default",
    ),
    pytest.param(
        pod("new", affinity=[term(namespace_selector={}, app="db")]),
        snap((node("n1"), [pod("db", DB, ns="other")])),
        {"n1": ""},
        id="empty-namespace-selector-means-every-namespace",
    ),
    pytest.param(
        pod("new", affinity=[term(namespace_selector={"matchLabels": {"team": "x"}}, app="db")]),
        snap(
            (node("n1"), [pod("db", DB, ns="ours")]),
            (node("n2"), [pod("db", DB, ns="theirs")]),
            ns_labels={"ours": {"team": "x"}, "theirs": {"team": "y"}},
        ),
        {"n1": "", "n2": REASON_AFFINITY},
        id="namespace-selector-uses-namespace-labels",
    ),
    pytest.param(
        pod(
            "new",
            affinity=[
                term(
                    selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "kv"]}]}
                )
            ],
        ),
        snap((node("n1"), [pod("kv", {"app": "kv"})]), (node("n2"), [pod("web", WEB)])),
        {"n1": "", "n2": REASON_AFFINITY},
        id="match-expressions",
    ),
    pytest.param(
        pod("new", WEB, anti=[term(app="web")]),
        snap((node("n1"), [pod("web-0", WEB)]), (node("n2"), [pod("db", DB)]), (node("n3"), [])),
        {"n1": REASON_ANTI_AFFINITY, "n2": "", "n3": ""},
        id="anti-affinity-on-hostname",
    ),
    pytest.param(
        pod("new", WEB, anti=[term(ZONE, app="web")]),
        snap(
            (node("n1", "a"), [pod("web-0", WEB)]),
            (node("n2", "a"), []),
            (node("n3", "b"), []),
            (node("n4"), []),
        ),
        {"n1": REASON_ANTI_AFFINITY, "n2": REASON_ANTI_AFFINITY, "n3": "", "n4": ""},
        id="anti-affinity-on-zone-and-a-node-without-the-label-cannot-conflict",
    ),
    pytest.param(
        pod("new", WEB, anti=[term(app="web")]),
        snap((node("n1"), [replace(pod("web-0", WEB), terminating=True)]), (node("n2"), [])),
        {"n1": REASON_ANTI_AFFINITY, "n2": ""},
        id="terminating-pods-still-count-for-anti-affinity",
    ),
    pytest.param(
        pod("new", DB),
        snap((node("n1"), [pod("web-0", WEB, anti=[term(app="db")])]), (node("n2"), [])),
        {"n1": REASON_EXISTING_ANTI_AFFINITY, "n2": ""},
        id="existing-pods-anti-affinity-is-symmetric",
    ),
    pytest.param(
        pod("new", DB),
        snap(
            (node("n1", "a"), [pod("web-0", WEB, anti=[term(ZONE, app="db")])]),
            (node("n2", "a"), []),
            (node("n3", "b"), []),
        ),
        {"n1": REASON_EXISTING_ANTI_AFFINITY, "n2": REASON_EXISTING_ANTI_AFFINITY, "n3": ""},
        id="existing-anti-affinity-covers-the-whole-domain",
    ),
    pytest.param(
        pod("new", DB, ns="other"),
        snap((node("n1"), [pod("web-0", WEB, anti=[term(app="db")])])),
        {"n1": ""},
        id="existing-anti-affinity-only-in-its-own-namespace",
    ),
    pytest.param(
        pod("new", DB, affinity=[term(app="web")], anti=[term(app="web")]),
        snap((node("n1"), [pod("web-0", WEB)])),
        {"n1": REASON_ANTI_AFFINITY},
        id="affinity-is-checked-before-anti-affinity",
    ),
]


@pytest.mark.parametrize(("incoming", "snapshot", "expected"), FILTER_CASES)
def test_filter(incoming: PodInfo, snapshot: Snapshot, expected: dict[str, str]) -> None:
    assert verdicts(incoming, snapshot) == expected


def test_failure_message_aggregates_like_upstream() -> None:
    snapshot = snap(
        (node("n1"), [pod("web-0", WEB)]),
        (node("n2"), [pod("web-1", WEB)]),
        (node("n3"), [pod("db", DB, anti=[term(app="web")])]),
        (node("gpu", gpu="yes"), []),
    )
    incoming = PodInfo.from_object(
        {
            "metadata": {"name": "web-2", "namespace": "default", "uid": "u", "labels": WEB},
            "spec": {
                "containers": [{"name": "c"}],
                "affinity": {
                    "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app="web")]},
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}
                            ]
                        }
                    },
                },
            },
        }
    )
    decision = schedule(incoming, snapshot)
    assert decision.node is None
    assert decision.reason == (
        "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) didn't satisfy existing pods anti-affinity rules, "
        "2 node(s) didn't match pod anti-affinity rules."
    )


# ---------------------------------------------------------------------------------------------- score


def scores_of(incoming: PodInfo, snapshot: Snapshot) -> dict[str, float]:
    return dict(
        zip(
            (n.name for n in snapshot.nodes), affinity_scores(incoming, snapshot, snapshot.nodes), strict=True
        )
    )


def test_preferred_affinity_scores_the_domain_with_matching_pods() -> None:
    snapshot = snap((node("n1", "a"), [pod("db", DB)]), (node("n2", "a"), []), (node("n3", "b"), []))
    incoming = pod("new", preferred=[(5, term(ZONE, app="db"))])
    assert scores_of(incoming, snapshot) == {"n1": 100.0, "n2": 100.0, "n3": 0.0}


def test_preferred_anti_affinity_scores_away_from_matching_pods() -> None:
    snapshot = snap((node("n1"), [pod("web-0", WEB)]), (node("n2"), []))
    incoming = pod("new", WEB, preferred_anti=[(10, term(app="web"))])
    assert scores_of(incoming, snapshot) == {"n1": 0.0, "n2": 100.0}


def test_weights_combine_and_normalise_between_min_and_max() -> None:
    # n1: +8 (affinity to db) -2 (anti to web) = 6; n2: -2; n3: 0 → (s - min) / (max - min).
    snapshot = snap(
        (node("n1"), [pod("db", DB), pod("web-0", WEB)]),
        (node("n2"), [pod("web-1", WEB)]),
        (node("n3"), []),
    )
    incoming = pod("new", preferred=[(8, term(app="db"))], preferred_anti=[(2, term(app="web"))])
    assert scores_of(incoming, snapshot) == pytest.approx({"n1": 100.0, "n2": 0.0, "n3": 25.0})


def test_existing_pods_terms_attract_and_repel_the_incoming_pod() -> None:
    # Hard affinity of a placed pod counts with hardPodAffinityWeight 1; its preferred terms with their weight.
    snapshot = snap(
        (node("n1"), [pod("a", affinity=[term(app="web")])]),
        (node("n2"), [pod("b", preferred=[(3, term(app="web"))])]),
        (node("n3"), [pod("c", preferred_anti=[(4, term(app="web"))])]),
    )
    # raw n1 = 1, n2 = 3, n3 = -4 → (s + 4) / 7
    assert scores_of(pod("new", WEB), snapshot) == pytest.approx({"n1": 500 / 7, "n2": 100.0, "n3": 0.0})


def test_no_terms_anywhere_scores_nothing() -> None:
    snapshot = snap((node("n1"), [pod("a", WEB)]), (node("n2"), []))
    assert scores_of(pod("new", WEB), snapshot) == {"n1": 0.0, "n2": 0.0}


def test_preferred_affinity_decides_between_equal_nodes() -> None:
    snapshot = snap((node("n1"), []), (node("n2"), [pod("cache", {"app": "cache"})]))
    decision = schedule(pod("new", preferred=[(50, term(app="cache"))]), snapshot)
    assert decision.node == "n2"


def test_counts_carried_by_with_pod_match_a_fresh_snapshot() -> None:
    snapshot = snap((node("n1", "a"), [pod("db", DB)]), (node("n2", "b"), []), (node("n3", "b"), []))
    first = pod("web-0", WEB, affinity=[term(ZONE, app="db")], anti=[term(app="web")])
    assert verdicts(first, snapshot) == {"n1": "", "n2": REASON_AFFINITY, "n3": REASON_AFFINITY}
    after = snapshot.with_pod(first, "n1").with_pod(pod("db-2", DB), "n3")
    nxt = pod("web-1", WEB, affinity=[term(ZONE, app="db")], anti=[term(app="web")])
    expected = {"n1": REASON_ANTI_AFFINITY, "n2": "", "n3": ""}
    assert verdicts(nxt, after) == verdicts(nxt, Snapshot(after.nodes)) == expected


# ---------------------------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 10), st.lists(st.sampled_from(["a", "b", "c"]), min_size=6, max_size=6)
)
def test_hard_anti_affinity_never_shares_a_node(n: int, k: int, zones: list[str]) -> None:
    snapshot = Snapshot(tuple(node(f"n{i}", zones[i]) for i in range(n)))
    placed = 0
    for i in range(k):
        incoming = pod(f"web-{i}", WEB, anti=[term(app="web")])
        decision = schedule(incoming, snapshot)
        if decision.node is None:
            assert placed == n
            assert (
                decision.reason
                == f"0/{n} nodes are available: {n} node(s) didn't match pod anti-affinity rules."
            )
            continue
        snapshot = snapshot.with_pod(incoming, decision.node)
        placed += 1
    per_node = Counter(n_.name for n_ in snapshot.nodes for p in n_.pods if p.labels == WEB)
    assert all(c == 1 for c in per_node.values())
    assert placed == min(n, k)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6), st.integers(1, 8))
def test_zone_affinity_keeps_a_group_in_one_zone(zones: list[str], k: int) -> None:
    snapshot = Snapshot(tuple(node(f"n{i}", z) for i, z in enumerate(zones)))
    for i in range(k):
        incoming = pod(f"web-{i}", WEB, affinity=[term(ZONE, app="web")])
        decision = schedule(incoming, snapshot)
        assert decision.node is not None
        snapshot = snapshot.with_pod(incoming, decision.node)
    used = {n_.labels[ZONE] for n_ in snapshot.nodes if n_.pods}
    assert len(used) == 1
