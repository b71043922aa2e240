"""Per-kind create and update strategies: server-set metadata, status handling and generation. Pure logic.

Upstream calls these ``PrepareForCreate`` / ``PrepareForUpdate`` (``pkg/registry/*/strategy.go``). A write to
the main resource may not change ``status`` of kinds that have a status subresource, and a write to
``/status`` may change nothing but ``status``. ``metadata.generation`` counts spec changes.
"""

from __future__ import annotations

import base64
import copy
import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from corral.api.defaults import apply_defaults
from corral.api.resources import ResourceType
from corral.util.clock import rfc3339

JSON = dict[str, Any]

GENERATION_KINDS = frozenset(
    {
        "Deployment",
        "ReplicaSet",
        "Job",
        "CronJob",
        "HorizontalPodAutoscaler",
        "Ingress",
        "PodDisruptionBudget",
    }
)

# Metadata only the server sets: a client's value is replaced on create, kept from the old object on update.
_SERVER_META = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds")


_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def _quantity(value: Any) -> Decimal | None:
    """A resource quantity (``500m``, ``1Gi``, ``2``) as a number, so that ``1`` equals ``1000m``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    m = _QUANTITY.fullmatch(value.strip())
    if m is None:
        return None
    number, exponent, suffix = m.groups()
    try:
        if exponent:
            return Decimal(number) * Decimal(10) ** int(exponent[1:])
        return Decimal(number) * _SUFFIX[suffix or ""]
    except (ArithmeticError, ValueError):
        return None


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def qos_class(pod_spec: JSON) -> str:
    """Pod QoS class from container requests and limits, as ``GetPodQOS``.

    Only cpu and memory count, zero quantities are ignored, init containers are included, and quantities
    compare by value. A missing request counts as equal to its limit, as pod defaulting makes it.
    """
    containers = [
        c
        for key in ("containers", "initContainers")
        for c in (pod_spec.get(key) or [])
        if isinstance(c, dict)
    ]
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for c in containers:
        resources = _dict(c.get("resources"))
        c_limits, c_requests = _dict(resources.get("limits")), _dict(resources.get("requests"))
        limits_found: set[str] = set()
        for totals, values in ((requests, {**c_limits, **c_requests}), (limits, c_limits)):
            for res in ("cpu", "memory"):
                amount = _quantity(values.get(res))
                if amount is not None and amount > 0:
                    totals[res] = totals.get(res, Decimal(0)) + amount
                    if totals is limits:
                        limits_found.add(res)
        if limits_found != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


def _reset_status(rt: ResourceType, obj: JSON) -> None:
    kind = rt.kind
    if kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    elif kind in ("Service", "Ingress"):
        obj["status"] = {"loadBalancer": {}}
    elif kind == "Namespace":
        obj["status"] = {"phase": "Active"}
    elif kind == "HorizontalPodAutoscaler":
        obj["status"] = {"currentReplicas": 0, "desiredReplicas": 0}
    elif kind == "PodDisruptionBudget":
        # Go's zero PodDisruptionBudgetStatus: the four counts are not omitempty (and the Python model
        # requires them), observedGeneration is.
        obj["status"] = {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}
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



def _fold_string_data(obj: JSON) -> None:
    """Secret ``stringData`` is write-only: merge it into ``data`` (base64) as upstream's conversion does."""
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        existing = obj.get("data")
        data: JSON = existing if isinstance(existing, dict) else {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


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
    if rt.kind == "Secret":
        _fold_string_data(obj)


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
        if rt.kind == "Deployment":
            # deploymentStatusStrategy keeps only spec and labels: the deployment controller records the
            # revision annotation with its status write, so a new revision does not bump generation.
            new_ann = (new.get("metadata") or {}).get("annotations")
            if isinstance(new_ann, dict) and new_ann:
                meta["annotations"] = new_ann
            else:
                meta.pop("annotations", None)
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
    if rt.kind == "Secret":
        _fold_string_data(new)
    if rt.has_status:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if rt.kind in GENERATION_KINDS and _generation_changes(rt, new, old):
        meta["generation"] = int(old_meta.get("generation") or 0) + 1
    return new


def _defaulted_spec(rt: ResourceType, obj: JSON) -> Any:
    # Upstream defaults a request body before PrepareForUpdate, so a PUT that leaves defaulted fields out
    # does not count as a spec change. Compare defaulted copies to get the same answer.
    probe = {"kind": rt.kind, "apiVersion": obj.get("apiVersion"), "spec": copy.deepcopy(_spec_of(obj))}
    apply_defaults(probe)
    return probe.get("spec")


def _generation_changes(rt: ResourceType, new: JSON, old: JSON) -> bool:
    if _defaulted_spec(rt, new) != _defaulted_spec(rt, old):
        return True
    if rt.kind == "Deployment":
        # deploymentStrategy.PrepareForUpdate: annotations are copied to ReplicaSets, so they count too.
        new_ann = (new.get("metadata") or {}).get("annotations") or {}
        old_ann = (old.get("metadata") or {}).get("annotations") or {}
        return bool(new_ann != old_ann)
    return False


def mark_deleting(obj: JSON, now: datetime, grace_seconds: int) -> JSON:
    """A copy of ``obj`` with ``deletionTimestamp`` set (graceful or finalizer-blocked deletion)."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    # Upstream sets the timestamp to when the grace period ends, which kubectl shows as the deadline.
    meta.setdefault("deletionTimestamp", rfc3339(now + timedelta(seconds=grace_seconds)))
    meta.setdefault("deletionGracePeriodSeconds", grace_seconds)
    if out.get("kind") == "Namespace":
        out.setdefault("status", {})["phase"] = "Terminating"
    return out
