"""The process runtime: every container is a plain process group, supervised by a tiny shell wrapper.

Boundary: implements :class:`corral.agent.runtimes.base.Runtime` for one node. It starts, watches, stops,
execs into and re-adopts container processes; it does not decide *what* runs or when to restart (the agent).

How a container runs::

    agent ──spawn (setsid, cwd)──▶ /bin/sh wrapper.sh  (session + process-group leader, pgid = its pid)
                                     └─ fork ─▶ ( join cgroup; exec argv )   = the container's main process

* The **wrapper** (a ~20 line POSIX sh script, ~1 MB RSS with dash) waits for its child in the foreground
  and writes the exit status (``128+N`` for signal N, as a shell reports it) to ``<instance>/exit``. That is
  how an exit code survives the agent: when the agent is SIGKILLed the wrapper is re-parented to init and
  still records the status, and a later agent, which is not the parent and cannot ``waitpid``, reads it.
  SIGTERM/SIGINT/SIGHUP are *trapped* by the wrapper (a no-op handler, reset to default in the child on exec),
  so ``killpg(SIGTERM)`` reaches the main process without killing the recorder. The foreground wait (not
  ``cmd &``) matters: a non-interactive shell starts background jobs with SIGINT and SIGQUIT ignored, and
  ignored dispositions survive exec.
* stdout and stderr are one ``O_APPEND`` descriptor on the container's log file, inherited by both processes,
  so logging continues while the agent is down. Rotation is copy-truncate (see :mod:`corral.agent.logs`).
* With cgroups enforced, the child writes ``0`` to each ``cgroup.procs`` before exec, so the main process
  runs inside its limits from its first instruction; the wrapper stays outside and is never OOM-killed.
* Exits are noticed with ``pidfd_open`` on the wrapper + ``loop.add_reader`` (works for non-children after
  adoption; Linux >= 5.3; a 20 ms /proc poll is the fallback).

Durability. Each instance has ``<state>/instances/<key>/record.json`` (written atomically by rename; no fsync:
records only matter while their processes live, i.e. within one boot, and ``boot_id`` is recorded). A new
runtime over the same state dir adopts an instance when the recorded wrapper pid is alive with the recorded
start time (``/proc/<pid>/stat`` field 22) and its command line names the instance dir. Otherwise the
instance is reported exited with the wrapper's recorded status, or — when there is none — as kubelet does
for a container it cannot locate: reason ``ContainerStatusUnknown``, exit code 137.

Exit codes: the status the wrapper records, so 0, 3, 137 (SIGKILL), 143 (SIGTERM) are exact. When the
wrapper itself was killed (``stop`` escalating to SIGKILL of the group) the code is 137; when it vanished for
another reason, ``ContainerStatusUnknown`` / 137. A code > 128 is reported with ``signal = code - 128``; a
process that *exits* with 137 is indistinguishable from one killed by SIGKILL (as with every shell).

When the main process exits, remaining members of its process group (and cgroup) are SIGKILLed, as the
kernel does to a container's pid namespace. Signals only ever go to our process groups: ``killpg`` is used
while the wrapper (the group leader, whose pid pins the group id) is alive or is our unreaped zombie;
otherwise members are found in /proc and signalled through pidfds after their start time is checked.

Environment fidelity: dash exports ``PWD`` (removed again unless the spec sets it, in which case it is the
real working directory) and resets ``IFS``; ``argv[0]`` is looked up on the spec's ``PATH`` (dash's default
PATH when the env has none). Signal dispositions are all default in the container (Popen, not posix_spawn).

Mount namespaces (the agent's namespace volume mode): a spec with ``mounts`` is started as
``unshare -m --propagation private -- sh mountns.sh <ops> -- <workdir> sh wrapper.sh …``. ``unshare`` and the
setup script exec in place, so the pid is still the wrapper's (session leader, adoption unchanged). The script
bind-mounts each volume (then remounts read-only ones), enters the working dir and reports ``ok`` — or
``!problem``, which becomes a ``StartError`` (``CreateContainerError``) before anything of the container runs.
The namespace lives exactly as long as the container's processes; ``exec`` joins it with ``nsenter``. Missing
mount points are created before the spawn and recorded as this instance's (``record.json``); they are removed
(best effort, only while empty) when the last running instance of this runtime that needs them has exited.
A mount point is never removed while another running instance mounts on it: on Linux removing a directory
that is a mount point in another namespace silently detaches that mount.

``exec`` runs in its own session with the container's env, working dir and cgroup, over plain pipes: ``tty``
is ignored. It raises :class:`StartError` with reason ``NotFound`` / ``ContainerNotRunning`` / ``StartError``
before anything runs. Exec processes are killed when their container exits or the runtime closes.

Limits of the design: wrappers that exit after their agent died are re-parented to init (or a subreaper),
which must reap them; until then they are zombies, which costs a pid but not correctness. Wrappers whose
runtime was closed stay zombies in the agent process until a runtime in that process adopts them again.

Additions beyond the Runtime protocol: :meth:`ProcessRuntime.open`, :meth:`process_group`, :meth:`cgroup_of`,
:meth:`maintain_now` (log rotation / cgroup retry, normally on a timer) and the ``cgroups`` attribute (what
is enforced on this host, for node status).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import json
import logging
import os
import secrets
import select
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.agent.cgroups import CgroupError, CgroupLimits, CgroupSupport, ContainerCgroup
from corral.agent.logs import ManagedLog
from corral.agent.mounting import MountPointError, binary, create_mount_point, remove_mount_points
from corral.agent.mountplan import hidden_by_mounts, host_path, is_below, removal_order, setup_ops
from corral.agent.runtimes.base import (
    BindMount,
    ContainerId,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ExecResult,
    ExecStreams,
    ExitCallback,
    RunningGroup,
    StartError,
)
from corral.util.clock import Clock, SystemClock

log = logging.getLogger(__name__)

RECORD_VERSION = 1
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH used to find ``argv[0]`` when the spec's env has none (dash's built-in default)."""
PID_REPORT_TIMEOUT = 10.0
KILL_TIMEOUT = 30.0
FALLBACK_POLL_INTERVAL = 0.02
UNKNOWN_MESSAGE = "The container could not be located when the pod was terminated"
VANISHED_MESSAGE = (
    "The container's supervisor (pid {pid}) exited without recording a status; its processes were killed"
)

