"""Parsing Kubernetes REST paths into (resource type, namespace, name, subresource). Pure logic.

Shapes served::

    /api/v1/<resource>[/<name>[/<sub>]]                         cluster-scoped, or all namespaces
    /api/v1/namespaces/<ns>/<resource>[/<name>[/<sub>]]         namespaced
    /apis/<group>/<version>/...                                  the same under a named group
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.api.resources import REGISTRY, Registry, ResourceType


@dataclass(frozen=True, slots=True)
class Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


class UnknownPath(Exception):
    """The path names no served resource."""


def parse_path(path: str, registry: Registry = REGISTRY) -> Target:
    parts = path.strip("/").split("/")
    if "" in parts:  # "namespaces//pods" must not quietly become a GET of namespace "pods"
        raise UnknownPath(path)
    if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise UnknownPath(path)
    if not rest:
        raise UnknownPath(path)
    namespace: str | None = None
    # "namespaces/<ns>/<resource>..." is namespaced access unless it is a namespace's own subresource.
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    rt = registry.by_path(group, version, plural)
    if rt is None or len(rest) > 3:
        raise UnknownPath(path)
    if namespace is not None and not rt.namespaced:
        raise UnknownPath(path)
    if namespace is None and rt.namespaced and len(rest) > 1:
        # "/api/v1/pods" lists all namespaces; "/api/v1/pods/x" is no route upstream (a plain 404).
        raise UnknownPath(path)
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if sub is not None and rt.subresource(sub) is None and not (rt.kind == "Namespace" and sub == "finalize"):
        raise UnknownPath(path)
    return Target(rt, namespace, name, sub)
