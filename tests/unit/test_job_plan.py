"""Job planning (pure): pods to create/delete, counting, backoff, deadlines, Indexed mode, suspend, TTL."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from corral.controllers.jobplan import (
    COMPLETION_INDEX,
    COUNTED_ANNOTATION,
    INDEX_ENV,
    JobPlan,
    PodView,
    backoff_delay,
    format_indexes,
    parse_indexes,
    plan_job,
    pod_for,
    remaining_backoff,
)
from corral.util.clock import rfc3339

JSON = dict[str, Any]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(**spec: Any) -> JSON:
    base: JSON = {
        "completions": 1,
        "parallelism": 1,
        "backoffLimit": 6,
        "completionMode": "NonIndexed",
        "suspend": False,
        "template": {
            "metadata": {"labels": {"job-name": "j", "controller-uid": "job-uid"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x"}]},
        },
    }
    base.update(spec)
    status = base.pop("status", {})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "uid": "job-uid", "annotations": {}},
        "spec": base,
        "status": status,
    }


_n = 0


def pod(
    phase: str = "Running",
    *,
    name: str | None = None,
    index: int | None = None,
    counted: bool = False,
    deleting: bool = False,
    ready: bool = False,
    finished: datetime | None = None,
    restarts: int = 0,
) -> JSON:
    global _n
    _n += 1
    annotations: JSON = {}
    if index is not None:
        annotations[COMPLETION_INDEX] = str(index)
    if counted:
        annotations[COUNTED_ANNOTATION] = "true"
    meta: JSON = {
        "name": name or f"j-{_n}",
        "uid": f"uid-{name or _n}",
        "annotations": annotations,
        "creationTimestamp": rfc3339(T0),
    }
    if deleting:
        meta["deletionTimestamp"] = rfc3339(T0)
    state: JSON = {"running": {}}
    if phase in ("Succeeded", "Failed"):
        state = {
            "terminated": {
                "exitCode": 0 if phase == "Succeeded" else 1,
                "finishedAt": rfc3339(finished or T0),
            }
        }
    return {
        "metadata": meta,
        "spec": {"nodeName": "n1"},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "main", "state": state, "restartCount": restarts}],
        },
    }


def apply_counts(j: JSON, plan: JobPlan) -> JSON:
    """The job as the controller leaves it after applying ``plan``."""
    out = copy.deepcopy(j)
    out["status"] = plan.status
    return out


def reasons(plan: JobPlan) -> list[str]:
    return [e.reason for e in plan.events]


# ------------------------------------------------------------------------------------------------ basics


def test_new_job_starts_parallelism_pods_and_sets_start_time() -> None:
    plan = plan_job(job(completions=5, parallelism=2), [], T0)
    assert plan.create == [None, None]
    assert plan.status["startTime"] == rfc3339(T0)
    assert plan.status["ready"] == 0 and plan.status["terminating"] == 0
    assert plan.status["uncountedTerminatedPods"] == {}


def test_never_more_active_than_remaining_completions() -> None:
    j = job(completions=5, parallelism=3, status={"succeeded": 3, "startTime": rfc3339(T0)})
    plan = plan_job(j, [pod(counted=True)], T0)
    assert plan.create == [None]
    assert plan.status["active"] == 1


def test_expectations_pending_means_status_only() -> None:
    plan = plan_job(job(completions=5, parallelism=2), [], T0, may_manage=False)
    assert plan.create == [] and plan.delete == []


def test_terminated_pods_are_flushed_as_uncounted_then_counted() -> None:
    done = pod("Succeeded", name="a")
    bad = pod("Failed", name="b")
    plan = plan_job(job(completions=3, parallelism=2), [done, bad, pod(name="c")], T0)
    assert plan.flush_status is not None
    assert plan.flush_status["uncountedTerminatedPods"] == {"succeeded": ["uid-a"], "failed": ["uid-b"]}
    assert sorted(plan.mark_counted) == ["a", "b"]
    assert plan.status["succeeded"] == 1 and plan.status["failed"] == 1
    assert plan.status["uncountedTerminatedPods"] == {}


def test_counted_pods_are_not_counted_again() -> None:
    j = job(completions=3, parallelism=2, status={"succeeded": 1, "startTime": rfc3339(T0)})
    plan = plan_job(j, [pod("Succeeded", counted=True)], T0)
    assert plan.flush_status is None and plan.mark_counted == []
    assert plan.status["succeeded"] == 1


def test_counted_uids_from_the_caller_override_a_stale_cache() -> None:
    j = job(completions=3, parallelism=2, status={"succeeded": 1, "startTime": rfc3339(T0)})
    stale = pod("Succeeded", name="a")
    plan = plan_job(j, [stale], T0, counted_uids={"uid-a"})
    assert plan.status["succeeded"] == 1


def test_crash_after_flush_is_recovered_without_double_counting() -> None:
    # The flush went through, then the controller died before marking / moving the counts.
    j = job(
        completions=3,
        parallelism=1,
        status={"startTime": rfc3339(T0), "uncountedTerminatedPods": {"succeeded": ["uid-a"]}},
    )
    plan = plan_job(j, [pod("Succeeded", name="a")], T0)
    assert plan.flush_status is None
    assert plan.mark_counted == ["a"]
    assert plan.status["succeeded"] == 1
    # And when the pod is already gone, its uid still counts exactly once.
    plan = plan_job(j, [], T0)
    assert plan.status["succeeded"] == 1


def test_completes_after_enough_successes() -> None:
    j = job(completions=2, parallelism=2, status={"succeeded": 1, "startTime": rfc3339(T0)})
    plan = plan_job(
        j, [pod("Succeeded", counted=True), pod("Succeeded", name="z")], T0 + timedelta(seconds=5)
    )
    types = {c["type"]: c for c in plan.status["conditions"]}
    assert types["SuccessCriteriaMet"]["status"] == "True"
    assert types["Complete"]["status"] == "True"
    assert plan.status["completionTime"] == rfc3339(T0 + timedelta(seconds=5))
    assert plan.status["succeeded"] == 2
    assert reasons(plan) == ["Completed"]
    assert plan.create == []


def test_work_queue_job_completes_when_one_succeeded_and_the_rest_finished() -> None:
    j = job(completions=None, parallelism=2, status={"startTime": rfc3339(T0)})
    running = pod()
    plan = plan_job(j, [pod("Succeeded", name="s"), running], T0)
    assert plan.create == [] and plan.delete == []  # let the other one finish
    assert "conditions" not in plan.status
    j2 = apply_counts(j, plan)
    plan = plan_job(j2, [pod("Succeeded", name="s", counted=True), pod("Succeeded", name="t")], T0)
    assert any(c["type"] == "Complete" for c in plan.status["conditions"])


def test_excess_active_pods_are_deleted_least_advanced_first() -> None:
    j = job(completions=10, parallelism=1, status={"startTime": rfc3339(T0)})
    ready = pod(ready=True, name="ready")
    pending = pod("Pending", name="pending")
    plan = plan_job(j, [ready, pending], T0)
    assert [d.name for d in plan.delete] == ["pending"]
    assert plan.create == []
    assert plan.status["active"] == 1 and plan.status["terminating"] == 1
    # Scale-down is no failure: the pod is marked counted (so its deletion never counts) but not counted.
    assert plan.mark_counted == ["pending"]
    assert plan.flush_status is None and "failed" not in plan.status


def test_pods_killed_by_a_failing_job_count_as_failed() -> None:
    j = job(completions=2, parallelism=2, activeDeadlineSeconds=1, status={"startTime": rfc3339(T0)})
    plan = plan_job(j, [pod(name="a"), pod(name="b")], T0 + timedelta(seconds=2))
    assert sorted(d.name for d in plan.delete) == ["a", "b"]
    assert plan.flush_status is not None
    assert sorted(plan.flush_status["uncountedTerminatedPods"]["failed"]) == ["uid-a", "uid-b"]
    assert "conditions" not in plan.flush_status  # the flush records counts only
    assert sorted(plan.mark_counted) == ["a", "b"]
    assert plan.status["failed"] == 2


def test_deleted_unfinished_pod_counts_as_failed() -> None:
    j = job(completions=1, parallelism=1, status={"startTime": rfc3339(T0)})
    plan = plan_job(j, [pod(deleting=True, name="gone")], T0)
    assert plan.status["failed"] == 1
    assert plan.status["terminating"] == 1


# ------------------------------------------------------------------------------------------------ failures


def test_backoff_limit_exceeded_fails_the_job() -> None:
    j = job(completions=1, parallelism=1, backoffLimit=1, status={"failed": 1, "startTime": rfc3339(T0)})
    plan = plan_job(j, [pod("Failed", counted=True), pod("Failed", name="f2")], T0 + timedelta(minutes=5))
    conds = {c["type"]: c for c in plan.status["conditions"]}
    assert conds["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    assert conds["Failed"]["reason"] == "BackoffLimitExceeded"
    assert conds["Failed"]["message"] == "Job has reached the specified backoff limit"
    assert "BackoffLimitExceeded" in reasons(plan)
    assert plan.create == []
    assert "completionTime" not in plan.status


def test_failure_target_waits_for_running_pods_to_stop() -> None:
    j = job(completions=3, parallelism=2, backoffLimit=0, status={"startTime": rfc3339(T0)})
    running = pod(name="r")
    plan = plan_job(j, [pod("Failed", name="f"), running], T0)
    assert [d.name for d in plan.delete] == ["r"]
    types = [c["type"] for c in plan.status["conditions"]]
    assert "FailureTarget" in types and "Failed" not in types
    # The next round sees the pod terminating, then gone.
    j2 = apply_counts(j, plan)
    plan = plan_job(j2, [pod("Failed", name="f", counted=True), pod(name="r", deleting=True)], T0)
    assert "Failed" not in [c["type"] for c in plan.status["conditions"]]
    j3 = apply_counts(j2, plan)
    plan = plan_job(
        j3, [pod("Failed", name="f", counted=True), pod(name="r", deleting=True, counted=True)], T0
    )
    assert "Failed" not in [c["type"] for c in plan.status["conditions"]]
    plan = plan_job(apply_counts(j3, plan), [pod("Failed", name="f", counted=True)], T0)
    assert "Failed" in [c["type"] for c in plan.status["conditions"]]


def test_on_failure_restarts_count_against_the_backoff_limit() -> None:
    template = {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main", "image": "x"}]}}
    j = job(backoffLimit=2, template=template, status={"startTime": rfc3339(T0)})
    assert "conditions" not in plan_job(j, [pod(restarts=1)], T0).status
    plan = plan_job(j, [pod(restarts=2, name="r")], T0)
    assert [c["reason"] for c in plan.status["conditions"]] == ["BackoffLimitExceeded"]
    assert [d.name for d in plan.delete] == ["r"]


def test_replacement_waits_for_exponential_backoff() -> None:
    j = job(completions=1, parallelism=1, backoffLimit=6, status={"startTime": rfc3339(T0), "failed": 1})
    failed = pod("Failed", counted=True, finished=T0)
    plan = plan_job(j, [failed], T0 + timedelta(seconds=4))
    assert plan.create == []
    assert plan.requeue_after == pytest.approx(6)
    assert plan_job(j, [failed], T0 + timedelta(seconds=10)).create == [None]
    # The base comes from the annotation when set.
    j["metadata"]["annotations"]["corral.dev/job-backoff-base"] = "1"
    assert plan_job(j, [failed], T0 + timedelta(seconds=1)).create == [None]


def test_backoff_counts_failures_since_the_last_success() -> None:
    pods = [
        PodView.from_pod(pod("Failed", finished=T0)),
        PodView.from_pod(pod("Succeeded", finished=T0 + timedelta(seconds=1))),
        PodView.from_pod(pod("Failed", finished=T0 + timedelta(seconds=2))),
        PodView.from_pod(pod("Failed", finished=T0 + timedelta(seconds=3))),
    ]
    # two failures after the success: 10 s · 2 = 20 s from the last failure
    assert remaining_backoff(pods, T0 + timedelta(seconds=3), 10.0) == pytest.approx(20)


def test_backoff_delay_doubles_up_to_six_minutes() -> None:
    assert [backoff_delay(n) for n in range(7)] == [0, 10, 20, 40, 80, 160, 320]
    assert backoff_delay(7) == 360 and backoff_delay(1000) == 360


def test_active_deadline_fails_and_kills_pods() -> None:
    j = job(completions=2, parallelism=2, activeDeadlineSeconds=30, status={"startTime": rfc3339(T0)})
    running = [pod(name="a"), pod(name="b")]
    plan = plan_job(j, running, T0 + timedelta(seconds=10))
    assert plan.requeue_after == pytest.approx(20)
    plan = plan_job(j, running, T0 + timedelta(seconds=30))
    assert sorted(d.name for d in plan.delete) == ["a", "b"]
    assert plan.status["conditions"][0]["reason"] == "DeadlineExceeded"


# ------------------------------------------------------------------------------------------------ indexed


def test_indexed_job_creates_one_pod_per_pending_index() -> None:
    j = job(completionMode="Indexed", completions=4, parallelism=3, status={"startTime": rfc3339(T0)})
    assert plan_job(j, [], T0).create == [0, 1, 2]
    j["status"]["completedIndexes"] = "0"
    plan = plan_job(j, [pod(index=2)], T0)
    assert plan.create == [1, 3]


def test_indexed_successes_fill_completed_indexes() -> None:
    j = job(completionMode="Indexed", completions=3, parallelism=3, status={"startTime": rfc3339(T0)})
    pods = [pod("Succeeded", index=0, name="a"), pod("Succeeded", index=2, name="c"), pod(index=1)]
    plan = plan_job(j, pods, T0)
    assert plan.flush_status is not None and plan.flush_status["completedIndexes"] == "0,2"
    assert plan.status["completedIndexes"] == "0,2"
    assert plan.status["succeeded"] == 2
    # A second success of an index already done does not count twice.
    j2 = apply_counts(j, plan)
    plan = plan_job(j2, [pod("Succeeded", index=0, name="dup")], T0)
    assert plan.status["succeeded"] == 2


def test_indexed_duplicates_and_out_of_range_pods_are_deleted() -> None:
    j = job(completionMode="Indexed", completions=2, parallelism=2, status={"startTime": rfc3339(T0)})
    pods = [pod(index=0, name="a", ready=True), pod(index=0, name="b"), pod(index=5, name="c")]
    plan = plan_job(j, pods, T0)
    assert sorted(d.name for d in plan.delete) == ["b", "c"]


def test_pod_for_indexed_job_carries_the_index() -> None:
    j = job(completionMode="Indexed", completions=3)
    j["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    body = pod_for(j, 2)
    meta = body["metadata"]
    assert meta["generateName"] == "j-2-"
    assert meta["annotations"][COMPLETION_INDEX] == "2"
    assert meta["labels"][COMPLETION_INDEX] == "2"
    assert meta["labels"]["job-name"] == "j"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": "j",
            "uid": "job-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    env = body["spec"]["containers"][0]["env"]
    assert env[0] == {"name": "A", "value": "1"}
    assert env[1]["name"] == INDEX_ENV
    assert env[1]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{COMPLETION_INDEX}']"
    assert body["spec"]["hostname"] == "j-2"
    # The job's own template is untouched.
    assert len(j["spec"]["template"]["spec"]["containers"][0]["env"]) == 1


def test_pod_for_non_indexed_job() -> None:
    body = pod_for(job(), None)
    assert body["metadata"]["generateName"] == "j-"
    assert "annotations" not in body["metadata"]
    assert "env" not in body["spec"]["containers"][0]


@given(hs.sets(hs.integers(min_value=0, max_value=200)))
def test_index_intervals_round_trip(indexes: set[int]) -> None:
    text = format_indexes(indexes)
    assert parse_indexes(text) == indexes
    assert format_indexes(parse_indexes(text)) == text


def test_format_indexes() -> None:
    assert format_indexes([0, 1, 2, 4, 6, 7]) == "0-2,4,6-7"
    assert parse_indexes("1-3,x,7") == {1, 2, 3, 7}


# ------------------------------------------------------------------------------------------------ suspend / TTL


def test_suspended_job_deletes_active_pods_and_says_so() -> None:
    j = job(completions=2, parallelism=2, suspend=True, status={"startTime": rfc3339(T0)})
    plan = plan_job(j, [pod(name="a")], T0)
    assert [d.name for d in plan.delete] == ["a"]
    cond = plan.status["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Suspended", "True", "JobSuspended")
    assert reasons(plan) == ["Suspended"]


def test_job_created_suspended_has_no_start_time_until_resumed() -> None:
    j = job(suspend=True)
    plan = plan_job(j, [], T0)
    assert "startTime" not in plan.status and plan.create == []
    j2 = apply_counts(j, plan)
    j2["spec"]["suspend"] = False
    later = T0 + timedelta(minutes=1)
    plan = plan_job(j2, [], later)
    assert plan.status["startTime"] == rfc3339(later)
    assert plan.status["conditions"][0]["status"] == "False"
    assert reasons(plan) == ["Resumed"]
    assert plan.create == [None]


def test_deadline_does_not_run_while_suspended() -> None:
    j = job(suspend=True, activeDeadlineSeconds=5, status={"startTime": rfc3339(T0)})
    plan = plan_job(j, [], T0 + timedelta(hours=1))
    assert not any(c["type"] == "FailureTarget" for c in plan.status["conditions"])


def test_ttl_after_finished() -> None:
    finished = {
        "startTime": rfc3339(T0),
        "completionTime": rfc3339(T0),
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": rfc3339(T0)}],
    }
    j = job(ttlSecondsAfterFinished=60, status=finished)
    plan = plan_job(j, [], T0 + timedelta(seconds=20))
    assert not plan.delete_job and plan.requeue_after == pytest.approx(40)
    assert plan_job(j, [], T0 + timedelta(seconds=60)).delete_job
    assert not plan_job(job(status=finished), [], T0 + timedelta(days=9)).delete_job


@given(
    phases=hs.lists(hs.sampled_from(["Pending", "Running", "Succeeded", "Failed"]), max_size=12),
    completions=hs.integers(min_value=1, max_value=10),
    parallelism=hs.integers(min_value=0, max_value=6),
    indexed=hs.booleans(),
)
def test_plan_never_exceeds_parallelism_or_remaining_completions(
    phases: list[str], completions: int, parallelism: int, indexed: bool
) -> None:
    mode = "Indexed" if indexed else "NonIndexed"
    j = job(
        completions=completions,
        parallelism=parallelism,
        completionMode=mode,
        backoffLimit=100,
        status={"startTime": rfc3339(T0)},
    )
    pods = [pod(ph, index=i % completions if indexed else None) for i, ph in enumerate(phases)]
    plan = plan_job(j, pods, T0 + timedelta(hours=1))
    succeeded = plan.status.get("succeeded", 0)
    running = plan.status.get("active", 0) + len(plan.create)
    if not plan.delete:
        assert running <= parallelism
        assert running <= max(0, completions - succeeded)
    assert not (plan.create and plan.delete), "one sync either creates or deletes"
    if indexed:
        assert len(set(plan.create)) == len(plan.create)
        assert all(0 <= i < completions for i in plan.create if i is not None)
