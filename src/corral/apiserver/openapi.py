"""Minimal OpenAPI v3 documents: enough for kubectl's server-side field validation to switch on.

kubectl looks for each kind's PATCH operation with a ``fieldValidation`` query parameter; finding it, it
sends ``fieldValidation=Strict`` and lets the server validate (reference §4). Schemas are left out: kubectl
builds strategic merge patches from its compiled-in types. Pure builders.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from corral.api.resources import REGISTRY, Registry, ResourceType

JSON = dict[str, Any]

_PARAMS = [
    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
    {"name": "force", "in": "query", "schema": {"type": "boolean"}},
]
_PATCH_BODIES = {
    ct: {"schema": {"type": "object"}}
    for ct in (
        "application/strategic-merge-patch+json",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/apply-patch+yaml",
    )
}


def gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _item_path(rt: ResourceType) -> str:
    base = f"/{gv_path(rt.group, rt.version)}"
    if rt.namespaced:
        return f"{base}/namespaces/{{namespace}}/{rt.plural}/{{name}}"
    return f"{base}/{rt.plural}/{{name}}"


def group_version_document(group: str, version: str, registry: Registry = REGISTRY) -> JSON | None:
    paths: JSON = {}
    for rt in registry.resources:
        if rt.group != group or rt.version != version:
            continue
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        paths[_item_path(rt)] = {
            "patch": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "patch",
                "parameters": _PARAMS,
                "requestBody": {"content": _PATCH_BODIES},
                "responses": {"200": {"description": "OK"}},
            },
            "put": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "put",
                "parameters": _PARAMS[:3],
                "responses": {"200": {"description": "OK"}},
            },
        }
    if not paths:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "components": {"schemas": {}},
        "paths": paths,
    }


def documents(registry: Registry = REGISTRY) -> dict[str, bytes]:
    """Encoded per-group-version documents keyed by ``api/v1`` / ``apis/apps/v1``."""
    out: dict[str, bytes] = {}
    for rt in registry.resources:
        key = gv_path(rt.group, rt.version)
        if key not in out:
            doc = group_version_document(rt.group, rt.version, registry)
            if doc is not None:
                out[key] = orjson.dumps(doc)
    return out


def index(docs: dict[str, bytes]) -> JSON:
    paths = {}
    for key, body in docs.items():
        digest = hashlib.sha256(body).hexdigest()[:32].upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
