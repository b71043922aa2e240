"""Row cells per kind: the logic of the real API server's printers, over plain JSON dicts.

Each printer mirrors its counterpart in ``pkg/printers/internalversion/printers.go`` (Kubernetes 1.32) with
``Wide: true``, as the server always prints (kubectl hides the priority-1 cells). Upstream prints *decoded*
objects, and decoding applies the API defaults, so where a field is missing we read it as its default
(Deployment replicas 1, Service type ClusterIP, port protocol TCP, Secret type Opaque, Namespace phase
Active, HPA minReplicas 1 and the 80% CPU metric, CronJob suspend false). Anything else missing or of the
wrong type reads as Go's zero value; a printer never raises on a partial object.

Speed matters: this runs for every row of every ``kubectl get`` (about 10 us a pod row). ``_Ctx`` caches
each rendered age by timestamp string for the whole table, and helpers are plain functions over dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from corral.api.printing.labels import format_label_selector, format_labels, selector_string
from corral.util.humanize import human_duration

Cell = str | int
JSON = dict[str, Any]

_EMPTY: Final[JSON] = {}
_NO_LIST: Final[list[Any]] = []
_GO_ZERO_TIME: Final = datetime(1, 1, 1, tzinfo=UTC)


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else _EMPTY


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else _NO_LIST


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _i(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def _opt_i(value: Any) -> int | None:
    """A ``*int32`` field: None when unset (or not a number)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class _Ctx:
    """Per-table state: the injected ``now`` and a cache of rendered ages by timestamp string."""

    __slots__ = ("_ages", "now")

    def __init__(self, now: datetime) -> None:
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        self._ages: dict[str, str] = {}

    @staticmethod
    def time(value: Any) -> datetime | None:
        """A ``metav1.Time``/``MicroTime`` JSON value; None for unset, zero or unparseable."""
        if not isinstance(value, str) or not value:
            return None
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            elif moment.tzinfo is not UTC:
                moment = moment.astimezone(UTC)
        except (ValueError, OverflowError):
            return None
        return None if moment == _GO_ZERO_TIME else moment

    def since(self, moment: datetime | None) -> str:
        """``translateTimestampSince``: HumanDuration of ``now - moment``, ``<unknown>`` for a zero time."""
        if moment is None:
            return "<unknown>"
        return human_duration(self.now - moment)

    def age(self, value: Any) -> str:
        """:meth:`since` of a JSON timestamp, cached by string (many objects share a creation second)."""
        if not isinstance(value, str):
            return "<unknown>"
        cached = self._ages.get(value)
        if cached is None:
            cached = self.since(self.time(value))
            self._ages[value] = cached
        return cached


def _name_age(obj: JSON, ctx: _Ctx) -> tuple[str, str]:
    meta = _d(obj.get("metadata"))
    return _s(meta.get("name")), ctx.age(meta.get("creationTimestamp"))


def _containers(pod_spec: Any) -> tuple[str, str]:
    """``layoutContainerCells``: container names and images, each joined by commas."""
    containers = _l(_d(pod_spec).get("containers"))
    names = ",".join(_s(_d(c).get("name")) for c in containers)
    images = ",".join(_s(_d(c).get("image")) for c in containers)
    return names, images


def _condition_true(conditions: list[Any], kind: str) -> bool:
    """Upstream's ``hasJobCondition``/``isPodInitializedConditionTrue``: the first condition of ``kind``."""
    for cond in conditions:
        cond = _d(cond)
        if cond.get("type") == kind:
            return cond.get("status") == "True"
    return False


def _any_condition_true(conditions: list[Any], kind: str) -> bool:
    """Upstream's ``hasPodReadyCondition``: any condition of ``kind`` with status True."""
    return any(_d(c).get("type") == kind and _d(c).get("status") == "True" for c in conditions)


# --- Pod -----------------------------------------------------------------------------------------------


