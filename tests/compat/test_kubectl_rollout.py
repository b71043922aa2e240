"""kubectl 1.32 rollout verbs against Corral's Deployment and ReplicaSet controllers: ``rollout status``,
``history`` (with change-cause and ``--revision``), ``undo`` (previous, ``--to-revision``, skipped, refused
while paused), ``restart``, ``pause``/``resume``, ``scale`` (also through the Python client's scale
subresource), ``wait --for=condition=Available`` and what ``describe`` tells. Pods run ``sleep``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import alive, api_client, wait_until

pytestmark = pytest.mark.compat

JSON = dict[str, Any]


def manifest(replicas: int = 2, **spec: Any) -> str:
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "labels": {"app": "app"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "command": ["sleep", "3600"],
                            "env": [{"name": "ROUND", "value": "1"}],
                        }
                    ],
                },
            },
            **spec,
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def get(k: Kubectl, *what: str) -> JSON:
    return json.loads(k.run("get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def status(k: Kubectl, timeout: int = 60) -> str:
    return k.run("rollout", "status", "deploy/app", f"--timeout={timeout}s", timeout=timeout + 10).stdout


def history(k: Kubectl) -> list[tuple[str, str]]:
    out = k.run("rollout", "history", "deploy/app").stdout
    rows = [line.split(None, 1) for line in out.splitlines()[2:] if line.strip()]
    return [(row[0], row[1].strip() if len(row) > 1 else "") for row in rows]


def processes(k: Kubectl) -> set[int]:
    pids = set()
    for pod in get(k, "pods")["items"]:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            cid = cs.get("containerID") or ""
            if cid.startswith("process://"):
                pids.add(int(cid.removeprefix("process://")))
    return pids


@pytest.fixture
def k(kubectl: Kubectl) -> Iterator[Kubectl]:
    """kubectl in a fresh namespace; afterwards the workloads go and their processes are waited for."""
    seen: set[int] = set()
    try:
        yield kubectl
    finally:
        seen |= processes(kubectl)
        kubectl.run("delete", "deployments,replicasets", "--all", "--wait=false", check=False)
        wait_until(lambda: not get(kubectl, "replicasets")["items"], 30, "replica sets to go")
        seen |= processes(kubectl)
        kubectl.run("delete", "pods", "--all", "--grace-period=0", "--force", "--wait=false", check=False)
        wait_until(lambda: not [p for p in seen if alive(p)], 30, "pod processes to stop", interval=0.1)


def test_rollout_status_waits_for_the_rollout(k: Kubectl) -> None:
    started = time.monotonic()
    k.run("apply", "-f", "-", stdin=manifest(3))
    out = status(k)
    assert out.splitlines()[-1] == 'deployment "app" successfully rolled out'
    assert time.monotonic() - started < 30
    row = k.run("get", "deploy", "app", "--no-headers").stdout.split()
    assert row[:4] == ["app", "3/3", "3", "3"]
    d = get(k, "deploy/app")
    assert d["metadata"]["generation"] == 1  # the controller's writes do not bump generation
    assert d["status"]["observedGeneration"] == 1
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert {c["type"]: (c["status"], c["reason"]) for c in d["status"]["conditions"]} == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }
    [rs] = get(k, "rs")["items"]
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"app-{pod_hash}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "app", "pod-template-hash": pod_hash}
    assert rs["metadata"]["annotations"] == {
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",
        "deployment.kubernetes.io/revision": "1",
    }
    assert k.run("wait", "--for=condition=Available", "deploy/app", "--timeout=10s").returncode == 0
    pods = get(k, "pods")["items"]
    assert len(pods) == 3 and all(p["metadata"]["name"].startswith(f"app-{pod_hash}-") for p in pods)


def test_history_undo_and_restart(k: Kubectl) -> None:
    k.run("apply", "-f", "-", stdin=manifest())
    k.run("annotate", "deploy/app", "kubernetes.io/change-cause=first release")
    status(k)
    k.run("set", "env", "deploy/app", "ROUND=2")
    k.run("annotate", "deploy/app", "kubernetes.io/change-cause=second release", "--overwrite")
    status(k)
    wait_until(
        lambda: history(k) == [("1", "first release"), ("2", "second release")], 15, "change-causes recorded"
    )
    detail = k.run("rollout", "history", "deploy/app", "--revision=1").stdout
    assert "deployment.apps/app with revision #1" in detail
    assert re.search(r"ROUND:\s+1\n", detail) and "kubernetes.io/change-cause: first release" in detail
    missing = k.run("rollout", "history", "deploy/app", "--revision=9", check=False)
    assert missing.returncode != 0 and "unable to find the specified revision" in missing.stderr

    assert (
        "deployment.apps/app rolled back" in k.run("rollout", "undo", "deploy/app", "--to-revision=1").stdout
    )
    status(k)
    # Revision 1's ReplicaSet is reused and renumbered; its change-cause comes back with it.
    assert history(k) == [("2", "second release"), ("3", "first release")]
    rss = get(k, "rs")["items"]
    assert len(rss) == 2
    reused = next(rs for rs in rss if rs["spec"]["replicas"] == 2)
    assert reused["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    env = get(k, "deploy/app")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "ROUND", "value": "1"}]
    skipped = k.run("rollout", "undo", "deploy/app", "--to-revision=3").stdout
    assert "skipped rollback (current template already matches revision 3)" in skipped

    assert "deployment.apps/app restarted" in k.run("rollout", "restart", "deploy/app").stdout
    status(k)
    assert [rev for rev, _ in history(k)] == ["2", "3", "4"]
    pods = get(k, "pods")["items"]
    new_hash = next(rs for rs in get(k, "rs")["items"] if rs["spec"]["replicas"] == 2)["metadata"]["labels"][
        "pod-template-hash"
    ]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 2 and {p["metadata"]["labels"]["pod-template-hash"] for p in live} == {new_hash}
    template = get(k, "deploy/app")["spec"]["template"]
    assert "kubectl.kubernetes.io/restartedAt" in template["metadata"]["annotations"]


def test_scale_through_kubectl_and_the_scale_subresource(k: Kubectl, server: ServerProcess) -> None:
    k.run("apply", "-f", "-", stdin=manifest())
    status(k)
    assert "deployment.apps/app scaled" in k.run("scale", "deploy/app", "--replicas=4").stdout
    status(k)
    assert k.run("get", "deploy", "app", "--no-headers").stdout.split()[1] == "4/4"
    api = api_client(server.kubeconfig)
    try:
        apps = client.AppsV1Api(api)
        scale = apps.read_namespaced_deployment_scale("app", k.namespace)
        assert (scale.spec.replicas, scale.status.replicas, scale.status.selector) == (4, 4, "app=app")
        apps.patch_namespaced_deployment_scale("app", k.namespace, {"spec": {"replicas": 1}})
    finally:
        api.close()
    status(k)
    wait_until(lambda: len(get(k, "pods")["items"]) == 1, 20, "scaled down to one pod")
    [rs] = get(k, "rs")["items"]
    assert rs["spec"]["replicas"] == 1
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "1"
    messages = [e["message"] for e in get(k, "events")["items"] if e["reason"] == "ScalingReplicaSet"]
    name = rs["metadata"]["name"]
    for expected in (
        f"Scaled up replica set {name} from 0 to 2",
        f"Scaled up replica set {name} from 2 to 4",
        f"Scaled down replica set {name} from 4 to 1",
    ):
        assert expected in messages


def test_pause_resume_and_undo_refused_while_paused(k: Kubectl) -> None:
    k.run("apply", "-f", "-", stdin=manifest())
    status(k)
    k.run("set", "env", "deploy/app", "ROUND=2")
    status(k)
    assert "deployment.apps/app paused" in k.run("rollout", "pause", "deploy/app").stdout

    def progressing() -> tuple[str, str]:
        conds = get(k, "deploy/app")["status"]["conditions"]
        c = next(c for c in conds if c["type"] == "Progressing")
        return c["status"], c["reason"]

    wait_until(lambda: progressing() == ("Unknown", "DeploymentPaused"), 10, "the paused condition")
    k.run("set", "env", "deploy/app", "ROUND=3")
    refused = k.run("rollout", "undo", "deploy/app", check=False)
    assert refused.returncode != 0 and "paused" in refused.stderr
    time.sleep(0.5)  # a paused deployment must not roll out: give the controller a chance to misbehave
    assert len(get(k, "rs")["items"]) == 2
    d = get(k, "deploy/app")
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    assert "deployment.apps/app resumed" in k.run("rollout", "resume", "deploy/app").stdout
    status(k)
    assert len(get(k, "rs")["items"]) == 3
    assert progressing() == ("True", "NewReplicaSetAvailable")


def test_describe_tells_the_story(k: Kubectl) -> None:
    k.run("apply", "-f", "-", stdin=manifest())
    status(k)
    k.run("set", "env", "deploy/app", "ROUND=2")
    status(k)
    out = k.run("describe", "deploy/app").stdout
    rss = {
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs for rs in get(k, "rs")["items"]
    }
    old, new = rss["1"]["metadata"]["name"], rss["2"]["metadata"]["name"]
    assert "Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable" in out
    assert f"NewReplicaSet:   {new} (2/2 replicas created)" in out
    assert f"OldReplicaSets:  {old} (0/0 replicas created)" in out
    assert "Available      True    MinimumReplicasAvailable" in out
    assert "Progressing    True    NewReplicaSetAvailable" in out
    assert f"Scaled up replica set {new} from 0 to 1" in out
    assert (
        f"Scaled down replica set {old} from 2 to 1" in out
        or f"Scaled down replica set {old} from 2 to 0" in out
    )
    rs_out = k.run("describe", f"rs/{new}").stdout
    assert "SuccessfulCreate" in rs_out and "Created pod: " in rs_out
    assert "Controlled By:  Deployment/app" in rs_out
    old_out = k.run("describe", f"rs/{old}").stdout
    assert "SuccessfulDelete" in old_out and "Deleted pod: " in old_out
