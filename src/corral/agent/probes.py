"""Container probes: liveness, readiness and startup, with Kubernetes semantics.

Three layers, from pure to IO:

* :func:`parse_probe` turns a Kubernetes probe dict into a :class:`ProbeSpec` (defaults applied, named ports
  resolved against the container's ports). Errors name the field: ``readinessProbe.httpGet.port: ...``.
* :class:`ProbeTracker` is the pure state machine for one probe of one container instance: when the next probe
  is due (initial delay, then every period), consecutive results against the thresholds, and the derived
  outcome. It follows the kubelet's prober worker: readiness starts ``Failure`` (not ready), liveness starts
  ``Success``, startup starts ``Unknown``; a result only becomes the outcome after ``successThreshold`` /
  ``failureThreshold`` consecutive equal results; a failed liveness or startup probe puts the probe on hold
  (the container is going to be restarted); a succeeded startup probe stops probing.
* :func:`run_probe` performs one probe (httpGet with aiohttp, tcpSocket, exec through a callable the agent
  provides) and :class:`ContainerProber` runs a container's probes on their schedule as asyncio tasks, gating
  liveness and readiness on the startup probe and calling back on each outcome change.

Probes may only target the pod itself. Pods share the node's address (``status.podIP`` is the node IP), so
"the pod itself" means: host empty, the pod IP, or loopback; and a port that is either one of this pod's
declared ports (translated to its allocated host port) or a port no other pod holds. Anything else is a probe
configuration error and is never contacted. Redirects are followed only to the same host and port.

gRPC probes need an HTTP/2 client, which we do not have without a new dependency; they are rejected as a
configuration error ("grpc probes are not supported").

Timing fields are whole seconds in the API. ``ProbeSpec`` stores them as floats so tests can run a schedule
faster with ``dataclasses.replace(spec, period=0.05)``; the API path never produces fractions.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from corral.agent.runtimes.base import ContainerId, Runtime
from corral.observability.registry import AGENT_PROBE_FAILURES, AGENT_PROBES
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

USER_AGENT = "kube-probe/1.32"
MAX_OUTPUT = 10 * 1024
"""Bytes of HTTP body / exec output kept, as in the kubelet."""
MAX_REDIRECTS = 10
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class ProbeKind(enum.StrEnum):
    LIVENESS = "liveness"
    READINESS = "readiness"
    STARTUP = "startup"

    @property
    def field(self) -> str:
        """The container field holding this probe: ``livenessProbe``."""
        return f"{self.value}Probe"

    @property
    def label(self) -> str:
        """``Liveness``, as event messages spell it."""
        return self.value.capitalize()


class Outcome(enum.StrEnum):
    """A probe's derived result (kubelet ``results.Result``).

    Readiness: Success = ready. Liveness: Failure = restart needed. Startup: Success = started,
    Failure = restart needed, Unknown = still starting.
    """

    UNKNOWN = "Unknown"
    SUCCESS = "Success"
    FAILURE = "Failure"


# -- spec ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpGetAction:
    port: int
    """Container port (named ports already resolved); translated to the host port when probing."""
    path: str = "/"
    scheme: str = "HTTP"
    host: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TcpSocketAction:
    port: int
    host: str = ""


@dataclass(frozen=True, slots=True)
class ExecAction:
    command: tuple[str, ...]


ProbeAction = HttpGetAction | TcpSocketAction | ExecAction


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    kind: ProbeKind
    action: ProbeAction
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None
    """Probe-level override of the pod's grace period when a liveness/startup failure kills the container."""


