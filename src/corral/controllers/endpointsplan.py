"""What the endpoints controller writes for one Service: its core/v1 Endpoints and its EndpointSlices.

Pure planning after upstream's endpoints, endpointslice and endpointslicemirroring controllers
(``pkg/controller/endpoint``, ``endpointslice``, ``endpointslicemirroring``), from ``(service, pods of its
namespace, existing Endpoints, existing slices)``; the IO side is ``corral.controllers.endpoints``.

Modes, decided per Service:

- **selector**: the Service selects pods. Pods count when they match, are not terminal (Succeeded/Failed)
  and have ``status.podIP``. The Endpoints object lists ready, non-terminating pods under ``addresses`` and
  not-ready ones under ``notReadyAddresses``; terminating pods are left out unless
  ``publishNotReadyAddresses``. Slices include terminating pods with ``{ready: false, serving: <pod Ready>,
  terminating: true}``, so the proxy can drain them.
- **mirror**: the Service has no selector; a hand-written Endpoints object is mirrored into slices (the
  data plane reads slices only), unless it carries ``endpointslice.kubernetes.io/skip-mirror``.
- **none**: the Service is gone or is an ExternalName; whatever this controller wrote for it goes.

Ports. Corral pods share the node's address and each declared ``containerPort`` gets a host port (the pod
annotation ``corral.dev/ports``), so a Service port's ``targetPort`` resolves *per pod*: a name to the pod's
port of that name and protocol, a number to the port declared with that number (or, undeclared, to the
number itself: the process listens on it directly), then to the allocated host port. Pods with the same
resolved ports share a subset and a slice; a name a pod does not declare leaves that pod out of that port
and is reported as a :class:`PortFailure` (the controller turns it into a ``FailedToResolvePort`` event).

Determinism: the output is a function of the input alone (sorted addresses, ports and slices; slice names
derived from the Service uid and the slice's ports), and an object that already has the desired content is
not written, so an unchanged input plans no write at all.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.agent.ports import PortKey, pod_port_mapping
from corral.controllers.claiming import owner_reference

JSON = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
MIRROR_CONTROLLER_NAME = "endpointslicemirroring-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MANAGED_ANNOTATION = "corral.dev/managed-by"
"""Marks an Endpoints object this controller wrote, so it is removed (and only it) when the Service goes or
loses its selector; a hand-written Endpoints object never carries it."""
ENDPOINTS_CONTROLLER = "endpoints-controller"
MAX_ENDPOINTS_PER_SLICE = 100

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet (no vowels, no 0/1/3)
_RESERVED_SLICE_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)
# Labels the mirroring controller does not copy from an Endpoints object (upstream's reserved set).
_NOT_MIRRORED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, SKIP_MIRROR_LABEL, HEADLESS_LABEL)


# ----------------------------------------------------------------------------------------- small readers


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool(_d(obj.get("metadata")).get("deletionTimestamp"))


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in _l(_d(pod.get("status")).get("conditions")):
        cond = _d(cond)
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def pod_ip(pod: Mapping[str, Any]) -> str:
    status = _d(pod.get("status"))
    ip = _s(status.get("podIP"))
    if not ip:
        ips = _l(status.get("podIPs"))
        ip = _s(_d(ips[0]).get("ip")) if ips else ""
    return ip


def address_type(address: str) -> str:
    """``IPv4`` or ``IPv6`` for an IP literal; anything else is not routable here (``""``)."""
    try:
        return "IPv6" if ipaddress.ip_address(address).version == 6 else "IPv4"
    except ValueError:
        return ""


def service_selector(service: Mapping[str, Any]) -> dict[str, str]:
    """The Service's selector; empty means none (Go drops an empty map on the wire: it is nil)."""
    raw = _d(_d(service.get("spec")).get("selector"))
    return {str(k): str(v) for k, v in raw.items()}


