"""Pod volumes as data: which files each volume holds and where each container finds them.

Pure logic. From the pod spec, the ConfigMaps and Secrets the agent fetched and the pod's own metadata,
:func:`plan_volumes` computes the desired file set of every ``configMap``, ``secret``, ``projected`` and
``downwardAPI`` volume (relative path → bytes + mode) and marks ``emptyDir`` volumes as plain scratch
directories. :func:`container_mounts` says where a container's ``volumeMounts`` appear. Writing files is the
job of ``atomicwriter`` (IO); resolving a ``subPath`` against what is on disk is :func:`resolve_inside`.

Path safety is checked here, before anything touches the disk: ``items[].path``, downward API paths and
``subPath`` must be relative and free of ``..`` elements (the kubelet's rules); a symlink planted inside a
volume is caught by :func:`resolve_inside`, which resolves the final path and checks it stays in the volume.
Every refusal is a :class:`~corral.agent.environment.ConfigError`, so the container waits in
``CreateContainerConfigError`` with an event, as for a missing ConfigMap.

Sandbox layout (made in both volume modes; namespace mode adds real bind mounts on top, see
:mod:`corral.agent.mountplan`): volume ``V`` of pod sandbox ``S`` lives in ``S/volumes/V``; container
``C`` sees its mounts under its own root ``S/rootfs/C`` — ``mountPath: /etc/app`` becomes the symlink
``S/rootfs/C/etc/app`` → the volume (or → ``volume/subPath``). The container gets ``CORRAL_VOLUMES`` (its
root) in its environment. A per-container root is needed because two containers may mount different volumes at
the same ``mountPath``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

from corral.agent.environment import ConfigError, PodFacts, field_ref_value, resource_field_value

JSON = dict[str, Any]

DEFAULT_MODE = 0o644
"""The API server's default for ``defaultMode`` of configMap, secret, projected and downwardAPI volumes."""
VOLUMES_DIR = "volumes"
ROOTFS_DIR = "rootfs"
VOLUMES_ENV = "CORRAL_VOLUMES"


class VolumeKind(Enum):
    FILES = "files"  # configMap, secret, projected, downwardAPI: agent-owned content, swapped atomically
    SCRATCH = "scratch"  # emptyDir: a plain directory the containers own


@dataclass(frozen=True, slots=True)
class FileContent:
    data: bytes
    mode: int = DEFAULT_MODE


@dataclass(frozen=True, slots=True)
class VolumePlan:
    name: str
    kind: VolumeKind
    files: Mapping[str, FileContent] = field(default_factory=dict)
    """Relative POSIX path → content; only for ``FILES`` volumes."""


@dataclass(frozen=True, slots=True)
class MountPlan:
    volume: str
    mount_path: str
    """The ``mountPath`` as given (absolute inside the container)."""
    link: str
    """Where it appears, relative to the container's root (``mountPath`` without the leading ``/``)."""
    sub_path: str
    read_only: bool


# ------------------------------------------------------------------------------------------------ paths


def check_relative_path(path: str, what: str) -> str:
    """Return ``path`` normalised if it is a safe relative path, else raise ConfigError naming ``what``.

    The kubelet's rules (``validateLocalDescendingPath``): not absolute, no ``..`` element. Empty elements and
    ``.`` are dropped (``a//b/./c`` is ``a/b/c``)."""
    if not path:
        raise ConfigError(f"{what}: must not be empty")
    if "\x00" in path:
        raise ConfigError(f"{what} {path!r}: must not contain a NUL character")
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        raise ConfigError(f"{what} {path!r}: must be a relative path, not an absolute one")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"{what} {path!r}: must not contain '..'")
    if not parts:
        raise ConfigError(f"{what} {path!r}: must name a file, not the volume itself")
    if parts[0].startswith(".."):
        # Names starting with '..' are the writer's own (``..data``, ``..<timestamp>``).
        raise ConfigError(f"{what} {path!r}: must not start with '..'")
    return "/".join(parts)


def resolve_inside(base: Path, relative: str, what: str) -> Path:
    """``base/relative`` with every symlink resolved, refused unless it stays inside ``base`` (resolved too).

    This is the IO half of the path checks: a container can plant ``x -> /etc`` in an emptyDir, and a later
    ``subPath: x/passwd`` must not reach the host's file."""
    clean = check_relative_path(relative, what)
    root = base.resolve()
    target = (base / clean).resolve()
    if target != root and root not in target.parents:
        raise ConfigError(f"{what} {relative!r}: resolves outside the volume (through a symlink)")
    return target


# ------------------------------------------------------------------------------------------------ sources


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"{what}: value is not valid base64") from exc


def _object_bytes(kind: str, name: str, obj: JSON) -> dict[str, bytes]:
    if kind == "Secret":
        data = {k: _b64(v, f"secret {name} key {k}") for k, v in (obj.get("data") or {}).items()}
        data.update({k: str(v).encode() for k, v in (obj.get("stringData") or {}).items()})
        return data
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    for k, v in (obj.get("binaryData") or {}).items():
        data.setdefault(k, _b64(v, f"configmap {name} key {k}"))
    return data