class ProbeConfigError(ValueError):
    """A probe that cannot be run as written; ``field`` is relative to the container (``livenessProbe.…``)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")


def _int_field(
    probe: Mapping[str, Any], name: str, path: str, *, default: int, minimum: int, zero_is_default: bool
) -> int:
    value = probe.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ProbeConfigError(f"{path}.{name}", f"must be an integer, not {value!r}")
    if value == 0 and zero_is_default:
        # API defaulting (SetDefaults_Probe) turns an explicit 0 into the default.
        return default
    if value < minimum:
        raise ProbeConfigError(f"{path}.{name}", f"must be greater than or equal to {minimum}")
    return value


def _container_port_names(container: Mapping[str, Any] | None) -> dict[str, int]:
    names: dict[str, int] = {}
    for port in (container or {}).get("ports") or ():
        name, number = port.get("name"), port.get("containerPort")
        if isinstance(name, str) and name and isinstance(number, int) and name not in names:
            names[name] = number
    return names


def _parse_port(value: Any, path: str, container: Mapping[str, Any] | None) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise ProbeConfigError(path, f"must be between 1 and 65535, inclusive (got {value})")
        return value
    if isinstance(value, str) and value:
        names = _container_port_names(container)
        if value not in names:
            raise ProbeConfigError(path, f'port name "{value}" not found in container ports')
        return names[value]
    if value is None:
        raise ProbeConfigError(path, "Required value")
    raise ProbeConfigError(path, f"must be a port number or a port name, not {value!r}")


def _check_host(host: str, path: str, pod_ip: str | None) -> None:
    if pod_ip is not None and not _host_allowed(host, pod_ip):
        raise ProbeConfigError(path, f'probes may only target the pod itself, not host "{host}"')


def _host_allowed(host: str, pod_ip: str) -> bool:
    return not host or host in LOOPBACK_HOSTS or host == pod_ip


def _parse_action(
    kind: ProbeKind, probe: Mapping[str, Any], container: Mapping[str, Any] | None, pod_ip: str | None
) -> ProbeAction:
    path = kind.field
    present = [name for name in _HANDLERS if probe.get(name) is not None]
    if not present:
        raise ProbeConfigError(path, "must specify a handler type")
    if len(present) > 1:
        raise ProbeConfigError(f"{path}.{present[1]}", "may not specify more than 1 handler type")
    handler = present[0]
    body = probe[handler]
    hpath = f"{path}.{handler}"
    if not isinstance(body, Mapping):
        raise ProbeConfigError(hpath, "must be an object")
    if handler == "grpc":
        raise ProbeConfigError(hpath, "grpc probes are not supported")
    if handler == "exec":
        command = body.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise ProbeConfigError(f"{hpath}.command", "Required value: a non-empty list of strings")
        return ExecAction(tuple(command))
    port = _parse_port(body.get("port"), f"{hpath}.port", container)
    host = body.get("host") or ""
    if not isinstance(host, str):
        raise ProbeConfigError(f"{hpath}.host", "must be a string")
    _check_host(host, f"{hpath}.host", pod_ip)
    if handler == "tcpSocket":
        return TcpSocketAction(port=port, host=host)
    scheme = body.get("scheme") or "HTTP"
    if scheme not in ("HTTP", "HTTPS"):
        raise ProbeConfigError(
            f"{hpath}.scheme", f'Unsupported value: "{scheme}": supported values: "HTTP", "HTTPS"'
        )
    request_path = body.get("path") or "/"
    if not isinstance(request_path, str):
        raise ProbeConfigError(f"{hpath}.path", "must be a string")
    if not request_path.startswith("/"):
        request_path = "/" + request_path
    headers: list[tuple[str, str]] = []
    for index, header in enumerate(body.get("httpHeaders") or ()):
        name = header.get("name") if isinstance(header, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ProbeConfigError(f"{hpath}.httpHeaders[{index}].name", "Required value")
        headers.append((name, str(header.get("value") or "")))
    return HttpGetAction(port=port, path=request_path, scheme=scheme, host=host, headers=tuple(headers))


def parse_probe(
    kind: ProbeKind,
    probe: Mapping[str, Any],
    container: Mapping[str, Any] | None = None,
    *,
    pod_ip: str | None = None,
) -> ProbeSpec:
    """Parse one probe of ``container`` (whose ``ports`` resolve named ports), applying Kubernetes defaults.

    With ``pod_ip`` given, a ``host`` other than the pod IP or loopback is rejected here already;
    :func:`run_probe` checks again either way.
    """
    path = kind.field
    if not isinstance(probe, Mapping):
        raise ProbeConfigError(path, "must be an object")
    action = _parse_action(kind, probe, container, pod_ip)
    initial_delay = _int_field(
        probe, "initialDelaySeconds", path, default=0, minimum=0, zero_is_default=False
    )
    period = _int_field(probe, "periodSeconds", path, default=10, minimum=1, zero_is_default=True)
    timeout = _int_field(probe, "timeoutSeconds", path, default=1, minimum=1, zero_is_default=True)
    success = _int_field(probe, "successThreshold", path, default=1, minimum=1, zero_is_default=True)
    failure = _int_field(probe, "failureThreshold", path, default=3, minimum=1, zero_is_default=True)
    if kind is not ProbeKind.READINESS and success != 1:
        raise ProbeConfigError(f"{path}.successThreshold", "must be 1")
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None:
        if kind is ProbeKind.READINESS:
            raise ProbeConfigError(
                f"{path}.terminationGracePeriodSeconds", "must not be set for readinessProbes"
            )
        if not isinstance(grace, int) or isinstance(grace, bool) or grace < 1:
            raise ProbeConfigError(f"{path}.terminationGracePeriodSeconds", "must be greater than 0")
    return ProbeSpec(
        kind=kind,
        action=action,
        initial_delay=float(initial_delay),
        period=float(period),
        timeout=float(timeout),
        success_threshold=success,
        failure_threshold=failure,
        termination_grace_period_seconds=grace,
    )


def parse_container_probes(container: Mapping[str, Any], *, pod_ip: str | None = None) -> list[ProbeSpec]:
    """Every probe the container declares, in the order startup, liveness, readiness."""
    specs: list[ProbeSpec] = []
    for kind in (ProbeKind.STARTUP, ProbeKind.LIVENESS, ProbeKind.READINESS):
        probe = container.get(kind.field)
        if probe is not None:
            specs.append(parse_probe(kind, probe, container, pod_ip=pod_ip))
    return specs


# -- state machine -------------------------------------------------------------------------------------------

_INITIAL = {
    ProbeKind.READINESS: Outcome.FAILURE,
    ProbeKind.LIVENESS: Outcome.SUCCESS,
    ProbeKind.STARTUP: Outcome.UNKNOWN,
}


READINESS_WARMUP_INTERVAL = 0.05
"""Seconds between readiness probes while a container has not been Ready yet (during its first period)."""


class ProbeTracker:
    """One probe of one container instance: schedule, consecutive-result counting, derived outcome. Pure.

    Times are monotonic seconds supplied by the caller. Construct a new tracker (or :meth:`reset`) when the
    container (re)starts: readiness goes back to not ready.

    One departure from the kubelet, for fast starts (scale from zero, rollouts): until a readiness probe
    first succeeds, and for at most one ``periodSeconds`` after the initial delay, a failed readiness probe
    is retried every ``READINESS_WARMUP_INTERVAL`` seconds instead of a period later. A server that listens
    50 ms after its start is Ready 50 ms later, not ``periodSeconds`` later. It only adds probes before the
    first success, so it never delays a transition the kubelet would make.
    """

    def __init__(self, spec: ProbeSpec, started_at: float, *, warmup: bool = True) -> None:
        self.spec = spec
        self.warmup = warmup
        self.reset(started_at)

    @property
    def kind(self) -> ProbeKind:
        return self.spec.kind

    def reset(self, started_at: float) -> None:
        self.outcome = _INITIAL[self.spec.kind]
        self.last_result = Outcome.UNKNOWN
        self.run = 0
        """How many consecutive probes returned ``last_result``."""
        self.on_hold = False
        self._due = started_at + self.spec.initial_delay
        self._warmup_until = self._due + self.spec.period
        self._ever_succeeded = False

    @property
    def done(self) -> bool:
        """No more probing for this instance: liveness/startup failed (on hold) or startup succeeded."""
        return self.on_hold or (self.kind is ProbeKind.STARTUP and self.outcome is Outcome.SUCCESS)

    def next_due(self) -> float | None:
        """When the next probe should start, or None when this instance is not probed any more."""
        return None if self.done else self._due

    def is_due(self, now: float) -> bool:
        due = self.next_due()
        return due is not None and now >= due

    def record(self, success: bool, now: float) -> bool:
        """Account one probe result that completed at ``now``; True when the outcome changed."""
        if self.done:
            return False
        result = Outcome.SUCCESS if success else Outcome.FAILURE
        if result is self.last_result:
            self.run += 1
        else:
            self.last_result, self.run = result, 1
        threshold = self.spec.success_threshold if success else self.spec.failure_threshold
        changed = False
        if self.run >= threshold and self.outcome is not result:
            self.outcome, changed = result, True
        if self.kind is not ProbeKind.READINESS and self.outcome is Outcome.FAILURE:
            self.on_hold, self.run = True, 0
        self._ever_succeeded = self._ever_succeeded or success
        if (
            self.kind is ProbeKind.READINESS
            and self.warmup
            and not self._ever_succeeded
            and now + READINESS_WARMUP_INTERVAL < self._warmup_until
        ):
            self._due = now + READINESS_WARMUP_INTERVAL
            return changed
        # Ticker semantics: stay on the initialDelay + k*period grid, skipping ticks missed by a slow probe.
        period = self.spec.period
        missed = int((now - self._due) // period) if now > self._due else 0
        self._due += (missed + 1) * period
        return changed

    @property
    def ready(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    @property
    def started(self) -> bool:
        return self.outcome is Outcome.SUCCESS

    @property
    def restart_needed(self) -> bool:
        return self.kind is not ProbeKind.READINESS and self.outcome is Outcome.FAILURE


# -- running one probe ---------------------------------------------------------------------------------------

ExecFn = Callable[[list[str]], Awaitable[tuple[int, str]]]
"""Run argv in the container; returns (exit code, combined output). Cancellation must kill the command."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """Where a container instance's probes go."""

    pod_ip: str
    host_ports: Mapping[int, int] = field(default_factory=dict)
    """TCP containerPort → allocated host port (see ``ports.probe_host_ports``)."""
    exec_fn: ExecFn | None = None
    foreign_port: Callable[[int], str | None] | None = None
    """Given a host port, the name of *another* pod holding it (``HostPortAllocator.foreign_owner``)."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    success: bool
    message: str = ""
    """Failure: the Unhealthy event message (``Liveness probe failed: …``). Success: exec output, if any."""
    errored: bool = False
    """The probe could not be performed as configured; counts as a failure, as in the kubelet."""


class _ConfigError(Exception):
    pass


def _join_host_port(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _endpoint(host: str, port: int, target: ProbeTarget) -> tuple[str, int]:
    if not _host_allowed(host, target.pod_ip):
        raise _ConfigError(f'probes may only target the pod itself, not host "{host}"')
    host_port = target.host_ports.get(port)
    if host_port is None:
        # Not declared: the process binds the literal port on the node, unless that port is another pod's.
        owner = target.foreign_port(port) if target.foreign_port else None
        if owner:
            raise _ConfigError(
                f"probes may only target the pod itself: port {port} is allocated to pod {owner}"
            )
        host_port = port
    return host or target.pod_ip, host_port


def _os_error_text(exc: OSError | None, fallback: str) -> str:
    if exc is not None and exc.errno is not None:
        if exc.errno == errno.ETIMEDOUT:
            return "i/o timeout"
        return "connect: " + os.strerror(exc.errno).lower()
    return fallback


async def _http_probe(action: HttpGetAction, seconds: float, target: ProbeTarget) -> tuple[bool, str]:
    host, port = _endpoint(action.host, action.port, target)
    scheme = action.scheme.lower()
    url = URL(f"{scheme}://{_join_host_port(host, port)}{action.path}", encoded=False)
    headers: CIMultiDict[str] = CIMultiDict({"User-Agent": USER_AGENT, "Accept": "*/*"})
    for name in {name for name, _ in action.headers}:
        headers.popall(name, None)
    for name, value in action.headers:
        headers.add(name, value)
    origin = (url.host, url.port)
    current = url
    connector = aiohttp.TCPConnector(force_close=True, ssl=False)
    try:
        async with (
            asyncio.timeout(seconds),
            aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True
            ) as session,
        ):
            for redirects in range(MAX_REDIRECTS + 1):
                async with session.get(current, headers=headers, allow_redirects=False) as resp:
                    status = resp.status
                    body = (await resp.content.read(MAX_OUTPUT)).decode("utf-8", "replace")
                    location = resp.headers.get("Location")
                if status in (301, 302, 303, 307, 308) and location:
                    following = current.join(URL(location))
                    if (following.host, following.port) != origin:
                        # The kubelet stops at a redirect to another host and reports success with a warning;
                        # here another port on the node may be another pod, so that stops too.
                        return True, f"Probe terminated redirects, Response body: {body}"
                    if redirects == MAX_REDIRECTS:
                        return False, f'Get "{following}": stopped after {MAX_REDIRECTS} redirects'
                    current = following
                    continue
                if 200 <= status < 400:
                    return True, ""
                return False, f"HTTP probe failed with statuscode: {status}"
    except TimeoutError:
        return (
            False,
            f'Get "{current}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
        )
    except aiohttp.ClientConnectorError as exc:
        where = _join_host_port(host, port)
        return False, f'Get "{current}": dial tcp {where}: {_os_error_text(exc.os_error, str(exc))}'
    except aiohttp.ServerDisconnectedError:
        return False, f'Get "{current}": EOF'
    except aiohttp.ClientError as exc:
        return False, f'Get "{current}": {exc}'
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


async def _tcp_probe(action: TcpSocketAction, seconds: float, target: ProbeTarget) -> tuple[bool, str]:
    host, port = _endpoint(action.host, action.port, target)
    where = _join_host_port(host, port)
    try:
        async with asyncio.timeout(seconds):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return False, f"dial tcp {where}: i/o timeout"
    except OSError as exc:
        return False, f"dial tcp {where}: {_os_error_text(exc, str(exc))}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def _exec_probe(action: ExecAction, seconds: float, target: ProbeTarget) -> tuple[bool, str]:
    if target.exec_fn is None:
        raise _ConfigError("exec probes are not supported for this container")
    command = " ".join(action.command)
    try:
        async with asyncio.timeout(seconds):
            exit_code, output = await target.exec_fn(list(action.command))
    except TimeoutError:
        return False, f'command "{command}" timed out'
    output = output[:MAX_OUTPUT]
    if exit_code == 0:
        return True, output
    return False, output.strip() or f'command "{command}" exited with code {exit_code}'


async def run_probe(spec: ProbeSpec, target: ProbeTarget) -> ProbeResult:
    """Perform one probe within ``spec.timeout``; never raises for probe failures (only on cancellation)."""
    action = spec.action
    title = spec.kind.label
    try:
        if isinstance(action, HttpGetAction):
            ok, message = await _http_probe(action, spec.timeout, target)
        elif isinstance(action, TcpSocketAction):
            ok, message = await _tcp_probe(action, spec.timeout, target)
        else:
            ok, message = await _exec_probe(action, spec.timeout, target)
    except _ConfigError as exc:
        return ProbeResult(False, f"{title} probe errored: {exc}", errored=True)
    except Exception as exc:
        log.warning("%s probe errored", title, exc_info=True)
        return ProbeResult(False, f"{title} probe errored: {exc}", errored=True)
    if ok:
        return ProbeResult(True, message)
    return ProbeResult(False, f"{title} probe failed: {message}")


class _CollectedOutput:
    """ExecStreams that feeds no stdin and keeps the first ``limit`` bytes of stdout and stderr together."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    async def read_stdin(self) -> bytes | None:
        return None

    async def write_stdout(self, data: bytes) -> None:
        self._keep(data)

    async def write_stderr(self, data: bytes) -> None:
        self._keep(data)

    def _keep(self, data: bytes) -> None:
        room = self._limit - self._size
        if room > 0:
            self._chunks.append(data[:room])
            self._size += min(room, len(data))

    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")