def selects(selector: Mapping[str, str], labels: Mapping[str, Any] | None) -> bool:
    """Whether a non-empty equality selector matches ``labels``."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def is_headless(service: Mapping[str, Any]) -> bool:
    return _d(service.get("spec")).get("clusterIP") == "None"


# ------------------------------------------------------------------------------------------------ ports


@dataclass(frozen=True, slots=True, order=True)
class ResolvedPort:
    """One Service port resolved for one pod: what goes into a subset's or slice's ``ports``."""

    name: str
    port: int
    protocol: str
    app_protocol: str = ""

    def endpoints_json(self) -> JSON:
        # core/v1 EndpointPort: name is omitempty.
        out: JSON = {"port": self.port, "protocol": self.protocol}
        if self.name:
            out = {"name": self.name, **out}
        if self.app_protocol:
            out["appProtocol"] = self.app_protocol
        return out

    def slice_json(self) -> JSON:
        # discovery/v1 EndpointPort: name is a pointer, "" is written out (as the API defaults it).
        out: JSON = {"name": self.name, "port": self.port, "protocol": self.protocol}
        if self.app_protocol:
            out["appProtocol"] = self.app_protocol
        return out


@dataclass(frozen=True, slots=True, order=True)
class PortFailure:
    """A Service port whose named ``targetPort`` a selected pod does not declare."""

    port_name: str
    target: str
    protocol: str
    pod: str

    def message(self, service_name: str) -> str:
        shown = f'"{self.port_name}"' if self.port_name else "<unnamed>"
        return (
            f'Failed to resolve targetPort "{self.target}" of port {shown} of service {service_name} for pod '
            f'{self.pod}: the pod declares no {self.protocol} container port named "{self.target}"; the pod '
            "is left out of that port's endpoints"
        )


def _pod_containers(pod: Mapping[str, Any]) -> list[JSON]:
    """Containers that serve: regular ones, then sidecars (init containers that keep running)."""
    spec = _d(pod.get("spec"))
    out = [_d(c) for c in _l(spec.get("containers"))]
    out += [_d(c) for c in _l(spec.get("initContainers")) if _d(c).get("restartPolicy") == "Always"]
    return out


def resolve_target_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The port on the pod's address that serves ``service_port``, or None when a named port is missing.

    A name resolves to the container port with that name and the Service port's protocol (``FindPort``);
    a number to the container port declared with it, else to itself. A declared port then maps to the host
    port the agent allocated (``corral.dev/ports``), else to its ``hostPort``, else to itself.
    """
    protocol = _s(service_port.get("protocol")) or "TCP"
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        target = service_port.get("port")
    mapping = pod_port_mapping(pod) or {}
    named = isinstance(target, str)
    for container in _pod_containers(pod):
        for port in _l(container.get("ports")):
            port = _d(port)
            if (_s(port.get("protocol")) or "TCP") != protocol:
                continue
            number = port.get("containerPort")
            if not isinstance(number, int) or isinstance(number, bool):
                continue
            if (named and port.get("name") == target) or (not named and number == target):
                allocated = mapping.get(PortKey(_s(container.get("name")), number, protocol))
                if allocated is not None:
                    return allocated
                host_port = port.get("hostPort")
                return host_port if isinstance(host_port, int) and host_port > 0 else number
    if named or not isinstance(target, int) or isinstance(target, bool):
        return None
    return target


def _service_ports(service: Mapping[str, Any]) -> list[JSON]:
    return [_d(p) for p in _l(_d(service.get("spec")).get("ports"))]


def _resolved_ports(
    pod: Mapping[str, Any], service: Mapping[str, Any], failures: list[PortFailure]
) -> tuple[ResolvedPort, ...]:
    out: list[ResolvedPort] = []
    for sp in _service_ports(service):
        protocol = _s(sp.get("protocol")) or "TCP"
        number = resolve_target_port(pod, sp)
        if number is None:
            failures.append(
                PortFailure(_s(sp.get("name")), str(sp.get("targetPort")), protocol, _pod_name(pod))
            )
            continue
        out.append(ResolvedPort(_s(sp.get("name")), number, protocol, _s(sp.get("appProtocol"))))
    return tuple(sorted(out))


