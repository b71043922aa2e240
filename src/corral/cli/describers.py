"""``corral describe`` text: kubectl's multi-section descriptions, per kind, as pure functions of
``(object, related objects, events, now)``.

Layout follows kubectl's describers (``k8s.io/kubectl/pkg/describe``): ``Label:<tab>value`` lines indented
two spaces per level and aligned in tabwriter column blocks, a kind-specific middle, and an ``Events:``
section. Secret values are never rendered, only their sizes. Kinds without a describer of their own get
kubectl's generic layout (every field, labels split from camelCase). No IO; the command fetches.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from corral.api.printing.labels import format_label_selector, format_labels
from corral.api.quantity import format_bytes, format_millis, parse_quantity
from corral.cli.output import DESCRIBE_MIN_WIDTH, DESCRIBE_PADDING, tabwrite
from corral.util.humanize import human_duration

JSON = dict[str, Any]
_HIDDEN_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
PORTS_ANNOTATION = "corral.dev/ports"  # the agent's record of allocated host ports (corral.agent.ports)


@dataclass(slots=True)
class Related:
    """Objects a describer shows besides the described one (fetched by the command)."""

    events: list[JSON] = field(default_factory=list)
    endpoints: JSON | None = None
    endpoint_slices: list[JSON] | None = None
    """A Service's EndpointSlices (``kubernetes.io/service-name=<name>``), in the server's list order; kubectl
    1.32 describes a Service's endpoints from these. None: not fetched, fall back to ``endpoints``."""
    replica_sets: list[JSON] = field(default_factory=list)
    lease: JSON | None = None
    """A Node's heartbeat Lease (``kube-node-lease/<name>``)."""
    pods: list[JSON] = field(default_factory=list)
    """A Node's non-terminated pods."""


class Writer:
    """kubectl's PrefixWriter: lines indented two spaces per level, aligned when rendered."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, level: int, text: str) -> None:
        self.lines.append("  " * level + text)

    def render(self) -> str:
        aligned = tabwrite(self.lines, minwidth=DESCRIBE_MIN_WIDTH, padding=DESCRIBE_PADDING)
        return "\n".join(line.rstrip() for line in aligned) + "\n"


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def timestamp(value: Any) -> str:
    """RFC 1123 with numeric zone in local time, as kubectl prints CreationTimestamp."""
    moment = _parse_time(value)
    return moment.astimezone().strftime("%a, %d %b %Y %H:%M:%S %z") if moment else "<unset>"


def _age(value: Any, now: datetime) -> str:
    moment = _parse_time(value)
    return human_duration(now - moment) if moment else "<unknown>"


def _map_lines(
    w: Writer, level: int, title: str, values: Any, sep: str = "=", skip: tuple[str, ...] = ()
) -> None:
    """``Labels:  a=1`` then one more line per entry, or ``<none>``."""
    items = sorted((k, v) for k, v in _d(values).items() if k not in skip)
    if not items:
        w.write(level, f"{title}:\t<none>")
        return
    for i, (key, value) in enumerate(items):
        text = f"{key}{sep}{value}"
        w.write(level, f"{title}:\t{text}" if i == 0 else f"\t{text}")


def _header(w: Writer, obj: JSON, *, namespaced: bool, timestamps: bool = True) -> None:
    meta = _d(obj.get("metadata"))
    w.write(0, f"Name:\t{meta.get('name', '')}")
    if namespaced:
        w.write(0, f"Namespace:\t{meta.get('namespace', '')}")
    if timestamps:
        w.write(0, f"CreationTimestamp:\t{timestamp(meta.get('creationTimestamp'))}")
    _map_lines(w, 0, "Labels", meta.get("labels"))
    _map_lines(w, 0, "Annotations", meta.get("annotations"), sep=": ", skip=_HIDDEN_ANNOTATIONS)


def _controlled_by(w: Writer, obj: JSON) -> None:
    for ref in _l(_d(obj.get("metadata")).get("ownerReferences")):
        ref = _d(ref)
        if ref.get("controller"):
            w.write(0, f"Controlled By:\t{ref.get('kind')}/{ref.get('name')}")


# --- Containers and pod templates ----------------------------------------------------------------------


def _ports(container: JSON) -> str:
    shown = []
    for port in _l(container.get("ports")):
        port = _d(port)
        shown.append(f"{port.get('containerPort')}/{port.get('protocol') or 'TCP'}")  # no name, as kubectl
    return ", ".join(shown)


def _host_ports(container: JSON, allocated: dict[str, int]) -> str:
    """kubectl's ``Host Port`` column, except that a port Corral allocated (``corral.dev/ports``) is shown
    instead of the spec's ``hostPort`` 0: it is the port the process really listens on."""
    shown = []
    for port in _l(container.get("ports")):
        port = _d(port)
        protocol = port.get("protocol") or "TCP"
        key = f"{container.get('name')}/{port.get('containerPort')}/{protocol}"
        shown.append(f"{allocated.get(key, port.get('hostPort') or 0)}/{protocol}")
    return ", ".join(shown)


def _allocated_ports(pod: JSON) -> dict[str, int]:
    text = _d(_d(pod.get("metadata")).get("annotations")).get(PORTS_ANNOTATION)
    try:
        doc = json.loads(str(text)) if text else {}
    except ValueError:
        return {}
    return {str(k): v for k, v in doc.items() if isinstance(v, int)} if isinstance(doc, dict) else {}


_POD_FIELDS = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "metadata.uid": ("metadata", "uid"),
    "spec.nodeName": ("spec", "nodeName"),
    "spec.serviceAccountName": ("spec", "serviceAccountName"),
    "status.hostIP": ("status", "hostIP"),
    "status.podIP": ("status", "podIP"),
}


def _field_value(pod: JSON | None, path: str) -> str:
    """kubectl's ``EnvValueRetriever``: a fieldRef resolved against the pod (nothing for a template)."""
    if pod is None:
        return ""
    if path in _POD_FIELDS:
        section, key = _POD_FIELDS[path]
        return str(_d(pod.get(section)).get(key) or "")
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str(_d(_d(pod.get("metadata")).get(match.group(1))).get(match.group(2), ""))
    return ""


