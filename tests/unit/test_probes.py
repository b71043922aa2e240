"""Probes, pure parts: parsing with defaults and field-named errors, the per-probe state machine, and the
ContainerProber schedule driven by virtual time with a fake probe runner (no sockets)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.agent.probes import (
    ContainerProber,
    ExecAction,
    HttpGetAction,
    Outcome,
    ProbeConfigError,
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    ProbeTarget,
    ProbeTracker,
    TcpSocketAction,
    parse_container_probes,
    parse_probe,
    run_probe,
)
from corral.testing.clock import FakeClock

L, R, S = ProbeKind.LIVENESS, ProbeKind.READINESS, ProbeKind.STARTUP

CONTAINER: dict[str, Any] = {
    "name": "app",
    "ports": [{"containerPort": 8080, "name": "web"}, {"containerPort": 9090, "name": "metrics"}],
}

# -- parsing ------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    spec = parse_probe(L, {"httpGet": {"port": 8080}}, CONTAINER)
    assert spec == ProbeSpec(
        kind=L,
        action=HttpGetAction(port=8080, path="/", scheme="HTTP", host="", headers=()),
        initial_delay=0,
        period=10,
        timeout=1,
        success_threshold=1,
        failure_threshold=3,
    )


def test_all_fields() -> None:
    spec = parse_probe(
        R,
        {
            "httpGet": {
                "port": "web",
                "path": "healthz",
                "scheme": "HTTPS",
                "host": "127.0.0.1",
                "httpHeaders": [{"name": "X-A", "value": "1"}, {"name": "X-A", "value": "2"}],
            },
            "initialDelaySeconds": 5,
            "periodSeconds": 2,
            "timeoutSeconds": 3,
            "successThreshold": 2,
            "failureThreshold": 4,
        },
        CONTAINER,
    )
    assert spec.action == HttpGetAction(
        port=8080, path="/healthz", scheme="HTTPS", host="127.0.0.1", headers=(("X-A", "1"), ("X-A", "2"))
    )
    assert (spec.initial_delay, spec.period, spec.timeout) == (5, 2, 3)
    assert (spec.success_threshold, spec.failure_threshold) == (2, 4)


def test_zero_means_default_like_api_defaulting() -> None:
    spec = parse_probe(
        S,
        {
            "tcpSocket": {"port": "metrics"},
            "periodSeconds": 0,
            "timeoutSeconds": 0,
            "successThreshold": 0,
            "failureThreshold": 0,
        },
        CONTAINER,
    )
    assert spec.action == TcpSocketAction(port=9090)
    assert (spec.period, spec.timeout, spec.success_threshold, spec.failure_threshold) == (10, 1, 1, 3)


def test_exec_and_grace() -> None:
    spec = parse_probe(L, {"exec": {"command": ["cat", "/tmp/ok"]}, "terminationGracePeriodSeconds": 7})
    assert spec.action == ExecAction(("cat", "/tmp/ok"))
    assert spec.termination_grace_period_seconds == 7


def test_numeric_string_port() -> None:
    assert parse_probe(R, {"tcpSocket": {"port": "8081"}}).action == TcpSocketAction(port=8081)


@pytest.mark.parametrize(
    ("kind", "probe", "message"),
    [
        (
            R,
            {"httpGet": {"port": "web2"}},
            'readinessProbe.httpGet.port: port name "web2" not found in container ports',
        ),
        (
            L,
            {"tcpSocket": {"port": "web2"}},
            'livenessProbe.tcpSocket.port: port name "web2" not found in container ports',
        ),
        (
            L,
            {"httpGet": {"port": 0}},
            "livenessProbe.httpGet.port: must be between 1 and 65535, inclusive (got 0)",
        ),
        (L, {"httpGet": {}}, "livenessProbe.httpGet.port: Required value"),
        (
            L,
            {"httpGet": {"port": 1.5}},
            "livenessProbe.httpGet.port: must be a port number or a port name, not 1.5",
        ),
        (L, {}, "livenessProbe: must specify a handler type"),
        (
            L,
            {"exec": {"command": ["true"]}, "httpGet": {"port": 80}},
            "livenessProbe.httpGet: may not specify more than 1 handler type",
        ),
        (S, {"grpc": {"port": 9000}}, "startupProbe.grpc: grpc probes are not supported"),
        (
            L,
            {"exec": {"command": []}},
            "livenessProbe.exec.command: Required value: a non-empty list of strings",
        ),
        (L, {"exec": "true"}, "livenessProbe.exec: must be an object"),
        (
            L,
            {"httpGet": {"port": 80, "scheme": "FTP"}},
            'livenessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS"',
        ),
        (
            L,
            {"httpGet": {"port": 80, "httpHeaders": [{"value": "x"}]}},
            "livenessProbe.httpGet.httpHeaders[0].name: Required value",
        ),
        (L, {"tcpSocket": {"port": 80}, "successThreshold": 2}, "livenessProbe.successThreshold: must be 1"),
        (S, {"tcpSocket": {"port": 80}, "successThreshold": 3}, "startupProbe.successThreshold: must be 1"),
        (
            R,
            {"tcpSocket": {"port": 80}, "periodSeconds": -1},
            "readinessProbe.periodSeconds: must be greater than or equal to 1",
        ),
        (
            R,
            {"tcpSocket": {"port": 80}, "initialDelaySeconds": -1},
            "readinessProbe.initialDelaySeconds: must be greater than or equal to 0",
        ),
        (
            R,
            {"tcpSocket": {"port": 80}, "timeoutSeconds": "1"},
            "readinessProbe.timeoutSeconds: must be an integer, not '1'",
        ),
        (
            R,
            {"tcpSocket": {"port": 80}, "failureThreshold": True},
            "readinessProbe.failureThreshold: must be an integer, not True",
        ),
        (
            R,
            {"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 5},
            "readinessProbe.terminationGracePeriodSeconds: must not be set for readinessProbes",
        ),
        (
            L,
            {"tcpSocket": {"port": 80}, "terminationGracePeriodSeconds": 0},
            "livenessProbe.terminationGracePeriodSeconds: must be greater than 0",
        ),
    ],
)
def test_parse_errors(kind: ProbeKind, probe: dict[str, Any], message: str) -> None:
    with pytest.raises(ProbeConfigError) as info:
        parse_probe(kind, probe, CONTAINER)
    assert str(info.value) == message
    assert info.value.field == message.split(": ")[0]


@pytest.mark.parametrize("host", ["", "localhost", "127.0.0.1", "::1", "10.1.2.3"])
def test_host_may_be_the_pod_itself(host: str) -> None:
    spec = parse_probe(L, {"httpGet": {"port": 80, "host": host}}, pod_ip="10.1.2.3")
    assert isinstance(spec.action, HttpGetAction)


@pytest.mark.parametrize("handler", ["httpGet", "tcpSocket"])
def test_host_elsewhere_is_rejected(handler: str) -> None:
    with pytest.raises(ProbeConfigError) as info:
        parse_probe(R, {handler: {"port": 80, "host": "example.com"}}, pod_ip="10.1.2.3")
    assert str(info.value) == (
        f'readinessProbe.{handler}.host: probes may only target the pod itself, not host "example.com"'
    )


def test_parse_container_probes_orders_startup_first() -> None:
    container = dict(
        CONTAINER,
        readinessProbe={"tcpSocket": {"port": 8080}},
        startupProbe={"exec": {"command": ["true"]}},
    )
    assert [spec.kind for spec in parse_container_probes(container)] == [S, R]
    assert parse_container_probes(CONTAINER) == []


# -- the state machine ------------------------------------------------------------------------------------


def tracker(kind: ProbeKind, started: float = 100.0, **timing: Any) -> ProbeTracker:
    return ProbeTracker(replace(ProbeSpec(kind, TcpSocketAction(80)), **timing), started)


@pytest.mark.parametrize(
    ("kind", "timing", "results", "outcomes"),
    [
        # Readiness starts not ready; one success makes it ready; three failures make it unready again.
        (R, {}, "s f f f s", ["Success", "Success", "Success", "Failure", "Success"]),
        (R, {}, "f f f f", ["Failure"] * 4),
        (R, {"success_threshold": 3}, "s s f s s s", ["Failure"] * 5 + ["Success"]),
        (R, {"failure_threshold": 1}, "s f s", ["Success", "Failure", "Success"]),
        # Liveness starts healthy; three consecutive failures mean restart, then it is on hold.
        (L, {}, "f f s f f f s", ["Success"] * 5 + ["Failure", "Failure"]),
        (L, {"failure_threshold": 1}, "s f", ["Success", "Failure"]),
        # Startup is unknown until its first success; failureThreshold failures mean restart.
        (S, {}, "f f s", ["Unknown", "Unknown", "Success"]),
        (S, {"failure_threshold": 2}, "f f s", ["Unknown", "Failure", "Failure"]),
    ],
)
def test_outcomes(kind: ProbeKind, timing: dict[str, Any], results: str, outcomes: list[str]) -> None:
    t = tracker(kind, **timing)
    now = 100.0
    seen = []
    for result in results.split():
        now += 10
        t.record(result == "s", now)
        seen.append(t.outcome.value)
    assert seen == outcomes


def test_derived_flags() -> None:
    r = tracker(R)
    assert not r.ready and not r.restart_needed
    r.record(True, 100)
    assert r.ready
    live = tracker(L, failure_threshold=1)
    live.record(False, 100)
    assert live.restart_needed and live.on_hold and live.next_due() is None
    start = tracker(S)
    assert not start.started
    start.record(True, 100)
    assert start.started and start.done and start.next_due() is None


def test_schedule_initial_delay_then_period() -> None:
    t = tracker(L, started=100.0, initial_delay=5, period=10)
    assert t.next_due() == 105
    assert not t.is_due(104.9) and t.is_due(105)
    assert t.record(True, 105.2) is False
    assert t.next_due() == 115
    t.record(True, 115.0)
    assert t.next_due() == 125
    # A slow probe (or a stalled loop) skips missed ticks rather than firing a burst.
    t.record(True, 151.0)
    assert t.next_due() == 155


def test_reset_after_restart() -> None:
    t = tracker(R, initial_delay=3)
    t.record(True, 103)
    assert t.ready
    t.reset(200.0)
    assert not t.ready and t.run == 0 and t.next_due() == 203
    live = tracker(L, failure_threshold=1)
    live.record(False, 100)
    live.reset(300.0)
    assert not live.restart_needed and live.next_due() == 300


def test_on_hold_ignores_results() -> None:
    t = tracker(L, failure_threshold=1)
    assert t.record(False, 100) is True
    assert t.record(True, 110) is False
    assert t.outcome is Outcome.FAILURE


@settings(max_examples=300)
@given(
    kind=st.sampled_from([R, L, S]),
    success_threshold=st.integers(1, 4),
    failure_threshold=st.integers(1, 4),
    results=st.lists(st.booleans(), max_size=40),
)
def test_outcome_flips_only_after_exactly_threshold_consecutive_results(
    kind: ProbeKind, success_threshold: int, failure_threshold: int, results: list[bool]
) -> None:
    if kind is not R:
        success_threshold = 1
    t = tracker(kind, success_threshold=success_threshold, failure_threshold=failure_threshold)
    history: list[bool] = []
    for index, success in enumerate(results):
        before, was_done = t.outcome, t.done
        changed = t.record(success, 100.0 + 10 * (index + 1))
        assert changed == (before is not t.outcome)
        if was_done:
            # Liveness/startup failure and startup success are final for the instance.
            assert kind is not R and t.outcome is before and before is not Outcome.UNKNOWN
            continue
        history.append(success)
        threshold = success_threshold if success else failure_threshold
        streak = len(history) - next(
            (i + 1 for i in range(len(history) - 1, -1, -1) if history[i] != success), 0
        )
        wanted = Outcome.SUCCESS if success else Outcome.FAILURE
        if changed:
            # It flipped to this result, and exactly when the streak reached the threshold.
            assert t.outcome is wanted and streak == threshold
        if streak >= threshold:
            assert t.outcome is wanted
        elif before is not wanted:
            assert t.outcome is before


@given(
    initial_delay=st.integers(0, 30),
    period=st.integers(1, 30),
    lateness=st.lists(st.floats(0, 100, allow_nan=False), max_size=20),
)
def test_due_times_stay_on_the_grid(initial_delay: int, period: int, lateness: list[float]) -> None:
    t = tracker(R, started=0.0, initial_delay=initial_delay, period=period)
    previous = t.next_due()
    assert previous == initial_delay
    for late in lateness:
        assert previous is not None
        finished = previous + late
        t.record(True, finished)
        due = t.next_due()
        assert due is not None
        assert due > finished and due > previous
        assert (due - initial_delay) % period == pytest.approx(0) or (
            due - initial_delay
        ) % period == pytest.approx(period)
        assert due - finished <= period
        previous = due


# -- ContainerProber on virtual time -----------------------------------------------------------------------


class VirtualTime:
    """A FakeClock plus a sleep that only returns when the test advances the clock past its deadline."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.clock.monotonic() + seconds, next(self._seq), future))
        await future

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        target = self.clock.monotonic() + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            wake, _, future = heapq.heappop(self._sleepers)
            if wake > self.clock.monotonic():
                self.clock.advance(wake - self.clock.monotonic())
            if not future.done():
                future.set_result(None)
            await self.settle()
        self.clock.advance(target - self.clock.monotonic())
        await self.settle()