def _mode(value: Any, fallback: int, what: str) -> int:
    if value is None:
        return fallback
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ConfigError(f"{what}: mode must be between 0 and 0777 (511), got {value!r}")
    return value


def _key_to_path_files(
    kind: str,
    source: JSON,
    objects: Mapping[str, JSON | None],
    namespace: str,
    default_mode: int,
    what: str,
) -> dict[str, FileContent]:
    """Files of one configMap/secret source (a volume or a projected source)."""
    name = str(source.get("name") or source.get("secretName") or "")
    optional = bool(source.get("optional"))
    obj = objects.get(name)
    label = kind.lower()
    if obj is None:
        if optional:
            return {}
        raise ConfigError(f'{what}: {label} "{name}" not found')
    data = _object_bytes(kind, name, obj)
    items = source.get("items")
    files: dict[str, FileContent] = {}
    if not items:
        for key in sorted(data):
            files[check_relative_path(key, f"{what}: {label} key")] = FileContent(data[key], default_mode)
        return files
    for index, item in enumerate(items):
        key = str(item.get("key", ""))
        item_what = f"{what}.items[{index}].path"
        path = check_relative_path(str(item.get("path", "")), item_what)
        if key not in data:
            if optional:
                continue
            raise ConfigError(f"{what}: couldn't find key {key} in {kind} {namespace}/{name}")
        files[path] = FileContent(data[key], _mode(item.get("mode"), default_mode, f"{what}.items[{index}]"))
    return files


def _downward_files(
    pod: JSON, items: list[JSON], facts: PodFacts, default_mode: int, what: str
) -> dict[str, FileContent]:
    files: dict[str, FileContent] = {}
    containers = {
        str(c.get("name", "")): c
        for c in ((pod.get("spec") or {}).get("containers") or [])
        + ((pod.get("spec") or {}).get("initContainers") or [])
    }
    for index, item in enumerate(items):
        item_what = f"{what}.items[{index}]"
        path = check_relative_path(str(item.get("path", "")), f"{item_what}.path")
        if isinstance(item.get("fieldRef"), dict):
            value = field_ref_value(pod, str(item["fieldRef"].get("fieldPath", "")), facts)
        elif isinstance(item.get("resourceFieldRef"), dict):
            ref = item["resourceFieldRef"]
            container = containers.get(str(ref.get("containerName", "")))
            if container is None:
                raise ConfigError(
                    f"{item_what}: resourceFieldRef names unknown container {ref.get('containerName')!r}"
                )
            value = resource_field_value(container, ref, facts)
        else:
            raise ConfigError(f"{item_what}: needs fieldRef or resourceFieldRef")
        files[path] = FileContent(value.encode(), _mode(item.get("mode"), default_mode, item_what))
    return files


def _check_no_prefix_clash(files: Mapping[str, FileContent], what: str) -> None:
    """``a`` and ``a/b`` cannot both be files."""
    names = set(files)
    for path in names:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise ConfigError(f"{what}: path {'/'.join(parts[:i])!r} is both a file and a directory")


def plan_volume(
    pod: JSON,
    volume: JSON,
    configmaps: Mapping[str, JSON | None],
    secrets: Mapping[str, JSON | None],
    facts: PodFacts,
) -> VolumePlan:
    """The desired content of one volume; raises ConfigError naming the problem."""
    name = str(volume.get("name", ""))
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    what = f"volume {name!r}"
    files: dict[str, FileContent] = {}
    if isinstance(volume.get("emptyDir"), dict):
        return VolumePlan(name, VolumeKind.SCRATCH)
    if isinstance(volume.get("configMap"), dict):
        source = volume["configMap"]
        mode = _mode(source.get("defaultMode"), DEFAULT_MODE, f"{what}.defaultMode")
        files = _key_to_path_files("ConfigMap", source, configmaps, namespace, mode, what)
    elif isinstance(volume.get("secret"), dict):
        source = volume["secret"]
        mode = _mode(source.get("defaultMode"), DEFAULT_MODE, f"{what}.defaultMode")
        files = _key_to_path_files("Secret", source, secrets, namespace, mode, what)
    elif isinstance(volume.get("downwardAPI"), dict):
        source = volume["downwardAPI"]
        mode = _mode(source.get("defaultMode"), DEFAULT_MODE, f"{what}.defaultMode")
        files = _downward_files(pod, list(source.get("items") or []), facts, mode, what)
    elif isinstance(volume.get("projected"), dict):
        projected = volume["projected"]
        mode = _mode(projected.get("defaultMode"), DEFAULT_MODE, f"{what}.defaultMode")
        for index, source in enumerate(projected.get("sources") or []):
            source_what = f"{what}.sources[{index}]"
            if isinstance(source.get("configMap"), dict):
                part = _key_to_path_files(
                    "ConfigMap", source["configMap"], configmaps, namespace, mode, source_what
                )
            elif isinstance(source.get("secret"), dict):
                part = _key_to_path_files("Secret", source["secret"], secrets, namespace, mode, source_what)
            elif isinstance(source.get("downwardAPI"), dict):
                part = _downward_files(
                    pod, list(source["downwardAPI"].get("items") or []), facts, mode, source_what
                )
            elif "serviceAccountToken" in source:
                # No token issuer yet: skipped rather than failing pods copied from a real cluster (their
                # kube-api-access volume); documented in docs/config.md.
                continue
            else:
                raise ConfigError(
                    f"{source_what}: unsupported projection (configMap, secret, downwardAPI are)"
                )
            files.update(part)  # a later source wins on the same path, as in the kubelet
    else:
        kinds = sorted(k for k in volume if k != "name")
        raise ConfigError(f"{what}: unsupported volume type {', '.join(kinds) or '(none)'}")
    _check_no_prefix_clash(files, what)
    return VolumePlan(name, VolumeKind.FILES, files)


