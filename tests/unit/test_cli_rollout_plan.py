"""Table tests of the client-side rollout logic (``corral.cli.rolloutplan``): kubectl's status messages,
history, the ReplicaSet ``undo`` picks and its patch, pause/resume/restart, scale preconditions, the
progress view of ``apply --wait``, argument parsing; and of the live table it renders."""

from __future__ import annotations

import copy
import io
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from rich.console import Console

from corral.cli.errors import CliError
from corral.cli.rollout import progress_table, timeout_seconds
from corral.cli.rolloutplan import (
    RESTARTED_AT,
    Phase,
    RolloutError,
    Target,
    check_scale,
    deleted,
    deployment_progress,
    deployment_status,
    history,
    history_output,
    history_table,
    job_progress,
    job_status,
    owned_replica_sets,
    parse_targets,
    pause_patch,
    progress_of,
    restart_patch,
    restart_stamp,
    resume_patch,
    revision_template,
    rollback,
    rollback_source,
    timed_out,
    validate_replicas,
)
from corral.controllers.rollout import CHANGE_CAUSE, HASH_LABEL, LAST_APPLIED, REVISION, REVISION_HISTORY

JSON = dict[str, Any]
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def template(image: str = "web:1", **annotations: str) -> JSON:
    meta: JSON = {"labels": {"app": "web"}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"metadata": meta, "spec": {"containers": [{"name": "web", "image": image}]}}


def deployment(
    replicas: int = 3,
    *,
    generation: int = 2,
    observed: int = 2,
    updated: int = 3,
    total: int = 3,
    ready: int = 3,
    available: int = 3,
    reason: str | None = None,
    paused: bool = False,
    image: str = "web:2",
    annotations: JSON | None = None,
) -> JSON:
    status: JSON = {
        "observedGeneration": observed,
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
    }
    if reason is not None:
        status["conditions"] = [{"type": "Progressing", "status": "False", "reason": reason}]
    spec: JSON = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": template(image),
    }
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "d-uid",
            "generation": generation,
            "annotations": {REVISION: "2", **(annotations or {})},
        },
        "spec": spec,
        "status": status,
    }


def replica_set(
    revision: int | str | None,
    image: str,
    *,
    owner: str = "d-uid",
    created: int = 0,
    cause: str | None = None,
    controller: bool = True,
    **extra_annotations: str,
) -> JSON:
    annotations: JSON = dict(extra_annotations)
    if revision is not None:
        annotations[REVISION] = str(revision)
    if cause is not None:
        annotations[CHANGE_CAUSE] = cause
    tmpl = template(image)
    tmpl["metadata"]["labels"][HASH_LABEL] = f"h{revision}"
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"web-h{revision}",
            "namespace": "default",
            "creationTimestamp": (NOW + timedelta(seconds=created)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": owner,
                    "controller": controller,
                }
            ],
        },
        "spec": {"replicas": 0, "template": tmpl},
    }


# --- arguments -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["deployment/web"], [Target("deployment", "web")]),
        (["deploy", "web"], [Target("deploy", "web")]),
        (["deploy", "a", "b"], [Target("deploy", "a"), Target("deploy", "b")]),
        (["deploy/a", "deployments.apps/b"], [Target("deploy", "a"), Target("deployments.apps", "b")]),
    ],
)
def test_parse_targets_accepts_both_kubectl_forms(args: list[str], expected: list[Target]) -> None:
    assert parse_targets(args) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "required resource not specified"),
        (["deploy"], "resource(s) were provided, but no name was specified"),
        (["deploy", "deploy/web"], "there is no need to specify a resource type as a separate argument"),
        (["deploy/"], "arguments in resource/name form must have a single resource and name"),
        (["/web"], "arguments in resource/name form must have a single resource and name"),
        (["deploy/a/b"], "arguments in resource/name form must have a single resource and name"),
    ],
)
def test_parse_targets_refusals(args: list[str], message: str) -> None:
    with pytest.raises(RolloutError) as err:
        parse_targets(args)
    assert str(err.value).startswith(message)
    assert isinstance(err.value, CliError)  # main prints it as one "error: ..." line


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0.0), ("0s", 0.0), ("90s", 90.0), ("5m", 300.0), ("1h30m", 5400.0)]
)
def test_timeout_is_a_go_duration(text: str, seconds: float) -> None:
    assert timeout_seconds(text) == seconds