def _resource_value(container: JSON, ref: JSON) -> str:
    """kubectl's ``ExtractContainerResourceValue``; an unset limit reads ``node allocatable``."""
    resource = str(ref.get("resource", ""))
    section, _, name = resource.partition(".")
    value = _d(_d(container.get("resources")).get(section)).get(name)
    if value is None:
        return "node allocatable" if resource in ("limits.cpu", "limits.memory") else "0"
    try:
        amount = parse_quantity(str(value)) / parse_quantity(str(ref.get("divisor") or "1"))
    except (ValueError, ZeroDivisionError):
        return ""
    return str(math.ceil(amount))


def _env_lines(w: Writer, level: int, container: JSON, pod: JSON | None) -> None:
    env = _l(container.get("env"))
    if not env:
        w.write(level, "Environment:\t<none>")
        return
    w.write(level, "Environment:")
    for entry in env:
        entry = _d(entry)
        name = entry.get("name")
        source = _d(entry.get("valueFrom"))
        if not source:
            for i, line in enumerate(str(entry.get("value") or "").split("\n")):
                w.write(level + 1, f"{name}:\t{line}" if i == 0 else f"\t{line}")
        elif "fieldRef" in source:
            ref = _d(source["fieldRef"])
            path = str(ref.get("fieldPath", ""))
            value = _field_value(pod, path)
            w.write(level + 1, f"{name}:\t{value} ({ref.get('apiVersion') or 'v1'}:{path})")
        elif "resourceFieldRef" in source:
            ref = _d(source["resourceFieldRef"])
            w.write(level + 1, f"{name}:\t{_resource_value(container, ref)} ({ref.get('resource')})")
        elif "secretKeyRef" in source:
            ref = _d(source["secretKeyRef"])
            optional = "true" if ref.get("optional") else "false"
            w.write(
                level + 1,
                f"{name}:\t<set to the key '{ref.get('key')}' in secret '{ref.get('name')}'>\t"
                f"Optional: {optional}",
            )
        elif "configMapKeyRef" in source:
            ref = _d(source["configMapKeyRef"])
            optional = "true" if ref.get("optional") else "false"
            w.write(
                level + 1,
                f"{name}:\t<set to the key '{ref.get('key')}' of config map '{ref.get('name')}'>\t"
                f"Optional: {optional}",
            )


def _probe(probe: JSON) -> str:
    """kubectl's ``DescribeProbe``: ``http-get http://:8080/healthz delay=0s timeout=1s period=10s ...``."""
    attrs = (
        f"delay={probe.get('initialDelaySeconds', 0)}s timeout={probe.get('timeoutSeconds', 1)}s "
        f"period={probe.get('periodSeconds', 10)}s #success={probe.get('successThreshold', 1)} "
        f"#failure={probe.get('failureThreshold', 3)}"
    )
    if "exec" in probe:
        command = " ".join(str(c) for c in _l(_d(probe["exec"]).get("command")))
        return f"exec [{command}] {attrs}"
    if "httpGet" in probe:
        get = _d(probe["httpGet"])
        host, port = str(get.get("host") or ""), str(get.get("port", ""))
        hostport = (f"[{host}]:{port}" if ":" in host else f"{host}:{port}") if port else host
        return (
            f"http-get {str(get.get('scheme') or 'HTTP').lower()}://{hostport}{get.get('path') or ''} {attrs}"
        )
    if "tcpSocket" in probe:
        tcp = _d(probe["tcpSocket"])
        return f"tcp-socket {tcp.get('host') or ''}:{tcp.get('port', '')} {attrs}"
    if "grpc" in probe:
        grpc = _d(probe["grpc"])
        return f"grpc <pod>:{grpc.get('port')} {grpc.get('service') or ''} {attrs}"
    return f"unknown {attrs}"


def _resources(w: Writer, level: int, resources: JSON) -> None:
    for title, key in (("Limits", "limits"), ("Requests", "requests")):
        values = _d(resources.get(key))
        if values:
            w.write(level, f"{title}:")
            for name, value in sorted(values.items()):
                w.write(level + 1, f"{name}:\t{value}")


def _container(
    w: Writer, level: int, container: JSON, status: JSON | None, pod: JSON | None, allocated: dict[str, int]
) -> None:
    """One container under a ``Containers:`` line at ``level``, as kubectl's ``describeContainers``.

    ``pod`` is None for a pod template, whose container names are indented one space more; ``status`` is
    the container's status when the pod reports one (only then are ID, State, Ready and counts shown)."""
    if pod is None:
        w.write(level, f" {container.get('name')}:")
        inner = level + 1
    else:
        w.write(level + 1, f"{container.get('name')}:")
        inner = level + 2
    if status is not None:
        w.write(inner, f"Container ID:\t{status.get('containerID', '')}")
    w.write(inner, f"Image:\t{container.get('image', '')}")
    if status is not None:
        w.write(inner, f"Image ID:\t{status.get('imageID', '')}")
    ports, host_ports = _ports(container), _host_ports(container, allocated)
    w.write(inner, f"Ports:\t{ports}" if "," in ports else f"Port:\t{ports or '<none>'}")
    w.write(
        inner, f"Host Ports:\t{host_ports}" if "," in host_ports else f"Host Port:\t{host_ports or '<none>'}"
    )
    if container.get("restartPolicy"):
        w.write(inner, f"Restart Policy:\t{container.get('restartPolicy')}")
    for title, key in (("Command", "command"), ("Args", "args")):
        if _l(container.get(key)):
            w.write(inner, f"{title}:")
            for part in _l(container.get(key)):
                for line in str(part).split("\n"):
                    w.write(inner + 1, line)
    if container.get("workingDir"):
        w.write(inner, f"Working Dir:\t{container.get('workingDir')}")
    if status is not None:
        _container_state(w, inner, "State", _d(status.get("state")))
        if "terminated" in _d(status.get("lastState")):
            _container_state(w, inner, "Last State", _d(status.get("lastState")))
        w.write(inner, f"Ready:\t{'True' if status.get('ready') else 'False'}")
        w.write(inner, f"Restart Count:\t{status.get('restartCount', 0)}")
    _resources(w, inner, _d(container.get("resources")))
    for title, key in (
        ("Liveness", "livenessProbe"),
        ("Readiness", "readinessProbe"),
        ("Startup", "startupProbe"),
    ):
        if isinstance(container.get(key), dict):
            w.write(inner, f"{title}:\t{_probe(container[key])}")
    if _l(container.get("envFrom")):
        w.write(inner, "Environment Variables from:")
        for source in _l(container.get("envFrom")):
            source = _d(source)
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if key in source:
                    ref = _d(source[key])
                    prefix = f" with prefix '{source['prefix']}'" if source.get("prefix") else ""
                    w.write(
                        inner + 1,
                        f"{ref.get('name')}\t{kind}{prefix}\tOptional: "
                        f"{'true' if ref.get('optional') else 'false'}",
                    )
    _env_lines(w, inner, container, pod)
    mounts = sorted((_d(m) for m in _l(container.get("volumeMounts"))), key=lambda m: str(m.get("mountPath")))
    if not mounts:
        w.write(inner, "Mounts:\t<none>")
    else:
        w.write(inner, "Mounts:")
        for mount in mounts:
            flags = ["ro" if mount.get("readOnly") else "rw"]
            if mount.get("subPath"):
                flags.append(f'path="{mount.get("subPath")}"')
            w.write(inner + 1, f"{mount.get('mountPath')} from {mount.get('name')} ({','.join(flags)})")


