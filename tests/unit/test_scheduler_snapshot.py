"""Snapshot: typed views of pod and node objects, effective requests, placement and immutability."""

from __future__ import annotations

from typing import Any

import pytest

from corral.api.quantity import QuantityError
from corral.scheduler.snapshot import (
    DEFAULT_MEMORY_REQUEST,
    DEFAULT_MILLI_CPU_REQUEST,
    HostPort,
    LabelSelector,
    NodeInfo,
    NodeSelectorRequirement,
    PodInfo,
    Resources,
    Snapshot,
    Taint,
    Toleration,
    placement,
    pod_requests,
)

JSON = dict[str, Any]


def node(name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110", **extra: Any) -> JSON:
    obj: JSON = {
        "metadata": {"name": name, "labels": extra.pop("labels", {})},
        "spec": extra.pop("spec", {}),
        "status": {
            "conditions": [{"type": "Ready", "status": extra.pop("ready", "True")}],
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
        },
    }
    return obj


def pod(
    name: str, node_name: str = "", cpu: str | None = None, memory: str | None = None, **extra: Any
) -> JSON:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "labels": extra.pop("labels", {}),
        },
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "c", "resources": {"requests": requests}}],
            **extra.pop("spec", {}),
        },
        "status": extra.pop("status", {"phase": "Pending"}),
    }


def test_node_view() -> None:
    obj = node(
        "n1",
        cpu="2500m",
        memory="1Gi",
        pods="10",
        labels={"zone": "a"},
        spec={"unschedulable": True, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
    )
    info = NodeInfo.from_object(obj)
    assert info.name == "n1"
    assert info.allocatable == Resources(2500, 1024**3, 10)
    assert info.labels == {"zone": "a"}
    assert info.unschedulable
    assert info.taints == (Taint("k", "v", "NoSchedule"),)
    assert info.ready == "True"


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ([], "Unknown"),
        ([{"type": "Ready", "status": "False"}], "False"),
        ([{"type": "Other", "status": "True"}], "Unknown"),
    ],
)
def test_node_ready_state(conditions: list[JSON], ready: str) -> None:
    assert (
        NodeInfo.from_object({"metadata": {"name": "n"}, "status": {"conditions": conditions}}).ready == ready
    )


def test_node_capacity_fallback_and_bad_quantities() -> None:
    obj = {
        "metadata": {"name": "n"},
        "status": {"capacity": {"cpu": "2", "memory": "1Gi", "pods": "5"}, "allocatable": {"memory": "oops"}},
    }
    assert NodeInfo.from_object(obj).allocatable == Resources(2000, 0, 5)


def test_pod_view() -> None:
    obj = pod(
        "p",
        cpu="250m",
        memory="64Mi",
        labels={"app": "web"},
        spec={
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "z", "operator": "In", "values": ["a"]}]}
                        ]
                    }
                }
            },
        },
    )
    obj["metadata"]["ownerReferences"] = [
        {"uid": "other", "controller": False},
        {"uid": "rs-1", "controller": True},
    ]
    obj["spec"]["containers"][0]["ports"] = [
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
        {"containerPort": 9000},
    ]
    info = PodInfo.from_object(obj)
    assert info.key == "default/p"
    assert info.owner_uid == "rs-1"
    assert info.requests == Resources(250, 64 * 1024**2, 1)
    assert info.node_selector == {"disk": "ssd"}
    assert info.tolerations == (Toleration("k", "Exists", "", "NoSchedule"),)
    assert info.required_affinity is not None
    assert info.required_affinity[0].match_expressions == (NodeSelectorRequirement("z", "In", ("a",)),)
    assert info.host_ports == (HostPort("0.0.0.0", "TCP", 8080), HostPort("127.0.0.1", "UDP", 53))


def test_pod_view_strictness() -> None:
    bad = pod("p", cpu="lots")
    with pytest.raises(QuantityError):
        PodInfo.from_object(bad)
    assert PodInfo.from_object(bad, strict=False).requests == Resources(0, 0, 1)


