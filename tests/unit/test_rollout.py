"""Table tests of the pure rollout logic: hashing, fenceposts, one Deployment sync at a time, conditions,
revisions and rollback, proportional scaling, clean-up, Recreate, claiming; and of the ReplicaSet plan."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.api.resources import REGISTRY
from corral.api.strategy import prepare_for_update
from corral.controllers.replicaset import (
    Expectations,
    next_availability_check,
    plan_replica_set,
    pod_from_template,
    pods_to_delete,
    replica_set_status,
)
from corral.controllers.rollout import (
    CHANGE_CAUSE,
    DESIRED_REPLICAS,
    HASH_LABEL,
    LAST_APPLIED,
    MAX_REPLICAS,
    REVISION,
    REVISION_HISTORY,
    PodCounts,
    equal_ignore_hash,
    is_pod_available,
    max_surge,
    max_unavailable,
    plan_deployment,
    resolve_fenceposts,
    safe_encode,
    scaled_value,
    seconds_until_available,
    template_hash,
)
from corral.testing.clock import FakeClock
from corral.util.clock import rfc3339

JSON = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def template(image: str = "web:1", **labels: str) -> JSON:
    return {
        "metadata": {"labels": {"app": "web", **labels}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }


def deployment(
    replicas: int = 4,
    image: str = "web:1",
    *,
    surge: Any = "25%",
    unavailable: Any = "25%",
    strategy: str = "RollingUpdate",
    generation: int = 1,
    status: JSON | None = None,
    **spec: Any,
) -> JSON:
    strat: JSON = {"type": strategy}
    if strategy == "RollingUpdate":
        strat["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": generation},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(image),
            "strategy": strat,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            **spec,
        },
        "status": status or {},
    }


def replica_set(
    d: JSON,
    image: str,
    replicas: int,
    *,
    revision: int,
    created: int = 0,
    ready: int | None = None,
    available: int | None = None,
    actual: int | None = None,
    annotations: dict[str, str] | None = None,
) -> JSON:
    """A ReplicaSet of ``d`` as the deployment controller would have made it, with a settled status."""
    tmpl = template(image)
    pod_hash = template_hash(tmpl)
    tmpl["metadata"]["labels"][HASH_LABEL] = pod_hash
    actual = replicas if actual is None else actual
    ready = actual if ready is None else ready
    available = ready if available is None else available
    status: JSON = {"replicas": actual, "observedGeneration": 1}
    if ready:
        status["readyReplicas"] = ready
    if available:
        status["availableReplicas"] = available
    desired = d["spec"]["replicas"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"web-{pod_hash}",
            "namespace": "default",
            "uid": f"rs-{image}",
            "generation": 1,
            "creationTimestamp": rfc3339(NOW - timedelta(hours=10) + timedelta(minutes=created)),
            "labels": dict(tmpl["metadata"]["labels"]),
            "annotations": {
                REVISION: str(revision),
                DESIRED_REPLICAS: str(desired),
                MAX_REPLICAS: str(desired + max_surge(d)),
                **(annotations or {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": "d-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web", HASH_LABEL: pod_hash}},
            "template": tmpl,
        },
        "status": status,
    }


def cond(status: JSON, ctype: str) -> JSON:
    found = [c for c in status.get("conditions") or [] if c["type"] == ctype]
    assert len(found) <= 1
    return found[0] if found else {}


def complete_status(replicas: int, generation: int = 1, rs_name: str = "web-x") -> JSON:
    t = rfc3339(NOW - timedelta(hours=1))
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "lastUpdateTime": t,
                "lastTransitionTime": t,
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            },
            {
                "type": "Progressing",
                "status": "True",
                "lastUpdateTime": t,
                "lastTransitionTime": t,
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{rs_name}" has successfully progressed.',
            },
        ],
    }


def scales(plan: Any) -> dict[str, int]:
    return {w.rs["metadata"]["name"]: w.rs["spec"]["replicas"] for w in plan.writes if w.op != "delete"}


def messages(plan: Any) -> list[str]:
    return [e.message for w in plan.writes for e in w.events] + [e.message for e in plan.events]


# ------------------------------------------------------------------------------------------------ hashing


def test_safe_encode_maps_digits_like_upstream() -> None:
    assert safe_encode("0123456789") == "456789bcdf"


def test_template_hash_is_stable_and_pinned() -> None:
    tmpl = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    }
    # Pinned: ReplicaSet names must survive restarts and upgrades of Corral.
    assert template_hash(tmpl) == "6c8d7489d5"
    assert template_hash(copy.deepcopy(tmpl)) == template_hash(tmpl)
    with_label = copy.deepcopy(tmpl)
    with_label["metadata"]["labels"][HASH_LABEL] = "whatever"
    assert template_hash(with_label) == template_hash(tmpl)
    assert template_hash(tmpl, 1) != template_hash(tmpl) != template_hash(tmpl, 0)


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=4), st.text(max_size=8))
def test_template_hash_properties(labels: dict[str, str], image: str) -> None:
    tmpl = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": image}]}}
    h = template_hash(tmpl)
    assert h and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    reordered = {"spec": tmpl["spec"], "metadata": {"labels": dict(reversed(list(labels.items())))}}
    assert template_hash(reordered) == h
    other = copy.deepcopy(tmpl)
    other["spec"]["containers"][0]["image"] = image + "x"
    assert not equal_ignore_hash(tmpl, other)


def test_equal_ignore_hash() -> None:
    a = template()
    b = template(**{HASH_LABEL: "abc"})
    assert equal_ignore_hash(a, b)
    assert not equal_ignore_hash(a, template("web:2"))
    assert not equal_ignore_hash(a, template(tier="fe"))


def test_equal_ignore_hash_is_semantic_like_kubectl_rollback_bodies() -> None:
    # kubectl rollout undo sends the ReplicaSet template as Go serializes it.
    from_kubectl = template(**{HASH_LABEL: "abc"})
    from_kubectl["metadata"]["creationTimestamp"] = None
    from_kubectl["spec"]["containers"][0]["resources"] = {}
    from_kubectl["spec"]["volumes"] = []
    assert equal_ignore_hash(template(), from_kubectl)
    assert template_hash(template()) == template_hash(from_kubectl)


# ------------------------------------------------------------------------------------------------ fenceposts


@pytest.mark.parametrize(
    ("value", "total", "up", "expected"),
    [
        (3, 10, True, 3),
        ("25%", 4, True, 1),
        ("25%", 5, True, 2),
        ("25%", 5, False, 1),
        ("25%", 1, False, 0),
        ("100%", 7, False, 7),
        ("0%", 7, True, 0),
        (None, 7, True, 0),
        ("5", 7, True, 5),
        ("x%", 7, True, 0),
    ],
)
def test_scaled_value(value: Any, total: int, up: bool, expected: int) -> None:
    assert scaled_value(value, total, up) == expected


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        ("25%", "25%", 4, (1, 1)),
        ("25%", "25%", 10, (3, 2)),  # surge rounds up, unavailable down
        ("25%", "25%", 1, (1, 0)),
        ("10%", "10%", 3, (1, 0)),
        ("0%", "10%", 3, (0, 1)),  # both resolve to 0: unavailable becomes 1
        (0, 0, 5, (0, 1)),
        (2, 3, 10, (2, 3)),
        (None, None, 3, (0, 1)),
    ],
)
def test_resolve_fenceposts(surge: Any, unavailable: Any, desired: int, expected: tuple[int, int]) -> None:
    assert resolve_fenceposts(surge, unavailable, desired) == expected


def test_max_unavailable_is_capped_and_zero_for_recreate() -> None:
    assert max_unavailable(deployment(2, unavailable=5)) == 2
    assert max_unavailable(deployment(0)) == 0
    assert max_unavailable(deployment(3, strategy="Recreate")) == 0
    assert max_surge(deployment(3, strategy="Recreate")) == 0


# ------------------------------------------------------------------------------------------------ first sync


def test_first_sync_creates_the_replica_set_like_upstream() -> None:
    d = deployment(4, annotations=None)
    d["metadata"]["annotations"] = {CHANGE_CAUSE: "first", LAST_APPLIED: "{}"}
    plan = plan_deployment(d, [], NOW)
    [write] = plan.writes
    rs = write.rs
    pod_hash = template_hash(d["spec"]["template"])
    assert write.op == "create"
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["metadata"]["labels"] == {"app": "web", HASH_LABEL: pod_hash}
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", HASH_LABEL: pod_hash}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: pod_hash}
    assert equal_ignore_hash(rs["spec"]["template"], d["spec"]["template"])
    assert rs["spec"]["replicas"] == 4
    assert rs["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "d-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert rs["metadata"]["annotations"] == {
        CHANGE_CAUSE: "first",
        REVISION: "1",
        DESIRED_REPLICAS: "4",
        MAX_REPLICAS: "5",
    }
    assert messages(plan) == [f"Scaled up replica set web-{pod_hash} from 0 to 4"]
    assert write.events[0].reason == "ScalingReplicaSet"
    assert plan.deployment is not None
    assert plan.deployment["metadata"]["annotations"][REVISION] == "1"
    status = plan.deployment["status"]
    assert status["observedGeneration"] == 1
    assert cond(status, "Available")["status"] == "False"
    assert cond(status, "Progressing")["reason"] == "NewReplicaSetCreated"
    assert cond(status, "Progressing")["message"] == f'Created new replica set "web-{pod_hash}"'
    assert "replicas" not in status  # omitempty, as Go
    assert status["unavailableReplicas"] == 4
    assert plan.new_rs_name == f"web-{pod_hash}"


def test_nothing_passed_in_is_modified() -> None:
    d = deployment(4, "web:2", status=complete_status(4))
    rss = [replica_set(d, "web:1", 4, revision=1)]
    before = copy.deepcopy((d, rss))
    plan_deployment(d, rss, NOW)
    assert (d, rss) == before


def test_collision_count_changes_the_name() -> None:
    d = deployment(2)
    d["status"]["collisionCount"] = 1
    [write] = plan_deployment(d, [], NOW).writes
    assert write.rs["metadata"]["name"] == f"web-{template_hash(d['spec']['template'], 1)}"


# ------------------------------------------------------------------------------------------------ rolling


def test_rolling_update_first_steps_respect_surge_and_unavailable() -> None:
    # 4 replicas, 25%/25%: surge 1, unavailable 1.
    d = deployment(4, "web:2", generation=2, status=complete_status(4))
    old = replica_set(d, "web:1", 4, revision=1)
    plan = plan_deployment(d, [old], NOW)
    new_name = f"web-{template_hash(template('web:2'))}"
    # The new RS is created at 1 (4 + 1 surge), and in the same sync one old pod may go (4 + 1 - 3 - 1).
    assert scales(plan) == {new_name: 1, old["metadata"]["name"]: 3}
    assert plan.deployment is not None
    assert plan.deployment["metadata"]["annotations"][REVISION] == "2"
    assert messages(plan) == [
        f"Scaled up replica set {new_name} from 0 to 1",
        f"Scaled down replica set {old['metadata']['name']} from 4 to 3",
    ]


def test_rolling_update_waits_for_availability() -> None:
    d = deployment(4, "web:2", generation=2, status=complete_status(4))
    old = replica_set(d, "web:1", 3, revision=1, actual=3)
    new = replica_set(d, "web:2", 2, revision=2, created=5, actual=2, ready=0)
    plan = plan_deployment(d, [old, new], NOW)
    # 5 pods already (max), and 3 available = replicas - maxUnavailable: nothing may change.
    assert scales(plan) == {}


def test_old_pods_still_in_the_cache_block_the_surge() -> None:
    d = deployment(4, "web:2", generation=2, status=complete_status(4))
    old = replica_set(d, "web:1", 3, revision=1, actual=3)
    new = replica_set(d, "web:2", 1, revision=2, created=5, actual=1)
    # The old RS was scaled to 3 and says 3, but the pod cache still shows 4 of its pods alive.
    pods = {"rs-web:1": PodCounts(active=4, running=4)}
    assert new["metadata"]["name"] not in scales(plan_deployment(d, [old, new], NOW, pods))
    assert scales(plan_deployment(d, [old, new], NOW))[new["metadata"]["name"]] == 2


def test_unhealthy_old_replicas_are_cleaned_up_first() -> None:
    d = deployment(4, "web:3", generation=3, status=complete_status(4), surge=1, unavailable=0)
    older = replica_set(d, "web:1", 3, revision=1, actual=3)  # healthy
    broken = replica_set(d, "web:2", 2, revision=2, created=5, ready=0)  # never became ready
    plan = plan_deployment(d, [older, broken], NOW)
    out = scales(plan)
    new_name = f"web-{template_hash(template('web:3'))}"
    # 5 pods, at least 4 available: one pod may go, and it is one of the broken release.
    assert out[broken["metadata"]["name"]] == 1
    assert older["metadata"]["name"] not in out  # the healthy old pods stay
    assert out[new_name] == 0  # 5 pods already: no room to surge this sync


def test_rollout_completes_and_sets_progressing_available() -> None:
    d = deployment(4, "web:2", generation=2)
    d["status"] = complete_status(4)
    d["status"]["conditions"][1]["reason"] = "ReplicaSetUpdated"
    old = replica_set(d, "web:1", 0, revision=1)
    new = replica_set(d, "web:2", 4, revision=2, created=5)
    plan = plan_deployment(d, [old, new], NOW)
    assert plan.deployment is not None
    progressing = cond(plan.deployment["status"], "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    assert progressing["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has successfully progressed.'
    assert plan.deployment["status"]["updatedReplicas"] == 4
    assert plan.requeue_after is None


def test_progress_updates_last_update_time_but_keeps_transition() -> None:
    earlier = rfc3339(NOW - timedelta(seconds=30))
    status = {
        "observedGeneration": 2,
        "replicas": 5,
        "updatedReplicas": 1,
        "availableReplicas": 4,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "lastUpdateTime": earlier,
                "lastTransitionTime": earlier,
                "reason": "ReplicaSetUpdated",
                "message": "x",
            }
        ],
    }
    d = deployment(4, "web:2", generation=2, status=status)
    old = replica_set(d, "web:1", 3, revision=1)
    new = replica_set(d, "web:2", 2, revision=2, created=5, ready=1)  # one more ready than before
    plan = plan_deployment(d, [old, new], NOW)
    assert plan.deployment is not None
    progressing = cond(plan.deployment["status"], "Progressing")
    assert progressing["reason"] == "ReplicaSetUpdated"
    assert progressing["lastUpdateTime"] == rfc3339(NOW)
    assert progressing["lastTransitionTime"] == earlier


def stuck(seconds_ago: int, deadline: int = 5) -> tuple[JSON, list[JSON]]:
    last = rfc3339(NOW - timedelta(seconds=seconds_ago))
    status = {
        "observedGeneration": 2,
        "replicas": 5,
        "updatedReplicas": 2,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "conditions": [
            {
                "type": "Progressing",
                "status": "True",
                "lastUpdateTime": last,
                "lastTransitionTime": last,
                "reason": "ReplicaSetUpdated",
                "message": "x",
            }
        ],
    }
    d = deployment(4, "web:2", generation=2, status=status, progressDeadlineSeconds=deadline)
    old = replica_set(d, "web:1", 3, revision=1)
    new = replica_set(d, "web:2", 2, revision=2, created=5, ready=0)
    return d, [old, new]


def test_no_progress_before_the_deadline_requeues_for_it() -> None:
    d, rss = stuck(2)
    plan = plan_deployment(d, rss, NOW)
    assert plan.deployment is None or cond(plan.deployment["status"], "Progressing")["reason"] != (
        "ProgressDeadlineExceeded"
    )
    assert plan.requeue_after == pytest.approx(4.0)  # 3 s to the deadline, plus one


def test_no_progress_past_the_deadline_is_progress_deadline_exceeded() -> None:
    d, rss = stuck(6)
    plan = plan_deployment(d, rss, NOW)
    assert plan.deployment is not None
    progressing = cond(plan.deployment["status"], "Progressing")
    assert progressing["status"] == "False"
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert progressing["message"] == f'ReplicaSet "{rss[1]["metadata"]["name"]}" has timed out progressing.'
    assert scales(plan) == {}  # old pods keep serving
    # Once reported, no more requeues for the deadline.
    d["status"] = plan.deployment["status"]
    assert plan_deployment(d, rss, NOW + timedelta(seconds=1)).requeue_after is None


def test_available_condition_follows_max_unavailable() -> None:
    d = deployment(4, "web:1", status=complete_status(4))
    rs = replica_set(d, "web:1", 4, revision=1, ready=2, available=2)
    plan = plan_deployment(d, [rs], NOW)
    assert plan.deployment is not None
    available = cond(plan.deployment["status"], "Available")
    assert (available["status"], available["reason"]) == ("False", "MinimumReplicasUnavailable")
    assert available["message"] == "Deployment does not have minimum availability."
    assert plan.deployment["status"]["unavailableReplicas"] == 2


# ------------------------------------------------------------------------------------------------ rollback


def test_rollback_reuses_the_old_replica_set_and_renumbers_it() -> None:
    d = deployment(4, "web:1", generation=3, status=complete_status(4, 2))
    d["metadata"]["annotations"] = {REVISION: "2", CHANGE_CAUSE: "back to one"}
    v1 = replica_set(d, "web:1", 0, revision=1)
    v2 = replica_set(d, "web:2", 4, revision=2, created=5)
    plan = plan_deployment(d, [v1, v2], NOW)
    writes = {w.rs["metadata"]["name"]: w.rs for w in plan.writes}
    assert not [w for w in plan.writes if w.op == "create"]
    renumbered = writes[v1["metadata"]["name"]]["metadata"]["annotations"]
    assert renumbered[REVISION] == "3"
    assert renumbered[REVISION_HISTORY] == "1"
    assert renumbered[CHANGE_CAUSE] == "back to one"
    assert writes[v1["metadata"]["name"]]["spec"]["replicas"] == 1  # scaling up within the surge
    # The v2 set keeps its own revision.
    assert writes.get(v2["metadata"]["name"], v2)["metadata"]["annotations"][REVISION] == "2"
    assert plan.deployment is not None
    assert plan.deployment["metadata"]["annotations"][REVISION] == "3"


def test_revision_history_accumulates() -> None:
    d = deployment(2, "web:1", generation=5, status=complete_status(2, 4))
    v1 = replica_set(d, "web:1", 0, revision=3, annotations={REVISION_HISTORY: "1"})
    v2 = replica_set(d, "web:2", 2, revision=4, created=5)
    plan = plan_deployment(d, [v1, v2], NOW)
    ann = next(w.rs for w in plan.writes if w.rs["metadata"]["name"] == v1["metadata"]["name"])["metadata"][
        "annotations"
    ]
    assert (ann[REVISION], ann[REVISION_HISTORY]) == ("5", "1,3")


# ------------------------------------------------------------------------------------------------ scaling


def test_scaling_a_settled_deployment_scales_its_only_replica_set() -> None:
    d = deployment(6, "web:1", generation=2, status=complete_status(4))
    rs = replica_set(d | {"spec": {**d["spec"], "replicas": 4}}, "web:1", 4, revision=1)
    plan = plan_deployment(d, [rs], NOW)
    [write] = plan.writes
    assert write.rs["spec"]["replicas"] == 6
    assert write.rs["metadata"]["annotations"][DESIRED_REPLICAS] == "6"
    assert write.rs["metadata"]["annotations"][MAX_REPLICAS] == "8"
    assert messages(plan) == [f"Scaled up replica set {rs['metadata']['name']} from 4 to 6"]


def test_proportional_scaling_as_in_the_kubernetes_docs() -> None:
    # 10 replicas, maxSurge 3, maxUnavailable 2, a release stuck at 5 new (old at 8); then scaled to 15.
    before = deployment(10, "web:2", surge=3, unavailable=2)
    old = replica_set(before, "web:1", 8, revision=1)
    new = replica_set(before, "web:2", 5, revision=2, created=5, ready=0)
    d = deployment(15, "web:2", surge=3, unavailable=2, generation=3, status={"replicas": 13})
    plan = plan_deployment(d, [old, new], NOW)
    assert scales(plan) == {old["metadata"]["name"]: 11, new["metadata"]["name"]: 7}
    for write in plan.writes:
        assert write.rs["metadata"]["annotations"][DESIRED_REPLICAS] == "15"
        assert write.rs["metadata"]["annotations"][MAX_REPLICAS] == "18"


def test_scaling_to_zero_mid_rollout() -> None:
    before = deployment(4, "web:2")
    old = replica_set(before, "web:1", 3, revision=1)
    new = replica_set(before, "web:2", 2, revision=2, created=5, ready=0)
    d = deployment(0, "web:2", generation=3)
    assert scales(plan_deployment(d, [old, new], NOW)) == {
        old["metadata"]["name"]: 0,
        new["metadata"]["name"]: 0,
    }


def test_stale_desired_annotation_does_not_stall_the_rollout() -> None:
    # maxSurge 0: the new RS was created at 0 and the old one scaled 3 → 2; then the Deployment was scaled
    # to 2. Upstream stays in "scaling event" forever (kubernetes/kubernetes#138036).
    before = deployment(3, "web:2", surge=0, unavailable=1)
    old = replica_set(before, "web:1", 2, revision=1, actual=2)
    new = replica_set(before, "web:2", 0, revision=2, created=5)
    d = deployment(2, "web:2", surge=0, unavailable=1, generation=3)
    plan = plan_deployment(d, [old, new], NOW)
    [write] = plan.writes
    assert write.rs["metadata"]["annotations"][DESIRED_REPLICAS] == "2"
    old = write.rs
    plan = plan_deployment(d, [old, new], NOW)
    assert scales(plan)[old["metadata"]["name"]] == 1  # the rolling update goes on


# ------------------------------------------------------------------------------------------------ paused


def test_paused_deployment_gets_paused_condition_and_no_new_replica_set() -> None:
    d = deployment(4, "web:2", generation=2, status=complete_status(4), paused=True)
    old = replica_set(d, "web:1", 4, revision=1)
    plan = plan_deployment(d, [old], NOW)
    assert plan.writes == []
    assert plan.deployment is not None
    progressing = cond(plan.deployment["status"], "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")
    assert progressing["message"] == "Deployment is paused"
    # Resumed: the condition says so, and the rollout starts.
    d = deployment(4, "web:2", generation=3, status=plan.deployment["status"])
    plan = plan_deployment(d, [old], NOW)
    assert plan.writes[0].op == "create"
    assert plan.deployment is not None
    assert cond(plan.deployment["status"], "Progressing")["reason"] == "NewReplicaSetCreated"


# ------------------------------------------------------------------------------------------------ clean-up


def test_old_replica_sets_beyond_the_history_limit_are_deleted() -> None:
    d = deployment(2, "web:4", status=complete_status(2), revisionHistoryLimit=1)
    rss = [replica_set(d, f"web:{i}", 0, revision=i, created=i) for i in (1, 2, 3)]
    rss.append(replica_set(d, "web:4", 2, revision=4, created=4))
    busy = replica_set(d, "web:0", 0, revision=0, actual=1)  # still has a pod: kept
    plan = plan_deployment(d, [busy, *rss], NOW)
    deleted = sorted(w.rs["metadata"]["name"] for w in plan.writes if w.op == "delete")
    assert deleted == sorted(rs["metadata"]["name"] for rs in rss[:2])


def test_no_clean_up_while_rolling_out() -> None:
    d = deployment(2, "web:4", generation=2, status=complete_status(2), revisionHistoryLimit=0)
    rss = [replica_set(d, "web:1", 0, revision=1), replica_set(d, "web:3", 2, revision=3, created=3)]
    assert not [w for w in plan_deployment(d, rss, NOW).writes if w.op == "delete"]


# ------------------------------------------------------------------------------------------------ recreate


def test_recreate_scales_old_down_then_waits_for_old_pods() -> None:
    d = deployment(3, "web:2", strategy="Recreate", generation=2, status=complete_status(3))
    old = replica_set(d, "web:1", 3, revision=1)
    plan = plan_deployment(d, [old], NOW)
    assert scales(plan) == {old["metadata"]["name"]: 0}
    old = plan.writes[0].rs
    # Scaled down, but its pods still run (terminating): no new ReplicaSet yet.
    plan = plan_deployment(d, [old], NOW, {"rs-web:1": PodCounts(active=0, running=3)})
    assert plan.writes == []
    old["status"] = {"replicas": 0}
    plan = plan_deployment(d, [old], NOW, {})
    [write] = plan.writes
    assert (write.op, write.rs["spec"]["replicas"]) == ("create", 3)


# ------------------------------------------------------------------------------------------------ claiming


def test_orphan_replica_sets_are_adopted_and_mismatched_released() -> None:
    d = deployment(2, "web:1", status=complete_status(2))
    orphan = replica_set(d, "web:1", 2, revision=1)
    orphan["metadata"]["ownerReferences"] = []
    ours_moved = replica_set(d, "web:9", 0, revision=9)
    ours_moved["metadata"]["labels"] = {"app": "other"}
    foreign = replica_set(d, "web:8", 0, revision=8)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    plan = plan_deployment(d, [orphan, ours_moved, foreign], NOW)
    assert [rs["metadata"]["name"] for rs in plan.adopt] == [orphan["metadata"]["name"]]
    assert [rs["metadata"]["name"] for rs in plan.release] == [ours_moved["metadata"]["name"]]


def test_selecting_everything_is_refused_with_an_event() -> None:
    d = deployment(2, generation=3)
    d["spec"]["selector"] = {}
    plan = plan_deployment(d, [], NOW)
    assert [e.reason for e in plan.events] == ["SelectingAll"]
    assert plan.writes == []
    assert plan.deployment is not None and plan.deployment["status"]["observedGeneration"] == 3


def test_deployment_status_write_carries_annotations() -> None:
    """The /status subresource of Deployments takes annotations, as upstream's status strategy."""
    rt = REGISTRY.require("deployments.apps")
    old = deployment(2)
    old["metadata"]["annotations"] = {"a": "1"}
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"a": "1", REVISION: "1"}
    new["metadata"]["labels"] = {"sneaky": "x"}
    new["spec"]["replicas"] = 9
    new["status"] = {"replicas": 2}
    result = prepare_for_update(rt, new, old, "status")
    assert result["metadata"]["annotations"] == {"a": "1", REVISION: "1"}
    assert "labels" not in result["metadata"] and result["spec"]["replicas"] == 2
    assert result["metadata"]["generation"] == 1