def _pod_name(pod: Mapping[str, Any]) -> str:
    return _s(_d(pod.get("metadata")).get("name"))


# ------------------------------------------------------------------------------------------- pod views


def _target_ref(pod: Mapping[str, Any]) -> JSON:
    meta = _d(pod.get("metadata"))
    return {
        "kind": "Pod",
        "namespace": _s(meta.get("namespace")),
        "name": _s(meta.get("name")),
        "uid": _s(meta.get("uid")),
    }


def _hostname(pod: Mapping[str, Any], service: Mapping[str, Any]) -> str:
    """``ShouldSetHostname``: a pod's ``hostname`` shows when its ``subdomain`` is the Service's name."""
    spec = _d(pod.get("spec"))
    service_name = _s(_d(service.get("metadata")).get("name"))
    hostname = _s(spec.get("hostname"))
    return hostname if hostname and spec.get("subdomain") == service_name else ""


def candidate_pods(service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pods of the Service's namespace it selects that can have endpoints (not terminal, with an IP)."""
    selector = service_selector(service)
    namespace = _d(service.get("metadata")).get("namespace")
    out = []
    for pod in pods:
        meta = _d(pod.get("metadata"))
        if meta.get("namespace") != namespace or not selects(selector, _d(meta.get("labels"))):
            continue
        if _d(pod.get("status")).get("phase") in ("Succeeded", "Failed") or not pod_ip(pod):
            continue
        out.append(pod)
    return out


# ---------------------------------------------------------------------------------------------- results


@dataclass(slots=True)
class SlicePlan:
    create: list[JSON] = field(default_factory=list)
    update: list[JSON] = field(default_factory=list)
    """Full objects carrying the resourceVersion they were planned from (compare-and-set)."""
    delete: list[JSON] = field(default_factory=list)
    """Existing slices (as read) to delete."""

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


@dataclass(slots=True)
class ServicePlan:
    endpoints_create: JSON | None = None
    endpoints_update: JSON | None = None
    endpoints_delete: JSON | None = None
    slices: SlicePlan = field(default_factory=SlicePlan)
    failures: list[PortFailure] = field(default_factory=list)

    @property
    def writes(self) -> bool:
        return bool(
            self.endpoints_create or self.endpoints_update or self.endpoints_delete or not self.slices.empty
        )


# ----------------------------------------------------------------------------------- core/v1 Endpoints


def _endpoints_address(pod: Mapping[str, Any], service: Mapping[str, Any]) -> JSON:
    address: JSON = {"ip": pod_ip(pod)}
    hostname = _hostname(pod, service)
    if hostname:
        address["hostname"] = hostname
    node = _s(_d(pod.get("spec")).get("nodeName"))
    if node:
        address["nodeName"] = node
    address["targetRef"] = _target_ref(pod)
    return address


def _address_sort_key(address: Mapping[str, Any]) -> tuple[str, str, str]:
    ref = _d(address.get("targetRef"))
    return (_s(address.get("ip")), _s(ref.get("name")), _s(ref.get("uid")))


def desired_subsets(
    service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], failures: list[PortFailure] | None = None
) -> list[JSON]:
    """The Endpoints ``subsets``: pods grouped by their resolved ports, sorted (repacked)."""
    sink: list[PortFailure] = [] if failures is None else failures
    publish = _d(service.get("spec")).get("publishNotReadyAddresses") is True
    has_ports = bool(_service_ports(service))
    groups: dict[tuple[ResolvedPort, ...], tuple[list[JSON], list[JSON]]] = {}
    for pod in candidate_pods(service, pods):
        if is_terminating(pod) and not publish:
            continue
        ports = _resolved_ports(pod, service, sink)
        if has_ports and not ports:
            continue  # every port failed to resolve: nothing to reach this pod on
        ready, not_ready = groups.setdefault(ports, ([], []))
        (ready if publish or is_pod_ready(pod) else not_ready).append(_endpoints_address(pod, service))
    subsets: list[JSON] = []
    for ports in sorted(groups):
        ready, not_ready = groups[ports]
        subset: JSON = {}
        if ready:
            subset["addresses"] = sorted(ready, key=_address_sort_key)
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=_address_sort_key)
        if ports:
            subset["ports"] = [p.endpoints_json() for p in ports]
        subsets.append(subset)
    return subsets


