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
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.api.printing.labels import format_label_selector, format_labels
from corral.cli.output import DESCRIBE_MIN_WIDTH, DESCRIBE_PADDING, tabwrite
from corral.util.humanize import human_duration

JSON = dict[str, Any]
_HIDDEN_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


@dataclass(slots=True)
class Related:
    """Objects a describer shows besides the described one (fetched by the command)."""

    events: list[JSON] = field(default_factory=list)
    endpoints: JSON | None = None
    replica_sets: list[JSON] = field(default_factory=list)


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
        text = f"{port.get('containerPort')}/{port.get('protocol') or 'TCP'}"
        shown.append(f"{text} ({port['name']})" if port.get("name") else text)
    return ", ".join(shown) or "<none>"


def _env_value(entry: JSON) -> str:
    if "value" in entry:
        return str(entry.get("value"))
    source = _d(entry.get("valueFrom"))
    if "configMapKeyRef" in source:
        ref = _d(source["configMapKeyRef"])
        return f"<set to the key '{ref.get('key')}' of config map '{ref.get('name')}'>"
    if "secretKeyRef" in source:
        ref = _d(source["secretKeyRef"])
        return f"<set to the key '{ref.get('key')}' in secret '{ref.get('name')}'>"
    if "fieldRef" in source:
        ref = _d(source["fieldRef"])
        return f"({ref.get('apiVersion', 'v1')}:{ref.get('fieldPath')})"
    if "resourceFieldRef" in source:
        ref = _d(source["resourceFieldRef"])
        return f"{ref.get('resource')}"
    return ""


def _container(w: Writer, level: int, container: JSON, status: JSON | None) -> None:
    """One container under a ``Containers:`` line at ``level``; a pod template's (``status`` None) names are
    indented one space less than a pod's, as kubectl does."""
    if status is None:
        w.write(level, f" {container.get('name')}:")
        inner = level + 1
    else:
        w.write(level + 1, f"{container.get('name')}:")
        inner = level + 2
    if status is not None and status.get("containerID"):
        w.write(inner, f"Container ID:\t{status.get('containerID')}")
    w.write(inner, f"Image:\t{container.get('image') or '<none>'}")
    w.write(inner, f"Port:\t{_ports(container)}")
    for title, key in (("Command", "command"), ("Args", "args")):
        if _l(container.get(key)):
            w.write(inner, f"{title}:")
            for part in _l(container.get(key)):
                w.write(inner + 1, str(part))
    if container.get("workingDir"):
        w.write(inner, f"Working Dir:\t{container.get('workingDir')}")
    if status is not None:
        _container_state(w, inner, "State", _d(status.get("state")))
        if _d(status.get("lastState")):
            _container_state(w, inner, "Last State", _d(status.get("lastState")))
        w.write(inner, f"Ready:\t{'True' if status.get('ready') else 'False'}")
        w.write(inner, f"Restart Count:\t{status.get('restartCount', 0)}")
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
    env = _l(container.get("env"))
    if not env:
        w.write(inner, "Environment:\t<none>")
    else:
        w.write(inner, "Environment:")
        for entry in env:
            entry = _d(entry)
            w.write(inner + 1, f"{entry.get('name')}:\t{_env_value(entry)}")
    mounts = _l(container.get("volumeMounts"))
    if not mounts:
        w.write(inner, "Mounts:\t<none>")
    else:
        w.write(inner, "Mounts:")
        for mount in mounts:
            mount = _d(mount)
            mode = "ro" if mount.get("readOnly") else "rw"
            w.write(inner + 1, f"{mount.get('mountPath')} from {mount.get('name')} ({mode})")


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
        w.write(level + 1, f"Exit Code:\t{term.get('exitCode', 0)}")
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
    spec = _d(template.get("spec"))
    if spec.get("serviceAccountName"):
        w.write(1, f"Service Account:\t{spec.get('serviceAccountName')}")
    _containers(w, 1, "Containers", _l(spec.get("containers")), None)
    _volumes(w, 1, spec)


def _containers(w: Writer, level: int, title: str, containers: list[Any], statuses: list[Any] | None) -> None:
    """``statuses`` is None for a pod template (no state lines), a list for a pod."""
    if not containers:
        return
    by_name = {str(_d(s).get("name")): _d(s) for s in statuses or []}
    w.write(level, f"{title}:")
    for container in containers:
        container = _d(container)
        status = None if statuses is None else by_name.get(str(container.get("name")), {})
        _container(w, level, container, status)


def _conditions(w: Writer, conditions: list[Any], *, with_reason: bool) -> None:
    if not conditions:
        return
    w.write(0, "Conditions:")
    if with_reason:
        w.write(1, "Type\tStatus\tReason")
        w.write(1, "----\t------\t------")
    else:
        w.write(1, "Type\tStatus")
        w.write(1, "----\t------")
    for cond in conditions:
        cond = _d(cond)
        row = f"{cond.get('type')}\t{cond.get('status')}"
        w.write(1, f"{row}\t{cond.get('reason', '')}" if with_reason else row)


# --- Kinds ---------------------------------------------------------------------------------------------


def _deployment(w: Writer, obj: JSON, related: Related) -> None:
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


def _replica_set(w: Writer, obj: JSON, related: Related) -> None:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    _header(w, obj, namespaced=True, timestamps=False)
    w.write(0, f"Selector:\t{format_label_selector(spec.get('selector'))}")
    _controlled_by(w, obj)
    w.write(0, f"Replicas:\t{status.get('replicas', 0)} current / {spec.get('replicas', 1)} desired")
    w.write(0, f"Ready Replicas:\t{status.get('readyReplicas', 0)}")
    _pod_template(w, _d(spec.get("template")))
    _conditions(w, _l(status.get("conditions")), with_reason=True)


