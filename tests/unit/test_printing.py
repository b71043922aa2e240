"""Server-side Table printing: columns, cells per kind (upstream printers.go behaviour), the Table body."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.printing import column_definitions, row_cells, to_table
from corral.api.printing.labels import format_label_selector, format_labels, selector_string

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    """An RFC3339 timestamp ``kw`` before NOW."""
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str = "x", created: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    if created is not None:
        out["creationTimestamp"] = created
    out.update(extra)
    return out


def cells(kind: str, obj: dict[str, Any], **kw: Any) -> list[Any]:
    return row_cells(obj, NOW, kind=kind, **kw)


# --- columns -------------------------------------------------------------------------------------------

EXPECTED_COLUMNS = {
    "Pod": (
        ["Name", "Ready", "Status", "Restarts", "Age"],
        ["IP", "Node", "Nominated Node", "Readiness Gates"],
    ),
    "Deployment": (["Name", "Ready", "Up-to-date", "Available", "Age"], ["Containers", "Images", "Selector"]),
    "ReplicaSet": (["Name", "Desired", "Current", "Ready", "Age"], ["Containers", "Images", "Selector"]),
    "Service": (["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"], ["Selector"]),
    "Endpoints": (["Name", "Endpoints", "Age"], []),
    "ConfigMap": (["Name", "Data", "Age"], []),
    "Secret": (["Name", "Type", "Data", "Age"], []),
    "Namespace": (["Name", "Status", "Age"], []),
    "Node": (
        ["Name", "Status", "Roles", "Age", "Version"],
        ["Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"],
    ),
    "Event": (
        ["Last Seen", "Type", "Reason", "Object", "Message"],
        ["Subobject", "Source", "First Seen", "Count", "Name"],
    ),
    "Job": (["Name", "Status", "Completions", "Duration", "Age"], ["Containers", "Images", "Selector"]),
    "CronJob": (
        ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"],
        ["Containers", "Images", "Selector"],
    ),
    "HorizontalPodAutoscaler": (
        ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"],
        [],
    ),
    "ServiceAccount": (["Name", "Secrets", "Age"], []),
    "Lease": (["Name", "Holder", "Age"], []),
    "EndpointSlice": (["Name", "AddressType", "Ports", "Endpoints", "Age"], []),
    "Ingress": (["Name", "Class", "Hosts", "Address", "Ports", "Age"], []),
    "IngressClass": (["Name", "Controller", "Parameters", "Age"], []),
    "Widget": (["Name", "Age"], []),
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_COLUMNS))
def test_column_names_and_priorities(kind: str) -> None:
    normal, wide = EXPECTED_COLUMNS[kind]
    cols = column_definitions(kind)
    assert [c["name"] for c in cols if c["priority"] == 0] == normal
    assert [c["name"] for c in cols if c["priority"] == 1] == wide
    for col in cols:
        assert list(col) == ["name", "type", "format", "description", "priority"]
        assert col["type"] in ("string", "integer", "number", "boolean", "date")
        assert col["format"] == ("name" if col["name"] == "Name" else "")
        assert col["description"]


def test_column_order_interleaves_wide_columns_like_upstream() -> None:
    names = [c["name"] for c in column_definitions("Event")]
    assert names == [
        "Last Seen",
        "Type",
        "Reason",
        "Object",
        "Subobject",
        "Source",
        "Message",
        "First Seen",
        "Count",
        "Name",
    ]
    assert column_definitions("Pod")[0]["format"] == "name"


def test_column_types_follow_upstream() -> None:
    types = {c["name"]: c["type"] for c in column_definitions("ReplicaSet")}
    assert types["Desired"] == types["Current"] == types["Ready"] == "integer"
    types = {c["name"]: c["type"] for c in column_definitions("CronJob")}
    assert types["Suspend"] == "boolean" and types["Active"] == "integer"
    assert {c["type"] for c in column_definitions("Deployment")} == {"string"}


def test_column_definitions_are_copies() -> None:
    column_definitions("Pod")[0]["name"] = "mutated"
    assert column_definitions("Pod")[0]["name"] == "Name"


# --- Pod -----------------------------------------------------------------------------------------------


def pod(status: dict[str, Any], spec: dict[str, Any] | None = None, n: int = 1, **m: Any) -> dict[str, Any]:
    spec = spec if spec is not None else {"containers": [{"name": f"c{i}", "image": "img"} for i in range(n)]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta("p", **m), "spec": spec, "status": status}


def running(ready: bool = True, restarts: int = 0, finished: str | None = None) -> dict[str, Any]:
    cs: dict[str, Any] = {"name": "c", "ready": ready, "restartCount": restarts, "state": {"running": {}}}
    if finished:
        cs["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": finished}}
    return cs


def waiting(reason: str = "", restarts: int = 0) -> dict[str, Any]:
    return {
        "name": "c",
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason} if reason else {}},
    }


def terminated(reason: str = "", exit_code: int = 0, signal: int = 0, restarts: int = 0) -> dict[str, Any]:
    term: dict[str, Any] = {"exitCode": exit_code}
    if reason:
        term["reason"] = reason
    if signal:
        term["signal"] = signal
    return {"name": "c", "ready": False, "restartCount": restarts, "state": {"terminated": term}}


def init_spec(n: int, *sidecars: str) -> dict[str, Any]:
    inits = [{"name": f"i{k}", "image": "busybox"} for k in range(n)]
    inits += [{"name": s, "image": "proxy", "restartPolicy": "Always"} for s in sidecars]
    return {"initContainers": inits, "containers": [{"name": "app", "image": "app"}]}


POD_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "running one of two ready",
        pod({"phase": "Running", "containerStatuses": [running(restarts=3), {"restartCount": 3}]}, n=2),
        ["1/2", "Running", "6"],
    ),
    (
        "waiting reason overrides phase",
        pod(
            {"phase": "Pending", "containerStatuses": [running(restarts=3), waiting("ContainerCreating", 3)]},
            n=2,
        ),
        ["1/2", "ContainerCreating", "6"],
    ),
    (
        "the first container has the last word",
        pod(
            {
                "phase": "Running",
                "containerStatuses": [
                    waiting("CrashLoopBackOff", 3),
                    terminated("OOMKilled", 137, restarts=3),
                ],
            },
            n=2,
        ),
        ["0/2", "CrashLoopBackOff", "6"],
    ),
    (
        "ready without running state does not count",
        pod({"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 1}]}),
        ["0/1", "Running", "1"],
    ),
    (
        "pod reason beats phase",
        pod({"phase": "Failed", "reason": "Evicted", "containerStatuses": []}),
        ["0/1", "Evicted", "0"],
    ),
    (
        "completed next to running without Ready condition",
        pod({"phase": "Running", "containerStatuses": [terminated("Completed"), running()]}, n=2),
        ["1/2", "NotReady", "0"],
    ),
    (
        "completed next to running with Ready condition",
        pod(
            {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [terminated("Completed"), running()],
            },
            n=2,
        ),
        ["1/2", "Running", "0"],
    ),
    (
        "terminated without reason shows exit code",
        pod({"phase": "Running", "containerStatuses": [terminated(exit_code=2)]}),
        ["0/1", "ExitCode:2", "0"],
    ),
    (
        "terminated without reason shows signal",
        pod({"phase": "Running", "containerStatuses": [terminated(exit_code=137, signal=9)]}),
        ["0/1", "Signal:9", "0"],
    ),
    (
        "restart suffix from last termination",
        pod({"phase": "Running", "containerStatuses": [running(restarts=5, finished=ago(minutes=5))]}),
        ["1/1", "Running", "5 (5m ago)"],
    ),
    (
        "latest termination across containers",
        pod(
            {
                "phase": "Running",
                "containerStatuses": [
                    running(restarts=6, finished=ago(days=5)),
                    running(restarts=3, finished=ago(days=20)),
                ],
            },
            n=2,
        ),
        ["2/2", "Running", "9 (5d ago)"],
    ),
    (
        "restarts without a termination time have no suffix",
        pod(
            {
                "phase": "Running",
                "containerStatuses": [
                    {**running(), "restartCount": 2, "lastState": {"terminated": {"exitCode": 1}}}
                ],
            }
        ),
        ["1/1", "Running", "2"],
    ),
    (
        "scheduling gated",
        pod(
            {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
            },
            n=2,
        ),
        ["0/2", "SchedulingGated", "0"],
    ),
    ("pending with no statuses", pod({"phase": "Pending"}), ["0/1", "Pending", "0"]),
    (
        "succeeded shows the container reason",
        pod({"phase": "Succeeded", "containerStatuses": [terminated("Completed")]}),
        ["0/1", "Completed", "0"],
    ),
    (
        "deletion of a running pod",
        pod({"phase": "Running", "containerStatuses": [running()]}, deletionTimestamp=ago(seconds=10)),
        ["1/1", "Terminating", "0"],
    ),
    (
        "deletion of a pending pod",
        pod({"phase": "Pending"}, deletionTimestamp=ago(seconds=10)),
        ["0/1", "Terminating", "0"],
    ),
    (
        "deletion of a succeeded pod keeps its status",
        pod(
            {"phase": "Succeeded", "containerStatuses": [terminated("Completed")]},
            deletionTimestamp=ago(seconds=10),
        ),
        ["0/1", "Completed", "0"],
    ),
    (
        "deletion on a lost node",
        pod(
            {"phase": "Running", "reason": "NodeLost", "containerStatuses": [running()]},
            deletionTimestamp=ago(seconds=10),
        ),
        ["1/1", "Unknown", "0"],
    ),
    # Init containers.
    (
        "init container running",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "i0",
                        "restartCount": 3,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=10)}},
                    }
                ],
                "containerStatuses": [waiting()],
            },
            spec=init_spec(1),
        ),
        ["0/1", "Init:0/1", "3 (10s ago)"],
    ),
    (
        "second of two init containers",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i0", "state": {"terminated": {"exitCode": 0}}},
                    {
                        "name": "i1",
                        "restartCount": 3,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=10)}},
                    },
                ],
                "containerStatuses": [waiting()],
            },
            spec=init_spec(2),
        ),
        ["0/1", "Init:1/2", "3 (10s ago)"],
    ),
    (
        "init restarts add up while initializing",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "i0",
                        "restartCount": 2,
                        "state": {"terminated": {"exitCode": 0}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=2)}},
                    },
                    {
                        "name": "i1",
                        "restartCount": 3,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=10)}},
                    },
                ],
                "containerStatuses": [waiting()],
            },
            spec=init_spec(2),
        ),
        ["0/1", "Init:1/2", "5 (10s ago)"],
    ),
    (
        "init restarts forgotten once initialized",
        pod(
            {
                "phase": "Running",
                "initContainerStatuses": [
                    {
                        "name": "i0",
                        "restartCount": 2,
                        "state": {"terminated": {"exitCode": 0}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=2)}},
                    }
                ],
                "containerStatuses": [running(ready=False, restarts=4, finished=ago(seconds=20))],
            },
            spec=init_spec(1),
        ),
        ["0/1", "Running", "4 (20s ago)"],
    ),
    (
        "init crash loop",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i0", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ],
            },
            spec=init_spec(1),
        ),
        ["0/1", "Init:CrashLoopBackOff", "4"],
    ),
    (
        "init waiting PodInitializing counts as progress",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i0", "state": {"waiting": {"reason": "PodInitializing"}}}
                ],
            },
            spec=init_spec(1),
        ),
        ["0/1", "Init:0/1", "0"],
    ),
    (
        "init failed with reason",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i0", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
                ],
            },
            spec=init_spec(1),
        ),
        ["0/1", "Init:Error", "0"],
    ),
    (
        "init failed with exit code",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [{"name": "i0", "state": {"terminated": {"exitCode": 3}}}],
            },
            spec=init_spec(1),
        ),
        ["0/1", "Init:ExitCode:3", "0"],
    ),
    (
        "init failed with signal",
        pod(
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i0", "state": {"terminated": {"exitCode": 137, "signal": 9}}}
                ],
            },
            spec=init_spec(1),
        ),
        ["0/1", "Init:Signal:9", "0"],
    ),
    # Sidecars (restartable init containers) count as containers.
    (
        "sidecar not started yet",
        pod(
            {
                "phase": "Pending",
                "conditions": [{"type": "Initialized", "status": "False"}],
                "initContainerStatuses": [
                    {
                        "name": "s1",
                        "restartCount": 3,
                        "started": False,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=10)}},
                    },
                    {"name": "s2", "started": False, "state": {"waiting": {}}},
                ],
                "containerStatuses": [waiting()],
            },
            spec=init_spec(0, "s1", "s2"),
        ),
        ["0/3", "Init:0/2", "3 (10s ago)"],
    ),
    (
        "sidecars started and app running",
        pod(
            {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {
                        "name": "s1",
                        "restartCount": 3,
                        "started": True,
                        "ready": False,
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=10)}},
                    },
                    {"name": "s2", "started": True, "ready": False, "state": {"running": {}}},
                ],
                "containerStatuses": [running(restarts=4, finished=ago(seconds=20))],
            },
            spec=init_spec(0, "s1", "s2"),
        ),
        ["1/3", "Running", "7 (10s ago)"],
    ),
    (
        "ready sidecar counts as ready",
        pod(
            {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "s1", "started": True, "ready": True, "state": {"running": {}}}
                ],
                "containerStatuses": [running()],
            },
            spec=init_spec(0, "s1"),
        ),
        ["2/2", "Running", "0"],
    ),
    (
        "statuses for containers that are not in the spec",
        pod(
            {
                "phase": "Running",
                "initContainerStatuses": [{"name": "bogus"}, {"name": "i0"}, {"name": "s1"}],
                "containerStatuses": [{"name": "bogus"}, {"name": "app"}],
            },
            spec=init_spec(1, "s1"),
        ),
        ["0/2", "Init:0/2", "0"],
    ),
]


@pytest.mark.parametrize(("case", "obj", "expected"), POD_CASES, ids=[c[0] for c in POD_CASES])
def test_pod_ready_status_restarts(case: str, obj: dict[str, Any], expected: list[str]) -> None:
    assert cells("Pod", obj)[1:4] == expected


def test_pod_full_row_realistic() -> None:
    obj = pod(
        {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "podIPs": [{"ip": "10.0.0.7"}],
            "nominatedNodeName": "node-b",
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "example.com/gate", "status": "True"},
            ],
            "containerStatuses": [running(restarts=1, finished=ago(hours=3, minutes=5))],
        },
        spec={
            "nodeName": "node-a",
            "containers": [{"name": "web", "image": "nginx:1.25"}],
            "readinessGates": [{"conditionType": "example.com/gate"}, {"conditionType": "other"}],
        },
        created=ago(minutes=2, seconds=59),
    )
    assert cells("Pod", obj) == [
        "p",
        "1/1",
        "Running",
        "1 (3h5m ago)",
        "2m59s",
        "10.0.0.7",
        "node-a",
        "node-b",
        "1/2",
    ]


def test_pod_wide_placeholders_and_pod_ips() -> None:
    assert cells("Pod", pod({"phase": "Pending"}))[5:] == ["<none>", "<none>", "<none>", "<none>"]
    dual = pod({"phase": "Running", "podIPs": [{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}]})
    assert cells("Pod", dual)[5] == "1.1.1.1"
    assert cells("Pod", pod({"phase": "Running", "podIP": "10.1.2.3"}))[5] == "10.1.2.3"


def test_pod_readiness_gates_count_first_matching_condition() -> None:
    obj = pod(
        {
            "conditions": [
                {"type": "a", "status": "False"},
                {"type": "b", "status": "True"},
                {"type": "a", "status": "True"},
            ]
        },
        spec={
            "containers": [],
            "readinessGates": [{"conditionType": "a"}, {"conditionType": "b"}, {"conditionType": "c"}],
        },
    )
    assert cells("Pod", obj)[8] == "1/3"


# --- Deployments and ReplicaSets -----------------------------------------------------------------------


def deployment(**spec_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("web", ago(minutes=5)),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.25"},
                        {"name": "log", "image": "busybox"},
                    ]
                },
            },
            **spec_extra,
        },
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
    }


def test_deployment_row() -> None:
    assert cells("Deployment", deployment()) == [
        "web",
        "2/3",
        3,
        2,
        "5m",
        "nginx,log",
        "nginx:1.25,busybox",
        "app=web",
    ]


def test_deployment_selector_renderings() -> None:
    sel = {
        "matchLabels": {"tier": "fe", "app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "Exists"},
            {"key": "team", "operator": "NotIn", "values": ["x"]},
        ],
    }
    assert cells("Deployment", deployment(selector=sel))[7] == (
        "app=web,!canary,env in (dev,prod),team notin (x),tier=fe,zone"
    )
    nil = deployment()
    del nil["spec"]["selector"]
    assert cells("Deployment", nil)[7] == ""
    bad = deployment(selector={"matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]})
    assert cells("Deployment", bad)[7] == "<invalid>"


def test_deployment_minimal_defaults_replicas() -> None:
    assert cells("Deployment", {"metadata": {"name": "d"}}) == ["d", "0/1", 0, 0, "<unknown>", "", "", ""]
    assert cells("Deployment", {"metadata": {"name": "d"}, "spec": {"replicas": 0}})[1] == "0/0"


def test_replicaset_row() -> None:
    rs = {
        "metadata": meta("web-7d9f", ago(hours=2)),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d9f"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}},
        },
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    assert cells("ReplicaSet", rs) == [
        "web-7d9f",
        2,
        2,
        1,
        "120m",
        "nginx",
        "nginx",
        "app=web,pod-template-hash=7d9f",
    ]
    assert cells("ReplicaSet", {"metadata": {"name": "r"}}) == ["r", 1, 0, 0, "<unknown>", "", "", "<none>"]


def test_label_selector_helpers() -> None:
    assert format_label_selector(None) == "<none>"
    assert format_label_selector({}) == "<none>"
    assert format_label_selector({"matchLabels": {"bad key!": "v"}}) == "<error>"
    assert (
        format_label_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
        == "<error>"
    )
    assert (
        format_label_selector({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
        == "<error>"
    )
    assert selector_string({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    # labels.FormatLabels sorts whole "k=v" strings: "a.b=1" < "a=1" because '.' < '='.
    assert format_labels({"a": "1", "a.b": "1"}) == "a.b=1,a=1"
    assert format_labels({}) == "<none>"


# --- Jobs and CronJobs ---------------------------------------------------------------------------------


def job(status: dict[str, Any], spec: dict[str, Any] | None = None, **m: Any) -> dict[str, Any]:
    base_spec: dict[str, Any] = {
        "completions": 1,
        "parallelism": 1,
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
        "template": {
            "spec": {"containers": [{"name": "pi", "image": "perl:5.34"}], "restartPolicy": "Never"}
        },
    }
    if spec is not None:
        base_spec = {**base_spec, **spec}
    return {"metadata": meta("pi", ago(minutes=10), **m), "spec": base_spec, "status": status}


COMPLETE = {"type": "Complete", "status": "True"}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            job(
                {
                    "succeeded": 1,
                    "startTime": ago(minutes=10),
                    "completionTime": ago(minutes=9, seconds=15),
                    "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, COMPLETE],
                }
            ),
            ["pi", "Complete", "1/1", "45s", "10m"],
        ),
        (
            job({"active": 1, "startTime": ago(minutes=3, seconds=20)}),
            ["pi", "Running", "0/1", "3m20s", "10m"],
        ),
        (
            job(
                {
                    "failed": 7,
                    "startTime": ago(minutes=10),
                    "conditions": [
                        {"type": "FailureTarget", "status": "True"},
                        {"type": "Failed", "status": "True"},
                    ],
                }
            ),
            ["pi", "Failed", "0/1", "10m", "10m"],
        ),
        (
            job({"startTime": ago(minutes=10), "conditions": [{"type": "FailureTarget", "status": "True"}]}),
            ["pi", "FailureTarget", "0/1", "10m", "10m"],
        ),
        (
            job({"conditions": [{"type": "Suspended", "status": "True"}]}),
            ["pi", "Suspended", "0/1", "", "10m"],
        ),
        (
            job({"conditions": [{"type": "Suspended", "status": "True"}]}, deletionTimestamp=ago(seconds=1)),
            ["pi", "Terminating", "0/1", "", "10m"],
        ),
        (
            job({"conditions": [{"type": "Complete", "status": "False"}, COMPLETE]}),
            ["pi", "Running", "0/1", "", "10m"],
        ),
        (job({"succeeded": 2}, {"completions": 5, "parallelism": 2}), ["pi", "Running", "2/5", "", "10m"]),
        (
            job({"succeeded": 1}, {"completions": None, "parallelism": 3}),
            ["pi", "Running", "1/1 of 3", "", "10m"],
        ),
        (job({}, {"completions": None, "parallelism": None}), ["pi", "Running", "0/1", "", "10m"]),
    ],
)
def test_job_rows(obj: dict[str, Any], expected: list[Any]) -> None:
    row = cells("Job", obj)
    assert row[:5] == expected
    assert row[5:] == ["pi", "perl:5.34", "batch.kubernetes.io/controller-uid=abc"]


def test_cronjob_rows() -> None:
    cj = {
        "metadata": meta("backup", ago(days=2, hours=3)),
        "spec": {
            "schedule": "*/5 * * * *",
            "suspend": False,
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "dump", "image": "postgres:16"}]}}}
            },
        },
        "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(minutes=4)},
    }
    assert cells("CronJob", cj) == [
        "backup",
        "*/5 * * * *",
        "<none>",
        "False",
        1,
        "4m",
        "2d3h",
        "dump",
        "postgres:16",
        "<none>",
    ]
    cj["spec"].update(timeZone="Europe/Paris", suspend=True)
    del cj["status"]
    assert cells("CronJob", cj)[1:6] == ["*/5 * * * *", "Europe/Paris", "True", 0, "<none>"]
    assert cells("CronJob", {"metadata": {"name": "c"}}) == [
        "c",
        "",
        "<none>",
        "False",
        0,
        "<none>",
        "<unknown>",
        "",
        "",
        "<none>",
    ]


# --- Services and endpoints ----------------------------------------------------------------------------


def service(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": meta("web", ago(days=8, hours=5)), "spec": spec, "status": status or {}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            service(
                {
                    "type": "ClusterIP",
                    "clusterIP": "127.0.10.4",
                    "clusterIPs": ["127.0.10.4"],
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                    "selector": {"app": "web"},
                }
            ),
            ["web", "ClusterIP", "127.0.10.4", "<none>", "80/TCP", "8d", "app=web"],
        ),
        (
            service(
                {
                    "type": "NodePort",
                    "clusterIPs": ["10.0.0.1"],
                    "externalIPs": ["192.168.1.5"],
                    "ports": [
                        {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                        {"port": 53, "nodePort": 30053, "protocol": "UDP"},
                    ],
                }
            ),
            ["web", "NodePort", "10.0.0.1", "192.168.1.5", "80:30080/TCP,53:30053/UDP", "8d", "<none>"],
        ),
        (
            service(
                {
                    "type": "LoadBalancer",
                    "clusterIPs": ["10.0.0.2"],
                    "ports": [{"port": 443, "nodePort": 31443}],
                }
            ),
            ["web", "LoadBalancer", "10.0.0.2", "<pending>", "443:31443/TCP", "8d", "<none>"],
        ),
        (
            service(
                {
                    "type": "LoadBalancer",
                    "clusterIPs": ["10.0.0.2"],
                    "ports": [{"port": 80, "protocol": "TCP"}],
                },
                {
                    "loadBalancer": {
                        "ingress": [
                            {"ip": "3.4.5.6"},
                            {"hostname": "lb.example.com"},
                            {"ip": "2.3.4.5", "hostname": "ignored"},
                            {"ip": "3.4.5.6"},
                        ]
                    }
                },
            ),
            ["web", "LoadBalancer", "10.0.0.2", "2.3.4.5,3.4.5.6,lb.example.com", "80/TCP", "8d", "<none>"],
        ),
        (
            service(
                {"type": "LoadBalancer", "clusterIPs": ["10.0.0.2"], "externalIPs": ["9.9.9.9"], "ports": []},
                {"loadBalancer": {"ingress": [{"ip": "2.3.4.5"}]}},
            ),
            ["web", "LoadBalancer", "10.0.0.2", "2.3.4.5,9.9.9.9", "<none>", "8d", "<none>"],
        ),
        (
            service({"type": "ExternalName", "externalName": "db.example.com"}),
            ["web", "ExternalName", "<none>", "db.example.com", "<none>", "8d", "<none>"],
        ),
        (
            service(
                {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"}}
            ),
            ["web", "ClusterIP", "None", "<none>", "<none>", "8d", "app=db"],
        ),
        (service({"type": "Weird"}), ["web", "Weird", "<none>", "<unknown>", "<none>", "8d", "<none>"]),
        # Decoding would default the type and protocols.
        (
            service({"clusterIP": "127.0.10.9", "ports": [{"port": 8080}]}),
            ["web", "ClusterIP", "127.0.10.9", "<none>", "8080/TCP", "8d", "<none>"],
        ),
    ],
)
def test_service_rows(obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells("Service", obj) == expected


def endpoints(subsets: Any) -> dict[str, Any]:
    return {"metadata": meta("web", ago(seconds=30)), "subsets": subsets}


@pytest.mark.parametrize(
    ("subsets", "expected"),
    [
        (None, "<none>"),
        ([], "<none>"),
        (
            [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 30001, "protocol": "TCP"}]}],
            "127.0.0.1:30001",
        ),
        (
            [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
        ),
        (
            [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]},
                {"addresses": [{"ip": "10.0.0.3"}]},
                {"addresses": [{"ip": "10.0.0.4"}, {"ip": "10.0.0.5"}]},
            ],
            "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
        ),
        ([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}], "[fd00::1]:80"),
        ([{"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]}], ""),
    ],
)
def test_endpoints_rows(subsets: Any, expected: str) -> None:
    assert cells("Endpoints", endpoints(subsets)) == ["web", expected, "30s"]


def endpoint_slice(ports: Any, endpoints: Any, address_type: Any = "IPv4") -> dict[str, Any]:
    return {
        "metadata": meta("web-abcde", ago(minutes=2)),
        "addressType": address_type,
        "ports": ports,
        "endpoints": endpoints,
    }


def addresses(*ips: str) -> dict[str, Any]:
    return {"addresses": list(ips), "conditions": {"ready": True}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            endpoint_slice([{"name": "http", "port": 20001, "protocol": "TCP"}], [addresses("127.0.0.1")]),
            ["web-abcde", "IPv4", "20001", "127.0.0.1", "2m"],
        ),
        # printEndpointSlice: "<unset>" for empty lists; a nil port shows its name, else "*".
        (endpoint_slice([], []), ["web-abcde", "IPv4", "<unset>", "<unset>", "2m"]),
        (endpoint_slice(None, None, None), ["web-abcde", "", "<unset>", "<unset>", "2m"]),
        (
            endpoint_slice([{"name": "dns"}, {}, {"port": 53}], [addresses("10.0.0.1", "10.0.0.2")]),
            ["web-abcde", "IPv4", "dns,*,53", "10.0.0.1,10.0.0.2", "2m"],
        ),
        (
            endpoint_slice(
                [{"port": 1}, {"port": 2}, {"port": 3}, {"port": 4}, {"port": 5}],
                [addresses("10.0.0.1", "10.0.0.2"), addresses("10.0.0.3"), addresses("10.0.0.4", "10.0.0.5")],
            ),
            ["web-abcde", "IPv4", "1,2,3 + 2 more...", "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...", "2m"],
        ),
        (
            endpoint_slice([{"port": 80}], [addresses("fd00::1")], "IPv6"),
            ["web-abcde", "IPv6", "80", "fd00::1", "2m"],
        ),
    ],
)
def test_endpoint_slice_rows(obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells("EndpointSlice", obj) == expected


def ingress(spec: Any, status: Any = None) -> dict[str, Any]:
    return {"metadata": meta("web", ago(minutes=5)), "spec": spec, "status": status}


def rule(host: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"http": {"paths": [{"path": "/", "pathType": "Prefix"}]}}
    if host is not None:
        out["host"] = host
    return out


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            ingress(
                {"ingressClassName": "corral", "rules": [rule("a.example"), rule("b.example")]},
                {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}},
            ),
            ["web", "corral", "a.example,b.example", "127.0.0.1", "80", "5m"],
        ),
        # formatHosts: "*" without hosts; ADDRESS is empty (not <none>) before a controller fills it.
        (ingress({"defaultBackend": {}}), ["web", "<none>", "*", "", "80", "5m"]),
        (
            ingress({"rules": [rule()], "tls": [{"hosts": ["a"]}]}),
            ["web", "<none>", "*", "", "80, 443", "5m"],
        ),
        (
            ingress({"rules": [rule("a"), rule(), rule("c"), rule("d"), rule("e")]}),
            ["web", "<none>", "a,c,d + 2 more...", "", "80", "5m"],
        ),
        (
            ingress(
                {"rules": [rule("a")]},
                {
                    "loadBalancer": {
                        "ingress": [{"ip": "127.0.0.2"}, {"hostname": "lb.example"}, {"ip": "127.0.0.1"}]
                    }
                },
            ),
            ["web", "<none>", "a", "127.0.0.1,127.0.0.2,lb.example", "80", "5m"],
        ),
    ],
)
def test_ingress_rows(obj: dict[str, Any], expected: list[Any]) -> None:
    assert cells("Ingress", obj) == expected


def test_ingress_class_rows() -> None:
    base = {"metadata": meta("corral", ago(hours=3))}
    plain = {**base, "spec": {"controller": "corral.dev/ingress"}}
    assert cells("IngressClass", plain) == ["corral", "corral.dev/ingress", "<none>", "3h"]
    params = {
        **base,
        "spec": {
            "controller": "example.com/lb",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"},
        },
    }
    assert cells("IngressClass", params) == [
        "corral",
        "example.com/lb",
        "IngressParameters.k8s.example.com/external-lb",
        "3h",
    ]
    core = {**base, "spec": {"controller": "c", "parameters": {"kind": "ConfigMap", "name": "cfg"}}}
    assert cells("IngressClass", core)[2] == "ConfigMap/cfg"


# --- Config, identity, namespaces, leases --------------------------------------------------------------


def test_small_kinds() -> None:
    created = ago(hours=26)
    assert cells(
        "ConfigMap",
        {"metadata": meta("cfg", created), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
    ) == ["cfg", 3, "26h"]
    assert cells("ConfigMap", {"metadata": meta("cfg", created)}) == ["cfg", 0, "26h"]
    assert cells(
        "Secret",
        {
            "metadata": meta("tls", created),
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "x", "tls.key": "y"},
        },
    ) == ["tls", "kubernetes.io/tls", 2, "26h"]
    assert cells("Secret", {"metadata": meta("s", created), "stringData": {"a": "b"}}) == [
        "s",
        "Opaque",
        0,
        "26h",
    ]
    assert cells("ServiceAccount", {"metadata": meta("default", created)}) == ["default", 0, "26h"]
    assert cells("ServiceAccount", {"metadata": meta("ci", created), "secrets": [{"name": "t"}]}) == [
        "ci",
        1,
        "26h",
    ]
    assert cells("Namespace", {"metadata": meta("dev", created), "status": {"phase": "Terminating"}}) == [
        "dev",
        "Terminating",
        "26h",
    ]
    assert cells("Namespace", {"metadata": meta("dev", created)}) == ["dev", "Active", "26h"]
    assert cells(
        "Lease",
        {
            "metadata": meta("kube-scheduler", created),
            "spec": {"holderIdentity": "node-a_1234", "leaseDurationSeconds": 15},
        },
    ) == ["kube-scheduler", "node-a_1234", "26h"]
    assert cells("Lease", {"metadata": meta("l", created), "spec": {}}) == ["l", "", "26h"]
    assert cells("Widget", {"metadata": meta("w", created), "spec": {"size": 3}}) == ["w", "26h"]


# --- Nodes ---------------------------------------------------------------------------------------------


def node(
    conditions: list[dict[str, Any]], labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": meta("node-a", ago(days=40), labels=labels or {}),
        "spec": spec,
        "status": {
            "conditions": conditions,
            "addresses": [
                {"type": "Hostname", "address": "node-a"},
                {"type": "InternalIP", "address": "192.168.1.10"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0-corral",
                "osImage": "Debian GNU/Linux 12",
                "kernelVersion": "6.1.0-18-amd64",
                "containerRuntimeVersion": "process://0.1",
            },
        },
    }


def test_node_rows() -> None:
    ready = [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]
    row = cells(
        "Node",
        node(
            ready,
            {
                "node-role.kubernetes.io/control-plane": "",
                "kubernetes.io/role": "worker",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/hostname": "node-a",
            },
        ),
    )
    assert row == [
        "node-a",
        "Ready",
        "control-plane,worker",
        "40d",
        "v1.32.0-corral",
        "192.168.1.10",
        "<none>",
        "Debian GNU/Linux 12",
        "6.1.0-18-amd64",
        "process://0.1",
    ]
    cordoned = node([{"type": "Ready", "status": "Unknown"}], unschedulable=True)
    assert cells("Node", cordoned)[1:3] == ["NotReady,SchedulingDisabled", "<none>"]
    assert cells("Node", node([]))[1] == "Unknown"
    assert cells("Node", {"metadata": {"name": "bare"}}) == [
        "bare",
        "Unknown",
        "<none>",
        "<unknown>",
        "",
        "<none>",
        "<none>",
        "<unknown>",
        "<unknown>",
        "<unknown>",
    ]


# --- Events --------------------------------------------------------------------------------------------


def test_event_row_core_v1() -> None:
    ev = {
        "metadata": meta("web-1.17c2", ago(minutes=30)),
        "involvedObject": {
            "kind": "Pod",
            "name": "web-1",
            "namespace": "default",
            "fieldPath": "spec.containers{nginx}",
        },
        "reason": "BackOff",
        "message": "  Back-off restarting failed container\n",
        "type": "Warning",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": ago(minutes=30),
        "lastTimestamp": ago(minutes=2),
        "count": 7,
    }
    assert cells("Event", ev) == [
        "2m",
        "Warning",
        "BackOff",
        "pod/web-1",
        "spec.containers{nginx}",
        "kubelet, node-a",
        "Back-off restarting failed container",
        "30m",
        7,
        "web-1.17c2",
    ]


def test_event_row_events_api_shape() -> None:
    ev = {
        "metadata": meta("scale.1", ago(hours=1)),
        "involvedObject": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet",
        "message": "Scaled up",
        "type": "Normal",
        "eventTime": "2024-05-01T10:59:59.500000Z",
        "reportingComponent": "deployment-controller",
        "reportingInstance": "corral-0",
    }
    assert cells("Event", ev) == [
        "60m",
        "Normal",
        "ScalingReplicaSet",
        "deployment/web",
        "",
        "deployment-controller, corral-0",
        "Scaled up",
        "60m",
        1,
        "scale.1",
    ]
    ev["series"] = {"count": 4, "lastObservedTime": "2024-05-01T11:59:30.000000Z"}
    assert cells("Event", ev)[0] == "30s"
    assert cells("Event", ev)[8] == 4


def test_event_minimal() -> None:
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"}}
    assert cells("Event", ev) == ["<unknown>", "", "", "node", "", "", "", "<unknown>", 1, "e"]


# --- HorizontalPodAutoscalers --------------------------------------------------------------------------


def hpa_v2(
    metrics: list[dict[str, Any]] | None, current: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2,
        "maxReplicas": 10,
        **spec,
    }
    if metrics is not None:
        s["metrics"] = metrics
    status: dict[str, Any] = {"currentReplicas": 3, "desiredReplicas": 3}
    if current is not None:
        status["currentMetrics"] = current
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta("web", ago(minutes=15)),
        "spec": s,
        "status": status,
    }


def cpu_util(target: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
    }


def cpu_now(value: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "current": {"averageUtilization": value, "averageValue": "120m"}},
    }


MEM_AVG = {
    "type": "Resource",
    "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}},
}
PODS_QPS = {
    "type": "Pods",
    "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "100"}},
}


@pytest.mark.parametrize(
    ("obj", "targets"),
    [
        (hpa_v2([cpu_util(80)], [cpu_now(40)]), "cpu: 40%/80%"),
        (hpa_v2([cpu_util(80)]), "cpu: <unknown>/80%"),
        (hpa_v2([cpu_util(80)], []), "cpu: <unknown>/80%"),
        (hpa_v2(None), "cpu: <unknown>/80%"),
        (hpa_v2([]), "cpu: <unknown>/80%"),
        (
            hpa_v2([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}]),
            "cpu: <unknown>/<auto>",
        ),
        (
            hpa_v2(
                [MEM_AVG],
                [{"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "150Mi"}}}],
            ),
            "memory: 150Mi/200Mi",
        ),
        (hpa_v2([MEM_AVG]), "memory: <unknown>/200Mi"),
        (hpa_v2([PODS_QPS], [{"type": "Pods", "pods": {"current": {"averageValue": "50"}}}]), "50/100"),
        (
            hpa_v2(
                [{"type": "Object", "object": {"target": {"type": "Value", "value": "100m"}}}],
                [{"type": "Object", "object": {"current": {"value": "50m"}}}],
            ),
            "50m/100m",
        ),
        (
            hpa_v2(
                [
                    {
                        "type": "External",
                        "external": {"target": {"type": "AverageValue", "averageValue": "100m"}},
                    }
                ]
            ),
            "<unknown>/100m (avg)",
        ),
        (
            hpa_v2(
                [
                    {
                        "type": "ContainerResource",
                        "containerResource": {
                            "name": "cpu",
                            "container": "app",
                            "target": {"type": "Utilization", "averageUtilization": 60},
                        },
                    }
                ],
                [
                    {
                        "type": "ContainerResource",
                        "containerResource": {
                            "name": "cpu",
                            "container": "app",
                            "current": {"averageUtilization": 75},
                        },
                    }
                ],
            ),
            "cpu: 75%/60%",
        ),
        # Statuses pair with specs by position, as upstream does: memory reads the CPU status's averageValue.
        (hpa_v2([MEM_AVG, cpu_util(80)], [cpu_now(40)]), "memory: 120m/200Mi, cpu: <unknown>/80%"),
        (
            hpa_v2([MEM_AVG], [{"type": "Resource", "resource": {"name": "memory", "current": {}}}]),
            "memory: <nil>/200Mi",
        ),
        (
            hpa_v2([cpu_util(80), MEM_AVG, PODS_QPS]),
            "cpu: <unknown>/80%, memory: <unknown>/200Mi + 1 more...",
        ),
        (hpa_v2([{"type": "Bogus"}]), "<unknown type>"),
    ],
)
def test_hpa_targets(obj: dict[str, Any], targets: str) -> None:
    assert cells("HorizontalPodAutoscaler", obj) == ["web", "Deployment/web", targets, "2", 10, 3, "15m"]


def test_hpa_v1_objects() -> None:
    v1: dict[str, Any] = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta("web", ago(hours=1)),
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 50,
        },
        "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 35},
    }
    assert cells("HorizontalPodAutoscaler", v1) == ["web", "Deployment/web", "cpu: 35%/50%", "1", 5, 2, "60m"]
    no_target = copy.deepcopy(v1)
    del no_target["spec"]["targetCPUUtilizationPercentage"]
    del no_target["status"]["currentCPUUtilizationPercentage"]
    assert cells("HorizontalPodAutoscaler", no_target)[2] == "cpu: <unknown>/80%"
    # A list item without apiVersion: the caller's version decides, then the shape.
    bare = {k: v for k, v in v1.items() if k != "apiVersion"}
    assert cells("HorizontalPodAutoscaler", bare, api_version="autoscaling/v1")[2] == "cpu: 35%/50%"
    assert cells("HorizontalPodAutoscaler", bare)[2] == "cpu: 35%/50%"


def test_hpa_minimal() -> None:
    assert cells("HorizontalPodAutoscaler", {"metadata": {"name": "h"}}) == [
        "h",
        "/",
        "cpu: <unknown>/80%",
        "1",
        0,
        0,
        "<unknown>",
    ]


# --- ages ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("created", "age"),
    [
        (None, "<unknown>"),
        ("", "<unknown>"),
        ("not a time", "<unknown>"),
        ("0001-01-01T00:00:00Z", "<unknown>"),
        (ago(seconds=0), "0s"),
        (ago(seconds=-1), "0s"),
        (ago(seconds=-5), "<invalid>"),
        (ago(seconds=119), "119s"),
        (ago(minutes=3, seconds=20), "3m20s"),
        (ago(days=2 * 365 + 100), "2y100d"),
        ("2024-05-01T13:00:00+02:00", "60m"),
        ("2024-05-01T11:59:58.5Z", "1s"),
        ("2024-05-01T11:00:00", "60m"),
    ],
)
def test_age_cell(created: str | None, age: str) -> None:
    assert cells("ConfigMap", {"metadata": meta("c", created)})[2] == age


def test_naive_now_is_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert row_cells({"metadata": meta("c", ago(minutes=7))}, naive, kind="ConfigMap")[2] == "7m"


def test_kind_from_object() -> None:
    obj = {"kind": "Namespace", "metadata": meta("dev", ago(minutes=1)), "status": {"phase": "Active"}}
    assert row_cells(obj, NOW) == ["dev", "Active", "60s"]


# --- Table bodies --------------------------------------------------------------------------------------


def test_to_table_metadata_rows() -> None:
    dep = deployment()
    dep["metadata"].update(labels={"app": "web"}, resourceVersion="41", annotations={"a": "b"})
    table = to_table("Deployment", [dep], NOW, list_resource_version="42")
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "42"}
    assert table["columnDefinitions"] == column_definitions("Deployment")
    assert table["rows"] == [
        {
            "cells": ["web", "2/3", 3, 2, "5m", "nginx,log", "nginx:1.25,busybox", "app=web"],
            "object": {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": dep["metadata"],
            },
        }
    ]
    json.dumps(table)


def test_to_table_include_object_modes() -> None:
    item = {
        "metadata": meta("cfg", ago(minutes=1)),
        "data": {"k": "v"},
    }  # list items may lack kind/apiVersion
    full = to_table(
        "ConfigMap", [item], NOW, list_resource_version="7", include_object="Object", api_version="v1"
    )
    assert full["rows"][0]["object"] == {**item, "kind": "ConfigMap", "apiVersion": "v1"}
    assert "kind" not in item  # inputs are never mutated
    whole = {"kind": "ConfigMap", "apiVersion": "v1", **item}
    assert (
        to_table("ConfigMap", [whole], NOW, list_resource_version="7", include_object="Object")["rows"][0][
            "object"
        ]
        is whole
    )
    none = to_table("ConfigMap", [item], NOW, list_resource_version="7", include_object="None")
    assert none["rows"] == [{"cells": ["cfg", 1, "60s"], "object": None}]
    with pytest.raises(ValueError, match="includeObject"):
        to_table("ConfigMap", [item], NOW, list_resource_version="7", include_object="Everything")


def test_to_table_continue_and_headers() -> None:
    page = to_table("Pod", [], NOW, list_resource_version="9", continue_token="tok")
    assert page["metadata"] == {"resourceVersion": "9", "continue": "tok"}
    assert page["rows"] == []
    assert (
        "continue" not in to_table("Pod", [], NOW, list_resource_version="9", continue_token="")["metadata"]
    )
    assert to_table("Pod", [], NOW, list_resource_version="")["metadata"] == {}
    # Watch events after the first: NoHeaders, which Go encodes as a null column list.
    event = to_table(
        "Pod", [pod({"phase": "Pending"})], NOW, list_resource_version="10", include_column_definitions=False
    )
    assert event["columnDefinitions"] is None
    assert len(event["rows"]) == 1


def test_to_table_pod_row_conditions() -> None:
    done = pod({"phase": "Succeeded", "containerStatuses": [terminated("Completed")]})
    failed = pod({"phase": "Failed", "containerStatuses": [terminated("Error", 1)]})
    live = pod({"phase": "Running", "containerStatuses": [running()]})
    rows = to_table("Pod", [done, failed, live], NOW, list_resource_version="1")["rows"]
    assert rows[0]["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert rows[1]["conditions"] == [
        {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
    ]
    assert "conditions" not in rows[2]
    assert list(rows[0]) == ["cells", "conditions", "object"]


def test_to_table_many_rows_share_nothing_wrong() -> None:
    pods = [
        pod(
            {"phase": "Running", "containerStatuses": [running(restarts=i % 3, finished=ago(minutes=i % 7))]},
            created=ago(minutes=i % 50),
        )
        for i in range(2000)
    ]
    for i, p in enumerate(pods):
        p["metadata"]["name"] = f"p{i}"
    rows = to_table("Pod", pods, NOW, list_resource_version="1")["rows"]
    assert len(rows) == 2000
    for i, row in enumerate(rows[:100]):
        assert row["cells"] == cells("Pod", pods[i])


# --- never raise on partial objects --------------------------------------------------------------------

KINDS = [k for k in EXPECTED_COLUMNS if k != "Widget"]

TEMPLATES: dict[str, dict[str, Any]] = {
    # Every branch of the pod printer has something to chew on: init containers, a sidecar, gates, deletion.
    "Pod": {
        "metadata": meta("p", ago(minutes=1), deletionTimestamp=ago(seconds=1)),
        "spec": {**init_spec(1, "s1"), "nodeName": "n", "readinessGates": [{"conditionType": "g"}]},
        "status": {
            "phase": "Running",
            "reason": "NodeLost",
            "podIP": "1.2.3.4",
            "podIPs": [{"ip": "1.2.3.4"}],
            "nominatedNodeName": "m",
            "conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "True"},
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                {"type": "g", "status": "True"},
            ],
            "initContainerStatuses": [
                {
                    "name": "i0",
                    "restartCount": 1,
                    "state": {"terminated": {"exitCode": 0}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=30)}},
                },
                {
                    "name": "s1",
                    "restartCount": 2,
                    "started": True,
                    "ready": True,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=20)}},
                },
                {
                    "name": "i9",
                    "state": {
                        "waiting": {"reason": "CrashLoopBackOff"},
                        "terminated": {"exitCode": 2, "signal": 9, "reason": "Error"},
                    },
                },
            ],
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": True,
                    "restartCount": 3,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=10)}},
                },
                {"name": "c2", "state": {"terminated": {"exitCode": 1, "signal": 15}}},
                {"name": "c3", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "c4", "state": {"waiting": {"reason": "ImagePullBackOff"}}},
            ],
        },
    },
    "Deployment": deployment(
        selector={
            "matchLabels": {"a": "b"},
            "matchExpressions": [{"key": "k", "operator": "In", "values": ["v"]}],
        }
    ),
    "ReplicaSet": {
        "metadata": meta("r", ago(hours=1)),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
        "status": {"replicas": 1, "readyReplicas": 1},
    },
    "Service": service(
        {
            "type": "LoadBalancer",
            "clusterIPs": ["1.1.1.1"],
            "externalIPs": ["2.2.2.2"],
            "ports": [{"port": 80, "nodePort": 30000, "protocol": "TCP"}],
            "selector": {"a": "b"},
        },
        {"loadBalancer": {"ingress": [{"ip": "3.3.3.3", "hostname": "h"}]}},
    ),
    "Endpoints": endpoints([{"addresses": [{"ip": "1.1.1.1"}], "ports": [{"port": 80}]}]),
    "ConfigMap": {"metadata": meta("c", ago(hours=1)), "data": {"a": "b"}, "binaryData": {"c": "AA=="}},
    "Secret": {"metadata": meta("s", ago(hours=1)), "type": "Opaque", "data": {"a": "Yg=="}},
    "Namespace": {"metadata": meta("n", ago(hours=1)), "status": {"phase": "Active"}},
    "Node": node(
        [{"type": "Ready", "status": "True"}], {"node-role.kubernetes.io/worker": ""}, unschedulable=True
    ),
    "Event": {
        "metadata": meta("e", ago(hours=1)),
        "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "f"},
        "reason": "R",
        "message": "M",
        "type": "Normal",
        "source": {"component": "c", "host": "h"},
        "firstTimestamp": ago(hours=1),
        "lastTimestamp": ago(minutes=1),
        "count": 2,
        "eventTime": "2024-05-01T11:00:00.000000Z",
        "series": {"count": 3, "lastObservedTime": ago(seconds=5)},
        "reportingComponent": "rc",
        "reportingInstance": "ri",
    },
    "Job": job(
        {
            "succeeded": 1,
            "startTime": ago(minutes=2),
            "completionTime": ago(minutes=1),
            "conditions": [COMPLETE],
        },
        deletionTimestamp=ago(seconds=1),
    ),
    "CronJob": {
        "metadata": meta("cj", ago(hours=1)),
        "spec": {
            "schedule": "@daily",
            "timeZone": "UTC",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "selector": {"matchLabels": {"a": "b"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}},
                }
            },
        },
        "status": {"active": [{"name": "x"}], "lastScheduleTime": ago(minutes=1)},
    },
    "HorizontalPodAutoscaler": hpa_v2(
        [
            cpu_util(80),
            MEM_AVG,
            PODS_QPS,
            {"type": "External", "external": {"target": {"value": "1"}}},
            {"type": "Object", "object": {"target": {"averageValue": "1"}}},
            {
                "type": "ContainerResource",
                "containerResource": {"name": "cpu", "target": {"averageValue": "1"}},
            },
        ],
        [
            cpu_now(1),
            cpu_now(2),
            {"type": "Pods", "pods": {"current": {}}},
            {"type": "External", "external": {"current": {"value": "1"}}},
            {"type": "Object", "object": {"current": {"averageValue": "1"}}},
            {"type": "ContainerResource", "containerResource": {"current": {}}},
        ],
    ),
    "ServiceAccount": {"metadata": meta("sa", ago(hours=1)), "secrets": [{"name": "t"}]},
    "Lease": {"metadata": meta("l", ago(hours=1)), "spec": {"holderIdentity": "me"}},
    "EndpointSlice": endpoint_slice(
        [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "x"}],
        [addresses("10.0.0.1", "10.0.0.2"), addresses("10.0.0.3")],
    ),
    "Ingress": ingress(
        {"ingressClassName": "c", "rules": [rule("a"), rule()], "tls": [{"hosts": ["a"]}]},
        {"loadBalancer": {"ingress": [{"ip": "1.1.1.1"}, {"hostname": "h"}]}},
    ),
    "IngressClass": {
        "metadata": meta("ic", ago(hours=1)),
        "spec": {"controller": "c", "parameters": {"apiGroup": "g", "kind": "K", "name": "n"}},
    },
}

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.just("2024-05-01T11:00:00Z"),
    st.just({}),
    st.just([]),
)
ANY_JSON = st.recursive(
    JSON_LEAF,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=8), kids, max_size=3)
    ),
    max_leaves=12,
)


def partial(value: Any) -> st.SearchStrategy[Any]:
    """Objects shaped like ``value`` with any keys dropped and, now and then, a leaf of the wrong type."""
    if isinstance(value, dict):
        return st.fixed_dictionaries({}, optional={k: partial(v) for k, v in value.items()})
    if isinstance(value, list):
        if not value:
            return st.one_of(st.just([]), JSON_LEAF)
        return st.lists(st.one_of(*[partial(v) for v in value]), max_size=len(value) + 1)
    return st.one_of(st.just(value), st.just(value), JSON_LEAF)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_partial_objects_never_raise(kind: str, data: st.DataObject) -> None:
    obj = data.draw(partial(TEMPLATES[kind]))
    version = data.draw(st.sampled_from(["", "autoscaling/v1", "autoscaling/v2", "v1"]))
    row = row_cells(obj, NOW, kind=kind, api_version=version)
    assert len(row) == len(column_definitions(kind))
    assert all(type(c) in (str, int) for c in row)
    table = to_table(
        kind, [obj], NOW, list_resource_version="1", include_object="Object", api_version=version
    )
    assert table["rows"][0]["cells"] == row
    json.dumps(table)


@pytest.mark.parametrize("kind", [*KINDS, "Widget"])
@settings(max_examples=100, deadline=None)
@given(
    obj=st.dictionaries(
        st.sampled_from(
            [
                "metadata",
                "spec",
                "status",
                "data",
                "subsets",
                "involvedObject",
                "series",
                "source",
                "type",
                "count",
                "apiVersion",
                "secrets",
                "addressType",
                "endpoints",
                "ports",
            ]
        ),
        ANY_JSON,
        max_size=6,
    )
)
def test_arbitrary_json_never_raises(kind: str, obj: dict[str, Any]) -> None:
    row = row_cells(obj, NOW, kind=kind)
    assert len(row) == len(column_definitions(kind))
    assert all(type(c) in (str, int) for c in row)


def test_templates_render_fully() -> None:
    """The property-test templates are themselves valid rows (so pruning starts from realistic objects)."""
    assert cells("Pod", TEMPLATES["Pod"])[2] == "Unknown"
    assert cells("HorizontalPodAutoscaler", TEMPLATES["HorizontalPodAutoscaler"])[2] == (
        "cpu: 1%/80%, memory: 120m/200Mi + 4 more..."
    )
    for kind in KINDS:
        assert len(cells(kind, TEMPLATES[kind])) == len(column_definitions(kind))
