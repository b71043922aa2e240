"""What ``corral rollout``, ``corral scale`` and ``corral apply --wait`` decide, as functions of the objects
the command fetched. Pure: no IO, no clock (callers pass ``now``).

kubectl computes these on the client (``k8s.io/kubectl/pkg/polymorphichelpers``), and so do we, with its
wording: the ``DeploymentStatusViewer`` messages of ``rollout status``, the ``REVISION  CHANGE-CAUSE`` table
of ``rollout history``, the ReplicaSet that ``rollout undo`` restores and its JSON patch, the pause / resume /
restart patches and their refusals, and the ``--current-replicas`` precondition of ``scale``. On top of those,
:class:`Progress` is the per-object view that ``apply --wait`` renders (a Deployment rolling out, a Job
running to completion).

The controller-side vocabulary (annotation names, condition reasons, template equality that ignores the
pod-template-hash label, Job condition types) is imported from ``corral.controllers.rollout`` and
``corral.controllers.jobplan``: client and controller must never disagree on it.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from corral.cli.describers import pod_template_text
from corral.cli.errors import CliError
from corral.cli.output import tabwrite
from corral.controllers.claiming import controller_ref
from corral.controllers.jobplan import COMPLETE, FAILED, condition_true, find_condition
from corral.controllers.rollout import (
    CHANGE_CAUSE,
    HASH_LABEL,
    PROGRESSING,
    REVISION,
    SKIPPED_ANNOTATIONS,
    TIMED_OUT,
    by_creation,
    equal_ignore_hash,
    get_condition,
)

JSON = dict[str, Any]

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
NO_HISTORY = "No rollout history found."


class RolloutError(CliError):
    """A refusal or failure in kubectl's words; ``str(exc)`` is the line after ``error: ``."""


# --- arguments -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    """As the user typed it (``deploy``, ``deployment``, ``deployments.apps``)."""
    name: str


def parse_targets(args: Sequence[str]) -> list[Target]:
    """kubectl's resource arguments: ``TYPE NAME...`` or ``TYPE/NAME...`` (never mixed)."""
    if not args:
        raise RolloutError("required resource not specified")
    if any("/" in arg for arg in args):
        targets = []
        for arg in args:
            if "/" not in arg:
                raise RolloutError(
                    "there is no need to specify a resource type as a separate argument when passing "
                    "arguments in resource/name form"
                )
            kind, _, name = arg.partition("/")
            if not kind or not name or "/" in name:
                raise RolloutError("arguments in resource/name form must have a single resource and name")
            targets.append(Target(kind, name))
        return targets
    kind, names = args[0], list(args[1:])
    if not names:
        raise RolloutError("resource(s) were provided, but no name was specified")
    return [Target(kind, name) for name in names]


# --- small accessors -----------------------------------------------------------------------------------


