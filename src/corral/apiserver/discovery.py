"""Discovery documents, aggregated (apidiscovery.k8s.io/v2) and legacy, built from the resource catalogue.

kubectl 1.32 reads aggregated discovery when the Accept header asks for exactly v2; the Python client and
older kubectl builds read the legacy documents. Pure builders; the handlers cache their JSON once.
"""

from __future__ import annotations

from typing import Any

from corral.api.resources import GROUP_ORDER, REGISTRY, Registry, ResourceType, group_versions

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

JSON = dict[str, Any]


def _gvk(group: str, version: str, kind: str) -> JSON:
    return {"group": group, "version": version, "kind": kind}


def _aggregated_resource(rt: ResourceType) -> JSON:
    entry: JSON = {
        "resource": rt.plural,
        "responseKind": _gvk(rt.group, rt.version, rt.kind),
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    if rt.subresources:
        entry["subresources"] = [
            {
                "subresource": sub.name,
                "responseKind": _gvk(
                    sub.group if sub.group or sub.version else rt.group,
                    sub.version or rt.version,
                    sub.kind or rt.kind,
                ),
                "verbs": list(sub.verbs),
            }
            for sub in rt.subresources
        ]
    return entry


def aggregated(core: bool, registry: Registry = REGISTRY) -> JSON:
    """``/api`` (core=True: one item named "") or ``/apis`` (the named groups)."""
    groups = [""] if core else [g for g in GROUP_ORDER if g]
    items = []
    for group in groups:
        versions = []
        for version in group_versions(group):
            resources = [
                _aggregated_resource(rt)
                for rt in registry.resources
                if rt.group == group and rt.version == version
            ]
            versions.append({"version": version, "resources": resources, "freshness": "Current"})
        items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group(group: str) -> JSON:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in group_versions(group)]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def api_group_list() -> JSON:
    groups = []
    for group in GROUP_ORDER:
        if group:
            entry = api_group(group)
            entry.pop("kind")
            entry.pop("apiVersion")
            groups.append(entry)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group: str, version: str, registry: Registry = REGISTRY) -> JSON | None:
    resources: list[JSON] = []
    for rt in registry.resources:
        if rt.group != group or rt.version != version:
            continue
        entry: JSON = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            sub_entry: JSON = {
                "name": f"{rt.plural}/{sub.name}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": sub.kind or rt.kind,
                "verbs": list(sub.verbs),
            }
            if (sub.group or sub.version) and (sub.group, sub.version) != (rt.group, rt.version):
                # Only a subresource served in another group-version names it (deployments/scale).
                sub_entry["group"] = sub.group
                sub_entry["version"] = sub.version
            resources.append(sub_entry)
    if not resources:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def wants_aggregated(accept: str) -> bool:
    """True only when the Accept header lists exactly apidiscovery v2 (kubectl <= 1.29 asks for v2beta1)."""
    for part in accept.split(","):
        params = {
            p.split("=", 1)[0].strip(): p.split("=", 1)[1].strip() for p in part.split(";")[1:] if "=" in p
        }
        if (
            params.get("g") == "apidiscovery.k8s.io"
            and params.get("v") == "v2"
            and params.get("as") == "APIGroupDiscoveryList"
        ):
            return True
    return False


def group_versions_exist(group: str) -> bool:
    return bool(group) and bool(group_versions(group))
