"""Semantic validation: table tests per kind, upstream-exact messages, and never-raise properties."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.defaults import apply_defaults
from corral.api.fielderrors import FieldError
from corral.api.validation import (
    VALIDATORS,
    cron_schedule_error,
    dns1035_label_error,
    dns1123_label_error,
    dns1123_subdomain_error,
    validate_label_selector,
    validate_object,
    validate_update,
)
from corral.apiserver.status import invalid

SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

JSON = dict[str, Any]


def _container(**extra: Any) -> JSON:
    return {"name": "app", "image": "nginx:1.25", **extra}


def deployment(**spec: Any) -> JSON:
    base: JSON = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [_container()]}},
        },
    }
    base["spec"].update(spec)
    return base


def pod(**spec: Any) -> JSON:
    base: JSON = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [_container()]},
    }
    base["spec"].update(spec)
    return base


def service(**spec: Any) -> JSON:
    base: JSON = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    base["spec"].update(spec)
    return base


def job(**spec: Any) -> JSON:
    base: JSON = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [_container()]}}},
    }
    base["spec"].update(spec)
    return base


def cronjob(schedule: Any = "*/5 * * * *", **spec: Any) -> JSON:
    base: JSON = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {
            "schedule": schedule,
            "jobTemplate": {
                "spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [_container()]}}}
            },
        },
    }
    base["spec"].update(spec)
    return base


def hpa(**spec: Any) -> JSON:
    base: JSON = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
        },
    }
    base["spec"].update(spec)
    return base


def _errors(obj: JSON, namespaced: bool = True) -> list[tuple[str, str]]:
    return [(e.path, e.kind) for e in validate_object(obj["kind"], obj, namespaced)]


def _messages(obj: JSON, namespaced: bool = True) -> list[str]:
    return [f"{e.path}: {e.message()}" for e in validate_object(obj["kind"], obj, namespaced)]


VALID = [
    deployment(),
    pod(),
    service(),
    job(),
    cronjob(),
    hpa(),
    {"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "d"}, "data": {"a.b": "1", "C_D-e": "2"}},
    {"kind": "Secret", "metadata": {"name": "s", "namespace": "d"}, "stringData": {"k": "v"}},
    {"kind": "Namespace", "metadata": {"name": "team-a"}},
    {
        "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "namespace": "d"},
        "spec": {
            "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [_container()]}},
        },
    },
    {"kind": "Event", "metadata": {"name": "e", "namespace": "d"}, "involvedObject": {"kind": "Pod"}},
]


@pytest.mark.parametrize("obj", VALID, ids=lambda o: o["kind"])
def test_valid_objects_have_no_errors(obj: JSON) -> None:
    assert validate_object(obj["kind"], obj, obj["kind"] != "Namespace") == []


@pytest.mark.parametrize("obj", VALID, ids=lambda o: o["kind"])
def test_defaulted_valid_objects_stay_valid(obj: JSON) -> None:
    obj = copy.deepcopy(obj)
    apply_defaults(obj)
    assert validate_object(obj["kind"], obj, obj["kind"] != "Namespace") == []


# ---------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("fn", "name", "valid"),
    [
        (dns1123_subdomain_error, "web", True),
        (dns1123_subdomain_error, "a.b-c.d", True),
        (dns1123_subdomain_error, "a" * 253, True),
        (dns1123_subdomain_error, "a" * 254, False),
        (dns1123_subdomain_error, "Web", False),
        (dns1123_subdomain_error, "web_1", False),
        (dns1123_subdomain_error, "-web", False),
        (dns1123_subdomain_error, "web.", False),
        (dns1123_subdomain_error, "web\n", False),
        (dns1123_label_error, "web-1", True),
        (dns1123_label_error, "1web", True),
        (dns1123_label_error, "a.b", False),
        (dns1123_label_error, "a" * 64, False),
        (dns1123_label_error, "web\n", False),
        (dns1035_label_error, "web-1", True),
        (dns1035_label_error, "1web", False),
        (dns1035_label_error, "web\n", False),
    ],
)
def test_name_rules(fn: Any, name: str, valid: bool) -> None:
    assert (fn(name) is None) is valid


@pytest.mark.parametrize(
    ("kind", "name", "ok"),
    [
        ("ConfigMap", "a.b", True),
        ("Namespace", "a.b", False),  # namespaces are DNS-1123 labels
        ("Service", "1web", False),  # services are DNS-1035 labels
        ("Service", "web-1", True),
        ("Deployment", "Bad_Name", False),
    ],
)
def test_name_rule_per_kind(kind: str, name: str, ok: bool) -> None:
    errs = validate_object(kind, {"metadata": {"name": name, "namespace": "d"}, "spec": {}}, True)
    assert (("metadata.name", "Invalid") not in [(e.path, e.kind) for e in errs]) is ok


def test_name_or_generate_name_is_required() -> None:
    obj: JSON = {"kind": "ConfigMap", "metadata": {"namespace": "d"}}
    assert _messages(obj) == ["metadata.name: Required value: name or generateName is required"]
    obj["metadata"]["generateName"] = "cfg-"
    assert _messages(obj) == []


def test_namespace_required_only_for_namespaced_kinds() -> None:
    assert _errors({"kind": "ConfigMap", "metadata": {"name": "x"}}) == [("metadata.namespace", "Required")]
    assert _errors({"kind": "Namespace", "metadata": {"name": "x"}}, namespaced=False) == []


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"labels": {"app": "web", "example.com/x": ""}}, []),
        ({"labels": {"bad key": "v"}}, [("metadata.labels", "Invalid")]),
        ({"labels": {"k": "bad value"}}, [("metadata.labels", "Invalid")]),
        ({"labels": {"k": 1}}, [("metadata.labels", "Invalid")]),
        ({"labels": {"": "v"}}, [("metadata.labels", "Invalid")] * 2),  # empty name part, then regex
        ({"annotations": {"Example.COM/Key": "x"}}, []),  # annotation keys are checked lower-cased
        ({"annotations": {"bad key": "x"}}, [("metadata.annotations", "Invalid")]),
        ({"annotations": {"a": "x" * (256 * 1024)}}, [("metadata.annotations", "TooLong")]),
        (
            {"ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "x"}]},
            [("metadata.ownerReferences[0].uid", "Required")],
        ),
    ],
)
def test_metadata_rules(meta: JSON, expected: list[tuple[str, str]]) -> None:
    obj = {"kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "d", **meta}}
    assert _errors(obj) == expected


# -------------------------------------------------------------------------------- deployments and pods


def test_negative_replicas_message_is_upstream_exact() -> None:
    obj = deployment(replicas=-1)
    err = invalid("Deployment", "apps", "web", validate_object("Deployment", obj, True))
    assert err.message == (
        'Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    )


def test_missing_selector_reports_the_template_mismatch_too() -> None:
    obj = deployment()
    del obj["spec"]["selector"]
    err = invalid("Deployment", "apps", "web", validate_object("Deployment", obj, True))
    assert err.message == (
        'Deployment.apps "web" is invalid: [spec.selector: Required value, spec.template.metadata.labels: '
        'Invalid value: map[string]string{"app":"web"}: `selector` does not match template `labels`]'
    )


def test_unlabelled_template_prints_a_nil_map() -> None:
    obj = deployment()
    del obj["spec"]["template"]["metadata"]
    assert _messages(obj) == [
        "spec.template.metadata.labels: Invalid value: map[string]string(nil): "
        "`selector` does not match template `labels`"
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"replicas": "2"}, [("spec.replicas", "Invalid")]),
        ({"selector": {"matchLabels": {"app": "db"}}}, [("spec.template.metadata.labels", "Invalid")]),
        ({"selector": {}}, [("spec.selector", "Required")]),
        (
            {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
            [("spec.selector.matchExpressions[0].values", "Required"), ("spec.selector", "Invalid")],
        ),
        (
            {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}},
            [("spec.selector.matchExpressions[0].values", "Forbidden"), ("spec.selector", "Invalid")],
        ),
        (
            {"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}},
            [("spec.selector.matchExpressions[0].operator", "Invalid"), ("spec.selector", "Invalid")],
        ),
        ({"strategy": {"type": "BlueGreen"}}, [("spec.strategy.type", "NotSupported")]),
        (
            {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
            [("spec.strategy.rollingUpdate", "Forbidden")],
        ),
        (
            {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}},
            [("spec.strategy.rollingUpdate.maxUnavailable", "Invalid")],
        ),
        ({"revisionHistoryLimit": -1}, [("spec.revisionHistoryLimit", "Invalid")]),
        ({"minReadySeconds": -5}, [("spec.minReadySeconds", "Invalid")]),
        ({"template": None}, [("spec.template.metadata.labels", "Invalid"), ("spec.template", "Required")]),
    ],
)
def test_deployment_rules(spec: JSON, expected: list[tuple[str, str]]) -> None:
    assert _errors(deployment(**spec)) == expected


def test_deployment_template_must_restart_always() -> None:
    obj = deployment()
    obj["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert _messages(obj) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"'
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": []}, [("spec.containers", "Required")]),
        ({"containers": [{"image": "x"}]}, [("spec.containers[0].name", "Required")]),
        ({"containers": [{"name": "a"}]}, [("spec.containers[0].image", "Required")]),
        ({"containers": [_container(name="Bad_Name")]}, [("spec.containers[0].name", "Invalid")]),
        ({"containers": [_container(), _container()]}, [("spec.containers[1].name", "Duplicate")]),
        (
            {"initContainers": [_container()], "containers": [_container()]},
            [("spec.containers[0].name", "Duplicate")],
        ),
        (
            {"containers": [_container(ports=[{"containerPort": 0}])]},
            [("spec.containers[0].ports[0].containerPort", "Invalid")],
        ),
        (
            {"containers": [_container(ports=[{"containerPort": 65536}])]},
            [("spec.containers[0].ports[0].containerPort", "Invalid")],
        ),
        (
            {"containers": [_container(ports=[{"containerPort": True}])]},
            [("spec.containers[0].ports[0].containerPort", "Invalid")],
        ),
        (
            {"containers": [_container(ports=[{}])]},
            [("spec.containers[0].ports[0].containerPort", "Required")],
        ),
        (
            {"containers": [_container(ports=[{"containerPort": 80, "hostPort": 70000}])]},
            [("spec.containers[0].ports[0].hostPort", "Invalid")],
        ),
        ({"containers": [_container(ports=[{"containerPort": 80, "hostPort": 0}])]}, []),
        (
            {"containers": [_container(ports=[{"containerPort": 80, "protocol": "HTTP"}])]},
            [("spec.containers[0].ports[0].protocol", "NotSupported")],
        ),
        (
            {
                "containers": [
                    _container(
                        ports=[{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]
                    )
                ]
            },
            [("spec.containers[0].ports[1].name", "Duplicate")],
        ),
        (
            {"containers": [_container(ports=[{"containerPort": 80, "name": "a-very-long-port-name"}])]},
            [("spec.containers[0].ports[0].name", "Invalid")],
        ),
        (
            {"containers": [_container(env=[{"name": "GOOD_1"}, {"name": "1BAD"}, {}])]},
            [("spec.containers[0].env[1].name", "Invalid"), ("spec.containers[0].env[2].name", "Required")],
        ),
        ({"restartPolicy": "Sometimes"}, [("spec.restartPolicy", "NotSupported")]),
        (
            {"volumes": [{"name": "a"}, {"name": "a"}, {}]},
            [("spec.volumes[1].name", "Duplicate"), ("spec.volumes[2].name", "Required")],
        ),
        ({"volumes": [{"name": "Bad_Vol"}]}, [("spec.volumes[0].name", "Invalid")]),
        ({"terminationGracePeriodSeconds": -1}, [("spec.terminationGracePeriodSeconds", "Invalid")]),
    ],
)
def test_pod_rules(spec: JSON, expected: list[tuple[str, str]]) -> None:
    assert _errors(pod(**spec)) == expected


def test_pod_without_spec() -> None:
    assert _errors({"kind": "Pod", "metadata": {"name": "p", "namespace": "d"}}) == [("spec", "Required")]


# ------------------------------------------------------------------------------------------- jobs and cron


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"completions": -1}, [("spec.completions", "Invalid")]),
        (
            {"parallelism": -1, "backoffLimit": -1},
            [("spec.parallelism", "Invalid"), ("spec.backoffLimit", "Invalid")],
        ),
        (
            {"template": {"spec": {"restartPolicy": "Always", "containers": [_container()]}}},
            [("spec.template.spec.restartPolicy", "NotSupported")],
        ),
        ({"manualSelector": True}, [("spec.selector", "Required")]),
        (
            {
                "manualSelector": True,
                "selector": {"matchLabels": {"job": "pi"}},
                "template": {
                    "metadata": {"labels": {"job": "pi"}},
                    "spec": {"restartPolicy": "Never", "containers": [_container()]},
                },
            },
            [],
        ),
    ],
)
def test_job_rules(spec: JSON, expected: list[tuple[str, str]]) -> None:
    assert [e for e in _errors(job(**spec)) if e != ("spec.template.metadata.labels", "Invalid")] == expected


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("*/5 * * * *", None),
        ("0 0 * * 1-5", None),
        ("@hourly", None),
        ("@daily", None),
        ("  @weekly  ", None),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("* * * *", "expected exactly 5 fields, found 4: * * * *"),
        ("* * * * * *", "expected exactly 5 fields, found 6: * * * * * *"),
        ("61 * * * *", "invalid schedule: 61 * * * *"),
        ("a b c d e", "invalid schedule: a b c d e"),
        ("TZ=UTC * * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        ("CRON_TZ=UTC 0 * * * *", "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
    ],
)
def test_cron_schedules(schedule: str, problem: str | None) -> None:
    assert cron_schedule_error(schedule) == problem


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (cronjob(schedule=""), [("spec.schedule", "Required")]),
        (cronjob(schedule="nope"), [("spec.schedule", "Invalid")]),
        (cronjob(concurrencyPolicy="Sometimes"), [("spec.concurrencyPolicy", "NotSupported")]),
        (cronjob(jobTemplate={}), [("spec.jobTemplate.spec", "Required")]),
    ],
)
def test_cronjob_rules(obj: JSON, expected: list[tuple[str, str]]) -> None:
    assert _errors(obj) == expected


# ---------------------------------------------------------------------------------------------- services


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"ports": []}, [("spec.ports", "Required")]),
        ({"ports": [], "clusterIP": "None"}, []),  # headless
        ({"type": "ExternalName", "ports": [], "externalName": "db.example.com"}, []),
        ({"type": "ExternalName", "ports": []}, [("spec.externalName", "Required")]),
        ({"type": "Magic"}, [("spec.type", "NotSupported")]),
        (
            {"ports": [{"port": 80}, {"port": 81}]},
            [("spec.ports[0].name", "Required"), ("spec.ports[1].name", "Required")],
        ),
        (
            {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]},
            [("spec.ports[1].name", "Duplicate")],
        ),
        ({"ports": [{"name": "A_b", "port": 80}]}, [("spec.ports[0].name", "Invalid")]),
        ({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}, [("spec.ports[1]", "Duplicate")]),
        ({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80, "protocol": "UDP"}]}, []),
        ({"ports": [{}]}, [("spec.ports[0].port", "Required")]),
        ({"ports": [{"port": 0}]}, [("spec.ports[0].port", "Invalid")]),
        ({"ports": [{"port": 80, "targetPort": 0}]}, [("spec.ports[0].targetPort", "Invalid")]),
        ({"ports": [{"port": 80, "targetPort": "http"}]}, []),
        ({"ports": [{"port": 80, "protocol": "ICMP"}]}, [("spec.ports[0].protocol", "NotSupported")]),
        ({"ports": [{"port": 80, "nodePort": 30080}]}, [("spec.ports[0].nodePort", "Forbidden")]),
        ({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}, []),
        (
            {"type": "NodePort", "ports": [{"port": 80, "nodePort": 70000}]},
            [("spec.ports[0].nodePort", "Invalid")],
        ),
        ({"selector": {"app": "bad value"}}, [("spec.selector", "Invalid")]),
        ({"sessionAffinity": "Sticky"}, [("spec.sessionAffinity", "NotSupported")]),
    ],
)
def test_service_rules(spec: JSON, expected: list[tuple[str, str]]) -> None:
    assert _errors(service(**spec)) == expected


# ----------------------------------------------------------------------------- config maps, secrets, events


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"kind": "ConfigMap", "data": {"bad key": "v"}}, [("data[bad key]", "Invalid")]),
        (
            {"kind": "ConfigMap", "data": {"k": "v"}, "binaryData": {"k": "dg=="}},
            [("data[k]", "Invalid")],
        ),
        ({"kind": "ConfigMap", "data": {"k": "v" * (1024 * 1024 + 1)}}, [("[]", "TooLong")]),
        ({"kind": "Secret", "data": {"k/": "dg=="}}, [("data[k/]", "Invalid")]),
        ({"kind": "Secret", "type": "kubernetes.io/tls", "data": {"tls.crt": "dg=="}}, [("data[tls.key]", "Required")]),
        ({"kind": "Event"}, [("involvedObject", "Required")]),
        ({"kind": "Event", "involvedObject": {"kind": "Pod"}, "type": "Bad"}, [("type", "NotSupported")]),
    ],
)
def test_data_and_event_rules(obj: JSON, expected: list[tuple[str, str]]) -> None:
    obj = {"metadata": {"name": "x", "namespace": "d"}, **obj}
    assert _errors(obj) == expected


# --------------------------------------------------------------------------------------------------- HPA


@pytest.mark.parametrize(
    ("spec", "messages"),
    [
        ({}, []),
        ({"minReplicas": None}, []),  # null is unset: the default of 1 applies
        (
            {"maxReplicas": 0},  # minReplicas defaults to 1 before validation upstream, so both apply
            [
                "spec.maxReplicas: Invalid value: 0: must be greater than 0",
                "spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`",
            ],
        ),
        ({"minReplicas": 0}, []),  # scale to zero
        ({"minReplicas": -1}, ["spec.minReplicas: Invalid value: -1: must be greater than or equal to 0"]),
        (
            {"minReplicas": 6},
            ["spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`"],
        ),
        (
            {"minReplicas": -1, "maxReplicas": -2},
            [
                "spec.minReplicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.maxReplicas: Invalid value: -2: must be greater than 0",
                "spec.maxReplicas: Invalid value: -2: must be greater than or equal to `minReplicas`",
            ],
        ),
        (
            {"scaleTargetRef": {}},
            ["spec.scaleTargetRef.kind: Required value", "spec.scaleTargetRef.name: Required value"],
        ),
        (
            {"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]},
            ["spec.metrics[0].resource.target.averageUtilization: Required value: must set averageUtilization"],
        ),
        (
            {"metrics": [{"type": "Pods", "pods": {"metric": {}, "target": {"type": "AverageValue", "averageValue": "1"}}}]},
            ["spec.metrics[0].pods.metric.name: Required value: must specify a metric name"],
        ),
        (
            {"metrics": [{"type": "Magic"}]},
            [
                'spec.metrics[0].type: Unsupported value: "Magic": supported values: "Resource", "Pods", '
                '"Object", "ContainerResource", "External"'
            ],
        ),
        (
            {
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 4000,
                        "selectPolicy": "Sometimes",
                        "policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}],
                    },
                    "scaleUp": {"policies": []},
                }
            },
            [
                "spec.behavior.scaleUp.policies: Required value: must specify at least one Policy",
                "spec.behavior.scaleDown.stabilizationWindowSeconds: Invalid value: 4000: must be less than or "
                "equal to 3600",
                'spec.behavior.scaleDown.selectPolicy: Unsupported value: "Sometimes": supported values: '
                '"Disabled", "Max", "Min"',
                "spec.behavior.scaleDown.policies[0].value: Invalid value: 0: must be greater than zero",
                "spec.behavior.scaleDown.policies[0].periodSeconds: Invalid value: 1801: must be less than or "
                "equal to 1800",
            ],
        ),
    ],
)
def test_hpa_rules(spec: JSON, messages: list[str]) -> None:
    assert _messages(hpa(**spec)) == messages


# ------------------------------------------------------------------------------------------- label selectors


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({"matchLabels": {"a": "b"}}, []),
        ({"matchLabels": {"a": "-b"}}, [("s.matchLabels", "Invalid")]),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x", "-y"]}]},
            [("s.matchExpressions[0].values[1]", "Invalid")],
        ),
        (
            {"matchExpressions": [{"key": "-a", "operator": "Exists"}]},
            [("s.matchExpressions[0].key", "Invalid")],
        ),
        ({"matchExpressions": [{"operator": "Exists"}]}, [("s.matchExpressions[0].key", "Invalid")] * 2),
        (
            {"matchExpressions": ["x"]},
            [("s.matchExpressions[0].operator", "Invalid")] + [("s.matchExpressions[0].key", "Invalid")] * 2,
        ),
        ("not a selector", []),
    ],
)
def test_validate_label_selector(selector: Any, expected: list[tuple[str, str]]) -> None:
    assert [(e.path, e.kind) for e in validate_label_selector(selector, "s")] == expected


# -------------------------------------------------------------------------------------------------- updates


@pytest.mark.parametrize(
    ("kind", "old", "new", "expected"),
    [
        ("Deployment", deployment(), deployment(replicas=5), []),
        (
            "Deployment",
            deployment(),
            deployment(selector={"matchLabels": {"app": "x"}}),
            [("spec.selector", "Invalid")],
        ),
        (
            "ReplicaSet",
            deployment(),
            deployment(selector={"matchLabels": {"app": "x"}}),
            [("spec.selector", "Invalid")],
        ),
        ("Job", job(parallelism=1), job(parallelism=3), []),
        ("Job", job(completions=1), job(completions=2), [("spec.completions", "Invalid")]),
        ("Job", job(), job(template={"spec": {"containers": []}}), [("spec.template", "Invalid")]),
        (
            "Service",
            service(clusterIP="10.0.0.1"),
            service(clusterIP="10.0.0.2"),
            [("spec.clusterIP", "Invalid")],
        ),
        ("Service", service(clusterIP="10.0.0.1"), service(clusterIP="10.0.0.1", type="NodePort"), []),
        ("Service", service(clusterIP="10.0.0.1"), service(type="ExternalName", externalName="x"), []),
        ("Service", service(), service(clusterIP="10.0.0.9"), []),  # allocation fills an empty clusterIP
        ("Pod", pod(), pod(containers=[_container(image="nginx:1.26")]), []),
        ("Pod", pod(), pod(activeDeadlineSeconds=5, tolerations=[{"key": "k"}]), []),
        ("Pod", pod(), pod(containers=[_container(command=["sh"])]), [("spec", "Forbidden")]),
        ("Pod", pod(nodeName="n1"), pod(nodeName="n2"), [("spec.nodeName", "Invalid")]),
        ("Pod", pod(), pod(nodeName="n1"), []),  # binding sets it once
    ],
)
def test_validate_update(kind: str, old: JSON, new: JSON, expected: list[tuple[str, str]]) -> None:
    assert [(e.path, e.kind) for e in validate_update(kind, new, old)] == expected


def test_immutable_config_maps_and_secrets() -> None:
    old = {"kind": "ConfigMap", "immutable": True, "data": {"a": "1"}}
    assert validate_update("ConfigMap", dict(old), old) == []
    assert [(e.path, e.kind) for e in validate_update("ConfigMap", {**old, "data": {"a": "2"}}, old)] == [
        ("data", "Forbidden")
    ]
    assert [(e.path, e.kind) for e in validate_update("ConfigMap", {"data": {"a": "1"}}, old)] == [
        ("immutable", "Forbidden")
    ]
    assert validate_update("ConfigMap", {"data": {"a": "2"}}, {"data": {"a": "1"}}) == []
    secret = {"kind": "Secret", "type": "Opaque"}
    assert [(e.path, e.kind) for e in validate_update("Secret", {"type": "kubernetes.io/tls"}, secret)] == [
        ("type", "Invalid")
    ]


# ---------------------------------------------------------------------------------------------- properties

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_FIELD_NAMES = st.sampled_from(
    [
        "metadata", "name", "namespace", "labels", "annotations", "ownerReferences", "generateName", "spec",
        "replicas", "selector", "matchLabels", "matchExpressions", "key", "operator", "values", "template",
        "containers", "initContainers", "image", "ports", "containerPort", "hostPort", "protocol", "env",
        "volumes", "restartPolicy", "strategy", "type", "rollingUpdate", "maxSurge", "maxUnavailable",
        "schedule", "jobTemplate", "port", "targetPort", "nodePort", "clusterIP", "externalName",
        "sessionAffinity", "data", "binaryData", "stringData", "scaleTargetRef", "minReplicas", "maxReplicas",
        "involvedObject", "completions", "manualSelector", "terminationGracePeriodSeconds", "immutable",
    ]
)  # fmt: skip
_JSONISH = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(_FIELD_NAMES | st.text(max_size=4), children, max_size=4),
    ),
    max_leaves=25,
)


def _render_all(errs: list[FieldError]) -> None:
    for e in errs:
        e.message()
        e.cause().to_dict()
    if errs:
        invalid("Deployment", "apps", "x", errs).body()


@SETTINGS
@given(
    st.sampled_from(sorted(VALIDATORS)), st.dictionaries(_FIELD_NAMES, _JSONISH, max_size=6), st.booleans()
)
def test_validation_never_raises(kind: str, obj: JSON, namespaced: bool) -> None:
    errs = validate_object(kind, obj, namespaced)
    assert all(isinstance(e, FieldError) for e in errs)
    _render_all(errs)


@SETTINGS
@given(
    st.sampled_from(sorted(VALIDATORS)),
    st.dictionaries(_FIELD_NAMES, _JSONISH, max_size=5),
    st.dictionaries(_FIELD_NAMES, _JSONISH, max_size=5),
)
def test_update_validation_never_raises(kind: str, new: JSON, old: JSON) -> None:
    _render_all(validate_update(kind, new, old))


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def _mutated_valid_objects(draw: st.DrawFn) -> JSON:
    """A valid object with one value anywhere inside replaced by arbitrary JSON (a list as a name...)."""
    obj = copy.deepcopy(draw(st.sampled_from(VALID)))
    path = draw(st.sampled_from([p for p in _paths(obj) if len(p) > 1]))
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = draw(_JSONISH)
    return obj


@settings(SETTINGS, max_examples=400)
@given(_mutated_valid_objects())
def test_mutated_valid_objects_never_raise(obj: JSON) -> None:
    _render_all(validate_object(obj["kind"], obj, True))
    _render_all(validate_update(obj["kind"], obj, VALID[0]))


@SETTINGS
@given(st.text(max_size=30))
def test_cron_schedule_error_never_raises(schedule: str) -> None:
    assert cron_schedule_error(schedule) is None or isinstance(cron_schedule_error(schedule), str)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["app", "tier", "x"]), st.sampled_from(["a", "b", "c"]), min_size=1))
def test_selector_equal_to_template_labels_is_valid(labels: dict[str, str]) -> None:
    obj = deployment(selector={"matchLabels": labels})
    obj["spec"]["template"]["metadata"]["labels"] = {**labels, "extra": "1"}
    assert validate_object("Deployment", obj, True) == []