def _later(current: datetime | None, finished: datetime | None) -> datetime | None:
    """``if last.Before(&finished) { last = finished }`` with None as Go's zero time."""
    if finished is not None and (current is None or current < finished):
        return finished
    return current


def _pod(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    meta = _d(obj.get("metadata"))
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    conditions = _l(status.get("conditions"))
    init_specs = _l(spec.get("initContainers"))

    total = len(_l(spec.get("containers")))
    # Sidecars (init containers with restartPolicy Always) count as regular containers.
    sidecars: set[str] = set()
    for c in init_specs:
        c = _d(c)
        if c.get("restartPolicy") == "Always":
            sidecars.add(_s(c.get("name")))
            total += 1

    phase = _s(status.get("phase"))
    reason = _s(status.get("reason")) or phase
    for cond in conditions:
        cond = _d(cond)
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    restarts = 0
    sidecar_restarts = 0
    ready = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    initializing = False
    for i, cs in enumerate(_l(status.get("initContainerStatuses"))):
        cs = _d(cs)
        count = _i(cs.get("restartCount"))
        restarts += count
        last_term = _d(cs.get("lastState")).get("terminated")
        finished = ctx.time(_d(last_term).get("finishedAt")) if isinstance(last_term, dict) else None
        last_restart = _later(last_restart, finished)
        is_sidecar = _s(cs.get("name")) in sidecars
        if is_sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, finished)
        state = _d(cs.get("state"))
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if isinstance(terminated, dict) and _i(terminated.get("exitCode")) == 0:
            continue
        if is_sidecar and cs.get("started") is True:
            if cs.get("ready") is True:
                ready += 1
            continue
        if isinstance(terminated, dict):
            term_reason = _s(terminated.get("reason"))
            if term_reason:
                reason = "Init:" + term_reason
            elif (signal := _i(terminated.get("signal"))) != 0:
                reason = f"Init:Signal:{signal}"
            else:
                reason = f"Init:ExitCode:{_i(terminated.get('exitCode'))}"
        elif isinstance(waiting, dict) and _s(waiting.get("reason")) not in ("", "PodInitializing"):
            reason = "Init:" + _s(waiting.get("reason"))
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # Walk backwards so the first container's state has the last word, as upstream does.
        for cs in reversed(_l(status.get("containerStatuses"))):
            cs = _d(cs)
            restarts += _i(cs.get("restartCount"))
            last_term = _d(cs.get("lastState")).get("terminated")
            if isinstance(last_term, dict):
                last_restart = _later(last_restart, ctx.time(last_term.get("finishedAt")))
            state = _d(cs.get("state"))
            waiting = state.get("waiting")
            terminated = state.get("terminated")
            if isinstance(waiting, dict) and _s(waiting.get("reason")):
                reason = _s(waiting.get("reason"))
            elif isinstance(terminated, dict):
                term_reason = _s(terminated.get("reason"))
                if term_reason:
                    reason = term_reason
                elif (signal := _i(terminated.get("signal"))) != 0:
                    reason = f"Signal:{signal}"
                else:
                    reason = f"ExitCode:{_i(terminated.get('exitCode'))}"
            elif cs.get("ready") is True and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        # A completed container next to a running one: the pod is still running.
        if reason == "Completed" and has_running:
            reason = "Running" if _any_condition_true(conditions, "Ready") else "NotReady"

    if meta.get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Failed", "Succeeded"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_cell = f"{restarts} ({ctx.since(last_restart)} ago)"

    # The internal PodIPs[0] is status.podIP when set (conversion from v1 makes it authoritative).
    pod_ip = _s(status.get("podIP"))
    if not pod_ip:
        ips = _l(status.get("podIPs"))
        pod_ip = _s(_d(ips[0]).get("ip")) if ips else ""
    gates = _l(spec.get("readinessGates"))
    readiness_gates = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            gate_type = _d(gate).get("conditionType")
            for cond in conditions:
                cond = _d(cond)
                if cond.get("type") == gate_type:
                    if cond.get("status") == "True":
                        true_count += 1
                    break
        readiness_gates = f"{true_count}/{len(gates)}"
    return [
        _s(meta.get("name")),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        ctx.age(meta.get("creationTimestamp")),
        pod_ip or "<none>",
        _s(spec.get("nodeName")) or "<none>",
        _s(status.get("nominatedNodeName")) or "<none>",
        readiness_gates,
    ]


