"""Table tests of ``corral.cli.configdata``: kubectl's ``create configmap|secret`` flag rules and messages.

The expected messages are the ones kubectl 1.32 prints for the same flags (checked by hand against
``kubectl create ... --dry-run=client``). Files come from an in-memory :class:`FakeFiles`.
"""

from __future__ import annotations

import base64

import pytest

from corral.cli.configdata import (
    JSON,
    SourceError,
    Sources,
    build_configmap,
    build_secret,
    parse_env_file,
    parse_file_source,
    parse_literal,
)
from corral.cli.main import main

KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


class FakeFiles:
    """Paths → bytes; a directory is a path that prefixes others (its direct children, by name)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def is_dir(self, path: str) -> bool:
        if path in self.files:
            return False
        if any(p.startswith(path.rstrip("/") + "/") for p in self.files):
            return True
        raise SourceError(f"error reading {path}: no such file or directory")

    def regular_files(self, path: str) -> list[tuple[str, str]]:
        prefix = path.rstrip("/") + "/"
        names = sorted(p[len(prefix) :] for p in self.files if p.startswith(prefix))
        return [(n, prefix + n) for n in names if "/" not in n]

    def read(self, path: str) -> bytes:
        if path not in self.files:
            raise SourceError(f"error reading {path}: no such file or directory")
        return self.files[path]


FILES = FakeFiles(
    {
        "app.properties": b"color=blue\n",
        "conf/b.txt": b"bee",
        "conf/a.txt": b"ay",
        "conf/sub/deep.txt": b"skipped: not a direct child",
        "logo.png": b"\x89PNG\xff\x00",
        "bad name.txt": b"x",
        "app.env": b'\xef\xbb\xbfA=1\n# comment\n\n  B=x=y \nFROM_ENV\nQ="quoted"\n',
        "bad.env": b"1A=x\n",
    }
)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("k=v", ("k", "v")),
        ("k=a=b", ("k", "a=b")),  # split at the first "="
        ("k=", ("k", "")),
        ("k='quoted'", ("k", "quoted")),  # kubectl trims quote characters around the value
        ('k="x"', ("k", "x")),
    ],
)
def test_parse_literal(source: str, expected: tuple[str, str]) -> None:
    assert parse_literal(source) == expected


@pytest.mark.parametrize("source", ["novalue", "=v"])
def test_parse_literal_refuses(source: str) -> None:
    with pytest.raises(SourceError, match=f"^invalid literal source {source}, expected key=value$"):
        parse_literal(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("dir/app.properties", ("app.properties", "dir/app.properties", False)),
        ("cfg=dir/app.properties", ("cfg", "dir/app.properties", True)),
    ],
)
def test_parse_file_source(source: str, expected: tuple[str, str, bool]) -> None:
    assert parse_file_source(source) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("=path", "key name for file path path missing"),
        ("key=", "file path for key name key missing"),
        ("a=b=c", "key names or file paths cannot contain '='"),
    ],
)
def test_parse_file_source_refuses(source: str, message: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_file_source(source)
    assert str(info.value) == message


def test_env_file_syntax() -> None:
    pairs = parse_env_file(FILES.read("app.env"), "app.env", {"FROM_ENV": "from-environment"})
    # BOM dropped, comments/blank lines skipped, leading space trimmed (trailing kept), bare key from env,
    # quotes kept verbatim (env files are not shell).
    assert pairs == [("A", "1"), ("B", "x=y "), ("FROM_ENV", "from-environment"), ("Q", '"quoted"')]


def test_env_file_bad_name() -> None:
    with pytest.raises(SourceError) as info:
        parse_env_file(b"1A=x\n", "bad.env", {})
    assert str(info.value).startswith('"1A" is not a valid key name: a valid environment variable name must')


def configmap(**flags: list[str]) -> JSON:
    return build_configmap("cfg", Sources(**flags), FILES, {"FROM_ENV": "e"})


def secret(**flags: list[str]) -> JSON:
    return build_secret("s", Sources(**flags), FILES, {"FROM_ENV": "e"})


@pytest.mark.parametrize(
    ("flags", "data", "binary"),
    [
        ({"literals": ["a=1", "b=2"]}, {"a": "1", "b": "2"}, None),
        ({"files": ["app.properties"]}, {"app.properties": "color=blue\n"}, None),
        ({"files": ["props=app.properties"]}, {"props": "color=blue\n"}, None),
        ({"files": ["conf"]}, {"a.txt": "ay", "b.txt": "bee"}, None),  # regular files only, by name
        ({"files": ["logo.png"], "literals": ["k=v"]}, {"k": "v"}, {"logo.png": b64(b"\x89PNG\xff\x00")}),
        ({"env_files": ["app.env"]}, {"A": "1", "B": "x=y ", "FROM_ENV": "e", "Q": '"quoted"'}, None),
    ],
)
def test_build_configmap(
    flags: dict[str, list[str]], data: dict[str, str] | None, binary: JSON | None
) -> None:
    obj = configmap(**flags)
    assert obj["apiVersion"] == "v1" and obj["kind"] == "ConfigMap"
    assert obj["metadata"] == {"name": "cfg"}
    assert obj.get("data") == data
    assert obj.get("binaryData") == binary


def test_namespace_is_set_only_when_given() -> None:
    obj = build_configmap("cfg", Sources(literals=["a=1"]), FILES, {}, namespace="team")
    assert obj["metadata"] == {"name": "cfg", "namespace": "team"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            {"literals": ["a=1", "a=2"]},
            'cannot add key "a", another key by that name already exists in Data for ConfigMap "cfg"',
        ),
        (
            {"files": ["a=logo.png"], "literals": ["a=2"]},
            'cannot add key "a", another key by that name already exists in BinaryData for ConfigMap "cfg"',
        ),
        ({"literals": ["a b=1"]}, f'"a b" is not a valid key name for a ConfigMap: {KEY_MSG}'),
        ({"files": ["bad name.txt"]}, f'"bad name.txt" is not a valid key name for a ConfigMap: {KEY_MSG}'),
        (
            {"literals": ["..data=1"]},
            "\"..data\" is not a valid key name for a ConfigMap: must not start with '..'",
        ),
        ({"literals": [".=1"]}, "\".\" is not a valid key name for a ConfigMap: must not be '.'"),
        ({"files": ["k=conf"]}, "cannot give a key name for a directory path"),
        ({"files": ["missing.txt"]}, "error reading missing.txt: no such file or directory"),
        ({"env_files": ["conf"]}, "env config file cannot be a directory"),
        (
            {"env_files": ["app.env"], "literals": ["a=1"]},
            "from-env-file cannot be combined with from-file or from-literal",
        ),
    ],
)
def test_build_configmap_refuses(flags: dict[str, list[str]], message: str) -> None:
    with pytest.raises(SourceError) as info:
        configmap(**flags)
    assert str(info.value) == message


def test_build_secret() -> None:
    obj = secret(literals=["user=admin", "pw=p@ss"], files=["logo.png"])
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"logo.png": b64(b"\x89PNG\xff\x00"), "user": b64("admin"), "pw": b64("p@ss")},
    }
    typed = build_secret("s", Sources(literals=["a=b"]), FILES, {}, secret_type="example.com/x")
    assert typed["type"] == "example.com/x"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"literals": ["a=1", "a=2"]}, "cannot add key a, another key by that name already exists"),
        ({"literals": ["..a=1"]}, "\"..a\" is not valid key name for a Secret must not start with '..'"),
        ({"literals": ["a/b=1"]}, f'"a/b" is not valid key name for a Secret {KEY_MSG}'),
    ],
)
def test_build_secret_refuses(flags: dict[str, list[str]], message: str) -> None:
    with pytest.raises(SourceError) as info:
        secret(**flags)
    assert str(info.value) == message


# --- the command, without a server (--dry-run=client) ----------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([*args])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_dry_run_client_prints_kubectls_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "create", "secret", "generic", "s", "--from-literal=pw=p@ss", "--dry-run=client", "-o", "yaml"
    )
    assert code == 0
    assert out == (
        "apiVersion: v1\ndata:\n  pw: cEBzcw==\nkind: Secret\nmetadata:\n  creationTimestamp: null\n  name: s\n"
    )
    code, out, _ = run_cli(capsys, "create", "configmap", "c", "--from-literal=a=1", "--dry-run=client")
    assert (code, out) == (0, "configmap/c created (dry run)\n")
    code, out, _ = run_cli(
        capsys, "create", "configmap", "c", "--from-literal=a=1", "--dry-run=client", "-o", "name"
    )
    assert (code, out) == (0, "configmap/c\n")


def test_bad_flags_fail_before_connecting(capsys: pytest.CaptureFixture[str]) -> None:
    # No server and no kubeconfig: the flag error must come first, as one kubectl-style line.
    code, out, err = run_cli(
        capsys,
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "create",
        "configmap",
        "c",
        "--from-literal=novalue",
    )
    assert (code, out) == (1, "")
    assert err == "error: invalid literal source novalue, expected key=value\n"
