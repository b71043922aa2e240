"""The real kubectl 1.32 reading what the endpoints controller writes: Endpoints, EndpointSlices, Ingress.

Runs against the session's Corral server process (agent included), so the pods are real processes whose
readiness the agent reports; each test works in its own namespace.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl

pytestmark = pytest.mark.compat

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"
CORRAL = [sys.executable, "-m", "corral.cli.main"]
HOST_PORT = re.compile(r"^127\.0\.0\.1:\d+$")


def columns(table: str) -> list[dict[str, str]]:
    """Rows of a kubectl table as dicts, split at the header's column starts (cells may be empty)."""
    lines = [line for line in table.splitlines() if line.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def wait_for(check: Any, what: str, within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ready_endpoints(k: Kubectl, name: str) -> list[str]:
    result = k.run("get", "endpoints", name, "-o", "json", check=False)
    if result.returncode != 0:
        return []
    subsets = json.loads(result.stdout).get("subsets") or []
    return [
        f"{a['ip']}:{p['port']}" for s in subsets for p in s.get("ports", []) for a in s.get("addresses", [])
    ]


def test_endpoints_slices_and_describe_follow_the_ready_replicas(
    kubectl: Kubectl, server: ServerProcess
) -> None:
    kubectl.run("apply", "-f", str(EXAMPLE))
    addresses = wait_for(lambda: len(ready_endpoints(kubectl, "hello")) == 3, "three ready endpoints")
    assert addresses
    expected = sorted(ready_endpoints(kubectl, "hello"))
    assert all(HOST_PORT.match(a) for a in expected) and len(set(expected)) == 3

    out = kubectl.run("get", "endpoints", "hello").stdout
    assert out.splitlines()[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    (row,) = columns(out)
    assert row["NAME"] == "hello" and sorted(row["ENDPOINTS"].split(",")) == expected

    out = kubectl.run("get", "endpointslices").stdout
    assert out.splitlines()[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    rows = [r for r in columns(out) if r["NAME"].startswith("hello-")]
    assert len(rows) == 3  # one slice per allocated host port
    assert {r["ADDRESSTYPE"] for r in rows} == {"IPv4"}
    assert {r["ENDPOINTS"] for r in rows} == {"127.0.0.1"}
    assert sorted(f"127.0.0.1:{r['PORTS']}" for r in rows) == expected
    slices = json.loads(
        kubectl.run("get", "endpointslices", "-l", "kubernetes.io/service-name=hello", "-o", "json").stdout
    )
    for item in slices["items"]:
        assert item["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == (
            "endpointslice-controller.k8s.io"
        )
        assert item["endpoints"][0]["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert item["endpoints"][0]["targetRef"]["kind"] == "Pod"

    described = kubectl.run("describe", "svc", "hello").stdout
    (line,) = [line for line in described.splitlines() if line.startswith("Endpoints:")]
    assert sorted(line.split()[1].split(",")) == expected

    # `corral describe svc` prints the same Endpoints line as kubectl.
    corral = subprocess.run(
        [
            *CORRAL,
            "--kubeconfig",
            str(server.kubeconfig),
            "describe",
            "svc",
            "hello",
            "-n",
            kubectl.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert corral.returncode == 0, corral.stderr
    (ours,) = [line for line in corral.stdout.splitlines() if line.startswith("Endpoints:")]
    assert ours.split() == line.split()


INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: {cls}
spec:
  controller: corral.dev/ingress
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  ingressClassName: {cls}
  tls:
    - hosts: [a.example]
  rules:
    - host: a.example
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service:
                name: hello
                port:
                  number: 8080
    - host: b.example
      http:
        paths:
          - path: /api
            pathType: Exact
            backend:
              service:
                name: api
                port:
                  name: http
"""


def test_get_ingress_and_ingressclass_columns(kubectl: Kubectl) -> None:
    cls = f"{kubectl.namespace}-class"
    try:
        out = kubectl.run("apply", "-f", "-", stdin=INGRESS.format(cls=cls)).stdout
        assert f"ingressclass.networking.k8s.io/{cls} created" in out
        assert "ingress.networking.k8s.io/web created" in out
        table = kubectl.run("get", "ing").stdout
        assert table.splitlines()[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
        (row,) = columns(table)
        assert (row["NAME"], row["CLASS"], row["HOSTS"], row["PORTS"]) == (
            "web",
            cls,
            "a.example,b.example",
            "80, 443",
        )
        classes = columns(kubectl.run("get", "ingressclass", cls, namespace=False).stdout)
        assert classes == [
            {
                "NAME": cls,
                "CONTROLLER": "corral.dev/ingress",
                "PARAMETERS": "<none>",
                "AGE": classes[0]["AGE"],
            }
        ]
        resources = kubectl.run("api-resources", "--api-group=networking.k8s.io", namespace=False).stdout
        assert "ingresses" in resources and "ing " in resources and "ingressclasses" in resources
        resources = kubectl.run("api-resources", "--api-group=discovery.k8s.io", namespace=False).stdout
        assert "endpointslices" in resources
    finally:
        kubectl.run("delete", "ingressclass", cls, namespace=False, check=False)


def test_invalid_ingress_gets_field_errors(kubectl: Kubectl) -> None:
    body = INGRESS.format(cls="x").split("---\n", 1)[1].replace("pathType: Exact", "pathType: Regex")
    result = kubectl.run("apply", "-f", "-", stdin=body, check=False)
    assert result.returncode != 0
    assert 'spec.rules[1].http.paths[0].pathType: Unsupported value: "Regex"' in result.stderr