# ------------------------------------------------------------------------------------------------ pods


def pod(
    name: str,
    *,
    ready_for: float | None = None,
    created: int = 0,
    node: str = "n1",
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    owner: str | None = "rs-uid",
    restarts: int = 0,
    terminating: bool = False,
) -> JSON:
    conditions = []
    if ready_for is not None:
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": rfc3339(NOW - timedelta(seconds=ready_for)),
            }
        )
    else:
        conditions.append({"type": "Ready", "status": "False", "lastTransitionTime": rfc3339(NOW)})
    meta: JSON = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "creationTimestamp": rfc3339(NOW - timedelta(hours=1) + timedelta(seconds=created)),
        "labels": {"app": "web"} if labels is None else labels,
    }
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-rs",
                "uid": owner,
                "controller": True,
            }
        ]
    if terminating:
        meta["deletionTimestamp"] = rfc3339(NOW)
    return {
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "c"}]},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"name": "c", "restartCount": restarts}],
        },
    }


def rs_obj(replicas: int, min_ready: int = 0, **meta: Any) -> JSON:
    spec: JSON = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}},
    }
    if min_ready:
        spec["minReadySeconds"] = min_ready
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-rs", "namespace": "default", "uid": "rs-uid", "generation": 2, **meta},
        "spec": spec,
        "status": {"replicas": 0},
    }