def plan_volumes(
    pod: JSON,
    configmaps: Mapping[str, JSON | None],
    secrets: Mapping[str, JSON | None],
    facts: PodFacts,
) -> dict[str, VolumePlan]:
    """Every volume of the pod by name."""
    plans: dict[str, VolumePlan] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        plan = plan_volume(pod, volume, configmaps, secrets, facts)
        check_relative_path(plan.name, "volume name")
        plans[plan.name] = plan
    return plans


def container_mounts(pod: JSON, container: JSON) -> list[MountPlan]:
    """The container's ``volumeMounts``, checked against the pod's volumes and the path rules."""
    volumes = {str(v.get("name", "")) for v in (pod.get("spec") or {}).get("volumes") or []}
    mounts: list[MountPlan] = []
    seen: set[str] = set()
    for index, mount in enumerate(container.get("volumeMounts") or []):
        what = f"container {container.get('name', '')!r} volumeMounts[{index}]"
        volume = str(mount.get("name", ""))
        if volume not in volumes:
            raise ConfigError(f"{what}: volume {volume!r} is not defined in the pod")
        mount_path = str(mount.get("mountPath", ""))
        if not mount_path.startswith("/"):
            raise ConfigError(f"{what}.mountPath {mount_path!r}: must be an absolute path")
        link = check_relative_path(mount_path.lstrip("/"), f"{what}.mountPath")
        if link in seen:
            raise ConfigError(f"{what}.mountPath {mount_path!r}: mounted twice")
        seen.add(link)
        sub_path = str(mount.get("subPath") or "")
        if sub_path:
            sub_path = check_relative_path(sub_path, f"{what}.subPath")
        mounts.append(MountPlan(volume, mount_path, link, sub_path, bool(mount.get("readOnly"))))
    return mounts


def volume_dir(sandbox: Path, volume: str) -> Path:
    return sandbox / VOLUMES_DIR / volume


def container_root(sandbox: Path, container: str) -> Path:
    return sandbox / ROOTFS_DIR / container


def _same_link(link: Path, target: str) -> bool:
    return link.is_symlink() and os.readlink(link) == target


def _nested(mount: MountPlan, mounts: list[MountPlan]) -> bool:
    """``mount`` lies below another of the container's mount paths."""
    return any(other.link != mount.link and mount.link.startswith(other.link + "/") for other in mounts)


def link_mounts(sandbox: Path, container: str, mounts: list[MountPlan], nested_ok: bool = False) -> Path:
    """Create the container's mount symlinks (IO, idempotent); returns the container's root.

    Each link points to the volume directory, or for a ``subPath`` to ``volume/subPath`` (refused when its
    resolution leaves the volume), so it follows live updates. A missing ``subPath`` target is created as a
    directory, as the kubelet does.

    A mount nested below another one cannot get a link without writing into the outer volume, so it is
    refused — unless ``nested_ok`` (namespace mode, where it is a real mount): then it gets no link.
    """
    root = container_root(sandbox, container)
    root.mkdir(parents=True, exist_ok=True)
    for mount in mounts:
        base = volume_dir(sandbox, mount.volume).absolute()  # the link must not depend on the cwd
        target = base
        if mount.sub_path:
            what = f"volumeMount {mount.mount_path!r} subPath"
            resolved = resolve_inside(base, mount.sub_path, what)
            if not os.path.lexists(resolved):
                resolved.mkdir(parents=True, exist_ok=True)
                resolve_inside(base, mount.sub_path, what)
            # The link names the path *through* the volume (checked above), not its resolution: a ConfigMap
            # key resolves into the current ``..<timestamp>`` directory, which the next update deletes.
            target = base / mount.sub_path
        if nested_ok and _nested(mount, mounts):
            continue
        head, _, name = mount.link.rpartition("/")
        # Only the parent is resolved: the link itself points out of the root on purpose.
        parent = resolve_inside(root, head, f"volumeMount {mount.mount_path!r}") if head else root.resolve()
        parent.mkdir(parents=True, exist_ok=True)
        link = parent / name
        if _same_link(link, str(target)):
            continue
        tmp = parent / f".{link.name}.tmp"
        if os.path.lexists(tmp):
            tmp.unlink()
        tmp.symlink_to(target)
        os.replace(tmp, link)
    return root