def _endpoints_labels(service: Mapping[str, Any]) -> dict[str, str]:
    labels = {str(k): str(v) for k, v in _d(_d(service.get("metadata")).get("labels")).items()}
    labels.pop(HEADLESS_LABEL, None)
    if is_headless(service):
        labels[HEADLESS_LABEL] = ""
    labels[SKIP_MIRROR_LABEL] = "true"
    return labels


def _plan_endpoints_object(
    service: Mapping[str, Any], existing: Mapping[str, Any] | None, subsets: list[JSON], plan: ServicePlan
) -> None:
    meta = _d(service.get("metadata"))
    labels = _endpoints_labels(service)
    if existing is None:
        body: JSON = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "labels": labels,
                "annotations": {MANAGED_ANNOTATION: ENDPOINTS_CONTROLLER},
            },
        }
        if subsets:
            body["subsets"] = subsets
        plan.endpoints_create = body
        return
    emeta = _d(existing.get("metadata"))
    annotations = _d(emeta.get("annotations"))
    if (
        _l(existing.get("subsets")) == subsets
        and _d(emeta.get("labels")) == labels
        and annotations.get(MANAGED_ANNOTATION) == ENDPOINTS_CONTROLLER
    ):
        return
    updated = copy.deepcopy(dict(existing))
    umeta = updated.setdefault("metadata", {})
    umeta["labels"] = labels
    umeta["annotations"] = {**annotations, MANAGED_ANNOTATION: ENDPOINTS_CONTROLLER}
    if subsets:
        updated["subsets"] = subsets
    else:
        updated.pop("subsets", None)
    plan.endpoints_update = updated


def is_managed_endpoints(endpoints: Mapping[str, Any] | None) -> bool:
    if endpoints is None:
        return False
    annotations = _d(_d(endpoints.get("metadata")).get("annotations"))
    return annotations.get(MANAGED_ANNOTATION) == ENDPOINTS_CONTROLLER


# ------------------------------------------------------------------------------------- EndpointSlices

GroupKey = tuple[str, tuple[ResolvedPort, ...]]
"""A slice's identity apart from its endpoints: address type and (sorted) ports."""


def _slice_endpoint(pod: Mapping[str, Any], service: Mapping[str, Any]) -> JSON:
    serving = is_pod_ready(pod)
    terminating = is_terminating(pod)
    publish = _d(service.get("spec")).get("publishNotReadyAddresses") is True
    # Upstream: "ready" is never true for a terminating pod, unless publishNotReadyAddresses.
    ready = publish or (serving and not terminating)
    endpoint: JSON = {
        "addresses": [pod_ip(pod)],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    hostname = _hostname(pod, service)
    if hostname:
        endpoint["hostname"] = hostname
    endpoint["targetRef"] = _target_ref(pod)
    node = _s(_d(pod.get("spec")).get("nodeName"))
    if node:
        endpoint["nodeName"] = node
    return endpoint


def _endpoint_identity(endpoint: Mapping[str, Any]) -> tuple[str, ...]:
    ref = _d(endpoint.get("targetRef"))
    addresses = tuple(_s(a) for a in _l(endpoint.get("addresses")))
    return (*addresses, _s(ref.get("namespace")), _s(ref.get("name")), _s(ref.get("uid")))


def desired_slice_groups(
    service: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], failures: list[PortFailure] | None = None
) -> dict[GroupKey, list[JSON]]:
    """Slice endpoints of the selected pods (terminating ones included), grouped by address type and ports."""
    sink: list[PortFailure] = [] if failures is None else failures
    has_ports = bool(_service_ports(service))
    groups: dict[GroupKey, list[JSON]] = {}
    for pod in candidate_pods(service, pods):
        family = address_type(pod_ip(pod))
        if not family:
            continue
        ports = _resolved_ports(pod, service, sink)
        if has_ports and not ports:
            continue
        groups.setdefault((family, ports), []).append(_slice_endpoint(pod, service))
    return groups


