"""Discovery (aggregated v2 and legacy) and OpenAPI v3 documents, against reference §3, §4 and §9.4."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.resources import GROUP_ORDER, REGISTRY, group_versions
from corral.apiserver import discovery, openapi

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

JSON = dict[str, Any]

KUBECTL_132_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def _all_aggregated_resources() -> list[tuple[str, str, JSON]]:
    out = []
    for doc in (discovery.aggregated(True), discovery.aggregated(False)):
        for item in doc["items"]:
            for version in item["versions"]:
                out += [(item["metadata"]["name"], version["version"], r) for r in version["resources"]]
    return out


def _find(group: str, version: str, plural: str) -> JSON:
    for g, v, res in _all_aggregated_resources():
        if (g, v, res["resource"]) == (group, version, plural):
            return res
    raise AssertionError(f"{group}/{version} {plural} not in aggregated discovery")


# ------------------------------------------------------------------------------------------------ aggregated


def test_core_aggregated_document() -> None:
    doc = discovery.aggregated(True)
    assert (doc["kind"], doc["apiVersion"], doc["metadata"]) == (
        "APIGroupDiscoveryList",
        "apidiscovery.k8s.io/v2",
        {},
    )
    assert [item["metadata"]["name"] for item in doc["items"]] == [""]
    assert [v["version"] for v in doc["items"][0]["versions"]] == ["v1"]


def test_group_aggregated_document_lists_named_groups_preferred_version_first() -> None:
    doc = discovery.aggregated(False)
    names = [item["metadata"]["name"] for item in doc["items"]]
    assert names == [g for g in GROUP_ORDER if g]
    versions = {item["metadata"]["name"]: [v["version"] for v in item["versions"]] for item in doc["items"]}
    assert versions["autoscaling"][0] == "v2"  # kubectl uses the first listed version
    assert versions["apps"] == ["v1"]
    for item in doc["items"]:
        assert all(v["freshness"] == "Current" for v in item["versions"])


def test_every_resource_and_subresource_has_a_response_kind() -> None:
    # client-go silently drops entries without one (aggregated_discovery.go).
    resources = _all_aggregated_resources()
    assert len(resources) == len(REGISTRY.resources)
    for _, _, res in resources:
        assert res["responseKind"]["kind"] and res["responseKind"]["version"]
        assert res["scope"] in ("Namespaced", "Cluster")
        assert res["verbs"] and res["singularResource"]
        for sub in res.get("subresources", []):
            assert sub["responseKind"]["kind"] and sub["responseKind"]["version"], (res["resource"], sub)
            assert sub["verbs"]


def test_aggregated_entries_match_the_reference() -> None:
    deploy = _find("apps", "v1", "deployments")
    assert deploy["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert deploy["scope"] == "Namespaced" and deploy["singularResource"] == "deployment"
    assert deploy["verbs"] == [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    assert deploy["shortNames"] == ["deploy"] and deploy["categories"] == ["all"]
    subs = {s["subresource"]: s for s in deploy["subresources"]}
    assert subs["status"]["responseKind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert subs["scale"]["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert subs["scale"]["verbs"] == ["get", "patch", "update"]
    pod_subs = {s["subresource"]: s for s in _find("", "v1", "pods")["subresources"]}
    assert pod_subs["exec"]["responseKind"] == {"group": "", "version": "v1", "kind": "PodExecOptions"}
    assert pod_subs["exec"]["verbs"] == ["create", "get"]
    assert pod_subs["log"]["verbs"] == ["get"]
    assert pod_subs["eviction"]["responseKind"] == {"group": "policy", "version": "v1", "kind": "Eviction"}
    assert _find("", "v1", "namespaces")["scope"] == "Cluster"
    assert _find("", "v1", "nodes")["scope"] == "Cluster"


def test_category_all_is_what_kubectl_get_all_lists() -> None:
    in_all = {
        (g, res["resource"])
        for g, _, res in _all_aggregated_resources()
        if "all" in res.get("categories", [])
    }
    assert in_all == {
        ("", "pods"),
        ("", "services"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    }


def test_aggregated_documents_encode() -> None:
    for core in (True, False):
        assert orjson.loads(orjson.dumps(discovery.aggregated(core))) == discovery.aggregated(core)


@pytest.mark.parametrize(
    ("accept", "aggregated"),
    [
        (KUBECTL_132_ACCEPT, True),
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", True),
        ("application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList", True),
        ("application/json,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.9", True),
        # kubectl <= 1.29 asks for v2beta1 only, and breaks if answered with v2.
        ("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", False),
        ("application/json", False),
        ("*/*", False),
        ("", False),
        ("application/json;g=apidiscovery.k8s.io;v=v2", False),
        ("application/json;g=other.io;v=v2;as=APIGroupDiscoveryList", False),
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=Table", False),
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", False),
    ],
)
def test_wants_aggregated(accept: str, aggregated: bool) -> None:
    assert discovery.wants_aggregated(accept) is aggregated


@SETTINGS
@given(
    st.text(alphabet="ajsonpplication/;=,gv2 .kisdcoveryAPIGroupDiscoveryList", max_size=80)
    | st.text(max_size=40)
)
def test_wants_aggregated_never_raises(accept: str) -> None:
    assert discovery.wants_aggregated(accept) in (True, False)


# ---------------------------------------------------------------------------------------------------- legacy


def test_api_versions_has_the_fields_the_python_client_requires() -> None:
    doc = discovery.api_versions("127.0.0.1:6443")
    assert doc == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    }


def test_api_group_list() -> None:
    doc = discovery.api_group_list()
    assert (doc["kind"], doc["apiVersion"]) == ("APIGroupList", "v1")
    assert [g["name"] for g in doc["groups"]] == [g for g in GROUP_ORDER if g]
    for group in doc["groups"]:
        assert set(group) == {"name", "versions", "preferredVersion"}
        assert group["preferredVersion"] == group["versions"][0]
        for v in group["versions"]:
            assert v["groupVersion"] == f"{group['name']}/{v['version']}"
    auto = next(g for g in doc["groups"] if g["name"] == "autoscaling")
    assert auto["preferredVersion"] == {"groupVersion": "autoscaling/v2", "version": "v2"}


def test_api_group() -> None:
    assert discovery.api_group("apps") == {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "apps",
        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
    }
    assert discovery.group_versions_exist("batch")
    assert not discovery.group_versions_exist("nosuch.io")
    assert not discovery.group_versions_exist("")


REQUIRED_RESOURCE_FIELDS = {"kind", "name", "namespaced", "singularName", "verbs"}


@pytest.mark.parametrize(("group", "version"), [(g, v) for g in GROUP_ORDER for v in group_versions(g)])
def test_resource_lists_satisfy_the_python_client(group: str, version: str) -> None:
    doc = discovery.api_resource_list(group, version)
    assert doc is not None
    assert doc["kind"] == "APIResourceList" and doc["apiVersion"] == "v1"
    assert doc["groupVersion"] == (f"{group}/{version}" if group else version)
    assert doc["resources"]
    for res in doc["resources"]:
        assert set(res) >= REQUIRED_RESOURCE_FIELDS, res
        assert res["kind"] and res["verbs"] and isinstance(res["namespaced"], bool)
        assert (res["singularName"] == "") is ("/" in res["name"])


def test_legacy_subresource_entries() -> None:
    apps = discovery.api_resource_list("apps", "v1")
    assert apps is not None
    entries = {r["name"]: r for r in apps["resources"]}
    assert entries["deployments/status"] == {
        "name": "deployments/status",
        "singularName": "",
        "namespaced": True,
        "kind": "Deployment",
        "verbs": ["get", "patch", "update"],
    }
    assert entries["deployments/scale"] == {
        "name": "deployments/scale",
        "singularName": "",
        "namespaced": True,
        "kind": "Scale",
        "verbs": ["get", "patch", "update"],
        "group": "autoscaling",
        "version": "v1",
    }
    assert entries["deployments"]["shortNames"] == ["deploy"]
    core = discovery.api_resource_list("", "v1")
    assert core is not None
    pods = {r["name"]: r for r in core["resources"]}
    assert (
        pods["pods/eviction"]["group"],
        pods["pods/eviction"]["version"],
        pods["pods/eviction"]["verbs"],
    ) == (
        "policy",
        "v1",
        ["create"],
    )
    assert "group" not in pods["pods/exec"] and pods["pods/exec"]["kind"] == "PodExecOptions"
    assert pods["namespaces"]["namespaced"] is False


def test_unknown_group_version_has_no_resource_list() -> None:
    assert discovery.api_resource_list("apps", "v2") is None
    assert discovery.api_resource_list("nosuch", "v1") is None


# --------------------------------------------------------------------------------------------------- OpenAPI


def test_every_kind_has_a_patch_operation_with_field_validation() -> None:
    docs = openapi.documents()
    assert set(docs) == {openapi.gv_path(rt.group, rt.version) for rt in REGISTRY.resources}
    seen = set()
    for key, body in docs.items():
        doc = orjson.loads(body)
        assert doc["openapi"].startswith("3.")
        for path, ops in doc["paths"].items():
            patch = ops["patch"]
            gvk = patch["x-kubernetes-group-version-kind"]
            assert openapi.gv_path(gvk["group"], gvk["version"]) == key
            assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
            assert "application/apply-patch+yaml" in patch["requestBody"]["content"]
            assert "fieldValidation" in [p["name"] for p in ops["put"]["parameters"]]
            assert path.startswith(f"/{key}/") and path.endswith("/{name}")
            seen.add((gvk["group"], gvk["version"], gvk["kind"]))
    assert seen == {(rt.group, rt.version, rt.kind) for rt in REGISTRY.resources}


def test_openapi_item_paths() -> None:
    doc = openapi.group_version_document("apps", "v1")
    assert doc is not None
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}" in doc["paths"]
    core = openapi.group_version_document("", "v1")
    assert core is not None
    assert "/api/v1/nodes/{name}" in core["paths"]
    assert "/api/v1/namespaces/{namespace}/pods/{name}" in core["paths"]
    assert openapi.group_version_document("apps", "v9") is None


def test_openapi_index_hashes_the_documents() -> None:
    docs = openapi.documents()
    index = openapi.index(docs)
    assert set(index["paths"]) == set(docs)
    url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
    changed = openapi.index({**docs, "apis/apps/v1": docs["apis/apps/v1"] + b" "})
    assert changed["paths"]["apis/apps/v1"]["serverRelativeURL"] != url
    assert changed["paths"]["api/v1"] == index["paths"]["api/v1"]
