"""Schema index over the Kubernetes 1.32 JSON schemas: navigation, patch metadata, validation, pruning."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from corral.api.schema import (
    SchemaIndex,
    SchemaNode,
    UnknownDefinitionError,
    ViolationKind,
    format_field_path,
    prune_unknown,
    schema_index,
    validate,
    validator,
)

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
POD = "io.k8s.api.core.v1.Pod"
SERVICE = "io.k8s.api.core.v1.Service"
CONFIGMAP = "io.k8s.api.core.v1.ConfigMap"


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "app.kubernetes.io/name": "web"},
            "annotations": {"note": "x"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.26",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "A", "value": "1"},
                                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            ],
                            "resources": {
                                "limits": {"cpu": "500m", "memory": "128Mi"},
                                "requests": {"cpu": 0.1},
                            },
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                        }
                    ],
                    "restartPolicy": "Always",
                },
            },
        },
    }


def test_index_is_loaded_once_and_cached() -> None:
    assert schema_index() is schema_index()
    assert schema_index(strict=True) is schema_index(strict=True)
    assert len(schema_index()) == 638
    assert DEPLOYMENT in schema_index()
    assert schema_index().node(DEPLOYMENT) is schema_index().node(DEPLOYMENT)


def test_unknown_definition() -> None:
    with pytest.raises(UnknownDefinitionError):
        schema_index().node("io.k8s.api.apps.v1.Nope")


def test_navigation_and_patch_metadata() -> None:
    deployment = schema_index().node(DEPLOYMENT)
    assert deployment.name == DEPLOYMENT
    assert deployment.is_struct and not deployment.is_list
    spec = deployment.child("spec")
    assert spec is not None and spec.name == "io.k8s.api.apps.v1.DeploymentSpec"
    assert spec.required == ("selector", "template")
    strategy = spec.child("strategy")
    assert strategy is not None and strategy.patch_strategy == {"retainKeys"}

    pod_spec = _walk(deployment, "spec", "template", "spec")
    containers = pod_spec.child("containers")
    assert containers is not None and containers.is_list
    assert containers.patch_merge_key == "name"
    assert containers.patch_strategy == {"merge"}
    assert containers.list_type == "map"
    assert containers.list_map_keys == ("name",)
    container = containers.items()
    assert container is not None and container.name == "io.k8s.api.core.v1.Container"
    ports = container.child("ports")
    assert ports is not None and ports.patch_merge_key == "containerPort"
    assert ports.list_map_keys == ("containerPort", "protocol")
    mounts = container.child("volumeMounts")
    assert mounts is not None and mounts.patch_merge_key == "mountPath"
    volumes = pod_spec.child("volumes")
    assert volumes is not None and volumes.patch_strategy == {"merge", "retainKeys"}
    tolerations = pod_spec.child("tolerations")
    assert (
        tolerations is not None and tolerations.list_type == "atomic" and tolerations.patch_merge_key is None
    )
    assert pod_spec.child("nope") is None
    assert container.child("image") is not None and container.child("image").items() is None  # type: ignore[union-attr]


def test_maps_and_scalars() -> None:
    deployment = schema_index().node(DEPLOYMENT)
    labels = _walk(deployment, "metadata", "labels")
    assert labels.is_map and not labels.is_struct
    value = labels.child("anything")
    assert value is not None and value.types == frozenset({"string", "null"})
    assert labels.values() is value
    finalizers = _walk(deployment, "metadata", "finalizers")
    assert finalizers.list_type == "set" and finalizers.patch_strategy == {"merge"}
    max_surge = _walk(deployment, "spec", "strategy", "rollingUpdate", "maxSurge")
    assert max_surge.types == frozenset({"string", "integer", "null"})  # IntOrString oneOf
    selector = _walk(deployment, "spec", "selector")
    assert selector.map_type == "atomic"
    conditions = _walk(schema_index().node(POD), "status", "conditions")
    assert conditions.patch_merge_key == "type"
    service_ports = _walk(schema_index().node(SERVICE), "spec", "ports")
    assert service_ports.patch_merge_key == "port"
    data = _walk(schema_index().node(CONFIGMAP), "data")
    assert data.is_map


def test_opaque_nodes() -> None:
    revision = schema_index().node("io.k8s.api.apps.v1.ControllerRevision")
    assert _walk(revision, "data").is_opaque
    assert not _walk(revision, "metadata").is_opaque


def test_definition_for_api_version_and_kind() -> None:
    index = schema_index()
    assert index.definition_for("apps/v1", "Deployment") == DEPLOYMENT
    assert index.definition_for("v1", "Pod") == POD
    assert index.definition_for("batch/v1", "Job") == "io.k8s.api.batch.v1.Job"
    assert index.definition_for("autoscaling/v1", "Scale") == "io.k8s.api.autoscaling.v1.Scale"
    assert index.definition_for("v1", "DeleteOptions") == "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
    assert index.definition_for("apps/v1", "Nope") is None


def test_custom_index() -> None:
    index = SchemaIndex(
        {
            "T": {"type": "object", "properties": {"xs": {"type": "array", "items": {"$ref": "#/$defs/U"}}}},
            "U": {"type": "object", "properties": {"n": {"type": "integer"}}},
        }
    )
    xs = index.node("T").child("xs")
    assert xs is not None and xs.items() is not None
    assert xs.items().name == "U"  # type: ignore[union-attr]
    assert index.reachable("T") == frozenset({"T", "U"})


# --- validation ---------------------------------------------------------------------------------------


def test_valid_objects() -> None:
    assert validate(DEPLOYMENT, _deployment(), strict=True) == []
    assert validate(DEPLOYMENT, _deployment(), strict=False) == []
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}},
    }
    assert validate(SERVICE, service, strict=True) == []
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "command": ["sh", "-c", "sleep 1"]}]},
    }
    assert validate(POD, pod, strict=True) == []


def test_null_int_or_string_is_accepted() -> None:
    # IntOrString is oneOf string|integer, each also nullable: a plain oneOf would reject null.
    deployment = _deployment()
    deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] = None
    assert validate(DEPLOYMENT, deployment, strict=True) == []


def test_unknown_fields_are_reported_with_their_own_path() -> None:
    deployment = _deployment()
    deployment["spec"]["foo"] = 1
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePolicy"] = "x"
    deployment["extra"] = {}
    violations = validate(DEPLOYMENT, deployment, strict=True)
    assert {(v.path, v.kind) for v in violations} == {
        ("spec.foo", ViolationKind.UNKNOWN_FIELD),
        ("spec.template.spec.containers[0].imagePolicy", ViolationKind.UNKNOWN_FIELD),
        ("extra", ViolationKind.UNKNOWN_FIELD),
    }
    assert all(v.is_unknown_field for v in violations)
    by_path = {v.path: v for v in violations}
    assert by_path["spec.foo"].message == 'unknown field "spec.foo"'
    # not strict: unknown fields are not violations
    assert validate(DEPLOYMENT, deployment, strict=False) == []


def test_wrong_types_required_and_enums() -> None:
    deployment = _deployment()
    deployment["apiVersion"] = "apps/v2"
    deployment["spec"]["replicas"] = "3"
    deployment["metadata"]["labels"]["app.kubernetes.io/name"] = 5
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["ports"][0]["containerPort"] = "80"
    del container["name"]
    deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = {"x": 1}
    violations = {v.path: v for v in validate(DEPLOYMENT, deployment, strict=True)}
    assert violations["spec.replicas"].kind is ViolationKind.WRONG_TYPE
    assert violations["spec.replicas"].message == "expected integer, got string"
    assert violations["metadata.labels[app.kubernetes.io/name]"].kind is ViolationKind.WRONG_TYPE
    assert (
        violations["spec.template.spec.containers[0].ports[0].containerPort"].kind is ViolationKind.WRONG_TYPE
    )
    assert violations["spec.template.spec.containers[0].name"].kind is ViolationKind.REQUIRED
    assert (
        violations["spec.strategy.rollingUpdate.maxSurge"].message == "expected integer or string, got object"
    )
    assert violations["apiVersion"].kind is ViolationKind.INVALID
    assert "apps/v1" in violations["apiVersion"].message
    assert str(violations["spec.replicas"]) == "spec.replicas: expected integer, got string"


def test_validator_is_cached() -> None:
    assert validator(DEPLOYMENT, True) is validator(DEPLOYMENT, True)
    assert validator(DEPLOYMENT, True) is not validator(DEPLOYMENT, False)


def test_validation_is_fast() -> None:
    deployment = _deployment()
    validate(DEPLOYMENT, deployment, strict=True)  # compile + warm up
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        validate(DEPLOYMENT, deployment, strict=True)
    per_call = (time.perf_counter() - start) / rounds
    # Typically a few microseconds; the bound only catches an accidental slow path on a busy machine.
    assert per_call < 0.001


def test_format_field_path() -> None:
    deployment = schema_index().node(DEPLOYMENT)
    assert format_field_path(deployment, []) == ""
    assert format_field_path(deployment, ["spec", "template", "spec", "containers", 0, "image"]) == (
        "spec.template.spec.containers[0].image"
    )
    assert (
        format_field_path(deployment, ["metadata", "annotations", "a.b/c"]) == "metadata.annotations[a.b/c]"
    )
    assert format_field_path(None, ["a", 1, "b"]) == "a[1].b"


# --- pruning ------------------------------------------------------------------------------------------


def test_prune_unknown() -> None:
    deployment = _deployment()
    deployment["spec"]["foo"] = {"bar": 1}
    deployment["spec"]["template"]["spec"]["containers"][0]["bogus"] = True
    deployment["spec"]["template"]["spec"]["containers"][0]["env"][1]["extra"] = 1
    deployment["status"] = {"replicas": 1, "nope": 2}
    before = copy.deepcopy(deployment)
    pruned, unknown = prune_unknown(DEPLOYMENT, deployment)
    assert deployment == before
    assert unknown == [
        "spec.template.spec.containers[0].env[1].extra",
        "spec.template.spec.containers[0].bogus",
        "spec.foo",
        "status.nope",
    ]
    expected = _deployment()
    expected["status"] = {"replicas": 1}
    assert pruned == expected
    assert validate(DEPLOYMENT, pruned, strict=True) == []
    pruned["metadata"]["labels"]["x"] = "y"
    assert deployment == before


def test_prune_keeps_maps_and_opaque_content() -> None:
    revision = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "r", "annotations": {"any.key/x": "v"}},
        "data": {"spec": {"template": {"whatever": [1, {"deep": True}]}}},
        "revision": 1,
    }
    pruned, unknown = prune_unknown("io.k8s.api.apps.v1.ControllerRevision", revision)
    assert pruned == revision and unknown == []


def _walk(node: SchemaNode, *fields: str) -> SchemaNode:
    current = node
    for field in fields:
        child = current.child(field)
        assert child is not None, field
        current = child
    return current
