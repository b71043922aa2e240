"""Inter-pod affinity and anti-affinity, as upstream's ``InterPodAffinity`` plugin: a filter and a score.

Boundary: pure functions over a ``Snapshot``. ``prepare_filter`` is the plugin's PreFilter — it reduces
the placed pods to counts per topology pair (``(key, value)`` of a node label) once per decision, so the
per-node filter is a few dictionary lookups. The per-node counts of pods matching the incoming pod's terms
are memoised on the snapshot (``Snapshot.matching_counts``, carried forward by ``with_pod``); the reverse
direction walks only the placed pods that have affinity terms (``Snapshot.pods_with_affinity``). Unlike
spreading, terminating pods count, as upstream's.

- *required affinity* of the incoming pod: pods matching **all** its terms, counted per pair of each
  term's topology key. A node passes when it has every term's key and each pair has a matching pod — or
  when no pod anywhere matches and the pod matches its own terms (the first replica of a self-affine
  group; otherwise it could never start).
- *required anti-affinity* of the incoming pod: pods matching each term, per pair; a node fails when its
  pair for some term holds one. A node without the key cannot conflict.
- *existing pods' required anti-affinity*: every placed pod's term that the incoming pod matches forbids
  the pair of that pod's node. Symmetry is what makes anti-affinity safe to rely on.

The score (PreScore + Score + NormalizeScore) sums, per topology pair, the weights of the incoming pod's
preferred terms that placed pods match (anti-affinity subtracts), of placed pods' preferred terms that the
incoming pod matches, and ``HARD_POD_AFFINITY_WEIGHT`` (upstream's ``hardPodAffinityWeight``, default 1)
for placed pods' *required* affinity terms the incoming pod matches; then scales min..max to 0..100.
Messages are upstream's ``ErrReason*`` strings. A node without a ``kubernetes.io/hostname`` label is taken
to carry its name there (``selectors.topology_value``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from corral.scheduler.selectors import topology_pairs, topology_value
from corral.scheduler.snapshot import (
    Matcher,
    NodeInfo,
    PodAffinityTerm,
    PodInfo,
    Snapshot,
    WeightedPodAffinityTerm,
)

REASON_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"

HARD_POD_AFFINITY_WEIGHT = 1
MAX_SCORE = 100.0

Pair = tuple[str, str]


@dataclass(frozen=True, slots=True)
class AffinityState:
    """What the filter needs, computed once per decision (upstream's ``preFilterState``)."""

    pod: PodInfo
    affinity_counts: Mapping[Pair, int] = field(default_factory=dict)
    anti_affinity_counts: Mapping[Pair, int] = field(default_factory=dict)
    existing_anti_affinity_counts: Mapping[Pair, int] = field(default_factory=dict)
    matches_own_terms: bool = False


def _matches_all(
    terms: Sequence[PodAffinityTerm], pod: PodInfo, ns_labels: Mapping[str, Mapping[str, str]]
) -> bool:
    return bool(terms) and all(t.matches(pod, ns_labels) for t in terms)


def prepare_filter(pod: PodInfo, snapshot: Snapshot) -> AffinityState:
    ns_labels = snapshot.namespace_labels
    existing: Counter[Pair] = Counter()
    # Only pods with affinity terms can forbid anything: the snapshot keeps them in a (cached) side list.
    for i, other in snapshot.pods_with_affinity():
        if other.uid and other.uid == pod.uid:
            continue
        host = snapshot.nodes[i]
        for term in other.anti_affinity_terms:
            value = topology_value(host, term.topology_key)
            if value is not None and term.matches(pod, ns_labels):
                existing[(term.topology_key, value)] += 1
    # Per-node counts of pods matching (all) the incoming pod's terms come from the snapshot's memo, so a
    # burst of replicas with the same terms walks the placed pods once. The incoming pod is not placed yet.
    affinity: Counter[Pair] = Counter()
    anti: Counter[Pair] = Counter()
    if pod.affinity_terms:
        terms = pod.affinity_terms
        counts = snapshot.matching_counts(
            ("pod-affinity", terms), _all_terms_matcher(terms, ns_labels), with_terminating=True
        )
        _sum_per_pair(affinity, snapshot, counts, terms)
    for term in pod.anti_affinity_terms:
        counts = snapshot.matching_counts(
            ("pod-affinity", (term,)), _all_terms_matcher((term,), ns_labels), with_terminating=True
        )
        _sum_per_pair(anti, snapshot, counts, (term,))
    return AffinityState(
        pod,
        dict(affinity),
        dict(anti),
        dict(existing),
        _matches_all(pod.affinity_terms, pod, ns_labels),
    )


def _all_terms_matcher(
    terms: Sequence[PodAffinityTerm], ns_labels: Mapping[str, Mapping[str, str]]
) -> Matcher:
    def matches(p: PodInfo) -> bool:
        return _matches_all(terms, p, ns_labels)

    return matches


def _sum_per_pair(
    into: Counter[Pair], snapshot: Snapshot, counts: Sequence[int], terms: Sequence[PodAffinityTerm]
) -> None:
    for node, count in zip(snapshot.nodes, counts, strict=True):
        if count:
            for term in terms:
                value = topology_value(node, term.topology_key)
                if value is not None:
                    into[(term.topology_key, value)] += count


def affinity_filter(state: AffinityState, node: NodeInfo) -> tuple[str, ...]:
    """Upstream's ``InterPodAffinity.Filter``: affinity, then anti-affinity, then existing anti-affinity."""
    pods_exist = True
    for term in state.pod.affinity_terms:
        value = topology_value(node, term.topology_key)
        if value is None:
            return (REASON_AFFINITY,)  # every term's topology label must exist on the node
        if state.affinity_counts.get((term.topology_key, value), 0) <= 0:
            pods_exist = False
    if not pods_exist and not (not state.affinity_counts and state.matches_own_terms):
        return (REASON_AFFINITY,)
    if state.anti_affinity_counts:
        for term in state.pod.anti_affinity_terms:
            value = topology_value(node, term.topology_key)
            if value is not None and state.anti_affinity_counts.get((term.topology_key, value), 0) > 0:
                return (REASON_ANTI_AFFINITY,)
    if state.existing_anti_affinity_counts:
        for pair in topology_pairs(node):
            if state.existing_anti_affinity_counts.get(pair, 0) > 0:
                return (REASON_EXISTING_ANTI_AFFINITY,)
    return ()


# ---------------------------------------------------------------------------------------------- score


def _add_terms(
    scores: dict[str, Counter[str]],
    terms: Sequence[WeightedPodAffinityTerm],
    pod: PodInfo,
    ns_labels: Mapping[str, Mapping[str, str]],
    host: NodeInfo,
    sign: int,
) -> None:
    for weighted in terms:
        term = weighted.term
        value = topology_value(host, term.topology_key)
        if value is not None and weighted.weight and term.matches(pod, ns_labels):
            scores.setdefault(term.topology_key, Counter())[value] += sign * weighted.weight


def affinity_scores(pod: PodInfo, snapshot: Snapshot, nodes: Sequence[NodeInfo]) -> list[float]:
    """Normalised 0..100 scores of ``nodes`` (upstream's PreScore, Score and NormalizeScore)."""
    ns_labels = snapshot.namespace_labels
    has_preferences = bool(pod.preferred_affinity_terms or pod.preferred_anti_affinity_terms)
    topology: dict[str, Counter[str]] = {}
    # Without preferences of its own, only placed pods with affinity terms can change the score.
    placed: Sequence[tuple[int, PodInfo]] = (
        [(i, p) for i, n in enumerate(snapshot.nodes) for p in n.pods]
        if has_preferences
        else snapshot.pods_with_affinity()
    )
    for i, other in placed:
        if other.uid and other.uid == pod.uid:
            continue
        host = snapshot.nodes[i]
        _add_terms(topology, pod.preferred_affinity_terms, other, ns_labels, host, 1)
        _add_terms(topology, pod.preferred_anti_affinity_terms, other, ns_labels, host, -1)
        for term in other.affinity_terms:
            value = topology_value(host, term.topology_key)
            if value is not None and term.matches(pod, ns_labels):
                topology.setdefault(term.topology_key, Counter())[value] += HARD_POD_AFFINITY_WEIGHT
        _add_terms(topology, other.preferred_affinity_terms, pod, ns_labels, host, 1)
        _add_terms(topology, other.preferred_anti_affinity_terms, pod, ns_labels, host, -1)
    if not topology:
        return [0.0] * len(nodes)  # upstream skips the plugin: it adds nothing to any node
    raw = [
        float(sum(values.get(topology_value(node, key) or "", 0) for key, values in topology.items()))
        for node in nodes
    ]
    low, high = min(raw, default=0.0), max(raw, default=0.0)
    if high - low <= 0:
        return [0.0] * len(nodes)
    return [MAX_SCORE * (r - low) / (high - low) for r in raw]
