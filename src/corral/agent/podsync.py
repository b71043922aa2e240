"""Pod sync: from (desired pod, observed container instances, probe outcomes, now) to a plan. Pure logic.

The agent calls :func:`plan_pod` whenever anything about a pod may have changed (level-triggered) and
applies the returned actions with the runtime; nothing here does IO or reads a clock.

Container lifecycle, one transition function (:func:`container_step`), each branch named:

    NotStarted ──start──▶ Running ──exit──▶ Exited ──restart policy allows──▶ BackOff ──delay over──▶ start
                              │                  └──policy forbids──▶ Terminated (final)
                              └──liveness failed / pod deleting──▶ kill

Pod phase follows the kubelet (``getPhase``): Pending until containers run, Running while any runs or will
restart, Succeeded/Failed once every container is terminated for good.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from corral.agent.runtimes.base import ContainerId, ContainerState, ContainerStatus
from corral.util.clock import rfc3339

JSON = dict[str, Any]

HEALTHY_RESET = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Restart delays: the first restart is immediate, then base·2^(n-1), capped; reset by healthy running."""

    base: float = 10.0
    cap: float = 300.0

    def delay(self, consecutive_restarts: int) -> float:
        if consecutive_restarts <= 0:
            return 0.0
        return float(min(self.cap, self.base * 2 ** min(consecutive_restarts - 1, 32)))


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    ready: bool = False
    started: bool = True
    liveness_failed: bool = False
    message: str = ""


@dataclass(frozen=True, slots=True)
class StartFailure:
    """A start attempt the runtime refused (command not found, bad config…); retried with backoff."""

    attempt: int
    reason: str
    message: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Observed:
    """What the agent knows about one container: its instances (newest last) and start failures."""

    instances: tuple[ContainerStatus, ...] = ()
    failure: StartFailure | None = None
    consecutive_restarts: int = 0


