"""An immutable picture of the cluster for one scheduling decision: nodes, and the pods assigned to each.

Built from the informer caches (plain JSON dicts) into small typed views, so the filters and scores in
``feasibility`` and ``scoring`` never touch raw objects and never mutate cached ones. A snapshot is a value:
``with_pod`` returns a new snapshot with one more pod on a node, which is how a caller "assumes" a binding
before the watch reports it, and how tests place replicas one after another. Pure; no IO.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

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

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

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
        affinity = _dict(_dict(spec.get("affinity")).get("nodeAffinity")).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            labels=_str_map(meta.get("labels")),
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


@dataclass(frozen=True, slots=True)
class Snapshot:
    nodes: tuple[NodeInfo, ...] = ()
    """Sorted by name, so every walk over the nodes is deterministic."""
    _index: Mapping[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.nodes, key=lambda n: n.name))
        object.__setattr__(self, "nodes", ordered)
        object.__setattr__(self, "_index", {n.name: i for i, n in enumerate(ordered)})

    def node(self, name: str) -> NodeInfo | None:
        i = self._index.get(name)
        return None if i is None else self.nodes[i]

    def with_pod(self, pod: PodInfo, node_name: str) -> Snapshot:
        """A new snapshot where ``pod`` also runs on ``node_name`` (unknown nodes are ignored)."""
        i = self._index.get(node_name)
        if i is None:
            return self
        nodes = list(self.nodes)
        nodes[i] = nodes[i].with_pods((pod,))
        return Snapshot(tuple(nodes))

    @classmethod
    def assemble(cls, nodes: Iterable[NodeInfo], placements: Iterable[tuple[str, PodInfo]]) -> Snapshot:
        """From typed views: ``placements`` pairs a node name with a pod on it (unknown nodes are ignored)."""
        by_node: dict[str, list[PodInfo]] = {}
        for node_name, pod in placements:
            by_node.setdefault(node_name, []).append(pod)
        return cls(tuple(node.with_pods(by_node.get(node.name, ())) for node in nodes))

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


def _selector_terms(selector: JSON) -> tuple[NodeSelectorTerm, ...]:
    return tuple(
        NodeSelectorTerm(_requirements(t.get("matchExpressions")), _requirements(t.get("matchFields")))
        for t in _list(selector.get("nodeSelectorTerms"))
        if isinstance(t, dict)
    )
