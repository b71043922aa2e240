"""CronJob planning: from (cronjob, its jobs, now) to the job to start, jobs to delete and the status. Pure.

Follows upstream's CronJob controller v2 (``pkg/controller/cronjob``):

- Schedules are standard 5-field cron or ``@hourly``-style macros, evaluated in ``spec.timeZone`` (UTC when
  unset) with croniter.
- Only the **most recent** missed schedule time is started. With ``startingDeadlineSeconds`` the controller
  never looks further back than the deadline, and a start later than ``scheduled + deadline`` is a miss
  (``MissSchedule``). More than 100 missed times since the last one emits ``TooManyMissedTimes`` (the job
  still starts).
- The job for a scheduled time is named ``<cronjob>-<minutes since the epoch>``, so a repeated create is an
  AlreadyExists, never a second job.
- ``concurrencyPolicy``: Allow starts regardless, Forbid skips while a job is active (``JobAlreadyActive``),
  Replace deletes the active jobs first.
- ``status.active`` follows the owned jobs (finished ones leave with ``SawCompletedJob``; ones that are
  gone, confirmed by the caller with a live lookup, with ``MissingJob``); ``lastScheduleTime`` and
  ``lastSuccessfulTime``; finished jobs beyond the history limits are deleted, oldest first.
- The plan says how long until the next schedule time (+100 ms), which the controller returns as its
  requeue delay; with an injected clock tests drive schedules by hand.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from corral.util.clock import parse_rfc3339, rfc3339

JSON = dict[str, Any]

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1  # seconds after the schedule time, as upstream, so the clock is surely past it
TOO_MANY_MISSED = 100
MSG_TOO_MANY_MISSED = (
    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleError(ValueError):
    """The schedule does not parse, or never fires."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression bound to a time zone; :meth:`next` is strictly after its argument."""

    expression: str
    zone: tzinfo

    @classmethod
    def parse(cls, text: str, time_zone: str | None = None) -> Schedule:
        """Raises :class:`ScheduleError` for a bad expression, ``ZoneInfoNotFoundError`` for a bad zone."""
        zone: tzinfo = UTC
        if time_zone:
            try:
                zone = ZoneInfo(time_zone)
            except (ValueError, OSError) as exc:
                raise ZoneInfoNotFoundError(str(exc)) from exc
        expression = _MACROS.get(text.strip(), text.strip())
        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            raise ScheduleError(f"unparseable schedule: {text!r}")
        return cls(expression, zone)

    def next(self, after: datetime) -> datetime:
        try:
            found = croniter(self.expression, after.astimezone(self.zone)).get_next(datetime)
        except CroniterError as exc:
            raise ScheduleError(str(exc)) from exc
        assert isinstance(found, datetime)
        return found.astimezone(UTC)

    def latest(self, now: datetime) -> datetime:
        """The last schedule time at or before ``now``."""
        try:
            found = croniter(self.expression, (now + timedelta(seconds=1)).astimezone(self.zone)).get_prev(
                datetime
            )
            assert isinstance(found, datetime)
            if found > now:  # now + 1 s crossed a schedule time
                found = croniter(self.expression, found).get_prev(datetime)
        except CroniterError as exc:
            raise ScheduleError(str(exc)) from exc
        assert isinstance(found, datetime)
        return found.astimezone(UTC)


class Missed(enum.Enum):
    NONE = "none"
    FEW = "few"
    MANY = "many"


