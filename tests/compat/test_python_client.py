"""The official ``kubernetes`` Python client (PyPI) against a Corral server process.

Every call deserialises the response into the client's models, which raise on a missing required field, so a
passing call also proves the server's objects have the shapes the client expects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from corral.testing.process import ServerProcess

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def api_client(server: ServerProcess) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api:
        yield api


@pytest.fixture
def ns(api_client: client.ApiClient) -> Iterator[str]:
    name = f"py-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def _template(app: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "restartPolicy": "Always",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
        },
    }


@dataclass
class Kind:
    api: str
    suffix: str
    namespaced: bool
    body: dict[str, Any]
    patch: dict[str, Any]
    check: str  # dotted path checked after the patch


KINDS: dict[str, Kind] = {
    "configmap": Kind(
        "CoreV1Api",
        "config_map",
        True,
        {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}},
        {"data": {"a": "2"}},
        "data.a=2",
    ),
    "secret": Kind(
        "CoreV1Api",
        "secret",
        True,
        {"apiVersion": "v1", "kind": "Secret", "stringData": {"pw": "x"}, "data": {"k": "dg=="}},
        {"metadata": {"labels": {"p": "1"}}},
        "metadata.labels.p=1",
    ),
    "pod": Kind(
        "CoreV1Api",
        "pod",
        True,
        {"apiVersion": "v1", "kind": "Pod", "spec": _template("p")["spec"]},
        {"metadata": {"labels": {"p": "1"}}},
        "metadata.labels.p=1",
    ),
    "service": Kind(
        "CoreV1Api",
        "service",
        True,
        {"apiVersion": "v1", "kind": "Service", "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}},
        {"spec": {"selector": {"app": "y"}}},
        "spec.selector.app=y",
    ),
    "endpoints": Kind(
        "CoreV1Api",
        "endpoints",
        True,
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 8080}]}],
        },
        {"metadata": {"labels": {"p": "1"}}},
        "metadata.labels.p=1",
    ),
    "event": Kind(
        "CoreV1Api",
        "event",
        True,
        {
            "apiVersion": "v1",
            "kind": "Event",
            "reason": "Tested",
            "message": "hello",
            "type": "Normal",
            "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "NS"},
        },
        {"message": "patched"},
        "message=patched",
    ),
    "serviceaccount": Kind(
        "CoreV1Api",
        "service_account",
        True,
        {"apiVersion": "v1", "kind": "ServiceAccount"},
        {"metadata": {"labels": {"p": "1"}}},
        "metadata.labels.p=1",
    ),
    "deployment": Kind(
        "AppsV1Api",
        "deployment",
        True,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d"}}, "template": _template("d")},
        },
        {"spec": {"replicas": 3}},
        "spec.replicas=3",
    ),
    "replicaset": Kind(
        "AppsV1Api",
        "replica_set",
        True,
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "r"}}, "template": _template("r")},
        },
        {"spec": {"replicas": 2}},
        "spec.replicas=2",
    ),
    "job": Kind(
        "BatchV1Api",
        "job",
        True,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                    }
                }
            },
        },
        {"metadata": {"labels": {"p": "1"}}},
        "metadata.labels.p=1",
    ),
    "cronjob": Kind(
        "BatchV1Api",
        "cron_job",
        True,
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "OnFailure",
                                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                            }
                        }
                    }
                },
            },
        },
        {"spec": {"suspend": True}},
        "spec.suspend=True",
    ),
    "hpa-v2": Kind(
        "AutoscalingV2Api",
        "horizontal_pod_autoscaler",
        True,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                "minReplicas": 1,
                "maxReplicas": 5,
            },
        },
        {"spec": {"maxReplicas": 7}},
        "spec.max_replicas=7",
    ),
    "hpa-v1": Kind(
        "AutoscalingV1Api",
        "horizontal_pod_autoscaler",
        True,
        {
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 60,
            },
        },
        {"spec": {"targetCPUUtilizationPercentage": 70}},
        "spec.target_cpu_utilization_percentage=70",
    ),
    "lease": Kind(
        "CoordinationV1Api",
        "lease",
        True,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
        },
        {"spec": {"holderIdentity": "you"}},
        "spec.holder_identity=you",
    ),
    "node": Kind(
        "CoreV1Api",
        "node",
        False,
        {"apiVersion": "v1", "kind": "Node", "metadata": {"labels": {"kubernetes.io/hostname": "n"}}},
        {"spec": {"unschedulable": True}},
        "spec.unschedulable=True",
    ),
}


def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part) if not isinstance(obj, dict) else obj[part]
    return obj


@pytest.mark.parametrize("kind", list(KINDS))
def test_crud_every_kind(api_client: client.ApiClient, ns: str, kind: str) -> None:
    k = KINDS[kind]
    api = getattr(client, k.api)(api_client)
    name = f"{kind.replace('-', '')}-{uuid.uuid4().hex[:6]}"
    body = {**k.body, "metadata": {**k.body.get("metadata", {}), "name": name, "labels": {"suite": "crud"}}}
    if kind == "event":
        body["involvedObject"] = {**body["involvedObject"], "namespace": ns}
    scope = ("namespaced_" if k.namespaced else "") + k.suffix
    args: tuple[str, ...] = (ns,) if k.namespaced else ()
    created = getattr(api, f"create_{scope}")(*args, body)
    assert created.metadata.name == name and created.metadata.uid and created.metadata.resource_version
    read = getattr(api, f"read_{scope}")(name, *args)
    assert read.metadata.uid == created.metadata.uid
    listed = getattr(api, f"list_{scope}")(*args, label_selector="suite=crud")
    assert name in [item.metadata.name for item in listed.items]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)
    patched = getattr(api, f"patch_{scope}")(name, *args, k.patch)
    path, expected = k.check.split("=")
    assert str(_dig(patched, path)) == expected
    # Controllers (the scheduler, the node agent) may write the object meanwhile: replace is a CAS, so
    # re-read and retry on 409 as any client must.
    for _ in range(10):
        fresh = getattr(api, f"read_{scope}")(name, *args)
        fresh.metadata.labels = {"suite": "crud", "replaced": "yes"}
        try:
            replaced = getattr(api, f"replace_{scope}")(name, *args, fresh)
            break
        except ApiException as exc:
            assert exc.status == 409
    assert replaced.metadata.labels["replaced"] == "yes"
    # Pods on a node terminate gracefully; grace 0 deletes at once, as on a real cluster.
    extra = {"grace_period_seconds": 0} if kind == "pod" else {}
    getattr(api, f"delete_{scope}")(name, *args, **extra)
    with pytest.raises(ApiException) as info:
        getattr(api, f"read_{scope}")(name, *args)
    assert info.value.status == 404


def test_status_subresources_and_scale(api_client: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api_client)
    body = {**KINDS["deployment"].body, "metadata": {"name": "scaled"}}
    apps.create_namespaced_deployment(ns, body)
    status = apps.patch_namespaced_deployment_status(
        "scaled", ns, {"status": {"replicas": 2, "readyReplicas": 1}}
    )
    assert status.status.replicas == 2 and status.status.ready_replicas == 1
    # A main-resource write cannot change status (the deployment controller may rewrite it meanwhile).
    after = apps.patch_namespaced_deployment("scaled", ns, {"status": {"replicas": 9}})
    assert after.status.replicas != 9
    scale = apps.read_namespaced_deployment_scale("scaled", ns)
    assert scale.spec.replicas == 2 and scale.status.selector == "app=d"
    scale = apps.patch_namespaced_deployment_scale("scaled", ns, {"spec": {"replicas": 4}})
    assert scale.spec.replicas == 4
    assert apps.read_namespaced_deployment("scaled", ns).spec.replicas == 4
    core = client.CoreV1Api(api_client)
    nodes_status = core.list_node()
    assert nodes_status.items is not None


def test_list_with_label_and_field_selectors(api_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api_client)
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": {"tier": tier}}})
    names = lambda result: sorted(i.metadata.name for i in result.items)  # noqa: E731
    assert names(core.list_namespaced_config_map(ns, label_selector="tier=web")) == ["a", "b"]
    assert names(core.list_namespaced_config_map(ns, label_selector="tier in (db)")) == ["c"]
    assert names(core.list_namespaced_config_map(ns, label_selector="tier!=web")) == ["c"]
    assert names(core.list_namespaced_config_map(ns, label_selector="!tier")) == []
    assert names(core.list_namespaced_config_map(ns, field_selector="metadata.name=b")) == ["b"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={ns}")
    assert names(everywhere) == ["a", "b", "c"]
    page = core.list_namespaced_config_map(ns, limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = core.list_namespaced_config_map(ns, limit=2, _continue=page.metadata._continue)
    assert [i.metadata.name for i in page.items + rest.items] == ["a", "b", "c"]


def test_watch_from_resource_version_with_timeout(api_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api_client)
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "w0", "labels": {"w": "1"}}})
    start_rv = first.metadata.resource_version
    core.create_namespaced_config_map(ns, {"metadata": {"name": "w1", "labels": {"w": "1"}}})
    core.patch_namespaced_config_map("w1", ns, {"data": {"x": "y"}})
    core.delete_namespaced_config_map("w0", ns)
    seen = []
    w = watch.Watch()
    for event in w.stream(
        core.list_namespaced_config_map,
        ns,
        label_selector="w=1",
        resource_version=start_rv,
        timeout_seconds=2,
    ):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w0")]


def test_server_side_apply(api_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api_client)
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": ns},
        "data": {"a": "1"},
    }
    created = core.patch_namespaced_config_map(
        "ssa", ns, body, field_manager="python-test", _content_type="application/apply-patch+yaml"
    )
    assert created.data == {"a": "1"}
    body["data"] = {"a": "2", "b": "3"}
    updated = core.patch_namespaced_config_map(
        "ssa", ns, body, field_manager="python-test", _content_type="application/apply-patch+yaml"
    )
    assert updated.data == {"a": "2", "b": "3"}
    assert updated.metadata.uid == created.metadata.uid


def test_errors_carry_go_exact_status(api_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api_client)
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod("nope", ns)
    assert info.value.status == 404
    assert info.value.body == (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
        '"pods \\"nope\\" not found","reason":"NotFound","details":{"name":"nope",'
        '"kind":"pods"},"code":404}\n'
    )
    core.create_namespaced_config_map(ns, {"metadata": {"name": "stale"}})
    current = core.read_namespaced_config_map("stale", ns)
    core.patch_namespaced_config_map("stale", ns, {"data": {"x": "1"}})
    current.data = {"x": "2"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("stale", ns, current)
    assert conflict.value.status == 409 and '"reason":"Conflict"' in conflict.value.body
