"""Per-kind create and update strategies: server-set metadata, status handling and generation. Pure logic.

Upstream calls these ``PrepareForCreate`` / ``PrepareForUpdate`` (``pkg/registry/*/strategy.go``). A write to
the main resource may not change ``status`` of kinds that have a status subresource, and a write to
``/status`` may change nothing but ``status``. ``metadata.generation`` counts spec changes.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from corral.api.resources import ResourceType
from corral.util.clock import rfc3339

JSON = dict[str, Any]

GENERATION_KINDS = frozenset({"Deployment", "ReplicaSet", "Job", "CronJob", "HorizontalPodAutoscaler"})

# Metadata only the server sets: a client's value is replaced on create, kept from the old object on update.
_SERVER_META = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds")


def qos_class(pod_spec: JSON) -> str:
    """Pod QoS class from container requests and limits (``GetPodQOS``, simplified to cpu and memory)."""
    containers = [c for c in (pod_spec.get("containers") or []) if isinstance(c, dict)]
    any_set = False
    guaranteed = bool(containers)
    for c in containers:
        resources = c.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        if requests or limits:
            any_set = True
        for res in ("cpu", "memory"):
            if res not in limits or (res in requests and requests[res] != limits[res]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _reset_status(rt: ResourceType, obj: JSON) -> None:
    kind = rt.kind
    if kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    elif kind == "Service":
        obj["status"] = {"loadBalancer": {}}
    elif kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif kind == "HorizontalPodAutoscaler":
        obj["status"] = {"currentReplicas": 0, "desiredReplicas": 0}
    elif kind in ("Deployment", "ReplicaSet", "Job", "CronJob"):
        obj["status"] = {"replicas": 0} if kind == "ReplicaSet" else {}


def _generate_job_selector(obj: JSON, uid: str) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector"):
        return
    name = (obj.get("metadata") or {}).get("name", "")
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "job-name": name,
    }
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template = spec.setdefault("template", {})
    if isinstance(template, dict):
        meta = template.setdefault("metadata", {})
        if isinstance(meta, dict):
            meta["labels"] = {**(meta.get("labels") or {}), **labels}


def prepare_for_create(rt: ResourceType, obj: JSON, now: datetime, uid: str) -> None:
    """Fill the server-owned metadata of a new object (in place)."""
    meta = obj.setdefault("metadata", {})
    for key in (*_SERVER_META, "resourceVersion", "selfLink", "managedFields"):
        meta.pop(key, None)
    meta["uid"] = uid
    meta["creationTimestamp"] = rfc3339(now)
    if rt.kind in GENERATION_KINDS:
        meta["generation"] = 1
    if rt.has_status:
        _reset_status(rt, obj)
    if rt.kind == "Job":
        _generate_job_selector(obj, uid)


def _spec_of(obj: JSON) -> Any:
    return obj.get("spec")


def prepare_for_update(rt: ResourceType, new: JSON, old: JSON, subresource: str | None) -> JSON:
    """The object to store for an update of ``old`` with ``new``; ``new`` is owned by the caller."""
    if subresource == "status":
        result = copy.deepcopy(old)
        result["status"] = new.get("status")
        if result["status"] is None:
            result.pop("status")
        meta = result["metadata"]
        meta["resourceVersion"] = (new.get("metadata") or {}).get("resourceVersion")
        return result
    meta = new.setdefault("metadata", {})
    old_meta = old.get("metadata") or {}
    for key in _SERVER_META:
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    meta.pop("selfLink", None)
    meta.pop("managedFields", None)
    if rt.has_status:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if rt.kind in GENERATION_KINDS and _spec_of(new) != _spec_of(old):
        meta["generation"] = int(old_meta.get("generation") or 0) + 1
    return new


def mark_deleting(obj: JSON, now: datetime, grace_seconds: int) -> JSON:
    """A copy of ``obj`` with ``deletionTimestamp`` set (graceful or finalizer-blocked deletion)."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta.setdefault("deletionTimestamp", rfc3339(now))
    meta.setdefault("deletionGracePeriodSeconds", grace_seconds)
    if out.get("kind") == "Namespace":
        out.setdefault("status", {})["phase"] = "Terminating"
    return out
