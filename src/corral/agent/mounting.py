"""The IO of namespace volume mode: the one-time probe, resolving bind sources and mount points, creating and
removing mount points on the host, and the tmpfs of ``emptyDir: {medium: Memory}`` volumes.

The plan (which mounts, in which order) is :mod:`corral.agent.mountplan`; the mounts themselves are made by
the process runtime inside each container's new mount namespace, so nothing here mounts anything in the
host's namespace except the pod-level tmpfs volumes (a Memory emptyDir is shared by the pod's containers, so
it must exist outside any one container's namespace, as the kubelet does it).

Path safety. Every bind source is resolved with :func:`corral.agent.volumes.resolve_inside` (symlinks
followed, then refused unless the result stays inside its volume), and so is the mount point of a nested
mount (it lies inside the parent mount's volume, which a container may write). Mount points are created by
walking the resolved path from ``/`` with ``O_NOFOLLOW``, so a symlink that appeared since the resolution is
refused rather than followed. Top-level mount points are host paths: the host's own symlinks (``/var/run``)
are followed at planning time, on purpose — they belong to the administrator, not to a pod.

What remains a time-of-check/time-of-use window: ``mount --bind SOURCE TARGET`` resolves both paths again
when it runs, a few milliseconds after the checks. A *running* container of the same pod that can write the
volume (an ``emptyDir``) could swap a directory on the resolved path for a symlink in that window. Such a
swap can only change what *this new container's own private namespace* shows; no mount is made in the host's
namespace. Namespace mode is not a security boundary anyway: a container runs as the agent's user (root)
without chroot and sees the host's whole tree.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from corral.agent.environment import ConfigError
from corral.agent.mountplan import HostFacts, VolumeMode, choose_volume_mode, is_below, plan_mounts
from corral.agent.runtimes.base import BindMount
from corral.agent.volumes import MountPlan, resolve_inside, volume_dir

log = logging.getLogger(__name__)

BINARIES = ("unshare", "mount", "umount", "nsenter")
PROBE_TIMEOUT = 10.0
MEMORY_SOURCE = "corral-emptydir"
"""The tmpfs source name, visible in ``findmnt``."""


class MountPointError(Exception):
    """A mount point cannot be created safely; the message names the path and why."""


def binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


# ------------------------------------------------------------------------------------------------ mode


@functools.cache
def host_facts() -> HostFacts:
    """Gathered once per process: platform, euid, the util-linux programs, and one ``unshare -m`` probe."""
    linux = sys.platform.startswith("linux")
    euid = os.geteuid()
    missing = tuple(b for b in BINARIES if shutil.which(b) is None)
    probe_error = ""
    if linux and euid == 0 and not missing:
        try:
            result = subprocess.run(
                [binary("unshare"), "-m", "--propagation", "private", "true"],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                probe_error = result.stderr.strip() or f"exit code {result.returncode}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            probe_error = str(exc)
    return HostFacts(linux=linux, euid=euid, missing_binaries=missing, probe_error=probe_error)


def resolve_volume_mode(requested: str) -> tuple[VolumeMode, str]:
    """``auto`` | ``namespace`` | ``sandbox`` → the mode in use and why; VolumeModeError when impossible."""
    return choose_volume_mode(requested, host_facts())


# ------------------------------------------------------------------------------------------------ planning


def bind_mounts(sandbox: Path, mounts: Sequence[MountPlan]) -> tuple[BindMount, ...]:
    """The container's bind mounts with every path resolved (raises ConfigError naming the mount).

    Runs after ``volumes.link_mounts``, which already refused escaping ``subPath`` values and created
    missing ``subPath`` directories."""
    binds: list[BindMount] = []
    for planned in plan_mounts(mounts):
        mount = planned.mount
        what = f"volumeMount {mount.mount_path!r}"
        base = volume_dir(sandbox, mount.volume).absolute()
        if base.is_symlink() or not base.is_dir():
            raise ConfigError(f"{what}: volume directory {base} is missing or a symlink")
        source = resolve_inside(base, mount.sub_path, f"{what} subPath") if mount.sub_path else base.resolve()
        if source.is_dir():
            is_file = False
        elif source.is_file():
            is_file = True
        else:
            raise ConfigError(f"{what}: subPath {mount.sub_path!r} is neither a file nor a directory")
        if planned.parent is None:
            # The host's own symlinks (e.g. /var/run -> /run) are followed: they are the administrator's.
            point = os.path.realpath(planned.target)
        else:
            parent = binds[planned.parent]
            if parent.file:
                raise ConfigError(f"{what}: lies inside {parent.target}, which is a file (subPath)")
            point = str(resolve_inside(Path(parent.source), planned.rel_in_parent, what))
        binds.append(BindMount(str(source), planned.target, point, mount.read_only, is_file))
    return tuple(binds)


# ------------------------------------------------------------------------------------------- mount points


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def create_mount_point(path: str, file: bool) -> list[str]:
    """Create what is missing of ``path`` (directories, and the last element as an empty file when
    ``file``); returns the created paths, parents first. Existing elements are entered with ``O_NOFOLLOW``:
    ``path`` was resolved by the agent, so a symlink on it now means it changed since — refused."""
    parts = _parts(path)
    if not parts:
        raise MountPointError("cannot mount over /")
    created: list[str] = []
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, name in enumerate(parts):
            current = "/" + "/".join(parts[: index + 1])
            if index == len(parts) - 1 and file:
                try:
                    os.close(
                        os.open(
                            name,
                            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                            0o644,
                            dir_fd=fd,
                        )
                    )
                    created.append(current)
                except FileExistsError:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        raise MountPointError(
                            f"mount point {path} for a file is not a regular file"
                        ) from None
                break
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
                created.append(current)
            except FileExistsError:
                pass
            try:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                next_fd = os.open(name, flags, dir_fd=fd)
            except OSError as exc:
                raise MountPointError(
                    f"mount point {path}: {current} is not a directory (or is a symlink): {exc.strerror}"
                ) from exc
            os.close(fd)
            fd = next_fd
    except BaseException:
        remove_mount_points(list(reversed(created)))
        raise
    finally:
        os.close(fd)
    return created


def remove_mount_points(paths: Sequence[str]) -> None:
    """Best effort, in the given order: a directory only when empty, a file only when empty and regular."""
    for path in paths:
        try:
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(path)  # refuses a non-empty directory: then it is no longer ours alone
            elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                os.unlink(path)
        except OSError as exc:
            log.debug("leaving mount point %s: %s", path, exc)


# ------------------------------------------------------------------------------------------------ tmpfs


def mount_memory_volumes(sandbox: Path, sizes: Mapping[str, int | None]) -> None:
    """Mount a tmpfs on each Memory emptyDir's directory (once; idempotent), sized by its ``sizeLimit``."""
    for name, size in sizes.items():
        directory = volume_dir(sandbox, name)
        directory.mkdir(parents=True, exist_ok=True)
        if directory.is_symlink():
            raise ConfigError(f"volume {name!r}: its directory is a symlink")
        if os.path.ismount(directory):
            continue
        mode = stat.S_IMODE(directory.stat().st_mode)
        options = f"mode={mode:o}" + (f",size={size}" if size else "")
        result = subprocess.run(
            [binary("mount"), "-t", "tmpfs", "-o", options, MEMORY_SOURCE, str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ConfigError(f"volume {name!r}: cannot mount a tmpfs: {result.stderr.strip()}")


_OCTAL = re.compile(r"\\([0-7]{3})")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in the agent's own namespace, deepest first."""
    root = os.path.realpath(path)
    found: list[str] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4:
                    point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
                    if is_below(point, root):
                        found.append(point)
    except OSError:
        return []
    return sorted(found, key=lambda p: len(_parts(p)), reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount what Corral mounted below a pod's sandbox (its Memory emptyDirs); lazily when busy."""
    for point in mounts_under(path):
        result = subprocess.run([binary("umount"), point], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            lazy = subprocess.run(
                [binary("umount"), "-l", point], capture_output=True, text=True, check=False
            )
            if lazy.returncode != 0:
                log.warning("cannot unmount %s: %s", point, lazy.stderr.strip())