def _c(cpu: int, memory: int = 0, restart: str | None = None) -> JSON:
    c: JSON = {"resources": {"requests": {"cpu": f"{cpu}m", "memory": str(memory)}}}
    if restart:
        c["restartPolicy"] = restart
    return c


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"containers": []}, Resources(0, 0, 1)),
        ({"containers": [_c(100, 10), _c(200, 20)]}, Resources(300, 30, 1)),
        # an init container runs alone: the pod needs the larger of it and the app containers
        ({"containers": [_c(100)], "initContainers": [_c(500)]}, Resources(500, 0, 1)),
        ({"containers": [_c(600)], "initContainers": [_c(500)]}, Resources(600, 0, 1)),
        # a sidecar runs alongside everything started after it
        (
            {"containers": [_c(100)], "initContainers": [_c(50, restart="Always"), _c(500)]},
            Resources(550, 0, 1),
        ),
        ({"containers": [_c(100)], "initContainers": [_c(50, restart="Always")]}, Resources(150, 0, 1)),
        ({"containers": [_c(100, 5)], "overhead": {"cpu": "10m", "memory": "1"}}, Resources(110, 6, 1)),
    ],
)
def test_pod_requests(spec: JSON, expected: Resources) -> None:
    assert pod_requests(spec) == expected


def test_non_zero_requests_fill_defaults_per_container() -> None:
    spec = {"containers": [{"name": "a"}, _c(300, 0)]}
    assert pod_requests(spec, non_zero=True) == Resources(
        DEFAULT_MILLI_CPU_REQUEST + 300, 2 * DEFAULT_MEMORY_REQUEST, 1
    )


def test_build_sums_assigned_pods_and_skips_the_rest() -> None:
    snap = Snapshot.build(
        [node("b"), node("a")],
        [
            pod("p1", "a", cpu="100m", memory="1Mi"),
            pod("p2", "a", cpu="200m"),
            pod("p3", "b", cpu="1"),
            pod("done", "a", cpu="1", status={"phase": "Succeeded"}),
            pod("failed", "a", cpu="1", status={"phase": "Failed"}),
            pod("pending", "", cpu="1"),
            pod("elsewhere", "ghost", cpu="1"),
        ],
    )
    assert [n.name for n in snap.nodes] == ["a", "b"]
    a, b = snap.node("a"), snap.node("b")
    assert a is not None and b is not None
    assert a.requested == Resources(300, 1024**2, 2)
    assert [p.name for p in a.pods] == ["p1", "p2"]
    assert b.requested == Resources(1000, 0, 1)
    assert snap.node("ghost") is None


def test_build_counts_assumed_bindings() -> None:
    snap = Snapshot.build([node("a")], [pod("p", "", cpu="1")], assumed={"uid-p": "a"})
    a = snap.node("a")
    assert a is not None and a.requested.milli_cpu == 1000


def test_placement() -> None:
    assert placement(pod("p", "n")) == "n"
    assert placement(pod("p")) == ""
    assert placement(pod("p"), {"uid-p": "m"}) == "m"
    assert placement(pod("p", "n", status={"phase": "Succeeded"})) == ""
    deleting = pod("p", "n")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert placement(deleting) == "n", "a pod being deleted still holds its resources"


def test_with_pod_returns_a_new_snapshot() -> None:
    snap = Snapshot.build([node("a"), node("b")], [])
    p = PodInfo("default", "p", requests=Resources(100, 10, 1), host_ports=(HostPort("0.0.0.0", "TCP", 80),))
    after = snap.with_pod(p, "a")
    assert snap.node("a") is not None and snap.node("a").pods == ()  # type: ignore[union-attr]
    a = after.node("a")
    assert a is not None
    assert a.pods == (p,)
    assert a.requested == Resources(100, 10, 1)
    assert a.used_ports == (HostPort("0.0.0.0", "TCP", 80),)
    assert after.with_pod(p, "ghost") is after


