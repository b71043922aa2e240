"""Which ConfigMaps and Secrets a pod spec reads, and the config pins a pod carries. Pure.

Shared by the agent (which fetches what a container or a volume reads) and the Deployment controller (which
pins what a Deployment's pods read, see ``controllers/configpins.py``), so both agree on what counts as a
reference: ``env[].valueFrom.configMapKeyRef/secretKeyRef``, ``envFrom[].configMapRef/secretRef`` of every
container and init container, and ``configMap``/``secret`` volumes and projected sources.
``imagePullSecrets`` are not configuration a process reads, so they are not references.

The pins: a pod template annotation ``corral.dev/config-pins`` maps ``"ConfigMap/<name>"`` or
``"Secret/<name>"`` to the name of an immutable snapshot copy. A pod that carries it reads the snapshot in
place of the named object, so each ReplicaSet keeps the configuration it was started with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

JSON = dict[str, Any]

CONFIG_PINS = "corral.dev/config-pins"
"""Pod template annotation: JSON object ``{"ConfigMap/app": "app-1a2b3c4d5e", …}``."""

CONFIG_OBSERVED = "corral.dev/config-observed"
"""Deployment annotation: JSON ``{"ConfigMap/app": "<content hash>", …}`` last seen (configpins)."""

CONFIGMAP = "ConfigMap"
SECRET = "Secret"


def container_refs(container: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a container's environment reads."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    for source in container.get("envFrom") or []:
        if isinstance(source.get("configMapRef"), dict):
            configmaps.add(str(source["configMapRef"].get("name", "")))
        if isinstance(source.get("secretRef"), dict):
            secrets.add(str(source["secretRef"].get("name", "")))
    for item in container.get("env") or []:
        source = item.get("valueFrom") or {}
        if isinstance(source.get("configMapKeyRef"), dict):
            configmaps.add(str(source["configMapKeyRef"].get("name", "")))
        if isinstance(source.get("secretKeyRef"), dict):
            secrets.add(str(source["secretKeyRef"].get("name", "")))
    return configmaps, secrets


def volume_refs(volumes: Iterable[Mapping[str, Any]]) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets a pod's volumes read."""
    configmaps: set[str] = set()
    secrets: set[str] = set()
    for volume in volumes:
        sources: list[Any] = [volume]
        if isinstance(volume.get("projected"), dict):
            sources = list(volume["projected"].get("sources") or [])
        for source in sources:
            if not isinstance(source, dict):
                continue
            if isinstance(source.get("configMap"), dict):
                configmaps.add(str(source["configMap"].get("name", "")))
            if isinstance(source.get("secret"), dict):
                secret = source["secret"]
                secrets.add(str(secret.get("secretName") or secret.get("name") or ""))
    return configmaps, secrets


def pod_spec_refs(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every ``(kind, name)`` a pod spec reads, kind being ``ConfigMap`` or ``Secret``."""
    refs: set[tuple[str, str]] = set()
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    parts = [container_refs(c) for c in containers if isinstance(c, dict)]
    parts.append(volume_refs(v for v in spec.get("volumes") or [] if isinstance(v, dict)))
    for configmaps, secrets in parts:
        refs.update((CONFIGMAP, name) for name in configmaps if name)
        refs.update((SECRET, name) for name in secrets if name)
    return refs


def pin_key(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def parse_pins(annotations: Mapping[str, Any] | None) -> dict[str, str]:
    """The pins of a pod or template; a malformed annotation counts as none (the pod reads live objects)."""
    raw = (annotations or {}).get(CONFIG_PINS)
    if not isinstance(raw, str):
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str) and v}


def encode_pins(pins: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(pins.items())), separators=(",", ":"))


def pinned_name(pins: Mapping[str, str], kind: str, name: str) -> str:
    """The object a pod reads for ``kind/name``: its snapshot when pinned, else the object itself."""
    return pins.get(pin_key(kind, name), name)


SNAPSHOT_OF = "corral.dev/config-snapshot-of"
"""Annotation on a snapshot copy: the name of the ConfigMap or Secret it copies."""


def is_snapshot_of(obj: Mapping[str, Any], name: str) -> bool:
    """Whether ``obj`` is an immutable snapshot copy of the object called ``name`` (not a look-alike)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return obj.get("immutable") is True and annotations.get(SNAPSHOT_OF) == name
