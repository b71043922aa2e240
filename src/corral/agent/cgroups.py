"""Resource limits for container processes through Linux cgroups (v2, or v1 as a fallback).

Boundary: this module only knows cgroup *files*. It detects which hierarchy is usable, creates one cgroup per
container instance under a corral-owned parent, writes memory and cpu limits, moves nothing itself (the
process runtime has each container process join its cgroup by writing ``0`` to ``cgroup.procs`` just before
exec, so no instruction runs outside the limits), reads the OOM-kill count and removes the cgroup afterwards.

Everything degrades: when not root, when no memory controller is reachable, or when the parent cannot be
written, :meth:`CgroupSupport.detect` returns a support object with ``enforced == False`` and a ``reason``;
:meth:`CgroupSupport.create` then returns ``None`` and the container runs without limits.

Layout. For v1 each controller has its own hierarchy, so one container cgroup is a directory in each of them
(``memory`` and, when mounted, ``cpu``). The corral parent is, by default, nested under the agent's own
cgroup in each v1 hierarchy (so containers stay within whatever limits the agent is under). For v2 the
"no internal processes" rule forbids enabling controllers below a cgroup that holds the agent, so the default
parent is ``/corral`` when the agent sits in the root cgroup and a sibling ``corral`` cgroup of the agent's
cgroup otherwise. ``cgroup_root`` overrides this with a path relative to each hierarchy's mount point (like
the kubelet's ``--cgroup-root``). Below the parent, every runtime gets a namespace directory (one per state
dir) so that several agents or tests never touch each other's cgroups.

Written by hand because no maintained Python library manages cgroup v1 and v2 files in both modes.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import os
import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CPU_PERIOD_US = 100_000
"""CFS period used for cpu limits (the kubelet's default)."""
MIN_CPU_QUOTA_US = 1_000
"""The kernel refuses quotas below 1 ms."""


class CgroupVersion(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"
    NONE = "none"


class CgroupError(Exception):
    """A cgroup could not be created or configured."""


@dataclass(frozen=True, slots=True)
class CgroupLimits:
    memory_bytes: int | None = None
    cpu_millicores: int | None = None


def cpu_quota_us(millicores: int, period_us: int = CPU_PERIOD_US) -> int:
    """CFS quota for a cpu limit in millicores (1000m = one full cpu), as the kubelet computes it."""
    return max(MIN_CPU_QUOTA_US, millicores * period_us // 1000)


# --------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class Mount:
    mount_point: Path
    root: str
    """Cgroup path mounted at ``mount_point`` (``/`` unless a cgroup namespace or bind mount narrows it)."""
    fstype: str
    options: frozenset[str]
    """Super options: for v1 these name the controllers (``memory``, ``cpu``, ``cpuacct``, ``name=...``)."""


def _unescape_mount(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(text):
        code = text[i + 1 : i + 4]
        if text[i] == "\\" and len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """Cgroup mounts (v1 and v2) from ``/proc/self/mountinfo``."""
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lf, rf = left.split(), right.split()
        if len(lf) < 5 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(
            Mount(
                mount_point=Path(_unescape_mount(lf[4])),
                root=_unescape_mount(lf[3]),
                fstype=rf[0],
                options=frozenset(rf[2].split(",")),
            )
        )
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as {controller: path}; the v2 entry is under the key ``""``."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths[""] = path
            continue
        for controller in controllers.split(","):
            paths[controller] = path
    return paths


def _join(mount: Mount, cgroup_path: str) -> Path:
    """Directory of ``cgroup_path`` (as seen in /proc/self/cgroup) under ``mount``."""
    rel = cgroup_path
    if mount.root != "/" and (rel == mount.root or rel.startswith(mount.root.rstrip("/") + "/")):
        rel = rel[len(mount.root) :]
    return mount.mount_point / rel.lstrip("/")


# --------------------------------------------------------------------------------------------- one cgroup


def _read_int_field(path: Path, key: str) -> int:
    """Value of ``key`` in a flat-keyed file such as ``memory.events``; 0 when absent or unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            with contextlib.suppress(ValueError):
                return int(parts[1])
    return 0


@dataclass(frozen=True, slots=True)
class ContainerCgroup:
    """The cgroup (one directory per hierarchy) of one container instance."""

    version: CgroupVersion
    dirs: Mapping[str, Path]
    """v2: {"unified": dir}; v1: {"memory": dir, "cpu": dir} (the hierarchies in use)."""

    @property
    def procs_files(self) -> list[Path]:
        """Files a process writes ``0`` into to join this cgroup (one per hierarchy)."""
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def _memory_dir(self) -> Path | None:
        return self.dirs.get("unified") or self.dirs.get("memory")

    def oom_kill_count(self) -> int:
        """How many processes the kernel OOM-killed in this cgroup (limit exceeded)."""
        mem = self._memory_dir()
        if mem is None:
            return 0
        if self.version is CgroupVersion.V2:
            return _read_int_field(mem / "memory.events", "oom_kill")
        # v1: ``oom_kill`` in memory.oom_control exists since Linux 4.13.
        return _read_int_field(mem / "memory.oom_control", "oom_kill")

    def memory_usage_bytes(self) -> int | None:
        mem = self._memory_dir()
        if mem is None:
            return None
        name = "memory.current" if self.version is CgroupVersion.V2 else "memory.usage_in_bytes"
        try:
            return int((mem / name).read_text().strip())
        except (OSError, ValueError):
            return None

    def pids(self) -> list[int]:
        """Every process currently in the cgroup (union over hierarchies)."""
        found: set[int] = set()
        for procs in self.procs_files:
            try:
                text = procs.read_text()
            except OSError:
                continue
            found.update(int(tok) for tok in text.split() if tok.isdigit())
        return sorted(found)

    def kill_all(self) -> int:
        """SIGKILL every process in the cgroup; returns how many were signalled.

        Only pids read from our own ``cgroup.procs`` are signalled, each through a pidfd opened and then
        re-checked for membership, so a pid reused between the read and the kill is never hit.
        """
        unified = self.dirs.get("unified")
        if unified is not None and (unified / "cgroup.kill").exists():
            members = len(self.pids())
            try:
                _write(unified / "cgroup.kill", "1")
                return members
            except OSError:
                pass
        count = 0
        for pid in self.pids():
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                if pid in self.pids():
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    count += 1
            except OSError:
                pass
            finally:
                os.close(pidfd)
        return count

    def remove(self) -> bool:
        """rmdir every directory; False while processes remain (EBUSY) — call again later."""
        done = True
        for d in self.dirs.values():
            try:
                d.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    log.warning("cannot remove cgroup %s: %s", d, exc)
                done = False
        return done

    def exists(self) -> bool:
        return any(d.is_dir() for d in self.dirs.values())

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version.value, "dirs": {k: str(v) for k, v in self.dirs.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerCgroup:
        return cls(
            version=CgroupVersion(data["version"]),
            dirs={str(k): Path(v) for k, v in dict(data["dirs"]).items()},
        )


# --------------------------------------------------------------------------------------------- detection


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """What this host lets us enforce, and where corral's cgroups live."""

    version: CgroupVersion
    enforced: bool
    reason: str
    """Why limits are not (fully) enforced; empty when everything works."""
    parents: Mapping[str, Path] = field(default_factory=dict)
    """Per hierarchy ("unified", or "memory"/"cpu"): this runtime's namespace directory."""
    controllers: frozenset[str] = frozenset()
    """Controllers that are enforced: a subset of {"memory", "cpu"}."""

    @classmethod
    def disabled(cls, reason: str) -> CgroupSupport:
        return cls(version=CgroupVersion.NONE, enforced=False, reason=reason)

    @classmethod
    def detect(
        cls,
        namespace: str,
        *,
        cgroup_root: str | None = None,
        proc: Path = Path("/proc"),
        euid: int | None = None,
    ) -> CgroupSupport:
        """Find a usable hierarchy, create ``<parent>/<namespace>`` and prove it is writable.

        Never raises for an unsupported host: returns ``enforced=False`` with the reason instead.
        """
        if not namespace or "/" in namespace or namespace in (".", ".."):
            raise ValueError(f"bad cgroup namespace {namespace!r}")
        if (os.geteuid() if euid is None else euid) != 0:
            return cls.disabled("not running as root: memory and cpu limits are not enforced")
        try:
            mounts = parse_mountinfo((proc / "self" / "mountinfo").read_text())
            own = parse_proc_cgroup((proc / "self" / "cgroup").read_text())
        except OSError as exc:
            return cls.disabled(f"cannot read cgroup information from {proc}: {exc}")

        v2 = next((m for m in mounts if m.fstype == "cgroup2"), None)
        if v2 is not None and "memory" in _controllers(v2.mount_point):
            return cls._detect_v2(namespace, v2, own.get("", "/"), cgroup_root)
        v1: dict[str, Mount] = {
            c: m for m in mounts if m.fstype == "cgroup" for c in ("memory", "cpu") if c in m.options
        }
        if "memory" in v1:
            return cls._detect_v1(namespace, v1, own, cgroup_root)
        return cls.disabled("no cgroup hierarchy with the memory controller is mounted")

    @classmethod
    def _detect_v2(
        cls, namespace: str, mount: Mount, own_path: str, cgroup_root: str | None
    ) -> CgroupSupport:
        if cgroup_root is not None:
            top = mount.mount_point / cgroup_root.strip("/")
        else:
            own = _join(mount, own_path)
            # The agent's cgroup holds a process, so controllers cannot be enabled below it: use a sibling.
            top = mount.mount_point / "corral" if own == mount.mount_point else own.parent / "corral"
        parent = top / namespace
        wanted = [c for c in ("memory", "cpu") if c in _controllers(mount.mount_point)]
        rel = parent.relative_to(mount.mount_point).parts
        levels = [mount.mount_point] + [mount.mount_point.joinpath(*rel[: i + 1]) for i in range(len(rel))]
        try:
            # Every cgroup from the hierarchy root down to our namespace must pass memory and cpu on to its
            # children. Levels we create inherit from their parent; levels that exist may restrict delegation.
            for level in levels:
                if not level.is_dir():
                    level.mkdir()
                elif level != mount.mount_point:
                    available = _controllers(level)
                    wanted = [c for c in wanted if c in available]
                if "memory" not in wanted:
                    return cls.disabled(f"cgroup v2: memory controller not delegated to {level}")
                if set(wanted) - _subtree_control(level):
                    _write(level / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
        except OSError as exc:
            return cls.disabled(f"cgroup v2 at {parent} is not writable: {exc}")
        support = cls(
            version=CgroupVersion.V2,
            enforced=True,
            reason=""
            if "cpu" in wanted
            else "cgroup v2: cpu controller not available; cpu limits not enforced",
            parents={"unified": parent},
            controllers=frozenset(wanted),
        )
        return support._probe()

    @classmethod
    def _detect_v1(
        cls, namespace: str, mounts: Mapping[str, Mount], own: Mapping[str, str], cgroup_root: str | None
    ) -> CgroupSupport:
        parents: dict[str, Path] = {}
        for controller, mount in mounts.items():
            if cgroup_root is not None:
                top = mount.mount_point / cgroup_root.strip("/")
            else:
                top = _join(mount, own.get(controller, "/")) / "corral"
            parents[controller] = top / namespace
        problems: list[str] = []
        for controller, parent in list(parents.items()):
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problems.append(f"cgroup v1 {controller} at {parent} is not writable: {exc}")
                del parents[controller]
        if "memory" not in parents:
            return cls.disabled("; ".join(problems) or "cgroup v1: no memory hierarchy")
        if "cpu" not in parents and not problems:
            problems.append("cgroup v1: cpu controller not mounted; cpu limits not enforced")
        support = cls(
            version=CgroupVersion.V1,
            enforced=True,
            reason="; ".join(problems),
            parents=parents,
            controllers=frozenset(parents),
        )
        return support._probe()

    def _probe(self) -> CgroupSupport:
        """Create and delete a throwaway cgroup with limits: detection only says yes when this works."""
        name = f"probe-{os.getpid()}"
        try:
            cg = self.create(name, CgroupLimits(memory_bytes=64 * 1024 * 1024, cpu_millicores=1000))
        except CgroupError as exc:
            return CgroupSupport.disabled(
                f"cgroup {self.version.value}: cannot configure a child cgroup: {exc}"
            )
        if cg is not None:
            cg.remove()
        return self

    # ----------------------------------------------------------------------------------------- per container

    def create(self, name: str, limits: CgroupLimits) -> ContainerCgroup | None:
        """Create (or reuse) the cgroup ``name`` under our namespace and apply ``limits``.

        Returns None when cgroups are not enforced. Raises :class:`CgroupError` when a write fails.
        """
        if not self.enforced:
            return None
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"bad cgroup name {name!r}")
        dirs = {h: p / name for h, p in self.parents.items()}
        cg = ContainerCgroup(version=self.version, dirs=dirs)
        try:
            for d in dirs.values():
                if not d.parent.is_dir():
                    # Our namespace vanished (someone cleaned up while we ran): recreate it.
                    d.parent.mkdir(parents=True)
                    if self.version is CgroupVersion.V2:
                        _write(
                            d.parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in self.controllers)
                        )
                d.mkdir(exist_ok=True)
            if self.version is CgroupVersion.V2:
                self._limit_v2(dirs["unified"], limits)
            else:
                self._limit_v1(dirs, limits)
        except OSError as exc:
            cg.remove()
            raise CgroupError(f"cannot configure cgroup {name}: {exc}") from exc
        return cg

    def _limit_v2(self, d: Path, limits: CgroupLimits) -> None:
        if limits.memory_bytes is not None:
            _write(d / "memory.max", str(limits.memory_bytes))
            if (d / "memory.swap.max").exists():
                # Kubernetes runs without swap by default; with swap the limit would only slow the process.
                _write(d / "memory.swap.max", "0")
        if limits.cpu_millicores is not None and "cpu" in self.controllers:
            _write(d / "cpu.max", f"{cpu_quota_us(limits.cpu_millicores)} {CPU_PERIOD_US}")

    def _limit_v1(self, dirs: Mapping[str, Path], limits: CgroupLimits) -> None:
        mem = dirs.get("memory")
        if mem is not None and limits.memory_bytes is not None:
            _write(mem / "memory.limit_in_bytes", str(limits.memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                # memsw must be >= the memory limit, which we have just written.
                _write(mem / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
        cpu = dirs.get("cpu")
        if cpu is not None and limits.cpu_millicores is not None:
            _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(cpu / "cpu.cfs_quota_us", str(cpu_quota_us(limits.cpu_millicores)))

    def existing(self) -> list[str]:
        """Names of container cgroups currently under our namespace (any hierarchy)."""
        names: set[str] = set()
        for parent in self.parents.values():
            with contextlib.suppress(OSError):
                names.update(p.name for p in parent.iterdir() if p.is_dir())
        return sorted(names)

    def sweep(self, keep: Iterable[str]) -> list[str]:
        """Remove our empty container cgroups not named in ``keep`` (left over after crashes)."""
        keep_set = set(keep)
        removed = []
        for name in self.existing():
            if name in keep_set:
                continue
            cg = ContainerCgroup(self.version, {h: p / name for h, p in self.parents.items()})
            if not cg.pids() and cg.remove():
                removed.append(name)
        return removed

    def remove_namespace(self) -> bool:
        """rmdir this runtime's (empty) namespace directories; detection recreates them. True when gone."""
        gone = True
        for parent in self.parents.values():
            try:
                parent.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                gone = False
        return gone

    def describe(self) -> str:
        if not self.enforced:
            return f"cgroups not enforced: {self.reason}"
        where = ", ".join(f"{h}={p}" for h, p in self.parents.items())
        extra = f" ({self.reason})" if self.reason else ""
        return (
            f"cgroup {self.version.value} enforcing {', '.join(sorted(self.controllers))} at {where}{extra}"
        )


def _controllers(d: Path) -> set[str]:
    try:
        return set((d / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def _subtree_control(d: Path) -> set[str]:
    try:
        return set((d / "cgroup.subtree_control").read_text().split())
    except OSError:
        return set()
