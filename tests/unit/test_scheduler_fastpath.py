"""The optimised ``schedule`` against a straightforward reference: the same ``Decision`` (node, message,
every score, ``examined``) on random clusters, over sequences of ``with_pod`` placements — and over the same
sequences carried with ``Snapshot.place`` (the controller's owning variant, which updates the memos in
place), alone and mixed with ``with_pod``, whose older snapshots must stay unchanged.

The reference below is written from the per-node functions only (``node_failures``, ``least_allocated``,
``balanced_allocation``, ``untolerated_preferred_taints``, ``preferred_node_affinity``, the selector and
topology helpers) plus a copy of the spreading algorithm as it stood before the scheduler kept memos on its
snapshots; it rebuilds a fresh snapshot for every decision, so no memo can leak into it. Inter-pod
affinity uses the ``interpod`` module on that fresh snapshot (it has its own table tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from corral.scheduler import interpod
from corral.scheduler.feasibility import failure_message, feasible_nodes_to_find, node_failures
from corral.scheduler.scheduler import Decision, schedule
from corral.scheduler.scoring import (
    BALANCED_WEIGHT,
    INTER_POD_WEIGHT,
    NODE_AFFINITY_WEIGHT,
    RESOURCE_WEIGHT,
    SPREAD_WEIGHT,
    TAINT_WEIGHT,
    NodeScore,
    balanced_allocation,
    least_allocated,
    preferred_node_affinity,
    untolerated_preferred_taints,
)
from corral.scheduler.selectors import first_untolerated, matches_node_selection, topology_value
from corral.scheduler.snapshot import (
    ConsumedSnapshotError,
    NodeInfo,
    PodInfo,
    Resources,
    Snapshot,
    SpreadConstraint,
    Taint,
)

JSON = dict[str, Any]
HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
DISK = "disk"
SYSTEM_DEFAULTS = (SpreadConstraint(3, HOST, "ScheduleAnyway"), SpreadConstraint(5, ZONE, "ScheduleAnyway"))

# ---------------------------------------------------------------------------------------------- reference


def _spread_matches(pod: PodInfo, c: SpreadConstraint, other: PodInfo) -> bool:
    return (
        c.selector is not None
        and not other.terminating
        and other.namespace == pod.namespace
        and c.selector.matches(other.labels)
    )


def _group_matches(pod: PodInfo, other: PodInfo) -> bool:
    if pod.owner_uid:
        return other.owner_uid == pod.owner_uid
    if pod.labels:
        return other.namespace == pod.namespace and dict(other.labels) == dict(pod.labels)
    return False


def _count(node: NodeInfo, pod: PodInfo, c: SpreadConstraint, *, group: bool) -> int:
    if group:
        return sum(1 for p in node.pods if not p.terminating and _group_matches(pod, p))
    return sum(1 for p in node.pods if _spread_matches(pod, c, p))


def _included(pod: PodInfo, node: NodeInfo, c: SpreadConstraint) -> bool:
    if c.node_affinity_policy == "Honor" and not matches_node_selection(pod, node):
        return False
    return not (c.node_taints_policy == "Honor" and first_untolerated(pod, node) is not None)


def _has_keys(node: NodeInfo, constraints: Sequence[SpreadConstraint]) -> bool:
    return all(topology_value(node, c.topology_key) is not None for c in constraints)


def ref_spread_filter(pod: PodInfo, snap: Snapshot) -> Any:
    hard = [c for c in pod.spread_constraints if c.hard]
    domains: list[dict[str, int]] = [{} for _ in hard]
    for node in snap.nodes:
        if not _has_keys(node, hard):
            continue
        for j, c in enumerate(hard):
            if _included(pod, node, c):
                value = topology_value(node, c.topology_key) or ""
                domains[j][value] = domains[j].get(value, 0) + _count(node, pod, c, group=False)
    minimum: list[int | None] = []
    for c, domain in zip(hard, domains, strict=True):
        if not domain:
            minimum.append(None)
        elif c.min_domains is not None and len(domain) < c.min_domains:
            minimum.append(0)
        else:
            minimum.append(min(domain.values()))

    def check(node: NodeInfo) -> tuple[str, ...]:
        for c, domain, low in zip(hard, domains, minimum, strict=True):
            value = topology_value(node, c.topology_key)
            if value is None:
                return ("node(s) didn't match pod topology spread constraints (missing required label)",)
            if low is None:
                continue
            self_match = c.selector is not None and c.selector.matches(pod.labels)
            if domain.get(value, 0) + (1 if self_match else 0) - low > c.max_skew:
                return ("node(s) didn't match pod topology spread constraints",)
        return ()

    return hard, check


def ref_spread_scores(pod: PodInfo, snap: Snapshot, nodes: Sequence[NodeInfo]) -> list[float]:
    if pod.spread_constraints:
        rules = [c for c in pod.spread_constraints if not c.hard]
        group, require_all = False, True
    else:
        has_group = bool(pod.owner_uid or pod.labels)
        rules = list(SYSTEM_DEFAULTS) if has_group else []
        group, require_all = True, False
    if not rules or not nodes:
        return [0.0] * len(nodes)
    ignored = [require_all and not _has_keys(n, rules) for n in nodes]
    per_domain: list[dict[str, int]] = [{} for _ in rules]
    for node, skip in zip(nodes, ignored, strict=True):
        if not skip:
            for j, c in enumerate(rules):
                if c.topology_key != HOST:
                    per_domain[j].setdefault(topology_value(node, c.topology_key) or "", 0)
    weights = [
        math.log((len(nodes) - sum(ignored) if c.topology_key == HOST else len(per_domain[j])) + 2)
        for j, c in enumerate(rules)
    ]
    for node in snap.nodes:
        if require_all and not _has_keys(node, rules):
            continue
        for j, c in enumerate(rules):
            if c.topology_key == HOST or not _included(pod, node, c):
                continue
            domain = topology_value(node, c.topology_key) or ""
            if domain in per_domain[j]:
                per_domain[j][domain] += _count(node, pod, c, group=group)
    raw: list[float] = []
    for node in nodes:
        score = 0.0
        for j, c in enumerate(rules):
            value = topology_value(node, c.topology_key)
            if value is None:
                continue
            if c.topology_key == HOST:
                count = _count(node, pod, c, group=group)
            else:
                count = per_domain[j].get(value, 0)
            score += count * weights[j] + (c.max_skew - 1)
        raw.append(score)
    valid = [r for r, skip in zip(raw, ignored, strict=True) if not skip]
    if not valid:
        return [0.0] * len(nodes)
    low, high = min(valid), max(valid)
    return [
        0.0 if skip else (100.0 if high == 0 else 100.0 * (high + low - r) / high)
        for r, skip in zip(raw, ignored, strict=True)
    ]


def _normalise(raw: Sequence[float], *, reverse: bool) -> list[float]:
    high = max(raw, default=0.0)
    if high == 0:
        return [100.0 if reverse else 0.0 for _ in raw]
    return [100.0 - 100.0 * r / high if reverse else 100.0 * r / high for r in raw]


def ref_scores(pod: PodInfo, nodes: Sequence[NodeInfo], snap: Snapshot) -> list[NodeScore]:
    taints = _normalise([float(untolerated_preferred_taints(pod, n)) for n in nodes], reverse=True)
    affinity = _normalise([float(preferred_node_affinity(pod, n)) for n in nodes], reverse=False)
    spreads = ref_spread_scores(pod, snap, nodes)
    inter = interpod.affinity_scores(pod, snap, nodes)
    out = []
    for i, node in enumerate(nodes):
        least, balanced = least_allocated(pod, node), balanced_allocation(pod, node)
        total = (
            RESOURCE_WEIGHT * least
            + BALANCED_WEIGHT * balanced
            + TAINT_WEIGHT * taints[i]
            + NODE_AFFINITY_WEIGHT * affinity[i]
            + SPREAD_WEIGHT * spreads[i]
            + INTER_POD_WEIGHT * inter[i]
        )
        out.append(NodeScore(node.name, total, least, spreads[i], balanced, taints[i], affinity[i], inter[i]))
    out.sort(key=lambda s: (-s.total, s.name))
    return out


def ref_schedule(pod: PodInfo, snap: Snapshot, start: int) -> tuple[Decision, int]:
    """The decision and how many nodes were examined, on a snapshot nobody has asked anything before."""
    hard, spread_check = ref_spread_filter(pod, snap)
    affinity_state = interpod.prepare_filter(pod, snap)
    check_affinity = bool(
        pod.affinity_terms or pod.anti_affinity_terms or affinity_state.existing_anti_affinity_counts
    )
    limit = feasible_nodes_to_find(len(snap.nodes))
    feasible: list[NodeInfo] = []
    failures: dict[str, tuple[str, ...]] = {}
    count = len(snap.nodes)
    for offset in range(count):
        if len(feasible) >= limit:
            break
        node = snap.nodes[(start + offset) % count]
        reasons = node_failures(pod, node)
        if not reasons and hard:
            reasons = spread_check(node)
        if not reasons and check_affinity:
            reasons = interpod.affinity_filter(affinity_state, node)
        if reasons:
            failures[node.name] = reasons
        else:
            feasible.append(node)
    examined = len(feasible) + len(failures)
    if not feasible:
        return Decision(None, failure_message(count, failures), examined=examined), examined
    scores = ref_scores(pod, feasible, snap)
    best = scores[0].name
    return Decision(
        best, f"Successfully assigned {pod.namespace}/{pod.name} to {best}", tuple(scores)
    ), examined


# ---------------------------------------------------------------------------------------------- strategies

LABEL_VALUES = st.sampled_from(["a", "b", "c"])
TAINTS = st.sampled_from(
    [
        Taint("dedicated", "gpu", "NoSchedule"),
        Taint("dedicated", "gpu", "PreferNoSchedule"),
        Taint("spot", "", "PreferNoSchedule"),
        Taint("spot", "true", "NoExecute"),
        Taint("maint", "", "NoSchedule"),
    ]
)


@st.composite
def nodes(draw: st.DrawFn, count: int) -> list[NodeInfo]:
    # Mostly healthy clusters let the walk stop early (above 100 nodes); rough ones exercise every reason.
    rarity = draw(st.sampled_from([3, 60]))

    def odd() -> bool:
        return draw(st.integers(0, rarity)) == 0

    out = []
    for i in range(count):
        name = f"n{i:03d}"
        labels: dict[str, str] = {}
        host = draw(st.sampled_from(["name", "name", "name", "missing", "shared"]))
        if host == "name":
            labels[HOST] = name
        elif host == "shared":
            labels[HOST] = f"h{i % 3}"
        zone = draw(st.sampled_from(["z1", "z2", "z3", None]))
        if zone is not None:
            labels[ZONE] = zone
        disk = draw(st.sampled_from(["ssd", "hdd", None, None]))
        if disk is not None:
            labels[DISK] = disk
        if draw(st.booleans()):
            labels["rank"] = str(draw(st.integers(0, 9)))
        out.append(
            NodeInfo(
                name,
                labels=labels,
                ready=draw(st.sampled_from(["False", "Unknown"])) if odd() else "True",
                unschedulable=odd(),
                taints=tuple(draw(st.lists(TAINTS, min_size=1, max_size=2, unique=True))) if odd() else (),
                allocatable=Resources(
                    draw(st.sampled_from([2000, 500, 0])) if odd() else 4000,
                    draw(st.sampled_from([1024**3, 0])) if odd() else 8 * 1024**3,
                    draw(st.sampled_from([3, 0])) if odd() else 110,
                ),
            )
        )
    return out


def _expr(draw: st.DrawFn) -> JSON:
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    expr: JSON = {"key": draw(st.sampled_from(["app", "tier"])), "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = draw(st.lists(LABEL_VALUES, min_size=1, max_size=2))
    return expr


def _label_selector(draw: st.DrawFn) -> JSON:
    if draw(st.booleans()):
        return {"matchLabels": {"app": draw(LABEL_VALUES)}}
    return {"matchExpressions": [_expr(draw)]}


def _node_term(draw: st.DrawFn) -> JSON:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return {
            "matchExpressions": [
                {"key": DISK, "operator": "In", "values": [draw(st.sampled_from(["ssd", "hdd"]))]}
            ]
        }
    if kind == 1:
        op = draw(st.sampled_from(["Gt", "Lt"]))
        return {
            "matchExpressions": [{"key": "rank", "operator": op, "values": [str(draw(st.integers(0, 9)))]}]
        }
    if kind == 2:
        return {
            "matchExpressions": [{"key": ZONE, "operator": draw(st.sampled_from(["Exists", "DoesNotExist"]))}]
        }
    return {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n000", "n001"]}]}


def _pod_term(draw: st.DrawFn) -> JSON:
    term: JSON = {
        "topologyKey": draw(st.sampled_from([HOST, ZONE, DISK])),
        "labelSelector": _label_selector(draw),
    }
    ns = draw(st.integers(0, 3))
    if ns == 1:
        term["namespaces"] = ["default", "other"]
    elif ns == 2:
        term["namespaceSelector"] = {}
    elif ns == 3:
        term["namespaceSelector"] = {"matchLabels": {"team": "x"}}
    return term


@st.composite
def pod_objects(draw: st.DrawFn, *, placed: bool) -> JSON:
    """A pod object; ``placed`` ones carry fewer scheduling wishes (they matter only to others), and about
    half of the others only requests, labels and an owner (which fit on most nodes of a healthy cluster)."""
    plain = not placed and draw(st.booleans())
    labels: dict[str, str] = {}
    if draw(st.integers(0, 4)) > 0:
        labels["app"] = draw(LABEL_VALUES)
    if draw(st.booleans()):
        labels["tier"] = draw(LABEL_VALUES)
    meta: JSON = {"namespace": draw(st.sampled_from(["default", "default", "other"])), "labels": labels}
    owner = draw(st.sampled_from(["", "", "rs-1", "rs-2"]))
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True, "kind": "ReplicaSet", "name": owner}]
    if placed and draw(st.integers(0, 6)) == 0:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    requests: JSON = {}
    if draw(st.integers(0, 3)) > 0:
        requests["cpu"] = f"{draw(st.sampled_from([100, 250, 1000, 3000]))}m"
    if draw(st.integers(0, 3)) > 0:
        requests["memory"] = f"{draw(st.sampled_from([64, 512, 2048]))}Mi"
    container: JSON = {"name": "c", "resources": {"requests": requests}}
    if not plain and draw(st.integers(0, 5)) == 0:
        container["ports"] = [
            {"containerPort": 80, "hostPort": draw(st.sampled_from([8080, 8081])), "protocol": "TCP"}
        ]
    spec: JSON = {"containers": [container]}
    affinity: JSON = {}
    if plain:
        return {"metadata": meta, "spec": spec}
    if draw(st.integers(0, 3)) == 0:
        key = "requiredDuringSchedulingIgnoredDuringExecution"
        kind = draw(st.sampled_from(["podAffinity", "podAntiAffinity"]))
        affinity.setdefault(kind, {})[key] = [_pod_term(draw)]
    if draw(st.integers(0, 3)) == 0:
        key = "preferredDuringSchedulingIgnoredDuringExecution"
        kind = draw(st.sampled_from(["podAffinity", "podAntiAffinity"]))
        weighted = {"weight": draw(st.integers(1, 100)), "podAffinityTerm": _pod_term(draw)}
        affinity.setdefault(kind, {})[key] = [weighted]
    if not placed:
        if draw(st.integers(0, 3)) == 0:
            spec["nodeSelector"] = {DISK: draw(st.sampled_from(["ssd", "hdd"]))}
        if draw(st.integers(0, 3)) == 0:
            terms = [_node_term(draw) for _ in range(draw(st.integers(1, 2)))]
            affinity.setdefault("nodeAffinity", {})["requiredDuringSchedulingIgnoredDuringExecution"] = {
                "nodeSelectorTerms": terms
            }
        if draw(st.integers(0, 2)) == 0:
            affinity.setdefault("nodeAffinity", {})["preferredDuringSchedulingIgnoredDuringExecution"] = [
                {"weight": draw(st.integers(0, 50)), "preference": _node_term(draw)}
                for _ in range(draw(st.integers(1, 2)))
            ]
        if draw(st.integers(0, 2)) == 0:
            spec["tolerations"] = draw(
                st.lists(
                    st.sampled_from(
                        [
                            {"key": "dedicated", "operator": "Equal", "value": "gpu"},
                            {"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"},
                            {"key": "maint", "operator": "Exists", "effect": "NoSchedule"},
                            {"key": "node.kubernetes.io/not-ready", "operator": "Exists"},
                            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists"},
                            {"operator": "Exists"},
                        ]
                    ),
                    max_size=2,
                )
            )
        constraints = []
        for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
            c: JSON = {
                "maxSkew": draw(st.integers(1, 3)),
                "topologyKey": draw(st.sampled_from([HOST, HOST, ZONE, DISK])),
                "whenUnsatisfiable": draw(st.sampled_from(["DoNotSchedule", "ScheduleAnyway"])),
            }
            if draw(st.integers(0, 5)) > 0:
                c["labelSelector"] = _label_selector(draw)
            if draw(st.booleans()):
                c["matchLabelKeys"] = ["tier"]
            if draw(st.integers(0, 3)) == 0:
                c["minDomains"] = draw(st.integers(1, 5))
            if draw(st.integers(0, 3)) == 0:
                c["nodeAffinityPolicy"] = "Ignore"
            if draw(st.integers(0, 3)) == 0:
                c["nodeTaintsPolicy"] = "Honor"
            constraints.append(c)
        if constraints:
            spec["topologySpreadConstraints"] = constraints
    if affinity:
        spec["affinity"] = affinity
    return {"metadata": meta, "spec": spec}


def _pod(obj: JSON, name: str) -> PodInfo:
    meta = {**obj["metadata"], "name": name, "uid": f"uid-{name}"}
    return PodInfo.from_object({**obj, "metadata": meta})


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[NodeInfo], list[tuple[str, PodInfo]], JSON, list[PodInfo], list[int]]:
    count = draw(st.sampled_from([1, 3, 8, 20, 60, 99, 100, 101, 130]))
    cluster = draw(nodes(count))
    placed_templates = draw(st.lists(pod_objects(placed=True), min_size=1, max_size=4))
    placements = []
    for k in range(draw(st.integers(0, 3 * count))):
        template = draw(st.sampled_from(placed_templates))
        where = f"n{draw(st.integers(0, count - 1)):03d}"
        placements.append((where, replace(_pod(template, f"old-{k}"), node_name=where)))
    ns_labels = {"default": {"team": "x"}, "other": draw(st.sampled_from([{}, {"team": "x"}]))}
    templates = draw(st.lists(pod_objects(placed=False), min_size=1, max_size=3))
    # Replicas of a few templates, so memoised per-class state is hit and carried forward.
    incoming = [_pod(draw(st.sampled_from(templates)), f"new-{k}") for k in range(draw(st.integers(1, 8)))]
    starts = draw(st.lists(st.integers(0, 200), min_size=1, max_size=3))
    return cluster, placements, ns_labels, incoming, starts


class MixedLineage:
    """A snapshot lineage carried by ``place`` or ``with_pod`` as ``steps`` says (cycled), which keeps every
    snapshot that ``with_pod`` left behind with its decisions for ``probes`` (every incoming pod, so the
    memos of other pod classes than the one placed — the ones ``with_pod`` shares — are asked too), to ask
    again once the lineage has moved on: a ``place`` must never reach storage a value snapshot shares."""

    def __init__(self, snapshot: Snapshot, steps: Sequence[bool], probes: Sequence[PodInfo]) -> None:
        self.snapshot = snapshot
        self.steps = steps or [True]
        self.probes = probes
        self.count = 0
        self.kept: list[tuple[Snapshot, int, list[Decision]]] = []

    def carry(self, pod: PodInfo, node: str, start: int) -> None:
        owning = self.steps[self.count % len(self.steps)]
        self.count += 1
        event("mixed: place" if owning else "mixed: with_pod")
        if owning:
            self.snapshot = self.snapshot.place(pod, node)
        else:
            before = self.snapshot
            self.snapshot = before.with_pod(pod, node)
            self.kept.append((before, start, [schedule(p, before, start) for p in self.probes]))

    def check_kept(self) -> None:
        for before, start, decisions in self.kept:
            for probe, decision in zip(self.probes, decisions, strict=True):
                _same(schedule(probe, before, start), decision)


def _same(got: Decision, want: Decision) -> None:
    assert got == want
    assert got.examined == want.examined


def _checked(pod: PodInfo, snapshot: Snapshot, fresh: Snapshot, start: int) -> Decision:
    """``schedule`` on ``snapshot``, checked against the reference on ``fresh`` (``examined`` included:
    ``Decision.__eq__`` leaves it out)."""
    got = schedule(pod, snapshot, start)
    want, examined = ref_schedule(pod, fresh, start)
    assert got == want
    assert got.examined == examined
    return got


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(scenarios(), st.lists(st.booleans(), max_size=4))
def test_schedule_matches_reference_over_placements(
    scenario: tuple[list[NodeInfo], list[tuple[str, PodInfo]], JSON, list[PodInfo], list[int]],
    steps: list[bool],
) -> None:
    cluster, placements, ns_labels, incoming, starts = scenario
    snapshot = Snapshot.assemble(cluster, placements, ns_labels)
    owned = Snapshot.assemble(cluster, placements, ns_labels)  # carried with ``place`` only
    mixed = MixedLineage(Snapshot.assemble(cluster, placements, ns_labels), steps, incoming)
    placed = list(placements)
    for pod in incoming:
        fresh = Snapshot.assemble(cluster, placed, ns_labels)
        for start in starts:
            start %= len(cluster)
            got = _checked(pod, snapshot, fresh, start)
            _same(schedule(pod, owned, start), got)
            _same(schedule(pod, mixed.snapshot, start), got)
            event("fits" if got.node else "fits nowhere")
            if got.examined < len(cluster) and got.node:
                event("walk stopped early")
        if got.node is not None:
            bound = replace(pod, node_name=got.node)
            before, snapshot = snapshot, snapshot.with_pod(bound, got.node)
            previous, owned = owned, owned.place(bound, got.node)
            mixed.carry(bound, got.node, start)
            placed.append((got.node, bound))
            # The older snapshot is a value too: carrying its memos forward must not have changed it.
            again = schedule(pod, before, start)
            assert again == got
            assert again.examined == got.examined
            # ``place`` consumed the one it was called on.
            with pytest.raises(ConsumedSnapshotError):
                schedule(pod, previous, start)
    mixed.check_kept()


def test_reference_sees_a_limit_above_100_nodes() -> None:
    """The scenario sizes above 100 nodes are there because the walk stops early there."""
    assert feasible_nodes_to_find(130) == 100 < 130
    assert feasible_nodes_to_find(99) == 99


@st.composite
def replica_scenarios(draw: st.DrawFn) -> tuple[list[NodeInfo], JSON, list[PodInfo], list[int]]:
    """A workload's replicas, one after another, with hard spreading over their own labels: the carried
    domain counts and their minimum move with every placement."""
    count = draw(st.integers(1, 12))
    cluster = draw(nodes(count))
    template = draw(pod_objects(placed=False))
    template["metadata"]["labels"]["app"] = "w"
    constraints = [
        {
            "maxSkew": draw(st.integers(1, 2)),
            "topologyKey": key,
            "whenUnsatisfiable": draw(st.sampled_from(["DoNotSchedule", "DoNotSchedule", "ScheduleAnyway"])),
            "labelSelector": {"matchLabels": {"app": "w"}},
            **({"minDomains": draw(st.integers(1, 4))} if draw(st.booleans()) else {}),
        }
        for key in draw(st.lists(st.sampled_from([HOST, ZONE, DISK]), min_size=1, max_size=2, unique=True))
    ]
    template["spec"]["topologySpreadConstraints"] = constraints
    replicas = [_pod(template, f"w-{k}") for k in range(draw(st.integers(1, 3 * count + 2)))]
    starts = draw(st.lists(st.integers(0, 20), min_size=1, max_size=2))
    ns_labels = {"default": {"team": "x"}, "other": {}}
    return cluster, ns_labels, replicas, starts


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(replica_scenarios())
def test_replicas_match_reference(scenario: tuple[list[NodeInfo], JSON, list[PodInfo], list[int]]) -> None:
    cluster, ns_labels, replicas, starts = scenario
    snapshot = Snapshot.assemble(cluster, [], ns_labels)
    owned = Snapshot.assemble(cluster, [], ns_labels)  # carried with ``place``: the domains in place
    placed: list[tuple[str, PodInfo]] = []
    for pod in replicas:
        fresh = Snapshot.assemble(cluster, placed, ns_labels)
        for start in starts:
            start %= len(cluster)
            got = _checked(pod, snapshot, fresh, start)
            _same(schedule(pod, owned, start), got)
        event("fits" if got.node else "fits nowhere")
        if got.node is not None:
            bound = replace(pod, node_name=got.node)
            snapshot = snapshot.with_pod(bound, got.node)
            owned = owned.place(bound, got.node)
            placed.append((got.node, bound))


def test_bench_like_burst_matches_reference() -> None:
    """The throughput benchmark's shape, smaller: hard hostname spreading per group of replicas over zoned
    nodes above the 100-node limit, each decision starting where the previous walk stopped."""
    cluster = [
        NodeInfo(
            f"node-{i:04d}",
            labels={HOST: f"node-{i:04d}", ZONE: f"zone-{i % 3}"},
            allocatable=Resources(8000, 32 * 1024**3, 110),
        )
        for i in range(230)
    ]
    snapshot = Snapshot.assemble(cluster, [], {})
    owned = Snapshot.assemble(cluster, [], {})  # carried with ``place``, as the scheduler controller does
    placed: list[tuple[str, PodInfo]] = []
    start = 0
    for k in range(90):
        group = f"g-{k // 30}"
        owner = [{"uid": group, "controller": True, "kind": "ReplicaSet", "name": group}] if k % 2 else []
        spec: JSON = {
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
        }
        if k < 60:  # the last group has no constraint: system default spreading (by owner, or by labels)
            spec["topologySpreadConstraints"] = [
                {
                    "maxSkew": 1,
                    "topologyKey": HOST,
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": group}},
                }
            ]
        obj = {
            "metadata": {"labels": {"app": group}, "namespace": "default", "ownerReferences": owner},
            "spec": spec,
        }
        pod = _pod(obj, f"p-{k:03d}")
        got = schedule(pod, snapshot, start)
        want, examined = ref_schedule(pod, Snapshot.assemble(cluster, placed, {}), start)
        assert got == want
        assert got.examined == examined < len(cluster)
        assert got.node is not None
        _same(schedule(pod, owned, start), got)
        start = (start + examined) % len(cluster)
        bound = replace(pod, node_name=got.node)
        snapshot = snapshot.with_pod(bound, got.node)
        owned = owned.place(bound, got.node)
        placed.append((got.node, bound))
    assert owned == snapshot  # the same nodes with the same pods


def _spread_pod(name: str, app: str = "web") -> PodInfo:
    return _pod(
        {
            "metadata": {"namespace": "default", "labels": {"app": app}},
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}],
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": ZONE,
                        "whenUnsatisfiable": "DoNotSchedule",
                        "labelSelector": {"matchLabels": {"app": app}},
                    },
                    {
                        "maxSkew": 1,
                        "topologyKey": HOST,
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app": app}},
                    },
                ],
                "affinity": {
                    "podAntiAffinity": {
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {
                                "weight": 10,
                                "podAffinityTerm": {
                                    "topologyKey": HOST,
                                    "labelSelector": {"matchLabels": {"app": app}},
                                },
                            }
                        ]
                    }
                },
            },
        },
        name,
    )


def _zoned(count: int) -> list[NodeInfo]:
    return [
        NodeInfo(
            f"n{i}", labels={HOST: f"n{i}", ZONE: f"z{i % 2}"}, allocatable=Resources(4000, 8 * 1024**3, 110)
        )
        for i in range(count)
    ]


def test_a_consumed_snapshot_raises_on_every_use() -> None:
    snapshot = Snapshot.assemble(_zoned(4), [], {})
    first = _spread_pod("p-0")
    decision = schedule(first, snapshot)  # fills the memos that ``place`` carries
    assert decision.node is not None
    placed = snapshot.place(replace(first, node_name=decision.node), decision.node)
    node = placed.node(decision.node)
    assert node is not None and [p.name for p in node.pods] == ["p-0"]
    uses: list[Callable[[], object]] = [
        lambda: schedule(_spread_pod("p-1"), snapshot),
        lambda: snapshot.nodes[0],
        lambda: len(snapshot.nodes),
        lambda: list(snapshot.nodes),
        lambda: snapshot.node("n0"),
        lambda: snapshot.index("n0"),
        lambda: snapshot.unique_names,
        lambda: snapshot.namespace_labels.get("default"),
        lambda: snapshot.static("k", lambda: 1),
        lambda: snapshot.carried("k", lambda: 1),
        lambda: snapshot.matching_counts("k", lambda p: True),
        lambda: snapshot.pods_with_affinity(),
        lambda: snapshot.with_pod(first, "n1"),
        lambda: snapshot.place(first, "n1"),
        lambda: snapshot == placed,
    ]
    for use in uses:
        with pytest.raises(ConsumedSnapshotError):
            use()
    assert "consumed" in repr(snapshot)
    # The snapshot ``place`` returned is whole, and equal to what ``with_pod`` gives.
    fresh = Snapshot.assemble(_zoned(4), [], {})
    assert placed == fresh.with_pod(replace(first, node_name=decision.node), decision.node)
    assert schedule(_spread_pod("p-1"), placed) == schedule(
        _spread_pod("p-1"), fresh.with_pod(replace(first, node_name=decision.node), decision.node)
    )


def test_place_on_an_unknown_node_changes_nothing() -> None:
    snapshot = Snapshot.assemble(_zoned(2), [], {})
    assert snapshot.place(_spread_pod("p-0"), "nowhere") is snapshot
    assert len(snapshot.nodes) == 2  # not consumed


def _place_all(snapshot: Snapshot, pods: Sequence[PodInfo], on: str | None = None) -> Snapshot:
    """Each pod placed where ``schedule`` says, or all ``on`` one node (after asking ``schedule``, so the
    memos are used and carried)."""
    for pod in pods:
        node = schedule(pod, snapshot).node
        assert node is not None
        node = on or node
        snapshot = snapshot.place(replace(pod, node_name=node), node)
    return snapshot


@pytest.mark.parametrize("moved_on", ["older", "newer"])
def test_place_after_with_pod_leaves_the_other_snapshot_alone(moved_on: str) -> None:
    """``with_pod`` shares with its new snapshot the memo storage its pod does not change; a ``place`` on
    either of the two afterwards copies that storage before updating it, so the other keeps what it said."""
    pods = [_spread_pod(f"p-{k}") for k in range(8)]
    probe = _spread_pod("probe")
    # Memos for the "web" selector, the zone domains and the resource scores, owned by this lineage.
    older = _place_all(Snapshot.assemble(_zoned(4), [], {}), pods[:2])
    other = _pod({"metadata": {"namespace": "default", "labels": {"app": "other"}}, "spec": {}}, "o")
    newer = older.with_pod(replace(other, node_name="n0"), "n0")  # matches no "web" memo: all shared
    kept, moving = (newer, older) if moved_on == "older" else (older, newer)
    said = schedule(probe, kept)
    moved = _place_all(moving, pods[2:], on="n0")  # lopsided: every count the memos keep moves
    assert schedule(probe, kept) == said
    assert said == schedule(probe, Snapshot(kept.nodes))  # and it is what a fresh snapshot says
    assert schedule(probe, moved) == schedule(probe, Snapshot(moved.nodes))
    with pytest.raises(ConsumedSnapshotError):
        schedule(probe, moving)
