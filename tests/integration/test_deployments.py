"""Deployments and ReplicaSets against a real server: real agent, real processes, real kubectl.

* A rolling update of a 4-replica HTTP deployment (v1 → v2, then ``rollout undo``), with a watcher on the
  namespace's pods proving that Ready pods never drop below replicas - maxUnavailable and live pods never
  exceed replicas + maxSurge; at the end every pod answers HTTP with the new version.
* A release whose pods never become Ready stops, keeps the old pods serving and reports
  ProgressDeadlineExceeded; ``rollout undo`` recovers.
* Conformance-style: orphans matching a ReplicaSet are adopted, pods relabelled out of it are released (not
  deleted) and replaced, scale-down removes not-ready pods first, and old ReplicaSets beyond
  ``revisionHistoryLimit`` are deleted.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from corral.testing.process import ServerProcess
from corral.util.clock import parse_rfc3339
from tests.conftest import Kubectl
from tests.integration.podkit import alive, api_client, wait_until

pytestmark = pytest.mark.slow

JSON = dict[str, Any]
HTTP_COMMAND = [
    "sh",
    "-c",
    "echo $VERSION > index.html && exec python3 -m http.server $PORT --bind 127.0.0.1",
]


def http_deployment(name: str, version: str, replicas: int = 4, **spec: Any) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "web",
                            "image": "python:3",
                            "command": HTTP_COMMAND,
                            "env": [{"name": "VERSION", "value": version}],
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
            **spec,
        },
    }


def sleeper(name: str, labels: dict[str, str] | None = None, owner: JSON | None = None) -> JSON:
    meta: JSON = {"name": name, "labels": labels or {"app": name}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


def is_live(pod: JSON) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def is_ready(pod: JSON) -> bool:
    return is_live(pod) and any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def pids_of(pod: JSON) -> set[int]:
    out = set()
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        cid = cs.get("containerID") or ""
        if cid.startswith("process://"):
            out.add(int(cid.removeprefix("process://")))
    return out


class PodCensus:
    """Follows a namespace's pods through one watch and keeps the extremes of live and Ready counts.

    Watch events arrive in resourceVersion order, each a state the store really had, so the extremes are
    the ones the cluster went through — not samples of a poll.
    """

    def __init__(self, core: client.CoreV1Api, namespace: str, selector: str) -> None:
        listed = json.loads(
            core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False).data
        )
        self.pods: dict[str, JSON] = {p["metadata"]["name"]: p for p in listed["items"]}
        self.pids: set[int] = set()
        self.max_live = self.live()
        self.min_ready = self.ready()
        self.events = 0
        self.error: BaseException | None = None
        self._response = core.list_namespaced_pod(
            namespace,
            label_selector=selector,
            watch=True,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=600,
            _preload_content=False,
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def live(self) -> int:
        return sum(1 for p in self.pods.values() if is_live(p))

    def ready(self) -> int:
        return sum(1 for p in self.pods.values() if is_ready(p))

    def _run(self) -> None:
        buffer = b""
        try:
            for chunk in self._response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self._apply(json.loads(line))
        except Exception as exc:
            if not self._stop.is_set():
                self.error = exc

    def _apply(self, event: JSON) -> None:
        obj = event["object"]
        if event["type"] in ("BOOKMARK", "ERROR"):
            return
        with self._lock:
            name = obj["metadata"]["name"]
            if event["type"] == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = obj
                self.pids |= pids_of(obj)
            self.events += 1
            self.max_live = max(self.max_live, self.live())
            self.min_ready = min(self.min_ready, self.ready())

    def reset(self) -> None:
        with self._lock:
            self.max_live, self.min_ready = self.live(), self.ready()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._response.shutdown()
        with contextlib.suppress(Exception):
            self._response.release_conn()
        self._thread.join(5)
        assert self.error is None, f"the pod watch failed: {self.error!r}"


@pytest.fixture
def api(server: ServerProcess) -> Iterator[client.ApiClient]:
    c = api_client(server.kubeconfig)
    yield c
    c.close()


def apply(kubectl: Kubectl, *docs: JSON) -> None:
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs), sort_keys=False))


def get(kubectl: Kubectl, *what: str) -> JSON:
    return json.loads(kubectl.run("get", *what, "-o", "json").stdout)  # type: ignore[no-any-return]


def serve_bodies(pods: list[JSON]) -> list[str]:
    bodies = []
    for pod in pods:
        ports = json.loads(pod["metadata"]["annotations"]["corral.dev/ports"])
        port = ports["web/8080/TCP"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
            bodies.append(resp.read().decode().strip())
    return bodies


def live_pods(kubectl: Kubectl, selector: str) -> list[JSON]:
    return [p for p in get(kubectl, "pods", "-l", selector)["items"] if is_live(p)]


def cleanup(kubectl: Kubectl, pids: set[int]) -> None:
    """Delete the namespace's workloads and wait until every process a test saw has exited."""
    kubectl.run("delete", "deployments,replicasets", "--all", "--wait=false", check=False)
    wait_until(lambda: not get(kubectl, "replicasets")["items"], 30, "replica sets to go")
    kubectl.run("delete", "pods", "--all", "--grace-period=0", "--force", "--wait=false", check=False)
    wait_until(
        lambda: not [p for p in pids if alive(p)], 30, f"pod processes to stop: {sorted(pids)}", interval=0.1
    )


