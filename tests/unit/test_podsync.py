"""Pod sync planning: container state machine, restart policy, backoff, phases, status shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.agent.envexpand import expand
from corral.agent.podsync import (
    ActionKind,
    BackoffPolicy,
    Observed,
    PodContext,
    ProbeOutcome,
    StartFailure,
    Step,
    container_step,
    plan_pod,
)
from corral.agent.runtimes.base import ContainerId, ContainerState, ContainerStatus

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CTX = PodContext(node_name="node-1", host_ip="127.0.0.1")


def _pod(restart: str = "Always", deleting: bool = False, init: bool = False) -> dict:  # type: ignore[type-arg]
    pod: dict = {  # type: ignore[type-arg]
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "main", "image": "python:3.11", "command": ["sleep", "9"]}],
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
    if init:
        pod["spec"]["initContainers"] = [{"name": "setup", "image": "busybox", "command": ["true"]}]
    if deleting:
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
        pod["metadata"]["deletionGracePeriodSeconds"] = 5
    return pod


def _running(attempt: int = 0, name: str = "main", started: datetime = NOW) -> ContainerStatus:
    return ContainerStatus(ContainerId("u1", name, attempt), ContainerState.RUNNING, 100 + attempt, started)


def _exited(
    attempt: int, code: int, ago: float = 1.0, ran: float = 5.0, name: str = "main", reason: str = ""
) -> ContainerStatus:
    finished = NOW - timedelta(seconds=ago)
    return ContainerStatus(
        ContainerId("u1", name, attempt),
        ContainerState.EXITED,
        100 + attempt,
        finished - timedelta(seconds=ran),
        finished,
        code,
        reason=reason or ("Completed" if code == 0 else "Error"),
    )


def test_new_pod_starts_its_container() -> None:
    plan = plan_pod(_pod(), {}, {}, NOW, CTX)
    assert [(a.kind, a.container, a.attempt) for a in plan.actions] == [(ActionKind.START, "main", 0)]
    assert plan.status["phase"] == "Pending"
    assert plan.status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_running_ready_pod_status_like_kubelet() -> None:
    obs = {"main": Observed((_running(),))}
    plan = plan_pod(_pod(), obs, {"main": ProbeOutcome(ready=True)}, NOW, CTX)
    assert plan.actions == []
    status = plan.status
    assert status["phase"] == "Running" and status["podIP"] == "127.0.0.1"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "Ready": "True",
        "ContainersReady": "True",
        "PodScheduled": "True",
    }
    cs = status["containerStatuses"][0]
    assert cs["ready"] is True and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["image"] == "python:3.11" and cs["imageID"] == ""


def test_first_crash_restarts_immediately_then_backs_off() -> None:
    policy = BackoffPolicy(base=10, cap=300)
    first = container_step(
        Observed((_exited(0, 1),), consecutive_restarts=0), "Always", ProbeOutcome(), policy, NOW
    )
    assert (first.step, first.attempt) == (Step.RESTART, 1)
    second = container_step(
        Observed((_exited(0, 1), _exited(1, 1, ago=1)), consecutive_restarts=1),
        "Always",
        ProbeOutcome(),
        policy,
        NOW,
    )
    assert second.step is Step.BACKOFF and second.wait == pytest.approx(9.0)
    third = container_step(
        Observed((_exited(2, 1, ago=1),), consecutive_restarts=2), "Always", ProbeOutcome(), policy, NOW
    )
    assert third.wait == pytest.approx(19.0)


def test_crash_loop_status_shows_backoff_and_last_state() -> None:
    obs = {"main": Observed((_exited(0, 1), _exited(1, 2, ago=1)), consecutive_restarts=1)}
    plan = plan_pod(_pod(), obs, {}, NOW, CTX)
    cs = plan.status["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert cs["restartCount"] == 1 and plan.status["phase"] == "Running"
    assert plan.requeue_after == pytest.approx(9.0)


def test_healthy_run_resets_backoff() -> None:
    long_run = _exited(5, 1, ago=0, ran=11 * 60)
    decision = container_step(
        Observed((long_run,), consecutive_restarts=5), "Always", ProbeOutcome(), BackoffPolicy(), NOW
    )
    assert decision.step is Step.RESTART


@pytest.mark.parametrize(
    ("policy", "code", "phase", "restart"),
    [
        ("Never", 1, "Failed", False),
        ("Never", 0, "Succeeded", False),
        ("OnFailure", 0, "Succeeded", False),
        ("OnFailure", 3, "Running", True),
        ("Always", 0, "Running", True),
    ],
)
def test_restart_policy_table(policy: str, code: int, phase: str, restart: bool) -> None:
    obs = {"main": Observed((_exited(0, code),))}
    plan = plan_pod(_pod(policy), obs, {}, NOW, CTX)
    assert plan.status["phase"] == phase
    assert any(a.kind is ActionKind.START for a in plan.actions) == restart


def test_liveness_failure_kills_with_unhealthy_reason() -> None:
    obs = {"main": Observed((_running(),))}
    plan = plan_pod(
        _pod(), obs, {"main": ProbeOutcome(ready=True, liveness_failed=True, message="HTTP 500")}, NOW, CTX
    )
    (kill,) = plan.actions
    assert kill.kind is ActionKind.KILL and kill.reason == "Unhealthy" and "HTTP 500" in kill.message
    assert kill.grace_seconds == 30


def test_readiness_false_makes_pod_not_ready() -> None:
    obs = {"main": Observed((_running(),))}
    plan = plan_pod(_pod(), obs, {"main": ProbeOutcome(ready=False)}, NOW, CTX)
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"


def test_deleting_pod_kills_then_deletes() -> None:
    obs = {"main": Observed((_running(),))}
    plan = plan_pod(_pod(deleting=True), obs, {}, NOW, CTX)
    assert [(a.kind, a.grace_seconds) for a in plan.actions] == [(ActionKind.KILL, 5.0)]
    done = plan_pod(_pod(deleting=True), {"main": Observed((_exited(0, 143),))}, {}, NOW, CTX)
    assert [a.kind for a in done.actions] == [ActionKind.DELETE_POD]


def test_init_containers_run_first() -> None:
    plan = plan_pod(_pod(init=True), {}, {}, NOW, CTX)
    assert [(a.kind, a.container) for a in plan.actions] == [(ActionKind.START, "setup")]
    assert plan.status["phase"] == "Pending"
    after = plan_pod(_pod(init=True), {"setup": Observed((_exited(0, 0, name="setup"),))}, {}, NOW, CTX)
    assert [(a.kind, a.container) for a in after.actions] == [(ActionKind.START, "main")]


def test_start_failure_is_reported_and_retried_with_backoff() -> None:
    failure = StartFailure(0, "StartError", 'exec: "nope": executable file not found in $PATH', NOW)
    plan = plan_pod(_pod(), {"main": Observed(failure=failure)}, {}, NOW, CTX)
    cs = plan.status["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "StartError"
    assert "executable file not found" in cs["state"]["waiting"]["message"]
    assert plan.actions == [] and plan.requeue_after == pytest.approx(10.0)


def test_never_policy_start_failure_is_terminal() -> None:
    failure = StartFailure(1, "StartError", "boom", NOW)
    plan = plan_pod(_pod("Never"), {"main": Observed(failure=failure)}, {}, NOW, CTX)
    assert plan.status["phase"] == "Failed"


def test_transition_time_kept_while_status_unchanged() -> None:
    pod = _pod()
    obs = {"main": Observed((_running(),))}
    first = plan_pod(pod, obs, {"main": ProbeOutcome(ready=True)}, NOW, CTX)
    pod["status"] = first.status
    later = plan_pod(pod, obs, {"main": ProbeOutcome(ready=True)}, NOW + timedelta(minutes=5), CTX)
    assert first.status["conditions"] == later.status["conditions"]


@given(st.integers(min_value=0, max_value=100))
def test_backoff_monotonic_and_capped(n: int) -> None:
    policy = BackoffPolicy(base=10, cap=300)
    assert 0 <= policy.delay(n) <= policy.delay(n + 1) <= 300


@given(
    st.dictionaries(st.from_regex(r"[A-Z]{1,4}", fullmatch=True), st.text(max_size=5), max_size=4),
    st.text(alphabet="$()ABCD xy", max_size=30),
)
def test_expand_is_identity_without_references(env: dict[str, str], text: str) -> None:
    if "$" not in text:
        assert expand(text, env) == text


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("$(A)", "1"),
        ("x$(A)y", "x1y"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$", "$"),
        ("$(A", "$(A"),
        ("a$b", "a$b"),
        ("$(A)$(B)", "12"),
    ],
)
def test_expand_table(text: str, out: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == out


def test_status_path_default() -> None:
    assert _exited(0, 0).log_path == Path()