def mirrored_slice_groups(endpoints: Mapping[str, Any]) -> dict[GroupKey, list[JSON]]:
    """Slice endpoints of a hand-written Endpoints object (``endpointslicemirroring``)."""
    groups: dict[GroupKey, dict[tuple[str, ...], JSON]] = {}
    for subset in _l(endpoints.get("subsets")):
        subset = _d(subset)
        ports: list[ResolvedPort] = []
        for port in _l(subset.get("ports")):
            port = _d(port)
            number = port.get("port")
            if not isinstance(number, int) or isinstance(number, bool):
                continue
            ports.append(
                ResolvedPort(
                    _s(port.get("name")),
                    number,
                    _s(port.get("protocol")) or "TCP",
                    _s(port.get("appProtocol")),
                )
            )
        key_ports = tuple(sorted(set(ports)))
        for list_name, ready in (("addresses", True), ("notReadyAddresses", False)):
            for address in _l(subset.get(list_name)):
                address = _d(address)
                ip = _s(address.get("ip"))
                family = address_type(ip)
                if not family:
                    continue
                endpoint: JSON = {"addresses": [ip], "conditions": {"ready": ready}}
                if _s(address.get("hostname")):
                    endpoint["hostname"] = address["hostname"]
                if isinstance(address.get("targetRef"), dict):
                    endpoint["targetRef"] = copy.deepcopy(address["targetRef"])
                if _s(address.get("nodeName")):
                    endpoint["nodeName"] = address["nodeName"]
                # An address listed twice keeps its first (ready) entry, as upstream's dedup does.
                groups.setdefault((family, key_ports), {}).setdefault(_endpoint_identity(endpoint), endpoint)
    return {key: list(found.values()) for key, found in groups.items()}


def slice_group_key(endpoint_slice: Mapping[str, Any]) -> GroupKey:
    ports = []
    for port in _l(endpoint_slice.get("ports")):
        port = _d(port)
        number = port.get("port")
        ports.append(
            ResolvedPort(
                _s(port.get("name")),
                number if isinstance(number, int) and not isinstance(number, bool) else 0,
                _s(port.get("protocol")) or "TCP",
                _s(port.get("appProtocol")),
            )
        )
    return (_s(endpoint_slice.get("addressType")), tuple(sorted(ports)))


def slice_manager(endpoint_slice: Mapping[str, Any]) -> str:
    return _s(_d(_d(endpoint_slice.get("metadata")).get("labels")).get(MANAGED_BY_LABEL))


def _slice_name(base: str, salt: str, key: GroupKey, index: int) -> str:
    digest = hashlib.sha256(f"{salt}|{key!r}|{index}".encode()).digest()
    suffix = "".join(_NAME_ALPHABET[b % len(_NAME_ALPHABET)] for b in digest[:5])
    return f"{base[:57]}-{suffix}"


@dataclass(frozen=True, slots=True)
class SliceOwner:
    """Who the slices of one Service belong to: labels, ownerReference, naming."""

    namespace: str
    base_name: str
    salt: str
    labels: dict[str, str]
    owner_reference: JSON
    manager: str


