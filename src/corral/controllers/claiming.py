"""Claiming dependents through ownerReferences, as apimachinery's ``ControllerRefManager``. Pure logic.

A controller owns the objects whose controller ownerReference carries its uid. Each sync it *claims*:
owned objects whose labels still match its selector stay owned; owned objects that stopped matching are
released (the reference is removed, the object is not deleted); orphans that match are adopted, unless the
controller or the orphan is being deleted. Objects controlled by someone else are never touched.

The writes themselves (strategic merge patches on ``metadata.ownerReferences``) are built here too, so the
controllers only send them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.api.selectors import LabelSelector

JSON = dict[str, Any]


def controller_ref(obj: Mapping[str, Any]) -> JSON | None:
    """The ownerReference with ``controller: true``, if any (``metav1.GetControllerOf``)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def owner_reference(owner: Mapping[str, Any], api_version: str, kind: str) -> JSON:
    meta = owner.get("metadata") or {}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


@dataclass(slots=True)
class Claim:
    owned: list[JSON] = field(default_factory=list)
    """Objects owned after the claim (already owned and matching, plus adopted)."""
    adopt: list[JSON] = field(default_factory=list)
    release: list[JSON] = field(default_factory=list)


def claim(
    owner: Mapping[str, Any], selector: LabelSelector, candidates: Iterable[Mapping[str, Any]]
) -> Claim:
    """Split ``candidates`` (objects of the owner's namespace) as ``ClaimObject`` does for each of them."""
    meta = owner.get("metadata") or {}
    uid = meta.get("uid")
    owner_deleting = is_terminating(owner)
    result = Claim()
    for obj in candidates:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        ref = controller_ref(obj)
        if ref is not None:
            if ref.get("uid") != uid:
                continue  # someone else's
            if not selector.empty and selector.matches(labels):
                result.owned.append(dict(obj))
            elif not owner_deleting:
                result.release.append(dict(obj))
            continue
        if owner_deleting or selector.empty or not selector.matches(labels) or is_terminating(obj):
            continue
        result.adopt.append(dict(obj))
        result.owned.append(dict(obj))
    return result


def adopt_patch(obj: Mapping[str, Any], ref: JSON) -> JSON:
    """Strategic merge patch adding ``ref`` (ownerReferences merge by uid), pinned to the object's uid."""
    return {"metadata": {"ownerReferences": [ref], "uid": (obj.get("metadata") or {}).get("uid")}}


def release_patch(obj: Mapping[str, Any], owner_uid: str) -> JSON:
    """Strategic merge patch removing the owner's reference and nothing else."""
    return {
        "metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": (obj.get("metadata") or {}).get("uid"),
        }
    }
