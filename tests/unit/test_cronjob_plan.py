"""CronJob planning (pure): schedules, time zones, missed starts, concurrency, history, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from corral.controllers.cronplan import (
    SCHEDULED_TIMESTAMP,
    Missed,
    Schedule,
    ScheduleError,
    job_for,
    job_name,
    most_recent_schedule,
    next_schedule_delay,
    plan_cronjob,
)
from corral.util.clock import rfc3339

JSON = dict[str, Any]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cronjob(
    schedule: str = "*/5 * * * *", *, created: datetime = T0, status: JSON | None = None, **spec: Any
) -> JSON:
    body: JSON = {
        "schedule": schedule,
        "concurrencyPolicy": "Allow",
        "suspend": False,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {
            "metadata": {"labels": {"team": "a"}},
            "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
            },
        },
    }
    body.update(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "cj", "namespace": "ns", "uid": "cj-uid", "creationTimestamp": rfc3339(created)},
        "spec": body,
        "status": status or {},
    }


def job(
    name: str,
    *,
    uid: str | None = None,
    finished: str | None = None,
    start: datetime = T0,
    done: datetime | None = None,
) -> JSON:
    status: JSON = {"startTime": rfc3339(start)}
    if finished:
        status["conditions"] = [{"type": finished, "status": "True"}]
        if finished == "Complete":
            status["completionTime"] = rfc3339(done or start)
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid or f"uid-{name}",
            "ownerReferences": [{"kind": "CronJob", "name": "cj", "uid": "cj-uid", "controller": True}],
        },
        "status": status,
    }


def ref(name: str) -> JSON:
    return {"kind": "Job", "name": name, "namespace": "ns", "uid": f"uid-{name}"}


def reasons(plan: Any) -> list[str]:
    return [e.reason for e in plan.events]


# ------------------------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize(
    ("text", "after", "expected"),
    [
        ("*/5 * * * *", T0, T0 + timedelta(minutes=5)),
        ("@hourly", T0 + timedelta(minutes=1), T0 + timedelta(hours=1)),
        ("@daily", T0, T0 + timedelta(days=1)),
        ("@midnight", T0, T0 + timedelta(days=1)),
        ("@weekly", T0, datetime(2026, 1, 4, tzinfo=UTC)),  # 2026-01-04 is a Sunday
        ("@monthly", T0, datetime(2026, 2, 1, tzinfo=UTC)),
        ("@yearly", T0, datetime(2027, 1, 1, tzinfo=UTC)),
        ("0 9 * * 1-5", T0, datetime(2026, 1, 1, 9, tzinfo=UTC)),
    ],
)
def test_schedule_next(text: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(text).next(after) == expected


def test_schedule_in_a_time_zone() -> None:
    # 09:00 in Tokyo (UTC+9) is midnight UTC.
    schedule = Schedule.parse("0 9 * * *", "Asia/Tokyo")
    assert schedule.next(T0) == datetime(2026, 1, 2, 0, tzinfo=UTC)
    # New York: 05:00 UTC in winter, 04:00 UTC in summer.
    ny = Schedule.parse("0 0 * * *", "America/New_York")
    assert ny.next(T0) == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert ny.next(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 1, 4, tzinfo=UTC)


def test_bad_schedules_and_zones() -> None:
    from zoneinfo import ZoneInfoNotFoundError

    with pytest.raises(ScheduleError):
        Schedule.parse("every minute")
    with pytest.raises(ZoneInfoNotFoundError):
        Schedule.parse("* * * * *", "Mars/Olympus")
    with pytest.raises(ScheduleError):
        Schedule.parse("0 0 31 2 *").next(T0)  # February 31st never comes


def test_most_recent_schedule_counts_missed_times() -> None:
    cj = cronjob("* * * * *")
    schedule = Schedule.parse("* * * * *")
    assert most_recent_schedule(cj, T0 + timedelta(seconds=30), schedule, include_deadline=True)[1:] == (
        None,
        Missed.NONE,
    )
    assert most_recent_schedule(cj, T0 + timedelta(seconds=90), schedule, include_deadline=True)[1:] == (
        T0 + timedelta(minutes=1),
        Missed.FEW,
    )
    _, recent, missed = most_recent_schedule(
        cj, T0 + timedelta(minutes=50, seconds=5), schedule, include_deadline=True
    )
    assert (recent, missed) == (T0 + timedelta(minutes=50), Missed.FEW)
    _, recent, missed = most_recent_schedule(cj, T0 + timedelta(hours=5), schedule, include_deadline=True)
    assert (recent, missed) == (T0 + timedelta(hours=5), Missed.MANY)


def test_irregular_schedule_most_recent_is_exact() -> None:
    cj = cronjob("30 6-16/4 * * 1-5")
    schedule = Schedule.parse("30 6-16/4 * * 1-5")
    now = datetime(2026, 1, 9, 15, tzinfo=UTC)  # a Friday
    _, recent, _ = most_recent_schedule(cj, now, schedule, include_deadline=False)
    assert recent == datetime(2026, 1, 9, 14, 30, tzinfo=UTC)


def test_next_schedule_delay() -> None:
    cj = cronjob("*/5 * * * *")
    assert next_schedule_delay(cj, T0 + timedelta(minutes=1), Schedule.parse("*/5 * * * *")) == pytest.approx(
        240.1
    )


# ------------------------------------------------------------------------------------------------ plan


def test_nothing_due_yet_requeues_until_the_next_time() -> None:
    plan = plan_cronjob(cronjob(), [], T0 + timedelta(minutes=2))
    assert plan.create is None
    assert plan.requeue_after == pytest.approx(180.1)


def test_due_time_creates_the_deterministic_job() -> None:
    now = T0 + timedelta(minutes=5, seconds=3)
    plan = plan_cronjob(cronjob(), [], now)
    assert plan.create is not None and plan.scheduled == T0 + timedelta(minutes=5)
    name = job_name("cj", T0 + timedelta(minutes=5))
    assert name == f"cj-{int((T0 + timedelta(minutes=5)).timestamp()) // 60}"
    assert plan.create["metadata"]["name"] == name
    assert plan.create["metadata"]["labels"] == {"team": "a"}
    assert plan.create["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-01-01T00:05:00Z"
    owner = plan.create["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "CronJob" and owner["uid"] == "cj-uid" and owner["controller"] is True
    assert plan.requeue_after == pytest.approx(300 - 3 + 0.1)


def test_scheduled_timestamp_is_in_the_cronjob_time_zone() -> None:
    cj = cronjob("0 9 * * *", timeZone="Asia/Tokyo")
    body = job_for(cj, datetime(2026, 1, 2, 0, tzinfo=UTC), Schedule.parse("0 9 * * *", "Asia/Tokyo").zone)
    assert body["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-01-02T09:00:00+09:00"


def test_already_scheduled_time_is_not_started_again() -> None:
    scheduled = T0 + timedelta(minutes=5)
    cj = cronjob(status={"lastScheduleTime": rfc3339(scheduled)})
    assert plan_cronjob(cj, [], scheduled + timedelta(seconds=10)).create is None


def test_only_the_most_recent_missed_time_starts() -> None:
    cj = cronjob(status={"lastScheduleTime": rfc3339(T0)})
    plan = plan_cronjob(cj, [], T0 + timedelta(minutes=23))
    assert plan.scheduled == T0 + timedelta(minutes=20)


def test_starting_deadline_missed() -> None:
    cj = cronjob("0 * * * *", startingDeadlineSeconds=60)
    plan = plan_cronjob(cj, [], T0 + timedelta(hours=1, minutes=2))
    assert plan.create is None
    # With the deadline the controller does not even look that far back; without, it is a miss event.
    assert reasons(plan) == []
    cj = cronjob("0 * * * *", startingDeadlineSeconds=200)
    plan = plan_cronjob(cj, [], T0 + timedelta(hours=1, minutes=2))
    assert plan.create is not None


def test_starting_deadline_bounds_how_late_a_start_may_be() -> None:
    # The look-back floor (now - deadline) is below the last schedule, yet the start is past the deadline.
    cj = cronjob("* * * * *", startingDeadlineSeconds=10, status={"lastScheduleTime": rfc3339(T0)})
    plan = plan_cronjob(cj, [], T0 + timedelta(minutes=1, seconds=5))
    assert plan.create is not None
    plan = plan_cronjob(cj, [], T0 + timedelta(minutes=1, seconds=11))
    assert plan.create is None


def test_too_many_missed_still_starts_the_latest() -> None:
    cj = cronjob("* * * * *")
    plan = plan_cronjob(cj, [], T0 + timedelta(hours=3))
    assert "TooManyMissedTimes" in reasons(plan)
    assert plan.scheduled == T0 + timedelta(hours=3)


def test_forbid_skips_while_active() -> None:
    cj = cronjob(
        concurrencyPolicy="Forbid", status={"active": [ref("cj-1")], "lastScheduleTime": rfc3339(T0)}
    )
    plan = plan_cronjob(cj, [job("cj-1")], T0 + timedelta(minutes=5))
    assert plan.create is None
    assert reasons(plan) == ["JobAlreadyActive"]


def test_replace_deletes_active_then_creates() -> None:
    cj = cronjob(
        concurrencyPolicy="Replace", status={"active": [ref("cj-1")], "lastScheduleTime": rfc3339(T0)}
    )
    plan = plan_cronjob(cj, [job("cj-1")], T0 + timedelta(minutes=5))
    assert [d.name for d in plan.replace] == ["cj-1"]
    assert plan.create is not None
    assert "active" not in plan.status
    assert "SuccessfulDelete" in reasons(plan)


def test_allow_runs_concurrently() -> None:
    cj = cronjob(status={"active": [ref("cj-1")], "lastScheduleTime": rfc3339(T0)})
    plan = plan_cronjob(cj, [job("cj-1")], T0 + timedelta(minutes=5))
    assert plan.create is not None and plan.replace == []


def test_suspend_and_deletion_start_nothing() -> None:
    assert plan_cronjob(cronjob(suspend=True), [], T0 + timedelta(hours=1)).create is None
    cj = cronjob()
    cj["metadata"]["deletionTimestamp"] = rfc3339(T0)
    assert plan_cronjob(cj, [], T0 + timedelta(hours=1)).create is None


def test_unknown_time_zone_and_bad_schedule_are_events() -> None:
    assert reasons(plan_cronjob(cronjob(timeZone="Nowhere/Land"), [], T0)) == ["UnknownTimeZone"]
    assert reasons(plan_cronjob(cronjob("61 * * * *"), [], T0)) == ["UnparseableSchedule"]
    assert reasons(plan_cronjob(cronjob("0 0 31 2 *"), [], T0)) == ["InvalidSchedule"]


def test_finished_jobs_leave_active_and_set_last_successful_time() -> None:
    done = T0 + timedelta(minutes=1)
    cj = cronjob(status={"active": [ref("cj-1"), ref("cj-2")], "lastScheduleTime": rfc3339(T0)})
    plan = plan_cronjob(
        cj, [job("cj-1", finished="Complete", done=done), job("cj-2")], T0 + timedelta(minutes=2)
    )
    assert [r["name"] for r in plan.status["active"]] == ["cj-2"]
    assert plan.status["lastSuccessfulTime"] == rfc3339(done)
    assert plan.events[0].message == "Saw completed job: cj-1, condition: Complete"


def test_active_ref_missing_from_cache_needs_a_lookup_first() -> None:
    cj = cronjob(status={"active": [ref("cj-1")], "lastScheduleTime": rfc3339(T0)})
    plan = plan_cronjob(cj, [], T0 + timedelta(minutes=1))
    assert [r["name"] for r in plan.lookups] == ["cj-1"]
    assert plan.status["active"] == [ref("cj-1")]
    plan = plan_cronjob(cj, [], T0 + timedelta(minutes=1), missing={"uid-cj-1"})
    assert "active" not in plan.status
    assert reasons(plan) == ["MissingJob"]


def test_unexpected_unfinished_job_is_reported() -> None:
    plan = plan_cronjob(cronjob(), [job("manual")], T0 + timedelta(minutes=1))
    assert plan.unexpected == ["manual"]


def test_history_limits_delete_the_oldest_finished_jobs() -> None:
    jobs = [job(f"ok-{i}", finished="Complete", start=T0 + timedelta(minutes=i)) for i in range(5)]
    jobs += [job(f"bad-{i}", finished="Failed", start=T0 + timedelta(minutes=i)) for i in range(3)]
    jobs.append(job("never-started", finished="Failed"))
    jobs[-1]["status"].pop("startTime")
    plan = plan_cronjob(cronjob(), jobs, T0 + timedelta(minutes=1))
    assert sorted(d.name for d in plan.cleanup) == ["bad-0", "bad-1", "bad-2", "ok-0", "ok-1"]
    assert reasons(plan).count("SuccessfulDelete") == 5


@given(
    minutes=hs.integers(min_value=0, max_value=60 * 24 * 120),
    seconds=hs.integers(min_value=0, max_value=59),
    schedule=hs.sampled_from(
        ["* * * * *", "*/7 * * * *", "0 * * * *", "30 6-16/4 * * 1-5", "@daily", "30 2 * * *"]
    ),
    zone=hs.sampled_from([None, "America/New_York", "Asia/Kolkata"]),
)
def test_most_recent_schedule_is_the_latest_time_not_after_now(
    minutes: int, seconds: int, schedule: str, zone: str | None
) -> None:
    cj = cronjob(schedule, timeZone=zone)
    parsed = Schedule.parse(schedule, zone)
    now = T0 + timedelta(minutes=minutes, seconds=seconds)
    _, recent, _ = most_recent_schedule(cj, now, parsed, include_deadline=False)
    if recent is None:
        assert parsed.next(T0) > now
    else:
        assert T0 < recent <= now
        assert parsed.next(recent) > now