# $1 instance dir, $2 keep PWD (1/0), then cgroup.procs files, "--", argv. Stdin is a pipe to the runtime,
# on which the child reports its pid (dash only redirects single-digit fds, so no fd number is passed).
# No variable assignment happens before the fork except in names nobody exports (they are unset again),
# so the container sees exactly the spec's environment.
WRAPPER_SCRIPT = """\
# corral container wrapper: records the exit status of its child in $1/exit.
trap : TERM INT HUP
echo $$ > "$1/wrapper.pid"
(
  [ "$2" = 1 ] || unset PWD OLDPWD
  shift 2
  while [ "$1" != -- ]; do
    echo 0 > "$1" || { echo "corral: cannot join cgroup ($1)" >&2; exit 128; }
    shift
  done
  shift
  read -r __corral_pid __corral_rest < /proc/self/stat
  echo "$__corral_pid" >&0
  exec 0</dev/null
  unset __corral_pid __corral_rest
  exec "$@"
)
echo $? > "$1/exit"
"""

# For exec sessions: join the container's cgroups, then exec. Arguments: cgroup.procs files, "--", argv.
CGROUP_EXEC_SCRIPT = 'while [ "$1" != -- ]; do echo 0 > "$1" || exit 126; shift; done; shift; exec "$@"'

# Namespace volume mode: the first program in the container's new mount namespace (started by `unshare -m`).
# $1 the mount program; then ("b" SOURCE TARGET | "r" TARGET)...; "--"; the working dir; then the wrapper's
# argv. Reports "ok" or "!<problem>" on stdin (the pid pipe) before exec'ing the wrapper, so a failed mount is
# a StartError of start(), not a container that ran and died. printf, not echo: dash's echo expands "\".
MOUNT_NS_SCRIPT = """\
# corral mount namespace setup: bind-mounts a container's volumes, then execs its wrapper.
__corral_oldpwd=${OLDPWD+1}
__corral_mount=$1
shift
while [ "$1" != -- ]; do
  if [ "$1" = b ]; then
    __corral_err=$("$__corral_mount" --bind -- "$2" "$3" 2>&1) || {
      printf '!cannot mount %s at %s: %s\\n' "$2" "$3" "$__corral_err" >&0; exit 127; }
    shift 3
  else
    __corral_err=$("$__corral_mount" -o remount,bind,ro -- "$2" 2>&1) || {
      printf '!cannot make %s read-only: %s\\n' "$2" "$__corral_err" >&0; exit 127; }
    shift 2
  fi
done
shift
if [ ! -e "$1" ]; then __corral_err="no such file or directory"
elif [ ! -d "$1" ]; then __corral_err="not a directory"
elif ! cd -- "$1"; then __corral_err="permission denied"
else __corral_err=""
fi
[ -z "$__corral_err" ] || {
  printf '!chdir to cwd ("%s") set in config failed: %s\\n' "$1" "$__corral_err" >&0; exit 127; }
shift
[ -n "$__corral_oldpwd" ] || unset OLDPWD  # cd set it; the container's env must be the spec's
unset __corral_mount __corral_err __corral_oldpwd
printf 'ok\\n' >&0
exec "$@"
"""


# --------------------------------------------------------------------------------------------- /proc helpers


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    start_ticks: int


def read_proc_stat(pid: int) -> ProcStat | None:
    """Parse ``/proc/<pid>/stat`` (the command name may contain spaces and parentheses)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return ProcStat(
            pid=pid,
            state=rest[0].decode(),
            ppid=int(rest[1]),
            pgid=int(rest[2]),
            sid=int(rest[3]),
            start_ticks=int(rest[19]),
        )
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _all_pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _pidfd_alive(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return not p.poll(0)


# --------------------------------------------------------------------------------------------- records


def instance_key(cid: ContainerId) -> str:
    """A file- and cgroup-safe name for one instance."""

    def clean(text: str) -> str:
        return "".join(c if c.isalnum() or c in "-." else f"%{ord(c):02x}" for c in text)

    return f"{clean(cid.pod_uid)}_{clean(cid.name)}_{cid.attempt}"


@dataclass(slots=True)
class _Exit:
    finished_at: datetime
    exit_code: int
    signal: int | None
    oom_killed: bool
    reason: str
    message: str


@dataclass(slots=True)
class _Record:
    id: ContainerId
    pod_namespace: str
    pod_name: str
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    log_path: str
    log_max_bytes: int
    log_max_files: int
    memory_limit_bytes: int | None
    cpu_limit_millicores: int | None
    boot_id: str
    created_boottime: float
    started_at: datetime
    cgroup: ContainerCgroup | None = None
    wrapper_pid: int | None = None
    wrapper_start_ticks: int | None = None
    pid: int | None = None
    exit: _Exit | None = None
    mounts: list[BindMount] = field(default_factory=list)
    """Namespace mode: the container's mounts (made once in its namespace; adoption re-mounts nothing)."""
    created_mount_points: list[str] = field(default_factory=list)
    """Mount points Corral created on disk and still owns (removed when no running container needs them)."""

    @property
    def pgid(self) -> int | None:
        return self.wrapper_pid

    def to_json(self) -> dict[str, Any]:
        ex = self.exit
        return {
            "version": RECORD_VERSION,
            "id": {"pod_uid": self.id.pod_uid, "name": self.id.name, "attempt": self.id.attempt},
            "pod_namespace": self.pod_namespace,
            "pod_name": self.pod_name,
            "argv": self.argv,
            "env": self.env,
            "working_dir": self.working_dir,
            "log_path": self.log_path,
            "log_max_bytes": self.log_max_bytes,
            "log_max_files": self.log_max_files,
            "memory_limit_bytes": self.memory_limit_bytes,
            "cpu_limit_millicores": self.cpu_limit_millicores,
            "boot_id": self.boot_id,
            "created_boottime": self.created_boottime,
            "started_at": self.started_at.isoformat(),
            "cgroup": self.cgroup.to_json() if self.cgroup else None,
            "wrapper_pid": self.wrapper_pid,
            "wrapper_start_ticks": self.wrapper_start_ticks,
            "pgid": self.pgid,
            "pid": self.pid,
            "mounts": [m.to_json() for m in self.mounts],
            "created_mount_points": list(self.created_mount_points),
            "exit": None
            if ex is None
            else {
                "finished_at": ex.finished_at.isoformat(),
                "exit_code": ex.exit_code,
                "signal": ex.signal,
                "oom_killed": ex.oom_killed,
                "reason": ex.reason,
                "message": ex.message,
            },
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> _Record:
        if d.get("version") != RECORD_VERSION:
            raise ValueError(f"unsupported record version {d.get('version')!r}")
        ex = d.get("exit")
        return cls(
            id=ContainerId(str(d["id"]["pod_uid"]), str(d["id"]["name"]), int(d["id"]["attempt"])),
            pod_namespace=str(d["pod_namespace"]),
            pod_name=str(d["pod_name"]),
            argv=[str(a) for a in d["argv"]],
            env={str(k): str(v) for k, v in dict(d["env"]).items()},
            working_dir=str(d["working_dir"]),
            log_path=str(d["log_path"]),
            log_max_bytes=int(d["log_max_bytes"]),
            log_max_files=int(d["log_max_files"]),
            memory_limit_bytes=d.get("memory_limit_bytes"),
            cpu_limit_millicores=d.get("cpu_limit_millicores"),
            boot_id=str(d["boot_id"]),
            created_boottime=float(d["created_boottime"]),
            started_at=datetime.fromisoformat(d["started_at"]),
            cgroup=ContainerCgroup.from_json(d["cgroup"]) if d.get("cgroup") else None,
            wrapper_pid=d.get("wrapper_pid"),
            wrapper_start_ticks=d.get("wrapper_start_ticks"),
            pid=d.get("pid"),
            mounts=[BindMount.from_json(m) for m in d.get("mounts") or []],
            created_mount_points=[str(p) for p in d.get("created_mount_points") or []],
            exit=None
            if not ex
            else _Exit(
                finished_at=datetime.fromisoformat(ex["finished_at"]),
                exit_code=int(ex["exit_code"]),
                signal=ex.get("signal"),
                oom_killed=bool(ex.get("oom_killed")),
                reason=str(ex.get("reason", "")),
                message=str(ex.get("message", "")),
            ),
        )


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "w") as f:
        json.dump(data, f, separators=(",", ":"))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------- preflight