def _container_state(w: Writer, level: int, title: str, state: JSON) -> None:
    if "running" in state:
        w.write(level, f"{title}:\tRunning")
        w.write(level + 1, f"Started:\t{timestamp(_d(state['running']).get('startedAt'))}")
    elif "waiting" in state:
        w.write(level, f"{title}:\tWaiting")
        if _d(state["waiting"]).get("reason"):
            w.write(level + 1, f"Reason:\t{_d(state['waiting']).get('reason')}")
    elif "terminated" in state:
        term = _d(state["terminated"])
        w.write(level, f"{title}:\tTerminated")
        if term.get("reason"):
            w.write(level + 1, f"Reason:\t{term.get('reason')}")
        if term.get("message"):
            w.write(level + 1, f"Message:\t{term.get('message')}")
        w.write(level + 1, f"Exit Code:\t{term.get('exitCode', 0)}")
        if term.get("signal"):
            w.write(level + 1, f"Signal:\t{term.get('signal')}")
        w.write(level + 1, f"Started:\t{timestamp(term.get('startedAt'))}")
        w.write(level + 1, f"Finished:\t{timestamp(term.get('finishedAt'))}")
    else:
        w.write(level, f"{title}:\tWaiting")


def _volumes(w: Writer, level: int, pod_spec: JSON) -> None:
    volumes = _l(pod_spec.get("volumes"))
    if not volumes:
        w.write(level, "Volumes:\t<none>")
        return
    w.write(level, "Volumes:")
    for volume in volumes:
        volume = _d(volume)
        kinds = [k for k in volume if k != "name"]
        w.write(level + 1, f"{volume.get('name')}:")
        if kinds:
            w.write(level + 2, f"Type:\t{kinds[0][:1].upper()}{kinds[0][1:]}")


def _pod_template(w: Writer, template: JSON) -> None:
    w.write(0, "Pod Template:")
    _map_lines(w, 1, "Labels", _d(template.get("metadata")).get("labels"))
    annotations = _d(template.get("metadata")).get("annotations")
    if annotations:  # kubectl's DescribePodTemplate shows them only when there are some
        _map_lines(w, 1, "Annotations", annotations, sep=": ")
    spec = _d(template.get("spec"))
    if spec.get("serviceAccountName"):
        w.write(1, f"Service Account:\t{spec.get('serviceAccountName')}")
    _containers(w, 1, "Containers", _l(spec.get("containers")), None, None)
    _volumes(w, 1, spec)
    _map_lines(w, 1, "Node-Selectors", spec.get("nodeSelector"))
    _list_lines(w, 1, "Tolerations", _tolerations(spec))


def pod_template_text(template: JSON) -> str:
    """``DescribePodTemplate`` on its own, as ``rollout history --revision N`` prints it."""
    w = Writer()
    _pod_template(w, template)
    return w.render()


def _containers(
    w: Writer, level: int, title: str, containers: list[Any], statuses: list[Any] | None, pod: JSON | None
) -> None:
    """A pod's (``pod`` given) or a pod template's containers."""
    if not containers:
        return
    by_name = {str(_d(s).get("name")): _d(s) for s in statuses or []}
    allocated = _allocated_ports(pod) if pod is not None else {}
    w.write(level, f"{title}:")
    for container in containers:
        container = _d(container)
        status = by_name.get(str(container.get("name"))) if pod is not None else None
        _container(w, level, container, status, pod, allocated)


def _conditions(w: Writer, conditions: list[Any], *, with_reason: bool) -> None:
    if not conditions:
        return
    w.write(0, "Conditions:")
    if with_reason:
        w.write(1, "Type\tStatus\tReason")
        w.write(1, "----\t------\t------")
    else:  # a pod's: no rule line, and kubectl pads each cell with a space
        w.write(1, "Type\tStatus")
    for cond in conditions:
        cond = _d(cond)
        if with_reason:
            w.write(1, f"{cond.get('type')}\t{cond.get('status')}\t{cond.get('reason', '')}")
        else:
            w.write(1, f"{cond.get('type')} \t{cond.get('status')} ")


# --- Kinds ---------------------------------------------------------------------------------------------