def _pod(w: Writer, obj: JSON, related: Related) -> None:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    w.write(0, f"Name:\t{meta.get('name', '')}")
    w.write(0, f"Namespace:\t{meta.get('namespace', '')}")
    w.write(0, f"Priority:\t{spec.get('priority', 0)}")
    w.write(0, f"Service Account:\t{spec.get('serviceAccountName') or 'default'}")
    node = spec.get("nodeName")
    w.write(0, f"Node:\t{node}/{status.get('hostIP', '')}" if node else "Node:\t<none>")
    if status.get("startTime"):
        w.write(0, f"Start Time:\t{timestamp(status.get('startTime'))}")
    _map_lines(w, 0, "Labels", meta.get("labels"))
    _map_lines(w, 0, "Annotations", meta.get("annotations"), sep=": ", skip=_HIDDEN_ANNOTATIONS)
    phase = status.get("phase") or "Pending"
    w.write(0, f"Status:\t{'Terminating' if meta.get('deletionTimestamp') else phase}")
    if status.get("reason"):
        w.write(0, f"Reason:\t{status.get('reason')}")
    if status.get("message"):
        w.write(0, f"Message:\t{status.get('message')}")
    w.write(0, f"IP:\t{status.get('podIP', '')}")
    _controlled_by(w, obj)
    _containers(
        w, 0, "Init Containers", _l(spec.get("initContainers")), _l(status.get("initContainerStatuses"))
    )
    _containers(w, 0, "Containers", _l(spec.get("containers")), _l(status.get("containerStatuses")))
    _conditions(w, _l(status.get("conditions")), with_reason=False)
    _volumes(w, 0, spec)


def _endpoint_addresses(endpoints: JSON | None, port_name: str) -> str:
    shown: list[str] = []
    for subset in _l(_d(endpoints).get("subsets")):
        subset = _d(subset)
        for port in _l(subset.get("ports")):
            port = _d(port)
            if str(port.get("name") or "") != port_name:
                continue
            shown.extend(f"{_d(a).get('ip')}:{port.get('port')}" for a in _l(subset.get("addresses")))
    return ",".join(shown) or "<none>"


def _service(w: Writer, obj: JSON, related: Related) -> None:
    spec = _d(obj.get("spec"))
    _header(w, obj, namespaced=True, timestamps=False)
    w.write(0, f"Selector:\t{format_labels(spec.get('selector'))}")
    w.write(0, f"Type:\t{spec.get('type') or 'ClusterIP'}")
    if spec.get("ipFamilyPolicy"):
        w.write(0, f"IP Family Policy:\t{spec.get('ipFamilyPolicy')}")
    if _l(spec.get("ipFamilies")):
        w.write(0, f"IP Families:\t{','.join(map(str, _l(spec.get('ipFamilies'))))}")
    w.write(0, f"IP:\t{spec.get('clusterIP') or '<none>'}")
    if _l(spec.get("clusterIPs")):
        w.write(0, f"IPs:\t{','.join(map(str, _l(spec.get('clusterIPs'))))}")
    for port in _l(spec.get("ports")):
        port = _d(port)
        name = str(port.get("name") or "<unset>")
        protocol = port.get("protocol") or "TCP"
        w.write(0, f"Port:\t{name}\t{port.get('port')}/{protocol}")
        w.write(0, f"TargetPort:\t{port.get('targetPort', port.get('port'))}/{protocol}")
        if port.get("nodePort"):
            w.write(0, f"NodePort:\t{name}\t{port.get('nodePort')}/{protocol}")
        w.write(0, f"Endpoints:\t{_endpoint_addresses(related.endpoints, str(port.get('name') or ''))}")
    w.write(0, f"Session Affinity:\t{spec.get('sessionAffinity') or 'None'}")


def _config_map(w: Writer, obj: JSON, related: Related) -> None:
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


def _secret(w: Writer, obj: JSON, related: Related) -> None:
    _header(w, obj, namespaced=True, timestamps=False)
    w.write(0, "")
    w.write(0, f"Type:\t{obj.get('type') or 'Opaque'}")
    w.write(0, "")
    w.write(0, "Data")
    w.write(0, "====")
    for key, value in sorted(_d(obj.get("data")).items()):
        w.write(0, f"{key}:\t{_decoded_size(value)} bytes")  # sizes only: values never reach the terminal
    w.write(0, "")


def _namespace(w: Writer, obj: JSON, related: Related) -> None:
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


Describer = Callable[[Writer, JSON, Related], None]

DESCRIBERS: dict[str, Describer] = {
    "Deployment": _deployment,
    "ReplicaSet": _replica_set,
    "Pod": _pod,
    "Service": _service,
    "ConfigMap": _config_map,
    "Secret": _secret,
    "Namespace": _namespace,
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
        source = _d(event.get("source"))
        origin = source.get("component") or event.get("reportingComponent") or ""
        if source.get("host"):
            origin = f"{origin}, {source['host']}"
        message = " ".join(str(event.get("message", "")).split())
        w.write(1, f"{event.get('type', '')}\t{event.get('reason', '')}\t{age}\t{origin}\t{message}")


def describe(kind: str, obj: JSON, related: Related, now: datetime, *, namespaced: bool) -> str:
    """The whole description of ``obj`` (a ``kind``), ending with its Events section."""
    w = Writer()
    describer = DESCRIBERS.get(kind)
    if describer is None:
        _generic(w, obj, related, namespaced=namespaced)
    else:
        describer(w, obj, related)
    _events(w, related.events, now)
    return w.render()