def resolve_executable(
    argv0: str, env: Mapping[str, str], working_dir: Path, mounts: Sequence[BindMount] = ()
) -> str:
    """Find ``argv0`` as the container would (PATH of ``env``), or raise a Kubernetes-like StartError.

    With ``mounts`` (namespace mode) paths are the container's, looked up where they are on the host."""

    def on_host(path: Path) -> str:
        return host_path(str(path), mounts) if mounts else str(path)

    if "/" in argv0:
        candidate = Path(argv0) if argv0.startswith("/") else working_dir / argv0
        try:
            st = os.stat(on_host(candidate))
        except FileNotFoundError:
            raise StartError(
                "StartError", f'exec: "{argv0}": stat {argv0}: no such file or directory'
            ) from None
        except NotADirectoryError:
            raise StartError("StartError", f'exec: "{argv0}": stat {argv0}: not a directory') from None
        except PermissionError:
            raise StartError("StartError", f'exec: "{argv0}": permission denied') from None
        if stat.S_ISDIR(st.st_mode) or not os.access(on_host(candidate), os.X_OK):
            raise StartError("StartError", f'exec: "{argv0}": permission denied')
        return str(candidate)
    for entry in env.get("PATH", DEFAULT_PATH).split(":"):
        base = Path(entry) if entry.startswith("/") else working_dir / entry
        candidate = base / argv0
        try:
            st = os.stat(on_host(candidate))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(on_host(candidate), os.X_OK):
            return str(candidate)
    raise StartError("StartError", f'exec: "{argv0}": executable file not found in $PATH')


def check_working_dir(working_dir: Path, mounts: Sequence[BindMount] = ()) -> None:
    problem = ""
    on_host = Path(host_path(str(working_dir), mounts)) if mounts else working_dir
    try:
        st = os.stat(on_host)
        if not stat.S_ISDIR(st.st_mode):
            problem = "not a directory"
        elif not os.access(on_host, os.X_OK):
            problem = "permission denied"
    except FileNotFoundError:
        problem = "no such file or directory"
    except NotADirectoryError:
        problem = "not a directory"
    except PermissionError:
        problem = "permission denied"
    if problem:
        raise StartError("StartError", f'chdir to cwd ("{working_dir}") set in config failed: {problem}')


def _shell() -> str:
    # dash is ~4x lighter than bash per process; any POSIX sh works.
    return shutil.which("dash") or "/bin/sh"


_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


# --------------------------------------------------------------------------------------------- instances


@dataclass(eq=False, slots=True)
class _Instance:
    record: _Record
    dir: Path
    log: ManagedLog
    status: ContainerStatus
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    pidfd: int | None = None
    kill_sent: bool = False
    stop_task: asyncio.Task[ContainerStatus] | None = None
    execs: set[asyncio.subprocess.Process] = field(default_factory=set)

    @property
    def running(self) -> bool:
        return not self.exited.is_set()


def _status_from(record: _Record, state: ContainerState) -> ContainerStatus:
    ex = record.exit
    return ContainerStatus(
        id=record.id,
        state=state,
        pid=record.pid or record.wrapper_pid or 0,
        started_at=record.started_at,
        finished_at=ex.finished_at if ex else None,
        exit_code=ex.exit_code if ex else None,
        signal=ex.signal if ex else None,
        oom_killed=ex.oom_killed if ex else False,
        reason=ex.reason if ex else "",
        message=ex.message if ex else "",
        log_path=Path(record.log_path),
    )