def _deployment(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    _header(w, obj, namespaced=True)
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}")
    replicas = spec.get("replicas", 1)
    w.write(
        0,
        f"Replicas:\t{replicas} desired | {status.get('updatedReplicas', 0)} updated | "
        f"{status.get('replicas', 0)} total | {status.get('availableReplicas', 0)} available | "
        f"{status.get('unavailableReplicas', 0)} unavailable",
    )
    strategy = _d(spec.get("strategy"))
    strategy_type = strategy.get("type") or "RollingUpdate"
    w.write(0, f"StrategyType:\t{strategy_type}")
    w.write(0, f"MinReadySeconds:\t{spec.get('minReadySeconds', 0)}")
    if strategy_type == "RollingUpdate":
        rolling = _d(strategy.get("rollingUpdate"))
        w.write(
            0,
            f"RollingUpdateStrategy:\t{rolling.get('maxUnavailable', '25%')} max unavailable, "
            f"{rolling.get('maxSurge', '25%')} max surge",
        )
    _pod_template(w, _d(spec.get("template")))
    _conditions(w, _l(status.get("conditions")), with_reason=True)
    new, old = _split_replica_sets(obj, related.replica_sets)
    w.write(0, f"OldReplicaSets:\t{', '.join(_rs_summary(rs) for rs in old) or '<none>'}")
    w.write(0, f"NewReplicaSet:\t{_rs_summary(new) if new else '<none>'}")


def _revision(obj: JSON) -> int:
    text = str(_d(_d(obj.get("metadata")).get("annotations")).get("deployment.kubernetes.io/revision", "0"))
    return int(text) if text.isdigit() else 0


def _split_replica_sets(deployment: JSON, replica_sets: list[JSON]) -> tuple[JSON | None, list[JSON]]:
    """The owned ReplicaSet with the highest revision is the new one; the others with replicas are old."""
    uid = _d(deployment.get("metadata")).get("uid")
    owned = [
        rs
        for rs in replica_sets
        if any(_d(ref).get("uid") == uid for ref in _l(_d(rs.get("metadata")).get("ownerReferences")))
    ]
    if not owned:
        return None, []
    owned.sort(key=_revision)
    new = owned[-1]
    old = [rs for rs in owned[:-1] if _d(rs.get("spec")).get("replicas", 0)]
    return new, old


def _rs_summary(rs: JSON) -> str:
    status = _d(rs.get("status"))
    return (
        f"{_d(rs.get('metadata')).get('name')} ({status.get('replicas', 0)}/"
        f"{_d(rs.get('spec')).get('replicas', 1)} replicas created)"
    )


def _replica_set(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    _header(w, obj, namespaced=True, timestamps=False)
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}")
    _controlled_by(w, obj)
    w.write(0, f"Replicas:\t{status.get('replicas', 0)} current / {spec.get('replicas', 1)} desired")
    w.write(0, f"Ready Replicas:\t{status.get('readyReplicas', 0)}")
    _pod_template(w, _d(spec.get("template")))
    _conditions(w, _l(status.get("conditions")), with_reason=True)


