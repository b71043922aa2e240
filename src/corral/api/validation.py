"""Semantic validation: the Kubernetes rules structural schemas cannot express. Pure logic.

The official JSON schemas (see ``api/schema``) check shape and types. This module checks what
``pkg/apis/*/validation`` checks for the subset that matters: name syntax, label syntax, required fields, a
selector that matches its template, port ranges, unique names, and fields that may not change on update.
Each failure is a :class:`FieldError` with a Kubernetes field path: the API answers 422, one cause each.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from corral.api.fielderrors import NIL_STRING_MAP, FieldError, GoLiteral
from corral.api.selectors import (
    SelectorError,
    label_key_errors,
    label_value_errors,
    selector_from_object,
)

JSON = dict[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def dns1123_subdomain_error(name: str) -> str | None:
    if len(name) > 253:
        return "must be no more than 253 characters"
    if not _DNS1123_SUBDOMAIN.fullmatch(name):
        return SUBDOMAIN_MSG
    return None


def dns1123_label_error(name: str) -> str | None:
    if len(name) > 63:
        return "must be no more than 63 characters"
    if not _DNS1123_LABEL.fullmatch(name):
        return LABEL_MSG
    return None


def dns1035_label_error(name: str) -> str | None:
    if len(name) > 63:
        return "must be no more than 63 characters"
    if not _DNS1035_LABEL.fullmatch(name):
        return DNS1035_MSG
    return None


# Which name rule each kind uses (ValidateObjectMeta's nameFn in upstream).
NAME_RULES: dict[str, Callable[[str], str | None]] = {
    "Namespace": dns1123_label_error,
    "Service": dns1035_label_error,
}


def _as_dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _hashable(value: Any) -> Any:
    """``value`` as a set member: malformed input (a list or object where a name belongs) must not crash."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def validate_metadata(kind: str, meta: Mapping[str, Any], namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    name = meta.get("name")
    if not name:
        if not meta.get("generateName"):
            errs.append(FieldError("metadata.name", "Required", "name or generateName is required"))
    else:
        rule = NAME_RULES.get(kind, dns1123_subdomain_error)
        err = rule(str(name))
        if err:
            errs.append(FieldError("metadata.name", "Invalid", err, name))
    if namespaced and not meta.get("namespace"):
        errs.append(FieldError("metadata.namespace", "Required"))
    errs += validate_labels(_as_dict(meta.get("labels")), "metadata.labels")
    for key in _as_dict(meta.get("annotations")):
        # ValidateAnnotations checks the lower-cased key: an upper-case prefix is allowed there.
        for msg in label_key_errors(str(key).lower()):
            errs.append(FieldError("metadata.annotations", "Invalid", msg, key))
    total = sum(len(str(k)) + len(str(v)) for k, v in _as_dict(meta.get("annotations")).items())
    if total > 256 * 1024:
        errs.append(FieldError("metadata.annotations", "TooLong", "may not be more than 262144 bytes"))
    for i, ref in enumerate(_as_list(meta.get("ownerReferences"))):
        ref = _as_dict(ref)
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                errs.append(FieldError(f"metadata.ownerReferences[{i}].{field}", "Required"))
    return errs