class ProcessRuntime:
    """Runtime over plain processes. Create with :meth:`open`; one instance per state dir at a time."""

    def __init__(
        self,
        state_dir: Path,
        cgroups: CgroupSupport,
        clock: Clock,
        maintenance_interval: float,
    ) -> None:
        self.state_dir = state_dir
        self.cgroups = cgroups
        self._clock = clock
        self._interval = maintenance_interval
        self._instances: dict[ContainerId, _Instance] = {}
        self._callbacks: list[ExitCallback] = []
        self._loop = asyncio.get_running_loop()
        self._shell = _shell()
        self._wrapper = state_dir / "wrapper.sh"
        self._ns_script = state_dir / "mountns.sh"
        self._starting: dict[ContainerId, _Record] = {}
        """Instances between mount point creation and registration: they need their mount points too."""
        self._adopting = False
        # What the namespace setup reaches after the first mount: no mount may hide it (mountplan).
        self._setup_needs = [os.path.realpath(p) for p in (state_dir, self._shell, binary("mount"))]
        self._boot_id = _boot_id()
        self._stale_cgroups: list[ContainerCgroup] = []
        self._maintenance: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._proc_cache: dict[int, builtins.list[ProcStat]] | None = None
        self._closed = False

    # ----------------------------------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        state_dir: Path,
        *,
        cgroup_root: str | None = None,
        cgroups: CgroupSupport | bool | None = None,
        clock: Clock | None = None,
        maintenance_interval: float = 1.0,
    ) -> ProcessRuntime:
        """Open (or create) ``state_dir`` and adopt every instance recorded there.

        ``cgroups``: None = detect (enforced only as root with a writable hierarchy), False = never,
        or a :class:`CgroupSupport` to use. ``cgroup_root`` is passed to detection.
        """
        state_dir = Path(state_dir)
        (state_dir / "instances").mkdir(parents=True, exist_ok=True)
        id_file = state_dir / "runtime-id"
        try:
            runtime_id = id_file.read_text().strip()
        except FileNotFoundError:
            runtime_id = secrets.token_hex(6)
            id_file.write_text(runtime_id + "\n")
        if cgroups is None or cgroups is True:
            support = CgroupSupport.detect(f"rt-{runtime_id}", cgroup_root=cgroup_root)
        elif cgroups is False:
            support = CgroupSupport.disabled("disabled by configuration")
        else:
            support = cgroups
        log.info("process runtime at %s: %s", state_dir, support.describe())
        self = cls(state_dir, support, clock or SystemClock(), maintenance_interval)
        tmp = self._wrapper.with_name("wrapper.sh.tmp")
        tmp.write_text(WRAPPER_SCRIPT)
        os.replace(tmp, self._wrapper)  # a new inode: running wrappers keep reading the old one
        tmp = self._ns_script.with_name("mountns.sh.tmp")
        tmp.write_text(MOUNT_NS_SCRIPT)
        os.replace(tmp, self._ns_script)
        self._adopt_all()
        self._maintenance = asyncio.create_task(self._maintain(), name="process-runtime-maintenance")
        return self

    async def close(self) -> None:
        """Stop watching; running containers keep running (the next runtime adopts them)."""
        if self._closed:
            return
        self._closed = True
        for task in (self._maintenance, self._poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for inst in self._instances.values():
            self._unwatch(inst)
            if inst.stop_task is not None and not inst.stop_task.done():
                inst.stop_task.cancel()
            self._kill_execs(inst)
        if self.cgroups.enforced:
            # Leave no empty cgroup directories behind (throwaway state dirs would otherwise leak them).
            running = [i.record.cgroup for i in self._instances.values() if i.running and i.record.cgroup]
            self.cgroups.sweep({d.name for cg in running for d in cg.dirs.values()})
            if not running:
                self.cgroups.remove_namespace()

    def on_exit(self, callback: ExitCallback) -> None:
        self._callbacks.append(callback)

    # ----------------------------------------------------------------------------------------- start

    async def start(self, spec: ContainerSpec) -> ContainerStatus:
        self._check_open()
        if not spec.argv or not spec.argv[0]:
            raise StartError("StartError", "no command specified")
        existing = self._instances.get(spec.id)
        if existing is not None:
            what = f"is running (pid {existing.status.pid})" if existing.running else "has exited; remove it"
            raise StartError("AlreadyExists", f"container {spec.id} {what}")
        working_dir = Path(spec.working_dir)
        if spec.mounts:
            problem = hidden_by_mounts(spec.mounts, self._setup_needs)
            if problem:
                raise StartError("CreateContainerConfigError", problem)
        check_working_dir(working_dir, spec.mounts)
        resolve_executable(spec.argv[0], spec.env, working_dir, spec.mounts)

        key = instance_key(spec.id)
        idir = self.state_dir / "instances" / key
        if (idir / "record.json").exists():
            # A record we could not adopt (unreadable, or from a newer version): it may describe a live
            # process, so never start a second copy over it.
            raise StartError(
                "AlreadyExists", f"container {spec.id} has a record in {idir} that was not adopted"
            )
        shutil.rmtree(idir, ignore_errors=True)  # leftovers of a start that crashed before its record
        idir.mkdir(parents=True)

        cgroup: ContainerCgroup | None = None
        # Only containers with limits join a cgroup: on cgroup v1 every join waits ~6 ms for the kernel (an
        # RCU grace period), which tripled restart latency (bench/process_managers.py) and bought nothing for
        # a container without limits; its process group still bounds what stop() kills.
        wants_limits = spec.memory_limit_bytes is not None or spec.cpu_limit_millicores is not None
        if self.cgroups.enforced and wants_limits:
            try:
                cgroup = self.cgroups.create(
                    key, CgroupLimits(spec.memory_limit_bytes, spec.cpu_limit_millicores)
                )
            except CgroupError as exc:
                shutil.rmtree(idir, ignore_errors=True)
                raise StartError("StartError", f"cannot apply resource limits: {exc}") from exc

        now = self._clock.now()
        managed = ManagedLog(Path(spec.log_path), spec.log_max_bytes, spec.log_max_files)
        record = _Record(
            id=spec.id,
            pod_namespace=spec.pod_namespace,
            pod_name=spec.pod_name,
            argv=list(spec.argv),
            env=dict(spec.env),
            working_dir=str(working_dir),
            log_path=str(spec.log_path),
            log_max_bytes=spec.log_max_bytes,
            log_max_files=spec.log_max_files,
            memory_limit_bytes=spec.memory_limit_bytes,
            cpu_limit_millicores=spec.cpu_limit_millicores,
            boot_id=self._boot_id,
            created_boottime=_boottime(),
            started_at=now,
            cgroup=cgroup,
            mounts=list(spec.mounts),
        )
        if spec.mounts:
            try:
                self._create_mount_points(record)
            except (MountPointError, OSError) as exc:
                self._discard(idir, cgroup)
                raise StartError("CreateContainerError", f"cannot create a mount point: {exc}") from exc
        try:
            return await self._spawn(spec, record, idir, managed, working_dir, now)
        finally:
            self._starting.pop(spec.id, None)

    async def _spawn(
        self,
        spec: ContainerSpec,
        record: _Record,
        idir: Path,
        managed: ManagedLog,
        working_dir: Path,
        now: datetime,
    ) -> ContainerStatus:
        cgroup = record.cgroup
        # Written before spawning, so a crash in between leaves a record that points at the wrapper.pid file.
        _write_json_atomic(idir / "record.json", record.to_json())

        try:
            log_fd = managed.open(now.timestamp())
        except OSError as exc:
            self._discard(idir, cgroup, record)
            raise StartError("StartError", f"cannot open log file {spec.log_path}: {exc}") from exc
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_fd, False)
        args = [
            self._shell,
            str(self._wrapper),
            str(idir),
            "1" if "PWD" in spec.env else "0",
            *([str(p) for p in cgroup.procs_files] if cgroup else []),
            "--",
            *spec.argv,
        ]
        program, cwd = self._shell, working_dir
        if spec.mounts:
            # `unshare` execs in place (no fork), so the pid Popen returns is still the wrapper's; the setup
            # script mounts, changes to the working dir (which may be a mount) and execs the wrapper.
            program, cwd = binary("unshare"), Path("/")
            ns_args = [self._shell, str(self._ns_script), binary("mount"), *setup_ops(spec.mounts), "--"]
            args = [program, "-m", "--propagation", "private", "--", *ns_args, str(working_dir), *args]
        try:
            # Popen (vfork + exec in C, ~1 ms) rather than os.posix_spawn: glibc's posix_spawn leaves its
            # internal signals 32/33 *ignored* in the child, and ignored dispositions survive exec.
            child = subprocess.Popen(  # noqa: ASYNC220
                args,
                executable=program,
                stdin=write_fd,
                stdout=log_fd,
                stderr=log_fd,
                cwd=cwd,
                env=spec.env,
                start_new_session=True,
                restore_signals=True,
            )
        except OSError as exc:
            os.close(read_fd)
            self._discard(idir, cgroup, record)
            raise StartError("StartError", f"cannot start {program}: {exc}") from exc
        finally:
            os.close(log_fd)
            os.close(write_fd)
        pipe = bytearray()
        if spec.mounts:
            try:
                problem = await self._await_mounts(child, read_fd, pipe, Path(spec.log_path))
            except BaseException:
                # Cancelled before the instance is registered: nobody else would ever stop this process.
                if child.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.pid, signal.SIGKILL)  # our unreaped child: its pid pins the group id
                child.wait()
                os.close(read_fd)
                self._discard(idir, cgroup, record)
                raise
            if problem:
                os.close(read_fd)
                self._discard(idir, cgroup, record)
                raise StartError("CreateContainerError", problem)
        wrapper_pid = child.pid
        # We reap wrappers ourselves (os.waitpid); keeping the Popen referenced forever stops its __del__
        # from queueing the pid for subprocess's own reaping, which could later hit a reused pid.
        _SPAWNED[wrapper_pid] = child

        pidfd = self._pidfd(wrapper_pid)
        st = read_proc_stat(wrapper_pid)
        record.wrapper_pid = wrapper_pid
        record.wrapper_start_ticks = st.start_ticks if st else None
        inst = _Instance(
            record=record, dir=idir, log=managed, status=_status_from(record, ContainerState.RUNNING)
        )
        self._instances[spec.id] = inst
        self._watch(inst, pidfd)
        _write_json_atomic(idir / "record.json", record.to_json())

        try:
            main_pid = await self._read_pid(read_fd, pipe)
        finally:
            os.close(read_fd)
        if main_pid is not None:
            record.pid = main_pid
            inst.status = replace(inst.status, pid=main_pid)
            _write_json_atomic(idir / "record.json", record.to_json())
        return inst.status

    async def _read_pid(self, fd: int, buf: bytearray) -> int | None:
        """The main process's pid, reported by the wrapper's child on the stdin pipe (None if never)."""
        text = await self._read_line(fd, buf)
        return int(text) if text is not None and text.isdigit() else None

    async def _read_line(self, fd: int, buf: bytearray) -> str | None:
        """The next line from the start pipe (``buf`` keeps what was read past it); None at EOF or timeout."""
        fut: asyncio.Future[str | None] = self._loop.create_future()

        def take() -> bool:
            if b"\n" not in buf:
                return False
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            fut.set_result(line.decode(errors="replace").strip())
            return True

        def readable() -> None:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            buf.extend(chunk)
            if fut.done() or take():
                return
            if not chunk:
                fut.set_result(None)

        if take():
            return fut.result()
        self._loop.add_reader(fd, readable)
        try:
            return await asyncio.wait_for(fut, PID_REPORT_TIMEOUT)
        except TimeoutError:
            return None
        finally:
            self._loop.remove_reader(fd)

    async def _await_mounts(
        self, child: subprocess.Popen[bytes], fd: int, buf: bytearray, log_path: Path
    ) -> str:
        """Wait for the namespace setup's verdict: "" when the mounts are in place, else the problem (and the
        setup process is gone and reaped)."""
        line = await self._read_line(fd, buf)
        if line == "ok":
            return ""
        if line and line.startswith("!"):
            problem = line[1:]
        else:
            tail = ""
            with contextlib.suppress(OSError, IndexError):
                data = await asyncio.to_thread(log_path.read_bytes)
                tail = data[-300:].decode(errors="replace").strip().splitlines()[-1]
            problem = "cannot create the container's mount namespace" + (f": {tail}" if tail else "")
        try:
            await asyncio.to_thread(child.wait, 5.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # still our unreaped child: its pid pins the group id
            await asyncio.to_thread(child.wait)
        return problem

    def _discard(self, idir: Path, cgroup: ContainerCgroup | None, record: _Record | None = None) -> None:
        shutil.rmtree(idir, ignore_errors=True)
        if cgroup is not None:
            cgroup.remove()
        if record is not None:
            self._starting.pop(record.id, None)
            self._release_mount_points(record)

    # ----------------------------------------------------------------------------------------- mount points

    def _create_mount_points(self, record: _Record) -> None:
        """Create the missing mount points on disk and record them as ours (raises MountPointError)."""
        self._starting[record.id] = record
        try:
            for bind in record.mounts:
                record.created_mount_points += create_mount_point(bind.mount_point, bind.file)
        except BaseException:
            self._starting.pop(record.id, None)
            self._release_mount_points(record)
            raise

    def _release_mount_points(self, record: _Record) -> None:
        """The instance no longer needs its mount points: remove those Corral created, unless another running
        (or starting) instance needs one — then that instance owns it from now on and removes it later."""
        if not record.created_mount_points or self._adopting:
            return
        holders: list[tuple[_Record, Path | None]] = [
            (i.record, i.dir) for i in self._instances.values() if i.running and i.record is not record
        ]
        holders += [(r, None) for r in self._starting.values() if r is not record]
        needed: set[str] = set()
        for path in record.created_mount_points:
            for holder, hdir in holders:
                if any(is_below(b.mount_point, path) for b in holder.mounts):
                    needed.add(path)
                    if path not in holder.created_mount_points:
                        holder.created_mount_points.append(path)
                        if hdir is not None:
                            with contextlib.suppress(OSError):
                                _write_json_atomic(hdir / "record.json", holder.to_json())
                    break
        remove_mount_points(removal_order(record.created_mount_points, needed))
        record.created_mount_points = []

    # ----------------------------------------------------------------------------------------- watching

    def _pidfd(self, pid: int) -> int | None:
        try:
            return os.pidfd_open(pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return None
            raise
        except AttributeError:
            return None

    def _watch(self, inst: _Instance, pidfd: int | None) -> None:
        if pidfd is None:
            if read_proc_stat(inst.record.wrapper_pid or 0) is None:
                self._loop.call_soon(self._wrapper_exited, inst)
            else:
                self._ensure_poller()
            return
        inst.pidfd = pidfd
        self._loop.add_reader(pidfd, self._wrapper_exited, inst)

    def _unwatch(self, inst: _Instance) -> None:
        if inst.pidfd is not None:
            self._loop.remove_reader(inst.pidfd)
            os.close(inst.pidfd)
            inst.pidfd = None

    def _ensure_poller(self) -> None:
        # Without pidfds (old kernels): poll /proc.
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_exits())

    async def _poll_exits(self) -> None:
        while True:
            await asyncio.sleep(FALLBACK_POLL_INTERVAL)
            for inst in list(self._instances.values()):
                if inst.running and inst.pidfd is None and not self._wrapper_alive(inst.record):
                    self._wrapper_exited(inst)

    def _wrapper_alive(self, record: _Record) -> bool:
        if record.wrapper_pid is None:
            return False
        st = read_proc_stat(record.wrapper_pid)
        return st is not None and st.state != "Z" and st.start_ticks == record.wrapper_start_ticks

    def _wrapper_exited(self, inst: _Instance) -> None:
        if not inst.running:
            return
        self._unwatch(inst)
        try:
            self._finish(inst, live=True)
        except Exception:
            log.exception("handling the exit of %s", inst.record.id)

    def _finish(self, inst: _Instance, *, live: bool) -> None:
        """The wrapper is gone: settle the final status, clean up the group, tell the callbacks."""
        rec = inst.record
        code_text = ""
        exit_file = inst.dir / "exit"
        with contextlib.suppress(OSError):
            code_text = exit_file.read_text().strip()
        self._kill_group_leftovers(rec)
        oom = rec.cgroup.oom_kill_count() if rec.cgroup else 0
        now = self._clock.now()
        finished_at = now
        if not live:
            with contextlib.suppress(OSError):
                finished_at = datetime.fromtimestamp(exit_file.stat().st_mtime, UTC)
        message = ""
        if code_text.lstrip("-").isdigit():
            code = int(code_text)
        elif inst.kill_sent:
            code = 137  # we SIGKILLed the whole group, wrapper included
        else:
            code = 137
            message = VANISHED_MESSAGE.format(pid=rec.wrapper_pid) if live else UNKNOWN_MESSAGE
        sig = code - 128 if 128 < code < 128 + 65 else None
        oom_killed = oom > 0 and code != 0
        if message:
            reason = "ContainerStatusUnknown"
        elif oom_killed:
            reason = "OOMKilled"
        elif code == 0:
            reason = "Completed"
        else:
            reason = "Error"
        rec.exit = _Exit(finished_at, code, sig, oom_killed, reason, message)
        inst.status = _status_from(rec, ContainerState.EXITED)
        inst.exited.set()
        self._kill_execs(inst)
        if live:
            for cb in list(self._callbacks):
                try:
                    cb(inst.status)
                except Exception:
                    log.exception("on_exit callback failed for %s", rec.id)
        with contextlib.suppress(OSError):
            inst.log.tick(now.timestamp())
        self._release_mount_points(rec)
        try:
            _write_json_atomic(inst.dir / "record.json", rec.to_json())
        except OSError as exc:
            log.warning("cannot record the exit of %s: %s", rec.id, exc)
        if rec.cgroup is not None and not rec.cgroup.remove():
            self._stale_cgroups.append(rec.cgroup)

    def _kill_group_leftovers(self, rec: _Record) -> None:
        """SIGKILL what is left of the container's process group (and cgroup) after the wrapper exited."""
        if rec.boot_id != self._boot_id:
            return  # processes of another boot are long gone; any pid or group id now is someone else's
        pid = rec.wrapper_pid
        if pid is not None:
            try:
                # Our own child, still a zombie: its pid pins the group id, so killpg is safe; then reap.
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    _, wait_status = os.waitpid(pid, os.WNOHANG)
                    child = _SPAWNED.pop(pid, None)
                    if child is not None:
                        child.returncode = os.waitstatus_to_exitcode(wait_status)
            elif self._pid_is_foreign(rec):
                # While any member of our group lives, the kernel keeps its id from being reused; so a
                # *different* live process holding that pid proves our group is gone: touch nothing.
                pass
            else:
                for member in self._group_members(rec):
                    self._kill_verified(member)
        if rec.cgroup is not None:
            rec.cgroup.kill_all()

    @staticmethod
    def _pid_is_foreign(rec: _Record) -> bool:
        st = read_proc_stat(rec.wrapper_pid or 0)
        return st is not None and st.start_ticks != rec.wrapper_start_ticks

    def _process_table(self) -> dict[int, builtins.list[ProcStat]]:
        """Live processes by process group; one /proc scan, cached while adopting many instances."""
        if self._proc_cache is not None:
            return self._proc_cache
        table: dict[int, builtins.list[ProcStat]] = {}
        for pid in _all_pids():
            st = read_proc_stat(pid)
            if st is not None and st.state != "Z":
                table.setdefault(st.pgid, []).append(st)
        return table

    def _group_members(self, rec: _Record) -> builtins.list[ProcStat]:
        """Live processes in the container's session/group that started after its wrapper."""
        pgid = rec.wrapper_pid
        if pgid is None:
            return []
        return [
            st
            for st in self._process_table().get(pgid, [])
            if st.sid == pgid and st.start_ticks >= (rec.wrapper_start_ticks or 0)
        ]

    @staticmethod
    def _kill_verified(member: ProcStat) -> None:
        try:
            pidfd = os.pidfd_open(member.pid)
        except OSError:
            return
        try:
            again = read_proc_stat(member.pid)
            if again and again.start_ticks == member.start_ticks and again.pgid == member.pgid:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)

    # ----------------------------------------------------------------------------------------- adoption

    def _adopt_all(self) -> None:
        self._proc_cache = self._process_table()
        # Mount points are released only once every instance is known: an exited one adopted early must not
        # remove a mount point that a running one adopted later still mounts on.
        self._adopting = True
        try:
            self._adopt_dirs()
        finally:
            self._proc_cache = None
            self._adopting = False
        for inst in list(self._instances.values()):
            if not inst.running and inst.record.created_mount_points:
                self._release_mount_points(inst.record)
                with contextlib.suppress(OSError):
                    _write_json_atomic(inst.dir / "record.json", inst.record.to_json())

    def _adopt_dirs(self) -> None:
        keep: set[str] = set()
        for idir in sorted((self.state_dir / "instances").iterdir()):
            if not idir.is_dir():
                continue
            try:
                rec = _Record.from_json(json.loads((idir / "record.json").read_text()))
            except FileNotFoundError:
                shutil.rmtree(idir, ignore_errors=True)  # crashed before anything was spawned
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable container record in %s: %s", idir, exc)
                continue
            if rec.cgroup is not None:
                keep.update(d.name for d in rec.cgroup.dirs.values())
            self._adopt(rec, idir)
        if self.cgroups.enforced:
            self.cgroups.sweep(keep)

    def _adopt(self, rec: _Record, idir: Path) -> None:
        managed = ManagedLog(Path(rec.log_path), rec.log_max_bytes, rec.log_max_files)
        managed.resume()
        inst = _Instance(record=rec, dir=idir, log=managed, status=_status_from(rec, ContainerState.RUNNING))
        self._instances[rec.id] = inst
        if rec.exit is not None:
            inst.status = _status_from(rec, ContainerState.EXITED)
            inst.exited.set()
            return
        pidfd = self._find_wrapper(rec, idir)
        if pidfd is None:
            self._finish(inst, live=False)
            return
        if rec.pid is None:
            rec.pid = self._main_pid(rec)
            inst.status = _status_from(rec, ContainerState.RUNNING)
        self._watch(inst, pidfd)

    def _find_wrapper(self, rec: _Record, idir: Path) -> int | None:
        """A pidfd on the recorded wrapper when it is alive and provably ours (not a reused pid)."""
        if rec.boot_id != self._boot_id:
            return None
        if rec.wrapper_pid is None:
            # Crashed between spawn and the record update: the wrapper wrote its own pid.
            with contextlib.suppress(OSError, ValueError):
                rec.wrapper_pid = int((idir / "wrapper.pid").read_text().strip())
            if rec.wrapper_pid is None:
                return None
        pid = rec.wrapper_pid
        pidfd = self._pidfd(pid)
        if pidfd is None:
            return None
        st = read_proc_stat(pid)
        ok = st is not None and st.state != "Z" and str(idir) in _cmdline(pid)
        if ok and st is not None:
            if rec.wrapper_start_ticks is None:
                ok = st.start_ticks / CLK_TCK >= rec.created_boottime - 1.0
                rec.wrapper_start_ticks = st.start_ticks
            else:
                ok = st.start_ticks == rec.wrapper_start_ticks
        if not ok:
            os.close(pidfd)
            return None
        return pidfd

    def _main_pid(self, rec: _Record) -> int | None:
        for st in self._process_table().get(rec.wrapper_pid or 0, []):
            if st.ppid == rec.wrapper_pid:
                return st.pid
        return None

    # ----------------------------------------------------------------------------------------- stop etc.

    async def stop(self, cid: ContainerId, grace_seconds: float) -> ContainerStatus | None:
        inst = self._instances.get(cid)
        if inst is None:
            return None
        if not inst.running:
            return inst.status
        if inst.stop_task is None or inst.stop_task.done():
            inst.stop_task = asyncio.create_task(self._stop(inst, grace_seconds))
        return await asyncio.shield(inst.stop_task)

    async def _stop(self, inst: _Instance, grace: float) -> ContainerStatus:
        self._signal_group(inst, signal.SIGTERM)
        try:
            await asyncio.wait_for(inst.exited.wait(), max(0.0, grace))
            return inst.status
        except TimeoutError:
            pass
        inst.kill_sent = True
        self._signal_group(inst, signal.SIGKILL)
        try:
            await asyncio.wait_for(inst.exited.wait(), KILL_TIMEOUT)
        except TimeoutError:
            log.error("container %s survived SIGKILL for %ss", inst.record.id, KILL_TIMEOUT)
        return inst.status

    def _signal_group(self, inst: _Instance, sig: signal.Signals) -> None:
        """killpg the container's group, but only while its leader (the wrapper) provably exists."""
        pgid = inst.record.pgid
        if pgid is None or not inst.running:
            return
        if inst.pidfd is not None:
            if not _pidfd_alive(inst.pidfd):
                return  # exited; the pidfd callback is about to run
        elif not self._wrapper_alive(inst.record):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    async def list(self) -> builtins.list[ContainerStatus]:
        return [inst.status for inst in self._instances.values()]

    async def remove(self, cid: ContainerId) -> None:
        """Forget an instance; a running one is killed first (as CRI's RemoveContainer does).

        Log files stay: they belong to the pod's sandbox (see ``logs.prune_attempt_logs``)."""
        inst = self._instances.get(cid)
        if inst is None:
            return
        if inst.running:
            await self.stop(cid, 0)
        self._instances.pop(cid, None)
        self._unwatch(inst)
        self._release_mount_points(inst.record)
        if inst.record.cgroup is not None and not inst.record.cgroup.remove():
            self._stale_cgroups.append(inst.record.cgroup)
        shutil.rmtree(inst.dir, ignore_errors=True)

    def process_group(self, cid: ContainerId) -> int | None:
        """The container's process group id (= the wrapper's pid), e.g. for metrics or cleanup."""
        inst = self._instances.get(cid)
        return inst.record.pgid if inst else None

    def cgroup_of(self, cid: ContainerId) -> ContainerCgroup | None:
        inst = self._instances.get(cid)
        return inst.record.cgroup if inst else None

    def running_groups(self) -> builtins.list[RunningGroup]:
        """Process group, wrapper start time and cgroup of every running instance (usage sampling)."""
        return [
            RunningGroup(
                inst.record.id,
                inst.record.wrapper_pid,
                inst.record.wrapper_start_ticks or 0,
                inst.record.started_at,
                inst.record.cgroup,
            )
            for inst in self._instances.values()
            if inst.running and inst.record.wrapper_pid is not None
        ]

    # ----------------------------------------------------------------------------------------- exec

    async def exec(
        self, cid: ContainerId, argv: builtins.list[str], streams: ExecStreams, tty: bool = False
    ) -> ExecResult:
        """Run ``argv`` with the container's env, working dir and cgroup; ``tty`` is ignored (pipes only)."""
        self._check_open()
        inst = self._instances.get(cid)
        if inst is None:
            raise StartError("NotFound", f"container {cid} not found")
        if not inst.running:
            raise StartError("ContainerNotRunning", f"container {cid} is not running")
        if not argv or not argv[0]:
            raise StartError("StartError", "no command specified")
        rec = inst.record
        working_dir = Path(rec.working_dir)
        check_working_dir(working_dir, rec.mounts)
        exe = resolve_executable(argv[0], rec.env, working_dir, rec.mounts)
        if rec.mounts:
            return await self._exec_in_namespace(inst, argv, streams)
        if rec.cgroup is not None:
            program = self._shell
            args = [
                "-c",
                CGROUP_EXEC_SCRIPT,
                "corral-exec",
                *[str(p) for p in rec.cgroup.procs_files],
                "--",
                *argv,
            ]
        else:
            program, args = argv[0], argv[1:]
        proc = await asyncio.create_subprocess_exec(
            program,
            *args,
            executable=self._shell if rec.cgroup is not None else exe,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=rec.env,
            cwd=working_dir,
            start_new_session=True,
        )
        return await self._run_exec(inst, proc, streams)

    async def _run_exec(
        self, inst: _Instance, proc: asyncio.subprocess.Process, streams: ExecStreams
    ) -> ExecResult:
        """Pump an exec session's streams until it ends; a session cut short is killed and reaped."""
        inst.execs.add(proc)
        try:
            return ExecResult(await self._pump(proc, streams))
        finally:
            inst.execs.discard(proc)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def _exec_in_namespace(
        self, inst: _Instance, argv: builtins.list[str], streams: ExecStreams
    ) -> ExecResult:
        """Exec in the container's mount namespace (``nsenter`` into the wrapper's), so it sees the mounts."""
        rec = inst.record
        inner = argv
        if rec.cgroup is not None:
            inner = [self._shell, "-c", CGROUP_EXEC_SCRIPT, "corral-exec"]
            inner += [str(p) for p in rec.cgroup.procs_files] + ["--", *argv]
        nsenter = binary("nsenter")
        proc = await asyncio.create_subprocess_exec(
            nsenter,
            f"--mount=/proc/{rec.wrapper_pid}/ns/mnt",
            f"--wdns={rec.working_dir}",
            "--",
            *inner,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=rec.env,
            cwd="/",
            start_new_session=True,
        )
        return await self._run_exec(inst, proc, streams)

    @staticmethod
    async def _pump(proc: asyncio.subprocess.Process, streams: ExecStreams) -> int:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

        async def feed() -> None:
            try:
                while (data := await streams.read_stdin()) is not None:
                    stdin.write(data)
                    await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    stdin.close()

        async def copy(reader: asyncio.StreamReader, write: Any) -> None:
            while data := await reader.read(65536):
                await write(data)

        feeder = asyncio.create_task(feed())
        try:
            await asyncio.gather(copy(stdout, streams.write_stdout), copy(stderr, streams.write_stderr))
            code = await proc.wait()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        return code if code >= 0 else 128 - code

    def _kill_execs(self, inst: _Instance) -> None:
        for proc in list(inst.execs):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)

    # ----------------------------------------------------------------------------------------- upkeep

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.maintain_now()
            except Exception:
                log.exception("process runtime maintenance failed")

    def maintain_now(self) -> None:
        """Rotate and index logs of running containers; retry removing cgroups that were still busy."""
        now = self._clock.now().timestamp()
        for inst in list(self._instances.values()):
            if inst.running:
                try:
                    inst.log.tick(now)
                except OSError as exc:
                    log.warning("log upkeep for %s failed: %s", inst.record.id, exc)
        stale, self._stale_cgroups = self._stale_cgroups, []
        for cg in stale:
            if cg.exists() and not cg.remove():
                self._stale_cgroups.append(cg)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("process runtime is closed")
