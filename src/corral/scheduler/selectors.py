"""Matching nodes against what a pod asks of them: node selector terms, ``nodeSelector``, tolerations.

Shared by the filters (``feasibility``), topology spreading (its node inclusion policies) and scoring
(preferred node affinity). Pure; semantics as upstream's ``component-helpers`` ``nodeaffinity`` package
and ``v1.Toleration.ToleratesTaint``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from corral.scheduler.snapshot import (
    NodeInfo,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodInfo,
    Taint,
    Toleration,
)

SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


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


def first_untolerated(
    pod: PodInfo, node: NodeInfo, effects: Sequence[str] = SCHEDULING_EFFECTS
) -> Taint | None:
    for taint in node.taints:
        if taint.effect in effects and not tolerated(pod.tolerations, taint):
            return taint
    return None


def requirement_matches(req: NodeSelectorRequirement, values: Mapping[str, str]) -> bool:
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


def term_matches(term: NodeSelectorTerm, node: NodeInfo) -> bool:
    if not term.match_expressions and not term.match_fields:
        return False  # an empty term selects nothing, as upstream
    fields = {"metadata.name": node.name}
    return all(requirement_matches(r, node.labels) for r in term.match_expressions) and all(
        requirement_matches(r, fields) for r in term.match_fields
    )


def matches_node_selection(pod: PodInfo, node: NodeInfo) -> bool:
    """``spec.nodeSelector`` (every label equal) and required node affinity (any term matches)."""
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    terms = pod.required_affinity
    return terms is None or any(term_matches(t, node) for t in terms)


def static_class(pod: PodInfo) -> Hashable:
    """All that ``tolerated``/``first_untolerated`` and ``matches_node_selection`` read of a pod: pods with
    equal classes pass and fail the same nodes in the node-local filters and spreading's inclusion
    policies, so those results are memoised per node and class (``Snapshot.static``)."""
    return (pod.tolerations, tuple(sorted(pod.node_selector.items())), pod.required_affinity)


LABEL_HOSTNAME = "kubernetes.io/hostname"


def topology_value(node: NodeInfo, key: str) -> str | None:
    """The node's value for a topology key. The kubelet always labels its node with
    ``kubernetes.io/hostname``; a node registered without that label (a bare API object) is taken to carry
    its own name there, so hostname spreading and anti-affinity still work on it."""
    value = node.labels.get(key)
    if value is None and key == LABEL_HOSTNAME:
        return node.name
    return value


def topology_pairs(node: NodeInfo) -> list[tuple[str, str]]:
    """Every (key, value) topology pair of the node, including the defaulted hostname."""
    pairs = list(node.labels.items())
    if LABEL_HOSTNAME not in node.labels:
        pairs.append((LABEL_HOSTNAME, node.name))
    return pairs
