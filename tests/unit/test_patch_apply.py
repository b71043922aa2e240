"""Server-side apply without managedFields: create, merge by list type, and what it cannot do."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corral.api.schema import SchemaNode, schema_index
from corral.apiserver.patch import PatchError
from corral.apiserver.patch.apply import apply_patch


@pytest.fixture(scope="module")
def deployment_node() -> SchemaNode:
    return schema_index().node("io.k8s.api.apps.v1.Deployment")


@pytest.fixture(scope="module")
def service_node() -> SchemaNode:
    return schema_index().node("io.k8s.api.core.v1.Service")


def _applied() -> dict[str, Any]:
    # the body `kubectl apply --server-side` sends
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"labels": {"app": "web"}, "name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "nginx", "image": "nginx:1.26", "ports": [{"containerPort": 80}]}]
                },
            },
        },
    }


def _live() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "u-1",
            "resourceVersion": "7",
            "labels": {"app": "web", "team": "a"},
            "finalizers": ["example.com/x"],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web", "old": "1"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        },
                        {"name": "sidecar", "image": "busybox"},
                    ],
                    "tolerations": [{"key": "a", "operator": "Exists"}],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"replicas": 1},
    }


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def test_create_when_missing(deployment_node: SchemaNode) -> None:
    applied = _applied()
    applied["spec"]["paused"] = None
    result = apply_patch(None, applied, deployment_node)
    assert "paused" not in result["spec"]
    del applied["spec"]["paused"]
    assert result == applied
    result["spec"]["replicas"] = 9
    assert applied["spec"]["replicas"] == 2


def test_merge_into_live(deployment_node: SchemaNode) -> None:
    result = apply_patch(_live(), _applied(), deployment_node)
    assert result["metadata"]["uid"] == "u-1"
    assert result["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert result["spec"]["replicas"] == 2
    assert result["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert result["status"] == {"replicas": 1}
    # containers are a map list keyed by name: merged element-wise, server fields kept
    assert _spec(result)["containers"] == [
        {
            "name": "nginx",
            "image": "nginx:1.26",
            "imagePullPolicy": "IfNotPresent",
            # ports are keyed by (containerPort, protocol); protocol defaults to TCP
            "ports": [{"containerPort": 80, "protocol": "TCP"}],
        },
        {"name": "sidecar", "image": "busybox"},
    ]
    assert _spec(result)["tolerations"] == [{"key": "a", "operator": "Exists"}]


def test_atomic_map_is_replaced(deployment_node: SchemaNode) -> None:
    # LabelSelector is x-kubernetes-map-type: atomic
    result = apply_patch(_live(), _applied(), deployment_node)
    assert result["spec"]["selector"] == {"matchLabels": {"app": "web"}}


def test_atomic_list_is_replaced(deployment_node: SchemaNode) -> None:
    applied = _applied()
    _spec(applied)["tolerations"] = [{"key": "b", "operator": "Exists"}]
    result = apply_patch(_live(), applied, deployment_node)
    assert _spec(result)["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_set_list_is_unioned(deployment_node: SchemaNode) -> None:
    applied = _applied()
    applied["metadata"]["finalizers"] = ["example.com/y", "example.com/x"]
    result = apply_patch(_live(), applied, deployment_node)
    assert result["metadata"]["finalizers"] == ["example.com/y", "example.com/x"]
    applied["metadata"]["finalizers"] = ["example.com/y"]
    result = apply_patch(_live(), applied, deployment_node)
    assert result["metadata"]["finalizers"] == ["example.com/x", "example.com/y"]


def test_map_list_order_follows_applied_order(deployment_node: SchemaNode) -> None:
    applied = _applied()
    _spec(applied)["containers"] = [
        {"name": "sidecar", "image": "busybox:2"},
        {"name": "nginx"},
        {"name": "new"},
    ]
    result = apply_patch(_live(), applied, deployment_node)
    assert [c["name"] for c in _spec(result)["containers"]] == ["sidecar", "nginx", "new"]
    assert _spec(result)["containers"][0] == {"name": "sidecar", "image": "busybox:2"}
    assert _spec(result)["containers"][1]["image"] == "nginx:1.25"


def test_live_only_items_keep_their_place(deployment_node: SchemaNode) -> None:
    live = _live()
    _spec(live)["containers"] = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    applied = _applied()
    _spec(applied)["containers"] = [{"name": "b", "image": "x"}, {"name": "d"}]
    result = apply_patch(live, applied, deployment_node)
    assert [c["name"] for c in _spec(result)["containers"]] == ["a", "b", "c", "d"]


def test_omitted_fields_are_not_removed_without_managed_fields(deployment_node: SchemaNode) -> None:
    # Documented limitation: with no field ownership, leaving a field out of a later apply keeps it.
    first = apply_patch(None, _applied(), deployment_node)
    second_applied = _applied()
    del second_applied["metadata"]["labels"]
    _spec(second_applied)["containers"] = [{"name": "nginx", "image": "nginx:1.27"}]
    result = apply_patch(first, second_applied, deployment_node)
    assert result["metadata"]["labels"] == {"app": "web"}
    assert _spec(result)["containers"][0]["ports"] == [{"containerPort": 80}]


def test_explicit_null_removes(deployment_node: SchemaNode) -> None:
    applied = _applied()
    applied["spec"]["strategy"] = None
    applied["metadata"]["labels"] = {"team": None}
    result = apply_patch(_live(), applied, deployment_node)
    assert "strategy" not in result["spec"]
    assert result["metadata"]["labels"] == {"app": "web"}


def test_service_ports_keyed_by_port_and_protocol(service_node: SchemaNode) -> None:
    live = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "clusterIP": "127.0.100.1",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}, {"port": 53, "protocol": "UDP"}],
            "selector": {"app": "web", "old": "x"},
        },
    }
    applied = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "TCP"}],
            "selector": {"app": "web"},
        },
    }
    result = apply_patch(live, applied, service_node)
    assert result["spec"]["clusterIP"] == "127.0.100.1"
    assert result["spec"]["ports"] == [
        {"port": 80, "protocol": "TCP", "targetPort": 9090},
        {"port": 53, "protocol": "UDP"},
        {"port": 53, "protocol": "TCP"},
    ]
    # ServiceSpec.selector is x-kubernetes-map-type: atomic
    assert result["spec"]["selector"] == {"app": "web"}


def test_configmap_data_merges() -> None:
    node = schema_index().node("io.k8s.api.core.v1.ConfigMap")
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"b": "3"}}
    assert apply_patch(live, applied, node)["data"] == {"a": "1", "b": "3"}


def test_without_schema() -> None:
    assert apply_patch({"a": [1], "b": {"c": 1}}, {"a": [2], "b": {"d": 2}}, None) == {
        "a": [2],
        "b": {"c": 1, "d": 2},
    }


def test_errors(deployment_node: SchemaNode) -> None:
    with pytest.raises(PatchError, match="JSON object"):
        apply_patch(_live(), ["x"], deployment_node)
    applied = _applied()
    _spec(applied)["containers"] = [{"name": "a"}, {"name": "a"}]
    with pytest.raises(PatchError, match="duplicate"):
        apply_patch(_live(), applied, deployment_node)
    _spec(applied)["containers"] = ["a"]
    with pytest.raises(PatchError, match="must be an object"):
        apply_patch(_live(), applied, deployment_node)


def test_inputs_are_not_mutated(deployment_node: SchemaNode) -> None:
    live, applied = _live(), _applied()
    live_before, applied_before = copy.deepcopy(live), copy.deepcopy(applied)
    result = apply_patch(live, applied, deployment_node)
    assert live == live_before and applied == applied_before
    _spec(result)["containers"][0]["ports"].append({"containerPort": 1})
    _spec(result)["containers"][1]["image"] = "changed"
    assert live == live_before and applied == applied_before


def test_lists_without_list_type_follow_patch_tags() -> None:
    from corral.api.schema import SchemaIndex

    index = SchemaIndex(
        {
            "T": {
                "type": "object",
                "properties": {
                    "keyed": {
                        "type": "array",
                        "items": {"type": "object"},
                        "x-kubernetes-patch-strategy": "merge",
                        "x-kubernetes-patch-merge-key": "name",
                    },
                    "tags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "x-kubernetes-patch-strategy": "merge",
                    },
                    "plain": {"type": "array", "items": {"type": "string"}},
                },
            }
        }
    )
    live = {"keyed": [{"name": "a", "v": 1}], "tags": ["x"], "plain": ["p"]}
    applied = {"keyed": [{"name": "a", "w": 2}, {"name": "b"}], "tags": ["y"], "plain": ["q"]}
    assert apply_patch(live, applied, index.node("T")) == {
        "keyed": [{"name": "a", "v": 1, "w": 2}, {"name": "b"}],
        "tags": ["x", "y"],
        "plain": ["q"],
    }
