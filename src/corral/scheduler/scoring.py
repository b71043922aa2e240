"""Scores: among the nodes a pod may run on, which is best? Pure functions over the snapshot's typed views.

Upstream's default profile, plugin by plugin, each normalised to 0..100 and weighted as in
``pkg/scheduler/apis/config/v1/default_plugins.go`` (``getDefaultPlugins``): TaintToleration 3,
NodeAffinity 2, NodeResourcesFit 1, PodTopologySpread 2, InterPodAffinity 2,
NodeResourcesBalancedAllocation 1 (ImageLocality 1 has no meaning without images and is left out):

- *least allocated* (NodeResourcesFit's default strategy): mean over cpu and memory of the share of
  allocatable still free once the pod is placed, counting upstream's default requests (100m, 200Mi) for
  containers that request nothing, so a node full of BestEffort pods does not look empty;
- *balanced allocation*: ``100 * (1 - |cpu fraction - memory fraction| / 2)`` with the pod's actual
  requests added, so a node is not exhausted in one resource while idle in the other;
- *taint toleration*: fewer untolerated ``PreferNoSchedule`` taints is better (reverse-normalised);
- *node affinity*: sum of the weights of the matching ``preferredDuringScheduling`` node selector terms,
  scaled so the best node gets 100;
- *topology spread*: the pod's ``ScheduleAnyway`` constraints, or upstream's system defaults, which spread
  a workload's replicas over hostnames and zones (``spread``);
- *inter-pod affinity*: preferred pod affinity and anti-affinity in both directions (``interpod``).

Scores are floats so small differences never round into ties; real ties are broken by node name (upstream
picks one at random), so a decision is a function of its input and tests are stable.

``score_nodes`` is the plain definition; ``score_indices`` is the same computation for ``schedule``, by node
index over memos kept on the snapshot lineage (see the section below).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.scheduler import interpod, spread
from corral.scheduler.selectors import static_class, term_matches, tolerated
from corral.scheduler.snapshot import NodeInfo, PodInfo, Snapshot, Toleration
from corral.scheduler.spread import same_group

__all__ = ["NodeScore", "group_count", "least_allocated", "same_group", "score_nodes"]

MAX_SCORE = 100.0
RESOURCE_WEIGHT = 1.0
BALANCED_WEIGHT = 1.0
TAINT_WEIGHT = 3.0
NODE_AFFINITY_WEIGHT = 2.0
SPREAD_WEIGHT = 2.0
INTER_POD_WEIGHT = 2.0


@dataclass(frozen=True, slots=True)
class NodeScore:
    name: str
    total: float
    least_allocated: float
    spread: float
    balanced: float = 0.0
    taint: float = 0.0
    node_affinity: float = 0.0
    inter_pod: float = 0.0


def _free_share(capacity: int, requested: int) -> float:
    if capacity <= 0 or requested > capacity:
        return 0.0
    return MAX_SCORE * (capacity - requested) / capacity


def least_allocated(pod: PodInfo, node: NodeInfo) -> float:
    """Mean over cpu and memory of the share left free once the pod is placed (upstream's LeastAllocated)."""
    cpu = _free_share(
        node.allocatable.milli_cpu, node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu
    )
    memory = _free_share(
        node.allocatable.memory, node.non_zero_requested.memory + pod.non_zero_requests.memory
    )
    return (cpu + memory) / 2


def balanced_allocation(pod: PodInfo, node: NodeInfo) -> float:
    """Upstream's ``balancedResourceScorer`` over cpu and memory, with actual (not defaulted) requests."""
    fractions = []
    for capacity, requested in (
        (node.allocatable.milli_cpu, node.requested.milli_cpu + pod.requests.milli_cpu),
        (node.allocatable.memory, node.requested.memory + pod.requests.memory),
    ):
        if capacity > 0:
            fractions.append(min(requested / capacity, 1.0))
    std = abs(fractions[0] - fractions[1]) / 2 if len(fractions) == 2 else 0.0
    return (1 - std) * MAX_SCORE


def _prefer_no_schedule_tolerations(pod: PodInfo) -> tuple[Toleration, ...]:
    return tuple(t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule"))


def untolerated_preferred_taints(pod: PodInfo, node: NodeInfo) -> int:
    tolerations = _prefer_no_schedule_tolerations(pod)
    return sum(1 for t in node.taints if t.effect == "PreferNoSchedule" and not tolerated(tolerations, t))


def preferred_node_affinity(pod: PodInfo, node: NodeInfo) -> int:
    """Sum of the weights of the pod's preferred node affinity terms that ``node`` matches."""
    return sum(p.weight for p in pod.preferred_node_affinity if p.weight and term_matches(p.term, node))


def _normalise(raw: Sequence[float], *, reverse: bool) -> list[float]:
    """Upstream's ``DefaultNormalizeScore``: scale so the largest is 100 (reversed: the smallest)."""
    high = max(raw, default=0.0)
    if high == 0:
        return [MAX_SCORE if reverse else 0.0 for _ in raw]
    return [MAX_SCORE - MAX_SCORE * r / high if reverse else MAX_SCORE * r / high for r in raw]


def group_count(pod: PodInfo, node: NodeInfo) -> int:
    return sum(1 for other in node.pods if same_group(pod, other))


def score_nodes(pod: PodInfo, nodes: Sequence[NodeInfo], snapshot: Snapshot | None = None) -> list[NodeScore]:
    """Scores of ``nodes`` (all feasible), best first; equal totals in node-name order.

    ``snapshot`` is the whole cluster (spreading over zones and pod affinity look beyond the candidates);
    without it the candidates are taken to be the whole cluster.
    """
    if not nodes:
        return []
    snap = snapshot if snapshot is not None else Snapshot(tuple(nodes))
    taints = _normalise([float(untolerated_preferred_taints(pod, n)) for n in nodes], reverse=True)
    affinity = _normalise([float(preferred_node_affinity(pod, n)) for n in nodes], reverse=False)
    spreads = spread.spread_scores(pod, snap, nodes)
    inter = interpod.affinity_scores(pod, snap, nodes)
    scores: list[NodeScore] = []
    for i, node in enumerate(nodes):
        least = least_allocated(pod, node)
        balanced = balanced_allocation(pod, node)
        total = (
            RESOURCE_WEIGHT * least
            + BALANCED_WEIGHT * balanced
            + TAINT_WEIGHT * taints[i]
            + NODE_AFFINITY_WEIGHT * affinity[i]
            + SPREAD_WEIGHT * spreads[i]
            + INTER_POD_WEIGHT * inter[i]
        )
        scores.append(
            NodeScore(node.name, total, least, spreads[i], balanced, taints[i], affinity[i], inter[i])
        )
    scores.sort(key=lambda s: (-s.total, s.name))
    return scores


# ------------------------------------------------------------------------------------------ indexed scores
# ``schedule``'s scoring gives exactly ``score_nodes``'s list with less work per node: what reads only static
# node data is memoised per pod class for the snapshot lineage; the resource scores per node are kept per
# set of requests and updated by ``with_pod`` for the one node that changes; and a node's ``NodeScore`` is
# reused while every one of its parts is unchanged (building 400 frozen dataclasses is itself costly).


@dataclass(slots=True)
class _ResourceScores:
    """Per node: (least allocated, balanced allocation, the last NodeScore built from them or None) for
    pods with one set of requests. The NodeScore slot is a cache filled in place by its own snapshot;
    ``advance`` always makes a new list, so no two snapshots share one (``advance_in_place`` keeps the list
    for the snapshot that ``Snapshot.place`` returns, the old one being consumed)."""

    pod: PodInfo
    entries: list[tuple[float, float, NodeScore | None]]

    def advance(self, index: int, node: NodeInfo, pod: PodInfo) -> _ResourceScores:
        entries = list(self.entries)
        entries[index] = (least_allocated(self.pod, node), balanced_allocation(self.pod, node), None)
        return _ResourceScores(self.pod, entries)

    def advance_in_place(self, index: int, node: NodeInfo, pod: PodInfo) -> None:
        self.entries[index] = (least_allocated(self.pod, node), balanced_allocation(self.pod, node), None)

    def own(self) -> _ResourceScores:
        return _ResourceScores(self.pod, list(self.entries))


def _resource_scores(pod: PodInfo, snapshot: Snapshot) -> _ResourceScores:
    def build() -> _ResourceScores:
        return _ResourceScores(
            pod, [(least_allocated(pod, n), balanced_allocation(pod, n), None) for n in snapshot.nodes]
        )

    return snapshot.carried(("resource-scores", pod.requests, pod.non_zero_requests), build)


def _per_node(pod: PodInfo, snapshot: Snapshot, indices: Sequence[int]) -> tuple[list[float], list[float]]:
    """Raw untolerated-PreferNoSchedule counts and preferred node affinity sums of the ``indices``."""
    nodes = snapshot.nodes
    if snapshot.static(
        ("any-prefer-no-schedule",),
        lambda: any(t.effect == "PreferNoSchedule" for n in nodes for t in n.taints),
    ):
        pns = snapshot.static(
            ("prefer-no-schedule", _prefer_no_schedule_tolerations(pod)),
            lambda: [untolerated_preferred_taints(pod, n) for n in nodes],
        )
        taints = [float(pns[i]) for i in indices]
    else:
        taints = [0.0] * len(indices)
    if pod.preferred_node_affinity:
        weights = snapshot.static(
            ("preferred-node-affinity", pod.preferred_node_affinity),
            lambda: [preferred_node_affinity(pod, n) for n in nodes],
        )
        affinity = [float(weights[i]) for i in indices]
    else:
        affinity = [0.0] * len(indices)
    return taints, affinity


def score_indices(pod: PodInfo, snapshot: Snapshot, indices: Sequence[int]) -> list[NodeScore]:
    """``score_nodes(pod, [snapshot.nodes[i] for i in indices], snapshot)`` for ascending ``indices`` of a
    snapshot whose node names are unique (so index order is name order, the tie-break)."""
    if not indices:
        return []
    nodes = snapshot.nodes
    candidates = [nodes[i] for i in indices]
    raw_taints, raw_affinity = _per_node(pod, snapshot, indices)
    taints = _normalise(raw_taints, reverse=True)
    affinity = _normalise(raw_affinity, reverse=False)
    spreads = spread.indexed_scores(pod, snapshot, indices, static_class(pod))
    inter = interpod.affinity_scores(pod, snapshot, candidates)
    entries = _resource_scores(pod, snapshot).entries
    scores: list[NodeScore] = []
    for i, taint, node_affinity, spread_score, inter_pod in zip(
        indices, taints, affinity, spreads, inter, strict=True
    ):
        least, balanced, cached = entries[i]
        if (
            cached is None
            or cached.taint != taint
            or cached.node_affinity != node_affinity
            or cached.spread != spread_score
            or cached.inter_pod != inter_pod
        ):
            # The same expression, in the same order, as ``score_nodes``: float sums are order-sensitive.
            total = (
                RESOURCE_WEIGHT * least
                + BALANCED_WEIGHT * balanced
                + TAINT_WEIGHT * taint
                + NODE_AFFINITY_WEIGHT * node_affinity
                + SPREAD_WEIGHT * spread_score
                + INTER_POD_WEIGHT * inter_pod
            )
            cached = _node_score(
                nodes[i].name, total, least, spread_score, balanced, taint, node_affinity, inter_pod
            )
            entries[i] = (least, balanced, cached)
        scores.append(cached)
    # Stable, and the list is in name order: equal totals stay in name order, as ``score_nodes``'s key.
    scores.sort(key=_total, reverse=True)
    return scores


def _total(score: NodeScore) -> float:
    return score.total


# A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``; writing the slots
# through their descriptors builds the same value in half the time, which counts when a decision builds
# hundreds of them (every normalised score moves when the best or worst node changes).
_NEW = object.__new__
(
    _SET_NAME,
    _SET_TOTAL,
    _SET_LEAST,
    _SET_SPREAD,
    _SET_BALANCED,
    _SET_TAINT,
    _SET_NODE_AFFINITY,
    _SET_INTER_POD,
) = (getattr(NodeScore, name).__set__ for name in NodeScore.__slots__)
assert NodeScore.__slots__ == (
    "name",
    "total",
    "least_allocated",
    "spread",
    "balanced",
    "taint",
    "node_affinity",
    "inter_pod",
)


def _node_score(
    name: str,
    total: float,
    least: float,
    spread_score: float,
    balanced: float,
    taint: float,
    node_affinity: float,
    inter_pod: float,
) -> NodeScore:
    """``NodeScore(name, total, least, spread_score, balanced, taint, node_affinity, inter_pod)``."""
    score: NodeScore = _NEW(NodeScore)
    _SET_NAME(score, name)
    _SET_TOTAL(score, total)
    _SET_LEAST(score, least)
    _SET_SPREAD(score, spread_score)
    _SET_BALANCED(score, balanced)
    _SET_TAINT(score, taint)
    _SET_NODE_AFFINITY(score, node_affinity)
    _SET_INTER_POD(score, inter_pod)
    return score