def test_availability_uses_min_ready_seconds_strictly() -> None:
    p = pod("a", ready_for=10)
    assert is_pod_available(p, 0, NOW) and is_pod_available(p, 9, NOW)
    assert not is_pod_available(p, 10, NOW)  # Ready for exactly minReadySeconds is not enough
    assert seconds_until_available(p, 15, NOW) == pytest.approx(5.001)
    assert seconds_until_available(pod("b"), 0, NOW) is None


def test_replica_set_plan_creates_and_deletes() -> None:
    assert plan_replica_set(rs_obj(3), [pod("a", ready_for=5)], NOW).create == 2
    assert plan_replica_set(rs_obj(700), [], NOW, burst=500).create == 500
    pods = [pod("a", ready_for=5), pod("b", ready_for=5), pod("c", ready_for=5)]
    assert len(plan_replica_set(rs_obj(1), pods, NOW).delete) == 2
    terminating = rs_obj(5, deletionTimestamp=rfc3339(NOW))
    assert plan_replica_set(terminating, [], NOW).create == 0


def test_terminating_and_finished_pods_do_not_count() -> None:
    pods = [pod("a", ready_for=5, terminating=True), pod("b", phase="Succeeded"), pod("c", ready_for=1)]
    plan = plan_replica_set(rs_obj(2), pods, NOW)
    assert [p["metadata"]["name"] for p in plan.owned] == ["c"]
    assert plan.create == 1


