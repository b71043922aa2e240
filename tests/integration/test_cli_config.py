"""``corral create configmap|secret``, ``get`` and ``describe`` against a real server, and the server's
ConfigMap/Secret rules (immutability, the 1 MiB limit, no Secret value in any answer).

The session's server (``tests/conftest.py``) serves the module; each test works in its own namespace. The
CLI runs as a subprocess with the server's kubeconfig; kubectl's compat checks are at the end and use the
shared ``kubectl`` fixture.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl

CLI = [sys.executable, "-m", "corral.cli.main"]
CANARY = "canary-5b1e0d-never-show-me"


class Cli:
    def __init__(self, kubeconfig: Path, namespace: str, home: Path) -> None:
        self.kubeconfig, self.namespace, self.home = kubeconfig, namespace, home

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CORRAL_DEBUG")}
        base.update(HOME=str(self.home), NO_COLOR="1", **(env or {}))
        cmd = [*CLI, *args, "--kubeconfig", str(self.kubeconfig), "-n", self.namespace]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=base, cwd=self.home)
        if check and result.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def get_json(self, kind: str, name: str) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.run("get", kind, name, "-o", "json").stdout)
        return doc


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path) -> Iterator[Cli]:
    ns = f"cfg-{uuid.uuid4().hex[:10]}"
    c = Cli(server.kubeconfig, ns, tmp_path)
    manifest = tmp_path / "ns.yaml"
    manifest.write_text(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n")
    c.run("apply", "-f", str(manifest))
    yield c
    c.run("delete", "namespace", ns, check=False)


def _decoded(secret: dict[str, object]) -> dict[str, bytes]:
    data = secret.get("data")
    assert isinstance(data, dict)
    return {k: base64.b64decode(v) for k, v in data.items()}


def test_create_configmap_from_literals_files_directory(cli: Cli) -> None:
    conf = cli.home / "conf"
    conf.mkdir()
    (conf / "a.txt").write_text("ay")
    (conf / "b.bin").write_bytes(b"\xff\xfe\x00")
    (conf / "link").symlink_to(conf / "a.txt")  # symlinks in a directory are skipped, as kubectl does
    (cli.home / "app.properties").write_text("color=blue\n")
    out = cli.run(
        "create", "configmap", "web", "--from-literal", "mode=fast", "--from-literal=empty=",
        "--from-file", "props=app.properties", "--from-file", str(conf),
    ).stdout  # fmt: skip
    assert out == "configmap/web created\n"
    cm = cli.get_json("configmap", "web")
    assert cm["data"] == {"mode": "fast", "empty": "", "props": "color=blue\n", "a.txt": "ay"}
    assert cm["binaryData"] == {"b.bin": base64.b64encode(b"\xff\xfe\x00").decode()}

    table = cli.run("get", "configmap", "web").stdout.splitlines()
    assert re.fullmatch(r"NAME\s+DATA\s+AGE", table[0])
    assert re.fullmatch(r"web\s+5\s+\d+s", table[1])

    described = cli.run("describe", "configmap", "web").stdout
    assert re.search(r"^Name:\s+web$", described, re.M)
    assert re.search(r"^mode:\n----\nfast$", described, re.M)
    assert re.search(r"^BinaryData\n====\nb\.bin:\s+3 bytes$", described, re.M)


def test_create_refusals_match_kubectl(cli: Cli) -> None:
    cli.run("create", "configmap", "dup", "--from-literal=a=1")
    again = cli.run("create", "configmap", "dup", "--from-literal=a=1", check=False)
    assert again.returncode == 1
    assert again.stderr == 'error: failed to create configmap: configmaps "dup" already exists\n'
    twice = cli.run("create", "configmap", "x", "--from-literal=a=1", "--from-literal=a=2", check=False)
    assert twice.stderr == (
        'error: cannot add key "a", another key by that name already exists in Data for ConfigMap "x"\n'
    )
    bad = cli.run("create", "secret", "generic", "x", "--from-literal=..a=1", check=False)
    assert bad.returncode == 1
    assert bad.stderr == "error: \"..a\" is not valid key name for a Secret must not start with '..'\n"
    missing = cli.run("create", "configmap", "x", "--from-file=nope.txt", check=False)
    assert missing.stderr == "error: error reading nope.txt: no such file or directory\n"
    assert cli.run("get", "configmap", "x", check=False).returncode == 1  # nothing half-created


def test_create_dry_runs(cli: Cli) -> None:
    out = cli.run("create", "configmap", "dry", "--from-literal=a=1", "--dry-run=client", "-o", "yaml").stdout
    assert out == (
        'apiVersion: v1\ndata:\n  a: "1"\nkind: ConfigMap\nmetadata:\n  creationTimestamp: null\n'
        f"  name: dry\n  namespace: {cli.namespace}\n"
    )
    server = cli.run("create", "configmap", "dry", "--from-literal=a=1", "--dry-run=server").stdout
    assert server == "configmap/dry created (server dry run)\n"
    assert cli.run("get", "configmap", "dry", check=False).returncode == 1


def test_create_secret_from_env_file_and_describe_hides_values(cli: Cli) -> None:
    (cli.home / "app.env").write_text(f"# settings\nUSER=admin\nTOKEN={CANARY}\nFROM_ENV\n")
    out = cli.run(
        "create", "secret", "generic", "creds", "--from-env-file", "app.env", env={"FROM_ENV": "inherited"}
    ).stdout
    assert out == "secret/creds created\n"
    secret = cli.get_json("secret", "creds")
    assert secret["type"] == "Opaque"
    assert _decoded(secret) == {"USER": b"admin", "TOKEN": CANARY.encode(), "FROM_ENV": b"inherited"}

    table = cli.run("get", "secrets", "creds").stdout.splitlines()
    assert re.fullmatch(r"NAME\s+TYPE\s+DATA\s+AGE", table[0])
    assert re.fullmatch(r"creds\s+Opaque\s+3\s+\d+s", table[1])

    described = cli.run("describe", "secret", "creds").stdout
    assert re.search(r"^Type:\s+Opaque$", described, re.M)
    assert re.search(rf"^TOKEN:\s+{len(CANARY)} bytes$", described, re.M)
    assert re.search(r"^USER:\s+5 bytes$", described, re.M)
    assert CANARY not in described and base64.b64encode(CANARY.encode()).decode() not in described


def test_create_secret_with_type_and_files(cli: Cli) -> None:
    (cli.home / "tls.crt").write_text("CERT")
    (cli.home / "tls.key").write_text("KEY")
    cli.run("create", "secret", "generic", "t", "--type", "kubernetes.io/tls", "--from-file", "tls.crt",
            "--from-file", "tls.key")  # fmt: skip
    assert cli.get_json("secret", "t")["type"] == "kubernetes.io/tls"
    refused = cli.run(
        "create", "secret", "generic", "t2", "--type", "kubernetes.io/tls", "--from-literal", f"tls.crt={CANARY}",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr == (
        'error: failed to create secret: Secret "t2" is invalid: data[tls.key]: Required value\n'
    )


def _apply(cli: Cli, text: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    path = cli.home / f"m-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(text)
    return cli.run("apply", "-f", str(path), check=check)


def test_immutable_configmap_and_secret_refuse_changes(cli: Cli) -> None:
    _apply(
        cli, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  a: '1'\n"
    )
    changed = _apply(
        cli,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  a: '2'\n",
        False,
    )
    assert changed.returncode == 1
    assert changed.stderr.strip() == (
        'Error from server (Invalid): ConfigMap "frozen" is invalid: data: Forbidden: field is immutable '
        "when `immutable` is set"
    )
    thawed = _apply(
        cli,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: false\ndata:\n  a: '1'\n",
        False,
    )
    assert "immutable: Forbidden: field is immutable when `immutable` is set" in thawed.stderr
    # Labels may still change.
    _apply(
        cli,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\n  labels: {tier: x}\nimmutable: true\n"
        "data:\n  a: '1'\n",
    )
    assert cli.get_json("configmap", "frozen")["data"] == {"a": "1"}

    _apply(
        cli,
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: vault\nimmutable: true\nstringData:\n  k: {CANARY}\n",
    )
    refused = _apply(
        cli,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: vault\nimmutable: true\nstringData:\n  k: other\n",
        False,
    )
    assert refused.returncode == 1
    assert "data: Forbidden: field is immutable when `immutable` is set" in refused.stderr
    assert CANARY not in refused.stderr and "other" not in refused.stderr


def test_one_mebibyte_limit(cli: Cli) -> None:
    big = cli.home / "big.txt"
    big.write_text("x" * (1024 * 1024 + 1))
    refused = cli.run("create", "configmap", "big", "--from-file", str(big), check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        'error: failed to create configmap: ConfigMap "big" is invalid: []: Too long: '
        "may not be more than 1048576 bytes\n"
    )
    big.write_text(CANARY * (1024 * 1024 // len(CANARY) + 1))
    secret = cli.run("create", "secret", "generic", "big", "--from-file", str(big), check=False)
    assert secret.stderr == (
        'error: failed to create secret: Secret "big" is invalid: data: Too long: may not be more than 1048576 bytes\n'
    )
    fits = cli.home / "fits.bin"
    fits.write_bytes(b"\xff" * (1024 * 1024))  # exactly 1 MiB (binaryData, counted decoded) is allowed
    assert (
        cli.run("create", "configmap", "fits", "--from-file", str(fits)).stdout == "configmap/fits created\n"
    )


# --- kubectl compat ------------------------------------------------------------------------------------


def test_kubectl_create_get_describe_secret(kubectl: Kubectl) -> None:
    out = kubectl.run(
        "create", "secret", "generic", "kc", f"--from-literal=token={CANARY}", "--from-literal=u=me"
    )
    assert out.stdout == "secret/kc created\n"
    assert kubectl.run("create", "configmap", "kcm", "--from-literal=a=1").stdout == "configmap/kcm created\n"
    doc = json.loads(kubectl.run("get", "secret", "kc", "-o", "json").stdout)
    assert _decoded(doc) == {"token": CANARY.encode(), "u": b"me"}
    yaml_out = kubectl.run("get", "secret", "kc", "-o", "yaml").stdout
    assert re.search(r"^type: Opaque$", yaml_out, re.M)
    assert f"token: {base64.b64encode(CANARY.encode()).decode()}" in yaml_out
    described = kubectl.run("describe", "secret", "kc").stdout
    assert re.search(rf"^token:\s+{len(CANARY)} bytes$", described, re.M)
    assert CANARY not in described
    described_cm = kubectl.run("describe", "configmap", "kcm").stdout
    assert re.search(r"^Data\n====\na:\n----\n1$", described_cm, re.M)
    table = kubectl.run("get", "secrets", "kc").stdout.splitlines()
    assert re.fullmatch(r"NAME\s+TYPE\s+DATA\s+AGE", table[0])
    assert re.fullmatch(r"kc\s+Opaque\s+2\s+\d+s", table[1])
    refused = kubectl.run("create", "secret", "generic", "kc2", "--from-literal=a b=1", check=False)
    assert refused.returncode == 1 and "is not valid key name for a Secret" in refused.stderr


def test_secret_that_is_not_base64_is_refused_without_echo(cli: Cli) -> None:
    refused = _apply(
        cli, f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: raw\ndata:\n  k: {CANARY}!\n", False
    )
    assert refused.returncode == 1
    assert 'data[k]: Invalid value: "<secret contents redacted>": illegal base64 data' in refused.stderr
    assert CANARY not in refused.stderr
    assert cli.run("get", "secret", "raw", check=False).returncode == 1