class Scripted:
    """A probe runner whose results per kind the test sets; records when each probe ran."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.results: dict[ProbeKind, bool] = {L: True, R: True, S: False}
        self.calls: list[tuple[float, ProbeKind]] = []

    async def __call__(self, spec: ProbeSpec, target: ProbeTarget) -> ProbeResult:
        self.calls.append((self.clock.monotonic(), spec.kind))
        if self.results[spec.kind]:
            return ProbeResult(True)
        return ProbeResult(False, f"{spec.kind.label} probe failed: HTTP probe failed with statuscode: 500")

    def times(self, kind: ProbeKind) -> list[float]:
        return [at for at, k in self.calls if k is kind]


def spec(kind: ProbeKind, **timing: Any) -> ProbeSpec:
    return replace(ProbeSpec(kind, HttpGetAction(8080, "/healthz")), **timing)


async def test_startup_gates_liveness_and_readiness() -> None:
    vt = VirtualTime()
    runner = Scripted(vt.clock)
    changes: list[tuple[ProbeKind, Outcome, str]] = []
    prober = ContainerProber(
        [spec(S, period=1, failure_threshold=30), spec(L, period=10), spec(R, period=5, initial_delay=2)],
        ProbeTarget("127.0.0.1"),
        lambda kind, outcome, message: changes.append((kind, outcome, message)),
        clock=vt.clock,
        sleep=vt.sleep,
        runner=runner,
    )
    prober.start()
    try:
        await vt.advance(4.5)
        assert runner.times(S) == [0, 1, 2, 3, 4]
        assert runner.times(L) == [] and runner.times(R) == []
        assert not prober.started and not prober.ready
        runner.results[S] = True
        await vt.advance(1)
        assert runner.times(S) == [0, 1, 2, 3, 4, 5]
        assert prober.started
        # Gated probes run as soon as startup succeeds (their initial delay has passed by then).
        assert runner.times(L) == [5] and runner.times(R) == [5]
        assert prober.ready
        assert changes == [(S, Outcome.SUCCESS, ""), (R, Outcome.SUCCESS, "")]
        await vt.advance(20)
        assert runner.times(S) == [0, 1, 2, 3, 4, 5]  # a succeeded startup probe stops
        assert runner.times(L) == [5, 10, 20]  # on the initialDelay + k*period grid
        assert runner.times(R) == [5, 7, 12, 17, 22]
    finally:
        await prober.stop()


async def test_liveness_failure_asks_for_restart_with_the_reason() -> None:
    vt = VirtualTime()
    runner = Scripted(vt.clock)
    runner.results[L] = False
    changes: list[tuple[ProbeKind, Outcome, str]] = []
    results: list[tuple[ProbeKind, ProbeResult]] = []
    prober = ContainerProber(
        [spec(L, period=10, initial_delay=3, termination_grace_period_seconds=5)],
        ProbeTarget("127.0.0.1"),
        lambda *change: changes.append(change),
        on_result=lambda kind, result: results.append((kind, result)),
        clock=vt.clock,
        sleep=vt.sleep,
        runner=runner,
    )
    prober.start()
    try:
        await vt.advance(22)
        assert runner.times(L) == [3, 13]
        assert not prober.restart_needed and prober.ready  # no readiness probe: ready once started
        await vt.advance(1)
        assert prober.restart_needed
        message = "Liveness probe failed: HTTP probe failed with statuscode: 500"
        assert changes == [(L, Outcome.FAILURE, message)]
        assert prober.restart_message == message
        assert prober.termination_grace_period_seconds == 5
        assert len(results) == 3 and all(not r.success for _, r in results)
        await vt.advance(100)
        assert runner.times(L) == [3, 13, 23]  # on hold until the container restarts
    finally:
        await prober.stop()


async def test_startup_failure_asks_for_restart() -> None:
    vt = VirtualTime()
    runner = Scripted(vt.clock)
    changes: list[tuple[ProbeKind, Outcome, str]] = []
    prober = ContainerProber(
        [spec(S, period=2, failure_threshold=2), spec(R, period=1)],
        ProbeTarget("127.0.0.1"),
        lambda *change: changes.append(change),
        clock=vt.clock,
        sleep=vt.sleep,
        runner=runner,
    )
    prober.start()
    try:
        await vt.advance(10)
        assert runner.times(S) == [0, 2]
        assert runner.times(R) == []
        assert prober.restart_needed and not prober.started and not prober.ready
        assert changes == [
            (S, Outcome.FAILURE, "Startup probe failed: HTTP probe failed with statuscode: 500")
        ]
        assert prober.restart_message.startswith("Startup probe failed")
    finally:
        await prober.stop()


async def test_readiness_toggles() -> None:
    vt = VirtualTime()
    runner = Scripted(vt.clock)
    changes: list[tuple[ProbeKind, Outcome]] = []
    prober = ContainerProber(
        [spec(R, period=1, failure_threshold=2, success_threshold=2)],
        ProbeTarget("127.0.0.1"),
        lambda kind, outcome, _: changes.append((kind, outcome)),
        clock=vt.clock,
        sleep=vt.sleep,
        runner=runner,
    )
    prober.start()
    try:
        await vt.advance(0.5)
        assert not prober.ready
        await vt.advance(1)
        assert prober.ready
        runner.results[R] = False
        await vt.advance(1)
        assert prober.ready
        await vt.advance(1)
        assert not prober.ready
        assert changes == [(R, Outcome.SUCCESS), (R, Outcome.FAILURE)]
        assert prober.outcome(R) is Outcome.FAILURE and prober.outcome(L) is None
    finally:
        await prober.stop()


async def test_adopted_container_counts_delay_from_its_real_start() -> None:
    vt = VirtualTime()
    runner = Scripted(vt.clock)
    prober = ContainerProber(
        [spec(R, period=10, initial_delay=30)],
        ProbeTarget("127.0.0.1"),
        lambda *_: None,
        started_at=vt.clock.now() - timedelta(seconds=25),
        clock=vt.clock,
        sleep=vt.sleep,
        runner=runner,
    )
    prober.start()
    try:
        await vt.advance(4.9)
        assert runner.times(R) == []
        await vt.advance(0.2)
        assert runner.times(R) == [5]
    finally:
        await prober.stop()


async def test_stop_cancels_in_flight_probes_and_callbacks_may_fail() -> None:
    blocked = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang(spec: ProbeSpec, target: ProbeTarget) -> ProbeResult:
        blocked.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    prober = ContainerProber([spec(L)], ProbeTarget("127.0.0.1"), lambda *_: None, runner=hang)
    prober.start()
    await asyncio.wait_for(blocked.wait(), 5)
    await prober.stop()
    assert cancelled.is_set()
    await prober.stop()  # idempotent

    vt = VirtualTime()
    runner = Scripted(vt.clock)
    runner.results[R] = True

    def broken(*_: object) -> None:
        raise RuntimeError("callback bug")

    prober = ContainerProber(
        [spec(R, period=1)], ProbeTarget("127.0.0.1"), broken, clock=vt.clock, sleep=vt.sleep, runner=runner
    )
    prober.start()
    try:
        await vt.advance(3)
        assert runner.times(R) == [0, 1, 2, 3]
    finally:
        await prober.stop()


async def test_runner_exception_counts_as_errored_failure() -> None:
    async def boom(spec: ProbeSpec, target: ProbeTarget) -> ProbeResult:
        raise RuntimeError("bug")

    vt = VirtualTime()
    changes: list[tuple[ProbeKind, Outcome, str]] = []
    prober = ContainerProber(
        [spec(L, period=1, failure_threshold=1)],
        ProbeTarget("127.0.0.1"),
        lambda *change: changes.append(change),
        clock=vt.clock,
        sleep=vt.sleep,
        runner=boom,
    )
    prober.start()
    try:
        await vt.advance(1)
        assert changes == [(L, Outcome.FAILURE, "Liveness probe errored: bug")]
    finally:
        await prober.stop()


def test_duplicate_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="two livenessProbes"):
        ContainerProber([spec(L), spec(L)], ProbeTarget("127.0.0.1"), lambda *_: None)


# -- configuration errors are never contacted (no sockets needed) ------------------------------------------


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (
            HttpGetAction(8080, host="192.0.2.1"),
            'Readiness probe errored: probes may only target the pod itself, not host "192.0.2.1"',
        ),
        (
            TcpSocketAction(8080, host="example.com"),
            'Readiness probe errored: probes may only target the pod itself, not host "example.com"',
        ),
        (
            TcpSocketAction(9999),
            "Readiness probe errored: probes may only target the pod itself: port 9999 is allocated to pod "
            "default/other",
        ),
        (ExecAction(("true",)), "Readiness probe errored: exec probes are not supported for this container"),
    ],
)
async def test_configuration_errors(
    action: HttpGetAction | TcpSocketAction | ExecAction, message: str
) -> None:
    target = ProbeTarget(
        "10.1.2.3",
        host_ports={8080: 20000},
        foreign_port=lambda port: "default/other" if port == 9999 else None,
    )
    result = await run_probe(ProbeSpec(R, action), target)
    assert result == ProbeResult(False, message, errored=True)


def test_readiness_is_retried_fast_until_the_first_success_within_the_first_period() -> None:
    t = ProbeTracker(replace(ProbeSpec(ProbeKind.READINESS, TcpSocketAction(80)), period=10.0), 0.0)
    assert t.next_due() == 0.0
    t.record(False, 0.0)  # not listening yet
    assert t.next_due() == pytest.approx(0.05)
    t.record(False, 0.05)
    assert t.next_due() == pytest.approx(0.10)
    assert t.record(True, 0.10) and t.ready
    assert t.next_due() == pytest.approx(10.1)  # one period after the successful probe, then on that grid
    late = ProbeTracker(replace(ProbeSpec(ProbeKind.READINESS, TcpSocketAction(80)), period=1.0), 0.0)
    late.record(False, 0.99)  # the warm-up lasts one period at most
    assert late.next_due() == pytest.approx(1.0)


def test_kubelet_timing_has_no_warmup() -> None:
    spec_ = replace(ProbeSpec(ProbeKind.READINESS, TcpSocketAction(80)), period=10.0)
    t = ProbeTracker(spec_, 0.0, warmup=False)
    t.record(False, 0.0)
    assert t.next_due() == pytest.approx(10.0)
