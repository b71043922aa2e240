"""kubectl 1.32's typed-client commands POST protobuf with no JSON fallback; Corral decodes them (§5.2)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import Kubectl

pytestmark = pytest.mark.compat


def _get(k: Kubectl, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(k.run("get", *args, "-o", "json").stdout)
    return out


def test_create_namespace(kubectl: Kubectl) -> None:
    name = f"{kubectl.namespace}-extra"
    try:
        out = kubectl.run("create", "namespace", name, namespace=False).stdout
        assert f"namespace/{name} created" in out
        ns = _get(kubectl, "namespace", name)
        assert ns["metadata"]["name"] == name and ns["status"]["phase"] == "Active"
    finally:
        kubectl.run("delete", "namespace", name, "--wait=false", namespace=False, check=False)


def test_create_configmap_from_literals(kubectl: Kubectl) -> None:
    out = kubectl.run("create", "configmap", "cfg", "--from-literal=k=v", "--from-literal=empty=").stdout
    assert "configmap/cfg created" in out
    cm = _get(kubectl, "configmap", "cfg")
    assert cm["data"] == {"k": "v", "empty": ""}
    assert cm["metadata"]["namespace"] == kubectl.namespace


def test_create_secret_generic(kubectl: Kubectl) -> None:
    kubectl.run("create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=pw=p@ss")
    secret = _get(kubectl, "secret", "creds")
    assert secret["type"] == "Opaque"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "user": "admin",
        "pw": "p@ss",
    }


def test_create_deployment_with_command(kubectl: Kubectl) -> None:
    out = kubectl.run("create", "deployment", "sleeper", "--image=busybox", "--", "sleep", "10").stdout
    assert "deployment.apps/sleeper created" in out
    deploy = _get(kubectl, "deployment", "sleeper")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["selector"] == {"matchLabels": {"app": "sleeper"}}
    container = spec["template"]["spec"]["containers"][0]
    assert container["name"] == "busybox" and container["image"] == "busybox"
    assert container["command"] == ["sleep", "10"]
    assert spec["strategy"]["type"] == "RollingUpdate"  # the server's defaulting ran on the decoded body


def test_create_deployment_with_zero_replicas_keeps_the_zero(kubectl: Kubectl) -> None:
    kubectl.run("create", "deployment", "idle", "--image=busybox", "--replicas=0")
    assert _get(kubectl, "deployment", "idle")["spec"]["replicas"] == 0


def test_create_service_clusterip(kubectl: Kubectl) -> None:
    out = kubectl.run("create", "service", "clusterip", "s", "--tcp=80:8080").stdout
    assert "service/s created" in out
    svc = _get(kubectl, "service", "s")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert svc["spec"]["selector"] == {"app": "s"}
    assert svc["spec"]["clusterIP"].startswith("127.")


def test_create_job_and_job_from_cronjob(kubectl: Kubectl) -> None:
    kubectl.run("create", "job", "once", "--image=busybox", "--", "echo", "hi")
    job = _get(kubectl, "job", "once")
    pod_spec = job["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["containers"][0]["command"] == ["echo", "hi"]

    kubectl.run("create", "cronjob", "nightly", "--image=busybox", "--schedule=0 3 * * *", "--", "echo", "hi")
    cronjob = _get(kubectl, "cronjob", "nightly")
    assert cronjob["spec"]["schedule"] == "0 3 * * *"
    out = kubectl.run("create", "job", "manual", "--from=cronjob/nightly").stdout
    assert "job.batch/manual created" in out
    manual = _get(kubectl, "job", "manual")
    assert manual["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = manual["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CronJob", "nightly", cronjob["metadata"]["uid"])
    assert manual["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]


def test_autoscale_deployment(kubectl: Kubectl) -> None:
    kubectl.run("create", "deployment", "web", "--image=busybox", "--replicas=0")
    out = kubectl.run("autoscale", "deploy/web", "--min=1", "--max=3", "--cpu-percent=50").stdout
    assert "horizontalpodautoscaler.autoscaling/web autoscaled" in out
    v1 = _get(kubectl, "horizontalpodautoscalers.v1.autoscaling", "web")
    assert v1["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    assert (v1["spec"]["minReplicas"], v1["spec"]["maxReplicas"]) == (1, 3)
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50


def test_create_serviceaccount(kubectl: Kubectl) -> None:
    assert "serviceaccount/robot created" in kubectl.run("create", "serviceaccount", "robot").stdout
    assert _get(kubectl, "serviceaccount", "robot")["metadata"]["name"] == "robot"


def test_server_dry_run_is_not_stored(kubectl: Kubectl) -> None:
    out = kubectl.run(
        "create", "configmap", "ghost", "--from-literal=a=b", "--dry-run=server", "-o", "json"
    ).stdout
    assert json.loads(out)["data"] == {"a": "b"}
    missing = kubectl.run("get", "configmap", "ghost", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_invalid_protobuf_object_gets_field_errors(kubectl: Kubectl) -> None:
    result = kubectl.run("create", "configmap", "Bad_Name", "--from-literal=a=b", check=False)
    assert result.returncode != 0
    assert "Invalid" in result.stderr and "Bad_Name" in result.stderr