def rollout_status(kubectl: Kubectl, name: str, timeout: int = 90) -> float:
    started = time.monotonic()
    kubectl.run("rollout", "status", f"deploy/{name}", f"--timeout={timeout}s", timeout=timeout + 10)
    return time.monotonic() - started


# ------------------------------------------------------------------------------------------------ tests


def test_rolling_update_and_undo_keep_bounds_and_serve(kubectl: Kubectl, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    census = PodCensus(core, kubectl.namespace, "app=web")
    try:
        apply(kubectl, http_deployment("web", "v1"))
        rollout_status(kubectl, "web")
        pods = live_pods(kubectl, "app=web")
        assert len(pods) == 4 and serve_bodies(pods) == ["v1"] * 4

        census.reset()
        started = time.monotonic()
        kubectl.run("set", "env", "deploy/web", "VERSION=v2")
        rollout_status(kubectl, "web")
        elapsed = time.monotonic() - started
        # The watch may trail kubectl by a few events: let it settle on 4 live, 4 Ready.
        wait_until(lambda: census.live() == 4 and census.ready() == 4, 15, "the census to settle")
        print(
            f"\n4-replica rolling update v1 → v2: {elapsed:.2f} s ({census.events} pod events, "
            f"at most {census.max_live} live pods, at least {census.min_ready} Ready)"
        )
        assert census.max_live <= 5, f"{census.max_live} live pods > replicas + maxSurge"
        assert census.min_ready >= 3, f"{census.min_ready} Ready pods < replicas - maxUnavailable"
        pods = live_pods(kubectl, "app=web")
        assert len(pods) == 4 and serve_bodies(pods) == ["v2"] * 4

        census.reset()
        started = time.monotonic()
        kubectl.run("rollout", "undo", "deploy/web")
        rollout_status(kubectl, "web")
        elapsed = time.monotonic() - started
        wait_until(lambda: census.live() == 4 and census.ready() == 4, 15, "the census to settle")
        print(
            f"rollout undo v2 → v1: {elapsed:.2f} s (at most {census.max_live} live, "
            f"at least {census.min_ready} Ready)"
        )
        assert census.max_live <= 5 and census.min_ready >= 3, (census.max_live, census.min_ready)
        pods = live_pods(kubectl, "app=web")
        assert len(pods) == 4 and serve_bodies(pods) == ["v1"] * 4

        # The undo reused the first ReplicaSet (renumbered), it did not make a third one.
        rss = get(kubectl, "replicasets", "-l", "app=web")["items"]
        assert len(rss) == 2
        revisions = {rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: rs for rs in rss}
        assert set(revisions) == {"2", "3"}
        assert revisions["3"]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
        assert revisions["3"]["spec"]["replicas"] == 4 and revisions["2"]["spec"]["replicas"] == 0
        assert {p["metadata"]["labels"]["pod-template-hash"] for p in pods} == {
            revisions["3"]["metadata"]["labels"]["pod-template-hash"]
        }
    finally:
        census.stop()
        cleanup(kubectl, census.pids)


def test_release_that_never_gets_ready_reports_deadline_and_undo_recovers(
    kubectl: Kubectl, api: client.ApiClient
) -> None:
    core = client.CoreV1Api(api)
    census = PodCensus(core, kubectl.namespace, "app=stuck")
    try:
        apply(kubectl, http_deployment("stuck", "v1", replicas=3, progressDeadlineSeconds=5))
        rollout_status(kubectl, "stuck")
        census.reset()
        broken = http_deployment("stuck", "v2", replicas=3, progressDeadlineSeconds=5)
        broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = {
            "exec": {"command": ["false"]},
            "periodSeconds": 1,
        }
        apply(kubectl, broken)

        def deadline_exceeded() -> JSON | None:
            d = get(kubectl, "deploy/stuck")
            for c in d.get("status", {}).get("conditions") or []:
                if c["type"] == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
                    return d
            return None

        d = wait_until(deadline_exceeded, 40, "ProgressDeadlineExceeded", interval=0.25)
        progressing = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
        assert progressing["status"] == "False"
        assert progressing["message"].endswith("has timed out progressing.")
        result = kubectl.run("rollout", "status", "deploy/stuck", "--timeout=10s", check=False)
        assert result.returncode != 0
        assert 'deployment "stuck" exceeded its progress deadline' in result.stderr
        # The old pods keep serving: 3 - maxUnavailable(1) of them at least, all answering v1.
        assert census.min_ready >= 2
        old = [p for p in live_pods(kubectl, "app=stuck") if is_ready(p)]
        assert len(old) >= 2 and set(serve_bodies(old)) == {"v1"}
        assert d["status"].get("updatedReplicas", 0) >= 1 and d["status"]["availableReplicas"] >= 2
        events = kubectl.run("describe", "deploy/stuck").stdout
        assert "ScalingReplicaSet" in events

        kubectl.run("rollout", "undo", "deploy/stuck")
        rollout_status(kubectl, "stuck")
        d = get(kubectl, "deploy/stuck")
        reasons = {c["type"]: c["reason"] for c in d["status"]["conditions"]}
        assert reasons == {"Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
        pods = live_pods(kubectl, "app=stuck")
        assert len(pods) == 3 and serve_bodies(pods) == ["v1"] * 3
    finally:
        census.stop()
        cleanup(kubectl, census.pids)


def owner_uids(pod: JSON) -> list[str]:
    return [r["uid"] for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]


def test_replica_set_adopts_releases_and_replaces(kubectl: Kubectl, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    census = PodCensus(core, kubectl.namespace, "")
    try:
        apply(kubectl, sleeper("orphan-a", {"app": "pets"}), sleeper("orphan-b", {"app": "pets"}))
        rs_doc = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "pets"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "pets"}},
                "template": sleeper("x", {"app": "pets"}) | {"metadata": {"labels": {"app": "pets"}}},
            },
        }
        del rs_doc["spec"]["template"]["apiVersion"], rs_doc["spec"]["template"]["kind"]
        apply(kubectl, rs_doc)
        rs_uid = get(kubectl, "rs/pets")["metadata"]["uid"]

        def settled(count: int) -> list[JSON] | None:
            pods = [p for p in live_pods(kubectl, "app=pets") if owner_uids(p) == [rs_uid]]
            rs = get(kubectl, "rs/pets")
            if len(pods) == count and rs["status"].get("readyReplicas") == count:
                return pods
            return None

        pods = wait_until(lambda: settled(3), 30, "3 owned Ready pods", interval=0.2)
        names = {p["metadata"]["name"] for p in pods}
        assert {"orphan-a", "orphan-b"} <= names  # adopted, not replaced
        [created] = names - {"orphan-a", "orphan-b"}
        assert created.startswith("pets-")
        ref = next(r for r in pods[0]["metadata"]["ownerReferences"] if r.get("controller"))
        assert ref == {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "pets",
            "uid": rs_uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        status = get(kubectl, "rs/pets")["status"]
        assert status["replicas"] == 3 and status["fullyLabeledReplicas"] == 3
        assert status["availableReplicas"] == 3 and status["observedGeneration"] == 1

        # Relabelled out of the selector: released (the reference goes, the pod stays) and replaced.
        kubectl.run("label", "pod", "orphan-a", "app=debug", "--overwrite")
        wait_until(lambda: not owner_uids(get(kubectl, "pod/orphan-a")), 15, "orphan-a released")
        pods = wait_until(lambda: settled(3), 30, "a replacement", interval=0.2)
        assert "orphan-a" not in {p["metadata"]["name"] for p in pods}
        assert is_live(get(kubectl, "pod/orphan-a"))

        # And relabelled back: adopted again, which makes one pod too many, and one goes. Which one is
        # unit-tested; here the pods may all have started within one second (timestamps have second
        # precision), so orphan-a itself may be the one: adopted, then deleted.
        kubectl.run("label", "pod", "orphan-a", "app=pets", "--overwrite")

        def readopted() -> bool:
            pods = settled(3)
            if not pods:
                return False
            if "orphan-a" in {p["metadata"]["name"] for p in pods}:
                return True
            return any(
                e["reason"] == "SuccessfulDelete" and e["message"] == "Deleted pod: orphan-a"
                for e in get(kubectl, "events")["items"]
            )

        wait_until(readopted, 30, "orphan-a adopted again", interval=0.2)
        assert len(live_pods(kubectl, "app=pets")) == 3

        kubectl.run("scale", "rs/pets", "--replicas=1")
        wait_until(lambda: settled(1), 30, "scaled down to 1", interval=0.2)
        events = {(e["reason"], e["involvedObject"]["name"]) for e in get(kubectl, "events")["items"]}
        assert ("SuccessfulCreate", "pets") in events and ("SuccessfulDelete", "pets") in events
    finally:
        census.stop()
        cleanup(kubectl, census.pids)


def test_old_replica_sets_beyond_history_limit_are_removed(kubectl: Kubectl, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    census = PodCensus(core, kubectl.namespace, "app=hist")
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "hist"},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": {"app": "hist"}},
            "template": sleeper("x", {"app": "hist"}) | {"metadata": {"labels": {"app": "hist"}}},
        },
    }
    del doc["spec"]["template"]["apiVersion"], doc["spec"]["template"]["kind"]
    try:
        apply(kubectl, doc)
        rollout_status(kubectl, "hist")
        for i in range(3):
            kubectl.run("set", "env", "deploy/hist", f"ROUND={i}")
            rollout_status(kubectl, "hist")

        def history() -> list[str] | None:
            rss = get(kubectl, "replicasets", "-l", "app=hist")["items"]
            revs = sorted(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in rss)
            return revs if len(revs) == 2 else None

        assert wait_until(history, 20, "old ReplicaSets cleaned up", interval=0.2) == ["3", "4"]
        out = kubectl.run("rollout", "history", "deploy/hist").stdout
        assert [line.split()[0] for line in out.splitlines()[2:] if line.strip()] == ["3", "4"]
    finally:
        census.stop()
        cleanup(kubectl, census.pids)