def test_pod_view_of_affinity_and_spread() -> None:
    obj = pod(
        "p",
        labels={"app": "web", "rev": "7"},
        spec={
            "affinity": {
                "nodeAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 30,
                            "preference": {"matchExpressions": [{"key": "d", "operator": "Exists"}]},
                        }
                    ]
                },
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "db"}}}
                    ],
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 5,
                            "podAffinityTerm": {
                                "topologyKey": "host",
                                "labelSelector": {},
                                "namespaces": ["a", "b"],
                            },
                        }
                    ],
                },
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "topologyKey": "host",
                            "labelSelector": {"matchLabels": {"app": "web"}},
                            "namespaceSelector": {},
                        }
                    ]
                },
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 2,
                    "topologyKey": "zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app": "web"}},
                    "matchLabelKeys": ["rev", "absent"],
                    "minDomains": 3,
                    "nodeTaintsPolicy": "Honor",
                }
            ],
        },
    )
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    info = PodInfo.from_object(obj)
    assert info.terminating and info.has_pod_affinity
    (preferred,) = info.preferred_node_affinity
    assert preferred.weight == 30 and preferred.term.match_expressions == (
        NodeSelectorRequirement("d", "Exists"),
    )
    (required,) = info.affinity_terms
    assert required.topology_key == "zone"
    assert required.namespaces == frozenset({"default"})  # neither namespaces nor selector: the pod's own
    assert required.selector == LabelSelector((("app", "db"),))
    (weighted,) = info.preferred_affinity_terms
    assert weighted.weight == 5 and weighted.term.namespaces == frozenset({"a", "b"})
    assert weighted.term.selector == LabelSelector()  # {} matches every pod
    (anti,) = info.anti_affinity_terms
    assert anti.namespaces == frozenset() and anti.namespace_selector == LabelSelector()
    (c,) = info.spread_constraints
    assert (c.max_skew, c.topology_key, c.hard, c.min_domains) == (2, "zone", False, 3)
    assert (c.node_affinity_policy, c.node_taints_policy) == ("Honor", "Honor")
    assert c.selector == LabelSelector((("app", "web"), ("rev", "7")))  # matchLabelKeys merged


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (LabelSelector(), {}, True),
        (LabelSelector((("a", "1"),)), {"a": "1", "b": "2"}, True),
        (LabelSelector((("a", "1"),)), {"a": "2"}, False),
        (
            LabelSelector(match_expressions=(NodeSelectorRequirement("a", "In", ("1", "2")),)),
            {"a": "2"},
            True,
        ),
        (LabelSelector(match_expressions=(NodeSelectorRequirement("a", "NotIn", ("1",)),)), {}, True),
        (
            LabelSelector(match_expressions=(NodeSelectorRequirement("a", "NotIn", ("1",)),)),
            {"a": "1"},
            False,
        ),
        (LabelSelector(match_expressions=(NodeSelectorRequirement("a", "Exists"),)), {"a": ""}, True),
        (LabelSelector(match_expressions=(NodeSelectorRequirement("a", "DoesNotExist"),)), {"a": ""}, False),
        (LabelSelector(match_expressions=(NodeSelectorRequirement("a", "Gt", ("1",)),)), {"a": "5"}, False),
    ],
)
def test_label_selector(selector: LabelSelector, labels: dict[str, str], expected: bool) -> None:
    assert selector.matches(labels) is expected
    assert LabelSelector.parse(None) is None


def _labelled(name: str, labels: dict[str, str], namespace: str = "ns", terminating: bool = False) -> PodInfo:
    return PodInfo(namespace, name, uid=name, labels=labels, terminating=terminating)


@pytest.mark.parametrize("carry", ["place", "with_pod"])
def test_a_new_one_label_selector_counts_from_the_index_as_a_scan_would(carry: str) -> None:
    """Selectors of one label are first counted from a label index that placements carry forward; the
    counts must be what asking every pod gives, whichever way the placements were carried."""
    placed = [
        ("n1", _labelled("a", {"app": "web"})),
        ("n1", _labelled("b", {"app": "web"}, terminating=True)),  # spreading leaves terminating pods out
        ("n2", _labelled("c", {"app": "web"}, namespace="other")),
        ("n2", _labelled("d", {"app": "db", "tier": "x"})),
    ]
    snap = Snapshot.assemble([NodeInfo(n) for n in ("n1", "n2", "n3")], placed)
    snap.matching_counts("first", lambda p: False, label=("ns", "app", "none"))  # builds the index
    older = snap
    for node_name, new in (("n3", _labelled("e", {"app": "web"})), ("n2", _labelled("f", {"app": "db"}))):
        snap = snap.place(new, node_name) if carry == "place" else snap.with_pod(new, node_name)
    for label in (("ns", "app", "web"), ("ns", "app", "db"), ("other", "app", "web"), ("ns", "tier", "x")):
        ns, key, value = label

        def matcher(p: PodInfo, ns: str = ns, key: str = key, value: str = value) -> bool:
            return p.namespace == ns and p.labels.get(key) == value

        indexed = list(snap.matching_counts(("indexed", label), matcher, label=label))
        scanned = list(snap.matching_counts(("scanned", label), matcher))
        assert indexed == scanned, label
        if carry == "with_pod":  # the older snapshot still counts what it held
            assert list(older.matching_counts(("old", label), matcher, label=label)) == list(
                older.matching_counts(("old-scan", label), matcher)
            )
    assert list(snap.matching_counts("web", lambda p: False, label=("ns", "app", "web"))) == [1, 0, 1]
