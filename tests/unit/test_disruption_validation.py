"""PodDisruptionBudget as an API kind: validation messages, server-set status, Table row, discovery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from corral.api import printing
from corral.api.resources import REGISTRY
from corral.api.validation import validate_object
from corral.apiserver import status as st
from corral.apiserver.discovery import aggregated, api_resource_list
from corral.apiserver.rest import ResourceAPI
from corral.store import MemoryStore
from corral.testing.clock import FakeClock

JSON = dict[str, Any]
PDBS = REGISTRY.require("pdb")
SELECTOR = {"matchLabels": {"app": "web"}}


def messages(spec: JSON, status: JSON | None = None) -> list[str]:
    obj: JSON = {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return [f"{e.path}: {e.message()}" for e in validate_object("PodDisruptionBudget", obj, True)]


@pytest.mark.parametrize(
    "spec",
    [
        {"minAvailable": 2, "selector": SELECTOR},
        {"minAvailable": "50%", "selector": SELECTOR},
        {"maxUnavailable": 0, "selector": SELECTOR},
        {"maxUnavailable": "100%", "selector": {}},
        {"selector": SELECTOR},  # neither: upstream accepts it (nothing may be disrupted)
        {"minAvailable": 1, "selector": SELECTOR, "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    ],
)
def test_valid_budgets(spec: JSON) -> None:
    assert messages(spec) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"minAvailable": 1, "maxUnavailable": 1},
            'spec: Invalid value: {"minAvailable": 1, "maxUnavailable": 1}: '
            "minAvailable and maxUnavailable cannot be both set",
        ),
        ({"minAvailable": -1}, "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"),
        (
            {"maxUnavailable": "50"},
            'spec.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"50"}: '
            "a valid percent string must be a numeric string followed by an ending '%' "
            "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        ),
        ({"minAvailable": "101%"}, 'spec.minAvailable: Invalid value: "101%": must not be greater than 100%'),
        (
            {"unhealthyPodEvictionPolicy": "Sometimes"},
            'spec.unhealthyPodEvictionPolicy: Unsupported value: "Sometimes": '
            'supported values: "AlwaysAllow", "IfHealthyBudget"',
        ),
        (
            {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
            "spec.selector.matchExpressions[0].values: Required value: "
            "must be specified when `operator` is 'In' or 'NotIn'",
        ),
    ],
)
def test_invalid_budgets(spec: JSON, expected: str) -> None:
    assert expected in messages(spec)


def test_negative_status_counts_are_refused() -> None:
    assert messages({"selector": SELECTOR}, {"disruptionsAllowed": -1}) == [
        "status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0"
    ]


async def test_create_resets_status_and_counts_generations() -> None:
    api = ResourceAPI(MemoryStore(), FakeClock())
    from corral.server import bootstrap

    await bootstrap(api)
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": SELECTOR},
        "status": {"disruptionsAllowed": 7, "currentHealthy": 7, "desiredHealthy": 0, "expectedPods": 7},
    }
    created = (await api.create(PDBS, "default", body)).obj
    assert created["metadata"]["generation"] == 1
    assert created["status"] == {
        "disruptionsAllowed": 0,
        "currentHealthy": 0,
        "desiredHealthy": 0,
        "expectedPods": 0,
    }
    changed = {**created, "spec": {"minAvailable": 1, "selector": SELECTOR}}
    assert (await api.update(PDBS, "default", "web", changed)).obj["metadata"]["generation"] == 2
    with pytest.raises(st.ApiError) as bad:
        await api.create(
            PDBS,
            "default",
            {**body, "metadata": {"name": "x"}, "spec": {"minAvailable": "1", "maxUnavailable": 1}},
        )
    assert bad.value.code == 422
    assert bad.value.message.startswith('PodDisruptionBudget.policy "x" is invalid: [spec: Invalid value:')


def test_table_row_as_kubectl_prints() -> None:
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    objects = [
        {
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"minAvailable": 2},
            "status": {"disruptionsAllowed": 1},
        },
        {
            "metadata": {"name": "api", "creationTimestamp": "2026-01-01T00:05:00Z"},
            "spec": {"maxUnavailable": "25%"},
            "status": {},
        },
    ]
    table = printing.to_table("PodDisruptionBudget", objects, now, list_resource_version="9")
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Min Available",
        "Max Unavailable",
        "Allowed Disruptions",
        "Age",
    ]
    assert [row["cells"] for row in table["rows"]] == [
        ["web", "2", "N/A", 1, "10m"],
        ["api", "N/A", "25%", 0, "5m"],
    ]


def test_discovery_serves_policy_v1() -> None:
    groups = {g["metadata"]["name"]: g for g in aggregated(core=False)["items"]}
    resources = groups["policy"]["versions"][0]["resources"]
    assert [r["resource"] for r in resources] == ["poddisruptionbudgets"]
    assert resources[0]["shortNames"] == ["pdb"]
    legacy = api_resource_list("", "v1")
    assert legacy is not None
    eviction = next(r for r in legacy["resources"] if r["name"] == "pods/eviction")
    assert (eviction["group"], eviction["version"], eviction["kind"], eviction["verbs"]) == (
        "policy",
        "v1",
        "Eviction",
        ["create"],
    )