def test_scale_down_prefers_unready_then_newest() -> None:
    pods = [
        pod("old-ready", ready_for=500, created=0),
        pod("new-ready", ready_for=5, created=100),
        pod("unready", created=1),
        pod("unscheduled", node="", phase="Pending"),
        pod("pending", phase="Pending", created=2),
        pod("crashy", ready_for=500, created=3, restarts=4),
    ]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, len(pods) - 1)]
    assert order == ["unscheduled", "pending", "unready", "new-ready", "crashy"]
    same_ready = [pod("first", ready_for=60, created=0), pod("second", ready_for=60, created=10)]
    assert pods_to_delete(same_ready, 1)[0]["metadata"]["name"] == "second"
    costly = pod("costly", ready_for=5)
    costly["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": "100"}
    assert pods_to_delete([costly, pod("cheap", ready_for=500)], 1)[0]["metadata"]["name"] == "cheap"


def test_replica_set_claims_pods() -> None:
    orphan = pod("orphan", ready_for=5, owner=None)
    moved = pod("moved", ready_for=5, labels={"app": "debug"})
    foreign = pod("foreign", ready_for=5, owner="other-uid")
    gone_orphan = pod("dying", owner=None, terminating=True)
    plan = plan_replica_set(rs_obj(2), [orphan, moved, foreign, gone_orphan], NOW)
    assert [p["metadata"]["name"] for p in plan.adopt] == ["orphan"]
    assert [p["metadata"]["name"] for p in plan.release] == ["moved"]
    assert [p["metadata"]["name"] for p in plan.owned] == ["orphan"]
    assert plan.create == 1  # the released pod is replaced