def service_slice_owner(service: Mapping[str, Any]) -> SliceOwner:
    meta = _d(service.get("metadata"))
    labels = {str(k): str(v) for k, v in _d(meta.get("labels")).items() if k not in _RESERVED_SLICE_LABELS}
    labels[SERVICE_NAME_LABEL] = _s(meta.get("name"))
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    if is_headless(service):
        labels[HEADLESS_LABEL] = ""
    return SliceOwner(
        namespace=_s(meta.get("namespace")),
        base_name=_s(meta.get("name")),
        salt=_s(meta.get("uid")),
        labels=labels,
        owner_reference=owner_reference(service, "v1", "Service"),
        manager=CONTROLLER_NAME,
    )


def mirror_slice_owner(service: Mapping[str, Any], endpoints: Mapping[str, Any]) -> SliceOwner:
    meta = _d(endpoints.get("metadata"))
    labels = {str(k): str(v) for k, v in _d(meta.get("labels")).items() if k not in _NOT_MIRRORED_LABELS}
    labels[SERVICE_NAME_LABEL] = _s(_d(service.get("metadata")).get("name"))
    labels[MANAGED_BY_LABEL] = MIRROR_CONTROLLER_NAME
    return SliceOwner(
        namespace=_s(meta.get("namespace")),
        base_name=_s(meta.get("name")),
        salt=_s(meta.get("uid")),
        labels=labels,
        owner_reference=owner_reference(endpoints, "v1", "Endpoints"),
        manager=MIRROR_CONTROLLER_NAME,
    )


def _slice_content(key: GroupKey, endpoints: list[JSON]) -> JSON:
    family, ports = key
    return {
        "addressType": family,
        "endpoints": endpoints,
        "ports": [p.slice_json() for p in ports],
    }


def _with_content(existing: Mapping[str, Any], owner: SliceOwner, content: JSON) -> JSON | None:
    """``existing`` with the desired labels, owner and content, or None when it has them already."""
    meta = _d(existing.get("metadata"))
    if (
        _d(meta.get("labels")) == owner.labels
        and _l(meta.get("ownerReferences")) == [owner.owner_reference]
        and all(existing.get(k) == v for k, v in content.items())
    ):
        return None
    updated = copy.deepcopy(dict(existing))
    umeta = updated.setdefault("metadata", {})
    umeta["labels"] = dict(owner.labels)
    umeta["ownerReferences"] = [dict(owner.owner_reference)]
    updated.update(copy.deepcopy(content))
    return updated


def plan_slices(
    owner: SliceOwner,
    groups: Mapping[GroupKey, Sequence[JSON]],
    existing: Sequence[Mapping[str, Any]],
    taken_names: Container[str] = (),
    max_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
) -> SlicePlan:
    """Converge ``existing`` (this owner's slices) on ``groups``, moving as few endpoints as possible.

    An endpoint stays in the slice that has it; new endpoints fill slices of their group with room, then
    new slices of at most ``max_per_slice``; emptied slices are deleted. New slices get deterministic names
    (``<base>-<5 chars>`` from the owner's uid, the group and a counter) so a create repeated on a stale
    cache fails with AlreadyExists instead of duplicating; ``taken_names`` are names to avoid.
    """
    plan = SlicePlan()
    by_key: dict[GroupKey, list[Mapping[str, Any]]] = {}
    for endpoint_slice in sorted(existing, key=lambda s: _s(_d(s.get("metadata")).get("name"))):
        by_key.setdefault(slice_group_key(endpoint_slice), []).append(endpoint_slice)
    used_names = {_s(_d(s.get("metadata")).get("name")) for s in existing}
    for key in sorted(set(by_key) | set(groups)):
        wanted = {_endpoint_identity(e): e for e in groups.get(key, ())}
        placed: set[tuple[str, ...]] = set()
        filled: list[tuple[Mapping[str, Any] | None, list[JSON]]] = []
        for endpoint_slice in by_key.get(key, []):
            keep: list[JSON] = []
            for endpoint in _l(endpoint_slice.get("endpoints")):
                identity = _endpoint_identity(_d(endpoint))
                if identity in wanted and identity not in placed and len(keep) < max_per_slice:
                    keep.append(wanted[identity])
                    placed.add(identity)
            filled.append((endpoint_slice, keep))
        remaining = [wanted[i] for i in sorted(wanted) if i not in placed]
        for _, keep in filled:
            while remaining and len(keep) < max_per_slice:
                keep.append(remaining.pop(0))
        while remaining:
            filled.append((None, remaining[:max_per_slice]))
            remaining = remaining[max_per_slice:]
        index = 0
        for current, endpoints in filled:
            endpoints = sorted(endpoints, key=_endpoint_identity)
            content = _slice_content(key, endpoints)
            if current is not None:
                if not endpoints:
                    plan.delete.append(dict(current))
                elif (updated := _with_content(current, owner, content)) is not None:
                    plan.update.append(updated)
                continue
            while True:
                name = _slice_name(owner.base_name, owner.salt, key, index)
                index += 1
                if name not in used_names and name not in taken_names:
                    break
            used_names.add(name)
            plan.create.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": name,
                        "namespace": owner.namespace,
                        "labels": dict(owner.labels),
                        "ownerReferences": [dict(owner.owner_reference)],
                    },
                    **content,
                }
            )
    return plan


