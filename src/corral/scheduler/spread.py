"""Pod topology spreading, as upstream's ``PodTopologySpread`` plugin: a filter and a score.

Boundary: pure functions over a ``Snapshot``. Pods matching a constraint's selector (in the pod's
namespace, terminating pods excluded) are counted per node once per snapshot (``Snapshot.matching_counts``,
carried forward by ``with_pod``), then summed per topology domain — upstream's PreFilter/PreScore — so the
per-node work is a lookup.

Filter (``whenUnsatisfiable: DoNotSchedule``): domains are the values of ``topologyKey`` on the nodes that
carry *every* hard constraint's key and pass the node inclusion policies (``nodeAffinityPolicy`` defaults
to Honor: only nodes matching the pod's nodeSelector/required node affinity count; ``nodeTaintsPolicy``
defaults to Ignore). A node passes a constraint when ``matching pods in its domain + (1 if the pod matches
its own selector) - global minimum <= maxSkew``; with ``minDomains`` and fewer domains than that, the
minimum is 0. A node without the key fails with "(missing required label)".

Score (``ScheduleAnyway``): per node ``sum(count_in_domain * log(domains + 2) + maxSkew - 1)``, fewer is
better, normalised as upstream (``100 * (max + min - s) / max``; nodes missing a key score 0). A pod with
no constraints gets upstream's *system default* constraints (hostname maxSkew 3, zone maxSkew 5, both
ScheduleAnyway) over its *group*: upstream selects the pods of the same Service/ReplicaSet/StatefulSet;
we use the pods with the same controller (ownerReference with ``controller: true``), or, for a bare pod,
the pods of its namespace with exactly its (non-empty) labels. Raw scores stay floats (upstream rounds to
integers), so fewer ties reach the name tie-break. A node without a ``kubernetes.io/hostname`` label is
taken to carry its name there (``selectors.topology_value``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from corral.scheduler.selectors import (
    LABEL_HOSTNAME,
    first_untolerated,
    matches_node_selection,
    topology_value,
)
from corral.scheduler.snapshot import LabelSelector, Matcher, NodeInfo, PodInfo, Snapshot, SpreadConstraint

REASON_SPREAD = "node(s) didn't match pod topology spread constraints"
REASON_SPREAD_LABEL = REASON_SPREAD + " (missing required label)"

LABEL_ZONE = "topology.kubernetes.io/zone"
SYSTEM_DEFAULT_CONSTRAINTS = (
    SpreadConstraint(3, LABEL_HOSTNAME, "ScheduleAnyway"),
    SpreadConstraint(5, LABEL_ZONE, "ScheduleAnyway"),
)
MAX_SCORE = 100.0


def same_group(pod: PodInfo, other: PodInfo) -> bool:
    """Whether ``other`` is a peer of ``pod`` for default spreading (never the pod itself)."""
    if other.uid and other.uid == pod.uid:
        return False
    return _group_matcher(pod)[1](other)


def _group_matcher(pod: PodInfo) -> tuple[Hashable, Matcher]:
    if pod.owner_uid:
        owner = pod.owner_uid
        return ("owner", owner), lambda p: p.owner_uid == owner
    if pod.labels:
        ns, labels = pod.namespace, dict(pod.labels)
        return (
            "labels",
            ns,
            tuple(sorted(labels.items())),
        ), lambda p: p.namespace == ns and dict(p.labels) == labels
    return ("nothing",), lambda p: False


@dataclass(frozen=True, slots=True)
class Rule:
    """A constraint with the pods it counts."""

    constraint: SpreadConstraint
    key: Hashable
    matcher: Matcher
    self_match: bool


def _selector_matcher(namespace: str, selector: LabelSelector) -> Matcher:
    def matches(p: PodInfo) -> bool:
        return p.namespace == namespace and selector.matches(p.labels)

    return matches


def rules_for(pod: PodInfo, constraints: Sequence[SpreadConstraint]) -> list[Rule]:
    out = []
    for c in constraints:
        if c.selector is None:
            out.append(Rule(c, ("nothing",), lambda p: False, False))
            continue
        out.append(
            Rule(
                c,
                ("selector", pod.namespace, c.selector),
                _selector_matcher(pod.namespace, c.selector),
                c.selector.matches(pod.labels),
            )
        )
    return out


def _included(pod: PodInfo, node: NodeInfo, c: SpreadConstraint) -> bool:
    """Upstream's node inclusion policies: which nodes' pods count towards the domains."""
    if c.node_affinity_policy == "Honor" and not matches_node_selection(pod, node):
        return False
    return not (c.node_taints_policy == "Honor" and first_untolerated(pod, node) is not None)


def _has_keys(node: NodeInfo, rules: Sequence[Rule]) -> bool:
    return all(topology_value(node, r.constraint.topology_key) is not None for r in rules)


# ---------------------------------------------------------------------------------------------- filter


@dataclass(frozen=True, slots=True)
class SpreadState:
    rules: tuple[Rule, ...] = ()
    domain_counts: tuple[dict[str, int], ...] = ()
    minimum: tuple[int | None, ...] = ()
    """Global minimum per rule; None when there is no domain at all (then nothing can be skewed)."""


def prepare_filter(pod: PodInfo, snapshot: Snapshot) -> SpreadState:
    rules = tuple(r for r in rules_for(pod, pod.spread_constraints) if r.constraint.hard)
    if not rules:
        return SpreadState()
    counts = [snapshot.matching_counts(r.key, r.matcher) for r in rules]
    domains: tuple[dict[str, int], ...] = tuple({} for _ in rules)
    for i, node in enumerate(snapshot.nodes):
        if not _has_keys(node, rules):
            continue
        for j, rule in enumerate(rules):
            if _included(pod, node, rule.constraint):
                value = topology_value(node, rule.constraint.topology_key) or ""
                domains[j][value] = domains[j].get(value, 0) + counts[j][i]
    minimum: list[int | None] = []
    for rule, domain in zip(rules, domains, strict=True):
        if not domain:
            minimum.append(None)
        elif rule.constraint.min_domains is not None and len(domain) < rule.constraint.min_domains:
            minimum.append(0)
        else:
            minimum.append(min(domain.values()))
    return SpreadState(rules, domains, tuple(minimum))


def spread_filter(state: SpreadState, node: NodeInfo) -> tuple[str, ...]:
    for rule, domain, minimum in zip(state.rules, state.domain_counts, state.minimum, strict=True):
        value = topology_value(node, rule.constraint.topology_key)
        if value is None:
            return (REASON_SPREAD_LABEL,)
        if minimum is None:
            continue
        skew = domain.get(value, 0) + (1 if rule.self_match else 0) - minimum
        if skew > rule.constraint.max_skew:
            return (REASON_SPREAD,)
    return ()


# ---------------------------------------------------------------------------------------------- score


def spread_scores(pod: PodInfo, snapshot: Snapshot, nodes: Sequence[NodeInfo]) -> list[float]:
    """Normalised 0..100 scores of the feasible ``nodes`` (upstream's PreScore, Score, NormalizeScore)."""
    if pod.spread_constraints:
        rules = [r for r in rules_for(pod, pod.spread_constraints) if not r.constraint.hard]
        require_all = True
    else:
        key, matcher = _group_matcher(pod)
        rules = (
            [Rule(c, key, matcher, True) for c in SYSTEM_DEFAULT_CONSTRAINTS] if key != ("nothing",) else []
        )
        require_all = False  # system defaults do not ignore nodes that lack a zone label
    if not rules or not nodes:
        return [0.0] * len(nodes)
    ignored = [require_all and not _has_keys(n, rules) for n in nodes]
    counts = [snapshot.matching_counts(r.key, r.matcher) for r in rules]
    per_domain: list[dict[str, int]] = [{} for _ in rules]
    for node, skip in zip(nodes, ignored, strict=True):
        if skip:
            continue
        for j, rule in enumerate(rules):
            if rule.constraint.topology_key != LABEL_HOSTNAME:
                per_domain[j].setdefault(topology_value(node, rule.constraint.topology_key) or "", 0)
    weights = [
        math.log(
            (len(nodes) - sum(ignored) if r.constraint.topology_key == LABEL_HOSTNAME else len(per_domain[j]))
            + 2
        )
        for j, r in enumerate(rules)
    ]
    # Domains other than hostname count the pods of every node in them, not only the candidates.
    for i, node in enumerate(snapshot.nodes):
        if require_all and not _has_keys(node, rules):
            continue
        for j, rule in enumerate(rules):
            key = rule.constraint.topology_key
            if key == LABEL_HOSTNAME or not _included(pod, node, rule.constraint):
                continue
            domain = topology_value(node, key) or ""
            if domain in per_domain[j]:
                per_domain[j][domain] += counts[j][i]
    raw: list[float] = []
    for node in nodes:
        score = 0.0
        index = snapshot.index(node.name)
        for j, rule in enumerate(rules):
            key = rule.constraint.topology_key
            value = topology_value(node, key)
            if value is None:
                continue
            if key == LABEL_HOSTNAME:
                count = counts[j][index] if index is not None else 0
            else:
                count = per_domain[j].get(value, 0)
            score += count * weights[j] + (rule.constraint.max_skew - 1)
        raw.append(score)
    valid = [r for r, skip in zip(raw, ignored, strict=True) if not skip]
    if not valid:
        return [0.0] * len(nodes)
    low, high = min(valid), max(valid)
    return [
        0.0 if skip else (MAX_SCORE if high == 0 else MAX_SCORE * (high + low - r) / high)
        for r, skip in zip(raw, ignored, strict=True)
    ]