def validate_labels(labels: Mapping[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    # One error per message, as ValidateLabels does with IsQualifiedName / IsValidLabelValue.
    for key, value in labels.items():
        for msg in label_key_errors(str(key)):
            errs.append(FieldError(path, "Invalid", msg, key))
        if not isinstance(value, str):
            errs.append(FieldError(path, "Invalid", "label values must be strings", value))
            continue
        for msg in label_value_errors(value):
            errs.append(FieldError(path, "Invalid", msg, value))
    return errs


def _validate_port_number(value: Any, path: str, allow_zero: bool = False) -> list[FieldError]:
    low = 0 if allow_zero else 1
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 65535:
        return [FieldError(path, "Invalid", f"must be between {low} and 65535, inclusive", value)]
    return []


def _validate_container(c: JSON, path: str, seen_ports: set[tuple[Any, Any]]) -> list[FieldError]:
    errs: list[FieldError] = []
    name = c.get("name")
    if not name:
        errs.append(FieldError(f"{path}.name", "Required"))
    else:
        err = dns1123_label_error(str(name))
        if err:
            errs.append(FieldError(f"{path}.name", "Invalid", err, name))
    if not c.get("image"):
        errs.append(FieldError(f"{path}.image", "Required"))
    port_names: set[str] = set()
    for j, port in enumerate(_as_list(c.get("ports"))):
        port = _as_dict(port)
        ppath = f"{path}.ports[{j}]"
        if "containerPort" not in port:
            errs.append(FieldError(f"{ppath}.containerPort", "Required"))
        else:
            errs += _validate_port_number(port["containerPort"], f"{ppath}.containerPort")
        if "hostPort" in port and port["hostPort"] not in (None, 0):
            errs += _validate_port_number(port["hostPort"], f"{ppath}.hostPort")
        pname = port.get("name")
        if pname:
            if len(str(pname)) > 15 or not _IANA_SVC_NAME.fullmatch(str(pname)):
                errs.append(
                    FieldError(
                        f"{ppath}.name",
                        "Invalid",
                        "must be no more than 15 characters and consist of lower case "
                        "alphanumeric characters or '-'",
                        pname,
                    )
                )
            elif _hashable(pname) in port_names:
                errs.append(FieldError(f"{ppath}.name", "Duplicate", value=pname))
            port_names.add(str(pname))
        protocol = port.get("protocol", "TCP")
        if protocol not in ("TCP", "UDP", "SCTP"):
            errs.append(
                FieldError(
                    f"{ppath}.protocol", "NotSupported", 'supported values: "SCTP", "TCP", "UDP"', protocol
                )
            )
    for j, env in enumerate(_as_list(c.get("env"))):
        env = _as_dict(env)
        ename = env.get("name")
        if not ename:
            errs.append(FieldError(f"{path}.env[{j}].name", "Required"))
        elif not _ENV_NAME.fullmatch(str(ename)):
            errs.append(
                FieldError(
                    f"{path}.env[{j}].name",
                    "Invalid",
                    "a valid environment variable name must consist of alphabetic characters, "
                    "digits, '_', '-', or '.', and must not start with a digit",
                    ename,
                )
            )
    return errs


def validate_pod_spec(
    spec: Any, path: str, allowed_restart: tuple[str, ...] | None = None
) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [FieldError(path, "Required")]
    errs: list[FieldError] = []
    containers = _as_list(spec.get("containers"))
    if not containers:
        errs.append(FieldError(f"{path}.containers", "Required"))
    names: set[str] = set()
    seen_ports: set[tuple[Any, Any]] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(_as_list(spec.get(key))):
            c = _as_dict(c)
            errs += _validate_container(c, f"{path}.{key}[{i}]", seen_ports)
            name = c.get("name")
            if name:
                if str(name) in names:
                    errs.append(FieldError(f"{path}.{key}[{i}].name", "Duplicate", value=name))
                names.add(str(name))
    restart = spec.get("restartPolicy", "Always")
    valid = ("Always", "OnFailure", "Never")
    if restart not in valid:
        errs.append(
            FieldError(
                f"{path}.restartPolicy",
                "NotSupported",
                'supported values: "Always", "OnFailure", "Never"',
                restart,
            )
        )
    elif allowed_restart and restart not in allowed_restart:
        quoted = ", ".join(f'"{r}"' for r in allowed_restart)
        errs.append(
            FieldError(f"{path}.restartPolicy", "NotSupported", f"supported values: {quoted}", restart)
        )
    volume_names: set[str] = set()
    for i, vol in enumerate(_as_list(spec.get("volumes"))):
        vname = _as_dict(vol).get("name")
        if not vname:
            errs.append(FieldError(f"{path}.volumes[{i}].name", "Required"))
        elif err := dns1123_label_error(str(vname)):
            errs.append(FieldError(f"{path}.volumes[{i}].name", "Invalid", err, vname))
        elif str(vname) in volume_names:
            errs.append(FieldError(f"{path}.volumes[{i}].name", "Duplicate", value=vname))
        else:
            volume_names.add(str(vname))
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errs.append(FieldError(f"{path}.terminationGracePeriodSeconds", "Invalid", "must be >= 0", grace))
    return errs


def _validate_selector_and_template(
    spec: JSON, path: str, restart: tuple[str, ...] | None, selector_required: bool = True
) -> list[FieldError]:
    errs: list[FieldError] = []
    selector = spec.get("selector")
    template = _as_dict(spec.get("template"))
    if selector_required:
        labels = _as_dict(template.get("metadata")).get("labels")
        if not isinstance(selector, dict) or (
            not selector.get("matchLabels") and not selector.get("matchExpressions")
        ):
            errs.append(FieldError(f"{path}.selector", "Required"))
            if selector is None:
                # A nil selector is labels.Nothing() upstream: it matches no template, reported too.
                errs.append(_template_mismatch(path, labels))
        else:
            errs += validate_label_selector(selector, f"{path}.selector")
            try:
                parsed = selector_from_object(selector)
            except SelectorError:
                errs.append(FieldError(f"{path}.selector", "Invalid", "invalid label selector", selector))
            else:
                if not parsed.matches(_as_dict(labels)):
                    errs.append(_template_mismatch(path, labels))
    if not template:
        errs.append(FieldError(f"{path}.template", "Required"))
    else:
        errs += validate_labels(
            _as_dict(_as_dict(template.get("metadata")).get("labels")), f"{path}.template.metadata.labels"
        )
        errs += validate_pod_spec(template.get("spec"), f"{path}.template.spec", restart)
    return errs


def _template_mismatch(path: str, labels: Any) -> FieldError:
    # Upstream prints the template's labels with %#v: a missing map is "map[string]string(nil)".
    return FieldError(
        f"{path}.template.metadata.labels",
        "Invalid",
        "`selector` does not match template `labels`",
        NIL_STRING_MAP if labels is None else labels,
    )


def validate_label_selector(selector: Any, path: str) -> list[FieldError]:
    """``ValidateLabelSelector``: matchLabels syntax and each matchExpressions requirement."""
    if not isinstance(selector, dict):
        return []
    errs = validate_labels(_as_dict(selector.get("matchLabels")), f"{path}.matchLabels")
    for i, expr in enumerate(_as_list(selector.get("matchExpressions"))):
        expr = _as_dict(expr)
        epath = f"{path}.matchExpressions[{i}]"
        operator = expr.get("operator")
        values = _as_list(expr.get("values"))
        if operator in ("In", "NotIn"):
            if not values:
                errs.append(
                    FieldError(
                        f"{epath}.values", "Required", "must be specified when `operator` is 'In' or 'NotIn'"
                    )
                )
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                errs.append(
                    FieldError(
                        f"{epath}.values",
                        "Forbidden",
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errs.append(FieldError(f"{epath}.operator", "Invalid", "not a valid selector operator", operator))
        key = expr.get("key")
        for msg in label_key_errors(key if isinstance(key, str) else ""):
            errs.append(FieldError(f"{epath}.key", "Invalid", msg, key))
        for j, value in enumerate(values):
            for msg in label_value_errors(value) if isinstance(value, str) else ["must be a string"]:
                errs.append(FieldError(f"{epath}.values[{j}]", "Invalid", msg, value))
    return errs


def _non_negative(spec: JSON, field: str, path: str) -> list[FieldError]:
    value = spec.get(field)
    if value is not None and (not isinstance(value, int) or value < 0):
        return [FieldError(f"{path}.{field}", "Invalid", "must be greater than or equal to 0", value)]
    return []


def _validate_deployment(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs = _non_negative(spec, "replicas", "spec")
    errs += _validate_selector_and_template(spec, "spec", ("Always",))
    strategy = _as_dict(spec.get("strategy"))
    stype = strategy.get("type", "RollingUpdate")
    if stype not in ("RollingUpdate", "Recreate"):
        errs.append(
            FieldError(
                "spec.strategy.type", "NotSupported", 'supported values: "Recreate", "RollingUpdate"', stype
            )
        )
    elif stype == "Recreate" and strategy.get("rollingUpdate"):
        errs.append(
            FieldError(
                "spec.strategy.rollingUpdate",
                "Forbidden",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        )
    rolling = _as_dict(strategy.get("rollingUpdate"))
    if _is_zero(rolling.get("maxSurge")) and _is_zero(rolling.get("maxUnavailable")) and rolling:
        errs.append(
            FieldError(
                "spec.strategy.rollingUpdate.maxUnavailable",
                "Invalid",
                "may not be 0 when `maxSurge` is 0",
                rolling.get("maxUnavailable"),
            )
        )
    errs += _non_negative(spec, "revisionHistoryLimit", "spec")
    errs += _non_negative(spec, "minReadySeconds", "spec")
    return errs


def _is_zero(value: Any) -> bool:
    return value in (0, "0", "0%")


def _validate_replicaset(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    return _non_negative(spec, "replicas", "spec") + _validate_selector_and_template(
        spec, "spec", ("Always",)
    )


def _validate_pod(obj: JSON) -> list[FieldError]:
    return validate_pod_spec(obj.get("spec"), "spec")


def _validate_job(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs = _non_negative(spec, "completions", "spec") + _non_negative(spec, "parallelism", "spec")
    errs += _non_negative(spec, "backoffLimit", "spec")
    errs += _validate_selector_and_template(
        spec, "spec", ("OnFailure", "Never"), selector_required=bool(spec.get("manualSelector"))
    )
    return errs


def _validate_cronjob(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    schedule = spec.get("schedule")
    if not schedule:
        errs.append(FieldError("spec.schedule", "Required"))
    else:
        problem = cron_schedule_error(str(schedule))
        if problem:
            errs.append(FieldError("spec.schedule", "Invalid", problem, schedule))
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy not in ("Allow", "Forbid", "Replace"):
        errs.append(
            FieldError(
                "spec.concurrencyPolicy",
                "NotSupported",
                'supported values: "Allow", "Forbid", "Replace"',
                policy,
            )
        )
    job_spec = _as_dict(_as_dict(spec.get("jobTemplate")).get("spec"))
    if not job_spec:
        errs.append(FieldError("spec.jobTemplate.spec", "Required"))
    else:
        errs += _validate_selector_and_template(
            job_spec, "spec.jobTemplate.spec", ("OnFailure", "Never"), selector_required=False
        )
    return errs


def cron_schedule_error(schedule: str) -> str | None:
    """Why a cron schedule does not parse (5 fields or a @keyword), or None."""
    from croniter import croniter  # imported lazily: only CronJob writes need it

    text = schedule.strip()
    if text.startswith("TZ=") or text.startswith("CRON_TZ="):
        return "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    if text.startswith("@"):
        if text in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"):
            return None
        return f"unrecognized descriptor: {text}"
    if len(text.split()) != 5:
        return f"expected exactly 5 fields, found {len(text.split())}: {text}"
    if not croniter.is_valid(text):
        return f"invalid schedule: {text}"
    return None


def _validate_service(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    stype = spec.get("type", "ClusterIP")
    if stype not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        errs.append(
            FieldError(
                "spec.type",
                "NotSupported",
                'supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
                stype,
            )
        )
    ports = _as_list(spec.get("ports"))
    if not ports and stype != "ExternalName" and spec.get("clusterIP") != "None":
        errs.append(FieldError("spec.ports", "Required"))
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        port = _as_dict(port)
        path = f"spec.ports[{i}]"
        pname = port.get("name")
        if len(ports) > 1 and not pname:
            errs.append(FieldError(f"{path}.name", "Required"))
        elif pname:
            err = dns1123_label_error(str(pname))
            if err:
                errs.append(FieldError(f"{path}.name", "Invalid", err, pname))
            elif str(pname) in names:
                errs.append(FieldError(f"{path}.name", "Duplicate", value=pname))
            names.add(str(pname))
        if "port" not in port:
            errs.append(FieldError(f"{path}.port", "Required"))
        else:
            errs += _validate_port_number(port["port"], f"{path}.port")
        protocol = port.get("protocol", "TCP")
        if protocol not in ("TCP", "UDP", "SCTP"):
            errs.append(
                FieldError(
                    f"{path}.protocol", "NotSupported", 'supported values: "SCTP", "TCP", "UDP"', protocol
                )
            )
        key = (_hashable(port.get("port")), _hashable(protocol))
        if key in seen:
            errs.append(FieldError(path, "Duplicate", value={"port": key[0], "protocol": key[1]}))
        seen.add(key)
        target = port.get("targetPort")
        if isinstance(target, int):
            errs += _validate_port_number(target, f"{path}.targetPort")
        node_port = port.get("nodePort")
        if node_port not in (None, 0):
            if stype not in ("NodePort", "LoadBalancer"):
                errs.append(
                    FieldError(f"{path}.nodePort", "Forbidden", "may not be used when `type` is 'ClusterIP'")
                )
            else:
                errs += _validate_port_number(node_port, f"{path}.nodePort")
    if stype == "ExternalName" and not spec.get("externalName"):
        errs.append(FieldError("spec.externalName", "Required"))
    errs += validate_labels(_as_dict(spec.get("selector")), "spec.selector")
    affinity = spec.get("sessionAffinity", "None")
    if affinity not in ("None", "ClientIP"):
        errs.append(
            FieldError(
                "spec.sessionAffinity", "NotSupported", 'supported values: "ClientIP", "None"', affinity
            )
        )
    return errs


CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
MAX_CONFIG_SIZE = 1024 * 1024  # core.MaxSecretSize: the whole of a ConfigMap's or a Secret's data
_IMMUTABLE_SET_MSG = "field is immutable when `immutable` is set"
# What an Invalid cause shows instead of a Secret's content (upstream's placeholder for dockercfg errors).
REDACTED = "<secret contents redacted>"


def config_key_errors(key: str) -> list[str]:
    """``validation.IsConfigMapKey``: one message per broken rule, empty when ``key`` is valid. Keys become
    file names in volumes, so ``.``, ``..`` and the kubelet's ``..data``-style names are refused too."""
    errs: list[str] = []
    if len(key) > 253:
        errs.append("must be no more than 253 characters")
    if not _CONFIG_KEY.fullmatch(key):
        errs.append(CONFIG_KEY_MSG)
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _key_errors(path: str, key: str) -> list[FieldError]:
    # The bad value of a key error is the key itself, never the value stored under it.
    return [FieldError(f"{path}[{key}]", "Invalid", msg, key) for msg in config_key_errors(key)]


def _decoded_len(value: Any) -> int:
    """Bytes of a base64 field (``[]byte`` upstream); the text's length if it is not valid base64 (the
    decode error is reported elsewhere)."""
    try:
        return len(base64.b64decode(str(value), validate=True))
    except (binascii.Error, ValueError):
        return len(str(value).encode())


_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def base64_error(value: Any) -> str | None:
    """Why ``value`` is not the base64 of a ``[]byte`` field, in Go's ``encoding/base64`` words (which, unlike
    a JSON decoder's context, never quote the data). Go skips line breaks, so they are allowed."""
    text = str(value).replace("\r", "").replace("\n", "")
    for index, char in enumerate(text):
        if char not in _BASE64_CHARS:
            return f"illegal base64 data at input byte {index}"
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # a padding problem: point at the last quantum, where Go's decoder notices it (approximately)
        return f"illegal base64 data at input byte {max(len(text) - (len(text) % 4 or 4), 0)}"
    return None


def _base64_errors(path: str, values: JSON, shown: str) -> list[FieldError]:
    # Upstream refuses these while decoding (400); here they are field errors, so a bad Secret is never
    # stored, and the value is replaced by ``shown`` so no content ever reaches the message.
    errs: list[FieldError] = []
    for key, value in values.items():
        reason = base64_error(value)
        if reason is not None:
            errs.append(FieldError(f"{path}[{key}]", "Invalid", reason, shown))
    return errs


def _validate_configmap(obj: JSON) -> list[FieldError]:
    """``ValidateConfigMap``: valid keys, no key in both data and binaryData, at most 1 MiB of values."""
    data, binary = _as_dict(obj.get("data")), _as_dict(obj.get("binaryData"))
    errs: list[FieldError] = []
    size = 0
    for key, value in data.items():
        errs += _key_errors("data", str(key))
        if key in binary:
            errs.append(FieldError(f"data[{key}]", "Invalid", "duplicate of key present in binaryData", key))
        size += len(str(value).encode())
    for key, value in binary.items():
        errs += _key_errors("binaryData", str(key))
        size += _decoded_len(value)
    errs += _base64_errors("binaryData", binary, "<value omitted>")
    if size > MAX_CONFIG_SIZE:
        # Upstream passes an empty path ("[]") to say the error is about the whole object.
        errs.append(FieldError("[]", "TooLong", f"may not be more than {MAX_CONFIG_SIZE} bytes"))
    return errs


def _validate_secret(obj: JSON) -> list[FieldError]:
    """``ValidateSecret`` (after ``stringData`` has been folded into ``data``): valid keys, at most 1 MiB,
    and the keys each built-in type needs. No cause ever carries a value stored in the Secret."""
    data = _as_dict(obj.get("data"))
    errs: list[FieldError] = []
    size = 0
    for key, value in data.items():
        errs += _key_errors("data", str(key))
        size += _decoded_len(value)
    errs += _base64_errors("data", data, REDACTED)
    if size > MAX_CONFIG_SIZE:
        errs.append(FieldError("data", "TooLong", f"may not be more than {MAX_CONFIG_SIZE} bytes"))
    stype = obj.get("type") or "Opaque"
    annotations = _as_dict(_as_dict(obj.get("metadata")).get("annotations"))
    if stype == "kubernetes.io/service-account-token":
        if not annotations.get("kubernetes.io/service-account.name"):
            errs.append(FieldError("metadata.annotations[kubernetes.io/service-account.name]", "Required"))
    elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if stype == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            errs.append(FieldError(f"data[{key}]", "Required"))
        else:
            try:
                parsed = json.loads(base64.b64decode(str(data[key])))
                if not isinstance(parsed, dict):
                    raise ValueError("json: cannot unmarshal into Go value of type map[string]interface {}")
            except (ValueError, binascii.Error) as exc:
                detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                errs.append(FieldError(f"data[{key}]", "Invalid", detail, REDACTED))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            errs.append(FieldError("data[username]", "Required"))
            errs.append(FieldError("data[password]", "Required"))
    elif stype == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            errs.append(FieldError("data[ssh-privatekey]", "Required"))
    elif stype == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in data:
                errs.append(FieldError(f"data[{key}]", "Required"))
    return errs


def _validate_hpa(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    ref = _as_dict(spec.get("scaleTargetRef"))
    if not ref.get("kind"):
        errs.append(FieldError("spec.scaleTargetRef.kind", "Required"))
    if not ref.get("name"):
        errs.append(FieldError("spec.scaleTargetRef.name", "Required"))
    max_r = spec.get("maxReplicas")
    min_r = spec.get("minReplicas")
    if min_r is None:  # unset (or null): minReplicas defaults to 1
        min_r = 1
    # Messages and checks as validateHorizontalPodAutoscalerSpec (each check independent of the others).
    # Corral allows 0 (scale to zero), as upstream with its HPAScaleToZero gate, for every metric type.
    if not isinstance(min_r, int) or min_r < 0:
        errs.append(FieldError("spec.minReplicas", "Invalid", "must be greater than or equal to 0", min_r))
    if not isinstance(max_r, int) or max_r < 1:
        errs.append(FieldError("spec.maxReplicas", "Invalid", "must be greater than 0", max_r))
    if isinstance(max_r, int) and isinstance(min_r, int) and max_r < min_r:
        errs.append(
            FieldError("spec.maxReplicas", "Invalid", "must be greater than or equal to `minReplicas`", max_r)
        )
    for index, metric in enumerate(spec.get("metrics") or []):
        errs.extend(_validate_hpa_metric(f"spec.metrics[{index}]", _as_dict(metric)))
    behavior = _as_dict(spec.get("behavior"))
    for direction in ("scaleUp", "scaleDown"):
        if isinstance(behavior.get(direction), dict):
            errs.extend(_validate_scaling_rules(f"spec.behavior.{direction}", behavior[direction]))
    return errs


_HPA_SOURCES = {
    "Resource": "resource",
    "Pods": "pods",
    "Object": "object",
    "ContainerResource": "containerResource",
    "External": "external",
}


def _validate_hpa_metric(path: str, metric: JSON) -> list[FieldError]:
    """``validateMetricSpec``: a known type with its source, and a target that says what it targets."""
    kind = metric.get("type")
    if kind not in _HPA_SOURCES:
        supported = ", ".join(f'"{k}"' for k in _HPA_SOURCES)
        return [FieldError(f"{path}.type", "NotSupported", f"supported values: {supported}", kind)]
    key = _HPA_SOURCES[str(kind)]
    source = metric.get(key)
    if not isinstance(source, dict):
        return [
            FieldError(f"{path}.{key}", "Required", "must populate information for the given metric source")
        ]
    errs: list[FieldError] = []
    target = _as_dict(source.get("target"))
    tpath = f"{path}.{key}.target"
    ttype = target.get("type")
    if ttype not in ("Utilization", "Value", "AverageValue"):
        errs.append(FieldError(f"{tpath}.type", "Required", "must specify a metric target type"))
    if ttype == "Utilization" and target.get("averageUtilization") is None:
        errs.append(FieldError(f"{tpath}.averageUtilization", "Required", "must set averageUtilization"))
    if ttype == "Value" and target.get("value") is None:
        errs.append(FieldError(f"{tpath}.value", "Required", "must set value"))
    if ttype == "AverageValue" and target.get("averageValue") is None:
        errs.append(FieldError(f"{tpath}.averageValue", "Required", "must set averageValue"))
    utilization = target.get("averageUtilization")
    if isinstance(utilization, int) and utilization <= 0:
        errs.append(
            FieldError(f"{tpath}.averageUtilization", "Invalid", "must be greater than 0", utilization)
        )
    if key in ("pods", "object") and not _as_dict(source.get("metric")).get("name"):
        errs.append(FieldError(f"{path}.{key}.metric.name", "Required", "must specify a metric name"))
    return errs


def _validate_scaling_rules(path: str, rules: JSON) -> list[FieldError]:
    """``validateScalingRules``: window 0..3600 s, a known selectPolicy, at least one sane policy."""
    errs: list[FieldError] = []
    window = rules.get("stabilizationWindowSeconds")
    if isinstance(window, int) and window < 0:
        errs.append(
            FieldError(
                f"{path}.stabilizationWindowSeconds",
                "Invalid",
                "must be greater than or equal to zero",
                window,
            )
        )
    if isinstance(window, int) and window > 3600:
        errs.append(
            FieldError(
                f"{path}.stabilizationWindowSeconds", "Invalid", "must be less than or equal to 3600", window
            )
        )
    select = rules.get("selectPolicy")
    if select is not None and select not in ("Max", "Min", "Disabled"):
        errs.append(
            FieldError(
                f"{path}.selectPolicy", "NotSupported", 'supported values: "Disabled", "Max", "Min"', select
            )
        )
    policies = rules.get("policies")
    if isinstance(policies, list) and not policies:
        errs.append(FieldError(f"{path}.policies", "Required", "must specify at least one Policy"))
    for index, policy in enumerate(policies or []):
        policy = _as_dict(policy)
        ppath = f"{path}.policies[{index}]"
        if policy.get("type") not in ("Pods", "Percent"):
            errs.append(
                FieldError(
                    f"{ppath}.type", "NotSupported", 'supported values: "Percent", "Pods"', policy.get("type")
                )
            )
        value = policy.get("value")
        if not isinstance(value, int) or value <= 0:
            errs.append(FieldError(f"{ppath}.value", "Invalid", "must be greater than zero", value))
        period = policy.get("periodSeconds")
        if not isinstance(period, int) or period <= 0:
            errs.append(FieldError(f"{ppath}.periodSeconds", "Invalid", "must be greater than zero", period))
        elif period > 1800:
            errs.append(
                FieldError(f"{ppath}.periodSeconds", "Invalid", "must be less than or equal to 1800", period)
            )
    return errs


def _validate_event(obj: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    involved = _as_dict(obj.get("involvedObject"))
    if not involved:
        errs.append(FieldError("involvedObject", "Required"))
    etype = obj.get("type")
    if etype and etype not in ("Normal", "Warning"):
        errs.append(FieldError("type", "NotSupported", 'supported values: "Normal", "Warning"', etype))
    return errs


_ADDRESS_TYPES = ("FQDN", "IPv4", "IPv6")
_SLICE_PROTOCOLS = 'supported values: "SCTP", "TCP", "UDP"'


def _ip_error(address: str, address_type: str) -> str | None:
    """The per-type address check of ``validateEndpoints`` (IPv4/IPv6 slices).

    Unlike upstream's ``ValidateEndpointIP`` loopback addresses are allowed: Corral pods share the node's
    address, which is 127.0.0.1 for ``corral up``, so every endpoint of a one-machine cluster is loopback.
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "must be a valid IP address"
    if address_type == "IPv4" and parsed.version != 4:
        return "must be a valid IPv4 address"
    if address_type == "IPv6" and parsed.version != 6:
        return "must be a valid IPv6 address"
    if parsed.is_unspecified:
        return f"may not be unspecified ({address})"
    return None


def _validate_endpoint_slice(obj: JSON) -> list[FieldError]:
    errs: list[FieldError] = []
    address_type = obj.get("addressType")
    if not address_type:
        errs.append(FieldError("addressType", "Required"))
    elif address_type not in _ADDRESS_TYPES:
        supported = ", ".join(f'"{t}"' for t in _ADDRESS_TYPES)
        errs.append(FieldError("addressType", "NotSupported", f"supported values: {supported}", address_type))
    endpoints = _as_list(obj.get("endpoints"))
    if len(endpoints) > 1000:
        errs.append(FieldError("endpoints", "TooMany", "must have at most 1000 items"))
    for i, endpoint in enumerate(endpoints):
        endpoint = _as_dict(endpoint)
        path = f"endpoints[{i}]"
        addresses = _as_list(endpoint.get("addresses"))
        if not addresses:
            errs.append(FieldError(f"{path}.addresses", "Required", "must contain at least 1 address"))
        elif len(addresses) > 100:
            errs.append(FieldError(f"{path}.addresses", "TooMany", "must have at most 100 items"))
        for j, address in enumerate(addresses):
            text = str(address)
            problem: str | None
            if address_type in ("IPv4", "IPv6"):
                problem = _ip_error(text, str(address_type))
            else:
                problem = dns1123_subdomain_error(text)
            if problem:
                errs.append(FieldError(f"{path}.addresses[{j}]", "Invalid", problem, address))
        node_name = endpoint.get("nodeName")
        if node_name and (problem := dns1123_subdomain_error(str(node_name))):
            errs.append(FieldError(f"{path}.nodeName", "Invalid", problem, node_name))
        hostname = endpoint.get("hostname")
        if hostname and (problem := dns1123_label_error(str(hostname))):
            errs.append(FieldError(f"{path}.hostname", "Invalid", problem, hostname))
    ports = _as_list(obj.get("ports"))
    if len(ports) > 100:
        errs.append(FieldError("ports", "TooMany", "must have at most 100 items"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        port = _as_dict(port)
        path = f"ports[{i}]"
        name = port.get("name") or ""
        if name and (problem := dns1123_label_error(str(name))):
            errs.append(FieldError(f"{path}.name", "Invalid", problem, name))
        if str(name) in names:
            errs.append(FieldError(f"{path}.name", "Duplicate", value=name))
        names.add(str(name))
        if port.get("port") is not None:
            errs += _validate_port_number(port["port"], f"{path}.port")
        protocol = port.get("protocol") or "TCP"
        if protocol not in ("TCP", "UDP", "SCTP"):
            errs.append(FieldError(f"{path}.protocol", "NotSupported", _SLICE_PROTOCOLS, protocol))
    return errs


_PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")


def _validate_ingress_backend(backend: Any, path: str) -> list[FieldError]:
    """``validateIngressBackend``: exactly one of resource/service; a service needs a name and a port."""
    backend = _as_dict(backend)
    resource, service = backend.get("resource"), backend.get("service")
    if resource is not None and service is not None:
        return [FieldError(path, "Invalid", "cannot set both resource and service backends", "")]
    if resource is not None:
        ref = _as_dict(resource)
        errs = []
        for field in ("kind", "name"):
            if not ref.get(field):
                errs.append(FieldError(f"{path}.resource.{field}", "Required"))
        return errs
    if service is None:
        return [FieldError(path, "Invalid", "resource or service backend is required", "")]
    service = _as_dict(service)
    errs = []
    name = service.get("name")
    if not name:
        errs.append(FieldError(f"{path}.service.name", "Required"))
    elif problem := dns1035_label_error(str(name)):
        errs.append(FieldError(f"{path}.service.name", "Invalid", problem, name))
    port = _as_dict(service.get("port"))
    port_name, port_number = port.get("name") or "", port.get("number") or 0
    if port_name and port_number:
        errs.append(FieldError(path, "Invalid", "cannot set both port name & port number", ""))
    elif port_name:
        if len(str(port_name)) > 15 or not _IANA_SVC_NAME.fullmatch(str(port_name)):
            errs.append(
                FieldError(
                    f"{path}.service.port.name",
                    "Invalid",
                    "must be no more than 15 characters and consist of lower case alphanumeric "
                    "characters or '-'",
                    port_name,
                )
            )
    elif port_number:
        errs += _validate_port_number(port_number, f"{path}.service.port.number")
    else:
        errs.append(FieldError(path, "Required", "port name or number is required"))
    return errs


def _validate_ingress_path(entry: Any, path: str) -> list[FieldError]:
    entry = _as_dict(entry)
    errs: list[FieldError] = []
    path_type = entry.get("pathType")
    value = entry.get("path") or ""
    if not path_type:
        return [FieldError(f"{path}.pathType", "Required", "pathType must be specified")]
    if path_type in ("Exact", "Prefix"):
        if not str(value).startswith("/"):
            errs.append(FieldError(f"{path}.path", "Invalid", "must be an absolute path", value))
        if value:
            for sequence in _INVALID_PATH_SEQUENCES:
                if sequence in str(value):
                    errs.append(
                        FieldError(f"{path}.path", "Invalid", f"must not contain '{sequence}'", value)
                    )
            for suffix in _INVALID_PATH_SUFFIXES:
                if str(value).endswith(suffix):
                    errs.append(FieldError(f"{path}.path", "Invalid", f"cannot end with '{suffix}'", value))
    elif path_type == "ImplementationSpecific":
        if value and not str(value).startswith("/"):
            errs.append(FieldError(f"{path}.path", "Invalid", "must be an absolute path", value))
    else:
        supported = ", ".join(f'"{t}"' for t in _PATH_TYPES)
        errs.append(
            FieldError(f"{path}.pathType", "NotSupported", f"supported values: {supported}", path_type)
        )
    errs += _validate_ingress_backend(entry.get("backend"), f"{path}.backend")
    return errs


def _ingress_host_errors(host: str, path: str) -> list[FieldError]:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [FieldError(path, "Invalid", "must be a DNS name, not an IP address", host)]
    if host.startswith("*."):
        problem = dns1123_subdomain_error(host[2:])
        if problem:
            return [
                FieldError(
                    path,
                    "Invalid",
                    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS "
                    "subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and "
                    "end with an alphanumeric character (e.g. '*.example.com', regex used for validation "
                    "is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                    host,
                )
            ]
        return []
    problem = dns1123_subdomain_error(host)
    return [FieldError(path, "Invalid", problem, host)] if problem else []


def _validate_ingress(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    rules = _as_list(spec.get("rules"))
    default_backend = spec.get("defaultBackend")
    if not rules and default_backend is None:
        errs.append(FieldError("spec", "Invalid", "either `defaultBackend` or `rules` must be specified", []))
    if default_backend is not None:
        errs += _validate_ingress_backend(default_backend, "spec.defaultBackend")
    for i, rule in enumerate(rules):
        rule = _as_dict(rule)
        host = rule.get("host")
        if host:
            errs += _ingress_host_errors(str(host), f"spec.rules[{i}].host")
        http = rule.get("http")
        if http is None:
            continue
        paths = _as_list(_as_dict(http).get("paths"))
        if not paths:
            errs.append(FieldError(f"spec.rules[{i}].http.paths", "Required"))
        for j, entry in enumerate(paths):
            errs += _validate_ingress_path(entry, f"spec.rules[{i}].http.paths[{j}]")
    for i, tls in enumerate(_as_list(spec.get("tls"))):
        for j, host in enumerate(_as_list(_as_dict(tls).get("hosts"))):
            errs += _ingress_host_errors(str(host), f"spec.tls[{i}].hosts[{j}]")
    class_name = spec.get("ingressClassName")
    if class_name is not None and (problem := dns1123_subdomain_error(str(class_name))):
        errs.append(FieldError("spec.ingressClassName", "Invalid", problem, class_name))
    return errs


def _validate_ingress_class(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    controller = spec.get("controller")
    if not controller:
        errs.append(FieldError("spec.controller", "Required"))
    elif len(str(controller)) > 250:
        errs.append(FieldError("spec.controller", "TooLong", "must have at most 250 bytes", controller))
    params = spec.get("parameters")
    if isinstance(params, dict):
        for field in ("kind", "name"):
            if not params.get(field):
                errs.append(FieldError(f"spec.parameters.{field}", "Required"))
        scope = params.get("scope") or "Cluster"
        if scope not in ("Cluster", "Namespace"):
            errs.append(
                FieldError(
                    "spec.parameters.scope", "NotSupported", 'supported values: "Cluster", "Namespace"', scope
                )
            )
        elif scope == "Namespace" and not params.get("namespace"):
            errs.append(
                FieldError(
                    "spec.parameters.namespace", "Required", "`parameters.scope` is set to 'Namespace'"
                )
            )
        elif scope == "Cluster" and params.get("namespace"):
            errs.append(
                FieldError("spec.parameters.namespace", "Forbidden", "`parameters.scope` is set to 'Cluster'")
            )
    return errs


# --- PodDisruptionBudget (pkg/apis/policy/validation) ----------------------------------------------------

_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MSG = (
    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
    "regex used for validation is '[0-9]+%')"
)
UNHEALTHY_POD_EVICTION_POLICIES = ("AlwaysAllow", "IfHealthyBudget")


def _go_int_or_string(value: Any) -> GoLiteral:
    # field.Invalid(path, intOrPercent, ...) prints the struct with %#v.
    if isinstance(value, str):
        return GoLiteral(f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{json.dumps(value)}}}")
    return GoLiteral(f"intstr.IntOrString{{Type:0, IntVal:{value}, StrVal:\"\"}}")


def int_or_percent_errors(value: Any, path: str) -> list[FieldError]:
    """``ValidatePositiveIntOrPercent`` plus ``IsNotMoreThan100Percent`` (PDB minAvailable/maxUnavailable)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return [FieldError(path, "Invalid", "must be an integer or percentage (e.g '5%')", value)]
    if isinstance(value, int):
        if value < 0:
            return [FieldError(path, "Invalid", "must be greater than or equal to 0", value)]
        return []
    if not _PERCENT.fullmatch(value):
        return [FieldError(path, "Invalid", _PERCENT_MSG, _go_int_or_string(value))]
    if int(value[:-1]) > 100:
        return [FieldError(path, "Invalid", "must not be greater than 100%", value)]
    return []


def _validate_pdb(obj: JSON) -> list[FieldError]:
    spec = _as_dict(obj.get("spec"))
    errs: list[FieldError] = []
    min_available, max_unavailable = spec.get("minAvailable"), spec.get("maxUnavailable")
    if min_available is not None and max_unavailable is not None:
        # Upstream prints the whole spec struct (with pointer addresses); the JSON of the two fields says
        # the same without them.
        shown = GoLiteral(json.dumps({"minAvailable": min_available, "maxUnavailable": max_unavailable}))
        both = "minAvailable and maxUnavailable cannot be both set"
        errs.append(FieldError("spec", "Invalid", both, shown))
    if min_available is not None:
        errs += int_or_percent_errors(min_available, "spec.minAvailable")
    if max_unavailable is not None:
        errs += int_or_percent_errors(max_unavailable, "spec.maxUnavailable")
    errs += validate_label_selector(spec.get("selector"), "spec.selector")
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in UNHEALTHY_POD_EVICTION_POLICIES:
        errs.append(
            FieldError(
                "spec.unhealthyPodEvictionPolicy",
                "NotSupported",
                'supported values: "AlwaysAllow", "IfHealthyBudget"',
                policy,
            )
        )
    status = _as_dict(obj.get("status"))
    for field in ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"):
        errs += _non_negative(status, field, "status")
    return errs


VALIDATORS: dict[str, Callable[[JSON], list[FieldError]]] = {
    "Deployment": _validate_deployment,
    "ReplicaSet": _validate_replicaset,
    "Pod": _validate_pod,
    "Job": _validate_job,
    "CronJob": _validate_cronjob,
    "Service": _validate_service,
    "ConfigMap": _validate_configmap,
    "Secret": _validate_secret,
    "HorizontalPodAutoscaler": _validate_hpa,
    "Event": _validate_event,
    "EndpointSlice": _validate_endpoint_slice,
    "Ingress": _validate_ingress,
    "IngressClass": _validate_ingress_class,
    "PodDisruptionBudget": _validate_pdb,
}


def validate_object(kind: str, obj: JSON, namespaced: bool) -> list[FieldError]:
    errs = validate_metadata(kind, _as_dict(obj.get("metadata")), namespaced)
    validator = VALIDATORS.get(kind)
    if validator is not None:
        errs += validator(obj)
    return errs


# ---------------------------------------------------------------------------------------------- updates

_IMMUTABLE_MSG = "field is immutable"


def _changed(old: Any, new: Any) -> bool:
    return bool(old != new)


def validate_update(kind: str, new: JSON, old: JSON) -> list[FieldError]:
    """Rules that compare the new object with the stored one (immutable fields)."""
    errs: list[FieldError] = []
    nspec, ospec = _as_dict(new.get("spec")), _as_dict(old.get("spec"))
    if kind in ("Deployment", "ReplicaSet") and _changed(nspec.get("selector"), ospec.get("selector")):
        errs.append(FieldError("spec.selector", "Invalid", _IMMUTABLE_MSG, nspec.get("selector")))
    if kind == "Job":
        if _changed(nspec.get("selector"), ospec.get("selector")):
            errs.append(FieldError("spec.selector", "Invalid", _IMMUTABLE_MSG, nspec.get("selector")))
        if _changed(nspec.get("template"), ospec.get("template")):
            errs.append(FieldError("spec.template", "Invalid", _IMMUTABLE_MSG, "..."))
        if _changed(nspec.get("completions"), ospec.get("completions")):
            errs.append(FieldError("spec.completions", "Invalid", _IMMUTABLE_MSG, nspec.get("completions")))
    if kind == "Service":
        old_ip = ospec.get("clusterIP")
        if old_ip and _changed(nspec.get("clusterIP"), old_ip) and nspec.get("type") != "ExternalName":
            errs.append(FieldError("spec.clusterIP", "Invalid", _IMMUTABLE_MSG, nspec.get("clusterIP")))
    if kind == "Pod":
        errs += _validate_pod_update(nspec, ospec)
    if kind in ("ConfigMap", "Secret") and old.get("immutable") is True:
        errs += _immutable_data_errors(kind, new, old)
    if kind == "EndpointSlice" and _changed(new.get("addressType"), old.get("addressType")):
        errs.append(FieldError("addressType", "Invalid", _IMMUTABLE_MSG, new.get("addressType")))
    if kind == "IngressClass" and _changed(nspec.get("controller"), ospec.get("controller")):
        errs.append(FieldError("spec.controller", "Invalid", _IMMUTABLE_MSG, nspec.get("controller")))
    if kind == "Secret" and _changed(new.get("type"), old.get("type")):
        errs.append(FieldError("type", "Invalid", _IMMUTABLE_MSG, new.get("type")))
    return errs


def _immutable_data_errors(kind: str, new: JSON, old: JSON) -> list[FieldError]:
    """``immutable: true`` freezes the content and the flag itself; metadata may still change. An absent
    map and an empty one are the same object (both serialise to nothing), so they never count as a change.
    Secret ``stringData`` has already been folded into ``data`` here."""
    errs: list[FieldError] = []
    if new.get("immutable") is not True:
        errs.append(FieldError("immutable", "Forbidden", _IMMUTABLE_SET_MSG))
    for field in ("data", "binaryData") if kind == "ConfigMap" else ("data",):
        if _changed(_as_dict(new.get(field)), _as_dict(old.get(field))):
            errs.append(FieldError(field, "Forbidden", _IMMUTABLE_SET_MSG))
    return errs


def _validate_pod_update(nspec: JSON, ospec: JSON) -> list[FieldError]:
    # Only images, activeDeadlineSeconds and added tolerations may change on a pod; compare the rest.
    def strip(spec: JSON) -> JSON:
        copy = dict(spec)
        copy["containers"] = [
            {k: v for k, v in _as_dict(c).items() if k != "image"} for c in _as_list(spec.get("containers"))
        ]
        copy["initContainers"] = [
            {k: v for k, v in _as_dict(c).items() if k != "image"}
            for c in _as_list(spec.get("initContainers"))
        ]
        for key in ("activeDeadlineSeconds", "tolerations", "nodeName", "terminationGracePeriodSeconds"):
            copy.pop(key, None)
        return copy

    errs: list[FieldError] = []
    if _changed(strip(nspec), strip(ospec)):
        errs.append(
            FieldError(
                "spec",
                "Forbidden",
                "pod updates may not change fields other than `spec.containers[*].image`, "
                "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
                "`spec.tolerations` (only additions to existing tolerations), "
                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                "previously negative)",
            )
        )
    if ospec.get("nodeName") and _changed(nspec.get("nodeName"), ospec.get("nodeName")):
        errs.append(FieldError("spec.nodeName", "Invalid", _IMMUTABLE_MSG, nspec.get("nodeName")))
    return errs
