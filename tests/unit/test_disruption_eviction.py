"""The eviction subresource against the disruption controller, in process (memory store, fake clock).

Pods here are never bound to a node, so a granted eviction deletes them at once; tests write pod status
themselves (Running + Ready) as a node would.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from corral.apiserver import status as st
from corral.apiserver.eviction import check_and_decrement, decode_eviction, evict
from corral.apiserver.rest import WriteOptions
from corral.controllers.disruption import DisruptionController
from corral.testing.controllers import InProcessCluster, rt
from corral.util.clock import rfc3339

JSON = dict[str, Any]
PODS, PDBS = rt("pods"), rt("poddisruptionbudgets.policy")
NS = "default"


def eviction_body(name: str, api_version: str = "policy/v1", **extra: Any) -> JSON:
    return {
        "apiVersion": api_version,
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": NS},
        **extra,
    }


@pytest.fixture
async def cluster() -> AsyncIterator[InProcessCluster]:
    async with InProcessCluster(DisruptionController) as c:
        yield c


async def make_pod(
    c: InProcessCluster, name: str, *, app: str = "web", phase: str = "Running", ready: bool = True
) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "x", "command": ["sleep", "9"]}]},
    }
    created = await c.transport.create(PODS, NS, body)
    created = copy.deepcopy(created)
    created["status"] = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    await c.transport.update(PODS, NS, name, created, subresource="status")


async def make_pdb(c: InProcessCluster, name: str, spec: JSON, app: str = "web") -> None:
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
    }
    await c.transport.create(PDBS, NS, body)


async def budget_status(c: InProcessCluster, name: str) -> JSON:
    found = await c.get("poddisruptionbudgets.policy", NS, name)
    assert found is not None
    status: JSON = found["status"]
    return status


async def wait_allowed(c: InProcessCluster, name: str, allowed: int) -> JSON:
    async def check() -> JSON | None:
        status = await budget_status(c, name)
        return (
            status
            if status.get("observedGeneration") == 1 and status["disruptionsAllowed"] == allowed
            else None
        )

    result: JSON = await c.wait_for(check, what=f"{name} to allow {allowed}")
    return result


async def test_budget_grants_one_then_refuses_with_429(cluster: InProcessCluster) -> None:
    for i in range(3):
        await make_pod(cluster, f"web-{i}")
    await make_pdb(cluster, "web", {"minAvailable": 2})
    status = await wait_allowed(cluster, "web", 1)
    assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"]) == (3, 2, 3)

    code, body, _ = await evict(cluster.api, NS, "web-0", eviction_body("web-0"), WriteOptions())
    assert (code, body) == (
        201,
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201},
    )
    assert await cluster.get("pods", NS, "web-0") is None

    with pytest.raises(st.ApiError) as refused:
        await evict(cluster.api, NS, "web-1", eviction_body("web-1"), WriteOptions())
    # The controller may or may not have seen web-0 go yet: either way the budget is spent.
    assert refused.value.code == 429
    assert (
        refused.value.body()
        == orjson.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "reason": "TooManyRequests",
                "details": {
                    "causes": [
                        {
                            "reason": "DisruptionBudget",
                            "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
                        }
                    ]
                },
                "code": 429,
            }
        )
        + b"\n"
    )
    assert await cluster.get("pods", NS, "web-1") is not None

    async def settled() -> JSON | None:
        status = await budget_status(cluster, "web")
        return status if "disruptedPods" not in status else None  # web-0 is gone: entry dropped

    status = await cluster.wait_for(settled, what="the controller to drop web-0")
    assert (status["currentHealthy"], status["disruptionsAllowed"]) == (2, 0)


async def test_concurrent_evictions_spend_a_budget_once(cluster: InProcessCluster) -> None:
    for i in range(3):
        await make_pod(cluster, f"web-{i}")
    await make_pdb(cluster, "web", {"minAvailable": 2})
    await wait_allowed(cluster, "web", 1)
    results = await asyncio.gather(
        *(evict(cluster.api, NS, f"web-{i}", eviction_body(f"web-{i}"), WriteOptions()) for i in range(3)),
        return_exceptions=True,
    )
    granted = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, st.ApiError)]
    assert len(granted) == 1 and len(refused) == 2
    assert {r.code for r in refused} == {429}
    assert len(await cluster.list("pods", NS)) == 2


async def test_pods_without_budget_or_not_running_are_deleted(cluster: InProcessCluster) -> None:
    await make_pod(cluster, "other", app="other")
    await make_pod(cluster, "starting", phase="Pending", ready=False)
    await make_pod(cluster, "web-0")
    await make_pdb(cluster, "web", {"minAvailable": 5})
    await wait_allowed(cluster, "web", 0)
    for name in ("other", "starting"):
        code, _, _ = await evict(cluster.api, NS, name, eviction_body(name), WriteOptions())
        assert code == 201
        assert await cluster.get("pods", NS, name) is None
    with pytest.raises(st.ApiError) as refused:
        await evict(cluster.api, NS, "web-0", eviction_body("web-0"), WriteOptions())
    assert (
        refused.value.causes[0].message
        == "The disruption budget web needs 5 healthy pods and has 1 currently"
    )


async def test_an_unready_pod_goes_when_the_application_is_healthy(cluster: InProcessCluster) -> None:
    for i in range(2):
        await make_pod(cluster, f"web-{i}")
    await make_pod(cluster, "web-sick", ready=False)
    await make_pdb(cluster, "web", {"minAvailable": 2})
    await wait_allowed(cluster, "web", 0)  # 2 healthy of 2 needed: nothing to spend
    code, _, _ = await evict(cluster.api, NS, "web-sick", eviction_body("web-sick"), WriteOptions())
    assert code == 201 and await cluster.get("pods", NS, "web-sick") is None
    assert "disruptedPods" not in await budget_status(cluster, "web")


async def test_two_budgets_are_refused_with_500(cluster: InProcessCluster) -> None:
    await make_pod(cluster, "web-0")
    await make_pdb(cluster, "a", {"minAvailable": 0})
    await make_pdb(cluster, "b", {"maxUnavailable": 1})
    code, body, _ = await evict(cluster.api, NS, "web-0", eviction_body("web-0"), WriteOptions())
    assert code == 500
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        "code": 500,
    }
    assert await cluster.get("pods", NS, "web-0") is not None


async def test_dry_run_changes_nothing(cluster: InProcessCluster) -> None:
    for i in range(3):
        await make_pod(cluster, f"web-{i}")
    await make_pdb(cluster, "web", {"minAvailable": 2})
    before = await wait_allowed(cluster, "web", 1)
    code, _, _ = await evict(cluster.api, NS, "web-0", eviction_body("web-0"), WriteOptions(dry_run=True))
    assert code == 201
    assert await cluster.get("pods", NS, "web-0") is not None
    assert await budget_status(cluster, "web") == before


async def test_missing_pod_is_404(cluster: InProcessCluster) -> None:
    with pytest.raises(st.ApiError) as missing:
        await evict(cluster.api, NS, "ghost", eviction_body("ghost"), WriteOptions())
    assert (missing.value.code, missing.value.message) == (404, 'pods "ghost" not found')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (eviction_body("other"), "name in URL does not match name in Eviction object"),
        (
            {"kind": "Eviction", "apiVersion": "policy/v1"},
            "name in URL does not match name in Eviction object",
        ),
        (eviction_body("p", api_version="apps/v1"), "the API version in the data (apps/v1) is not accepted"),
        ({**eviction_body("p"), "kind": "Pod"}, 'no kind "Pod" is registered'),
        (["not", "an", "object"], "expected a JSON object"),
        (eviction_body("p", deleteOptions={"gracePeriodSeconds": "soon"}), "cannot be handled as a Eviction"),
    ],
)
def test_bad_eviction_bodies(body: Any, message: str) -> None:
    with pytest.raises(st.ApiError) as bad:
        decode_eviction(body, "p", WriteOptions())
    assert bad.value.code == 400 and message in bad.value.message


def test_eviction_body_versions_and_delete_options() -> None:
    opts, warnings = decode_eviction(
        eviction_body(
            "p", api_version="policy/v1beta1", deleteOptions={"gracePeriodSeconds": 3, "dryRun": ["All"]}
        ),
        "p",
        WriteOptions(),
    )
    assert (opts.grace_period_seconds, opts.dry_run, warnings) == (3, True, [])
    _, warnings = decode_eviction({**eviction_body("p"), "extra": 1}, "p", WriteOptions())
    assert warnings == ['unknown field "extra"']
    with pytest.raises(st.ApiError, match='strict decoding error: unknown field "extra"'):
        decode_eviction({**eviction_body("p"), "extra": 1}, "p", WriteOptions(field_validation="Strict"))


def _budget(**status: Any) -> JSON:
    return {
        "metadata": {"name": "web", "namespace": NS, "generation": 2},
        "spec": {"minAvailable": 2},
        "status": {
            "observedGeneration": 2,
            "currentHealthy": 3,
            "desiredHealthy": 2,
            "expectedPods": 3,
            **status,
        },
    }


def test_check_and_decrement() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, tzinfo=UTC)
    updated = check_and_decrement(_budget(disruptionsAllowed=1, conditions=[]), "web-0", now, dry_run=False)
    assert updated["status"]["disruptionsAllowed"] == 0
    assert updated["status"]["disruptedPods"] == {"web-0": rfc3339(now)}
    assert updated["status"]["conditions"][0]["reason"] == "InsufficientPods"
    dry = check_and_decrement(_budget(disruptionsAllowed=2), "web-0", now, dry_run=True)
    assert dry["status"]["disruptionsAllowed"] == 1 and "disruptedPods" not in dry["status"]
    with pytest.raises(st.ApiError) as stale:
        check_and_decrement(_budget(disruptionsAllowed=1, observedGeneration=1), "web-0", now, dry_run=False)
    assert stale.value.code == 429 and stale.value.retry_after == 10
    assert (
        stale.value.causes[0].message == "The disruption budget web is still being processed by the server."
    )
    with pytest.raises(st.ApiError) as negative:
        check_and_decrement(_budget(disruptionsAllowed=-1), "web-0", now, dry_run=False)
    assert negative.value.code == 403
    assert (
        negative.value.message
        == 'poddisruptionbudget.policy "web" is forbidden: pdb disruptions allowed is negative'
    )


async def _create(c: InProcessCluster, resource: str, body: JSON) -> JSON:
    created: JSON = await c.transport.create(rt(resource), NS, body)
    return created


def _template(app: str) -> JSON:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "x", "command": ["sleep", "9"]}]},
    }


async def test_percentages_count_the_deployments_scale(cluster: InProcessCluster) -> None:
    deploy = await _create(
        cluster,
        "deployments.apps",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": _template("web"),
            },
        },
    )
    owner = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "uid": deploy["metadata"]["uid"],
        "controller": True,
    }
    rs = await _create(
        cluster,
        "replicasets.apps",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "ownerReferences": [owner]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": _template("web"),
            },
        },
    )
    rs_ref = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-1",
        "uid": rs["metadata"]["uid"],
        "controller": True,
    }
    for i in range(2):
        await make_pod(cluster, f"web-{i}")
        pod = copy.deepcopy(await cluster.transport.get(PODS, NS, f"web-{i}"))
        pod["metadata"]["ownerReferences"] = [rs_ref]
        await cluster.transport.update(PODS, NS, f"web-{i}", pod)
    await make_pdb(cluster, "web", {"maxUnavailable": "50%"})

    async def counted() -> JSON | None:
        status = await budget_status(cluster, "web")
        return status if status.get("expectedPods") == 4 else None

    status = await cluster.wait_for(counted, what="the deployment's scale to count")
    # 4 expected (the Deployment's replicas, not the 2 pods), at most 2 unavailable: 2 must stay healthy.
    assert (status["desiredHealthy"], status["currentHealthy"], status["disruptionsAllowed"]) == (2, 2, 0)


async def test_pods_of_a_job_fail_safe(cluster: InProcessCluster) -> None:
    job_ref = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    await make_pod(cluster, "job-0", app="batch")
    pod = copy.deepcopy(await cluster.transport.get(PODS, NS, "job-0"))
    pod["metadata"]["ownerReferences"] = [job_ref]
    await cluster.transport.update(PODS, NS, "job-0", pod)
    await make_pdb(cluster, "batch", {"maxUnavailable": 1}, app="batch")

    async def failed() -> JSON | None:
        status = await budget_status(cluster, "batch")
        conditions = status.get("conditions") or []
        return conditions[0] if conditions else None

    condition = await cluster.wait_for(failed, what="the fail-safe condition")
    assert (condition["status"], condition["reason"]) == ("False", "SyncFailed")
    assert condition["message"] == "jobs.batch does not implement the scale subresource"
    events = await cluster.list("events", NS)
    assert any(e["reason"] == "CalculateExpectedPodCountFailed" for e in events)
