"""The Runtime protocol: how the agent starts, observes, stops and execs into containers.

The agent's pod sync decides *what* should run (pure logic); a runtime does it. The process runtime runs each
container as a plain process group; a container runtime can be added later behind the same protocol.

Identity: a container instance is ``ContainerId`` = (pod uid, container name, attempt). ``attempt`` is the
restart count at start, so a restarted container is a new instance and its predecessor's record (exit code,
finish time) stays available for ``lastState`` until removed.

Durability: a runtime keeps its records on disk under the agent's data dir, so a new agent process (after
SIGKILL) finds every running container through ``list()`` and never starts a second copy.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from corral.agent.cgroups import ContainerCgroup


class ContainerState(enum.StrEnum):
    RUNNING = "running"
    EXITED = "exited"


@dataclass(frozen=True, slots=True)
class ContainerId:
    pod_uid: str
    name: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.pod_uid}/{self.name}/{self.attempt}"


@dataclass(frozen=True, slots=True)
class BindMount:
    """One mount in a container's private mount namespace (the agent's namespace volume mode).

    The agent resolves every path before the runtime sees it: ``source`` and ``mount_point`` contain no
    symlink and stay inside the volume they belong to (see ``corral.agent.mounting``)."""

    source: str
    """Absolute host path bind-mounted at ``target``: a volume directory, or a ``subPath`` inside one."""
    target: str
    """Absolute path inside the container's namespace (the ``mountPath``)."""
    mount_point: str
    """The host path that is ``target`` once the earlier mounts are in place: ``target`` itself for a mount
    on the host's tree, or a path inside the parent mount's source for a nested mount. Created (directory, or
    an empty file when ``file``) when missing."""
    read_only: bool = False
    file: bool = False
    """``source`` is a file (a ``subPath`` naming one), so the mount point must be a file too."""

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "mount_point": self.mount_point,
            "read_only": self.read_only,
            "file": self.file,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> BindMount:
        return cls(
            str(d["source"]),
            str(d["target"]),
            str(d["mount_point"]),
            bool(d.get("read_only")),
            bool(d.get("file")),
        )


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """Everything needed to start one container instance; the agent has already expanded it."""

    id: ContainerId
    pod_namespace: str
    pod_name: str
    argv: list[str]
    """Final argv after ``$(VAR)`` expansion; argv[0] is looked up on PATH of ``env`` when not absolute."""
    env: dict[str, str]
    working_dir: Path
    log_path: Path
    """stdout and stderr both go here (appended); the runtime rotates it by size."""
    memory_limit_bytes: int | None = None
    cpu_limit_millicores: int | None = None
    log_max_bytes: int = 10 * 1024 * 1024
    log_max_files: int = 3
    mounts: tuple[BindMount, ...] = ()
    """Non-empty: start the container in a new private mount namespace with these mounts, in this order
    (parents before children); read-only ones are remounted read-only after all are made."""


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    id: ContainerId
    state: ContainerState
    pid: int
    started_at: datetime
    finished_at: datetime | None = None
    exit_code: int | None = None
    """Exit status; 128+N when killed by signal N (as a shell reports it)."""
    signal: int | None = None
    oom_killed: bool = False
    reason: str = ""
    """Kubernetes-style terminated reason when exited: Completed, Error, OOMKilled, ContainerStatusUnknown."""
    message: str = ""
    log_path: Path = field(default_factory=Path)


@dataclass(frozen=True, slots=True)
class RunningGroup:
    """Where a running instance's processes are, for resource usage sampling (``corral.agent.usage``)."""

    id: ContainerId
    pgid: int
    """Process group and session id of the container (the process runtime's wrapper pid)."""
    min_start_ticks: int
    """Members started earlier (``/proc/<pid>/stat`` field 22) are not the container's: a reused id."""
    started_at: datetime
    cgroup: ContainerCgroup | None = None


class StartError(Exception):
    """A container could not be started; ``reason`` is Kubernetes-style (e.g. ``StartError``,
    ``CreateContainerConfigError``) and the message names the problem (``exec: "nope": not found``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


ExitCallback = Callable[[ContainerStatus], None]


@dataclass(frozen=True, slots=True)
class ExecResult:
    exit_code: int


class ExecStreams(Protocol):
    """Byte streams for an exec session; the runtime reads stdin and writes stdout/stderr."""

    async def read_stdin(self) -> bytes | None:
        """Next stdin chunk, or None at end of input."""
        ...

    async def write_stdout(self, data: bytes) -> None: ...

    async def write_stderr(self, data: bytes) -> None: ...


class Runtime(Protocol):
    async def start(self, spec: ContainerSpec) -> ContainerStatus:
        """Start the instance; raise :class:`StartError` with a clear reason when it cannot run."""
        ...

    async def stop(self, cid: ContainerId, grace_seconds: float) -> ContainerStatus | None:
        """SIGTERM the process group, wait up to ``grace_seconds``, then SIGKILL. Idempotent."""
        ...

    async def list(self) -> builtins.list[ContainerStatus]:
        """Every instance the runtime has a record of (running and exited), including adopted ones."""
        ...

    async def remove(self, cid: ContainerId) -> None:
        """Forget an exited instance's record (after its pod is gone or the record is superseded)."""
        ...

    def on_exit(self, callback: ExitCallback) -> None:
        """Call ``callback`` promptly (target: well under 50 ms) whenever a running instance exits."""
        ...

    async def exec(
        self, cid: ContainerId, argv: builtins.list[str], streams: ExecStreams, tty: bool = False
    ) -> ExecResult:
        """Run ``argv`` in the container's environment (env, working dir, cgroup) and return its exit code."""
        ...

    async def close(self) -> None:
        """Stop watching; running containers keep running (the next agent adopts them)."""
        ...

    def running_groups(self) -> builtins.list[RunningGroup]:
        """The process group (and cgroup) of every running instance; cheap, no IO (usage sampling)."""
        ...


RuntimeFactory = Callable[[Path], Awaitable[Runtime]]
