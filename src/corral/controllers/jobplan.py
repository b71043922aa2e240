"""Job planning: from (job, its pods, now) to the pods to create or delete and the status to write. Pure.

The Job controller (``job.py``) applies what :func:`plan_job` returns; nothing here does IO or reads a clock.
Behaviour follows upstream's job controller (``pkg/controller/job``), trimmed to what Corral serves:

- ``completions`` / ``parallelism``: keep ``min(parallelism, completions - succeeded)`` pods active; without
  ``completions`` (a work queue) keep ``parallelism`` until one succeeds, then let the rest finish.
- ``completionMode: Indexed``: one pod per pending index, with the index in the
  ``batch.kubernetes.io/job-completion-index`` annotation and label and in ``$JOB_COMPLETION_INDEX``;
  ``status.completedIndexes`` is the interval list of indexes that succeeded.
- ``backoffLimit``: pod failures (``status.failed``; with ``restartPolicy: OnFailure`` container restarts of
  active pods) beyond it fail the job (``BackoffLimitExceeded``); replacements wait an exponential delay
  after the last failure (10 s doubling to 6 min; the base is ``corral.dev/job-backoff-base``).
- ``activeDeadlineSeconds`` fails the job (``DeadlineExceeded``) and kills its pods; ``suspend`` deletes the
  active pods and stops the clock; ``ttlSecondsAfterFinished`` deletes a finished job.
- Terminal conditions come in two steps as in 1.32: ``FailureTarget`` / ``SuccessCriteriaMet`` when decided,
  ``Failed`` / ``Complete`` once no pod of the job is still running or terminating.

Counting terminated pods exactly once, without a finalizer on every pod: a newly terminated pod's uid goes
into ``status.uncountedTerminatedPods`` (written first), then the pod is marked counted (annotation
``corral.dev/job-counted``), then the uid moves into ``succeeded``/``failed``. A crash anywhere in between
neither loses nor doubles a count. A pod deleted before the controller ever saw it terminate is not counted
(upstream's tracking finalizer would hold it; Corral's pods do not carry one).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from corral.util.clock import parse_rfc3339, rfc3339

JSON = dict[str, Any]

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
COUNTED_ANNOTATION = "corral.dev/job-counted"
BACKOFF_BASE_ANNOTATION = "corral.dev/job-backoff-base"
INDEX_ENV = "JOB_COMPLETION_INDEX"

DEFAULT_BACKOFF = 10.0
MAX_BACKOFF = 360.0
MAX_PODS_PER_SYNC = 500

# Terminal and interim condition types.
COMPLETE = "Complete"
FAILED = "Failed"
SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"
FAILURE_TARGET = "FailureTarget"
SUSPENDED = "Suspended"

MSG_BACKOFF = "Job has reached the specified backoff limit"
MSG_DEADLINE = "Job was active longer than specified deadline"
MSG_COMPLETE = "Reached expected number of succeeded pods"


# ------------------------------------------------------------------------------------------------ views


def _dt(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def _index(value: Any) -> int | None:
    if not isinstance(value, str) or not value.isdigit():
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class PodView:
    """The parts of a pod the job controller reasons about."""

    name: str
    uid: str
    phase: str
    deleting: bool = False
    counted: bool = False
    ready: bool = False
    scheduled: bool = True
    index: int | None = None
    created: datetime | None = None
    finished: datetime | None = None
    restarts: int = 0

    @classmethod
    def from_pod(cls, pod: JSON) -> PodView:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        annotations = meta.get("annotations") or {}
        statuses = [
            s
            for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
            if isinstance(s, dict)
        ]
        ends = (_dt(((s.get("state") or {}).get("terminated") or {}).get("finishedAt")) for s in statuses)
        finished = [f for f in ends if f is not None]
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            phase=str(status.get("phase") or "Pending"),
            deleting=bool(meta.get("deletionTimestamp")),
            counted=annotations.get(COUNTED_ANNOTATION) == "true",
            ready=ready,
            scheduled=bool((pod.get("spec") or {}).get("nodeName")),
            index=_index(annotations.get(COMPLETION_INDEX)),
            created=_dt(meta.get("creationTimestamp")),
            finished=max(finished) if finished else None,
            restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
        )

    @property
    def terminated(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def active(self) -> bool:
        return not self.terminated and not self.deleting

    @property
    def outcome(self) -> str | None:
        """``succeeded``/``failed`` once the pod counts as finished (a deleted unfinished pod has failed)."""
        if self.phase == "Succeeded":
            return "succeeded"
        if self.phase == "Failed" or self.deleting:
            return "failed"
        return None


# ------------------------------------------------------------------------------------------------ indexes


def parse_indexes(text: Any) -> set[int]:
    """``"0-2,5"`` → {0, 1, 2, 5}; malformed parts are skipped."""
    out: set[int] = set()
    if not isinstance(text, str):
        return out
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def format_indexes(indexes: Iterable[int]) -> str:
    ordered = sorted(set(indexes))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


# ------------------------------------------------------------------------------------------------ helpers


def backoff_delay(failures: int, base: float = DEFAULT_BACKOFF, cap: float = MAX_BACKOFF) -> float:
    """Delay before replacing pods after ``failures`` consecutive failures: base·2^(n-1), capped."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 32)))


