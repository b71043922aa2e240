"""The real kubectl 1.32 against a Corral server process, with the kubeconfig Corral wrote (HTTPS + token)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import Kubectl
from tests.integration.podkit import wait_until

pytestmark = pytest.mark.compat

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"


def _manifest(image: str = "python:3.11") -> str:
    return EXAMPLE.read_text().replace("python:3.11", image)


def _json(k: Kubectl, *args: str) -> dict:  # type: ignore[type-arg]
    return json.loads(k.run(*args, "-o", "json").stdout)


def test_version_reports_minor_32(kubectl: Kubectl) -> None:
    out = kubectl.run("version", "-o", "json", namespace=False).stdout
    server = json.loads(out)["serverVersion"]
    assert server["major"] == "1" and server["minor"] == "32"


def test_api_resources_lists_every_kind(kubectl: Kubectl) -> None:
    out = kubectl.run("api-resources", namespace=False).stdout
    for line in (
        "deployments  ",
        "deploy",
        "apps/v1",
        "horizontalpodautoscalers",
        "autoscaling/v2",
        "leases",
        "coordination.k8s.io/v1",
        "cronjobs",
        "serviceaccounts",
    ):
        assert line.strip() in out
    assert "configmaps" in out and "cm " in out


def _pinned(kubectl: Kubectl, name: str) -> bool:
    template = _json(kubectl, "get", "deploy", name)["spec"]["template"]
    return "corral.dev/config-pins" in (template["metadata"].get("annotations") or {})


def test_apply_create_then_strategic_merge_update(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "-f", "-", stdin=_manifest()).stdout
    assert "configmap/hello-config created" in out
    assert "deployment.apps/hello created" in out
    assert "service/hello created" in out
    again = kubectl.run("apply", "-f", "-", stdin=_manifest()).stdout
    assert "deployment.apps/hello unchanged" in again
    # Corral pins the ConfigMap the template reads (a spec write of its own, docs/config-rollouts.md);
    # wait for it so the generation below counts only kubectl's change.
    wait_until(lambda: _pinned(kubectl, "hello"), 10, "the config pin")
    before = _json(kubectl, "get", "deploy", "hello")["metadata"]["generation"]
    changed = kubectl.run("apply", "-f", "-", stdin=_manifest("python:3.12")).stdout
    assert "deployment.apps/hello configured" in changed
    deploy = _json(kubectl, "get", "deploy", "hello")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "python:3.12"
    # The SMP changed only the image: the rest of the container survives.
    assert container["command"] == ["sh", "-c"] and "http.server" in container["args"][0]
    assert container["ports"][0]["protocol"] == "TCP"
    assert deploy["metadata"]["generation"] == before + 1


def test_get_wide_shows_containers_and_images(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=_manifest())
    out = kubectl.run("get", "deploy", "-o", "wide").stdout
    header, row = out.splitlines()[0].split(), out.splitlines()[1].split()
    assert header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    # READY is readyReplicas/replicas: the deployment controller may already have pods up.
    assert row[0] == "hello" and row[1] in ("0/3", "1/3", "2/3", "3/3") and row[5] == "web"
    assert row[6] == "python:3.11"
    assert row[7] == "app=hello"
    svc = kubectl.run("get", "svc", "hello").stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert svc[1].split()[1] == "NodePort" and svc[1].split()[2].startswith("127.")
    assert re.fullmatch(r"8080:3\d{4}/TCP", svc[1].split()[4]), svc[1]


def test_get_yaml_has_server_fields_and_defaults(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=_manifest())
    doc = yaml.safe_load(kubectl.run("get", "deploy", "hello", "-o", "yaml").stdout)
    meta = doc["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    assert doc["spec"]["strategy"]["type"] == "RollingUpdate"
    assert doc["spec"]["revisionHistoryLimit"] == 10
    pod_spec = doc["spec"]["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Always" and pod_spec["dnsPolicy"] == "ClusterFirst"
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"


def test_server_side_apply_creates_and_updates(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "--server-side", "-f", "-", stdin=_manifest()).stdout
    assert "deployment.apps/hello serverside-applied" in out
    kubectl.run("apply", "--server-side", "-f", "-", stdin=_manifest("python:3.13"))
    deploy = _json(kubectl, "get", "deploy", "hello")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "python:3.13"


def test_get_watch_streams_a_change(kubectl: Kubectl) -> None:
    kubectl.run(
        "create", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w1\ndata:\n  a: b\n"
    )
    watcher = kubectl.popen("get", "cm", "w1", "-w", "--output-watch-events")
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split() == ["EVENT", "NAME", "DATA", "AGE"]
        assert watcher.stdout.readline().split()[:3] == ["ADDED", "w1", "1"]
        kubectl.run("label", "cm", "w1", "changed=yes")
        assert watcher.stdout.readline().split()[:2] == ["MODIFIED", "w1"]
    finally:
        watcher.kill()
        watcher.wait()
        for pipe in (watcher.stdout, watcher.stderr):
            if pipe:
                pipe.close()


def test_label_annotate_and_three_patch_types(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=_manifest())
    assert "labeled" in kubectl.run("label", "deploy", "hello", "tier=fe").stdout
    assert "annotated" in kubectl.run("annotate", "deploy", "hello", "owner=team-a").stdout
    kubectl.run(
        "patch",
        "deploy",
        "hello",
        "-p",
        '{"spec":{"template":{"spec":{"containers":'
        '[{"name":"web","env":[{"name":"MODE","value":"smp"}]}]}}}}',
    )
    kubectl.run("patch", "deploy", "hello", "--type=merge", "-p", '{"spec":{"minReadySeconds":5}}')
    kubectl.run(
        "patch",
        "deploy",
        "hello",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/revisionHistoryLimit","value":4}]',
    )
    deploy = _json(kubectl, "get", "deploy", "hello")
    assert deploy["metadata"]["labels"]["tier"] == "fe"
    assert deploy["metadata"]["annotations"]["owner"] == "team-a"
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "MODE", "value": "smp"}] and container["image"] == "python:3.11"
    assert deploy["spec"]["minReadySeconds"] == 5 and deploy["spec"]["revisionHistoryLimit"] == 4


def test_scale_goes_through_the_scale_subresource(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=_manifest())
    assert "scaled" in kubectl.run("scale", "deploy/hello", "--replicas=5").stdout
    assert _json(kubectl, "get", "deploy", "hello")["spec"]["replicas"] == 5


def test_diff_is_a_dry_run(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=_manifest())
    before = _json(kubectl, "get", "deploy", "hello")
    result = kubectl.run("diff", "-f", "-", stdin=_manifest("python:3.99"), check=False)
    assert result.returncode == 1, result.stderr  # 1 = differences found
    assert "-        image: python:3.11" in result.stdout and "+        image: python:3.99" in result.stdout
    after = _json(kubectl, "get", "deploy", "hello")
    # The deployment controller may write status meanwhile; the spec must not have moved.
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "python:3.11"


def test_create_delete_and_not_found_errors(kubectl: Kubectl) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c1\ndata:\n  k: v\n"
    assert "configmap/c1 created" in kubectl.run("create", "-f", "-", stdin=body).stdout
    dup = kubectl.run("create", "-f", "-", stdin=body, check=False)
    assert dup.returncode != 0 and "Error from server (AlreadyExists)" in dup.stderr
    assert 'configmap "c1" deleted' in kubectl.run("delete", "cm", "c1").stdout
    missing = kubectl.run("get", "cm", "c1", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == 'Error from server (NotFound): configmaps "c1" not found'
    missing = kubectl.run("get", "deploy", "nope", check=False)
    assert missing.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'


def test_strict_validation_rejects_unknown_fields(kubectl: Kubectl) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c2\nbogus: 1\ndata:\n  k: v\n"
    result = kubectl.run("apply", "-f", "-", stdin=body, check=False)
    assert result.returncode != 0
    assert 'unknown field "bogus"' in result.stderr


def test_invalid_object_gets_field_errors(kubectl: Kubectl) -> None:
    body = _manifest().replace("replicas: 3", "replicas: -1")
    result = kubectl.run("apply", "-f", "-", stdin=body, check=False)
    assert result.returncode != 0
    assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in result.stderr


def test_get_all_and_show_labels(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=_manifest())
    out = kubectl.run("get", "all").stdout
    assert "deployment.apps/hello" in out and "service/hello" in out
    labels = kubectl.run("get", "cm", "--show-labels").stdout
    assert "app=hello" in labels


def test_delete_namespace_removes_contents(kubectl: Kubectl, server: object) -> None:
    kubectl.run("apply", "-f", "-", stdin=_manifest())
    kubectl.run("delete", "namespace", kubectl.namespace, namespace=False, timeout=60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        gone = kubectl.run("get", "namespace", kubectl.namespace, namespace=False, check=False)
        if gone.returncode != 0:
            break
        time.sleep(0.2)
    assert "NotFound" in gone.stderr
    assert kubectl.run("get", "cm", "-A", namespace=False).stdout.count(kubectl.namespace) == 0