def test_timeout_refusal_names_the_flag() -> None:
    with pytest.raises(CliError) as err:
        timeout_seconds("5")
    assert str(err.value) == 'invalid argument "5" for "--timeout" flag: time: invalid duration "5"'


# --- rollout status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "message", "done"),
    [
        (deployment(generation=3, observed=2), "Waiting for deployment spec update to be observed...", False),
        (
            deployment(updated=1, total=3, available=2),
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...',
            False,
        ),
        (
            deployment(updated=3, total=4, available=3),
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
            False,
        ),
        (
            deployment(updated=3, total=3, available=2),
            'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available...',
            False,
        ),
        (deployment(), 'deployment "web" successfully rolled out', True),
        # A progressing condition that is not the deadline does not stop anything.
        (deployment(reason="ReplicaSetUpdated"), 'deployment "web" successfully rolled out', True),
        (
            deployment(replicas=0, updated=0, total=0, ready=0, available=0),
            'deployment "web" successfully rolled out',
            True,
        ),
    ],
)
def test_deployment_status_messages_are_kubectls(d: JSON, message: str, done: bool) -> None:
    view = deployment_status(d)
    assert (view.message, view.done) == (message, done)


def test_deployment_status_fails_on_progress_deadline_once_observed() -> None:
    with pytest.raises(RolloutError, match=r'^deployment "web" exceeded its progress deadline$'):
        deployment_status(deployment(updated=1, available=2, reason="ProgressDeadlineExceeded"))
    # Not yet observed: kubectl checks the generation first, the condition belongs to the old spec.
    stale = deployment(generation=4, observed=3, reason="ProgressDeadlineExceeded")
    assert not deployment_status(stale).done


def test_deployment_status_pinned_revision() -> None:
    assert deployment_status(deployment(), 2).done
    with pytest.raises(
        RolloutError, match=r"desired revision \(3\) is different from the running revision \(2\)"
    ):
        deployment_status(deployment(), 3)


# --- jobs ----------------------------------------------------------------------------------------------


def job(
    completions: int | None = 5,
    *,
    succeeded: int = 0,
    active: int = 0,
    failed: int = 0,
    condition: tuple[str, str, str] | None = None,
    suspend: bool = False,
) -> JSON:
    spec: JSON = {"parallelism": 2, "template": template()}
    if completions is not None:
        spec["completions"] = completions
    if suspend:
        spec["suspend"] = True
    status: JSON = {"succeeded": succeeded, "active": active, "failed": failed}
    if condition is not None:
        ctype, reason, message = condition
        status["conditions"] = [{"type": ctype, "status": "True", "reason": reason, "message": message}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "pi"},
        "spec": spec,
        "status": status,
    }


