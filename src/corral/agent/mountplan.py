"""Where a container's volumes are mounted in namespace mode, as data: which mounts, in which order, and how
the volume mode is chosen.

Pure logic, no IO. The IO halves are :mod:`corral.agent.mounting` (resolving sources, creating and removing
mount points, tmpfs, the one-time namespace probe) and the process runtime (which starts the container in a
new mount namespace and runs the mounts this module lists).

Two volume modes (see docs/config.md, "Where volumes appear"):

* **sandbox** — files live under the pod's sandbox and each ``mountPath`` is a symlink below the container's
  own root (``$CORRAL_VOLUMES``); works for every user.
* **namespace** — sandbox mode *plus* a private mount namespace per container in which every volumeMount is
  bind-mounted at its real absolute ``mountPath``. Needs root on Linux and working ``unshare``/``mount``.

Ordering: a mount whose ``mountPath`` lies below another's must come after it (``/etc/app`` before
``/etc/app/tls``), or the parent would hide the child. Sorting by path depth, stable on the pod's order, gives
that. A nested mount's mount point is not on the host: it lives inside the parent mount's *source* (the
volume), so it is planned relative to its parent and resolved inside the parent's volume by the IO layer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from corral.agent.runtimes.base import BindMount
from corral.agent.volumes import MountPlan
from corral.api.quantity import QuantityError, parse_quantity

JSON = dict[str, Any]


class VolumeMode(enum.StrEnum):
    AUTO = "auto"
    NAMESPACE = "namespace"
    SANDBOX = "sandbox"


class VolumeModeError(Exception):
    """The requested volume mode cannot be used on this host; the message says why."""


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What decides whether namespace mode is possible (gathered by ``mounting.host_facts``)."""

    linux: bool
    euid: int
    missing_binaries: tuple[str, ...] = ()
    probe_error: str = ""
    """Why ``unshare -m`` failed ("" when it worked or was not tried)."""


def choose_volume_mode(requested: str, facts: HostFacts) -> tuple[VolumeMode, str]:
    """The mode to use and why (for the startup log line); VolumeModeError for an impossible request."""
    try:
        mode = VolumeMode(requested)
    except ValueError:
        choices = ", ".join(m.value for m in VolumeMode)
        raise VolumeModeError(f"unknown volume mode {requested!r} (choose one of: {choices})") from None
    if mode is VolumeMode.SANDBOX:
        return mode, "requested"
    problem = namespace_problem(facts)
    if mode is VolumeMode.NAMESPACE:
        if problem:
            raise VolumeModeError(f"volume mode 'namespace' is not possible on this host: {problem}")
        return mode, "requested"
    if problem:
        return VolumeMode.SANDBOX, f"auto: {problem}"
    return VolumeMode.NAMESPACE, "auto: running as root on Linux and mount namespaces work"


def namespace_problem(facts: HostFacts) -> str:
    """Why namespace mode is impossible, or "" when it is possible."""
    if not facts.linux:
        return "mount namespaces need Linux"
    if facts.euid != 0:
        return f"mount namespaces need root (running as uid {facts.euid})"
    if facts.missing_binaries:
        return f"missing util-linux programs: {', '.join(facts.missing_binaries)}"
    if facts.probe_error:
        return f"creating a mount namespace failed: {facts.probe_error}"
    return ""


# ------------------------------------------------------------------------------------------------ ordering


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p not in ("", "."))


def is_below(path: str, parent: str) -> bool:
    """``path`` is ``parent`` or lies below it (by path elements: ``/ab`` is not below ``/a``)."""
    p, q = _parts(path), _parts(parent)
    return p[: len(q)] == q


@dataclass(frozen=True, slots=True)
class PlannedMount:
    mount: MountPlan
    target: str
    """The normalised absolute ``mountPath``."""
    parent: int | None
    """Index (in the ordered plan) of the mount this one's mount point lies inside, or None (on the host)."""
    rel_in_parent: str
    """The mount point relative to the parent mount's target ("" without a parent)."""


