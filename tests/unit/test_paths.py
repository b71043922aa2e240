"""REST path parsing: scopes, subresources, the namespace special cases and unknown paths."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.resources import REGISTRY
from corral.apiserver.paths import UnknownPath, parse_path

SETTINGS = settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("path", "api_version", "plural", "namespace", "name", "sub"),
    [
        ("/api/v1/pods", "v1", "pods", None, None, None),  # all namespaces
        ("/api/v1/namespaces/default/pods", "v1", "pods", "default", None, None),
        ("/api/v1/namespaces/default/pods/web-1", "v1", "pods", "default", "web-1", None),
        ("/api/v1/namespaces/default/pods/web-1/status", "v1", "pods", "default", "web-1", "status"),
        ("/api/v1/namespaces/default/pods/web-1/log", "v1", "pods", "default", "web-1", "log"),
        ("/api/v1/namespaces/default/pods/web-1/exec", "v1", "pods", "default", "web-1", "exec"),
        ("/api/v1/namespaces/default/pods/web-1/eviction", "v1", "pods", "default", "web-1", "eviction"),
        ("/api/v1/namespaces", "v1", "namespaces", None, None, None),
        ("/api/v1/namespaces/default", "v1", "namespaces", None, "default", None),
        ("/api/v1/namespaces/default/status", "v1", "namespaces", None, "default", "status"),
        ("/api/v1/namespaces/default/finalize", "v1", "namespaces", None, "default", "finalize"),
        # A namespace literally called "status" still holds namespaced collections.
        ("/api/v1/namespaces/status/pods", "v1", "pods", "status", None, None),
        ("/api/v1/namespaces/status", "v1", "namespaces", None, "status", None),
        ("/api/v1/nodes", "v1", "nodes", None, None, None),
        ("/api/v1/nodes/n1", "v1", "nodes", None, "n1", None),
        ("/api/v1/nodes/n1/status", "v1", "nodes", None, "n1", "status"),
        ("/apis/apps/v1/deployments", "apps/v1", "deployments", None, None, None),
        ("/apis/apps/v1/namespaces/ns/deployments/web", "apps/v1", "deployments", "ns", "web", None),
        ("/apis/apps/v1/namespaces/ns/deployments/web/scale", "apps/v1", "deployments", "ns", "web", "scale"),
        (
            "/apis/apps/v1/namespaces/ns/replicasets/web-x/status",
            "apps/v1",
            "replicasets",
            "ns",
            "web-x",
            "status",
        ),
        ("/apis/batch/v1/namespaces/ns/cronjobs/c", "batch/v1", "cronjobs", "ns", "c", None),
        (
            "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers/h",
            "autoscaling/v2",
            "horizontalpodautoscalers",
            "ns",
            "h",
            None,
        ),
        (
            "/apis/autoscaling/v1/namespaces/ns/horizontalpodautoscalers/h",
            "autoscaling/v1",
            "horizontalpodautoscalers",
            "ns",
            "h",
            None,
        ),
        (
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
            "coordination.k8s.io/v1",
            "leases",
            "ns",
            "l",
            None,
        ),
        ("/api/v1/namespaces/default/pods/", "v1", "pods", "default", None, None),  # trailing slash
        ("api/v1/pods", "v1", "pods", None, None, None),
    ],
)
def test_parse_path(
    path: str, api_version: str, plural: str, namespace: str | None, name: str | None, sub: str | None
) -> None:
    target = parse_path(path)
    assert (target.rt.api_version, target.rt.plural) == (api_version, plural)
    assert (target.namespace, target.name, target.subresource) == (namespace, name, sub)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/",
        "/api",
        "/api/v1",
        "/api/v2/pods",
        "/apis",
        "/apis/apps",
        "/apis/apps/v1",
        "/apis/apps/v2/deployments",
        "/apis/extensions/v1beta1/deployments",
        "/api/v1/deployments",  # wrong group
        "/apis/apps/v1/pods",
        "/api/v1/secretz",
        "/api/v1/namespaces/default/nodes",  # cluster-scoped kinds have no namespaced path
        "/api/v1/namespaces/default/namespaces",
        "/api/v1/namespaces/default/pods/web/nosuch",
        "/api/v1/namespaces/default/pods/web/status/extra",
        "/api/v1/namespaces/default/configmaps/c/status",  # config maps have no status subresource
        "/api/v1/nodes/n1/finalize",  # only namespaces have finalize
        "/api/v1/pods/web",  # a namespaced object needs its namespace in the path
        "/apis/apps/v1/deployments/web/scale",
        "/api/v1/namespaces//pods",  # empty segments are not skipped over
        "/api/v1//pods",
        "/version",
        "/api/v1/watch/pods",
    ],
)
def test_unknown_paths(path: str) -> None:
    with pytest.raises(UnknownPath):
        parse_path(path)


def test_every_registered_resource_has_collection_and_item_paths() -> None:
    for rt in REGISTRY.resources:
        base = f"/api/{rt.version}" if not rt.group else f"/apis/{rt.group}/{rt.version}"
        scope = f"{base}/namespaces/ns" if rt.namespaced else base
        assert parse_path(f"{scope}/{rt.plural}").rt is rt
        item = parse_path(f"{scope}/{rt.plural}/x")
        assert (item.rt, item.name) == (rt, "x")
        for sub in rt.subresources:
            assert parse_path(f"{scope}/{rt.plural}/x/{sub.name}").subresource == sub.name


_SEGMENTS = st.sampled_from(
    ["api", "apis", "v1", "v2", "apps", "autoscaling", "namespaces", "default", "pods", "nodes", "status",
     "finalize", "scale", "log", "deployments", "x", "", "..", "%2F", "namespaces"]
)  # fmt: skip


@SETTINGS
@given(st.lists(_SEGMENTS, max_size=8).map("/".join) | st.text(max_size=40))
def test_parse_path_raises_only_unknown_path(path: str) -> None:
    try:
        target = parse_path(path)
    except UnknownPath:
        return
    # Whatever parses is a coherent target.
    assert (target.namespace is not None) <= target.rt.namespaced
    assert target.subresource is None or target.name is not None
    assert target.name is None or target.namespace is not None or not target.rt.namespaced
