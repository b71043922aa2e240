"""The README's demo, applied as the quickstart applies it (``examples/``), must keep working: hello's three
replicas answer through their Service with the ConfigMap's greeting, a ConfigMap change rolls them out, its
HPA reports a metric, and sleepy sleeps at zero and wakes on a request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Kubectl
from tests.integration.loadgen import http_get
from tests.integration.podkit import wait_until

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def get(kubectl: Kubectl, *what: str) -> dict[str, object]:
    return dict(json.loads(kubectl.run("get", *what, "-o", "json").stdout))


def answers(ip: str, port: int) -> str:
    try:
        return http_get(ip, port, timeout=5)
    except OSError:
        return ""


def ready_endpoints(kubectl: Kubectl, name: str) -> int:
    endpoints = get(kubectl, "endpoints", name)
    subsets = endpoints.get("subsets") or []
    assert isinstance(subsets, list)
    return sum(len(s.get("addresses") or []) for s in subsets)


def test_the_quickstart_examples_work(kubectl: Kubectl) -> None:
    try:
        kubectl.run("apply", "-f", str(EXAMPLES))
        hello = get(kubectl, "service", "hello")["spec"]
        assert isinstance(hello, dict)
        wait_until(lambda: ready_endpoints(kubectl, "hello") == 3, 60, "hello's 3 replicas ready")
        body = wait_until(lambda: answers(hello["clusterIP"], 8080), 30, "hello answering")
        assert body.startswith("Hello from Corral from hello-")

        kubectl.run("patch", "configmap", "hello-config", "-p", '{"data":{"GREETING":"Hi"}}')
        wait_until(
            lambda: answers(hello["clusterIP"], 8080).startswith("Hi from hello-"), 60, "the new greeting"
        )
        hpa = wait_until(
            lambda: (get(kubectl, "hpa", "hello").get("status") or {}).get("currentMetrics"), 60, "hello's HPA"
        )
        assert hpa

        sleepy = get(kubectl, "service", "sleepy")["spec"]
        assert isinstance(sleepy, dict)
        kubectl.run("annotate", "--overwrite", "hpa", "sleepy", "corral.dev/scale-to-zero-idle-seconds=2")
        wait_until(lambda: not get(kubectl, "pods", "-l", "app=sleepy")["items"], 90, "sleepy at zero")
        assert http_get(sleepy["clusterIP"], 8081, timeout=10).startswith("awake: sleepy-")
        # Woken once, not flapping: one wake-up and one sleep so far.
        events = get(kubectl, "events", "--field-selector", "involvedObject.name=sleepy,reason=SuccessfulRescale")
        counts = {e["message"]: e.get("count", 1) for e in events["items"]}  # type: ignore[union-attr]
        assert counts.get("New size: 1; reason: traffic arrived while scaled to zero") == 1, counts
    finally:
        kubectl.run("delete", "-f", str(EXAMPLES), "--wait=false", check=False)