class ActionKind(enum.StrEnum):
    START = "start"
    KILL = "kill"
    REMOVE = "remove"
    DELETE_POD = "delete_pod"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    container: str = ""
    attempt: int = 0
    grace_seconds: float = 0.0
    reason: str = ""
    message: str = ""
    cid: ContainerId | None = None


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: JSON = field(default_factory=dict)
    requeue_after: float | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type, reason, message) Events the agent should record."""

    def wake_in(self, seconds: float) -> None:
        if seconds >= 0 and (self.requeue_after is None or seconds < self.requeue_after):
            self.requeue_after = seconds


class Step(enum.StrEnum):
    START = "start"
    RUNNING = "running"
    KILL_UNHEALTHY = "kill_unhealthy"
    BACKOFF = "backoff"
    RESTART = "restart"
    TERMINATED = "terminated"
    WAIT_CONFIG = "wait_config"


@dataclass(frozen=True, slots=True)
class ContainerDecision:
    step: Step
    attempt: int = 0
    wait: float = 0.0


def _latest(obs: Observed) -> ContainerStatus | None:
    return obs.instances[-1] if obs.instances else None


def _should_restart(policy: str, exit_code: int | None) -> bool:
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def container_step(
    obs: Observed,
    restart_policy: str,
    probe: ProbeOutcome,
    backoff: BackoffPolicy,
    now: datetime,
    *,
    is_init: bool = False,
) -> ContainerDecision:
    """The one transition function of the container state machine."""
    latest = _latest(obs)
    failure = obs.failure
    next_attempt = (latest.id.attempt + 1) if latest else 0
    if failure is not None and (
        latest is None or failure.attempt >= latest.id.attempt + (1 if latest else 0)
    ):
        # The newest event is a refused start: back off, then try again with the same attempt number.
        policy = "OnFailure" if is_init and restart_policy == "Always" else restart_policy
        if not _should_restart(policy, 128) and failure.attempt > 0:
            return ContainerDecision(Step.TERMINATED)
        wait = backoff.delay(obs.consecutive_restarts + 1) - (now - failure.at).total_seconds()
        if wait > 0:
            return ContainerDecision(Step.BACKOFF, failure.attempt, wait)
        return ContainerDecision(Step.RESTART, failure.attempt)
    if latest is None:
        return ContainerDecision(Step.START, 0)
    if latest.state is ContainerState.RUNNING:
        if probe.liveness_failed and not is_init:
            return ContainerDecision(Step.KILL_UNHEALTHY, latest.id.attempt)
        return ContainerDecision(Step.RUNNING, latest.id.attempt)
    policy = "OnFailure" if is_init and restart_policy == "Always" else restart_policy
    if not _should_restart(policy, latest.exit_code):
        return ContainerDecision(Step.TERMINATED, latest.id.attempt)
    finished = latest.finished_at or now
    restarts = obs.consecutive_restarts
    if latest.finished_at and latest.started_at and latest.finished_at - latest.started_at >= HEALTHY_RESET:
        restarts = 0
    wait = backoff.delay(restarts) - (now - finished).total_seconds()
    if wait > 0:
        return ContainerDecision(Step.BACKOFF, next_attempt, wait)
    return ContainerDecision(Step.RESTART, next_attempt)


# ------------------------------------------------------------------------------------------ status


def _terminated(st: ContainerStatus) -> JSON:
    out: JSON = {
        "exitCode": st.exit_code if st.exit_code is not None else 0,
        "reason": st.reason or ("Completed" if st.exit_code == 0 else "Error"),
        "startedAt": rfc3339(st.started_at),
        "finishedAt": rfc3339(st.finished_at or st.started_at),
        "containerID": f"process://{st.pid}",
    }
    if st.signal:
        out["signal"] = st.signal
    if st.message:
        out["message"] = st.message
    return out


def _container_status(
    container: JSON, obs: Observed, decision: ContainerDecision, probe: ProbeOutcome, restart_count: int
) -> JSON:
    latest = _latest(obs)
    state: JSON
    last_state: JSON = {}
    ready = False
    started = False
    container_id = ""
    if decision.step in (Step.RUNNING, Step.KILL_UNHEALTHY) and latest is not None:
        state = {"running": {"startedAt": rfc3339(latest.started_at)}}
        ready = probe.ready and probe.started
        started = probe.started
        container_id = f"process://{latest.pid}"
        previous = obs.instances[-2] if len(obs.instances) >= 2 else None
        if previous is not None and previous.state is ContainerState.EXITED:
            last_state = {"terminated": _terminated(previous)}
    elif decision.step is Step.TERMINATED and latest is not None:
        state = {"terminated": _terminated(latest)}
        container_id = f"process://{latest.pid}"
        previous = obs.instances[-2] if len(obs.instances) >= 2 else None
        if previous is not None:
            last_state = {"terminated": _terminated(previous)}
    elif decision.step is Step.TERMINATED and obs.failure is not None:
        state = {
            "terminated": {
                "exitCode": 128,
                "reason": obs.failure.reason,
                "message": obs.failure.message,
                "startedAt": rfc3339(obs.failure.at),
                "finishedAt": rfc3339(obs.failure.at),
            }
        }
    elif decision.step is Step.BACKOFF:
        if obs.failure is not None and (latest is None or obs.failure.attempt > latest.id.attempt):
            state = {"waiting": {"reason": obs.failure.reason, "message": obs.failure.message}}
        else:
            state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {_go_duration(decision.wait)} restarting failed container="
                    f"{container.get('name')}",
                }
            }
        if latest is not None and latest.state is ContainerState.EXITED:
            last_state = {"terminated": _terminated(latest)}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
        if latest is not None and latest.state is ContainerState.EXITED:
            last_state = {"terminated": _terminated(latest)}
    out: JSON = {
        "name": container.get("name", ""),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": ready,
        "restartCount": restart_count,
        "started": started,
        "state": state,
        "lastState": last_state,
    }
    if container_id:
        out["containerID"] = container_id
    return out


def _go_duration(seconds: float) -> str:
    total = max(0, round(seconds))
    minutes, secs = divmod(total, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _condition(
    ctype: str, status: bool, now_text: str, previous: Mapping[str, JSON], reason: str = "", message: str = ""
) -> JSON:
    value = "True" if status else "False"
    old = previous.get(ctype)
    transition = old.get("lastTransitionTime") if old and old.get("status") == value else now_text
    out: JSON = {"type": ctype, "status": value, "lastProbeTime": None, "lastTransitionTime": transition}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class PodContext:
    node_name: str
    host_ip: str
    grace_override: float | None = None


def plan_pod(
    pod: JSON,
    observed: Mapping[str, Observed],
    probes: Mapping[str, ProbeOutcome],
    now: datetime,
    ctx: PodContext,
    backoff: BackoffPolicy = BackoffPolicy(),
) -> Plan:
    plan = Plan()
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    old_status = pod.get("status") or {}
    restart_policy = spec.get("restartPolicy", "Always")
    init_containers: Sequence[JSON] = spec.get("initContainers") or []
    containers: Sequence[JSON] = spec.get("containers") or []
    deleting = bool(meta.get("deletionTimestamp"))
    now_text = rfc3339(now)

    if deleting:
        grace = float(meta.get("deletionGracePeriodSeconds", spec.get("terminationGracePeriodSeconds", 30)))
        if ctx.grace_override is not None:
            grace = ctx.grace_override
        running = False
        for obs in observed.values():
            latest = _latest(obs)
            if latest is not None and latest.state is ContainerState.RUNNING:
                running = True
                plan.actions.append(
                    Action(
                        ActionKind.KILL,
                        latest.id.name,
                        latest.id.attempt,
                        grace,
                        "Killing",
                        f"Stopping container {latest.id.name}",
                        latest.id,
                    )
                )
        if not running:
            plan.actions.append(Action(ActionKind.DELETE_POD))
        plan.status = dict(old_status)
        return plan

    # Init containers, in order: each must succeed before the next (and before app containers) start.
    init_statuses: list[JSON] = []
    initialized = True
    init_failed = False
    for container in init_containers:
        name = container.get("name", "")
        obs = observed.get(name, Observed())
        if not initialized:
            init_statuses.append(
                _container_status(
                    container, obs, ContainerDecision(Step.START), ProbeOutcome(), _restart_count(obs)
                )
            )
            continue
        decision = container_step(obs, restart_policy, ProbeOutcome(), backoff, now, is_init=True)
        latest = _latest(obs)
        done = decision.step is Step.TERMINATED and latest is not None and latest.exit_code == 0
        if decision.step is Step.TERMINATED and not done:
            init_failed = True
        _apply_decision(plan, name, decision)
        init_statuses.append(_container_status(container, obs, decision, ProbeOutcome(), _restart_count(obs)))
        if not done:
            initialized = False

    statuses: list[JSON] = []
    terminated_all = True
    any_running = False
    restarting = False
    failed_any = False
    for container in containers:
        name = container.get("name", "")
        obs = observed.get(name, Observed())
        probe = probes.get(
            name,
            ProbeOutcome(
                ready=not container.get("readinessProbe"), started=not container.get("startupProbe")
            ),
        )
        if not initialized or init_failed:
            statuses.append(
                _container_status(container, obs, ContainerDecision(Step.START), probe, _restart_count(obs))
            )
            terminated_all = init_failed
            continue
        decision = container_step(obs, restart_policy, probe, backoff, now)
        _apply_decision(plan, name, decision, probe, float(spec.get("terminationGracePeriodSeconds", 30)))
        statuses.append(_container_status(container, obs, decision, probe, _restart_count(obs)))
        if decision.step is not Step.TERMINATED:
            terminated_all = False
        if decision.step in (Step.RUNNING, Step.KILL_UNHEALTHY):
            any_running = True
        elif decision.step in (Step.RESTART, Step.BACKOFF) and obs.instances:
            restarting = True  # the kubelet counts a container waiting to restart as running
        latest = _latest(obs)
        if decision.step is Step.TERMINATED and (latest is None or latest.exit_code != 0):
            failed_any = True

    if init_failed:
        phase = "Failed"
    elif not initialized:
        phase = "Pending"
    elif terminated_all and containers:
        phase = "Failed" if failed_any else "Succeeded"
    elif any_running or restarting:
        phase = "Running"
    else:
        phase = "Pending"

    previous = {c.get("type", ""): c for c in old_status.get("conditions") or [] if isinstance(c, dict)}
    containers_ready = bool(statuses) and all(s["ready"] for s in statuses)
    not_ready = [s["name"] for s in statuses if not s["ready"]]
    ready_message = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else ""
    pending_init = [
        s["name"]
        for s in init_statuses
        if "terminated" not in s["state"] or s["state"]["terminated"].get("exitCode") != 0
    ]
    conditions = [
        _condition("PodReadyToStartContainers", True, now_text, previous),
        _condition(
            "Initialized",
            initialized and not init_failed,
            now_text,
            previous,
            "" if initialized else "ContainersNotInitialized",
            "" if initialized else f"containers with incomplete status: [{' '.join(pending_init)}]",
        ),
        _condition(
            "Ready",
            containers_ready and phase == "Running",
            now_text,
            previous,
            ""
            if containers_ready
            else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"),
            ready_message,
        ),
        _condition(
            "ContainersReady",
            containers_ready and phase == "Running",
            now_text,
            previous,
            ""
            if containers_ready
            else ("PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"),
            ready_message,
        ),
        _condition("PodScheduled", True, now_text, previous),
    ]
    status: JSON = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": ctx.host_ip,
        "hostIPs": [{"ip": ctx.host_ip}],
        "podIP": ctx.host_ip,
        "podIPs": [{"ip": ctx.host_ip}],
        "startTime": old_status.get("startTime") or now_text,
        "containerStatuses": statuses,
        "qosClass": old_status.get("qosClass", "BestEffort"),
    }
    if init_containers:
        status["initContainerStatuses"] = init_statuses
    plan.status = status
    return plan


def _restart_count(obs: Observed) -> int:
    latest = _latest(obs)
    if latest is None:
        return obs.failure.attempt if obs.failure else 0
    count = latest.id.attempt
    if obs.failure is not None and obs.failure.attempt > latest.id.attempt:
        count = obs.failure.attempt
    return count


def _apply_decision(
    plan: Plan, name: str, decision: ContainerDecision, probe: ProbeOutcome | None = None, grace: float = 0.0
) -> None:
    if decision.step in (Step.START, Step.RESTART):
        plan.actions.append(Action(ActionKind.START, name, decision.attempt))
    elif decision.step is Step.BACKOFF:
        plan.wake_in(decision.wait)
    elif decision.step is Step.KILL_UNHEALTHY:
        message = probe.message if probe else ""
        plan.actions.append(
            Action(
                ActionKind.KILL,
                name,
                decision.attempt,
                grace,
                "Unhealthy",
                f"Container {name} failed liveness probe, will be restarted"
                + (f": {message}" if message else ""),
            )
        )
