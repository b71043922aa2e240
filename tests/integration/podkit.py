"""Helpers for the pod tests against a real server: read pods with the official ``kubernetes`` client, wait
for conditions with a deadline (never a fixed sleep), and look at the pods' processes in /proc.

Every pid a test learns through a pod's ``containerID`` is remembered, so teardown can check that deleting the
pods really stopped them.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from tests.conftest import Kubectl

JSON = dict[str, Any]
POLL = 0.02


def api_client(kubeconfig: Path) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.ApiClient(cfg)


# ------------------------------------------------------------------------------------------------ /proc


def proc_state(pid: int) -> str | None:
    """The process state letter (``R``, ``S``, ``Z``…), or None when the pid does not exist."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def alive(pid: int) -> bool:
    """Running (a zombie has stopped running; only its parent's wait is missing)."""
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def pgid_of(pid: int) -> int | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[2])


def group_members(pgid: int) -> list[int]:
    """Live processes of one process group (a container's wrapper, main process and its children)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit() and pgid_of(int(name)) == pgid and alive(int(name)):
            members.append(int(name))
    return members


def cmdline(pid: int) -> list[str]:
    try:
        return [
            a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a
        ]
    except OSError:
        return []


def processes_with_argv(argv: list[str]) -> list[int]:
    """Live processes whose command line is exactly ``argv``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and cmdline(int(name)) == argv and alive(int(name)):
            found.append(int(name))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = POLL) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------ pods


def container_status(pod: JSON, index: int = 0) -> JSON:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[index] if len(statuses) > index else {}


def main_pid(pod: JSON, index: int = 0) -> int | None:
    """The container's main process, from ``containerID: process://<pid>`` while it runs."""
    cs = container_status(pod, index)
    if "running" not in (cs.get("state") or {}):
        return None
    cid = cs.get("containerID") or ""
    return int(cid.removeprefix("process://")) if cid.startswith("process://") else None


def condition(pod: JSON, ctype: str) -> JSON:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return {}


def is_ready(pod: JSON | None) -> bool:
    return pod is not None and condition(pod, "Ready").get("status") == "True"


def waiting_reason(pod: JSON | None, index: int = 0) -> str:
    if pod is None:
        return ""
    return str(((container_status(pod, index).get("state") or {}).get("waiting") or {}).get("reason") or "")


class Pods:
    """One test's namespace, seen through kubectl (to act) and the Python client (to observe quickly)."""

    def __init__(self, kubectl: Kubectl, kubeconfig: Path) -> None:
        self.kubectl = kubectl
        self.ns = kubectl.namespace
        self.api = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.pids: set[int] = set()
        self._node: str | None = None

    def close(self) -> None:
        self.api.close()

    # -- acting (kubectl)

    def apply(self, *docs: JSON) -> float:
        """``kubectl apply`` the documents; returns ``time.monotonic()`` from just before kubectl ran."""
        text = yaml.safe_dump_all(list(docs), sort_keys=False)
        started = time.monotonic()
        self.kubectl.run("apply", "-f", "-", stdin=text)
        return started

    def exec(self, name: str, *argv: str) -> tuple[int, str, str]:
        result = self.kubectl.run("exec", name, "--", *argv, check=False)
        return result.returncode, result.stdout, result.stderr

    # -- observing (Python client)

    def get(self, name: str) -> JSON | None:
        try:
            resp = self.core.read_namespaced_pod(name, self.ns, _preload_content=False)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        pod: JSON = json.loads(resp.data)
        for i in range(len((pod.get("status") or {}).get("containerStatuses") or [])):
            pid = main_pid(pod, i)
            if pid is not None:
                self.pids.add(pid)
        return pod

    def wait(self, name: str, predicate: Callable[[JSON], Any], timeout: float, what: str) -> JSON:
        def check() -> JSON | None:
            pod = self.get(name)
            return pod if pod is not None and predicate(pod) else None

        try:
            pod: JSON = wait_until(check, timeout, f"pod {name}: {what}")
        except AssertionError as exc:
            last = json.dumps((self.get(name) or {}).get("status"))
            raise AssertionError(f"{exc}\nlast seen status: {last}") from None
        return pod

    def wait_running(self, name: str, timeout: float = 10.0) -> JSON:
        return self.wait(name, lambda p: main_pid(p) is not None, timeout, "container running")

    def wait_ready(self, name: str, timeout: float = 10.0) -> JSON:
        return self.wait(name, is_ready, timeout, "Ready")

    def events(self, name: str | None = None) -> list[JSON]:
        resp = self.core.list_namespaced_event(self.ns, _preload_content=False)
        items: list[JSON] = json.loads(resp.data)["items"]
        return [e for e in items if name is None or (e.get("involvedObject") or {}).get("name") == name]

    def node_name(self) -> str:
        if self._node is None:
            nodes = json.loads(self.core.list_node(_preload_content=False).data)["items"]
            assert nodes, "the server has no node"
            self._node = str(nodes[0]["metadata"]["name"])
        return self._node

    # -- cleanup

    def delete_all(self, timeout: float = 15.0) -> None:
        """Force-delete every pod of the namespace and wait until every pid the test saw is gone."""
        self.kubectl.run(
            "delete", "pods", "--all", "--grace-period=0", "--force", "--wait=false", check=False
        )
        wait_until(
            lambda: not [p for p in self.pids if alive(p)],
            timeout,
            f"pod processes to stop: {sorted(p for p in self.pids if alive(p))}",
            interval=0.05,
        )


def pod_doc(
    name: str,
    command: list[str] | None,
    *,
    ports: list[JSON] | None = None,
    env: list[JSON] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> JSON:
    """A one-container Pod (container ``main``); extra keyword arguments go into the pod spec, and
    ``container={...}`` into the container."""
    container: JSON = {"name": "main", "image": "python:3.11"}
    if command is not None:
        container["command"] = command
    if ports:
        container["ports"] = ports
    if env:
        container["env"] = env
    container.update(spec.pop("container", {}))
    meta: JSON = {
        "name": name,
        "annotations": {"corral.dev/restart-backoff-base": "1", **(annotations or {})},
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [container], **spec}}


HTTP_SERVER = ["python3", "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]
