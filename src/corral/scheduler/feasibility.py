"""Filters: can this pod run on this node at all? Pure functions over the snapshot's typed views.

Each filter returns the reasons a node fails (empty when it passes), worded as upstream's plugins word them,
so ``failure_message`` can build the ``FailedScheduling`` text users know from Kubernetes:
``0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}.``
As in upstream's framework, a node is judged by the first filter it fails, in the order of ``FILTERS``.

A node that is not Ready, or is cordoned, fails unless the pod tolerates the taint upstream would put on it
(``node.kubernetes.io/not-ready`` / ``unreachable`` / ``unschedulable``, effect NoSchedule), which is how
DaemonSet-style pods get onto such nodes there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from corral.scheduler.snapshot import (
    NodeInfo,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodInfo,
    Snapshot,
    Taint,
    Toleration,
)

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

_SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


def untolerated_taint_reason(taint: Taint) -> str:
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Upstream's ``Toleration.ToleratesTaint``: empty effect or key match any; Exists ignores the value."""
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.key and toleration.key != taint.key:
        return False
    if toleration.operator in ("", "Equal"):
        return toleration.value == taint.value
    return toleration.operator == "Exists"


def tolerated(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


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
    for taint in node.taints:
        if taint.effect in _SCHEDULING_EFFECTS and not tolerated(pod.tolerations, taint):
            return (untolerated_taint_reason(taint),)
    return ()


def _requirement_matches(req: NodeSelectorRequirement, values: Mapping[str, str]) -> bool:
    present = req.key in values
    value = values.get(req.key, "")
    if req.operator == "In":
        return present and value in req.values
    if req.operator == "NotIn":
        return not present or value not in req.values
    if req.operator == "Exists":
        return present
    if req.operator == "DoesNotExist":
        return not present
    if req.operator in ("Gt", "Lt") and present and len(req.values) == 1:
        try:
            have, bound = int(value), int(req.values[0])
        except ValueError:
            return False
        return have > bound if req.operator == "Gt" else have < bound
    return False


def _term_matches(term: NodeSelectorTerm, node: NodeInfo) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False  # an empty term selects nothing, as upstream
    fields = {"metadata.name": node.name}
    return all(_requirement_matches(r, node.labels) for r in term.match_expressions) and all(
        _requirement_matches(r, fields) for r in term.match_fields
    )


def node_affinity(pod: PodInfo, node: NodeInfo) -> tuple[str, ...]:
    """``spec.nodeSelector`` (every label equal) and required node affinity (any term matches)."""
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return (REASON_SELECTOR,)
    terms = pod.required_affinity
    if terms is not None and not any(_term_matches(t, node) for t in terms):
        return (REASON_SELECTOR,)
    return ()


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


def find_feasible(pod: PodInfo, snapshot: Snapshot) -> tuple[list[NodeInfo], dict[str, tuple[str, ...]]]:
    """Nodes that pass every filter (in name order), and the reasons of each node that does not."""
    feasible: list[NodeInfo] = []
    failures: dict[str, tuple[str, ...]] = {}
    for node in snapshot.nodes:
        reasons = node_failures(pod, node)
        if reasons:
            failures[node.name] = reasons
        else:
            feasible.append(node)
    return feasible, failures


def failure_message(total_nodes: int, failures: Mapping[str, Sequence[str]]) -> str:
    """Upstream's ``FitError`` text without the preemption part: counts per reason, sorted as strings."""
    if total_nodes == 0:
        return NO_NODES
    counts = Counter(reason for reasons in failures.values() for reason in reasons)
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"0/{total_nodes} nodes are available: {', '.join(parts)}."
