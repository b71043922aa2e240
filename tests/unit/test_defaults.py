"""Defaulting: upstream values per kind (pkg/apis/*/v1/defaults.go), idempotence and restore properties."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.defaults import apply_defaults, default_container, default_pod_spec

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

JSON = dict[str, Any]

POD_SPEC_DEFAULTS = {
    "restartPolicy": "Always",
    "dnsPolicy": "ClusterFirst",
    "terminationGracePeriodSeconds": 30,
    "schedulerName": "default-scheduler",
    "securityContext": {},
}
CONTAINER_DEFAULTS = {
    "terminationMessagePath": "/dev/termination-log",
    "terminationMessagePolicy": "File",
}


def defaulted(obj: JSON) -> JSON:
    out = copy.deepcopy(obj)
    apply_defaults(out)
    return out


def test_deployment_defaults_match_the_apiserver() -> None:
    obj = defaulted(
        {
            "kind": "Deployment",
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}
                        ]
                    },
                },
            },
        }
    )
    assert obj["spec"] == {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                **POD_SPEC_DEFAULTS,
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.25",
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        **CONTAINER_DEFAULTS,
                    }
                ],
            },
        },
    }


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ({"type": "Recreate"}, {"type": "Recreate"}),
        (
            {"rollingUpdate": {"maxSurge": 1}},
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
        ),
        (
            {"type": "", "rollingUpdate": {"maxUnavailable": 0}},
            {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        ),
    ],
)
def test_deployment_strategy_defaults(strategy: JSON, expected: JSON) -> None:
    obj = defaulted(
        {"kind": "Deployment", "spec": {"strategy": strategy, "replicas": 0, "revisionHistoryLimit": 0}}
    )
    assert obj["spec"]["strategy"] == expected
    assert obj["spec"]["replicas"] == 0  # explicit zeroes are kept
    assert obj["spec"]["revisionHistoryLimit"] == 0


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("library/nginx:latest", "Always"),
        ("localhost:5000/nginx", "Always"),  # a registry port is not a tag
        ("localhost:5000/nginx:1.25", "IfNotPresent"),
        ("nginx:1.25", "IfNotPresent"),
        ("nginx:Latest", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:1.25@sha256:" + "a" * 64, "IfNotPresent"),
        ("nginx:latest@sha256:" + "a" * 64, "Always"),  # ParseImageName still reports tag "latest"
        ("registry.example.com:443/team/app", "Always"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    container: JSON = {"name": "c", "image": image}
    default_container(container)
    assert container["imagePullPolicy"] == policy


def test_container_explicit_values_are_kept_and_empty_strings_defaulted() -> None:
    container: JSON = {
        "name": "c",
        "image": "nginx",
        "imagePullPolicy": "Never",
        "terminationMessagePath": "",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 80, "protocol": ""}],
        "env": [
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "X", "value": "1"},
        ],
        "livenessProbe": {"httpGet": {"port": 80}},
        "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 3},
    }
    default_container(container)
    assert container["imagePullPolicy"] == "Never"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert [p["protocol"] for p in container["ports"]] == ["UDP", "TCP"]
    assert container["env"][0]["valueFrom"]["fieldRef"] == {"fieldPath": "spec.nodeName", "apiVersion": "v1"}
    assert container["env"][1] == {"name": "X", "value": "1"}
    assert container["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert container["readinessProbe"]["periodSeconds"] == 3


def test_container_without_image_gets_no_pull_policy() -> None:
    container: JSON = {"name": "c"}
    default_container(container)
    assert "imagePullPolicy" not in container


def test_pod_spec_defaults_and_volumes() -> None:
    spec: JSON = {
        "containers": [{"name": "c", "image": "x:1"}],
        "initContainers": [{"name": "i", "image": "x"}],
        "serviceAccountName": "robot",
        "volumes": [
            {"name": "cm", "configMap": {"name": "cfg"}},
            {"name": "s", "secret": {"secretName": "s", "defaultMode": 256}},
            {"name": "d", "downwardAPI": {"items": []}},
            {"name": "p", "projected": {"sources": []}},
            {"name": "e", "emptyDir": {}},
        ],
        "restartPolicy": "",
    }
    default_pod_spec(spec)
    for key, value in POD_SPEC_DEFAULTS.items():
        assert spec[key] == value
    assert spec["serviceAccount"] == "robot"
    assert spec["initContainers"][0]["imagePullPolicy"] == "Always"
    assert spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    sources = [
        (v, k) for v in spec["volumes"] for k in ("configMap", "secret", "downwardAPI", "projected") if k in v
    ]
    assert [v[k]["defaultMode"] for v, k in sources] == [420, 256, 420, 420]
    assert spec["volumes"][4] == {"name": "e", "emptyDir": {}}


def test_pod_only_defaults() -> None:
    pod = defaulted(
        {
            "kind": "Pod",
            "spec": {
                "containers": [
                    {"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                    {
                        "name": "b",
                        "image": "x",
                        "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}},
                    },
                    {"name": "c", "image": "x", "resources": {"limits": {}}},
                ],
                "tolerations": [
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}
                ],
            },
        }
    )
    spec = pod["spec"]
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    # SetDefaults_Pod: requests default to limits, key by key, on pods only.
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert spec["containers"][1]["resources"]["requests"] == {"cpu": "500m"}
    assert "requests" not in spec["containers"][2]["resources"]
    # DefaultTolerationSeconds: the missing not-ready toleration is added, the existing one kept as is.
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 5,  # Corral's short default (upstream 300; `--pod-eviction-timeout`)
        },
    ]


def test_pod_with_null_tolerations() -> None:
    pod = defaulted({"kind": "Pod", "spec": {"containers": [], "tolerations": None}})
    assert [t["key"] for t in pod["spec"]["tolerations"]] == [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]


def test_templates_are_not_given_pod_only_defaults() -> None:
    template = {"spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}}}]}}
    dep = defaulted({"kind": "Deployment", "spec": {"template": copy.deepcopy(template)}})
    rs = defaulted({"kind": "ReplicaSet", "spec": {"template": copy.deepcopy(template)}})
    tspec = dep["spec"]["template"]["spec"]
    assert "requests" not in tspec["containers"][0]["resources"]
    assert "tolerations" not in tspec and "enableServiceLinks" not in tspec and "priority" not in tspec
    # kubectl rollout undo deep-compares a Deployment's template with its ReplicaSets' templates.
    assert dep["spec"]["template"] == rs["spec"]["template"]
    assert rs["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {},
            {
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
        ),
        (
            {"type": "NodePort"},
            {
                "type": "NodePort",
                "sessionAffinity": "None",
                "externalTrafficPolicy": "Cluster",
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
        ),
        (
            {"type": "LoadBalancer"},
            {
                "type": "LoadBalancer",
                "sessionAffinity": "None",
                "externalTrafficPolicy": "Cluster",
                "internalTrafficPolicy": "Cluster",
                "allocateLoadBalancerNodePorts": True,
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
        ),
        (
            {"type": "ExternalName", "externalName": "db.example.com"},
            {"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"},
        ),
        (
            {"sessionAffinity": "ClientIP"},
            {
                "type": "ClusterIP",
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
        ),
        (
            {
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "type": "",
                "internalTrafficPolicy": "Local",
            },
            {
                "type": "ClusterIP",
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "internalTrafficPolicy": "Local",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
        ),
        (
            {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}},  # dropped when affinity is None
            {
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
        ),
    ],
)
def test_service_spec_defaults(spec: JSON, expected: JSON) -> None:
    assert defaulted({"kind": "Service", "spec": spec})["spec"] == expected


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        ({"port": 80}, {"port": 80, "protocol": "TCP", "targetPort": 80}),
        ({"port": 80, "targetPort": 8080}, {"port": 80, "protocol": "TCP", "targetPort": 8080}),
        ({"port": 80, "targetPort": "http"}, {"port": 80, "protocol": "TCP", "targetPort": "http"}),
        ({"port": 80, "targetPort": 0}, {"port": 80, "protocol": "TCP", "targetPort": 80}),
        ({"port": 80, "targetPort": ""}, {"port": 80, "protocol": "TCP", "targetPort": 80}),
        ({"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "UDP", "targetPort": 53}),
        ({"name": "x"}, {"name": "x", "protocol": "TCP"}),
    ],
)
def test_service_port_defaults(port: JSON, expected: JSON) -> None:
    assert defaulted({"kind": "Service", "spec": {"ports": [port]}})["spec"]["ports"] == [expected]


@pytest.mark.parametrize(
    ("spec", "completions", "parallelism"),
    [
        ({}, 1, 1),
        ({"completions": 5}, 5, 1),
        ({"parallelism": 3}, None, 3),  # a work queue: completions stay unset
        ({"completions": 0, "parallelism": 0}, 0, 0),
    ],
)
def test_job_defaults(spec: JSON, completions: int | None, parallelism: int) -> None:
    obj = defaulted({"kind": "Job", "spec": {**spec, "template": {"spec": {"containers": []}}}})["spec"]
    assert obj.get("completions") == completions
    assert obj["parallelism"] == parallelism
    assert obj["backoffLimit"] == 6
    assert obj["completionMode"] == "NonIndexed"
    assert obj["suspend"] is False
    assert obj["podReplacementPolicy"] == "TerminatingOrFailed"
    assert "manualSelector" not in obj
    assert obj["template"]["spec"]["restartPolicy"] == "Always"  # left for validation to reject


def test_cronjob_defaults_do_not_touch_the_job_spec() -> None:
    obj = defaulted(
        {
            "kind": "CronJob",
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}},
            },
        }
    )["spec"]
    assert obj["concurrencyPolicy"] == "Allow"
    assert obj["suspend"] is False
    assert obj["successfulJobsHistoryLimit"] == 3
    assert obj["failedJobsHistoryLimit"] == 1
    job_spec = obj["jobTemplate"]["spec"]
    assert "backoffLimit" not in job_spec and "completions" not in job_spec
    assert job_spec["template"]["spec"]["dnsPolicy"] == "ClusterFirst"


def test_other_kinds() -> None:
    assert defaulted({"kind": "Secret"})["type"] == "Opaque"
    assert defaulted({"kind": "Secret", "type": "kubernetes.io/tls"})["type"] == "kubernetes.io/tls"
    ns = defaulted({"kind": "Namespace", "metadata": {"name": "team", "labels": {"a": "b"}}})
    assert ns["metadata"]["labels"] == {"a": "b", "kubernetes.io/metadata.name": "team"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}
    assert defaulted({"kind": "Namespace", "metadata": None})["metadata"]["labels"] == {}
    assert defaulted({"kind": "Node"})["spec"] == {}
    assert defaulted({"kind": "ConfigMap", "data": {}}) == {"kind": "ConfigMap", "data": {}}
    assert defaulted({"kind": "Unknown"}) == {"kind": "Unknown"}
    assert defaulted({}) == {}


def test_hpa_defaults_per_version() -> None:
    v2 = defaulted(
        {"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2", "spec": {"maxReplicas": 3}}
    )
    assert v2["spec"] == {
        "maxReplicas": 3,
        "minReplicas": 1,
        "metrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
            }
        ],
    }
    v1 = defaulted(
        {"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v1", "spec": {"maxReplicas": 3}}
    )
    assert v1["spec"] == {"maxReplicas": 3, "minReplicas": 1}
    kept = defaulted(
        {
            "kind": "HorizontalPodAutoscaler",
            "apiVersion": "autoscaling/v2",
            "spec": {"minReplicas": 2, "metrics": [{"type": "Pods"}]},
        }
    )
    assert kept["spec"] == {"minReplicas": 2, "metrics": [{"type": "Pods"}]}


@pytest.mark.parametrize(
    "kind", ["Deployment", "ReplicaSet", "Job", "CronJob", "Service", "Pod", "HorizontalPodAutoscaler"]
)
@pytest.mark.parametrize("spec", [None, "x", [], {"template": "x"}, {"containers": True}, {"ports": {}}])
def test_malformed_specs_do_not_crash(kind: str, spec: Any) -> None:
    defaulted({"kind": kind, "spec": spec})


# ---------------------------------------------------------------------------------------------- properties

_IMAGES = st.sampled_from(
    ["nginx", "nginx:latest", "nginx:1.25", "r.io:5000/a/b", "a@sha256:" + "0" * 64, ""]
)
_MAYBE_EMPTY = st.sampled_from([None, ""])


@st.composite
def _containers(draw: st.DrawFn) -> JSON:
    c: JSON = {"name": draw(st.sampled_from(["a", "b"])), "image": draw(_IMAGES)}
    if draw(st.booleans()):
        c["imagePullPolicy"] = draw(st.sampled_from(["Always", "Never", "", None]))
    if draw(st.booleans()):
        c["ports"] = [
            {
                "containerPort": draw(st.integers(1, 65535)),
                **({"protocol": p} if (p := draw(st.sampled_from([None, "UDP", ""]))) else {}),
            }
        ]
    if draw(st.booleans()):
        c["resources"] = {
            k: draw(
                st.dictionaries(st.sampled_from(["cpu", "memory"]), st.sampled_from(["1", "500m", "1Gi"]))
            )
            for k in draw(st.lists(st.sampled_from(["limits", "requests"]), unique=True))
        }
    if draw(st.booleans()):
        c["livenessProbe"] = {
            "httpGet": {"port": 80, "path": draw(_MAYBE_EMPTY)},
            "periodSeconds": draw(st.sampled_from([None, 5])),
        }
    if draw(st.booleans()):
        c["env"] = [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    return c


@st.composite
def _pod_specs(draw: st.DrawFn) -> JSON:
    spec: JSON = {"containers": draw(st.lists(_containers(), max_size=2))}
    for key, values in (
        ("restartPolicy", ["Always", "Never", "", None]),
        ("dnsPolicy", ["Default", ""]),
        ("terminationGracePeriodSeconds", [0, 5, None]),
        ("serviceAccountName", ["robot", ""]),
        ("tolerations", [None, [], [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]]),
        (
            "volumes",
            [[{"name": "v", "configMap": {"name": "c"}}], [{"name": "s", "secret": {"defaultMode": 0o600}}]],
        ),
    ):
        if draw(st.booleans()):
            spec[key] = draw(st.sampled_from(values))
    if draw(st.booleans()):
        spec["initContainers"] = draw(st.lists(_containers(), max_size=1))
    return spec


@st.composite
def _objects(draw: st.DrawFn) -> JSON:
    kind = draw(
        st.sampled_from(
            [
                "Pod",
                "Deployment",
                "ReplicaSet",
                "Job",
                "CronJob",
                "Service",
                "Secret",
                "Namespace",
                "HorizontalPodAutoscaler",
                "Node",
                "ConfigMap",
            ]
        )
    )
    obj: JSON = {"kind": kind, "metadata": {"name": draw(st.sampled_from(["x", "team-a"]))}}
    template = {"metadata": {"labels": {"app": "x"}}, "spec": draw(_pod_specs())}
    spec: JSON
    if kind == "Pod":
        spec = template["spec"]
    elif kind in ("Deployment", "ReplicaSet"):
        spec = {"template": template}
        if draw(st.booleans()):
            spec["replicas"] = draw(st.integers(0, 5))
        if kind == "Deployment" and draw(st.booleans()):
            spec["strategy"] = draw(
                st.sampled_from([{}, {"type": "Recreate"}, {"type": ""}, {"rollingUpdate": {"maxSurge": 0}}])
            )
    elif kind == "Job":
        spec = {"template": template}
        for key in ("completions", "parallelism", "backoffLimit"):
            if draw(st.booleans()):
                spec[key] = draw(st.integers(0, 3))
    elif kind == "CronJob":
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
        if draw(st.booleans()):
            spec["concurrencyPolicy"] = draw(st.sampled_from(["Forbid", ""]))
    elif kind == "Service":
        spec = {
            "type": draw(
                st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "", None])
            ),
            "ports": [
                {
                    "port": 80,
                    **(
                        {"targetPort": t}
                        if (t := draw(st.sampled_from([None, 0, "", 8080, "http"]))) is not None
                        else {}
                    ),
                }
            ],
            "sessionAffinity": draw(st.sampled_from(["None", "ClientIP", "", None])),
        }
        if draw(st.booleans()):
            spec["sessionAffinityConfig"] = draw(
                st.sampled_from([{}, {"clientIP": {}}, {"clientIP": {"timeoutSeconds": 5}}])
            )
    elif kind == "HorizontalPodAutoscaler":
        obj["apiVersion"] = draw(st.sampled_from(["autoscaling/v1", "autoscaling/v2"]))
        spec = {"maxReplicas": 3}
        if draw(st.booleans()):
            spec["minReplicas"] = draw(st.sampled_from([None, 2]))
    else:
        spec = {}
    if kind not in ("Secret", "ConfigMap", "Node", "Namespace") or draw(st.booleans()):
        obj["spec"] = spec
    return obj


@SETTINGS
@given(_objects())
def test_defaulting_is_idempotent(obj: JSON) -> None:
    once = defaulted(obj)
    assert defaulted(once) == once


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


_MISSING = object()


def _lookup(value: Any, path: tuple[Any, ...]) -> Any:
    try:
        return _get(value, path)
    except (KeyError, IndexError, TypeError):
        return _MISSING


@SETTINGS
@given(_objects(), st.data())
def test_a_removed_default_is_restored(obj: JSON, data: st.DataObject) -> None:
    once = defaulted(obj)
    # Fields the defaulting added (dict keys whose parent existed in the input), except those that
    # upstream does not restore either: Job completions stay unset once parallelism is set.
    added = [
        p
        for p in _paths(once)
        if p
        and isinstance(p[-1], str)
        and _lookup(obj, p) in (_MISSING, None, "")
        and _lookup(obj, p) != _get(once, p)
        and _lookup(obj, p[:-1]) is not _MISSING
        and p != ("spec", "completions")
    ]
    if not added:
        return
    path = data.draw(st.sampled_from(added))
    damaged = copy.deepcopy(once)
    del _get(damaged, path[:-1])[path[-1]]
    assert defaulted(damaged) == once


@SETTINGS
@given(_objects())
def test_defaulting_keeps_explicit_values(obj: JSON) -> None:
    once = defaulted(obj)
    for path in _paths(obj):
        value = _lookup(obj, path)
        if isinstance(value, (dict, list)) or value in (None, "", 0) or not path:
            continue
        if path[:2] == ("spec", "sessionAffinityConfig") or path == (
            "metadata",
            "labels",
            "kubernetes.io/metadata.name",
        ):
            continue  # dropped or overwritten upstream too
        assert _lookup(once, path) == value, path
