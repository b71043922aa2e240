"""Create/update strategies: server-owned metadata, status handling, generation and QoS class."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.defaults import apply_defaults
from corral.api.resources import REGISTRY, ResourceType
from corral.api.strategy import (
    GENERATION_KINDS,
    mark_deleting,
    prepare_for_create,
    prepare_for_update,
    qos_class,
)

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

JSON = dict[str, Any]
NOW = datetime(2024, 5, 1, 12, 30, 45, 123456, tzinfo=UTC)


def rt(kind: str, api_version: str | None = None) -> ResourceType:
    versions = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1"}
    versions["HorizontalPodAutoscaler"] = "autoscaling/v2"
    versions["Ingress"] = "networking.k8s.io/v1"
    versions["PodDisruptionBudget"] = "policy/v1"
    found = REGISTRY.by_kind(api_version or versions.get(kind, "v1"), kind)
    assert found is not None
    return found


def deployment(replicas: int = 1, **meta: Any) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", **meta},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }


def stored(obj: JSON, generation: int = 1) -> JSON:
    """``obj`` as the store would hold it: defaulted, with server metadata and a status."""
    out = copy.deepcopy(obj)
    prepare_for_create(rt(out["kind"], out.get("apiVersion")), out, NOW, "uid-1")
    apply_defaults(out)
    out["metadata"]["generation"] = generation
    out["metadata"]["resourceVersion"] = "41"
    out["status"] = {"observedGeneration": generation, "replicas": 1}
    return out


# --------------------------------------------------------------------------------------------------- create


def test_create_replaces_client_supplied_server_metadata() -> None:
    obj = deployment(
        uid="client-uid",
        resourceVersion="7",
        selfLink="/x",
        managedFields=[{}],
        generation=9,
        creationTimestamp="1999-01-01T00:00:00Z",
        deletionTimestamp="1999-01-01T00:00:00Z",
        deletionGracePeriodSeconds=5,
        labels={"keep": "me"},
    )
    obj["status"] = {"replicas": 99}
    prepare_for_create(rt("Deployment"), obj, NOW, "uid-1")
    assert obj["metadata"] == {
        "name": "web",
        "namespace": "default",
        "labels": {"keep": "me"},
        "uid": "uid-1",
        "creationTimestamp": "2024-05-01T12:30:45Z",
        "generation": 1,
    }
    assert obj["status"] == {}


def test_create_timestamp_is_utc_with_z() -> None:
    obj: JSON = {"kind": "ConfigMap"}
    prepare_for_create(
        rt("ConfigMap"), obj, datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), "u"
    )
    assert obj["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("Pod", {"phase": "Pending", "qosClass": "BestEffort"}),
        ("Service", {"loadBalancer": {}}),
        ("Namespace", {"phase": "Active"}),
        ("HorizontalPodAutoscaler", {"currentReplicas": 0, "desiredReplicas": 0}),
        ("Deployment", {}),
        ("ReplicaSet", {"replicas": 0}),
        ("Job", {}),
        ("CronJob", {}),
        ("Node", {"capacity": {"cpu": "4"}}),  # nodes report their own status
    ],
)
def test_create_resets_status_per_kind(kind: str, status: JSON) -> None:
    obj: JSON = {"kind": kind, "metadata": {"name": "x"}, "spec": {}, "status": {"capacity": {"cpu": "4"}}}
    prepare_for_create(rt(kind), obj, NOW, "u")
    assert obj["status"] == status


def test_create_keeps_top_level_data_of_kinds_without_status() -> None:
    obj: JSON = {"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}}
    prepare_for_create(rt("ConfigMap"), obj, NOW, "u")
    assert obj["data"] == {"a": "1"} and "status" not in obj and "generation" not in obj["metadata"]


@pytest.mark.parametrize("kind", sorted(GENERATION_KINDS))
def test_create_starts_generation_at_one(kind: str) -> None:
    obj: JSON = {"kind": kind, "metadata": {"name": "x"}, "spec": {}}
    prepare_for_create(rt(kind), obj, NOW, "u")
    assert obj["metadata"]["generation"] == 1


def test_job_selector_is_generated_from_the_uid() -> None:
    obj: JSON = {
        "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": {"template": {"metadata": {"labels": {"app": "pi"}}}},
    }
    prepare_for_create(rt("Job"), obj, NOW, "u-42")
    assert obj["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-42"}}
    assert obj["spec"]["template"]["metadata"]["labels"] == {
        "app": "pi",
        "batch.kubernetes.io/controller-uid": "u-42",
        "controller-uid": "u-42",
        "batch.kubernetes.io/job-name": "pi",
        "job-name": "pi",
    }


def test_manual_job_selector_is_left_alone() -> None:
    spec = {
        "manualSelector": True,
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}},
    }
    obj: JSON = {"kind": "Job", "metadata": {"name": "pi"}, "spec": copy.deepcopy(spec)}
    prepare_for_create(rt("Job"), obj, NOW, "u")
    assert obj["spec"] == spec


# --------------------------------------------------------------------------------------------------- update


def test_update_keeps_server_metadata_and_status() -> None:
    old = stored(deployment())
    new = deployment(
        uid="forged", creationTimestamp="2000-01-01T00:00:00Z", generation=77, resourceVersion="41"
    )
    new["status"] = {"replicas": 1000}
    new["metadata"]["managedFields"] = [{}]
    result = prepare_for_update(rt("Deployment"), new, old, None)
    assert result["metadata"]["uid"] == "uid-1"
    assert result["metadata"]["creationTimestamp"] == "2024-05-01T12:30:45Z"
    assert result["metadata"]["generation"] == 1  # spec unchanged
    assert "managedFields" not in result["metadata"]
    assert result["status"] == old["status"]


def test_update_drops_server_metadata_the_old_object_lacks() -> None:
    old: JSON = {"kind": "ConfigMap", "metadata": {"name": "x", "uid": "u"}}
    new: JSON = {"kind": "ConfigMap", "metadata": {"name": "x", "deletionTimestamp": "2000-01-01T00:00:00Z"}}
    result = prepare_for_update(rt("ConfigMap"), new, old, None)
    assert result["metadata"] == {"name": "x", "uid": "u"}


@pytest.mark.parametrize(
    ("change", "bumped"),
    [
        (lambda o: o["spec"].update(replicas=3), True),
        (lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="y"), True),
        (lambda o: o["metadata"].update(labels={"new": "label"}), False),
        (lambda o: o.update(status={"replicas": 5}), False),
        # Deployment annotations are copied to ReplicaSets, so upstream bumps the generation for them too.
        (lambda o: o["metadata"].update(annotations={"kubernetes.io/change-cause": "x"}), True),
        # A PUT without the defaulted fields is the same spec once defaulted: no bump.
        (lambda o: o["spec"].pop("revisionHistoryLimit"), False),
        (lambda o: o["spec"]["template"]["spec"].pop("dnsPolicy"), False),
        (lambda o: o["spec"].update(revisionHistoryLimit=3), True),
    ],
)
def test_deployment_generation(change: Any, bumped: bool) -> None:
    old = stored(deployment(), generation=4)
    new = copy.deepcopy(old)
    change(new)
    result = prepare_for_update(rt("Deployment"), new, old, None)
    assert result["metadata"]["generation"] == (5 if bumped else 4)


@pytest.mark.parametrize("kind", ["ReplicaSet", "Job", "CronJob", "HorizontalPodAutoscaler"])
def test_annotations_bump_only_deployments(kind: str) -> None:
    old: JSON = {"kind": kind, "metadata": {"name": "x", "generation": 2}, "spec": {"a": 1}}
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"k": "v"}
    assert prepare_for_update(rt(kind), new, old, None)["metadata"]["generation"] == 2
    changed = copy.deepcopy(old)
    changed["spec"]["a"] = 2
    assert prepare_for_update(rt(kind), changed, old, None)["metadata"]["generation"] == 3


@pytest.mark.parametrize("kind", ["Pod", "Service", "ConfigMap", "Namespace"])
def test_kinds_without_generation(kind: str) -> None:
    old: JSON = {"kind": kind, "metadata": {"name": "x"}, "spec": {"a": 1}}
    new = copy.deepcopy(old)
    new["spec"]["a"] = 2
    assert "generation" not in prepare_for_update(rt(kind), new, old, None)["metadata"]


def test_generation_counts_from_zero_when_missing() -> None:
    old: JSON = {"kind": "ReplicaSet", "metadata": {"name": "x"}, "spec": {"replicas": 1}}
    new: JSON = {"kind": "ReplicaSet", "metadata": {"name": "x"}, "spec": {"replicas": 2}}
    assert prepare_for_update(rt("ReplicaSet"), new, old, None)["metadata"]["generation"] == 1


def test_hpa_v1_update_compares_v2_defaults() -> None:
    old = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "x", "generation": 1},
        "spec": {"maxReplicas": 3},
    }
    apply_defaults(old)
    new = copy.deepcopy(old)
    del new["spec"]["metrics"]  # defaulting puts the 80% CPU metric back
    assert prepare_for_update(rt("HorizontalPodAutoscaler"), new, old, None)["metadata"]["generation"] == 1


def test_status_update_changes_only_status() -> None:
    old = stored(deployment())
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 10
    new["metadata"]["labels"] = {"sneaky": "x"}
    new["metadata"]["resourceVersion"] = "42"
    new["status"] = {"replicas": 3, "observedGeneration": 1}
    before = copy.deepcopy(old)
    result = prepare_for_update(rt("Deployment"), new, old, "status")
    assert result["status"] == {"replicas": 3, "observedGeneration": 1}
    assert result["spec"] == old["spec"]
    assert "labels" not in result["metadata"]
    assert result["metadata"]["resourceVersion"] == "42"
    assert result["metadata"]["generation"] == 1
    assert old == before  # the stored object is not changed in place


def test_status_update_without_status_removes_it() -> None:
    old = stored(deployment())
    new = copy.deepcopy(old)
    del new["status"]
    assert "status" not in prepare_for_update(rt("Deployment"), new, old, "status")


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


@SETTINGS
@given(
    st.sampled_from(
        ["Deployment", "ReplicaSet", "Pod", "Service", "Job", "Node", "Namespace", "HorizontalPodAutoscaler"]
    ),
    st.dictionaries(st.sampled_from(["spec", "status", "data", "metadata", "extra"]), _JSONISH, max_size=4),
    _JSONISH,
    st.text(max_size=3),
)
def test_status_update_keeps_everything_but_status(kind: str, changes: JSON, status: Any, rv: str) -> None:
    old = {
        "kind": kind,
        "metadata": {"name": "x", "uid": "u", "resourceVersion": "1", "labels": {"a": "b"}},
        "spec": {"n": 1},
        "status": {"s": 1},
    }
    new = copy.deepcopy(old)
    new.update(copy.deepcopy(changes))
    new["status"] = status
    new["metadata"] = {"resourceVersion": rv, "name": "other"}
    old_copy, new_copy = copy.deepcopy(old), copy.deepcopy(new)
    result = prepare_for_update(rt(kind), new, old, "status")
    assert {k: v for k, v in result.items() if k != "status"} == {
        **{k: v for k, v in old.items() if k != "status"},
        "metadata": {**old["metadata"], "resourceVersion": rv},
    }
    if status is None:
        assert "status" not in result
    else:
        assert result["status"] == status
    assert old == old_copy and new == new_copy


@SETTINGS
@given(st.dictionaries(st.sampled_from(["spec", "status", "metadata"]), _JSONISH, max_size=3))
def test_main_resource_update_never_changes_status(changes: JSON) -> None:
    old = stored(deployment())
    new = copy.deepcopy(old)
    for key, value in changes.items():
        if key == "metadata":
            new["metadata"]["annotations"] = {"k": str(value)}
        else:
            new[key] = value
    result = prepare_for_update(rt("Deployment"), new, old, None)
    assert result["status"] == old["status"]
    assert result["metadata"]["generation"] in (1, 2)


# ------------------------------------------------------------------------------------------------ QoS class


def _pod(*resources: JSON, init: JSON | None = None) -> JSON:
    spec: JSON = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}
    if init is not None:
        spec["initContainers"] = [{"name": "init", "resources": init}]
    return spec


GUARANTEED = {"limits": {"cpu": "1", "memory": "1Gi"}}


@pytest.mark.parametrize(
    ("spec", "qos"),
    [
        ({}, "BestEffort"),
        ({"containers": []}, "BestEffort"),
        (_pod({}), "BestEffort"),
        (_pod({"requests": {}, "limits": {}}), "BestEffort"),
        (_pod({"requests": {"ephemeral-storage": "1Gi"}}), "BestEffort"),  # only cpu and memory count
        (_pod({"requests": {"cpu": "0"}}), "BestEffort"),  # zero quantities are ignored
        (_pod({"requests": {"cpu": "100m"}}), "Burstable"),
        (_pod({"limits": {"memory": "1Gi"}}), "Burstable"),
        (_pod(GUARANTEED), "Guaranteed"),  # requests default to limits
        (
            _pod({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}),
            "Guaranteed",
        ),
        (
            _pod({"limits": {"cpu": 2, "memory": "1G"}, "requests": {"cpu": "2", "memory": "1000M"}}),
            "Guaranteed",
        ),
        (_pod({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}), "Burstable"),
        (_pod(GUARANTEED, GUARANTEED), "Guaranteed"),
        (_pod(GUARANTEED, {}), "Burstable"),
        (_pod(GUARANTEED, init={"requests": {"cpu": "1"}}), "Burstable"),  # init containers count
        (_pod(GUARANTEED, init=GUARANTEED), "Guaranteed"),
        (_pod({"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}), "Guaranteed"),
        (_pod({"limits": {"cpu": "bogus", "memory": "1Gi"}}), "Burstable"),
        ({"containers": ["not a container", {"resources": None}]}, "BestEffort"),
    ],
)
def test_qos_class(spec: JSON, qos: str) -> None:
    assert qos_class(spec) == qos


def test_pod_create_records_the_qos_class() -> None:
    obj: JSON = {"kind": "Pod", "metadata": {"name": "p"}, "spec": _pod(GUARANTEED)}
    prepare_for_create(rt("Pod"), obj, NOW, "u")
    assert obj["status"] == {"phase": "Pending", "qosClass": "Guaranteed"}


_QUANTITIES = st.sampled_from(["0", "100m", "1", "1000m", "2", "1Gi", "1024Mi", "1G", 1, 2, "1e3", "1k"])
_RESOURCES = st.fixed_dictionaries(
    {},
    optional={
        "requests": st.dictionaries(st.sampled_from(["cpu", "memory", "pods"]), _QUANTITIES, max_size=3),
        "limits": st.dictionaries(st.sampled_from(["cpu", "memory", "pods"]), _QUANTITIES, max_size=3),
    },
)


@SETTINGS
@given(st.lists(_RESOURCES, max_size=3))
def test_qos_class_is_one_of_three_and_stable_under_defaulting(resources: list[JSON]) -> None:
    spec = _pod(*resources)
    qos = qos_class(spec)
    assert qos in ("BestEffort", "Burstable", "Guaranteed")
    pod: JSON = {"kind": "Pod", "spec": copy.deepcopy(spec)}
    apply_defaults(pod)  # requests := limits where missing, as the qos computation assumes
    assert qos_class(pod["spec"]) == qos


# ------------------------------------------------------------------------------------------------- deletion


def test_mark_deleting() -> None:
    obj: JSON = {"kind": "Namespace", "metadata": {"name": "x"}, "status": {"phase": "Active"}}
    out = mark_deleting(obj, NOW, 30)
    # As upstream: the timestamp is when the grace period ends.
    assert out["metadata"]["deletionTimestamp"] == "2024-05-01T12:31:15Z"
    assert out["metadata"]["deletionGracePeriodSeconds"] == 30
    assert out["status"]["phase"] == "Terminating"
    assert obj["status"]["phase"] == "Active"
    again = mark_deleting(out, NOW + timedelta(hours=1), 0)
    assert again["metadata"]["deletionTimestamp"] == "2024-05-01T12:31:15Z"  # the first deletion wins
    assert again["metadata"]["deletionGracePeriodSeconds"] == 30
    pod = mark_deleting({"kind": "Pod", "metadata": {"name": "p"}}, NOW, 0)
    assert "status" not in pod


def test_secret_string_data_is_folded_into_base64_data() -> None:
    from datetime import UTC, datetime

    from corral.api.resources import REGISTRY
    from corral.api.strategy import prepare_for_create, prepare_for_update

    rt = REGISTRY.resolve("secrets")
    assert rt is not None
    created = {"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}, "data": {"a": "Yg=="}}
    prepare_for_create(rt, created, datetime(2026, 1, 1, tzinfo=UTC), "uid-1")
    assert "stringData" not in created
    assert created["data"] == {"a": "Yg==", "pw": "aHVudGVyMg=="}
    updated = prepare_for_update(
        rt, {"metadata": {"name": "s"}, "data": {"a": "Yg=="}, "stringData": {"a": "x"}}, created, None
    )
    assert updated["data"] == {"a": "eA=="} and "stringData" not in updated