@pytest.mark.parametrize(
    ("j", "phase", "message", "done", "desired"),
    [
        (
            job(succeeded=2, active=2, failed=1),
            Phase.PROGRESSING,
            'Waiting for job "pi" to complete: 2 of 5 completions succeeded, 2 active, 1 failed...',
            2,
            5,
        ),
        (
            job(None, active=2),
            Phase.PROGRESSING,
            'Waiting for job "pi" to complete: 0 succeeded, 2 active, 0 failed...',
            0,
            1,
        ),
        (job(succeeded=5, condition=("Complete", "", "")), Phase.COMPLETE, 'job "pi" completed', 5, 5),
        (
            job(
                failed=3,
                condition=("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            ),
            Phase.FAILED,
            'job "pi" failed: BackoffLimitExceeded: Job has reached the specified backoff limit',
            0,
            5,
        ),
        (job(suspend=True), Phase.SUSPENDED, 'Waiting for job "pi": the job is suspended...', 0, 5),
        # SuccessCriteriaMet alone is not the end: pods may still be terminating.
        (
            job(succeeded=5, condition=("SuccessCriteriaMet", "", "")),
            Phase.PROGRESSING,
            'Waiting for job "pi" to complete: 5 of 5 completions succeeded, 0 active, 0 failed...',
            5,
            5,
        ),
    ],
)
def test_job_progress(j: JSON, phase: Phase, message: str, done: int, desired: int) -> None:
    p = job_progress(j)
    assert (p.phase, p.message, p.done, p.desired) == (phase, message, done, desired)
    assert progress_of("Job", j) == p


def test_job_status_raises_when_failed() -> None:
    with pytest.raises(RolloutError, match=r'^job "pi" failed: DeadlineExceeded$'):
        job_status(job(condition=("Failed", "DeadlineExceeded", "")))


# --- apply --wait progress -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "phase", "done"),
    [
        (deployment(updated=1, total=4, ready=3, available=3), Phase.PROGRESSING, 1),
        (deployment(), Phase.COMPLETE, 3),
        (deployment(updated=1, available=2, reason="ProgressDeadlineExceeded"), Phase.FAILED, 1),
        (deployment(updated=1, available=2, paused=True), Phase.PAUSED, 1),
    ],
)
def test_deployment_progress_phases(d: JSON, phase: Phase, done: int) -> None:
    p = deployment_progress(d)
    assert (p.phase, p.done, p.desired) == (phase, done, 3)
    assert progress_of("Deployment", d) == p


def test_progress_summary_counts_against_desired() -> None:
    p = deployment_progress(deployment(updated=2, ready=2, available=1, total=3))
    assert p.summary == "2/3 updated, 2 ready, 1 available"
    assert job_progress(job(succeeded=2, active=2)).summary == "2/5 succeeded, 2 active, 0 failed"


def test_failure_message_is_kubectls() -> None:
    p = deployment_progress(deployment(updated=1, available=2, reason="ProgressDeadlineExceeded"))
    assert p.message == 'deployment "web" exceeded its progress deadline'
    assert not p.phase.ok and p.phase.finished


def test_timed_out_and_deleted_keep_the_counts() -> None:
    p = deployment_progress(deployment(updated=1, total=3, available=2))
    late = timed_out(p)
    assert late.phase is Phase.TIMED_OUT and late.phase.finished and not late.phase.ok
    assert late.message == (
        'timed out waiting for deployment "web": Waiting for deployment "web" rollout to finish: '
        "1 out of 3 new replicas have been updated"
    )
    assert late.counts == p.counts
    gone = deleted(p)
    assert gone.phase is Phase.DELETED and gone.message == 'deployment "web" has been deleted'


def test_progress_of_refuses_other_kinds() -> None:
    with pytest.raises(ValueError):
        progress_of("Pod", {})


def test_live_table_renders_rows_and_plain_text_without_a_terminal() -> None:
    rows = [
        ("deployment.apps/web", deployment_progress(deployment(updated=2, ready=2, available=1))),
        ("job.batch/pi", job_progress(job(succeeded=5, condition=("Complete", "", "")))),
    ]
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(progress_table(rows, 12.4, 300))
    text = out.getvalue()
    assert "NAME" in text and "PROGRESS" in text and "COUNTS" in text and "PHASE" in text
    assert "deployment.apps/web" in text and "2/3 updated, 2 ready, 1 available" in text
    assert "job.batch/pi" in text and "Complete" in text and "Progressing" in text
    assert "waited 12s of 300s" in text
    assert "\x1b[" not in text


# --- history -------------------------------------------------------------------------------------------


def test_history_keeps_controlled_replica_sets_by_revision() -> None:
    d = deployment()
    rss = [
        replica_set(2, "web:2", created=10, cause="kubectl set image"),
        replica_set(1, "web:1", created=0),
        replica_set(9, "other", owner="someone-else"),
        replica_set(8, "web:1", controller=False),
        replica_set("x", "web:1", created=20),  # unparsable revision: skipped, as kubectl does
    ]
    assert [rs["metadata"]["name"] for rs in owned_replica_sets(d, rss)] == ["web-h1", "web-h2", "web-hx"]
    revisions = history(d, rss)
    assert sorted(revisions) == [1, 2]
    assert history_table(revisions) == (
        "REVISION  CHANGE-CAUSE\n1         <none>\n2         kubectl set image\n"
    )


def test_history_output_as_kubectl_prints_it() -> None:
    revisions = history(deployment(), [replica_set(1, "web:1"), replica_set(2, "web:2")])
    assert history_output("deployment.apps/web", revisions) == (
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    )
    assert history_output("deployment.apps/web", {}) == "deployment.apps/web \nNo rollout history found.\n"
    one = history_output("deployment.apps/web", revisions, 1)
    lines = one.splitlines()
    assert lines[0] == "deployment.apps/web with revision #1"
    assert lines[1] == "Pod Template:"
    assert lines[2].split() == ["Labels:", "app=web"]
    assert lines[3].split() == ["pod-template-hash=h1"]
    assert any(line.split() == ["Image:", "web:1"] for line in lines)
    assert one.endswith("\n\n")


def test_revision_template_adds_the_change_cause_and_refuses_unknown() -> None:
    rs = replica_set(3, "web:3", cause="v3")
    got = revision_template({3: rs}, 3)
    assert got["metadata"]["annotations"] == {CHANGE_CAUSE: "v3"}
    assert "annotations" not in rs["spec"]["template"]["metadata"]  # the input is not modified
    with pytest.raises(RolloutError, match=r"^unable to find the specified revision$"):
        revision_template({3: rs}, 4)
    text = history_output("deployment.apps/web", {3: rs}, 3)
    assert any(line.split() == ["Annotations:", f"{CHANGE_CAUSE}:", "v3"] for line in text.splitlines())


# --- undo ----------------------------------------------------------------------------------------------


def rss_three() -> list[JSON]:
    # Listed out of order on purpose: the choice is by revision, not by list position.
    return [
        replica_set(3, "web:3", created=20),
        replica_set(1, "web:1", created=0, cause="first"),
        replica_set(2, "web:2", created=10),
    ]


@pytest.mark.parametrize(("to_revision", "image"), [(0, "web:2"), (1, "web:1"), (2, "web:2"), (3, "web:3")])
def test_rollback_source_previous_or_given_revision(to_revision: int, image: str) -> None:
    rs = rollback_source(deployment(image="web:3"), rss_three(), to_revision)
    assert rs["spec"]["template"]["spec"]["containers"][0]["image"] == image


@pytest.mark.parametrize(
    ("rss", "to_revision", "message"),
    [
        ([replica_set(1, "web:1")], 0, 'no rollout history found for deployment "web"'),
        ([], 0, 'no rollout history found for deployment "web"'),
        (rss_three(), 7, "unable to find specified revision 7 in history"),
        (rss_three(), -1, "unable to find specified revision -1 in history"),
        ([replica_set(1, "web:1", owner="other"), replica_set(2, "web:2")], 0, "no rollout history found"),
    ],
)
def test_rollback_source_refusals(rss: list[JSON], to_revision: int, message: str) -> None:
    with pytest.raises(RolloutError) as err:
        rollback_source(deployment(), rss, to_revision)
    assert str(err.value).startswith(message)


def test_rollback_patch_copies_template_without_hash_and_keeps_bookkeeping() -> None:
    d = deployment(
        image="web:3",
        annotations={LAST_APPLIED: "{}", REVISION_HISTORY: "1", CHANGE_CAUSE: "three", "team": "a"},
    )
    rss = rss_three()
    rss[1]["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = "3"
    rss[1]["metadata"]["annotations"]["owner"] = "b"
    before = copy.deepcopy(rss)
    plan = rollback(d, rss, 1)
    assert plan.outcome == "rolled back"
    assert plan.patch is not None
    assert plan.patch[0] == {
        "op": "replace",
        "path": "/spec/template",
        "value": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        },
    }
    # The Deployment's own bookkeeping stays, everything else comes from the ReplicaSet (kubectl).
    assert plan.patch[1] == {
        "op": "replace",
        "path": "/metadata/annotations",
        "value": {
            LAST_APPLIED: "{}",
            REVISION: "2",
            REVISION_HISTORY: "1",
            CHANGE_CAUSE: "first",
            "owner": "b",
        },
    }
    assert rss == before


def test_rollback_skips_when_the_template_already_matches() -> None:
    plan = rollback(deployment(image="web:2"), rss_three(), 2)
    assert plan.patch is None
    assert plan.outcome == "skipped rollback (current template already matches revision 2)"
    # kubectl names the revision it was asked for, so a default undo says 0.
    d = deployment(image="web:2")
    rss = [replica_set(3, "web:3"), replica_set(2, "web:2", created=5)]
    assert rollback(d, rss).outcome == "skipped rollback (current template already matches revision 0)"


def test_rollback_refuses_a_paused_deployment() -> None:
    with pytest.raises(RolloutError) as err:
        rollback(deployment(image="web:3", paused=True), rss_three())
    # kubectl 1.32's words (older releases named the deployment in the hint).
    assert str(err.value) == (
        "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
    )


# --- pause, resume, restart ----------------------------------------------------------------------------


def test_pause_and_resume_patches_and_refusals() -> None:
    assert pause_patch(deployment()) == {"spec": {"paused": True}}
    assert resume_patch(deployment(paused=True)) == {"spec": {"paused": None}}
    with pytest.raises(RolloutError, match=r'^deployments.apps "web" is already paused$'):
        pause_patch(deployment(paused=True))
    with pytest.raises(RolloutError, match=r'^deployments.apps "web" is not paused$'):
        resume_patch(deployment())


@pytest.mark.parametrize(
    ("now", "stamp"),
    [
        (datetime(2026, 1, 1, 12, 0, 0, 700000, tzinfo=UTC), "2026-01-01T12:00:00Z"),
        (datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2))), "2026-01-01T12:00:00+02:00"),
    ],
)
def test_restart_stamp_is_go_rfc3339(now: datetime, stamp: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Go formats in local time; pin the local zone to the one the moment is in.
    monkeypatch.setenv("TZ", "UTC" if now.utcoffset() == timedelta(0) else "Etc/GMT-2")
    import time

    time.tzset()
    try:
        assert restart_stamp(now) == stamp
    finally:
        monkeypatch.undo()
        time.tzset()


def test_restart_patch_sets_the_template_annotation() -> None:
    patch = restart_patch(deployment(), NOW)
    stamp = patch["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")) == NOW
    with pytest.raises(RolloutError, match=r"can't restart paused deployment \(run rollout resume first\)$"):
        restart_patch(deployment(paused=True), NOW)
    again = deployment()
    again["spec"]["template"]["metadata"]["annotations"] = {RESTARTED_AT: stamp}
    with pytest.raises(RolloutError, match=r"^failed to create patch for web: if restart has already been"):
        restart_patch(again, NOW)
    assert restart_patch(again, NOW + timedelta(seconds=1))  # a second later it is a new restart


# --- scale ---------------------------------------------------------------------------------------------


def test_check_scale_precondition() -> None:
    scale: JSON = {
        "kind": "Scale",
        "metadata": {"name": "web", "resourceVersion": "7"},
        "spec": {"replicas": 2},
    }
    wanted = check_scale(scale, 5, 2)
    assert wanted["spec"]["replicas"] == 5 and wanted["metadata"]["resourceVersion"] == "7"
    assert scale["spec"]["replicas"] == 2
    assert check_scale(scale, 5, None)["spec"]["replicas"] == 5
    with pytest.raises(RolloutError, match=r"^Expected replicas to be 3, was 2$"):
        check_scale(scale, 5, 3)


def test_validate_replicas() -> None:
    assert validate_replicas(0) == 0
    with pytest.raises(RolloutError, match=r'^required flag\(s\) "replicas" not set$'):
        validate_replicas(None)
    with pytest.raises(RolloutError, match="must be greater than or equal to 0"):
        validate_replicas(-1)
