"""A container's environment and argv: base variables, ports, envFrom, env (with the downward API and
ConfigMap/Secret references) and ``$(VAR)`` expansion. Pure logic: the agent fetches the ConfigMaps and
Secrets first and passes them in.

Order, as in the kubelet: base variables (PATH, HOSTNAME, HOME…), then the service variables
(``<NAME>_SERVICE_HOST``…, see ``servicelinks``), then the port variables Corral adds (``PORT``,
``PORT_<NAME>``), then ``envFrom`` sources in order, then ``env`` entries in order; later entries win, and an
``env`` value may reference any variable defined before it (service variables included, as in the kubelet).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from corral.agent.envexpand import expand

JSON = dict[str, Any]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VALID_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container cannot be configured (kubelet reason CreateContainerConfigError); message says why."""


@dataclass(frozen=True, slots=True)
class PodFacts:
    node_name: str
    host_ip: str
    pod_ip: str
    sandbox_dir: str
    base_path: str = DEFAULT_PATH
    node_cpu_millicores: int = 1000
    node_memory_bytes: int = 0


def _decode_secret_value(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return value


def _object_data(kind: str, obj: JSON) -> dict[str, str]:
    if kind == "Secret":
        data = {k: _decode_secret_value(str(v)) for k, v in (obj.get("data") or {}).items()}
        data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return data
    data = {k: str(v) for k, v in (obj.get("data") or {}).items()}
    for key, value in (obj.get("binaryData") or {}).items():
        data.setdefault(key, _decode_secret_value(str(value)))
    return data


def _label_path(path: str) -> tuple[str, str] | None:
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    return (match.group(1), match.group(2)) if match else None


def field_ref_value(pod: JSON, path: str, facts: PodFacts) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
    }
    if path in simple:
        return str(simple[path])
    labelled = _label_path(path)
    if labelled is not None:
        return str((meta.get(labelled[0]) or {}).get(labelled[1], ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f'unsupported fieldRef path "{path}"')


def _quantity_number(text: str) -> float:
    from corral.api.quantity import parse_quantity  # shared parser of Kubernetes quantities

    return float(parse_quantity(str(text)))


def resource_field_value(container: JSON, ref: JSON, facts: PodFacts) -> str:
    resource = str(ref.get("resource", ""))
    resources = container.get("resources") or {}
    section, _, name = resource.partition(".")
    if section not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f'unsupported resourceFieldRef resource "{resource}"')
    value = (resources.get(section) or {}).get(name)
    if value is None:
        if name == "cpu":
            amount = facts.node_cpu_millicores / 1000 if section == "limits" else 0.0
        elif name == "memory":
            amount = float(facts.node_memory_bytes) if section == "limits" else 0.0
        else:
            amount = 0.0
    else:
        amount = _quantity_number(value)
    divisor = _quantity_number(ref.get("divisor") or "1")
    if divisor <= 0:
        raise ConfigError(f"resourceFieldRef divisor must be positive, got {ref.get('divisor')}")
    return str(max(0, math.ceil(amount / divisor)))


def build_environment(
    pod: JSON,
    container: JSON,
    facts: PodFacts,
    port_env: Mapping[str, str],
    configmaps: Mapping[str, JSON | None],
    secrets: Mapping[str, JSON | None],
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The final environment of ``container``; raises :class:`ConfigError` naming the problem."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    env: dict[str, str] = {
        "PATH": facts.base_path,
        "HOSTNAME": str(meta.get("name", "")),
        "HOME": facts.sandbox_dir,
        "LANG": "C.UTF-8",
    }
    env.update(service_env or {})
    env.update(port_env)

    def lookup(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        source = configmaps if kind == "ConfigMap" else secrets
        obj = source.get(name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        return _object_data(kind, obj)

    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if not isinstance(ref, dict):
                continue
            data = lookup(kind, str(ref.get("name", "")), bool(ref.get("optional")))
            for name, value in (data or {}).items():
                if _VALID_ENV_NAME.match(prefix + name):
                    env[prefix + name] = value
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = field_ref_value(pod, str((source["fieldRef"] or {}).get("fieldPath", "")), facts)
        elif "resourceFieldRef" in source:
            env[name] = resource_field_value(container, source["resourceFieldRef"] or {}, facts)
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
            ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
            optional = bool(ref.get("optional"))
            data = lookup(kind, str(ref.get("name", "")), optional)
            if data is None:
                continue
            key = str(ref.get("key", ""))
            if key not in data:
                if optional:
                    continue
                raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{ref.get('name', '')}")
            env[name] = data[key]
        else:
            raise ConfigError(f"env {name}: valueFrom has no supported source")
    return env


def build_argv(container: JSON, env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` with ``$(VAR)`` expanded; raises :class:`ConfigError` when there is nothing
    to run (the process runtime has no image entrypoint to fall back on)."""
    command = [str(c) for c in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    argv = [expand(part, env) for part in command + args]
    if not command:
        raise ConfigError(
            f'container "{container.get("name", "")}" has no command: the process runtime needs '
            "spec.containers[].command (an image's entrypoint is not used)"
        )
    return argv
