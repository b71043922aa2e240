"""Volume planning: file sets of configMap/secret/projected/downwardAPI volumes, modes, optional sources,
mounts, and the path rules (no absolute path, no ``..``, no escape through a planted symlink)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.agent.environment import ConfigError, PodFacts
from corral.agent.volumes import (
    DEFAULT_MODE,
    FileContent,
    VolumeKind,
    check_relative_path,
    container_mounts,
    link_mounts,
    plan_volume,
    plan_volumes,
    resolve_inside,
)
from corral.api.configrefs import volume_refs

JSON = dict[str, Any]
FACTS = PodFacts(node_name="node-1", host_ip="127.0.0.1", pod_ip="127.0.0.1", sandbox_dir="/tmp/sb")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONFIGMAPS: dict[str, JSON | None] = {
    "app": {"data": {"a.conf": "A", "b.conf": "B"}, "binaryData": {"bin": b64("\x00\x01")}},
}
SECRETS: dict[str, JSON | None] = {"creds": {"data": {"user": b64("admin"), "pass": b64("s3cr3t")}}}


def pod(volumes: list[JSON], containers: list[JSON] | None = None) -> JSON:
    return {
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "uid": "u-1",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "hi"},
        },
        "spec": {
            "volumes": volumes,
            "containers": containers
            or [{"name": "main", "command": ["true"], "resources": {"limits": {"memory": "64Mi"}}}],
        },
    }


def plan(volume: JSON) -> dict[str, FileContent]:
    result = plan_volume(pod([volume]), volume, CONFIGMAPS, SECRETS, FACTS)
    assert result.kind is VolumeKind.FILES
    return dict(result.files)


@pytest.mark.parametrize(
    ("volume", "expected"),
    [
        pytest.param(
            {"name": "v", "configMap": {"name": "app"}},
            {"a.conf": (b"A", 0o644), "b.conf": (b"B", 0o644), "bin": (b"\x00\x01", 0o644)},
            id="configmap-all-keys",
        ),
        pytest.param(
            {"name": "v", "configMap": {"name": "app", "items": [{"key": "a.conf", "path": "sub/x.conf"}]}},
            {"sub/x.conf": (b"A", 0o644)},
            id="configmap-items",
        ),
        pytest.param(
            {"name": "v", "configMap": {"name": "app", "defaultMode": 0o400, "items": [
                {"key": "a.conf", "path": "a"}, {"key": "b.conf", "path": "b", "mode": 0o600}]}},
            {"a": (b"A", 0o400), "b": (b"B", 0o600)},
            id="configmap-modes",
        ),
        pytest.param(
            {"name": "v", "secret": {"secretName": "creds", "defaultMode": 0o440}},
            {"user": (b"admin", 0o440), "pass": (b"s3cr3t", 0o440)},
            id="secret-decoded",
        ),
        pytest.param(
            {"name": "v", "secret": {"secretName": "creds", "items": [{"key": "pass", "path": "p"}]}},
            {"p": (b"s3cr3t", 0o644)},
            id="secret-items",
        ),
        pytest.param(
            {"name": "v", "configMap": {"name": "missing", "optional": True}},
            {},
            id="optional-missing-object",
        ),
        pytest.param(
            {"name": "v", "secret": {"secretName": "creds", "optional": True, "items": [
                {"key": "nope", "path": "n"}, {"key": "user", "path": "u"}]}},
            {"u": (b"admin", 0o644)},
            id="optional-missing-key",
        ),
        pytest.param(
            {"name": "v", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "tier", "fieldRef": {"fieldPath": "metadata.labels['tier']"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                                                     "divisor": "1Mi"}},
            ]}},
            {"name": (b"web", 0o644), "labels": (b'app="web"\ntier="front"', 0o644), "tier": (b"front", 0o644),
             "mem": (b"64", 0o644)},
            id="downward-api",
        ),
        pytest.param(
            {"name": "v", "projected": {"defaultMode": 0o444, "sources": [
                {"configMap": {"name": "app", "items": [{"key": "a.conf", "path": "conf/a"}]}},
                {"secret": {"name": "creds", "items": [{"key": "user", "path": "creds/user", "mode": 0o400}]}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"configMap": {"name": "missing", "optional": True}},
                {"serviceAccountToken": {"path": "token"}},
            ]}},
            {"conf/a": (b"A", 0o444), "creds/user": (b"admin", 0o400), "ns": (b"prod", 0o444)},
            id="projected",
        ),
    ],
)  # fmt: skip
def test_file_sets(volume: JSON, expected: dict[str, tuple[bytes, int]]) -> None:
    assert {path: (c.data, c.mode) for path, c in plan(volume).items()} == expected


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"name": "v", "configMap": {"name": "missing"}}, 'configmap "missing" not found'),
        ({"name": "v", "secret": {"secretName": "gone"}}, 'secret "gone" not found'),
        (
            {"name": "v", "configMap": {"name": "app", "items": [{"key": "zz", "path": "z"}]}},
            "couldn't find key zz in ConfigMap prod/app",
        ),
        ({"name": "v", "configMap": {"name": "app", "items": [{"key": "a.conf", "path": "../x"}]}}, "'..'"),
        ({"name": "v", "configMap": {"name": "app", "items": [{"key": "a.conf", "path": "a/../../x"}]}}, "'..'"),
        ({"name": "v", "configMap": {"name": "app", "items": [{"key": "a.conf", "path": "/etc/x"}]}}, "absolute"),
        ({"name": "v", "configMap": {"name": "app", "items": [{"key": "a.conf", "path": "..data"}]}}, "'..'"),
        ({"name": "v", "configMap": {"name": "app", "defaultMode": 0o1777}}, "mode must be"),
        (
            {"name": "v", "downwardAPI": {"items": [{"path": "../n", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            "'..'",
        ),
        (
            {"name": "v", "downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "spec.nope"}}]}},
            "unsupported fieldRef",
        ),
        (
            {"name": "v", "configMap": {"name": "app", "items": [
                {"key": "a.conf", "path": "x"}, {"key": "b.conf", "path": "x/y"}]}},
            "both a file and a directory",
        ),
        ({"name": "v", "hostPath": {"path": "/etc"}}, "unsupported volume type hostPath"),
        ({"name": "v", "projected": {"sources": [{"clusterTrustBundle": {}}]}}, "unsupported projection"),
    ],
)  # fmt: skip
def test_refusals(volume: JSON, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan(volume)
    assert message in str(info.value)


def test_emptydir_is_scratch_and_plan_volumes_by_name() -> None:
    volumes = [
        {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
        {"name": "cfg", "configMap": {"name": "app"}},
    ]
    plans = plan_volumes(pod(volumes), CONFIGMAPS, SECRETS, FACTS)
    assert plans["scratch"].kind is VolumeKind.SCRATCH and not plans["scratch"].files
    assert set(plans["cfg"].files) == {"a.conf", "b.conf", "bin"}
    assert DEFAULT_MODE == 0o644


def test_referenced_objects_include_projected_sources() -> None:
    spec = pod(
        [
            {"name": "a", "configMap": {"name": "cm1"}},
            {"name": "b", "secret": {"secretName": "s1"}},
            {
                "name": "c",
                "projected": {"sources": [{"configMap": {"name": "cm2"}}, {"secret": {"name": "s2"}}]},
            },
            {"name": "d", "emptyDir": {}},
        ]
    )
    assert volume_refs(spec["spec"]["volumes"]) == ({"cm1", "cm2"}, {"s1", "s2"})


def test_mounts_checked() -> None:
    spec = pod([{"name": "cfg", "configMap": {"name": "app"}}])
    container = {
        "name": "main",
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app/", "readOnly": True, "subPath": "./sub//x"}],
    }
    (mount,) = container_mounts(spec, container)
    assert (mount.link, mount.sub_path, mount.read_only) == ("etc/app", "sub/x", True)
    for bad, message in [
        ({"name": "cfg", "mountPath": "/x", "subPath": "../../etc/passwd"}, "'..'"),
        ({"name": "cfg", "mountPath": "/x", "subPath": "/etc/passwd"}, "absolute"),
        ({"name": "cfg", "mountPath": "relative"}, "absolute path"),
        ({"name": "cfg", "mountPath": "/a/../../b"}, "'..'"),
        ({"name": "nope", "mountPath": "/x"}, "not defined"),
    ]:
        with pytest.raises(ConfigError) as info:
            container_mounts(spec, {"name": "main", "volumeMounts": [bad]})
        assert message in str(info.value), bad


def test_link_mounts_and_planted_symlink(tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    scratch = sandbox / "volumes" / "scratch"
    (scratch / "data").mkdir(parents=True)
    (scratch / "data" / "f").write_text("ok")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root")
    os.symlink(outside, scratch / "escape")  # what a container could plant in an emptyDir
    spec = pod([{"name": "scratch", "emptyDir": {}}])
    good = container_mounts(spec, {"name": "c", "volumeMounts": [
        {"name": "scratch", "mountPath": "/work"}, {"name": "scratch", "mountPath": "/etc/d", "subPath": "data"}]})  # fmt: skip
    root = link_mounts(sandbox, "c", good)
    assert (root / "work" / "data" / "f").read_text() == "ok"
    assert (root / "etc" / "d" / "f").read_text() == "ok"
    assert link_mounts(sandbox, "c", good) == root  # idempotent
    bad = container_mounts(
        spec,
        {"name": "c", "volumeMounts": [{"name": "scratch", "mountPath": "/p", "subPath": "escape/passwd"}]},
    )
    with pytest.raises(ConfigError, match="outside the volume"):
        link_mounts(sandbox, "c", bad)
    assert not os.path.lexists(root / "p")


def test_subpath_link_follows_configmap_updates(tmp_path: Path) -> None:
    from corral.agent.atomicwriter import write_volume

    sandbox = tmp_path / "sb"
    volume = sandbox / "volumes" / "cfg"
    volume.parent.mkdir(parents=True)
    write_volume(volume, {"greeting": FileContent(b"v1")})
    spec = pod([{"name": "cfg", "configMap": {"name": "app"}}])
    mounts = container_mounts(
        spec, {"name": "c", "volumeMounts": [{"name": "cfg", "mountPath": "/g", "subPath": "greeting"}]}
    )
    root = link_mounts(sandbox, "c", mounts)
    assert (root / "g").read_text() == "v1"
    write_volume(volume, {"greeting": FileContent(b"v2")})  # swaps ..data and deletes the old directory
    assert (root / "g").read_text() == "v2"


def test_nested_mounts_refused_in_sandbox_mode_and_unlinked_in_namespace_mode(tmp_path: Path) -> None:
    sandbox = tmp_path / "sb"
    for name in ("outer", "inner"):
        (sandbox / "volumes" / name).mkdir(parents=True)
    spec = pod([{"name": "outer", "emptyDir": {}}, {"name": "inner", "emptyDir": {}}])
    mounts = container_mounts(spec, {"name": "c", "volumeMounts": [
        {"name": "outer", "mountPath": "/etc/app"}, {"name": "inner", "mountPath": "/etc/app/tls"}]})  # fmt: skip
    with pytest.raises(ConfigError, match="outside the volume"):
        link_mounts(sandbox, "c", mounts)
    root = link_mounts(sandbox, "c", mounts, nested_ok=True)
    assert os.readlink(root / "etc" / "app") == str((sandbox / "volumes" / "outer").absolute())
    assert os.listdir(sandbox / "volumes" / "outer") == []  # nothing written into the outer volume


# ------------------------------------------------------------------------------------------------ property

segment = st.sampled_from(["a", "b", "..", ".", "", "...", "..x", "x..", "/", "c d"])
path_text = st.lists(segment, min_size=1, max_size=8).map("/".join) | st.text(max_size=20)


@given(path_text)
def test_no_accepted_path_escapes(path: str) -> None:
    try:
        clean = check_relative_path(path, "p")
    except ConfigError:
        return
    base = Path("/volume/root")
    joined = os.path.normpath(base / clean)
    assert joined.startswith(str(base) + "/")
    assert ".." not in clean.split("/") and not clean.startswith("/") and not clean.startswith("..")


@given(st.lists(st.sampled_from(["a", "b", "..", "link"]), min_size=1, max_size=5).map("/".join))
def test_resolve_inside_never_leaves_base(path: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "vol"
        (base / "a" / "b").mkdir(parents=True)
        os.symlink(tmp, base / "link")  # escape hatch planted in the volume
        os.symlink("../..", base / "a" / "b" / "b")
        try:
            resolved = resolve_inside(base, path, "subPath")
        except ConfigError:
            return
        assert resolved == base.resolve() or base.resolve() in resolved.parents