def test_replica_set_status() -> None:
    rs = rs_obj(4, min_ready=30)
    pods = [
        pod("a", ready_for=60),
        pod("b", ready_for=10),
        pod("c"),
        pod("d", ready_for=60, labels={"app": "web", "extra": "1"}),
    ]
    pods[2]["metadata"]["labels"] = {"app": "web"}
    status = replica_set_status(rs, pods, NOW)
    assert status == {
        "replicas": 4,
        "fullyLabeledReplicas": 4,
        "readyReplicas": 3,
        "availableReplicas": 2,
        "observedGeneration": 2,
    }
    assert next_availability_check(rs, pods, NOW) == pytest.approx(20.001)
    labeled = rs_obj(1)
    labeled["spec"]["template"]["metadata"]["labels"]["tier"] = "fe"
    assert "fullyLabeledReplicas" not in replica_set_status(labeled, [pod("a")], NOW)
    assert replica_set_status(rs_obj(0), [], NOW) == {"replicas": 0, "observedGeneration": 2}


def test_replica_failure_condition_comes_and_goes() -> None:
    rs = rs_obj(2)
    status = replica_set_status(rs, [], NOW, "pods is forbidden", "FailedCreate")
    [failure] = status["conditions"]
    assert (failure["type"], failure["reason"], failure["message"]) == (
        "ReplicaFailure",
        "FailedCreate",
        "pods is forbidden",
    )
    rs["status"] = status
    assert "conditions" not in replica_set_status(rs, [], NOW)


