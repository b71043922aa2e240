"""Secrets at rest with a real server process: no plaintext on disk, loud failure on tampering, key rotation.

One scenario, in order, because each step builds on the data dir the previous one left.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.store.encryption import is_sealed, parse_key_file
from corral.testing.process import ServerProcess

NS = "default"


class Cluster:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.cache = data_dir.parent / "kubectl-cache"
        self.server: ServerProcess | None = None

    def start(self) -> ServerProcess:
        self.server = ServerProcess(self.data_dir).start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def alive(self) -> bool:
        return self.server is not None and self.server.proc is not None and self.server.proc.poll() is None

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        assert self.server is not None
        return subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(self.server.kubeconfig),
                "--cache-dir",
                str(self.cache),
                "-n",
                NS,
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def secret(self, name: str) -> dict[str, object]:
        done = self.kubectl("get", "secret", name, "-o", "json")
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    def corral(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "corral.cli.main", *args], capture_output=True, text=True, timeout=60
        )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path / "data")
    try:
        yield c
    finally:
        if c.server is not None:
            c.server.kill()


def _forms(canary: str) -> list[bytes]:
    raw = canary.encode()
    return [raw, base64.b64encode(raw), raw.hex().encode()]


def _leaks(data_dir: Path, canaries: list[str]) -> list[str]:
    found = []
    for root, _, files in os.walk(data_dir):
        for name in files:
            path = Path(root) / name
            if not path.is_file():
                continue  # sockets, fifos
            try:
                content = path.read_bytes()
            except OSError:
                continue
            found += [f"{path}: {form!r}" for c in canaries for form in _forms(c) if form in content]
    return found


def _manifest(name: str, string_data: dict[str, str], data: dict[str, str] | None = None) -> str:
    doc: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": string_data,
    }
    if data:
        doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return json.dumps(doc)


def _holds(secret: dict[str, object], value: str) -> bool:
    text = json.dumps(secret)
    return value in text or base64.b64encode(value.encode()).decode() in text


def test_secrets_encrypted_tamper_evident_and_rotated(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex
    applied, in_data, created, other = (f"canary-{n}-{tag}" for n in ("applied", "data", "created", "other"))
    canaries = [applied, in_data, created, other]
    cluster.start()

    done = cluster.kubectl("apply", "-f", "-", stdin=_manifest("s-apply", {"a": applied}, {"b": in_data}))
    assert done.returncode == 0, done.stderr
    done = cluster.kubectl("create", "-f", "-", stdin=_manifest("s-create", {}, {"c": created}))
    assert done.returncode == 0, done.stderr
    done = cluster.kubectl("apply", "-f", "-", stdin=_manifest("s-other", {"o": other}))
    assert done.returncode == 0, done.stderr
    annotation = cluster.secret("s-apply")["metadata"]
    assert isinstance(annotation, dict)
    assert applied in annotation["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]

    # Positive control: a ConfigMap is stored in plain, so the scan must find its value.
    control = f"control-{tag}"
    done = cluster.kubectl("create", "configmap", "control", f"--from-literal=v={control}")
    assert done.returncode == 0, done.stderr
    assert _leaks(cluster.data_dir, [control])

    key_file = cluster.data_dir / "encryption-keys"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert _leaks(cluster.data_dir, canaries) == []  # while running: WAL included
    cluster.stop()
    assert _leaks(cluster.data_dir, canaries) == []

    # Restart: everything readable again.
    cluster.start()
    assert _holds(cluster.secret("s-apply"), applied) and _holds(cluster.secret("s-apply"), in_data)
    assert _holds(cluster.secret("s-create"), created)
    cluster.stop()

    # Flip one byte of one stored ciphertext.
    state = cluster.data_dir / "state.db"
    key = f"/core/secrets/{NS}/s-other"
    conn = sqlite3.connect(state)
    try:
        (value,) = conn.execute("SELECT value FROM objects WHERE key = ?", (key,)).fetchone()
        assert is_sealed(bytes(value))
        damaged = bytearray(value)
        damaged[len(damaged) // 2] ^= 0x01
        conn.execute("UPDATE objects SET value = ? WHERE key = ?", (bytes(damaged), key))
        conn.commit()
    finally:
        conn.close()
    cluster.start()
    done = cluster.kubectl("get", "secret", "s-other", "-o", "json")
    assert done.returncode != 0
    assert "InternalError" in done.stderr and key in done.stderr and "failed authentication" in done.stderr
    assert other not in done.stderr + done.stdout
    assert _holds(cluster.secret("s-apply"), applied)  # the others keep working
    assert cluster.alive()
    # Writing the damaged secret again heals it.
    done = cluster.kubectl("create", "-f", "-", stdin=_manifest("s-other", {"o": other}))
    assert done.returncode == 0, done.stderr
    assert _holds(cluster.secret("s-other"), other)

    # Online rotation while the server runs.
    old_id = parse_key_file(key_file.read_text()).current.id
    done = cluster.corral("secrets", "rotate-key", "--data-dir", str(cluster.data_dir))
    assert done.returncode == 0, done.stderr
    assert "(online)" in done.stdout and "3 secret(s) re-encrypted" in done.stdout
    ring = parse_key_file(key_file.read_text())
    assert ring.current.id != old_id and ring.previous == () and old_id not in key_file.read_text()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert cluster.alive()
    for name, value in (("s-apply", applied), ("s-create", created), ("s-other", other)):
        assert _holds(cluster.secret(name), value)
    cluster.stop()
    assert _leaks(cluster.data_dir, canaries) == []
    conn = sqlite3.connect(state)
    try:
        rows = conn.execute("SELECT value FROM objects WHERE key LIKE '/core/secrets/%'").fetchall()
    finally:
        conn.close()
    assert rows and all(bytes(v).startswith(f"corral-aesgcm:v1:{ring.current.id}:".encode()) for (v,) in rows)

    # Offline rotation (no server running), then a restart with only the newest key.
    done = cluster.corral("secrets", "rotate-key", "--data-dir", str(cluster.data_dir))
    assert done.returncode == 0, done.stderr
    assert "(offline)" in done.stdout
    assert parse_key_file(key_file.read_text()).ids != [ring.current.id]
    cluster.start()
    for name, value in (("s-apply", applied), ("s-create", created), ("s-other", other)):
        assert _holds(cluster.secret(name), value)
    cluster.stop()
