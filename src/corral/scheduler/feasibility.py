"""Filters: can this pod run on this node at all? Pure functions over the snapshot's typed views.

Each filter returns the reasons a node fails (empty when it passes), worded as upstream's plugins word them,
so ``failure_message`` can build the ``FailedScheduling`` text users know from Kubernetes:
``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}.``
As in upstream's framework, a node is judged by the first filter it fails: the node-local ``FILTERS`` in
order, then the two that look at other pods, ``PodTopologySpread`` (``spread``) and ``InterPodAffinity``
(``interpod``), whose per-decision state is computed once before the walk over the nodes (upstream's
PreFilter) — the default profile's order.

A node that is not Ready, or is cordoned, fails unless the pod tolerates the taint upstream would put on it
(``node.kubernetes.io/not-ready`` / ``unreachable`` / ``unschedulable``, effect NoSchedule), which is how
DaemonSet-style pods get onto such nodes there.

``find_feasible`` is the plain definition. ``feasible_indices`` is the same walk as ``schedule`` runs it,
by node index over memos kept on the snapshot lineage (static filter results per pod class, the resource
check per node updated by ``with_pod``, carried spread domains); ``tests/unit/test_scheduler_fastpath.py``
checks that both give the same answers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain

from corral.scheduler import interpod, spread
from corral.scheduler.selectors import (
    first_untolerated,
    matches_node_selection,
    static_class,
    tolerated,
    tolerates,
)
from corral.scheduler.snapshot import NodeInfo, PodInfo, Snapshot, Taint

__all__ = ["tolerated", "tolerates"]  # re-exported: where callers have always found them

Filter = Callable[[PodInfo, NodeInfo], tuple[str, ...]]

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_SELECTOR = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"
REASON_CPU = "Insufficient cpu"
REASON_MEMORY = "Insufficient memory"
NO_NODES = "no nodes available to schedule pods"
REASON_AFFINITY = interpod.REASON_AFFINITY
REASON_ANTI_AFFINITY = interpod.REASON_ANTI_AFFINITY
REASON_EXISTING_ANTI_AFFINITY = interpod.REASON_EXISTING_ANTI_AFFINITY
REASON_SPREAD = spread.REASON_SPREAD
REASON_SPREAD_LABEL = spread.REASON_SPREAD_LABEL


def untolerated_taint_reason(taint: Taint) -> str:
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


# ---------------------------------------------------------------------------------------------- filters


def node_ready(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    if node.ready == "True":
        return ()
    taint = Taint(TAINT_NOT_READY if node.ready == "False" else TAINT_UNREACHABLE, "", "NoSchedule")
    if tolerated(pod.tolerations, taint):
        return ()
    return (untolerated_taint_reason(taint),)


def node_unschedulable(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    if not node.unschedulable or tolerated(pod.tolerations, Taint(TAINT_UNSCHEDULABLE, "", "NoSchedule")):
        return ()
    return (REASON_UNSCHEDULABLE,)


def taint_toleration(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    taint = first_untolerated(pod, node)
    return () if taint is None else (untolerated_taint_reason(taint),)


def node_affinity(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    """``spec.nodeSelector`` (every label equal) and required node affinity (any term matches)."""
    return () if matches_node_selection(pod, node) else (REASON_SELECTOR,)


def host_ports(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    for wanted in pod.host_ports:
        if any(wanted.conflicts(used) for used in node.used_ports):
            return (REASON_PORTS,)
    return ()


def resources_fit(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    """Requests against allocatable minus what assigned pods request; every shortfall is reported."""
    reasons: list[str] = []
    if len(node.pods) + 1 > node.allocatable.pods:
        reasons.append(REASON_TOO_MANY_PODS)
    want, have, used = pod.requests, node.allocatable, node.requested
    if want.milli_cpu > 0 and want.milli_cpu > have.milli_cpu - used.milli_cpu:
        reasons.append(REASON_CPU)
    if want.memory > 0 and want.memory > have.memory - used.memory:
        reasons.append(REASON_MEMORY)
    return tuple(reasons)


FILTERS: tuple[tuple[str, Filter], ...] = (
    ("NodeReady", node_ready),
    ("NodeUnschedulable", node_unschedulable),
    ("TaintToleration", taint_toleration),
    ("NodeAffinity", node_affinity),
    ("NodePorts", host_ports),
    ("NodeResourcesFit", resources_fit),
)


def node_failures(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    """The reasons of the first filter ``node`` fails; empty when the pod may run there."""
    for _, check in FILTERS:
        reasons = check(pod, node)
        if reasons:
            return reasons
    return ()


MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE = 5
BASE_PERCENTAGE_OF_NODES_TO_SCORE = 50


def feasible_nodes_to_find(total: int) -> int:
    """kube-scheduler's ``numFeasibleNodesToFind`` with its adaptive default (``percentageOfNodesToScore``
    unset): every node below 100; above, 50 % minus 1 % per 125 nodes (at least 5 %, at least 100 nodes).
    The filters that need the whole cluster (spread, inter-pod affinity) work on counts prepared over every
    node first, so stopping early changes which feasible nodes get scored, never whether a node is allowed."""
    if total < MIN_FEASIBLE_NODES_TO_FIND:
        return total
    percentage = max(BASE_PERCENTAGE_OF_NODES_TO_SCORE - total // 125, MIN_FEASIBLE_NODES_PERCENTAGE)
    return max(total * percentage // 100, MIN_FEASIBLE_NODES_TO_FIND)


def find_feasible(
    pod: PodInfo, snapshot: Snapshot, *, start: int = 0, limit: int | None = None
) -> tuple[list[NodeInfo], dict[str, tuple[str, ...]]]:
    """Nodes that pass every filter, and the reasons of each node that does not.

    Nodes are examined in name order from index ``start`` round the ring, until ``limit`` feasible ones are
    found (None: all); ``len(feasible) + len(failures)`` is how many were examined."""
    feasible: list[NodeInfo] = []
    failures: dict[str, tuple[str, ...]] = {}
    spread_state = spread.prepare_filter(pod, snapshot)
    affinity_state = interpod.prepare_filter(pod, snapshot)
    check_affinity = bool(
        pod.affinity_terms or pod.anti_affinity_terms or affinity_state.existing_anti_affinity_counts
    )
    nodes = snapshot.nodes
    count = len(nodes)
    for offset in range(count):
        if limit is not None and len(feasible) >= limit:
            break
        node = nodes[(start + offset) % count]
        reasons = node_failures(pod, node)
        if not reasons and spread_state.rules:
            reasons = spread.spread_filter(spread_state, node)
        if not reasons and check_affinity:
            reasons = interpod.affinity_filter(affinity_state, node)
        if reasons:
            failures[node.name] = reasons
        else:
            feasible.append(node)
    return feasible, failures


# -------------------------------------------------------------------------------------------- indexed walk
# ``schedule``'s walk gives the same answers as ``find_feasible`` with less work per node: the filters
# that read only a node's static data and a few pod fields (readiness, cordon, taints, node affinity) are
# evaluated once per node and pod class for a snapshot lineage, and the resource check is kept per node and
# updated by ``with_pod`` for the one node that changes.

STATIC_FILTERS = FILTERS[:4]
"""NodeReady, NodeUnschedulable, TaintToleration, NodeAffinity: they read static node data and of the pod
only ``tolerations``, ``node_selector`` and ``required_affinity`` (``selectors.static_class``)."""
assert [name for name, _ in STATIC_FILTERS] == [
    "NodeReady",
    "NodeUnschedulable",
    "TaintToleration",
    "NodeAffinity",
]


def _first_reasons(pod: PodInfo, node: NodeInfo, checks: Sequence[tuple[str, Filter]]) -> tuple[str, ...]:
    for _, check in checks:
        reasons = check(pod, node)
        if reasons:
            return reasons
    return ()


@dataclass(frozen=True, slots=True)
class _LocalFailures:
    """``node_failures`` of every node for pods of one static class and one set of requests, as if they had
    no host ports (NodePorts comes between the static filters and NodeResourcesFit)."""

    pod: PodInfo
    static: list[tuple[str, ...]]
    reasons: list[tuple[str, ...]]

    def advance(self, index: int, node: NodeInfo, pod: PodInfo) -> _LocalFailures:
        if self.static[index]:
            return self  # fails for a static reason whatever is placed on it
        reasons = list(self.reasons)
        reasons[index] = resources_fit(self.pod, node)
        return _LocalFailures(self.pod, self.static, reasons)

    def advance_in_place(self, index: int, node: NodeInfo, pod: PodInfo) -> None:
        if not self.static[index]:
            self.reasons[index] = resources_fit(self.pod, node)

    def own(self) -> _LocalFailures:
        return _LocalFailures(self.pod, self.static, list(self.reasons))  # ``static`` is only read


def _local_failures(pod: PodInfo, snapshot: Snapshot, pod_class: Hashable) -> _LocalFailures:
    static = snapshot.static(
        ("static-filters", pod_class),
        lambda: [_first_reasons(pod, n, STATIC_FILTERS) for n in snapshot.nodes],
    )

    def build() -> _LocalFailures:
        reasons = [r or resources_fit(pod, n) for r, n in zip(static, snapshot.nodes, strict=True)]
        return _LocalFailures(pod, static, reasons)

    return snapshot.carried(("local-failures", pod_class, pod.requests), build)


def feasible_indices(
    pod: PodInfo, snapshot: Snapshot, *, start: int, limit: int
) -> tuple[list[int], dict[str, tuple[str, ...]]]:
    """``find_feasible`` by node index (feasible ones in walk order), for snapshots with unique names."""
    nodes = snapshot.nodes
    count = len(nodes)
    feasible: list[int] = []
    failures: dict[str, tuple[str, ...]] = {}
    if not count:
        return feasible, failures
    pod_class = static_class(pod)
    local = _local_failures(pod, snapshot, pod_class)
    local_reasons, static = local.reasons, local.static
    spread_rules = spread.prepare_indexed_filter(pod, snapshot, pod_class)
    affinity_state = interpod.prepare_filter(pod, snapshot)
    check_affinity = bool(
        pod.affinity_terms or pod.anti_affinity_terms or affinity_state.existing_anti_affinity_counts
    )
    ports = bool(pod.host_ports)
    start %= count
    for i in chain(range(start, count), range(start)):
        if len(feasible) >= limit:
            break
        reasons = local_reasons[i]
        if ports and not static[i]:
            reasons = host_ports(pod, nodes[i]) or reasons
        if not reasons and spread_rules:
            for values, domain, threshold in spread_rules:
                value = values[i]
                if value is None:
                    reasons = (REASON_SPREAD_LABEL,)
                    break
                if threshold is not None and domain.get(value, 0) > threshold:
                    reasons = (REASON_SPREAD,)
                    break
        if not reasons and check_affinity:
            reasons = interpod.affinity_filter(affinity_state, nodes[i])
        if reasons:
            failures[nodes[i].name] = reasons
        else:
            feasible.append(i)
    return feasible, failures


def failure_message(total_nodes: int, failures: Mapping[str, Sequence[str]]) -> str:
    """Upstream's ``FitError.Error()`` without the preemption part.

    ``0/<all nodes> nodes are available: `` then ``<count> <reason>`` per distinct reason over the failing
    nodes, sorted as plain strings (so "10 …" sorts before "2 …", exactly as Go's ``sort.Strings``),
    joined by ", ", and a final full stop.
    """
    if total_nodes == 0:
        return NO_NODES
    counts = Counter(reason for reasons in failures.values() for reason in reasons)
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"0/{total_nodes} nodes are available: {', '.join(parts)}."
