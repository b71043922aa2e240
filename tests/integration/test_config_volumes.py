"""ConfigMap, Secret and emptyDir volumes in real pods (sandbox volume mode, pinned): a real server with its agent, kubectl,
and the pod's own process reading its mounted files.

The container prints the mounted file over and over; the test reads the log. A ConfigMap change reaches the
file within 5 s with the same process (no restart). A ``subPath`` that escapes through a symlink planted in an
emptyDir, and a missing ConfigMap, leave the container waiting in ``CreateContainerConfigError`` with an event.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import JSON, Pods, main_pid, pod_doc, wait_until, waiting_reason

pytestmark = pytest.mark.compat

READER = [
    "sh",
    "-c",
    'while :; do printf "%s|%s\\n" "$(cat etc/app/greeting)" "$(cat "$CORRAL_VOLUMES/secrets/token")"; '
    "sleep 0.1; done",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Pinned to sandbox mode: these pods mount at fixed paths (``/etc/app``, ``/secrets``…) that namespace
    mode would create on the host. Namespace mode has its own tests with random paths: test_volume_modes.py."""
    proc = ServerProcess(tmp_path_factory.mktemp("corral-sandbox"), volume_mode="sandbox").start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def pods(kubectl: Kubectl, server: ServerProcess) -> Iterator[Pods]:
    p = Pods(kubectl, server.kubeconfig)
    try:
        yield p
        p.delete_all()
    finally:
        p.close()


def configmap(name: str, data: dict[str, str]) -> JSON:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name: str, data: dict[str, str]) -> JSON:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}


def last_line(pods: Pods, name: str) -> str:
    result = pods.kubectl.run("logs", name, "--tail=1", check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def test_mounted_configmap_changes_live_without_restart(pods: Pods) -> None:
    pods.apply(configmap("app", {"greeting": "hello-v1"}), secret("creds", {"token": "t0k3n"}))
    pods.apply(
        pod_doc(
            "reader",
            READER,
            volumes=[
                {"name": "cfg", "configMap": {"name": "app"}},
                {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            ],
            container={
                "volumeMounts": [
                    {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
                    {"name": "sec", "mountPath": "/secrets"},
                ]
            },
        )
    )
    pod = pods.wait_running("reader", timeout=20)
    pid = main_pid(pod)
    assert pid is not None
    wait_until(
        lambda: last_line(pods, "reader") == "hello-v1|t0k3n", 10, "the pod to print the mounted values"
    )
    token = Path(f"/proc/{pid}/cwd/secrets/token")
    assert oct(os.stat(token).st_mode & 0o777) == oct(0o400)

    pods.apply(configmap("app", {"greeting": "hello-v2"}))
    wait_until(lambda: last_line(pods, "reader") == "hello-v2|t0k3n", 5, "the updated value in the file")
    after = pods.get("reader")
    assert after is not None and main_pid(after) == pid
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0


def test_subpath_escaping_through_planted_symlink_is_refused(pods: Pods) -> None:
    pods.apply(
        pod_doc(
            "escape",
            ["sh", "-c", "exec sleep 3600"],
            volumes=[{"name": "scratch", "emptyDir": {}}],
            initContainers=[
                {
                    "name": "plant",
                    "image": "busybox",
                    "command": ["sh", "-c", 'ln -s /etc "$CORRAL_VOLUMES/scratch/escape"'],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            container={"volumeMounts": [{"name": "scratch", "mountPath": "/p", "subPath": "escape/passwd"}]},
        )
    )
    pods.wait(
        "escape",
        lambda p: waiting_reason(p) == "CreateContainerConfigError",
        20,
        "CreateContainerConfigError for the escaping subPath",
    )
    messages = [str(e.get("message", "")) for e in pods.events("escape")]
    assert any("outside the volume" in m for m in messages), messages


def test_missing_configmap_waits_then_starts(pods: Pods) -> None:
    pods.apply(
        pod_doc(
            "waiter",
            ["sh", "-c", 'cat "$CORRAL_VOLUMES/cfg/k"; exec sleep 3600'],
            volumes=[{"name": "cfg", "configMap": {"name": "later"}}],
            container={"volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]},
        )
    )
    pods.wait(
        "waiter",
        lambda p: waiting_reason(p) == "CreateContainerConfigError",
        20,
        "CreateContainerConfigError",
    )
    messages = [str(e.get("message", "")) for e in pods.events("waiter")]
    assert any('configmap "later" not found' in m for m in messages), messages
    pods.apply(configmap("later", {"k": "now-here"}))
    pods.wait_running("waiter", timeout=20)
    wait_until(lambda: last_line(pods, "waiter") == "now-here", 10, "the file content in the log")