def test_pod_from_template() -> None:
    rs = rs_obj(1)
    rs["spec"]["template"]["metadata"]["annotations"] = {"a": "b"}
    p = pod_from_template(rs)
    assert p["metadata"]["generateName"] == "web-rs-"
    assert p["metadata"]["labels"] == {"app": "web"}
    assert p["metadata"]["annotations"] == {"a": "b"}
    assert p["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-rs",
            "uid": "rs-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert p["spec"] == rs["spec"]["template"]["spec"] and p["spec"] is not rs["spec"]["template"]["spec"]


class FakeCache:
    def __init__(self) -> None:
        self.objects: dict[str, JSON] = {}
        self.resource_version = "10"

    def get(self, key: str) -> JSON | None:
        return self.objects.get(key)


def test_expectations_wait_for_the_cache() -> None:
    clock = FakeClock()
    exp = Expectations(clock, timeout=60)
    cache = FakeCache()
    exp.created("default/rs", {"metadata": {"name": "p1", "resourceVersion": "12"}})
    exp.deleted("default/rs", {"metadata": {"name": "p0", "uid": "u0"}})
    cache.objects["default/p0"] = pod("p0")
    cache.objects["default/p0"]["metadata"]["uid"] = "u0"
    assert not exp.satisfied("default/rs", "default", cache)  # type: ignore[arg-type]
    cache.resource_version = "12"  # the create was seen (the pod may already be gone again)
    assert not exp.satisfied("default/rs", "default", cache)  # type: ignore[arg-type]
    cache.objects["default/p0"]["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    assert exp.satisfied("default/rs", "default", cache)  # type: ignore[arg-type]
    exp.created("default/rs", {"metadata": {"name": "p2", "resourceVersion": "99"}})
    assert not exp.satisfied("default/rs", "default", cache)  # type: ignore[arg-type]
    clock.advance(61)
    assert exp.satisfied("default/rs", "default", cache)  # type: ignore[arg-type]
