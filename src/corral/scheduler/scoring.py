"""Scores: among the nodes a pod may run on, which is best? Pure functions over the snapshot's typed views.

Two signals, each 0 to 100, combined with weights (upstream gives topology spreading twice the weight of
resource fit too):

- *least allocated*: the share of allocatable cpu and memory still free after placing the pod (counting
  upstream's default requests for containers that request nothing), so load evens out;
- *spreading*: fewer pods of the same group on the node scores higher. A pod's group is the pods sharing
  its controller (the ``ownerReference`` with ``controller: true``), or, for a bare pod, the pods in its
  namespace with exactly its (non-empty) labels. Normalised against the busiest candidate node.

Scores are floats so small differences never round into ties; real ties are broken by node name, so a
decision is a function of its input and tests are stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from corral.scheduler.snapshot import NodeInfo, PodInfo

RESOURCE_WEIGHT = 1.0
SPREAD_WEIGHT = 2.0
MAX_SCORE = 100.0


@dataclass(frozen=True, slots=True)
class NodeScore:
    name: str
    total: float
    least_allocated: float
    spread: float


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


def same_group(pod: PodInfo, other: PodInfo) -> bool:
    if other.uid and other.uid == pod.uid:
        return False
    if pod.owner_uid:
        return other.owner_uid == pod.owner_uid
    return bool(pod.labels) and other.namespace == pod.namespace and dict(other.labels) == dict(pod.labels)


def group_count(pod: PodInfo, node: NodeInfo) -> int:
    return sum(1 for other in node.pods if same_group(pod, other))


def score_nodes(pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[NodeScore]:
    """Scores of ``nodes`` (all feasible), best first; equal totals in node-name order."""
    counts = [group_count(pod, node) for node in nodes]
    busiest = max(counts, default=0)
    scores: list[NodeScore] = []
    for node, count in zip(nodes, counts, strict=True):
        spread = MAX_SCORE if busiest == 0 else MAX_SCORE * (busiest - count) / busiest
        resources = least_allocated(pod, node)
        total = RESOURCE_WEIGHT * resources + SPREAD_WEIGHT * spread
        scores.append(NodeScore(node.name, total, resources, spread))
    scores.sort(key=lambda s: (-s.total, s.name))
    return scores