def sleeper_deployment(name: str, replicas: int, **spec: Any) -> JSON:
    template = sleeper("x", {"app": name})
    del template["apiVersion"], template["kind"]
    template["metadata"] = {"labels": {"app": name}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template,
            **spec,
        },
    }


def test_min_ready_seconds_delays_availability(kubectl: Kubectl, api: client.ApiClient) -> None:
    census = PodCensus(client.CoreV1Api(api), kubectl.namespace, "app=slow")
    try:
        apply(kubectl, sleeper_deployment("slow", 1, minReadySeconds=2))
        rollout_status(kubectl, "slow")
        [pod] = live_pods(kubectl, "app=slow")
        ready_at = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
        d = get(kubectl, "deploy/slow")
        available = next(c for c in d["status"]["conditions"] if c["type"] == "Available")
        assert available["status"] == "True"
        gap = parse_rfc3339(available["lastTransitionTime"]) - parse_rfc3339(ready_at)
        assert gap.total_seconds() >= 2, (ready_at, available)
        rs = get(kubectl, "replicasets", "-l", "app=slow")["items"][0]
        assert rs["spec"]["minReadySeconds"] == 2 and rs["status"]["availableReplicas"] == 1
    finally:
        census.stop()
        cleanup(kubectl, census.pids)


def test_recreate_never_runs_old_and_new_pods_together(kubectl: Kubectl, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    apply(kubectl, sleeper_deployment("re", 2, strategy={"type": "Recreate"}))
    rollout_status(kubectl, "re")
    census = PodCensus(core, kubectl.namespace, "app=re")
    mixed: list[set[str]] = []
    original = census._apply

    def watch_templates(event: JSON) -> None:
        original(event)
        running = {
            p["metadata"]["labels"]["pod-template-hash"]
            for p in census.pods.values()
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        }
        if len(running) > 1:
            mixed.append(running)

    census._apply = watch_templates  # type: ignore[method-assign]
    try:
        kubectl.run("set", "env", "deploy/re", "ROUND=2")
        rollout_status(kubectl, "re")
        wait_until(lambda: census.ready() == 2, 15, "the census to settle")
        assert not mixed, f"old and new pods ran together: {mixed[:3]}"
        hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in live_pods(kubectl, "app=re")}
        assert len(hashes) == 1
        out = kubectl.run("describe", "deploy/re").stdout
        assert re.search(r"^StrategyType:\s+Recreate$", out, re.M) and "Scaled down replica set" in out
    finally:
        census.stop()
        cleanup(kubectl, census.pids)