# -------------------------------------------------------------------------------------------- the plan


def plan_service(
    service: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    endpoints: Mapping[str, Any] | None,
    slices: Sequence[Mapping[str, Any]],
    taken_names: Container[str] = (),
    max_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
) -> ServicePlan:
    """One reconcile of one Service key; ``service`` is None when the Service is gone.

    ``pods``: the pods of the Service's namespace; ``endpoints``: the Endpoints object of the same name, if
    any; ``slices``: the slices labelled ``kubernetes.io/service-name: <name>`` in that namespace (slices of
    other managers are passed too and never touched).
    """
    plan = ServicePlan()
    ours = [s for s in slices if slice_manager(s) == CONTROLLER_NAME]
    mirrored = [s for s in slices if slice_manager(s) == MIRROR_CONTROLLER_NAME]
    spec = _d(_d(service).get("spec")) if service is not None else {}
    if service is None or spec.get("type") == "ExternalName":
        if is_managed_endpoints(endpoints):
            plan.endpoints_delete = dict(endpoints) if endpoints is not None else None
        plan.slices.delete = [dict(s) for s in (*ours, *mirrored)]
        return plan
    if not service_selector(service):
        # Hand-written endpoints: leave them alone, mirror them into slices for the data plane.
        if is_managed_endpoints(endpoints):
            # Left over from when the Service had a selector: ours, and stale.
            plan.endpoints_delete = dict(endpoints) if endpoints is not None else None
            endpoints = None
        plan.slices.delete = [dict(s) for s in ours]
        if (
            endpoints is None
            or _d(_d(endpoints.get("metadata")).get("labels")).get(SKIP_MIRROR_LABEL) == "true"
        ):
            plan.slices.delete += [dict(s) for s in mirrored]
            return plan
        mirror = plan_slices(
            mirror_slice_owner(service, endpoints),
            mirrored_slice_groups(endpoints),
            mirrored,
            taken_names,
            max_per_slice,
        )
        plan.slices.create, plan.slices.update = mirror.create, mirror.update
        plan.slices.delete += mirror.delete
        return plan
    _plan_endpoints_object(service, endpoints, desired_subsets(service, pods), plan)
    # Slices see every candidate pod (terminating ones too), so their pass reports every port failure.
    failures: list[PortFailure] = []
    groups = desired_slice_groups(service, pods, failures)
    owned = plan_slices(service_slice_owner(service), groups, ours, taken_names, max_per_slice)
    plan.slices.create, plan.slices.update = owned.create, owned.update
    plan.slices.delete = [dict(s) for s in mirrored] + owned.delete
    plan.failures = sorted(set(failures))
    return plan
