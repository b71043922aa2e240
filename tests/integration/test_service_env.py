"""Service environment variables in real pods: a real server with its agent, kubectl, and the processes' own
environment read from /proc.

A pod sees the Services of its namespace that existed when its container started (as with the kubelet), with
the container's own ``env`` taking precedence, and ``enableServiceLinks: false`` turning them off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import JSON, Pods, main_pid, pod_doc

pytestmark = pytest.mark.compat

SLEEPER = ["sh", "-c", "exec sleep 3600"]


@pytest.fixture
def pods(kubectl: Kubectl, server: ServerProcess) -> Iterator[Pods]:
    p = Pods(kubectl, server.kubeconfig)
    try:
        yield p
        p.delete_all()
    finally:
        p.close()


def service_doc(name: str, ports: list[JSON], **spec: object) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": ports, **spec},
    }


def cluster_ip(pods: Pods, name: str) -> str:
    resp = pods.core.read_namespaced_service(name, pods.ns, _preload_content=False)
    ip = str(json.loads(resp.data)["spec"]["clusterIP"])
    assert ip.startswith("127."), ip
    return ip


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


def started_env(pods: Pods, name: str) -> dict[str, str]:
    pod = pods.wait_running(name, timeout=20)
    pid = main_pid(pod)
    assert pid is not None
    return environ(pid)


def test_pod_started_after_a_service_sees_its_variables(pods: Pods) -> None:
    pods.apply(
        service_doc(
            "web-app",
            [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "protocol": "TCP"},
            ],
        ),
        service_doc("db", [{"port": 5432, "protocol": "TCP"}]),
        service_doc("peers", [{"name": "gossip", "port": 7946}], clusterIP="None"),
    )
    web_ip, db_ip = cluster_ip(pods, "web-app"), cluster_ip(pods, "db")
    pods.apply(
        pod_doc(
            "client",
            SLEEPER,
            env=[
                {"name": "DB_SERVICE_PORT", "value": "override"},
                {"name": "WEB_URL", "value": "http://$(WEB_APP_SERVICE_HOST):$(WEB_APP_SERVICE_PORT_HTTP)"},
            ],
        )
    )
    env = started_env(pods, "client")
    expected = {
        "WEB_APP_SERVICE_HOST": web_ip,
        "WEB_APP_SERVICE_PORT": "80",
        "WEB_APP_SERVICE_PORT_HTTP": "80",
        "WEB_APP_SERVICE_PORT_METRICS": "9090",
        "WEB_APP_PORT": f"tcp://{web_ip}:80",
        "WEB_APP_PORT_80_TCP": f"tcp://{web_ip}:80",
        "WEB_APP_PORT_80_TCP_PROTO": "tcp",
        "WEB_APP_PORT_80_TCP_PORT": "80",
        "WEB_APP_PORT_80_TCP_ADDR": web_ip,
        "WEB_APP_PORT_9090_TCP": f"tcp://{web_ip}:9090",
        "WEB_APP_PORT_9090_TCP_PROTO": "tcp",
        "WEB_APP_PORT_9090_TCP_PORT": "9090",
        "WEB_APP_PORT_9090_TCP_ADDR": web_ip,
        "DB_SERVICE_HOST": db_ip,
        "DB_SERVICE_PORT": "override",  # the container's own env wins
        "DB_PORT": f"tcp://{db_ip}:5432",
        "DB_PORT_5432_TCP_ADDR": db_ip,
        "WEB_URL": f"http://{web_ip}:80",  # $(VAR) expansion sees the service variables
    }
    assert {k: env.get(k) for k in expected} == expected
    assert not [k for k in env if k.startswith("PEERS_")]  # headless: no variables

    # A Service created later is not seen by the running pod, but by a pod started after it.
    pods.apply(service_doc("late", [{"port": 81, "protocol": "TCP"}]))
    late_ip = cluster_ip(pods, "late")
    assert "LATE_SERVICE_HOST" not in environ(main_pid(pods.get("client") or {}) or 0)
    pods.apply(pod_doc("second", SLEEPER))
    second = started_env(pods, "second")
    assert second["LATE_SERVICE_HOST"] == late_ip
    assert second["WEB_APP_SERVICE_HOST"] == web_ip


def test_enable_service_links_false(pods: Pods) -> None:
    pods.apply(service_doc("quiet", [{"port": 82, "protocol": "TCP"}]))
    cluster_ip(pods, "quiet")
    pods.apply(pod_doc("nolinks", SLEEPER, enableServiceLinks=False), pod_doc("links", SLEEPER))
    assert "QUIET_SERVICE_HOST" not in started_env(pods, "nolinks")
    assert "QUIET_SERVICE_HOST" in started_env(pods, "links")
