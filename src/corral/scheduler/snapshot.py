"""An immutable picture of the cluster for one scheduling decision: nodes, and the pods assigned to each.

Built from the informer caches (plain JSON dicts) into small typed views, so the filters and scores in
``feasibility`` and ``scoring`` never touch raw objects and never mutate cached ones. A snapshot is a value:
``with_pod`` returns a new snapshot with one more pod on a node, which is how a caller "assumes" a binding
before the watch reports it, and how tests place replicas one after another. Pure; no IO.

A snapshot also keeps memos of what the scheduler derives from it, so a burst of decisions does not redo
per-node work: ``static`` (results that read only the nodes' static data — shared by every ``with_pod``
descendant, since placing a pod never changes a node's labels, readiness, taints or allocatable),
``carried`` (state that ``with_pod`` brings forward by updating the one node that changed) and
``matching_counts``. They never change what a snapshot says, only how fast it is asked.

``place`` is ``with_pod`` for the sole owner of a snapshot (the scheduler controller's kept one): it updates
the nodes and the carried memos in place instead of copying O(nodes) data per placement, and consumes the
snapshot it was called on, whose every later use raises ``ConsumedSnapshotError``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, Protocol, TypeVar, cast

from corral.api.quantity import QuantityError, QuantityValue, to_millis, to_units

JSON = dict[str, Any]

# Upstream's defaults for pods that request nothing, used only for scoring (``schedutil.GetNonzeroRequests``),
# so that a node full of BestEffort pods does not look empty.
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class Resources:
    milli_cpu: int = 0
    memory: int = 0
    pods: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.milli_cpu + other.milli_cpu, self.memory + other.memory, self.pods + other.pods)

    def max(self, other: Resources) -> Resources:
        return Resources(
            max(self.milli_cpu, other.milli_cpu), max(self.memory, other.memory), max(self.pods, other.pods)
        )


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = ""


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""


@dataclass(frozen=True, slots=True)
class HostPort:
    ip: str
    protocol: str
    port: int

    def conflicts(self, other: HostPort) -> bool:
        """Same protocol and port, on the same address or where either side binds every address."""
        if self.protocol != other.protocol or self.port != other.port:
            return False
        return self.ip == other.ip or "0.0.0.0" in (self.ip, other.ip)


@dataclass(frozen=True, slots=True)
class NodeSelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    match_expressions: tuple[NodeSelectorRequirement, ...] = ()
    match_fields: tuple[NodeSelectorRequirement, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A ``metav1.LabelSelector``: every ``matchLabels`` pair and every expression must hold.

    An empty selector matches everything; a missing one is represented by ``None`` at the call sites and
    matches nothing (upstream's ``labels.Nothing()`` for a nil selector in affinity terms and spread
    constraints).
    """

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[NodeSelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In":
                ok = present and labels[req.key] in req.values
            elif req.operator == "NotIn":
                ok = not present or labels[req.key] not in req.values
            elif req.operator == "Exists":
                ok = present
            elif req.operator == "DoesNotExist":
                ok = not present
            else:
                ok = False  # an unknown operator is invalid; upstream's parse fails and nothing matches
            if not ok:
                return False
        return True

    def with_labels(self, extra: Mapping[str, str]) -> LabelSelector:
        """This selector also requiring ``extra`` (how ``matchLabelKeys`` are merged in)."""
        return replace(self, match_labels=(*self.match_labels, *sorted(extra.items())))

    @classmethod
    def parse(cls, value: Any) -> LabelSelector | None:
        if not isinstance(value, dict):
            return None
        return cls(
            tuple(sorted(_str_map(value.get("matchLabels")).items())),
            _requirements(value.get("matchExpressions")),
        )


@dataclass(frozen=True, slots=True)
class PodAffinityTerm:
    """One ``podAffinityTerm``: pods matching ``selector`` in the term's namespaces, per ``topology_key``."""

    topology_key: str
    selector: LabelSelector | None = None
    namespaces: frozenset[str] = frozenset()
    """Listed namespaces; when neither these nor a namespaceSelector are given, the owning pod's own."""
    namespace_selector: LabelSelector | None = None
    """``{}`` selects every namespace; others are matched against the snapshot's namespace labels."""

    def matches(self, pod: PodInfo, namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
        """Upstream's ``AffinityTerm.Matches``: the namespace is covered and the labels match."""
        if self.selector is None:
            return False
        if pod.namespace not in self.namespaces and not (
            self.namespace_selector is not None
            and self.namespace_selector.matches(namespace_labels.get(pod.namespace, {}))
        ):
            return False
        return self.selector.matches(pod.labels)

    @classmethod
    def parse(cls, value: JSON, own_namespace: str) -> PodAffinityTerm:
        namespaces = frozenset(str(n) for n in _list(value.get("namespaces")))
        ns_selector = LabelSelector.parse(value.get("namespaceSelector"))
        if not namespaces and ns_selector is None:
            namespaces = frozenset((own_namespace,))
        return cls(
            str(value.get("topologyKey") or ""),
            LabelSelector.parse(value.get("labelSelector")),
            namespaces,
            ns_selector,
        )


@dataclass(frozen=True, slots=True)
class WeightedPodAffinityTerm:
    weight: int
    term: PodAffinityTerm


@dataclass(frozen=True, slots=True)
class PreferredSchedulingTerm:
    weight: int
    term: NodeSelectorTerm


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    """One ``topologySpreadConstraints`` entry, with ``matchLabelKeys`` already merged into the selector."""

    max_skew: int
    topology_key: str
    when_unsatisfiable: str = "DoNotSchedule"
    selector: LabelSelector | None = None
    min_domains: int | None = None
    node_affinity_policy: str = "Honor"
    node_taints_policy: str = "Ignore"

    @property
    def hard(self) -> bool:
        return self.when_unsatisfiable != "ScheduleAnyway"

    @classmethod
    def parse(cls, value: JSON, pod_labels: Mapping[str, str]) -> SpreadConstraint:
        selector = LabelSelector.parse(value.get("labelSelector"))
        keys = [str(k) for k in _list(value.get("matchLabelKeys"))]
        extra = {k: pod_labels[k] for k in keys if k in pod_labels}
        if selector is not None and extra:
            selector = selector.with_labels(extra)
        min_domains = value.get("minDomains")
        return cls(
            max_skew=_int(value.get("maxSkew"), 1),
            topology_key=str(value.get("topologyKey") or ""),
            when_unsatisfiable=str(value.get("whenUnsatisfiable") or "DoNotSchedule"),
            selector=selector,
            min_domains=_int(min_domains, 1) if min_domains is not None else None,
            node_affinity_policy=str(value.get("nodeAffinityPolicy") or "Honor"),
            node_taints_policy=str(value.get("nodeTaintsPolicy") or "Ignore"),
        )


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What scheduling needs to know about a pod."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    owner_uid: str = ""
    """uid of the controller ownerReference (ReplicaSet, Job…), empty for a bare pod."""
    node_name: str = ""
    requests: Resources = Resources(pods=1)
    non_zero_requests: Resources = Resources(DEFAULT_MILLI_CPU_REQUEST, DEFAULT_MEMORY_REQUEST, 1)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    required_affinity: tuple[NodeSelectorTerm, ...] | None = None
    """``requiredDuringSchedulingIgnoredDuringExecution`` terms (ORed); None when the pod has none."""
    tolerations: tuple[Toleration, ...] = ()
    host_ports: tuple[HostPort, ...] = ()
    preferred_node_affinity: tuple[PreferredSchedulingTerm, ...] = ()
    affinity_terms: tuple[PodAffinityTerm, ...] = ()
    """Required pod affinity (all must hold)."""
    anti_affinity_terms: tuple[PodAffinityTerm, ...] = ()
    """Required pod anti-affinity (all must hold)."""
    preferred_affinity_terms: tuple[WeightedPodAffinityTerm, ...] = ()
    preferred_anti_affinity_terms: tuple[WeightedPodAffinityTerm, ...] = ()
    spread_constraints: tuple[SpreadConstraint, ...] = ()
    terminating: bool = False
    """``deletionTimestamp`` is set: it still holds resources, but spreading no longer counts it."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def has_pod_affinity(self) -> bool:
        """Any pod (anti-)affinity term, required or preferred: such pods matter to others' placement."""
        return bool(
            self.affinity_terms
            or self.anti_affinity_terms
            or self.preferred_affinity_terms
            or self.preferred_anti_affinity_terms
        )

    @classmethod
    def from_object(cls, obj: JSON, *, strict: bool = True) -> PodInfo:
        """The view of a pod object; raises QuantityError on a bad request unless ``strict`` is False."""
        meta = _dict(obj.get("metadata"))
        spec = _dict(obj.get("spec"))
        owner_uid = ""
        for ref in _list(meta.get("ownerReferences")):
            if isinstance(ref, dict) and ref.get("controller"):
                owner_uid = str(ref.get("uid") or "")
                break
        affinities = _dict(spec.get("affinity"))
        node_affinity = _dict(affinities.get("nodeAffinity"))
        affinity = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        namespace = str(meta.get("namespace") or "")
        labels = _str_map(meta.get("labels"))
        pod_affinity = _dict(affinities.get("podAffinity"))
        pod_anti_affinity = _dict(affinities.get("podAntiAffinity"))
        return cls(
            namespace=namespace,
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=labels,
            owner_uid=owner_uid,
            node_name=str(spec.get("nodeName") or ""),
            requests=pod_requests(spec, non_zero=False, strict=strict),
            non_zero_requests=pod_requests(spec, non_zero=True, strict=strict),
            node_selector=_str_map(spec.get("nodeSelector")),
            required_affinity=None if not isinstance(affinity, dict) else _selector_terms(affinity),
            tolerations=tuple(
                Toleration(
                    str(t.get("key") or ""),
                    str(t.get("operator") or "Equal"),
                    str(t.get("value") or ""),
                    str(t.get("effect") or ""),
                )
                for t in _list(spec.get("tolerations"))
                if isinstance(t, dict)
            ),
            host_ports=_host_ports(spec),
            preferred_node_affinity=tuple(
                PreferredSchedulingTerm(_int(p.get("weight"), 0), _selector_term(_dict(p.get("preference"))))
                for p in _list(node_affinity.get("preferredDuringSchedulingIgnoredDuringExecution"))
                if isinstance(p, dict)
            ),
            affinity_terms=_affinity_terms(pod_affinity, namespace),
            anti_affinity_terms=_affinity_terms(pod_anti_affinity, namespace),
            preferred_affinity_terms=_weighted_terms(pod_affinity, namespace),
            preferred_anti_affinity_terms=_weighted_terms(pod_anti_affinity, namespace),
            spread_constraints=tuple(
                SpreadConstraint.parse(c, labels)
                for c in _list(spec.get("topologySpreadConstraints"))
                if isinstance(c, dict)
            ),
            terminating=bool(meta.get("deletionTimestamp")),
        )


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node and what is already placed on it."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: str = "True"
    """The Ready condition's status: ``True``, ``False``, or ``Unknown`` (also when missing)."""
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()
    allocatable: Resources = Resources()
    pods: tuple[PodInfo, ...] = ()
    requested: Resources = Resources()
    non_zero_requested: Resources = Resources()
    used_ports: tuple[HostPort, ...] = ()

    @classmethod
    def from_object(cls, obj: JSON) -> NodeInfo:
        meta = _dict(obj.get("metadata"))
        spec = _dict(obj.get("spec"))
        status = _dict(obj.get("status"))
        ready = "Unknown"
        for cond in _list(status.get("conditions")):
            if isinstance(cond, dict) and cond.get("type") == "Ready":
                ready = str(cond.get("status") or "Unknown")
        # Allocatable is what pods may use; a node that reports only capacity offers all of it.
        amounts = {**_dict(status.get("capacity")), **_dict(status.get("allocatable"))}
        return cls(
            name=str(meta.get("name") or ""),
            labels=_str_map(meta.get("labels")),
            ready=ready,
            unschedulable=bool(spec.get("unschedulable")),
            taints=tuple(
                Taint(str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
                for t in _list(spec.get("taints"))
                if isinstance(t, dict)
            ),
            allocatable=Resources(
                _amount(amounts.get("cpu"), to_millis, strict=False),
                _amount(amounts.get("memory"), to_units, strict=False),
                _amount(amounts.get("pods"), to_units, strict=False),
            ),
        )

    def with_pods(self, pods: Iterable[PodInfo]) -> NodeInfo:
        """A copy of this node with ``pods`` also placed on it."""
        added = tuple(pods)
        if not added:
            return self
        requested, non_zero, ports = self.requested, self.non_zero_requested, list(self.used_ports)
        for pod in added:
            requested = requested + pod.requests
            non_zero = non_zero + pod.non_zero_requests
            ports.extend(pod.host_ports)
        return replace(
            self,
            pods=(*self.pods, *added),
            requested=requested,
            non_zero_requested=non_zero,
            used_ports=tuple(ports),
        )


Matcher = Callable[[PodInfo], bool]
CARRIED_COUNTS = 32
CARRIED_STATES = 16
STATIC_ENTRIES = 512
T = TypeVar("T")


class Carried(Protocol):
    """Derived state kept on a snapshot and brought forward by ``with_pod`` and ``place`` (see
    ``Snapshot.carried``)."""

    def advance(self, index: int, node: NodeInfo, pod: PodInfo) -> Carried:
        """This state once ``pod`` is placed, making ``node`` the new node at ``index``; ``self`` when
        unchanged. Must not mutate ``self``: the older snapshot may still be asked."""
        ...

    def advance_in_place(self, index: int, node: NodeInfo, pod: PodInfo) -> None:
        """``advance`` by updating this state's own storage (``Snapshot.place``). Only called on a state
        that no other snapshot shares: one that ``own`` returned, or that was advanced in place since."""
        ...

    def own(self) -> Carried:
        """An equal state sharing none of the storage ``advance_in_place`` updates with ``self`` (what
        only reads static node data may stay shared)."""
        ...


LabelKey = tuple[str, str, str]
"""(namespace, label key, label value)."""


@dataclass(slots=True)
class _LabelIndex:
    """Per node, how many pods that are not terminating carry each (namespace, label key, value), so that
    a selector of one label — most workloads' — is counted per node in O(nodes) instead of by asking every
    placed pod (which each new workload's first replica did). A node's dict is replaced, never changed, so
    ``own`` copies only the list."""

    per_node: list[dict[LabelKey, int]]

    def advance(self, index: int, node: NodeInfo, pod: PodInfo) -> _LabelIndex:
        if pod.terminating or not pod.labels:
            return self
        per_node = list(self.per_node)
        per_node[index] = _counted(per_node[index], pod)
        return _LabelIndex(per_node)

    def advance_in_place(self, index: int, node: NodeInfo, pod: PodInfo) -> None:
        if not pod.terminating and pod.labels:
            self.per_node[index] = _counted(self.per_node[index], pod)

    def own(self) -> _LabelIndex:
        return _LabelIndex(list(self.per_node))


def _counted(counts: dict[LabelKey, int], pod: PodInfo) -> dict[LabelKey, int]:
    out = dict(counts)
    for key, value in pod.labels.items():
        label = (pod.namespace, key, value)
        out[label] = out.get(label, 0) + 1
    return out


def _label_index(nodes: Sequence[NodeInfo]) -> _LabelIndex:
    per_node: list[dict[LabelKey, int]] = []
    for node in nodes:
        counts: dict[LabelKey, int] = {}
        for pod in node.pods:
            if not pod.terminating:
                for key, value in pod.labels.items():
                    label = (pod.namespace, key, value)
                    counts[label] = counts.get(label, 0) + 1
        per_node.append(counts)
    return _LabelIndex(per_node)


class ConsumedSnapshotError(RuntimeError):
    """A snapshot was used after ``Snapshot.place`` handed its storage on to the snapshot it returned."""


class _Consumed:
    """What a consumed snapshot holds in place of every field: any use raises. Costs the live snapshots
    nothing — no flag is checked on the hot path; the old object simply has nothing left to read."""

    __slots__ = ()

    def _fail(self) -> NoReturn:
        raise ConsumedSnapshotError(
            "this snapshot was consumed by Snapshot.place; use the snapshot that place returned"
        )

    def __getattr__(self, name: str) -> NoReturn:
        self._fail()

    def __len__(self) -> int:
        self._fail()

    def __iter__(self) -> NoReturn:
        self._fail()

    def __getitem__(self, key: object) -> NoReturn:
        self._fail()

    def __contains__(self, key: object) -> bool:
        self._fail()

    def __bool__(self) -> bool:
        self._fail()

    def __eq__(self, other: object) -> bool:
        self._fail()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "<consumed by Snapshot.place>"


_CONSUMED = _Consumed()


@dataclass(frozen=True, slots=True)
class Snapshot:
    nodes: Sequence[NodeInfo] = ()
    """Sorted by name, so every walk over the nodes is deterministic. Read-only for callers; stored as a
    list of the snapshot's own, which ``place`` updates in place."""
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False)
    """Labels of each namespace, for affinity terms with a ``namespaceSelector``."""
    _index: Mapping[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    # Per-snapshot memo of derived indexes. The snapshot stays a value: these only cache what its nodes
    # already say, and ``with_pod`` carries them forward incrementally instead of recounting every pod.
    # Each entry also names the snapshot lineage that owns its storage (see ``_owner``).
    _counts: dict[tuple[Hashable, bool], tuple[Matcher, list[int], object]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _affinity_pods: list[list[tuple[int, PodInfo]]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    # What depends only on the nodes' static data (labels, readiness, taints, allocatable — never changed
    # by ``with_pod``) is shared by every snapshot of a lineage: one dict, handed on as it is.
    _static: dict[Hashable, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _carried: dict[Hashable, tuple[Carried, object]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # Which ``_counts`` and ``_carried`` entries no other snapshot shares, so ``place`` may update them in
    # place: those tagged with this token. ``place`` hands the token on with the storage; ``with_pod``,
    # after which both snapshots hold the same entries, gives each snapshot a new one, so neither owns
    # them any more (``place`` copies such an entry once, then owns the copy). Compared by identity: no
    # hashing of memo keys on the hot path.
    _owner: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = sorted(self.nodes, key=lambda n: n.name)
        object.__setattr__(self, "nodes", ordered)
        object.__setattr__(self, "_index", {n.name: i for i, n in enumerate(ordered)})
        object.__setattr__(self, "_counts", {})
        object.__setattr__(self, "_affinity_pods", [])
        object.__setattr__(self, "_static", {})
        object.__setattr__(self, "_carried", {})
        object.__setattr__(self, "_owner", object())

    def node(self, name: str) -> NodeInfo | None:
        i = self._index.get(name)
        return None if i is None else self.nodes[i]

    def index(self, name: str) -> int | None:
        """Position of the node called ``name`` in ``nodes``."""
        return self._index.get(name)

    @property
    def unique_names(self) -> bool:
        """No two nodes share a name (always so for snapshots built from a cluster's Node objects)."""
        return len(self._index) == len(self.nodes)

    def static(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()``, memoised under ``key`` for this snapshot and every ``with_pod`` descendant.

        Only for values that depend on nothing but the nodes' static data (and what ``key`` names): the
        memo is shared, not copied, when a pod is placed."""
        memo = self._static
        try:
            return cast(T, memo[key])
        except KeyError:
            if len(memo) >= STATIC_ENTRIES:
                memo.clear()  # many pod classes over a long lineage: start again rather than grow
            value = memo[key] = build()
            return value

    def carried(self, key: Hashable, build: Callable[[], T]) -> T:
        """``build()`` memoised under ``key`` on this snapshot, brought forward to ``with_pod`` snapshots by
        its ``advance`` (the most recently used ``CARRIED_STATES`` of them)."""
        memo = self._carried
        hit = memo.pop(key, None)
        if hit is None:
            hit = (cast(Carried, build()), self._owner)  # built here: no other snapshot holds it
        memo[key] = hit  # re-inserted: the dict's order is the order of use
        return cast(T, hit[0])

    def matching_counts(
        self,
        key: Hashable,
        matcher: Matcher,
        *,
        with_terminating: bool = False,
        label: LabelKey | None = None,
    ) -> Sequence[int]:
        """Per node (in ``nodes`` order), how many pods ``matcher`` accepts; terminating pods only count
        ``with_terminating`` (spreading leaves them out, pod affinity does not).

        Memoised under ``key``, which must identify ``matcher`` (e.g. namespace and selector): the filter
        and score of one decision, and the decisions after it on ``with_pod`` snapshots, count once.
        ``label`` says that ``matcher`` accepts exactly the pods of that namespace carrying that one label
        (a selector of one ``matchLabels`` entry): then the first count comes from a label index.
        """
        full_key = (key, with_terminating)
        hit = self._counts.pop(full_key, None)
        if hit is None:
            if label is not None and not with_terminating:
                index = self.carried(("label-index",), lambda: _label_index(self.nodes))
                counts = [node_counts.get(label, 0) for node_counts in index.per_node]
            else:
                counts = [
                    sum(1 for p in n.pods if (with_terminating or not p.terminating) and matcher(p))
                    for n in self.nodes
                ]
            hit = (matcher, counts, self._owner)
        self._counts[full_key] = hit  # re-inserted: the dict's order is the order of use
        return hit[1]

    def pods_with_affinity(self) -> Sequence[tuple[int, PodInfo]]:
        """(node index, pod) of every placed pod with pod (anti-)affinity terms; few in most clusters."""
        if not self._affinity_pods:
            found = [(i, p) for i, n in enumerate(self.nodes) for p in n.pods if p.has_pod_affinity]
            self._affinity_pods.append(found)
        return self._affinity_pods[0]

    def with_pod(self, pod: PodInfo, node_name: str) -> Snapshot:
        """A new snapshot where ``pod`` also runs on ``node_name`` (unknown nodes are ignored)."""
        i = self._index.get(node_name)
        if i is None:
            return self
        nodes = list(self.nodes)
        new_node = nodes[i] = nodes[i].with_pods((pod,))
        # The node order and names are unchanged: skip ``__post_init__``'s sort and index, share the index.
        out: Snapshot = object.__new__(Snapshot)
        owner = object()
        for name, value in (
            ("nodes", nodes),
            ("namespace_labels", self.namespace_labels),
            ("_index", self._index),
            ("_counts", {}),
            ("_affinity_pods", []),
            ("_static", self._static),
            ("_carried", {}),
            ("_owner", owner),
        ):
            object.__setattr__(out, name, value)
        # Carry only the most recently used selectors: old ones are seldom asked again. A list the new pod
        # does not change is shared (never mutated once made), only a changed one is copied.
        for key, (matcher, counts, held_by) in list(self._counts.items())[-CARRIED_COUNTS:]:
            if (key[1] or not pod.terminating) and matcher(pod):
                counts = list(counts)
                counts[i] += 1
                held_by = owner
            out._counts[key] = (matcher, counts, held_by)
        for state_key, (state, held_by) in list(self._carried.items())[-CARRIED_STATES:]:
            advanced = state.advance(i, new_node, pod)
            # A state ``advance`` returned anew may still share parts with ``state``: never owned.
            out._carried[state_key] = (advanced, held_by)
        # Both snapshots may now hold the same memo storage: neither may update it in place any more.
        object.__setattr__(self, "_owner", object())
        if self._affinity_pods:
            extra = [(i, pod)] if pod.has_pod_affinity else []
            out._affinity_pods.append([*self._affinity_pods[0], *extra])
        return out

    def place(self, pod: PodInfo, node_name: str) -> Snapshot:
        """``with_pod`` for the sole owner of this snapshot: the same snapshot value, built by reusing this
        one's storage (the nodes and the carried memos are updated in place, O(1) per memo rather than
        O(nodes)). This snapshot must not be used afterwards — it is consumed, and any later use raises
        ``ConsumedSnapshotError`` — nor anything read from it (``nodes``, ``matching_counts``…). Unknown
        nodes are ignored: then this snapshot is returned, unchanged and not consumed."""
        i = self._index.get(node_name)
        if i is None:
            return self
        nodes = cast(list[NodeInfo], self.nodes)
        new_node = nodes[i] = nodes[i].with_pods((pod,))
        owner, terminating = self._owner, pod.terminating
        counts_memo = self._counts
        # The same memos as ``with_pod`` carries: the most recently used ones.
        while len(counts_memo) > CARRIED_COUNTS:
            del counts_memo[next(iter(counts_memo))]
        for key, (matcher, counts, held_by) in counts_memo.items():
            if (key[1] or not terminating) and matcher(pod):
                if held_by is not owner:  # shared with another snapshot: this one gets its own copy, once
                    counts = list(counts)
                    counts_memo[key] = (matcher, counts, owner)  # an existing key: safe while iterating
                counts[i] += 1
        carried = self._carried
        while len(carried) > CARRIED_STATES:
            del carried[next(iter(carried))]
        for state_key, (state, held_by) in carried.items():
            if held_by is not owner:
                state = state.own()
                carried[state_key] = (state, owner)
            state.advance_in_place(i, new_node, pod)
        if self._affinity_pods and pod.has_pod_affinity:
            self._affinity_pods[0].append((i, pod))  # never shared: ``with_pod`` always makes a new list
        out: Snapshot = object.__new__(Snapshot)
        for name in (
            "nodes",
            "namespace_labels",
            "_index",
            "_counts",
            "_affinity_pods",
            "_static",
            "_carried",
            "_owner",
        ):
            object.__setattr__(out, name, getattr(self, name))
            object.__setattr__(self, name, _CONSUMED)
        return out

    @classmethod
    def assemble(
        cls,
        nodes: Iterable[NodeInfo],
        placements: Iterable[tuple[str, PodInfo]],
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Snapshot:
        """From typed views: ``placements`` pairs a node name with a pod on it (unknown nodes are ignored)."""
        by_node: dict[str, list[PodInfo]] = {}
        for node_name, pod in placements:
            by_node.setdefault(node_name, []).append(pod)
        return cls(
            tuple(node.with_pods(by_node.get(node.name, ())) for node in nodes), dict(namespace_labels or {})
        )

    @classmethod
    def build(
        cls, nodes: Iterable[JSON], pods: Iterable[JSON], assumed: Mapping[str, str] | None = None
    ) -> Snapshot:
        """From cached node and pod objects; ``assumed`` maps pod uid → node for bindings not yet seen."""
        placements = []
        for obj in pods:
            node_name = placement(obj, assumed)
            if node_name:
                placements.append((node_name, PodInfo.from_object(obj, strict=False)))
        return cls.assemble((NodeInfo.from_object(n) for n in nodes), placements)


def placement(obj: JSON, assumed: Mapping[str, str] | None = None) -> str:
    """The node a pod object holds resources on, or "" for none.

    Pods that finished (Succeeded/Failed) hold nothing; pods being deleted still do. ``assumed`` (pod uid →
    node) covers bindings the caller made that its cache does not show yet.
    """
    if _dict(obj.get("status")).get("phase") in TERMINAL_PHASES:
        return ""
    node_name = _dict(obj.get("spec")).get("nodeName")
    if not node_name and assumed:
        node_name = assumed.get(str(_dict(obj.get("metadata")).get("uid") or ""))
    return str(node_name or "")


# ---------------------------------------------------------------------------------------------- helpers


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items()}


def _amount(value: Any, convert: Callable[[QuantityValue], int], *, strict: bool) -> int:
    if value is None:
        return 0
    try:
        return convert(value)
    except QuantityError:
        if strict:
            raise
        return 0


def _container_requests(container: JSON, *, non_zero: bool, strict: bool) -> Resources:
    requests = _dict(_dict(container.get("resources")).get("requests"))
    cpu = _amount(requests.get("cpu"), to_millis, strict=strict)
    memory = _amount(requests.get("memory"), to_units, strict=strict)
    if non_zero:
        cpu = cpu or DEFAULT_MILLI_CPU_REQUEST
        memory = memory or DEFAULT_MEMORY_REQUEST
    return Resources(cpu, memory, 0)


def pod_requests(spec: JSON, *, non_zero: bool = False, strict: bool = True) -> Resources:
    """Effective requests of a pod, as upstream's ``resource.PodRequests``.

    App containers (and sidecars: init containers with ``restartPolicy: Always``) run together, so they
    add up; ordinary init containers run one at a time next to the sidecars started before them, so the
    pod needs the larger of the two. ``overhead`` comes on top. ``pods`` is always 1.
    """
    total = Resources()
    for c in _list(spec.get("containers")):
        if isinstance(c, dict):
            total = total + _container_requests(c, non_zero=non_zero, strict=strict)
    sidecars = Resources()
    init_peak = Resources()
    for c in _list(spec.get("initContainers")):
        if not isinstance(c, dict):
            continue
        req = _container_requests(c, non_zero=non_zero, strict=strict)
        if c.get("restartPolicy") == "Always":
            total = total + req
            sidecars = sidecars + req
            init_peak = init_peak.max(sidecars)
        else:
            init_peak = init_peak.max(req + sidecars)
    total = total.max(init_peak)
    overhead = _dict(spec.get("overhead"))
    total = total + Resources(
        _amount(overhead.get("cpu"), to_millis, strict=strict),
        _amount(overhead.get("memory"), to_units, strict=strict),
        0,
    )
    return Resources(total.milli_cpu, total.memory, 1)


def _host_ports(spec: JSON) -> tuple[HostPort, ...]:
    ports: list[HostPort] = []
    for c in _list(spec.get("containers")):
        if not isinstance(c, dict):
            continue
        for p in _list(c.get("ports")):
            if not isinstance(p, dict):
                continue
            try:
                host_port = int(p.get("hostPort") or 0)
            except (TypeError, ValueError):
                continue
            if host_port > 0:
                ports.append(
                    HostPort(str(p.get("hostIP") or "0.0.0.0"), str(p.get("protocol") or "TCP"), host_port)
                )
    return tuple(ports)


def _requirements(value: Any) -> tuple[NodeSelectorRequirement, ...]:
    return tuple(
        NodeSelectorRequirement(
            str(r.get("key") or ""),
            str(r.get("operator") or ""),
            tuple(str(v) for v in _list(r.get("values"))),
        )
        for r in _list(value)
        if isinstance(r, dict)
    )


def _selector_term(term: JSON) -> NodeSelectorTerm:
    return NodeSelectorTerm(
        _requirements(term.get("matchExpressions")), _requirements(term.get("matchFields"))
    )


def _selector_terms(selector: JSON) -> tuple[NodeSelectorTerm, ...]:
    return tuple(_selector_term(t) for t in _list(selector.get("nodeSelectorTerms")) if isinstance(t, dict))


def _affinity_terms(affinity: JSON, namespace: str) -> tuple[PodAffinityTerm, ...]:
    return tuple(
        PodAffinityTerm.parse(t, namespace)
        for t in _list(affinity.get("requiredDuringSchedulingIgnoredDuringExecution"))
        if isinstance(t, dict)
    )


def _weighted_terms(affinity: JSON, namespace: str) -> tuple[WeightedPodAffinityTerm, ...]:
    return tuple(
        WeightedPodAffinityTerm(
            _int(w.get("weight"), 0), PodAffinityTerm.parse(_dict(w.get("podAffinityTerm")), namespace)
        )
        for w in _list(affinity.get("preferredDuringSchedulingIgnoredDuringExecution"))
        if isinstance(w, dict)
    )


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