def pod_row_conditions(obj: JSON) -> list[JSON] | None:
    """The row ``conditions`` upstream attaches to finished pods (kubectl uses them to dim or hide rows)."""
    phase = _d(obj.get("status")).get("phase")
    if phase == "Succeeded":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


# --- Workloads -----------------------------------------------------------------------------------------


def _replicas(spec: JSON) -> int:
    """``spec.replicas``, defaulted to 1 when unset."""
    value = _opt_i(spec.get("replicas"))
    return 1 if value is None else value


def _deployment(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    names, images = _containers(_d(spec.get("template")).get("spec"))
    selector = selector_string(spec.get("selector"))
    return [
        name,
        f"{_i(status.get('readyReplicas'))}/{_replicas(spec)}",
        _i(status.get("updatedReplicas")),
        _i(status.get("availableReplicas")),
        age,
        names,
        images,
        "<invalid>" if selector is None else selector,
    ]


def _replicaset(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    names, images = _containers(_d(spec.get("template")).get("spec"))
    return [
        name,
        _replicas(spec),
        _i(status.get("replicas")),
        _i(status.get("readyReplicas")),
        age,
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def _job_status(meta: JSON, conditions: list[Any]) -> str:
    # Kubernetes 1.32 order; "SuccessCriteriaMet" only joined this list in 1.34.
    if _condition_true(conditions, "Complete"):
        return "Complete"
    if _condition_true(conditions, "Failed"):
        return "Failed"
    if meta.get("deletionTimestamp"):
        return "Terminating"
    if _condition_true(conditions, "Suspended"):
        return "Suspended"
    if _condition_true(conditions, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def _job(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    meta = _d(obj.get("metadata"))
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    succeeded = _i(status.get("succeeded"))
    completions = _opt_i(spec.get("completions"))
    if completions is not None:
        done = f"{succeeded}/{completions}"
    else:
        parallelism = _opt_i(spec.get("parallelism")) or 0
        done = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    started = ctx.time(status.get("startTime"))
    completed = ctx.time(status.get("completionTime"))
    if started is None:
        took = ""
    elif completed is None:
        took = ctx.since(started)
    else:
        took = human_duration(completed - started)
    names, images = _containers(_d(spec.get("template")).get("spec"))
    return [
        _s(meta.get("name")),
        _job_status(meta, _l(status.get("conditions"))),
        done,
        took,
        ctx.age(meta.get("creationTimestamp")),
        names,
        images,
        format_label_selector(spec.get("selector")),
    ]


def _cronjob(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    last = status.get("lastScheduleTime")
    suspend = spec.get("suspend")
    job_spec = _d(_d(spec.get("jobTemplate")).get("spec"))
    names, images = _containers(_d(job_spec.get("template")).get("spec"))
    time_zone = spec.get("timeZone")
    return [
        name,
        _s(spec.get("schedule")),
        time_zone if isinstance(time_zone, str) else "<none>",
        "True" if suspend is True else "False",  # unset defaults to false
        len(_l(status.get("active"))),
        "<none>" if last is None else ctx.age(last),
        age,
        names,
        images,
        format_label_selector(job_spec.get("selector")),
    ]


# --- Services and endpoints ----------------------------------------------------------------------------


def _join_host_port(host: str, port: int) -> str:
    """``net.JoinHostPort``: IPv6 literals get brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _external_ip(spec: JSON, status: JSON) -> str:
    svc_type = _s(spec.get("type")) or "ClusterIP"
    external_ips = [_s(ip) for ip in _l(spec.get("externalIPs"))]
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else "<none>"
    if svc_type == "LoadBalancer":
        found: set[str] = set()
        for ingress in _l(_d(status.get("loadBalancer")).get("ingress")):
            ingress = _d(ingress)
            address = _s(ingress.get("ip")) or _s(ingress.get("hostname"))
            if address:
                found.add(address)
        lb_ips = sorted(found)  # a sorted set, as sets.String.List(); never clipped on the server (wide)
        if external_ips:
            return ",".join(lb_ips + external_ips)
        return ",".join(lb_ips) if lb_ips else "<pending>"
    if svc_type == "ExternalName":
        return _s(spec.get("externalName"))
    return "<unknown>"


def _service(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    cluster_ips = _l(spec.get("clusterIPs"))
    cluster_ip = _s(cluster_ips[0]) if cluster_ips else (_s(spec.get("clusterIP")) or "<none>")
    pieces = []
    for port in _l(spec.get("ports")):
        port = _d(port)
        protocol = _s(port.get("protocol")) or "TCP"
        node_port = _i(port.get("nodePort"))
        if node_port > 0:
            pieces.append(f"{_i(port.get('port'))}:{node_port}/{protocol}")
        else:
            pieces.append(f"{_i(port.get('port'))}/{protocol}")
    return [
        name,
        _s(spec.get("type")) or "ClusterIP",
        cluster_ip,
        _external_ip(spec, _d(obj.get("status"))),
        ",".join(pieces) or "<none>",
        age,
        format_labels(spec.get("selector")),
    ]


def _format_endpoints(subsets: list[Any]) -> str:
    """``formatEndpoints``: the first three ``ip:port`` pairs, then ``+ N more...``."""
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit = 3
    more = False
    count = 0
    for subset in subsets:
        subset = _d(subset)
        addresses = _l(subset.get("addresses"))
        ports = _l(subset.get("ports"))
        if not ports:
            # Headless services may have no ports.
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(_s(_d(address).get("ip")))
            continue
        for port in ports:
            number = _i(_d(port).get("port"))
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(_join_host_port(_s(_d(address).get("ip")), number))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


def _endpoints(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    return [name, _format_endpoints(_l(obj.get("subsets"))), age]


def _list_with_more(shown: list[str], more: bool, count: int, limit: int) -> str:
    """``listWithMoreString``: ``a,b,c + N more...``, or ``<unset>`` for an empty list."""
    text = ",".join(shown)
    if more:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _endpoint_slice(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    limit = 3
    ports: list[str] = []
    more_ports = False
    port_count = 0
    for port in _l(obj.get("ports")):
        port = _d(port)
        if len(ports) < limit:
            # formatDiscoveryPorts: the number, else the name (a nil port means "all ports": "*").
            number = _opt_i(port.get("port"))
            port_name = port.get("name")
            if number is not None:
                ports.append(str(number))
            elif isinstance(port_name, str):
                ports.append(port_name)
            else:
                ports.append("*")
        else:
            more_ports = True
        port_count += 1
    addresses: list[str] = []
    more_addresses = False
    address_count = 0
    for endpoint in _l(obj.get("endpoints")):
        for address in _l(_d(endpoint).get("addresses")):
            if len(addresses) < limit:
                addresses.append(_s(address))
            else:
                more_addresses = True
            address_count += 1
    return [
        name,
        _s(obj.get("addressType")),
        _list_with_more(ports, more_ports, port_count, limit),
        _list_with_more(addresses, more_addresses, address_count, limit),
        age,
    ]


# --- Ingress -------------------------------------------------------------------------------------------


def _ingress_hosts(rules: list[Any]) -> str:
    """``formatHosts``: the first three non-empty hosts, ``*`` when none, ``+ N more...`` past three rules."""
    shown: list[str] = []
    limit = 3
    more = False
    for rule in rules:
        if len(shown) == limit:
            more = True
        host = _s(_d(rule).get("host"))
        if not more and host:
            shown.append(host)
    if not shown:
        return "*"
    text = ",".join(shown)
    return f"{text} + {len(rules) - limit} more..." if more else text


def _ingress(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    class_name = spec.get("ingressClassName")
    found: set[str] = set()
    for ingress in _l(_d(_d(obj.get("status")).get("loadBalancer")).get("ingress")):
        ingress = _d(ingress)
        address = _s(ingress.get("ip")) or _s(ingress.get("hostname"))
        if address:
            found.add(address)
    return [
        name,
        class_name if isinstance(class_name, str) else "<none>",
        _ingress_hosts(_l(spec.get("rules"))),
        ",".join(sorted(found)),  # a sorted set; never clipped on the server (wide)
        "80, 443" if _l(spec.get("tls")) else "80",
        age,
    ]


def _ingress_class(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    parameters = "<none>"
    params = spec.get("parameters")
    if isinstance(params, dict):
        parameters = _s(params.get("kind"))
        group = params.get("apiGroup")
        if isinstance(group, str):
            parameters += "." + group
        parameters += "/" + _s(params.get("name"))
    return [name, _s(spec.get("controller")), parameters, age]


# --- Config and identity -------------------------------------------------------------------------------


def _configmap(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    data = obj.get("data")
    binary = obj.get("binaryData")
    count = (len(data) if isinstance(data, dict) else 0) + (len(binary) if isinstance(binary, dict) else 0)
    return [name, count, age]


def _secret(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    data = obj.get("data")
    return [name, _s(obj.get("type")) or "Opaque", len(data) if isinstance(data, dict) else 0, age]


def _serviceaccount(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    return [name, len(_l(obj.get("secrets"))), age]


def _namespace(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    return [name, _s(_d(obj.get("status")).get("phase")) or "Active", age]


def _lease(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    return [name, _s(_d(obj.get("spec")).get("holderIdentity")), age]


# --- PodDisruptionBudget ------------------------------------------------------------------------------


def _int_or_string(value: Any) -> str:
    """``IntOrString.String()``; an unset field prints ``N/A``."""
    if value is None:
        return "N/A"
    if isinstance(value, str):
        return value
    return str(_i(value))


def _pdb(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    allowed = _i(_d(obj.get("status")).get("disruptionsAllowed"))
    min_available = _int_or_string(spec.get("minAvailable"))
    return [name, min_available, _int_or_string(spec.get("maxUnavailable")), allowed, age]


# --- Nodes and events ----------------------------------------------------------------------------------

_ROLE_PREFIX: Final = "node-role.kubernetes.io/"


def _node_address(addresses: list[Any], kind: str) -> str:
    for address in addresses:
        address = _d(address)
        if address.get("type") == kind:
            return _s(address.get("address"))
    return "<none>"


def _node(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    meta = _d(obj.get("metadata"))
    status = _d(obj.get("status"))
    ready: JSON | None = None
    for cond in _l(status.get("conditions")):
        if _d(cond).get("type") == "Ready":
            ready = _d(cond)  # the last one wins, as in upstream's condition map
    states = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if _d(obj.get("spec")).get("unschedulable") is True:
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in _d(meta.get("labels")).items():
        if key.startswith(_ROLE_PREFIX):
            if role := key[len(_ROLE_PREFIX) :]:
                roles.add(role)
        elif key == "kubernetes.io/role" and isinstance(value, str) and value:
            roles.add(value)
    info = _d(status.get("nodeInfo"))
    addresses = _l(status.get("addresses"))
    return [
        _s(meta.get("name")),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        ctx.age(meta.get("creationTimestamp")),
        _s(info.get("kubeletVersion")),
        _node_address(addresses, "InternalIP"),
        _node_address(addresses, "ExternalIP"),
        _s(info.get("osImage")) or "<unknown>",
        _s(info.get("kernelVersion")) or "<unknown>",
        _s(info.get("containerRuntimeVersion")) or "<unknown>",
    ]


def _event(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    meta = _d(obj.get("metadata"))
    # ctx.age gives "<unknown>" exactly when the timestamp is zero, which is upstream's IsZero() test.
    first_seen = ctx.age(obj.get("firstTimestamp"))
    if first_seen == "<unknown>":
        first_seen = ctx.age(obj.get("eventTime"))
    last_seen = ctx.age(obj.get("lastTimestamp"))
    if last_seen == "<unknown>":
        last_seen = first_seen
    count = _i(obj.get("count"))
    series = obj.get("series")
    if isinstance(series, dict):
        last_seen = ctx.age(series.get("lastObservedTime"))
        count = _i(series.get("count"))
    elif count == 0:
        count = 1  # singleton events of the events.k8s.io API carry no count
    involved = _d(obj.get("involvedObject"))
    kind = _s(involved.get("kind")).lower()
    involved_name = _s(involved.get("name"))
    source = _d(obj.get("source"))
    component = _s(source.get("component")) or _s(obj.get("reportingComponent"))
    instance = _s(source.get("host")) or _s(obj.get("reportingInstance"))
    return [
        last_seen,
        _s(obj.get("type")),
        _s(obj.get("reason")),
        f"{kind}/{involved_name}" if involved_name else kind,
        _s(involved.get("fieldPath")),
        f"{component}, {instance}" if instance else component,
        _s(obj.get("message")).strip(),
        first_seen,
        count,
        _s(meta.get("name")),
    ]


# --- HorizontalPodAutoscaler ---------------------------------------------------------------------------

_DEFAULT_CPU_METRIC: Final[JSON] = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
}


def _quantity(value: Any) -> str:
    """``(*resource.Quantity).String()``: stored text as-is (not re-canonicalised), ``<nil>`` when unset."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return "<nil>"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return "<nil>"


def _hpa_v1_metrics(spec: JSON, status: JSON) -> tuple[list[Any], list[Any]]:
    """The v1 CPU fields seen through the v2 shape the printer works on (conversion, then v2 defaulting)."""
    target = _opt_i(spec.get("targetCPUUtilizationPercentage"))
    specs: list[Any] = (
        [_DEFAULT_CPU_METRIC]
        if target is None
        else [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
            }
        ]
    )
    current = _opt_i(status.get("currentCPUUtilizationPercentage"))
    statuses: list[Any] = (
        []
        if current is None
        else [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]
    )
    return specs, statuses


def _value_target(source: str, spec: JSON, statuses: list[Any], i: int) -> str:
    """External and Object metrics: an average-value target shows ``(avg)``."""
    target = _d(_d(spec.get(source)).get("target"))
    current_status = _d(statuses[i]).get(source) if len(statuses) > i else None
    current_values = _d(_d(current_status).get("current"))
    if target.get("averageValue") is not None:
        current = "<unknown>"
        if isinstance(current_status, dict) and current_values.get("averageValue") is not None:
            current = _quantity(current_values.get("averageValue"))
        return f"{current}/{_quantity(target.get('averageValue'))} (avg)"
    current = _quantity(current_values.get("value")) if isinstance(current_status, dict) else "<unknown>"
    return f"{current}/{_quantity(target.get('value'))}"


def _resource_target(source: str, spec: JSON, statuses: list[Any], i: int) -> str:
    """Resource and ContainerResource metrics: ``cpu: 40%/80%`` or ``memory: 100Mi/200Mi``."""
    metric = _d(spec.get(source))
    target = _d(metric.get("target"))
    resource = _s(metric.get("name"))
    current_status = _d(statuses[i]).get(source) if len(statuses) > i else None
    current_values = _d(_d(current_status).get("current"))
    if target.get("averageValue") is not None:
        current = (
            _quantity(current_values.get("averageValue")) if isinstance(current_status, dict) else "<unknown>"
        )
        return f"{resource}: {current}/{_quantity(target.get('averageValue'))}"
    current = "<unknown>"
    utilization = _opt_i(current_values.get("averageUtilization"))
    if isinstance(current_status, dict) and utilization is not None:
        current = f"{utilization}%"
    wanted = _opt_i(target.get("averageUtilization"))
    return f"{resource}: {current}/{'<auto>' if wanted is None else f'{wanted}%'}"


def _hpa_targets(specs: list[Any], statuses: list[Any]) -> str:
    """``formatHPAMetrics``: statuses pair with specs by position; at most two shown."""
    if not specs:
        return "<none>"
    shown: list[str] = []
    for i, metric in enumerate(specs):
        metric = _d(metric)
        metric_type = metric.get("type")
        if metric_type == "External":
            shown.append(_value_target("external", metric, statuses, i))
        elif metric_type == "Object":
            shown.append(_value_target("object", metric, statuses, i))
        elif metric_type == "Pods":
            current_status = _d(statuses[i]).get("pods") if len(statuses) > i else None
            current = "<unknown>"
            if isinstance(current_status, dict):
                current = _quantity(_d(current_status.get("current")).get("averageValue"))
            target = _d(_d(metric.get("pods")).get("target"))
            shown.append(f"{current}/{_quantity(target.get('averageValue'))}")
        elif metric_type == "Resource":
            shown.append(_resource_target("resource", metric, statuses, i))
        elif metric_type == "ContainerResource":
            shown.append(_resource_target("containerResource", metric, statuses, i))
        else:
            shown.append("<unknown type>")
    if len(shown) > 2:
        return f"{', '.join(shown[:2])} + {len(shown) - 2} more..."
    return ", ".join(shown)


def _hpa(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    spec = _d(obj.get("spec"))
    status = _d(obj.get("status"))
    version = _s(obj.get("apiVersion")) or api_version
    if version == "autoscaling/v1" or (not version and "targetCPUUtilizationPercentage" in spec):
        specs, statuses = _hpa_v1_metrics(spec, status)
    else:
        specs = _l(spec.get("metrics")) or [_DEFAULT_CPU_METRIC]
        statuses = _l(status.get("currentMetrics"))
    ref = _d(spec.get("scaleTargetRef"))
    min_replicas = _opt_i(spec.get("minReplicas"))
    return [
        name,
        f"{_s(ref.get('kind'))}/{_s(ref.get('name'))}",
        _hpa_targets(specs, statuses),
        "1" if min_replicas is None else str(min_replicas),
        _i(spec.get("maxReplicas")),
        _i(status.get("currentReplicas")),
        age,
    ]


def _generic(obj: JSON, ctx: _Ctx, api_version: str) -> list[Cell]:
    name, age = _name_age(obj, ctx)
    return [name, age]


Printer = Callable[[JSON, _Ctx, str], list[Cell]]

PRINTERS: Final[dict[str, Printer]] = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "Job": _job,
    "CronJob": _cronjob,
    "Service": _service,
    "Endpoints": _endpoints,
    "EndpointSlice": _endpoint_slice,
    "Ingress": _ingress,
    "IngressClass": _ingress_class,
    "ConfigMap": _configmap,
    "Secret": _secret,
    "ServiceAccount": _serviceaccount,
    "Namespace": _namespace,
    "Lease": _lease,
    "PodDisruptionBudget": _pdb,
    "Node": _node,
    "Event": _event,
    "HorizontalPodAutoscaler": _hpa,
}


def printer_for(kind: str) -> Printer:
    return PRINTERS.get(kind, _generic)


def new_context(now: datetime) -> _Ctx:
    return _Ctx(now)
