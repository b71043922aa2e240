"""Shared fixtures: a Corral server process per test session, helpers for kubectl and namespaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing.process import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("corral-server")).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def kubectl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kubectl-cache")


class Kubectl:
    def __init__(self, kubeconfig: Path, cache_dir: Path, namespace: str) -> None:
        self.kubeconfig, self.cache_dir, self.namespace = kubeconfig, cache_dir, namespace
        self.binary = shutil.which("kubectl") or "kubectl"

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        namespace: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir)]
        if namespace:
            cmd += ["-n", self.namespace]
        cmd += list(args)
        env = dict(os.environ, HOME=str(self.cache_dir))
        result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        cmd = [
            self.binary,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir),
            "-n",
            self.namespace,
            *args,
        ]
        env = dict(os.environ, HOME=str(self.cache_dir))
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
        )


@pytest.fixture
def namespace_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kubectl(server: ServerProcess, kubectl_cache: Path, namespace_name: str) -> Iterator[Kubectl]:
    if shutil.which("kubectl") is None:
        pytest.fail("kubectl is not installed: the compat tests need the real kubectl 1.32")
    k = Kubectl(server.kubeconfig, kubectl_cache, namespace_name)
    k.run(
        "apply",
        "-f",
        "-",
        namespace=False,
        stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace_name}\n",
    )
    yield k
    k.run("delete", "namespace", namespace_name, "--wait=false", namespace=False, check=False)