def _d(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _name(obj: Mapping[str, Any]) -> str:
    return str(_d(obj.get("metadata")).get("name") or "")


def _annotations(obj: Mapping[str, Any]) -> JSON:
    return _d(_d(obj.get("metadata")).get("annotations"))


def revision(obj: Mapping[str, Any]) -> int | None:
    """``deploymentutil.Revision``: 0 without the annotation, None when it is not a number (skipped)."""
    text = _annotations(obj).get(REVISION)
    if text is None:
        return 0
    try:
        return int(str(text))
    except ValueError:
        return None


# --- rollout status ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusView:
    message: str
    done: bool


def deployment_status(d: Mapping[str, Any], want_revision: int = 0) -> StatusView:
    """``DeploymentStatusViewer.Status``: the line ``rollout status`` prints and whether it is done.

    Raises :class:`RolloutError` for a Deployment whose Progressing condition says
    ProgressDeadlineExceeded (kubectl stops there with a non-zero exit) or that runs another revision
    than ``want_revision``.
    """
    name = _name(d)
    if want_revision > 0:
        current = revision(d)
        if current is None:
            raise RolloutError(f'cannot get the revision of deployment "{name}"')
        if current != want_revision:
            raise RolloutError(
                f"desired revision ({want_revision}) is different from the running revision ({current})"
            )
    meta, spec, status = _d(d.get("metadata")), _d(d.get("spec")), _d(d.get("status"))
    if _int(meta.get("generation")) > _int(status.get("observedGeneration")):
        return StatusView("Waiting for deployment spec update to be observed...", False)
    cond = get_condition(status, PROGRESSING)
    if cond is not None and cond.get("reason") == TIMED_OUT:
        raise RolloutError(f'deployment "{name}" exceeded its progress deadline')
    replicas = _int(spec.get("replicas", 1), 1)
    updated = _int(status.get("updatedReplicas"))
    total = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    if updated < replicas:
        return StatusView(
            f'Waiting for deployment "{name}" rollout to finish: {updated} out of {replicas} new replicas '
            "have been updated...",
            False,
        )
    if total > updated:
        return StatusView(
            f'Waiting for deployment "{name}" rollout to finish: {total - updated} old replicas are '
            "pending termination...",
            False,
        )
    if available < updated:
        return StatusView(
            f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated replicas '
            "are available...",
            False,
        )
    return StatusView(f'deployment "{name}" successfully rolled out', True)


def job_completions(job: Mapping[str, Any]) -> int | None:
    """``spec.completions``; None for a work queue (parallelism without completions: one success ends it)."""
    value = _d(job.get("spec")).get("completions")
    return None if value is None else _int(value)


def job_status(job: Mapping[str, Any]) -> StatusView:
    """The Job's counterpart of :func:`deployment_status` (kubectl has none): done once ``Complete``;
    raises :class:`RolloutError` once ``Failed``, with the controller's reason and message."""
    name = _name(job)
    spec, status = _d(job.get("spec")), _d(job.get("status"))
    if condition_true(status, FAILED):
        cond = find_condition(status, FAILED) or {}
        reason, message = cond.get("reason") or "Failed", cond.get("message") or ""
        raise RolloutError(f'job "{name}" failed: {reason}' + (f": {message}" if message else ""))
    succeeded = _int(status.get("succeeded"))
    completions = job_completions(job)
    if condition_true(status, COMPLETE):
        return StatusView(f'job "{name}" completed', True)
    if spec.get("suspend"):
        return StatusView(f'Waiting for job "{name}": the job is suspended...', False)
    active, failed = _int(status.get("active")), _int(status.get("failed"))
    if completions is None:
        done = f"{succeeded} succeeded"
    else:
        done = f"{succeeded} of {completions} completions succeeded"
    return StatusView(
        f'Waiting for job "{name}" to complete: {done}, {active} active, {failed} failed...', False
    )


# --- apply --wait: progress of one object --------------------------------------------------------------


class Phase(enum.StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    SUSPENDED = "Suspended"
    COMPLETE = "Complete"
    FAILED = "Failed"
    DELETED = "Deleted"
    TIMED_OUT = "Timed out"

    @property
    def finished(self) -> bool:
        return self in (Phase.COMPLETE, Phase.FAILED, Phase.DELETED, Phase.TIMED_OUT)

    @property
    def ok(self) -> bool:
        return self is Phase.COMPLETE


@dataclass(frozen=True, slots=True)
class Progress:
    """One object as ``apply --wait`` shows it."""

    kind: str
    """``Deployment`` or ``Job``."""
    name: str
    phase: Phase
    desired: int
    done: int
    """How much of ``desired`` is finished: available new replicas, or succeeded completions."""
    counts: tuple[tuple[str, int], ...]
    """The status counters shown next to the bar, e.g. (("updated", 2), ("ready", 2), ("available", 1))."""
    message: str
    """The current status line (kubectl's, for Deployments), or the failure."""

    @property
    def summary(self) -> str:
        """``2/3 updated, 2 ready, 1 available``: the first counter is shown against ``desired``."""
        parts = []
        for i, (label, value) in enumerate(self.counts):
            parts.append(f"{value}/{self.desired} {label}" if i == 0 else f"{value} {label}")
        return ", ".join(parts)


def deployment_progress(d: Mapping[str, Any]) -> Progress:
    spec, status = _d(d.get("spec")), _d(d.get("status"))
    desired = _int(spec.get("replicas", 1), 1)
    updated = _int(status.get("updatedReplicas"))
    ready = _int(status.get("readyReplicas"))
    available = _int(status.get("availableReplicas"))
    counts = (("updated", updated), ("ready", ready), ("available", available))
    done = min(updated, available, desired)
    try:
        view = deployment_status(d)
    except RolloutError as exc:
        return Progress("Deployment", _name(d), Phase.FAILED, desired, done, counts, str(exc))
    if view.done:
        phase = Phase.COMPLETE
    elif spec.get("paused"):
        phase = Phase.PAUSED
    else:
        phase = Phase.PROGRESSING
    return Progress("Deployment", _name(d), phase, desired, done, counts, view.message)


def job_progress(job: Mapping[str, Any]) -> Progress:
    status = _d(job.get("status"))
    completions = job_completions(job)
    desired = completions if completions is not None else 1
    succeeded = _int(status.get("succeeded"))
    counts = (
        ("succeeded", succeeded),
        ("active", _int(status.get("active"))),
        ("failed", _int(status.get("failed"))),
    )
    done = min(succeeded, desired)
    try:
        view = job_status(job)
    except RolloutError as exc:
        return Progress("Job", _name(job), Phase.FAILED, desired, done, counts, str(exc))
    if view.done:
        phase = Phase.COMPLETE
    elif _d(job.get("spec")).get("suspend"):
        phase = Phase.SUSPENDED
    else:
        phase = Phase.PROGRESSING
    return Progress("Job", _name(job), phase, desired, done, counts, view.message)


WAITABLE_KINDS = ("Deployment", "Job")


def progress_of(kind: str, obj: Mapping[str, Any]) -> Progress:
    """The progress of a Deployment or Job (``kind`` must be one of :data:`WAITABLE_KINDS`)."""
    if kind == "Deployment":
        return deployment_progress(obj)
    if kind == "Job":
        return job_progress(obj)
    raise ValueError(f"no progress view for {kind}")


def deleted(previous: Progress) -> Progress:
    """The object went away while we waited (kubectl: ``object has been deleted``)."""
    return _finish(previous, Phase.DELETED, f'{previous.kind.lower()} "{previous.name}" has been deleted')


def timed_out(previous: Progress) -> Progress:
    """The deadline passed first; the message keeps the last status, without kubectl's trailing dots."""
    last = previous.message.removesuffix("...")
    return _finish(
        previous, Phase.TIMED_OUT, f'timed out waiting for {previous.kind.lower()} "{previous.name}": {last}'
    )


def _finish(previous: Progress, phase: Phase, message: str) -> Progress:
    return Progress(
        previous.kind, previous.name, phase, previous.desired, previous.done, previous.counts, message
    )


# --- history -------------------------------------------------------------------------------------------


def owned_replica_sets(d: Mapping[str, Any], replica_sets: Sequence[JSON]) -> list[JSON]:
    """The ReplicaSets whose controller ownerReference is this Deployment (``GetAllReplicaSets``), oldest
    first: kubectl lists by the selector and then keeps only these."""
    uid = _d(d.get("metadata")).get("uid")
    return by_creation([rs for rs in replica_sets if (controller_ref(rs) or {}).get("uid") == uid])


def history(d: Mapping[str, Any], replica_sets: Sequence[JSON]) -> dict[int, JSON]:
    """Revision → ReplicaSet, as ``getDeploymentHistory`` builds it (a later ReplicaSet wins a tie)."""
    found: dict[int, JSON] = {}
    for rs in owned_replica_sets(d, replica_sets):
        rev = revision(rs)
        if rev is not None:
            found[rev] = rs
    return found


def revision_template(revisions: Mapping[int, JSON], wanted: int) -> JSON:
    """The pod template kubectl shows for a revision: the ReplicaSet's, with the ReplicaSet's change-cause
    added to the template's annotations (``ViewHistory`` does that before describing or tabulating)."""
    rs = revisions.get(wanted)
    if rs is None:
        raise RolloutError("unable to find the specified revision")
    template = copy.deepcopy(_d(_d(rs.get("spec")).get("template")))
    cause = _annotations(rs).get(CHANGE_CAUSE)
    if cause:
        meta = template.setdefault("metadata", {})
        meta["annotations"] = {**_d(meta.get("annotations")), CHANGE_CAUSE: cause}
    return template


def history_table(revisions: Mapping[int, JSON]) -> str:
    """``REVISION  CHANGE-CAUSE`` rows, aligned as kubectl's tabwriter (padding 2) does."""
    lines = ["REVISION\tCHANGE-CAUSE"]
    for rev in sorted(revisions):
        annotations = _d(_d(revision_template(revisions, rev).get("metadata")).get("annotations"))
        lines.append(f"{rev}\t{annotations.get(CHANGE_CAUSE) or '<none>'}")
    return "\n".join(tabwrite(lines, minwidth=0, padding=2)) + "\n"


def history_output(object_name: str, revisions: Mapping[int, JSON], wanted: int = 0) -> str:
    """All that ``rollout history`` prints for one object: ``deployment.apps/web `` (kubectl's trailing
    space included), then the table, or with ``wanted`` that revision's pod template, then a blank line."""
    if not revisions:
        body = NO_HISTORY
    elif wanted > 0:
        body = pod_template_text(revision_template(revisions, wanted))
    else:
        body = history_table(revisions)
    with_revision = f"with revision #{wanted}" if wanted > 0 else ""
    return f"{object_name} {with_revision}\n{body}\n"


# --- undo ----------------------------------------------------------------------------------------------


def rollback_source(d: Mapping[str, Any], replica_sets: Sequence[JSON], to_revision: int) -> JSON:
    """``deploymentRevision``: the ReplicaSet of ``to_revision``, or with 0 the one of the second-highest
    revision (the release before the current one)."""
    if to_revision < 0:
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    latest: tuple[int, JSON] | None = None
    previous: tuple[int, JSON] | None = None
    for rs in owned_replica_sets(d, replica_sets):
        rev = revision(rs)
        if rev is None:
            continue
        if to_revision:
            if rev == to_revision:
                return rs
            continue
        if latest is None or latest[0] < rev:
            previous, latest = latest, (rev, rs)
        elif previous is None or previous[0] < rev:
            previous = (rev, rs)
    if to_revision:
        raise RolloutError(f"unable to find specified revision {to_revision} in history")
    if previous is None:
        raise RolloutError(f'no rollout history found for deployment "{_name(d)}"')
    return previous[1]


@dataclass(frozen=True, slots=True)
class Rollback:
    """What ``rollout undo`` does: a JSON patch to send, or nothing and the ``skipped`` note to print."""

    patch: list[JSON] | None
    outcome: str
    """``rolled back`` or ``skipped rollback (...)``: printed after ``deployment.apps/<name>``."""


def rollback(d: Mapping[str, Any], replica_sets: Sequence[JSON], to_revision: int = 0) -> Rollback:
    """``DeploymentRollbacker.Rollback``: copy the chosen ReplicaSet's pod template (without the
    pod-template-hash label) and its annotations into the Deployment, keeping the Deployment's own
    bookkeeping annotations. The controller then finds that ReplicaSet again and renumbers it."""
    source = rollback_source(d, replica_sets, to_revision)
    if _d(d.get("spec")).get("paused"):
        raise RolloutError(
            "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and "
            "try again"
        )
    template = copy.deepcopy(_d(_d(source.get("spec")).get("template")))
    if equal_ignore_hash(template, _d(d.get("spec")).get("template")):
        return Rollback(None, f"skipped rollback (current template already matches revision {to_revision})")
    labels = _d(template.get("metadata")).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    own = _annotations(d)
    annotations = {k: v for k, v in own.items() if k in SKIPPED_ANNOTATIONS}
    annotations.update({k: v for k, v in _annotations(source).items() if k not in SKIPPED_ANNOTATIONS})
    patch = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    return Rollback(patch, "rolled back")


# --- pause, resume, restart ----------------------------------------------------------------------------


def pause_patch(d: Mapping[str, Any], resource: str = "deployments.apps") -> JSON:
    """The strategic merge patch of ``rollout pause``; refused (``deployments.apps "web" is already
    paused``) when there is nothing to do."""
    if _d(d.get("spec")).get("paused"):
        raise RolloutError(f'{resource} "{_name(d)}" is already paused')
    return {"spec": {"paused": True}}


def resume_patch(d: Mapping[str, Any], resource: str = "deployments.apps") -> JSON:
    if not _d(d.get("spec")).get("paused"):
        raise RolloutError(f'{resource} "{_name(d)}" is not paused')
    return {"spec": {"paused": None}}  # kubectl's patch: paused=false is the omitted default


def restart_stamp(now: datetime) -> str:
    """Go's ``time.Now().Format(time.RFC3339)``: local time, second precision, ``Z`` when at UTC."""
    local = now.astimezone() if now.tzinfo is not None else now.replace(tzinfo=UTC).astimezone()
    text = local.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def restart_patch(d: Mapping[str, Any], now: datetime, resource: str = "deployments.apps") -> JSON:
    """``rollout restart``: a new ``restartedAt`` annotation on the pod template makes a new revision."""
    spec = _d(d.get("spec"))
    if spec.get("paused"):
        raise RolloutError(
            f'{resource} "{_name(d)}" can\'t restart paused deployment (run rollout resume first)'
        )
    stamp = restart_stamp(now)
    current = _d(_d(_d(spec.get("template")).get("metadata")).get("annotations")).get(RESTARTED_AT)
    if current == stamp:
        # The patch would change nothing: kubectl refuses rather than print "restarted" for a no-op.
        raise RolloutError(
            f"failed to create patch for {_name(d)}: if restart has already been triggered within the past "
            "second, please wait before attempting to trigger another"
        )
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


# --- scale ---------------------------------------------------------------------------------------------


def check_scale(scale: Mapping[str, Any], replicas: int, current_replicas: int | None) -> JSON:
    """The Scale to PUT for ``scale --replicas N --current-replicas M`` (kubectl's precondition; the PUT
    carries the read resourceVersion, so a change in between is a conflict, not a lost update)."""
    actual = _int(_d(scale.get("spec")).get("replicas"))
    if current_replicas is not None and current_replicas != actual:
        raise RolloutError(f"Expected replicas to be {current_replicas}, was {actual}")
    wanted = copy.deepcopy(dict(scale))
    wanted.setdefault("spec", {})["replicas"] = replicas
    return wanted


def validate_replicas(replicas: int | None) -> int:
    if replicas is None:
        raise RolloutError('required flag(s) "replicas" not set')
    if replicas < 0:
        raise RolloutError(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
        )
    return replicas