def _qos_class(pod: JSON) -> str:
    """``status.qosClass``, or kubectl's ``GetPodQOS`` when the pod has none yet."""
    reported = _d(pod.get("status")).get("qosClass")
    if reported:
        return str(reported)
    spec = _d(pod.get("spec"))
    containers = [_d(c) for c in _l(spec.get("containers")) + _l(spec.get("initContainers"))]
    requests = [_d(_d(c.get("resources")).get("requests")) for c in containers]
    limits = [_d(_d(c.get("resources")).get("limits")) for c in containers]
    if not any(r.get(k) for r in requests + limits for k in ("cpu", "memory")):
        return "BestEffort"
    guaranteed = all(
        lim.get(k) and str(req.get(k, lim.get(k))) == str(lim.get(k))
        for req, lim in zip(requests, limits, strict=True)
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _toleration(toleration: JSON) -> str:
    text = str(toleration.get("key") or "")
    if toleration.get("value"):
        text += f"={toleration.get('value')}"
    if toleration.get("effect"):
        text += f":{toleration.get('effect')}"
    if toleration.get("operator") == "Exists" and not toleration.get("value"):
        text += " op=Exists" if toleration.get("key") or toleration.get("effect") else "op=Exists"
    if toleration.get("tolerationSeconds") is not None:
        text += f" for {toleration.get('tolerationSeconds')}s"
    return text


def _tolerations(spec: JSON) -> list[str]:
    tolerations = sorted((_d(t) for t in _l(spec.get("tolerations"))), key=lambda t: str(t.get("key") or ""))
    return [_toleration(t) for t in tolerations]


def _list_lines(w: Writer, level: int, title: str, items: list[str]) -> None:
    """``Title:  first`` then one more line per item, or ``<none>`` (taints, tolerations)."""
    if not items:
        w.write(level, f"{title}:\t<none>")
        return
    for i, item in enumerate(items):
        w.write(level, f"{title}:\t{item}" if i == 0 else f"\t{item}")


def _pod(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    """kubectl's ``describePod``."""
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    w.write(0, f"Name:\t{meta.get('name', '')}")
    w.write(0, f"Namespace:\t{meta.get('namespace', '')}")
    if spec.get("priority") is not None:
        w.write(0, f"Priority:\t{spec.get('priority')}")
    if spec.get("priorityClassName"):
        w.write(0, f"Priority Class Name:\t{spec.get('priorityClassName')}")
    if spec.get("runtimeClassName"):
        w.write(0, f"Runtime Class Name:\t{spec.get('runtimeClassName')}")
    if spec.get("serviceAccountName"):
        w.write(0, f"Service Account:\t{spec.get('serviceAccountName')}")
    node = spec.get("nodeName")
    w.write(0, f"Node:\t{node}/{status.get('hostIP', '')}" if node else "Node:\t<none>")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{timestamp(status.get('startTime'))}")
    _map_lines(w, 0, "Labels", meta.get("labels"))
    _map_lines(w, 0, "Annotations", meta.get("annotations"), sep=": ", skip=_HIDDEN_ANNOTATIONS)
    phase = status.get("phase") or ""
    if meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        w.write(0, f"Status:\tTerminating (lasts {_age(meta.get('deletionTimestamp'), now)})")
        w.write(0, f"Termination Grace Period:\t{meta.get('deletionGracePeriodSeconds', 0)}s")
    else:
        w.write(0, f"Status:\t{phase}")
    if status.get("reason"):
        w.write(0, f"Reason:\t{status.get('reason')}")
    if status.get("message"):
        w.write(0, f"Message:\t{status.get('message')}")
    w.write(0, f"IP:\t{status.get('podIP', '')}")
    pod_ips = [str(_d(ip).get("ip", "")) for ip in _l(status.get("podIPs"))]
    if not pod_ips:
        w.write(0, "IPs:\t<none>")
    else:
        w.write(0, "IPs:")
        for ip in pod_ips:
            w.write(1, f"IP:\t{ip}")
    _controlled_by(w, obj)
    if status.get("nominatedNodeName"):
        w.write(0, f"NominatedNodeName:\t{status.get('nominatedNodeName')}")
    _containers(
        w, 0, "Init Containers", _l(spec.get("initContainers")), _l(status.get("initContainerStatuses")), obj
    )
    if _l(spec.get("containers")):
        _containers(w, 0, "Containers", _l(spec.get("containers")), _l(status.get("containerStatuses")), obj)
    else:
        w.write(0, "Containers: <none>")
    _conditions(w, _l(status.get("conditions")), with_reason=False)
    _volumes(w, 0, spec)
    w.write(0, f"QoS Class:\t{_qos_class(obj)}")
    _map_lines(w, 0, "Node-Selectors", spec.get("nodeSelector"))
    _list_lines(w, 0, "Tolerations", _tolerations(spec))


# --- Nodes ---------------------------------------------------------------------------------------------


def _node_roles(labels: JSON) -> list[str]:
    """kubectl's ``findNodeRoles``: ``node-role.kubernetes.io/<role>`` keys and ``kubernetes.io/role``."""
    roles = set()
    for key, value in labels.items():
        if key.startswith("node-role.kubernetes.io/") and key.split("/", 1)[1]:
            roles.add(key.split("/", 1)[1])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    return sorted(roles)


def _taint(taint: JSON) -> str:
    text = str(taint.get("key") or "")
    if taint.get("value"):
        text += f"={taint.get('value')}"
    return f"{text}:{taint.get('effect')}" if taint.get("effect") else text


def _quantity(value: Any) -> Fraction:
    try:
        return parse_quantity(str(value))
    except ValueError:
        return Fraction(0)


def _format_amount(resource: str, amount: Fraction, binary: bool) -> str:
    """A summed quantity as Go's ``Quantity.String`` prints it, near enough: millicores for cpu, the
    largest exact binary (when the inputs used one) or decimal suffix for the rest."""
    if resource == "cpu":
        return format_millis(math.ceil(amount * 1000))
    whole = math.ceil(amount)
    if whole == 0:
        return "0"
    if binary:
        return format_bytes(whole)
    for suffix, factor in (
        ("E", 10**18),
        ("P", 10**15),
        ("T", 10**12),
        ("G", 10**9),
        ("M", 10**6),
        ("k", 10**3),
    ):
        if whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)


_NODE_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def pod_requests_and_limits(pod: JSON) -> tuple[dict[str, Fraction], dict[str, Fraction], set[str]]:
    """kubectl's ``PodRequestsAndLimits``: containers summed, each init container a floor, plus overhead.

    Also returns the resources whose inputs used a binary suffix (``Mi``), for printing."""
    spec = _d(pod.get("spec"))
    binary: set[str] = set()

    def amounts(container: JSON, key: str) -> dict[str, Fraction]:
        values = _d(_d(container.get("resources")).get(key))
        for name, value in values.items():
            if "i" in str(value):
                binary.add(str(name))
        return {str(name): _quantity(value) for name, value in values.items()}

    totals: list[dict[str, Fraction]] = []
    for key in ("requests", "limits"):
        total: dict[str, Fraction] = {}
        for container in _l(spec.get("containers")):
            for name, value in amounts(_d(container), key).items():
                total[name] = total.get(name, Fraction(0)) + value
        for container in _l(spec.get("initContainers")):
            for name, value in amounts(_d(container), key).items():
                total[name] = max(total.get(name, Fraction(0)), value)
        for name, value in _d(spec.get("overhead")).items():
            total[str(name)] = total.get(str(name), Fraction(0)) + _quantity(value)
        totals.append(total)
    return totals[0], totals[1], binary


def _percent(amount: Fraction, of: Fraction) -> int:
    return int(amount / of * 100) if of else 0


def _node(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    """kubectl's ``describeNode``."""
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    w.write(0, f"Name:\t{meta.get('name', '')}")
    w.write(0, f"Roles:\t{','.join(_node_roles(_d(meta.get('labels')))) or '<none>'}")
    _map_lines(w, 0, "Labels", meta.get("labels"))
    _map_lines(w, 0, "Annotations", meta.get("annotations"), sep=": ", skip=_HIDDEN_ANNOTATIONS)
    w.write(0, f"CreationTimestamp:\t{timestamp(meta.get('creationTimestamp'))}")
    _list_lines(w, 0, "Taints", [_taint(_d(t)) for t in _l(spec.get("taints"))])
    w.write(0, f"Unschedulable:\t{'true' if spec.get('unschedulable') else 'false'}")
    lease = _d(_d(related.lease).get("spec"))
    w.write(0, "Lease:")
    w.write(1, f"HolderIdentity:\t{lease.get('holderIdentity') or '<unset>'}")
    w.write(1, f"AcquireTime:\t{timestamp(lease.get('acquireTime'))}")
    w.write(1, f"RenewTime:\t{timestamp(lease.get('renewTime'))}")
    conditions = [_d(c) for c in _l(status.get("conditions"))]
    if conditions:
        w.write(0, "Conditions:")
        w.write(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
        w.write(1, "----\t------\t-----------------\t------------------\t------\t-------")
        for c in conditions:
            w.write(
                1,
                f"{c.get('type')} \t{c.get('status')} \t{timestamp(c.get('lastHeartbeatTime'))} \t"
                f"{timestamp(c.get('lastTransitionTime'))} \t{c.get('reason', '')} \t{c.get('message', '')}",
            )
    w.write(0, "Addresses:")
    for address in _l(status.get("addresses")):
        address = _d(address)
        w.write(1, f"{address.get('type')}:\t{address.get('address')}")
    for title, key in (("Capacity", "capacity"), ("Allocatable", "allocatable")):
        values = _d(status.get(key))
        if values:
            w.write(0, f"{title}:")
            for name, value in sorted(values.items()):
                w.write(1, f"{name}:\t{value}")
    info = _d(status.get("nodeInfo"))
    w.write(0, "System Info:")
    for label, key in (
        ("Machine ID", "machineID"),
        ("System UUID", "systemUUID"),
        ("Boot ID", "bootID"),
        ("Kernel Version", "kernelVersion"),
        ("OS Image", "osImage"),
        ("Operating System", "operatingSystem"),
        ("Architecture", "architecture"),
        ("Container Runtime Version", "containerRuntimeVersion"),
        ("Kubelet Version", "kubeletVersion"),
        ("Kube-Proxy Version", "kubeProxyVersion"),
    ):
        w.write(1, f"{label}:\t{info.get(key, '')}")
    if spec.get("podCIDR"):
        w.write(0, f"PodCIDR:\t{spec.get('podCIDR')}")
    if _l(spec.get("podCIDRs")):
        w.write(0, f"PodCIDRs:\t{','.join(map(str, _l(spec.get('podCIDRs'))))}")
    if spec.get("providerID"):
        w.write(0, f"ProviderID:\t{spec.get('providerID')}")
    _node_pods(w, status, related.pods, now)


def _node_pods(w: Writer, status: JSON, pods: list[JSON], now: datetime) -> None:
    """kubectl's ``describeNodeResource``: the Non-terminated Pods and Allocated resources tables."""
    allocatable = _d(status.get("allocatable")) or _d(status.get("capacity"))
    cpu, memory = _quantity(allocatable.get("cpu", 0)), _quantity(allocatable.get("memory", 0))
    w.write(0, f"Non-terminated Pods:\t({len(pods)} in total)")
    w.write(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge")
    w.write(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---")
    sums: tuple[dict[str, Fraction], dict[str, Fraction]] = ({}, {})
    binary_all: set[str] = set()
    for pod in pods:
        requests, limits, binary = pod_requests_and_limits(pod)
        binary_all |= binary
        for total, values in zip(sums, (requests, limits), strict=True):
            for name, value in values.items():
                total[name] = total.get(name, Fraction(0)) + value
        cells = []
        for name, of in (("cpu", cpu), ("memory", memory)):
            for values in (requests, limits):
                amount = values.get(name, Fraction(0))
                cells.append(f"{_format_amount(name, amount, name in binary)} ({_percent(amount, of)}%)")
        pod_meta = _d(pod.get("metadata"))
        w.write(
            1,
            f"{pod_meta.get('namespace', '')}\t{pod_meta.get('name', '')}\t\t{chr(9).join(cells)}\t"
            f"{_age(pod_meta.get('creationTimestamp'), now)}",
        )
    w.write(0, "Allocated resources:")
    w.write(0, "  (Total limits may be over 100 percent, i.e., overcommitted.)")
    w.write(1, "Resource\tRequests\tLimits")
    w.write(1, "--------\t--------\t------")
    for name in _NODE_RESOURCES:
        of = _quantity(allocatable.get(name, 0))
        shown = [
            f"{_format_amount(name, total.get(name, Fraction(0)), name in binary_all)} "
            f"({_percent(total.get(name, Fraction(0)), of)}%)"
            for total in sums
        ]
        w.write(1, f"{name}\t{shown[0]}\t{shown[1]}")


def _join_host_port(host: str, port: Any) -> str:
    """``net.JoinHostPort``: IPv6 literals get brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_endpoints(endpoints: JSON | None, port_name: str | None) -> str:
    """kubectl's ``formatEndpoints``: ``ip:port`` of the ready addresses serving ``port_name`` (every port
    when None), the first three then ``+ N more...``; ``<none>`` when the object has no subsets."""
    subsets = _l(_d(endpoints).get("subsets"))
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit = 3
    more = False
    count = 0
    for subset in subsets:
        subset = _d(subset)
        addresses = [_d(a) for a in _l(subset.get("addresses"))]
        ports = [_d(p) for p in _l(subset.get("ports"))]
        if not ports:
            # A headless Service may have no ports: its endpoints are bare addresses.
            for address in addresses:
                if len(shown) == limit:
                    more = True
                if not more:
                    shown.append(str(address.get("ip", "")))
                count += 1
            continue
        for port in ports:
            if port_name is not None and str(port.get("name") or "") != port_name:
                continue
            for address in addresses:
                if len(shown) == limit:
                    more = True
                if not more:
                    shown.append(_join_host_port(str(address.get("ip", "")), port.get("port")))
                count += 1
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def format_endpoint_slices(slices: list[JSON], port_name: str | None) -> str:
    """kubectl 1.32's ``formatEndpointSlices``: ``ip:port`` of the ready endpoints (``ready`` unset counts
    as ready) serving ``port_name`` (every port when None), slice by slice, the first three then ``+ N
    more...``; ``<none>`` when there is no slice."""
    if not slices:
        return "<none>"
    shown: list[str] = []
    limit = 3
    more = False
    count = 0
    for endpoint_slice in slices:
        endpoints = [_d(e) for e in _l(_d(endpoint_slice).get("endpoints"))]
        ports = [_d(p) for p in _l(_d(endpoint_slice).get("ports"))]
        targets: list[Any] = (
            [None] if not ports else [p.get("port") for p in ports if _port_selected(p, port_name)]
        )
        for number in targets:
            for endpoint in endpoints:
                if len(shown) == limit:
                    more = True
                if _d(endpoint.get("conditions")).get("ready") is False:
                    continue
                addresses = _l(endpoint.get("addresses"))
                address = str(addresses[0]) if addresses else ""
                if not more:
                    shown.append(address if number is None else _join_host_port(address, number))
                count += 1
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def _port_selected(port: JSON, port_name: str | None) -> bool:
    return port_name is None or str(port.get("name") or "") == port_name


def _load_balancer_ingress(status: JSON) -> str:
    """``buildIngressString``: IP (or hostname) of each entry, with its ``ipMode`` in parentheses."""
    shown = []
    for entry in _l(_d(status.get("loadBalancer")).get("ingress")):
        entry = _d(entry)
        text = str(entry.get("ip") or entry.get("hostname") or "")
        if entry.get("ipMode"):
            text += f" ({entry['ipMode']})"
        shown.append(text)
    return ", ".join(shown)


def _service(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    spec = _d(obj.get("spec"))
    _header(w, obj, namespaced=True, timestamps=False)
    w.write(0, f"Selector:\t{format_labels(spec.get('selector'))}")
    w.write(0, f"Type:\t{spec.get('type') or 'ClusterIP'}")
    if spec.get("ipFamilyPolicy"):
        w.write(0, f"IP Family Policy:\t{spec.get('ipFamilyPolicy')}")
    families = _l(spec.get("ipFamilies"))
    w.write(0, f"IP Families:\t{','.join(map(str, families)) if families else '<none>'}")
    w.write(0, f"IP:\t{spec.get('clusterIP') or ''}")
    cluster_ips = _l(spec.get("clusterIPs"))
    w.write(0, f"IPs:\t{','.join(map(str, cluster_ips)) if cluster_ips else '<none>'}")
    if _l(spec.get("externalIPs")):
        w.write(0, f"External IPs:\t{','.join(map(str, _l(spec.get('externalIPs'))))}")
    if spec.get("loadBalancerIP"):
        w.write(0, f"IP:\t{spec.get('loadBalancerIP')}")
    if spec.get("type") == "ExternalName":
        w.write(0, f"External Name:\t{spec.get('externalName') or ''}")
    ingress = _load_balancer_ingress(_d(obj.get("status")))
    if ingress:
        w.write(0, f"LoadBalancer Ingress:\t{ingress}")
    for port in _l(spec.get("ports")):
        port = _d(port)
        name = str(port.get("name") or "<unset>")
        protocol = port.get("protocol") or "TCP"
        w.write(0, f"Port:\t{name}\t{port.get('port')}/{protocol}")
        w.write(0, f"TargetPort:\t{port.get('targetPort', port.get('port'))}/{protocol}")
        if port.get("nodePort"):
            w.write(0, f"NodePort:\t{name}\t{port.get('nodePort')}/{protocol}")
        port_name = str(port.get("name") or "")
        if related.endpoint_slices is not None:
            w.write(0, f"Endpoints:\t{format_endpoint_slices(related.endpoint_slices, port_name)}")
        else:
            w.write(0, f"Endpoints:\t{format_endpoints(related.endpoints, port_name)}")
    w.write(0, f"Session Affinity:\t{spec.get('sessionAffinity') or 'None'}")
    if spec.get("externalTrafficPolicy"):
        w.write(0, f"External Traffic Policy:\t{spec.get('externalTrafficPolicy')}")
    if spec.get("internalTrafficPolicy"):
        w.write(0, f"Internal Traffic Policy:\t{spec.get('internalTrafficPolicy')}")
    if spec.get("healthCheckNodePort"):
        w.write(0, f"HealthCheck NodePort:\t{spec.get('healthCheckNodePort')}")
    if _l(spec.get("loadBalancerSourceRanges")):
        ranges = ",".join(map(str, _l(spec.get("loadBalancerSourceRanges"))))
        w.write(0, f"LoadBalancer Source Ranges:\t{ranges}")


def _config_map(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    _header(w, obj, namespaced=True, timestamps=False)
    w.write(0, "")
    w.write(0, "Data")
    w.write(0, "====")
    for key, value in sorted(_d(obj.get("data")).items()):
        w.write(0, f"{key}:")
        w.write(0, "----")
        w.lines.extend(str(value).replace("\t", "    ").split("\n"))
        w.write(0, "")
    w.write(0, "BinaryData")
    w.write(0, "====")
    for key, value in sorted(_d(obj.get("binaryData")).items()):
        w.write(0, f"{key}:\t{_decoded_size(value)} bytes")
    w.write(0, "")


def _decoded_size(value: Any) -> int:
    try:
        return len(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        return len(str(value))


def _secret(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    _header(w, obj, namespaced=True, timestamps=False)
    w.write(0, "")
    w.write(0, f"Type:\t{obj.get('type') or 'Opaque'}")
    w.write(0, "")
    w.write(0, "Data")
    w.write(0, "====")
    for key, value in sorted(_d(obj.get("data")).items()):
        w.write(0, f"{key}:\t{_decoded_size(value)} bytes")  # sizes only: values never reach the terminal
    w.write(0, "")


def _namespace(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    _header(w, obj, namespaced=False, timestamps=False)
    w.write(0, "")
    w.write(0, f"Status:\t{_d(obj.get('status')).get('phase') or 'Active'}")


def _smart_label(key: str) -> str:
    """``holderIdentity`` → ``Holder Identity`` (kubectl's generic describer)."""
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).split()
    return " ".join(word[:1].upper() + word[1:] for word in words)


def _generic_value(w: Writer, level: int, key: str, value: Any) -> None:
    label = _smart_label(key)
    if isinstance(value, dict):
        w.write(level, f"{label}:")
        for sub_key, sub_value in value.items():
            _generic_value(w, level + 1, str(sub_key), sub_value)
    elif isinstance(value, list):
        w.write(level, f"{label}:")
        for item in value:
            if isinstance(item, dict):
                for sub_key, sub_value in item.items():
                    _generic_value(w, level + 1, str(sub_key), sub_value)
            else:
                w.write(level + 1, str(item))
    else:
        w.write(level, f"{label}:\t{value}")


def _generic(w: Writer, obj: JSON, related: Related, *, namespaced: bool) -> None:
    _header(w, obj, namespaced=namespaced, timestamps=False)
    w.write(0, f"API Version:\t{obj.get('apiVersion', '')}")
    w.write(0, f"Kind:\t{obj.get('kind', '')}")
    meta = _d(obj.get("metadata"))
    w.write(0, "Metadata:")
    for key in ("creationTimestamp", "generation", "resourceVersion", "uid"):
        if key in meta:
            w.write(1, f"{_smart_label(key)}:\t{meta[key]}")
    for key, value in obj.items():
        if key not in ("apiVersion", "kind", "metadata"):
            _generic_value(w, 0, key, value)


# --- HorizontalPodAutoscaler ---------------------------------------------------------------------------


def _hpa_metric_line(spec: JSON, current: JSON | None) -> tuple[str, str]:
    """One ``Metrics:`` row of kubectl's ``describeHorizontalPodAutoscalerV2``: (label, current / target)."""
    kind = spec.get("type")
    if kind == "Resource":
        source = _d(spec.get("resource"))
        target = _d(source.get("target"))
        now = _d(_d(_d(current).get("resource")).get("current"))
        if target.get("averageUtilization") is not None:
            shown = "<unknown>"
            if now.get("averageUtilization") is not None:
                shown = f"{now.get('averageUtilization')}% ({now.get('averageValue')})"
            label = f"resource {source.get('name')} on pods  (as a percentage of request)"
            return label, f"{shown} / {target.get('averageUtilization')}%"
        shown = str(now.get("averageValue") or "<unknown>")
        return f"resource {source.get('name')} on pods", f"{shown} / {target.get('averageValue')}"
    if kind == "Pods":
        source = _d(spec.get("pods"))
        now = _d(_d(_d(current).get("pods")).get("current"))
        shown = str(now.get("averageValue") or "<unknown>")
        name = _d(source.get("metric")).get("name")
        return f'"{name}" on pods', f"{shown} / {_d(source.get('target')).get('averageValue')}"
    if kind == "Object":
        source = _d(spec.get("object"))
        target = _d(source.get("target"))
        now = _d(_d(_d(current).get("object")).get("current"))
        described = _d(source.get("describedObject"))
        name = _d(source.get("metric")).get("name")
        label = f'"{name}" on {described.get("kind")}/{described.get("name")}'
        if target.get("averageValue") is not None:
            shown = str(now.get("averageValue") or "<unknown>")
            return label, f"{shown} / {target.get('averageValue')} (avg)"
        return label, f"{now.get('value') or '<unknown>'} / {target.get('value')}"
    return f"{kind} metric", "<unknown> / <unknown>"


def _hpa_rules(w: Writer, title: str, rules: JSON) -> None:
    if not rules:
        return
    w.write(1, f"{title}:")
    if rules.get("stabilizationWindowSeconds") is not None:
        w.write(2, f"Stabilization Window: {rules.get('stabilizationWindowSeconds')} seconds")
    if rules.get("selectPolicy"):
        w.write(2, f"Select Policy: {rules.get('selectPolicy')}")
    if rules.get("policies"):
        w.write(2, "Policies:")
        for policy in _l(rules.get("policies")):
            policy = _d(policy)
            w.write(
                3,
                f"- Type: {policy.get('type')}\tValue: {policy.get('value')}\t"
                f"Period: {policy.get('periodSeconds')} seconds",
            )


def _hpa(w: Writer, obj: JSON, related: Related, now: datetime) -> None:
    _header(w, obj, namespaced=True)
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    ref = _d(spec.get("scaleTargetRef"))
    w.write(0, f"Reference:\t{ref.get('kind')}/{ref.get('name')}")
    w.write(0, "Metrics:\t( current / target )")
    currents = _l(status.get("currentMetrics"))
    for index, metric in enumerate(_l(spec.get("metrics"))):
        current = _d(currents[index]) if index < len(currents) else None
        label, value = _hpa_metric_line(_d(metric), current)
        w.write(1, f"{label}:\t{value}")
    w.write(0, f"Min replicas:\t{spec.get('minReplicas', 1)}")
    w.write(0, f"Max replicas:\t{spec.get('maxReplicas')}")
    behavior = _d(spec.get("behavior"))
    if behavior:
        w.write(0, "Behavior:")
        _hpa_rules(w, "Scale Up", _d(behavior.get("scaleUp")))
        _hpa_rules(w, "Scale Down", _d(behavior.get("scaleDown")))
    w.write(
        0,
        f"{ref.get('kind')} pods:\t{status.get('currentReplicas', 0)} current / "
        f"{status.get('desiredReplicas', 0)} desired",
    )
    conditions = _l(status.get("conditions"))
    if conditions:
        w.write(0, "Conditions:")
        w.write(1, "Type\tStatus\tReason\tMessage")
        w.write(1, "----\t------\t------\t-------")
        for cond in conditions:
            cond = _d(cond)
            cells = (cond.get("type"), cond.get("status"), cond.get("reason"), cond.get("message"))
            w.write(1, "\t".join(str(c) for c in cells))


Describer = Callable[[Writer, JSON, Related, datetime], None]

DESCRIBERS: dict[str, Describer] = {
    "Deployment": _deployment,
    "ReplicaSet": _replica_set,
    "Pod": _pod,
    "Service": _service,
    "ConfigMap": _config_map,
    "Secret": _secret,
    "Namespace": _namespace,
    "Node": _node,
    "HorizontalPodAutoscaler": _hpa,
}


# --- Events --------------------------------------------------------------------------------------------


def _event_time(event: JSON) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")


def _events(w: Writer, events: list[JSON], now: datetime) -> None:
    if not events:
        w.write(0, "Events:\t<none>")
        return
    w.write(0, "Events:")
    w.write(1, "Type\tReason\tAge\tFrom\tMessage")
    w.write(1, "----\t------\t----\t----\t-------")
    for event in sorted(events, key=_event_time):
        first = event.get("firstTimestamp") or event.get("eventTime")
        last = event.get("lastTimestamp") or first
        count = event.get("count") or 1
        age = _age(last, now)
        if isinstance(count, int) and count > 1:
            age = f"{age} (x{count} over {_age(first, now)})"
        # kubectl 1.32's formatEventSource: the component only (the host is no longer shown)
        origin = _d(event.get("source")).get("component") or event.get("reportingComponent") or "<unknown>"
        message = " ".join(str(event.get("message", "")).split())
        w.write(1, f"{event.get('type', '')}\t{event.get('reason', '')}\t{age}\t{origin}\t{message}")


def describe(kind: str, obj: JSON, related: Related, now: datetime, *, namespaced: bool) -> str:
    """The whole description of ``obj`` (a ``kind``), ending with its Events section."""
    w = Writer()
    describer = DESCRIBERS.get(kind)
    if describer is None:
        _generic(w, obj, related, namespaced=namespaced)
    else:
        describer(w, obj, related, now)
    _events(w, related.events, now)
    return w.render()
