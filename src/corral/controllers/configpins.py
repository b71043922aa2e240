"""Config-aware rollouts: pin the ConfigMaps and Secrets a Deployment's pods read. Pure.

Kubernetes does not roll a Deployment when a ConfigMap it reads changes, and ``rollout undo`` brings back the
old code with today's configuration. Corral pins configuration to the pod template instead:

- For every ConfigMap or Secret the template reads (``configrefs.pod_spec_refs``) the controller keeps an
  immutable **snapshot** copy named ``<name>-<hash>`` (the hash is of the content, so equal content shares one
  snapshot), owned by the Deployment, and records ``"ConfigMap/<name>" → snapshot`` in the template annotation
  ``corral.dev/config-pins``. Pods read the snapshot (the agent resolves it), so a ReplicaSet keeps the
  configuration it was started with, and ``kubectl rollout undo`` — which copies an old ReplicaSet's template
  back — restores the old pins with the old code.
- When the live object's content changes, the pin moves to a new snapshot: the template changes, so the
  Deployment controller rolls out as for any template change.
- The Deployment annotation ``corral.dev/config-observed`` holds the content hash last seen for each
  reference. Only a change against *that* moves a pin: after an undo the template's pins are older than the
  live objects, and that is what the user asked for. The annotation is not copied to ReplicaSets, so an undo
  (which replaces the Deployment's annotations with the ReplicaSet's) drops it, and the next sync adopts the
  live hashes as observed without moving any pin.
- ``corral.dev/rollout-on-config-change: "false"`` on the Deployment opts out: pins are removed (one rollout),
  and pods read the live objects with their live-updating files, as in Kubernetes.
- Snapshots no longer pinned by the Deployment's template or by any of its ReplicaSets (they go with the
  revision history) are released: deleted, or only unowned when another Deployment still owns them.

The hash is SHA-256 over the kind, name and content, cut to 10 hex digits: a name suffix, not a secret. For a
Secret it is still derived from the values (as Helm's checksum annotations are), so a guessable value can be
confirmed by someone who can read Deployments; docs/config.md says so.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral.api.configrefs import (
    CONFIG_OBSERVED,
    CONFIG_PINS,
    CONFIGMAP,
    SNAPSHOT_OF,
    encode_pins,
    is_snapshot_of,
    parse_pins,
    pin_key,
    pod_spec_refs,
)
from corral.controllers.rollout import CHANGE_CAUSE
from corral.util.clock import parse_rfc3339

JSON = dict[str, Any]

OPT_OUT = "corral.dev/rollout-on-config-change"
"""Deployment annotation; ``"false"`` turns config-aware rollouts off for it."""
SNAPSHOT_LABEL = "corral.dev/config-snapshot"
"""Label ``"true"`` on every snapshot copy, to find them (the ``SNAPSHOT_OF`` annotation names the source)."""
HASH_CHARS = 10
MAX_NAME = 253
RELEASE_AFTER = timedelta(seconds=30)
"""A snapshot younger than this is never released: the pin that uses it may not be in the caches yet."""

Ref = tuple[str, str]  # (kind, name)


@dataclass(frozen=True, slots=True)
class SnapshotWrite:
    op: str  # "create" | "own" (add the Deployment to an existing snapshot's owners) | "release"
    kind: str
    name: str
    body: JSON | None = None  # for "create"
    delete: bool = False  # for "release": the Deployment is the only owner


@dataclass(frozen=True, slots=True)
class PinEvent:
    type: str
    reason: str
    message: str


@dataclass
class PinPlan:
    deployment: JSON | None = None
    """The Deployment with new pins / observed hashes, to write (a spec change: the rollout follows)."""
    snapshots: list[SnapshotWrite] = field(default_factory=list)
    """Writes that must succeed before ``deployment`` is written (create / own), or may follow (release)."""
    events: list[PinEvent] = field(default_factory=list)


def content_hash(kind: str, name: str, obj: Mapping[str, Any]) -> str:
    if kind == CONFIGMAP:
        content: JSON = {"data": obj.get("data") or {}, "binaryData": obj.get("binaryData") or {}}
    else:
        content = {"type": obj.get("type") or "Opaque", "data": obj.get("data") or {}}
    canonical = json.dumps([kind, name, content], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_CHARS]


def snapshot_name(name: str, digest: str) -> str:
    base = name[: MAX_NAME - HASH_CHARS - 1].rstrip("-.")
    return f"{base}-{digest}"


def opted_out(deployment: Mapping[str, Any]) -> bool:
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(OPT_OUT, "")).strip().lower() == "false"


def template_refs(deployment: Mapping[str, Any]) -> set[Ref]:
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return pod_spec_refs(spec)


def template_pins(obj: Mapping[str, Any]) -> dict[str, str]:
    """The pins in the pod template of a Deployment or ReplicaSet."""
    template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    return parse_pins(template_meta.get("annotations"))


def _observed(annotations: Mapping[str, Any]) -> dict[str, str] | None:
    raw = annotations.get(CONFIG_OBSERVED)
    if not isinstance(raw, str):
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


def snapshot_body(kind: str, name: str, live: Mapping[str, Any], owner: JSON) -> JSON:
    meta = live.get("metadata") or {}
    digest = content_hash(kind, name, live)
    body: JSON = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": snapshot_name(name, digest),
            "namespace": meta.get("namespace"),
            "labels": {SNAPSHOT_LABEL: "true"},
            "annotations": {SNAPSHOT_OF: name},
            "ownerReferences": [owner],
        },
        "immutable": True,
    }
    if kind == CONFIGMAP:
        for key in ("data", "binaryData"):
            if live.get(key):
                body[key] = copy.deepcopy(live[key])
    else:
        body["type"] = live.get("type") or "Opaque"
        if live.get("data"):
            body["data"] = copy.deepcopy(live["data"])
    return body


def snapshot_owner(deployment: Mapping[str, Any]) -> JSON:
    """A plain (not controller) owner reference: several Deployments may share a snapshot, and a foreground
    deletion of one must not wait for it."""
    meta = deployment.get("metadata") or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
    }


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (obj.get("metadata") or {}).get("ownerReferences") or [])


def plan_pins(
    deployment: Mapping[str, Any],
    live: Mapping[Ref, JSON | None],
    snapshots: Mapping[Ref, JSON | None],
) -> PinPlan:
    """One sync's pin changes for ``deployment``.

    ``live`` holds each referenced object (None when it does not exist); ``snapshots`` the existing objects
    under candidate snapshot names (keyed by kind and snapshot name; None or absent when free)."""
    meta = deployment.get("metadata") or {}
    annotations: Mapping[str, Any] = meta.get("annotations") or {}
    pins = template_pins(deployment)
    observed = _observed(annotations)
    plan = PinPlan()

    if opted_out(deployment):
        if pins or CONFIG_OBSERVED in annotations:
            plan.deployment = _with_pins(deployment, {}, None, None)
        return plan

    refs = template_refs(deployment)
    new_pins = {k: v for k, v in pins.items() if _split(k) in refs}
    new_observed: dict[str, str] = {}
    changed: list[str] = []
    owner = snapshot_owner(deployment)
    uid = str(meta.get("uid", ""))
    for kind, name in sorted(refs):
        key = pin_key(kind, name)
        obj = live.get((kind, name))
        if obj is None:
            # Missing: keep what the pods run with now; the agent makes new pods wait for it.
            if observed and key in observed:
                new_observed[key] = observed[key]
            continue
        digest = content_hash(kind, name, obj)
        seen = (observed or {}).get(key)
        pinned = new_pins.get(key)
        if pinned is not None and (seen is None or seen == digest):
            new_observed[key] = digest  # unchanged, or adopting after an undo / a fresh annotation
            continue
        target = snapshot_name(name, digest)
        existing = snapshots.get((kind, target))
        if existing is None:
            body = snapshot_body(kind, name, obj, owner)
            plan.snapshots.append(SnapshotWrite("create", kind, target, body))
        elif not is_snapshot_of(existing, name) or content_hash(kind, name, existing) != digest:
            plan.events.append(
                PinEvent(
                    "Warning",
                    "ConfigSnapshotConflict",
                    f"cannot pin {kind} {name}: {target} exists and is not its snapshot; "
                    "pods read the live object",
                )
            )
            new_pins.pop(key, None)
            continue
        elif not owned_by(existing, uid):
            plan.snapshots.append(SnapshotWrite("own", kind, target))
        new_pins[key] = target
        new_observed[key] = digest
        if pinned is not None and pinned != target:
            changed.append(f"{kind} {name}")

    if new_pins != pins or new_observed != (observed or {}):
        cause = f"config change: {', '.join(changed)}" if changed else None
        plan.deployment = _with_pins(deployment, new_pins, new_observed, cause)
        if changed:
            plan.events.append(
                PinEvent("Normal", "ConfigChanged", f"{', '.join(changed)} changed: rolling out")
            )
    return plan


def _split(key: str) -> Ref:
    kind, _, name = key.partition("/")
    return kind, name


def _with_pins(
    deployment: Mapping[str, Any],
    pins: Mapping[str, str],
    observed: Mapping[str, str] | None,
    cause: str | None,
) -> JSON:
    updated = copy.deepcopy(dict(deployment))
    meta = updated.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    if observed:
        annotations[CONFIG_OBSERVED] = encode_pins(observed)
    else:
        annotations.pop(CONFIG_OBSERVED, None)
    if cause:
        annotations[CHANGE_CAUSE] = cause
    meta["annotations"] = annotations
    template_meta = updated.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})
    template_annotations = dict(template_meta.get("annotations") or {})
    if pins:
        template_annotations[CONFIG_PINS] = encode_pins(pins)
    else:
        template_annotations.pop(CONFIG_PINS, None)
    template_meta["annotations"] = template_annotations
    if not template_annotations:
        template_meta.pop("annotations")
    return updated


def plan_releases(
    deployment: Mapping[str, Any],
    replica_sets: Sequence[Mapping[str, Any]],
    owned_snapshots: Sequence[tuple[str, Mapping[str, Any]]],
    now: datetime,
) -> list[SnapshotWrite]:
    """Snapshots owned by ``deployment`` that neither its template nor any of its ReplicaSets pins any more.

    ``owned_snapshots`` are ``(kind, object)`` pairs; ``replica_sets`` the Deployment's own ReplicaSets."""
    pinned = set(template_pins(deployment).values())
    for rs in replica_sets:
        pinned.update(template_pins(rs).values())
    uid = str((deployment.get("metadata") or {}).get("uid", ""))
    writes: list[SnapshotWrite] = []
    for kind, snapshot in owned_snapshots:
        smeta = snapshot.get("metadata") or {}
        name = str(smeta.get("name", ""))
        if name in pinned or smeta.get("deletionTimestamp"):
            continue
        try:
            created = parse_rfc3339(str(smeta.get("creationTimestamp")))
        except ValueError:
            continue
        if now - created < RELEASE_AFTER:
            continue
        owners = [ref for ref in smeta.get("ownerReferences") or [] if ref.get("uid") != uid]
        writes.append(SnapshotWrite("release", kind, name, delete=not owners))
    return writes