def plan_mounts(mounts: Sequence[MountPlan]) -> list[PlannedMount]:
    """The container's mounts in mount order (parents before children), each tied to its closest parent."""
    ordered = sorted(mounts, key=lambda m: len(_parts(m.mount_path)))  # stable: the pod's order on ties
    planned: list[PlannedMount] = []
    for mount in ordered:
        parts = _parts(mount.mount_path)
        target = "/" + "/".join(parts)
        parent: int | None = None
        for index in range(len(planned) - 1, -1, -1):
            if len(_parts(planned[index].target)) < len(parts) and is_below(target, planned[index].target):
                parent = index
                break
        rel = "/".join(parts[len(_parts(planned[parent].target)) :]) if parent is not None else ""
        planned.append(PlannedMount(mount, target, parent, rel))
    return planned


def setup_ops(binds: Sequence[BindMount]) -> list[str]:
    """Arguments for the runtime's namespace setup script: every bind first (in order), then the read-only
    remounts — a read-only parent must still accept its children's mounts, which do not need its mount point
    writable (those were created on the host) but are cleaner made before any remount."""
    ops: list[str] = []
    for bind in binds:
        ops += ["b", bind.source, bind.target]
    for bind in binds:
        if bind.read_only:
            ops += ["r", bind.target]
    return ops


def host_path(path: str, binds: Sequence[BindMount]) -> str:
    """Where a path *inside* the container's namespace is on the host (for preflight checks of ``workingDir``
    and ``argv[0]``): below the deepest bind whose target holds it, else the path itself."""
    best: BindMount | None = None
    for bind in binds:
        deeper = best is None or len(_parts(bind.target)) >= len(_parts(best.target))
        if deeper and is_below(path, bind.target):
            best = bind
    if best is None:
        return path
    rest = _parts(path)[len(_parts(best.target)) :]
    return str(PurePosixPath(best.source, *rest))


def hidden_by_mounts(binds: Sequence[BindMount], needed: Sequence[str]) -> str:
    """Why these mounts cannot be made, or "": a mount on the host's tree must not hide a path the setup still
    needs after it — a later mount's source, or ``needed`` (the runtime's state dir and programs).

    ``mountPath: /tmp`` with the agent's data dir in ``/tmp`` would make every later source, the wrapper
    script and the file the exit code is written to invisible inside the namespace. A nested mount (its mount
    point lies in another mount's source) attaches to that bind, not to the host's tree, and hides nothing."""
    sources = [b.source for b in binds]
    for bind in binds:
        if any(is_below(bind.mount_point, s) for s in sources):
            continue
        for path in [*sources, *needed]:
            if is_below(path, bind.mount_point):
                return (
                    f"mountPath {bind.target} would hide {path} in the container's mount namespace, which "
                    "starting the container needs (the agent's data directory or programs): choose another "
                    "mountPath or data directory, or volume mode 'sandbox'"
                )
    return ""


def removal_order(created: Sequence[str], still_needed: set[str]) -> list[str]:
    """Mount points to remove (deepest first), leaving those another live container still needs, and every
    ancestor of such a one."""
    keep: set[str] = set()
    for path in still_needed:
        keep.update(p for p in created if is_below(path, p))
    out = [p for p in dict.fromkeys(created) if p not in keep]
    return sorted(out, key=lambda p: len(_parts(p)), reverse=True)


# ------------------------------------------------------------------------------------------------ tmpfs


def memory_volumes(pod: Mapping[str, Any]) -> dict[str, int | None]:
    """``emptyDir`` volumes with ``medium: Memory`` → their ``sizeLimit`` in bytes (None: no limit given)."""
    out: dict[str, int | None] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        empty = volume.get("emptyDir")
        if not isinstance(empty, dict) or empty.get("medium") != "Memory":
            continue
        limit = empty.get("sizeLimit")
        size: int | None = None
        if limit not in (None, ""):
            try:
                size = max(0, int(parse_quantity(str(limit))))
            except QuantityError:
                size = None  # the API server validates quantities; a bad one here means no limit
        out[str(volume.get("name", ""))] = size
    return out