def _dt(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def most_recent_schedule(
    cj: JSON, now: datetime, schedule: Schedule, *, include_deadline: bool
) -> tuple[datetime, datetime | None, Missed]:
    """(earliest time considered, most recent schedule time ≤ now or None, how many were missed)."""
    meta = cj.get("metadata") or {}
    spec = cj.get("spec") or {}
    status = cj.get("status") or {}
    earliest = _dt(status.get("lastScheduleTime")) or _dt(meta.get("creationTimestamp")) or now
    deadline = spec.get("startingDeadlineSeconds")
    if include_deadline and isinstance(deadline, int):
        floor = now - timedelta(seconds=deadline)
        earliest = max(earliest, floor)
    t1 = schedule.next(earliest)
    if now < t1:
        return earliest, None, Missed.NONE
    t2 = schedule.next(t1)
    if now < t2:
        return earliest, t1, Missed.FEW
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    # Upstream's rough count of missed times (the interval between the first two, fitted into the gap).
    missed = int((now - t1).total_seconds()) // between + 1
    # Upstream jumps close to ``now`` by that interval and walks forward, which misses the latest time of
    # irregular schedules ("30 6-16/4 * * 1-5"); walking back from ``now`` is exact.
    recent = max(t1, schedule.latest(now))
    return earliest, recent, Missed.MANY if missed > TOO_MANY_MISSED else Missed.FEW


def next_schedule_delay(cj: JSON, now: datetime, schedule: Schedule) -> float:
    earliest, recent, _ = most_recent_schedule(cj, now, schedule, include_deadline=False)
    following = schedule.next(recent or earliest)
    return max(0.0, (following - now).total_seconds()) + NEXT_SCHEDULE_DELTA


def job_name(cj_name: str, scheduled: datetime) -> str:
    return f"{cj_name}-{int(scheduled.timestamp()) // 60}"


def job_for(cj: JSON, scheduled: datetime, zone: tzinfo) -> JSON:
    """The Job a CronJob starts for ``scheduled`` (upstream ``getJobFromTemplate2``)."""
    meta = cj.get("metadata") or {}
    template = (cj.get("spec") or {}).get("jobTemplate") or {}
    tmeta = template.get("metadata") or {}
    annotations = dict(tmeta.get("annotations") or {})
    annotations[SCHEDULED_TIMESTAMP] = _rfc3339_in(scheduled, zone)
    job_meta: JSON = {
        "name": job_name(str(meta.get("name", "")), scheduled),
        "namespace": meta.get("namespace"),
        "annotations": annotations,
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if tmeta.get("labels"):
        job_meta["labels"] = dict(tmeta["labels"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": job_meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def _rfc3339_in(moment: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S%z")
    if text.endswith("+0000"):
        return text[:-5] + "Z"
    return f"{text[:-2]}:{text[-2:]}"


def job_ref(job: JSON) -> JSON:
    meta = job.get("metadata") or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }


def finished_condition(job: JSON) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class JobDeletion:
    name: str
    uid: str


@dataclass(slots=True)
class CronPlan:
    status: JSON
    lookups: list[JSON] = field(default_factory=list)
    """Active refs absent from the cache: the caller checks them live, then plans again with ``missing``."""
    unexpected: list[str] = field(default_factory=list)
    """Unfinished owned jobs not in ``status.active`` (a stale status, or someone else's job)."""
    replace: list[JobDeletion] = field(default_factory=list)
    """Active jobs to delete before starting the new one (concurrencyPolicy Replace)."""
    create: JSON | None = None
    scheduled: datetime | None = None
    cleanup: list[JobDeletion] = field(default_factory=list)
    """Finished jobs beyond the history limits."""
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def plan_cronjob(cj: JSON, jobs: Sequence[JSON], now: datetime, missing: Collection[str] = ()) -> CronPlan:
    """``jobs`` are the jobs ``cj`` controls; ``missing`` the uids of active refs confirmed gone."""
    meta = cj.get("metadata") or {}
    spec = cj.get("spec") or {}
    status: JSON = copy.deepcopy(cj.get("status") or {})
    plan = CronPlan(status=status)
    active: list[JSON] = list(status.get("active") or [])
    active_uids = {str(r.get("uid")) for r in active}
    by_uid = {str((j.get("metadata") or {}).get("uid")): j for j in jobs}

    last_success = _dt(status.get("lastSuccessfulTime"))
    for uid, job in by_uid.items():
        finished = finished_condition(job)
        name = str(job["metadata"].get("name"))
        if finished is None and uid not in active_uids:
            plan.unexpected.append(name)
        elif finished is not None and uid in active_uids:
            active = [r for r in active if str(r.get("uid")) != uid]
            plan.events.append(
                Event("Normal", "SawCompletedJob", f"Saw completed job: {name}, condition: {finished}")
            )
        if finished == "Complete":
            done = _dt((job.get("status") or {}).get("completionTime"))
            if done is not None and (last_success is None or done > last_success):
                last_success = done
    if last_success is not None:
        status["lastSuccessfulTime"] = rfc3339(last_success)
    for ref in list(active):
        uid = str(ref.get("uid"))
        if uid in by_uid:
            continue
        if uid in missing:
            active = [r for r in active if str(r.get("uid")) != uid]
            plan.events.append(Event("Normal", "MissingJob", f"Active job went missing: {ref.get('name')}"))
        else:
            plan.lookups.append(ref)
    _set_active(status, active)

    if meta.get("deletionTimestamp"):
        return plan
    plan.cleanup = _history_cleanup(spec, list(by_uid.values()))
    cleaned = {d.uid for d in plan.cleanup}
    if cleaned:
        active = [r for r in active if str(r.get("uid")) not in cleaned]
        _set_active(status, active)
        plan.events += [Event("Normal", "SuccessfulDelete", f"Deleted job {d.name}") for d in plan.cleanup]

    try:
        schedule = Schedule.parse(str(spec.get("schedule", "")), spec.get("timeZone"))
    except ZoneInfoNotFoundError as exc:
        plan.events.append(
            Event("Warning", "UnknownTimeZone", f"invalid timeZone: {spec.get('timeZone')!r}: {exc}")
        )
        return plan
    except ScheduleError as exc:
        plan.events.append(
            Event("Warning", "UnparseableSchedule", f"unparseable schedule: {spec.get('schedule')!r} : {exc}")
        )
        return plan
    if spec.get("suspend"):
        return plan
    try:
        _, scheduled, missed = most_recent_schedule(cj, now, schedule, include_deadline=True)
        delay = next_schedule_delay(cj, now, schedule)
    except ScheduleError as exc:
        plan.events.append(
            Event("Warning", "InvalidSchedule", f"invalid schedule: {spec.get('schedule')} : {exc}")
        )
        return plan
    plan.requeue_after = delay
    if scheduled is None:
        return plan
    if missed is Missed.MANY:
        plan.events.append(Event("Warning", "TooManyMissedTimes", MSG_TOO_MANY_MISSED))
    deadline = spec.get("startingDeadlineSeconds")
    if isinstance(deadline, int) and scheduled + timedelta(seconds=deadline) < now:
        when = scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000")
        plan.events.append(Event("Warning", "MissSchedule", f"Missed scheduled time to start a job: {when}"))
        return plan
    name = job_name(str(meta.get("name", "")), scheduled)
    if any(r.get("name") == name for r in active) or _dt(status.get("lastScheduleTime")) == scheduled:
        return plan  # this time was already handled
    policy = spec.get("concurrencyPolicy", "Allow")
    if policy == "Forbid" and active:
        plan.events.append(
            Event(
                "Normal",
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
        )
        return plan
    if policy == "Replace" and active:
        plan.replace = [JobDeletion(str(r.get("name")), str(r.get("uid"))) for r in active]
        _set_active(status, [])
        plan.events += [Event("Normal", "SuccessfulDelete", f"Deleted job {d.name}") for d in plan.replace]
    plan.create = job_for(cj, scheduled, schedule.zone)
    plan.scheduled = scheduled
    return plan


def _set_active(status: JSON, active: list[JSON]) -> None:
    if active:
        status["active"] = active
    else:
        status.pop("active", None)


def _history_cleanup(spec: JSON, jobs: list[JSON]) -> list[JobDeletion]:
    out: list[JobDeletion] = []
    for kind, limit_key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
        limit = spec.get(limit_key)
        if not isinstance(limit, int):
            continue
        finished = [
            j for j in jobs if finished_condition(j) == kind and not j["metadata"].get("deletionTimestamp")
        ]
        finished.sort(key=_start_order)
        for job in finished[: max(0, len(finished) - limit)]:
            out.append(JobDeletion(str(job["metadata"]["name"]), str(job["metadata"].get("uid"))))
    return out


def _start_order(job: JSON) -> tuple[int, float, str]:
    """Oldest first by ``status.startTime``; never-started jobs sort last (upstream ``byJobStartTime``)."""
    start = _dt((job.get("status") or {}).get("startTime"))
    name = str(job["metadata"].get("name"))
    return (1, 0.0, name) if start is None else (0, start.timestamp(), name)