def runtime_exec_fn(runtime: Runtime, cid: ContainerId, *, limit: int = MAX_OUTPUT) -> ExecFn:
    """An :data:`ExecFn` over ``Runtime.exec`` for one container instance (no stdin, no tty)."""

    async def run(argv: list[str]) -> tuple[int, str]:
        streams = _CollectedOutput(limit)
        result = await runtime.exec(cid, argv, streams)
        return result.exit_code, streams.text()

    return run


# -- scheduling ----------------------------------------------------------------------------------------------

ChangeCallback = Callable[[ProbeKind, Outcome, str], None]
"""(kind, new outcome, message of the probe that caused it). Keep it quick: enqueue, don't write."""
ResultCallback = Callable[[ProbeKind, ProbeResult], None]
Sleep = Callable[[float], Awaitable[None]]
ProbeRunner = Callable[[ProbeSpec, ProbeTarget], Awaitable[ProbeResult]]


class ContainerProber:
    """Runs the probes of one running container instance until :meth:`stop`.

    One asyncio task per probe. The startup probe runs first; liveness and readiness wait until it succeeds
    (their initial delay still counts from the container's start). ``on_change`` is called when an outcome
    changes: readiness Success/Failure, startup Success (started), liveness or startup Failure (restart the
    container; the message says why, e.g. ``Liveness probe failed: HTTP probe failed with statuscode: 500``).
    ``on_result`` (optional) sees every result, e.g. to emit an ``Unhealthy`` event per failed probe as the
    kubelet does. After a restart, start a new prober for the new instance.
    """

    def __init__(
        self,
        probes: Iterable[ProbeSpec],
        target: ProbeTarget,
        on_change: ChangeCallback,
        *,
        started_at: datetime | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        runner: ProbeRunner = run_probe,
        on_result: ResultCallback | None = None,
        name: str = "",
        readiness_warmup: bool = True,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        start = self._clock.monotonic()
        if started_at is not None:
            # An adopted container started before we did: count its initial delays from its real start.
            start -= max(0.0, (self._clock.now() - started_at).total_seconds())
        self._trackers: dict[ProbeKind, ProbeTracker] = {}
        for spec in probes:
            if spec.kind in self._trackers:
                raise ValueError(f"two {spec.kind.field}s for one container")
            self._trackers[spec.kind] = ProbeTracker(spec, start, warmup=readiness_warmup)
        self._target = target
        self._on_change = on_change
        self._on_result = on_result
        self._sleep = sleep
        self._runner = runner
        self._name = name
        self._started = asyncio.Event()
        if ProbeKind.STARTUP not in self._trackers:
            self._started.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_message: dict[ProbeKind, str] = {}

    # -- state the agent reads ----------------------------------------------------------------------------

    def tracker(self, kind: ProbeKind) -> ProbeTracker | None:
        return self._trackers.get(kind)

    def outcome(self, kind: ProbeKind) -> Outcome | None:
        tracker = self._trackers.get(kind)
        return tracker.outcome if tracker else None

    @property
    def started(self) -> bool:
        """``containerStatus.started``: no startup probe, or it has succeeded."""
        return self._started.is_set()

    @property
    def ready(self) -> bool:
        """``containerStatus.ready``: started and (no readiness probe, or it currently succeeds)."""
        readiness = self._trackers.get(ProbeKind.READINESS)
        return self.started and (readiness is None or readiness.ready)

    @property
    def restart_needed(self) -> bool:
        return any(t.restart_needed for t in self._trackers.values())

    @property
    def restart_message(self) -> str:
        """Why a restart is needed (the failing probe's last message), or empty."""
        for kind in (ProbeKind.STARTUP, ProbeKind.LIVENESS):
            tracker = self._trackers.get(kind)
            if tracker is not None and tracker.restart_needed:
                return self._last_message.get(kind, "")
        return ""

    @property
    def termination_grace_period_seconds(self) -> int | None:
        """Override for the kill after a failed liveness/startup probe, when the probe sets one."""
        for kind in (ProbeKind.STARTUP, ProbeKind.LIVENESS):
            tracker = self._trackers.get(kind)
            if tracker is not None and tracker.restart_needed:
                return tracker.spec.termination_grace_period_seconds
        return None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._tasks:
            return
        for kind, tracker in self._trackers.items():
            task = asyncio.create_task(self._loop(tracker), name=f"probe {self._name} {kind.value}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Cancel every probe (in flight ones included) and wait for the tasks to end. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, tracker: ProbeTracker) -> None:
        if tracker.kind is not ProbeKind.STARTUP:
            await self._started.wait()
        while True:
            due = tracker.next_due()
            if due is None:
                return
            delay = due - self._clock.monotonic()
            if delay > 0:
                await self._sleep(delay)
            try:
                result = await self._runner(tracker.spec, self._target)
            except Exception as exc:
                log.warning("%s probe of %s raised", tracker.kind.label, self._name, exc_info=True)
                result = ProbeResult(False, f"{tracker.kind.label} probe errored: {exc}", errored=True)
            self._last_message[tracker.kind] = result.message
            _count(tracker.kind, result)
            changed = tracker.record(result.success, self._clock.monotonic())
            if tracker.kind is ProbeKind.STARTUP and tracker.started:
                self._started.set()
            if self._on_result is not None:
                self._call(self._on_result, tracker.kind, result)
            if changed:
                self._call(self._on_change, tracker.kind, tracker.outcome, result.message)

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("probe callback for %s failed", self._name)


def _count(kind: ProbeKind, result: ProbeResult) -> None:
    outcome = "success" if result.success else "error" if result.errored else "failure"
    AGENT_PROBES.labels(kind.value, outcome).inc()
    if not result.success:
        AGENT_PROBE_FAILURES.labels(kind.value).inc()


__all__ = [
    "ChangeCallback",
    "ContainerProber",
    "ExecAction",
    "ExecFn",
    "HttpGetAction",
    "Outcome",
    "ProbeAction",
    "ProbeConfigError",
    "ProbeKind",
    "ProbeResult",
    "ProbeSpec",
    "ProbeTarget",
    "ProbeTracker",
    "ResultCallback",
    "TcpSocketAction",
    "parse_container_probes",
    "parse_probe",
    "run_probe",
    "runtime_exec_fn",
]