def backoff_base(job: JSON) -> float:
    raw = ((job.get("metadata") or {}).get("annotations") or {}).get(BACKOFF_BASE_ANNOTATION)
    try:
        value = float(raw) if raw is not None else DEFAULT_BACKOFF
    except ValueError:
        return DEFAULT_BACKOFF
    return value if math.isfinite(value) and value >= 0 else DEFAULT_BACKOFF


def remaining_backoff(pods: Sequence[PodView], now: datetime, base: float) -> float:
    """Seconds still to wait before creating replacements (0: create now)."""
    ends = [(p.finished or p.created, p.phase) for p in pods if p.terminated and not p.deleting]
    last_success = max((t for t, ph in ends if ph == "Succeeded" and t is not None), default=None)
    failures = [t for t, ph in ends if ph == "Failed" and t is not None]
    if last_success is not None:
        failures = [t for t in failures if t > last_success]
    if not failures:
        return 0.0
    wait = backoff_delay(len(failures), base) - (now - max(failures)).total_seconds()
    return max(0.0, wait)


def find_condition(status: JSON, ctype: str) -> JSON | None:
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


def condition_true(status: JSON, ctype: str) -> bool:
    cond = find_condition(status, ctype)
    return cond is not None and cond.get("status") == "True"


def _set_condition(status: JSON, ctype: str, value: str, reason: str, message: str, now: str) -> bool:
    """Add or update a condition; True when something changed."""
    conditions = status.setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") == ctype:
            if cond.get("status") == value and cond.get("reason") == reason:
                return False
            cond.update(
                status=value, reason=reason, message=message, lastProbeTime=now, lastTransitionTime=now
            )
            return True
    conditions.append(
        {
            "type": ctype,
            "status": value,
            "reason": reason,
            "message": message,
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
    )
    return True


def finished_at(job: JSON) -> datetime | None:
    """When a finished job finished (``completionTime``, or its Failed condition's transition)."""
    status = job.get("status") or {}
    if condition_true(status, COMPLETE):
        return _dt(status.get("completionTime")) or _dt(
            (find_condition(status, COMPLETE) or {}).get("lastTransitionTime")
        )
    if condition_true(status, FAILED):
        return _dt((find_condition(status, FAILED) or {}).get("lastTransitionTime"))
    return None


def is_finished(job: JSON) -> bool:
    status = job.get("status") or {}
    return condition_true(status, COMPLETE) or condition_true(status, FAILED)


# ------------------------------------------------------------------------------------------------ plan


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Deletion:
    name: str
    uid: str


@dataclass(slots=True)
class JobPlan:
    status: JSON
    """The status to end with."""
    flush_status: JSON | None = None
    """Written before anything else when newly terminated pods must be recorded as uncounted."""
    mark_counted: list[str] = field(default_factory=list)
    create: list[int | None] = field(default_factory=list)
    """One entry per pod to create: its completion index (Indexed) or None."""
    delete: list[Deletion] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    delete_job: bool = False
    """``ttlSecondsAfterFinished`` ran out."""

    def wake(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.requeue_after = seconds if self.requeue_after is None else min(self.requeue_after, seconds)


def _removal_order(pod: PodView) -> tuple[bool, int, bool, float]:
    """Upstream's ActivePods order: unscheduled, then pending, then not ready, then newest first."""
    created = pod.created.timestamp() if pod.created else 0.0
    return (pod.scheduled, 0 if pod.phase == "Pending" else 1, pod.ready, -created)


def plan_job(
    job: JSON,
    pod_objects: Sequence[JSON],
    now: datetime,
    *,
    may_manage: bool = True,
    counted_uids: Collection[str] = (),
) -> JobPlan:
    """Everything the controller should do about ``job`` given its pods (those it controls).

    ``may_manage`` False (earlier creations or deletions not yet seen) only updates the status.
    ``counted_uids`` are pods marked counted whose mark the caller's cache may not show yet.
    """
    spec = job.get("spec") or {}
    meta = job.get("metadata") or {}
    old_status: JSON = job.get("status") or {}
    status: JSON = copy.deepcopy(old_status)
    now_text = rfc3339(now)
    pods = [PodView.from_pod(p) for p in pod_objects]
    if counted_uids:
        pods = [replace(p, counted=True) if p.uid in counted_uids else p for p in pods]
    plan = JobPlan(status=status)

    # -- finished: nothing but the TTL.
    if is_finished(job):
        ttl = spec.get("ttlSecondsAfterFinished")
        done = finished_at(job)
        if isinstance(ttl, int) and done is not None and not meta.get("deletionTimestamp"):
            left = (done + timedelta(seconds=ttl) - now).total_seconds()
            if left <= 0:
                plan.delete_job = True
            else:
                plan.wake(left)
        return plan

    indexed = spec.get("completionMode") == "Indexed"
    completions = spec.get("completions")
    completions = int(completions) if isinstance(completions, int) else None
    parallelism = max(0, int(spec.get("parallelism") or 0))
    backoff_limit = int(spec.get("backoffLimit", 6) or 0)
    suspended = bool(spec.get("suspend"))

    # -- count terminated pods (two-phase, see the module docstring).
    uncounted = status.get("uncountedTerminatedPods") or {}
    unc_s: list[str] = list(uncounted.get("succeeded") or [])
    unc_f: list[str] = list(uncounted.get("failed") or [])
    completed = parse_indexes(status.get("completedIndexes"))
    fresh = False
    for pod in pods:
        if pod.counted or pod.uid in unc_s or pod.uid in unc_f:
            continue
        outcome = pod.outcome
        if outcome == "succeeded":
            if indexed and (pod.index is None or completions is None or pod.index >= completions):
                unc_f.append(pod.uid)  # a success outside the index range counts for nothing good
            else:
                unc_s.append(pod.uid)
                if indexed and pod.index is not None:
                    completed.add(pod.index)
            fresh = True
        elif outcome == "failed":
            unc_f.append(pod.uid)
            fresh = True
    if indexed:
        if completed:
            status["completedIndexes"] = format_indexes(completed)
        else:
            status.pop("completedIndexes", None)
    # After the marks every uncounted uid is counted: its pod is marked or gone.
    succeeded = len(completed) if indexed else int(status.get("succeeded") or 0) + len(unc_s)
    failed = int(status.get("failed") or 0) + len(unc_f)
    status["uncountedTerminatedPods"] = {}
    _set_count(status, "succeeded", succeeded)
    _set_count(status, "failed", failed)

    active = [p for p in pods if p.active]
    terminating = [p for p in pods if p.deleting and not p.terminated]

    # -- start time, suspend / resume.
    if suspended:
        if _set_condition(status, SUSPENDED, "True", "JobSuspended", "Job suspended", now_text):
            plan.events.append(Event("Normal", "Suspended", "Job suspended"))
    else:
        cond = find_condition(status, SUSPENDED)
        if cond is not None and cond.get("status") == "True":
            _set_condition(status, SUSPENDED, "False", "JobResumed", "Job resumed", now_text)
            plan.events.append(Event("Normal", "Resumed", "Job resumed"))
            status["startTime"] = now_text
        if not status.get("startTime"):
            status["startTime"] = now_text

    # -- decide the outcome, once.
    interim_failed = condition_true(status, FAILURE_TARGET)
    interim_done = condition_true(status, SUCCESS_CRITERIA_MET)
    if not interim_failed and not interim_done:
        restarts = sum(p.restarts for p in active)
        on_failure = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure"
        past_on_failure = on_failure and (restarts > 0 if backoff_limit == 0 else restarts >= backoff_limit)
        start = _dt(status.get("startTime"))
        deadline = spec.get("activeDeadlineSeconds")
        deadline_left: float | None = None
        if isinstance(deadline, int) and start is not None and not suspended:
            deadline_left = (start + timedelta(seconds=deadline) - now).total_seconds()
        if failed > backoff_limit or past_on_failure:
            _set_condition(status, FAILURE_TARGET, "True", "BackoffLimitExceeded", MSG_BACKOFF, now_text)
            interim_failed = True
        elif deadline_left is not None and deadline_left <= 0:
            _set_condition(status, FAILURE_TARGET, "True", "DeadlineExceeded", MSG_DEADLINE, now_text)
            interim_failed = True
        elif (completions is None and succeeded > 0 and not active) or (
            completions is not None and succeeded >= completions
        ):
            _set_condition(status, SUCCESS_CRITERIA_MET, "True", "CompletionsReached", MSG_COMPLETE, now_text)
            interim_done = True
        elif deadline_left is not None:
            plan.wake(deadline_left)

    if interim_failed or interim_done:
        # Decided: stop whatever still runs, and finish once nothing runs or terminates any more.
        plan.delete = [Deletion(p.name, p.uid) for p in active]
        if not active and not terminating:
            _finish(plan, status, now_text, failed=interim_failed)
    elif may_manage:
        wanted = Wanted(indexed, completions, parallelism, succeeded, suspended)
        _manage(plan, status, wanted, pods, active, now, backoff_base(job))

    # Pods this plan deletes are marked counted before they go, so their deletion is never counted later.
    # When the job is failing they count as failed (upstream keeps their tracking finalizer); scale-down and
    # suspend deletions count as nothing (upstream removes the finalizer first).
    pending = set(unc_s) | set(unc_f)
    marked_only: list[str] = []
    by_uid = {p.uid: p for p in pods}
    for gone in plan.delete:
        pod = by_uid[gone.uid]
        if pod.counted or pod.uid in pending:
            continue
        if interim_failed:
            unc_f.append(pod.uid)
            pending.add(pod.uid)
            failed += 1
            fresh = True
        else:
            marked_only.append(pod.name)
    _set_count(status, "failed", failed)
    plan.mark_counted = [p.name for p in pods if p.uid in pending and not p.counted] + marked_only
    if fresh:
        flush = copy.deepcopy(old_status)
        if indexed:
            flush["completedIndexes"] = format_indexes(completed)
            if not completed:
                flush.pop("completedIndexes")
        flush["uncountedTerminatedPods"] = {k: v for k, v in (("succeeded", unc_s), ("failed", unc_f)) if v}
        plan.flush_status = flush

    # Pods created by this plan are added to ``active`` by the controller once their creation succeeded.
    deleted = {d.uid for d in plan.delete}
    remaining = [p for p in active if p.uid not in deleted]
    _set_count(status, "active", len(remaining))
    status["ready"] = sum(1 for p in remaining if p.ready)
    status["terminating"] = len(terminating) + len(deleted)
    return plan


def _set_count(status: JSON, key: str, value: int) -> None:
    if value:
        status[key] = value
    else:
        status.pop(key, None)


def _finish(plan: JobPlan, status: JSON, now_text: str, *, failed: bool) -> None:
    if failed:
        target = find_condition(status, FAILURE_TARGET) or {}
        reason = str(target.get("reason") or "BackoffLimitExceeded")
        message = str(target.get("message") or MSG_BACKOFF)
        _set_condition(status, FAILED, "True", reason, message, now_text)
        plan.events.append(Event("Warning", reason, message))
    else:
        met = find_condition(status, SUCCESS_CRITERIA_MET) or {}
        _set_condition(
            status,
            COMPLETE,
            "True",
            str(met.get("reason") or "CompletionsReached"),
            str(met.get("message") or MSG_COMPLETE),
            now_text,
        )
        status["completionTime"] = now_text
        plan.events.append(Event("Normal", "Completed", "Job completed"))


@dataclass(frozen=True, slots=True)
class Wanted:
    indexed: bool
    completions: int | None
    parallelism: int
    succeeded: int
    suspended: bool


def _manage(
    plan: JobPlan,
    status: JSON,
    wanted: Wanted,
    pods: Sequence[PodView],
    active: Sequence[PodView],
    now: datetime,
    base: float,
) -> None:
    """Create or delete pods towards the wanted number of active ones (upstream ``manageJob``)."""
    indexed, completions, parallelism, succeeded = (
        wanted.indexed,
        wanted.completions,
        wanted.parallelism,
        wanted.succeeded,
    )
    if wanted.suspended:
        plan.delete = [Deletion(p.name, p.uid) for p in active]
        return
    if completions is None:
        want = len(active) if succeeded > 0 else parallelism
    else:
        want = max(0, min(parallelism, completions - succeeded))

    remove: list[PodView] = []
    left = list(active)
    if indexed:
        completed = parse_indexes(status.get("completedIndexes"))
        seen: set[int] = set()
        left = []
        for pod in sorted(active, key=lambda p: (p.index if p.index is not None else -1, not p.ready)):
            bad = pod.index is None or completions is None or pod.index >= completions
            if bad or pod.index in seen or pod.index in completed:
                remove.append(pod)
            else:
                assert pod.index is not None
                seen.add(pod.index)
                left.append(pod)
    excess = len(left) - want
    if excess > 0:
        remove += sorted(left, key=_removal_order)[:excess]
    if remove:
        plan.delete = [Deletion(p.name, p.uid) for p in remove[:MAX_PODS_PER_SYNC]]
        return

    diff = min(want - len(active), MAX_PODS_PER_SYNC)
    if diff <= 0:
        return
    wait = remaining_backoff(pods, now, base)
    if wait > 0:
        plan.wake(wait)
        return
    if indexed:
        assert completions is not None
        taken = parse_indexes(status.get("completedIndexes"))
        taken |= {p.index for p in active if p.index is not None}
        free = [i for i in range(completions) if i not in taken]
        plan.create = list(free[:diff])
    else:
        plan.create = [None] * diff


# ------------------------------------------------------------------------------------------------ pods


def pod_for(job: JSON, index: int | None) -> JSON:
    """A new pod of ``job`` (created with ``generateName``), as upstream's job controller builds it."""
    meta = job.get("metadata") or {}
    name = str(meta.get("name", ""))
    template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    labels = dict(tmeta.get("labels") or {})
    annotations = dict(tmeta.get("annotations") or {})
    pod_spec: JSON = template.get("spec") or {}
    generate = f"{name}-"
    if index is not None:
        annotations[COMPLETION_INDEX] = str(index)
        labels[COMPLETION_INDEX] = str(index)
        generate = f"{name}-{index}-"
        if not pod_spec.get("hostname"):
            pod_spec["hostname"] = f"{name}-{index}"[:63].rstrip("-")
        for group in ("initContainers", "containers"):
            for container in pod_spec.get(group) or []:
                env = container.setdefault("env", [])
                if not any(e.get("name") == INDEX_ENV for e in env):
                    env.append(
                        {
                            "name": INDEX_ENV,
                            "valueFrom": {
                                "fieldRef": {
                                    "apiVersion": "v1",
                                    "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']",
                                }
                            },
                        }
                    )
    pod_meta: JSON = {
        "generateName": generate[:58] if len(generate) > 58 else generate,
        "namespace": meta.get("namespace"),
        "labels": labels,
        "ownerReferences": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": name,
                "uid": meta.get("uid"),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if annotations:
        pod_meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}
