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

``prepare_filter``/``spread_filter``/``spread_scores`` are the plain definitions; ``prepare_indexed_filter``
and ``indexed_scores`` compute the same for ``schedule`` from memos on the snapshot lineage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from corral.scheduler.selectors import (
    LABEL_HOSTNAME,
    first_untolerated,
    matches_node_selection,
    topology_value,
)
from corral.scheduler.snapshot import (
    LabelKey,
    LabelSelector,
    Matcher,
    NodeInfo,
    PodInfo,
    Snapshot,
    SpreadConstraint,
)

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
    label: LabelKey | None = None
    """(namespace, key, value) when the selector is that one label: counted from the snapshot's index."""


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
        single = c.selector.match_labels if not c.selector.match_expressions else ()
        out.append(
            Rule(
                c,
                ("selector", pod.namespace, c.selector),
                _selector_matcher(pod.namespace, c.selector),
                c.selector.matches(pod.labels),
                (pod.namespace, *single[0]) if len(single) == 1 else None,
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
    counts = [snapshot.matching_counts(r.key, r.matcher, label=r.label) for r in rules]
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


# The same filter for ``schedule``'s walk, indexed by node position. The domain counts of a set of hard
# constraints are kept on the snapshot lineage (``Snapshot.carried``): placing a pod can only add one to the
# domain of the node it lands on, so the minimum moves at most by one and a histogram of counts keeps it.


def topology_values(snapshot: Snapshot, key: str) -> list[str | None]:
    """``topology_value`` of every node (static data: memoised for the snapshot lineage)."""
    return snapshot.static(("topology", key), lambda: [topology_value(n, key) for n in snapshot.nodes])


def _eligible(
    pod: PodInfo, snapshot: Snapshot, rules: Sequence[Rule], pod_class: Hashable, *, require_keys: bool
) -> tuple[Hashable, tuple[list[bool], ...]]:
    """Per rule, whether each node's pods count towards its domains: it passes the rule's inclusion
    policies (``_included``) and, when ``require_keys``, has every rule's key (``_has_keys``). With the
    memo key, which names the rules' keys and policies and the pod's ``selectors.static_class``."""
    key = (
        "spread-eligible",
        require_keys,
        tuple(
            (r.constraint.topology_key, r.constraint.node_affinity_policy, r.constraint.node_taints_policy)
            for r in rules
        ),
        pod_class,
    )

    def build() -> tuple[list[bool], ...]:
        nodes = snapshot.nodes
        keyed = [_has_keys(n, rules) for n in nodes] if require_keys else [True] * len(nodes)
        return tuple(
            [ok and _included(pod, n, r.constraint) for n, ok in zip(nodes, keyed, strict=True)]
            for r in rules
        )

    return key, snapshot.static(key, build)


def _domains(
    snapshot: Snapshot,
    rules: Sequence[Rule],
    key: Hashable,
    eligible: tuple[list[bool], ...],
    values: tuple[list[str | None], ...],
) -> _Domains:
    """Matching pods per domain (a missing label is the domain "") over the eligible nodes, carried under
    ``key``, which must name the rules' selectors and topology keys and what ``eligible`` was built from."""

    def build() -> _Domains:
        counts: list[dict[str, int]] = []
        for j, rule in enumerate(rules):
            per_node = snapshot.matching_counts(rule.key, rule.matcher, label=rule.label)
            domain: dict[str, int] = {}
            for i, ok in enumerate(eligible[j]):
                if ok:
                    value = values[j][i] or ""
                    domain[value] = domain.get(value, 0) + per_node[i]
            counts.append(domain)
        return _Domains(
            tuple(r.matcher for r in rules),
            eligible,
            values,
            tuple(counts),
            tuple(dict(Counter(c.values())) for c in counts),
            [min(c.values()) if c else None for c in counts],
        )

    return snapshot.carried(key, build)


@dataclass(frozen=True, slots=True)
class _Domains:
    """Matching pods per domain for each rule, with a histogram of those counts to keep the minimum.

    ``eligible``, ``values`` and ``matchers`` come from static memos and are only read; ``counts``,
    ``histograms`` and ``lowest`` are what ``advance_in_place`` updates."""

    matchers: tuple[Matcher, ...]
    eligible: tuple[list[bool], ...]
    values: tuple[list[str | None], ...]
    counts: tuple[dict[str, int], ...]
    histograms: tuple[dict[int, int], ...]
    lowest: list[int | None]

    def advance(self, index: int, node: NodeInfo, pod: PodInfo) -> _Domains:
        if pod.terminating:
            return self  # spreading does not count terminating pods
        if not any(self.eligible[j][index] and m(pod) for j, m in enumerate(self.matchers)):
            return self
        copy = self.own()
        copy.advance_in_place(index, node, pod)
        return copy

    def advance_in_place(self, index: int, node: NodeInfo, pod: PodInfo) -> None:
        if pod.terminating:
            return
        lowest = self.lowest
        for j, matcher in enumerate(self.matchers):
            if not self.eligible[j][index] or not matcher(pod):
                continue
            value = self.values[j][index] or ""
            counts = self.counts[j]
            old = counts[value]
            counts[value] = old + 1
            histogram = self.histograms[j]
            histogram[old] -= 1
            if not histogram[old]:
                del histogram[old]
                if lowest[j] == old:
                    lowest[j] = old + 1  # the domain that held the only minimum now holds old + 1
            histogram[old + 1] = histogram.get(old + 1, 0) + 1

    def own(self) -> _Domains:
        return _Domains(
            self.matchers,
            self.eligible,
            self.values,
            tuple(dict(c) for c in self.counts),
            tuple(dict(h) for h in self.histograms),
            list(self.lowest),
        )


IndexedRule = tuple[list[str | None], dict[str, int], int | None]
"""(topology value per node, matching pods per domain, the count above which a node's domain is skewed —
None when no domain exists, so only the label is checked)."""


def prepare_indexed_filter(pod: PodInfo, snapshot: Snapshot, pod_class: Hashable) -> list[IndexedRule]:
    """``prepare_filter`` for a walk by node index: the same domains and minimum, memoised and carried."""
    rules = [r for r in rules_for(pod, pod.spread_constraints) if r.constraint.hard]
    if not rules:
        return []
    eligible_key, eligible = _eligible(pod, snapshot, rules, pod_class, require_keys=True)
    values = tuple(topology_values(snapshot, r.constraint.topology_key) for r in rules)
    key = ("spread-domains", tuple((r.key, r.constraint.topology_key) for r in rules), eligible_key)
    state = _domains(snapshot, rules, key, eligible, values)
    out: list[IndexedRule] = []
    for j, rule in enumerate(rules):
        domain = state.counts[j]
        c = rule.constraint
        minimum: int | None
        if not domain:
            minimum = None
        elif c.min_domains is not None and len(domain) < c.min_domains:
            minimum = 0
        else:
            minimum = state.lowest[j]
        # skew = count + self - minimum > maxSkew  <=>  count > maxSkew - self + minimum (integers)
        threshold = None if minimum is None else c.max_skew - (1 if rule.self_match else 0) + minimum
        out.append((values[j], domain, threshold))
    return out


# ---------------------------------------------------------------------------------------------- score


def score_rules(pod: PodInfo) -> tuple[list[Rule], bool]:
    """The rules that score ``pod`` — its ``ScheduleAnyway`` constraints, or the system defaults over its
    group when it has none — and whether a node must carry every rule's key to be scored (not so for the
    system defaults, which do not ignore nodes that lack a zone label)."""
    if pod.spread_constraints:
        return [r for r in rules_for(pod, pod.spread_constraints) if not r.constraint.hard], True
    key, matcher = _group_matcher(pod)
    if key == ("nothing",):
        return [], False
    return [Rule(c, key, matcher, True) for c in SYSTEM_DEFAULT_CONSTRAINTS], False


def spread_scores(pod: PodInfo, snapshot: Snapshot, nodes: Sequence[NodeInfo]) -> list[float]:
    """Normalised 0..100 scores of the feasible ``nodes`` (upstream's PreScore, Score, NormalizeScore)."""
    rules, require_all = score_rules(pod)
    if not rules or not nodes:
        return [0.0] * len(nodes)
    ignored = [require_all and not _has_keys(n, rules) for n in nodes]
    counts = [snapshot.matching_counts(r.key, r.matcher, label=r.label) for r in rules]
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


def indexed_scores(
    pod: PodInfo, snapshot: Snapshot, indices: Sequence[int], pod_class: Hashable
) -> list[float]:
    """``spread_scores(pod, snapshot, [snapshot.nodes[i] for i in indices])`` for a snapshot with unique
    node names, with static topology data memoised and the domain totals carried (``_domains``)."""
    count = len(indices)
    rules, require_all = score_rules(pod)
    if not rules or not count:
        return [0.0] * count
    values = tuple(topology_values(snapshot, r.constraint.topology_key) for r in rules)
    eligible_key, eligible = _eligible(pod, snapshot, rules, pod_class, require_keys=require_all)
    if require_all:
        has_keys = snapshot.static(
            ("spread-has-keys", tuple(r.constraint.topology_key for r in rules)),
            lambda: [_has_keys(n, rules) for n in snapshot.nodes],
        )
        ignored = [not has_keys[i] for i in indices]
    else:
        ignored = [False] * count
    counts = [snapshot.matching_counts(r.key, r.matcher, label=r.label) for r in rules]
    hostname = [r.constraint.topology_key == LABEL_HOSTNAME for r in rules]
    per_domain: list[dict[str, int]] = [{} for _ in rules]
    for j in range(len(rules)):
        if not hostname[j]:
            column = values[j]
            seen = {column[i] or "" for i, skip in zip(indices, ignored, strict=True) if not skip}
            per_domain[j] = dict.fromkeys(seen, 0)
    weights = [
        math.log((count - sum(ignored) if hostname[j] else len(per_domain[j])) + 2) for j in range(len(rules))
    ]
    # Domains other than hostname count the pods of every eligible node in them, not only the candidates.
    others = [j for j in range(len(rules)) if not hostname[j]]
    if others:
        key = (
            "spread-domains",
            tuple((rules[j].key, rules[j].constraint.topology_key) for j in others),
            eligible_key,
            tuple(others),
        )
        totals = _domains(
            snapshot,
            [rules[j] for j in others],
            key,
            tuple(eligible[j] for j in others),
            tuple(values[j] for j in others),
        ).counts
        for j, total in zip(others, totals, strict=True):
            domains = per_domain[j]
            for domain in domains:
                domains[domain] = total.get(domain, 0)
    # Rule by rule over the candidates: per node the same additions in the same order as ``spread_scores``.
    raw = [0.0] * count
    for j, rule in enumerate(rules):
        column, weight, extra = values[j], weights[j], rule.constraint.max_skew - 1
        if hostname[j]:
            per_node = counts[j]
            raw = [
                r if column[i] is None else r + (per_node[i] * weight + extra)
                for r, i in zip(raw, indices, strict=True)
            ]
        else:
            domains = per_domain[j]
            raw = [
                r if (value := column[i]) is None else r + (domains.get(value, 0) * weight + extra)
                for r, i in zip(raw, indices, strict=True)
            ]
    valid = [r for r, skip in zip(raw, ignored, strict=True) if not skip]
    if not valid:
        return [0.0] * count
    low, high = min(valid), max(valid)
    return [
        0.0 if skip else (MAX_SCORE if high == 0 else MAX_SCORE * (high + low - r) / high)
        for r, skip in zip(raw, ignored, strict=True)
    ]
