"""Naming an API request for metrics: verb, group, resource, subresource, and whether it is long-running.

Pure logic, no IO. The verbs are Kubernetes' metric verbs (``apiserver_request_total`` in the Kubernetes
apiserver's ``CleanVerb``): the HTTP method, except LIST (GET of a collection), WATCH (``watch=true``),
DELETECOLLECTION (DELETE of a collection), APPLY (PATCH with ``application/apply-patch+yaml``) and CONNECT
(``exec``, ``attach``, ``portforward``, ``proxy``). Requests outside the resource tree (discovery, OpenAPI,
``/version``, ``/metrics``) and paths naming no served resource keep the method as verb and empty resource
labels. Every label value comes from a closed set (the method table and the resource catalogue), never from
the path itself, so a client cannot grow the number of series by inventing paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from corral.api.resources import REGISTRY, Registry
from corral.apiserver.paths import UnknownPath, parse_path

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
OTHER_METHOD = "other"
CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy"})
# As the Kubernetes apiserver's long-running check: watches and connections, and log streams.
LONG_RUNNING_SUBRESOURCES = CONNECT_SUBRESOURCES | {"log"}
APPLY_PATCH = "application/apply-patch+yaml"
TRUE_VALUES = frozenset({"1", "true", "yes"})


class RequestInfo(NamedTuple):
    """A named tuple, not a dataclass: one is built per API request and used as a dictionary key."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    long_running: bool = False


def clean_method(method: str) -> str:
    upper = method.upper()
    return upper if upper in KNOWN_METHODS else OTHER_METHOD


def request_info(
    method: str,
    path: str,
    query: Mapping[str, str],
    content_type: str = "",
    registry: Registry = REGISTRY,
) -> RequestInfo:
    """How ``method path?query`` is counted. ``content_type`` matters for PATCH only (APPLY)."""
    verb = clean_method(method)
    if not path.startswith(("/api/", "/apis/")):
        return RequestInfo(verb)
    try:
        target = parse_path(path, registry)
    except UnknownPath:
        return RequestInfo(verb)
    sub = target.subresource or ""
    watch = (query.get("watch") or "").lower() in TRUE_VALUES
    if sub in CONNECT_SUBRESOURCES:
        verb = "CONNECT"
    elif verb in ("GET", "HEAD"):
        verb = "WATCH" if watch else "LIST" if target.name is None else "GET"
    elif verb == "DELETE" and target.name is None:
        verb = "DELETECOLLECTION"
    elif verb == "PATCH" and content_type.split(";", 1)[0].strip().lower() == APPLY_PATCH:
        verb = "APPLY"
    long_running = verb in ("WATCH", "CONNECT") or sub in LONG_RUNNING_SUBRESOURCES
    return RequestInfo(verb, target.rt.group, target.rt.plural, sub, long_running)
