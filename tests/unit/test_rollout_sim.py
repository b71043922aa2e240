"""Property tests: a simulated cluster driven only by the pure planners (Deployment and ReplicaSet).

The simulation interleaves, in any order Hypothesis picks, one Deployment sync, one ReplicaSet sync (whose
status lags its own actions by one sync, as upstream's does), a pod becoming Ready, a terminating pod going
away, and template changes (a new release mid-rollout). Properties:

* a RollingUpdate never raises the number of pods that are not terminating above replicas + maxSurge, and
  never lowers the number of Ready pods below replicas - maxUnavailable;
* a Recreate never has a pod of the new template while an old pod still runs;
* from any state reached that way, and also after scaling mid-rollout, fair scheduling always ends with all
  replicas new, Ready and available, old ReplicaSets at 0, and the Deployment complete.
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.controllers.replicaset import plan_replica_set, pod_from_template, replica_set_status
from corral.controllers.rollout import (
    PodCounts,
    deployment_complete,
    equal_ignore_hash,
    is_pod_active,
    is_pod_ready,
    max_surge,
    max_unavailable,
    plan_deployment,
)
from corral.util.clock import rfc3339

JSON = dict[str, Any]
START = datetime(2026, 1, 1, tzinfo=UTC)


def deployment(replicas: int, surge: Any, unavailable: Any, strategy: str = "RollingUpdate") -> JSON:
    spec: JSON = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        },
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
        "strategy": {"type": strategy},
    }
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
        "spec": spec,
        "status": {},
    }


class Cluster:
    """Just enough of an API server for the planners: objects by name, uids, generations, a clock."""

    def __init__(self, d: JSON) -> None:
        self.d = d
        self.rss: dict[str, JSON] = {}
        self.pods: dict[str, JSON] = {}
        self.now = START
        self._ids = itertools.count(1)
        self.version = 1

    # -- helpers

    def tick(self) -> None:
        self.now += timedelta(seconds=1)

    def live_pods(self) -> list[JSON]:
        return [p for p in self.pods.values() if is_pod_active(p)]

    def ready_pods(self) -> list[JSON]:
        return [p for p in self.live_pods() if is_pod_ready(p)]

    def pods_of_template(self, template: JSON) -> list[JSON]:
        return [
            p
            for p in self.pods.values()
            if equal_ignore_hash(
                {"metadata": {"labels": p["metadata"]["labels"]}, "spec": p["spec"]},
                {"metadata": {"labels": template["metadata"]["labels"]}, "spec": template["spec"]},
            )
        ]

    def pod_counts(self) -> dict[str, PodCounts]:
        counts: dict[str, PodCounts] = {}
        for pod in self.pods.values():
            uid = pod["metadata"]["ownerReferences"][0]["uid"]
            seen = counts.get(uid, PodCounts())
            counts[uid] = PodCounts(seen.active + is_pod_active(pod), seen.running + 1)
        return counts

    # -- actors

    def sync_deployment(self) -> None:
        plan = plan_deployment(self.d, list(self.rss.values()), self.now, self.pod_counts())
        assert not plan.adopt and not plan.release
        for write in plan.writes:
            rs = copy.deepcopy(write.rs)
            name = rs["metadata"]["name"]
            if write.op == "create":
                assert name not in self.rss
                rs["metadata"].update(
                    uid=f"rs-{next(self._ids)}", creationTimestamp=rfc3339(self.now), generation=1
                )
                rs["status"] = {"replicas": 0}
                self.rss[name] = rs
            elif write.op == "update":
                old = self.rss[name]
                if old["spec"] != rs["spec"]:
                    rs["metadata"]["generation"] = old["metadata"]["generation"] + 1
                rs["status"] = old["status"]
                self.rss[name] = rs
            else:
                assert self.rss[name]["spec"]["replicas"] == 0
                del self.rss[name]
        if plan.deployment is not None:
            self.d["metadata"]["annotations"] = plan.deployment["metadata"].get("annotations")
            self.d["status"] = plan.deployment["status"]

    def sync_replica_set(self, index: int) -> None:
        if not self.rss:
            return
        rs = sorted(self.rss.values(), key=lambda r: r["metadata"]["name"])[index % len(self.rss)]
        plan = plan_replica_set(rs, list(self.pods.values()), self.now)
        assert not plan.adopt and not plan.release
        # Status from the pods before this sync's actions, as upstream's calculateStatus.
        rs["status"] = replica_set_status(rs, plan.owned, self.now)
        for _ in range(plan.create):
            pod = pod_from_template(rs)
            name = f"{rs['metadata']['name']}-{next(self._ids)}"
            pod["metadata"].update(name=name, uid=f"pod-{name}", creationTimestamp=rfc3339(self.now))
            pod["status"] = {"phase": "Pending"}
            self.pods[name] = pod
        for pod in plan.delete:
            self.pods[pod["metadata"]["name"]]["metadata"]["deletionTimestamp"] = rfc3339(self.now)

    def make_ready(self, index: int) -> None:
        waiting = sorted(
            (p for p in self.live_pods() if not is_pod_ready(p)), key=lambda p: p["metadata"]["name"]
        )
        if waiting:
            pod = waiting[index % len(waiting)]
            pod["status"] = {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(self.now)}],
            }

    def reap(self, index: int) -> None:
        gone = sorted(n for n, p in self.pods.items() if p["metadata"].get("deletionTimestamp"))
        if gone:
            del self.pods[gone[index % len(gone)]]

    def new_release(self) -> None:
        self.version += 1
        self.d["spec"]["template"]["spec"]["containers"][0]["image"] = f"web:{self.version}"
        self.d["metadata"]["generation"] += 1

    def scale(self, replicas: int) -> None:
        self.d["spec"]["replicas"] = replicas
        self.d["metadata"]["generation"] += 1

    def converge(self, limit: int = 400) -> None:
        """Fair scheduling until nothing changes."""
        for _ in range(limit):
            before = copy.deepcopy((self.d, self.rss, self.pods))
            self.tick()
            self.sync_deployment()
            for i in range(len(self.rss)):
                self.sync_replica_set(i)
            for i in range(len(self.pods)):
                self.make_ready(i)
            while any(p["metadata"].get("deletionTimestamp") for p in self.pods.values()):
                self.reap(0)
            for i in range(len(self.rss)):
                self.sync_replica_set(i)
            if copy.deepcopy((self.d, self.rss, self.pods)) == before:
                return
        raise AssertionError("the rollout did not converge")

    def assert_complete(self) -> None:
        replicas = self.d["spec"]["replicas"]
        template = self.d["spec"]["template"]
        new = [rs for rs in self.rss.values() if equal_ignore_hash(rs["spec"]["template"], template)]
        assert len(new) == 1
        assert new[0]["spec"]["replicas"] == replicas
        for rs in self.rss.values():
            if rs is not new[0]:
                assert rs["spec"]["replicas"] == 0
        live = self.live_pods()
        assert len(live) == replicas
        assert all(is_pod_ready(p) for p in live)
        assert len(self.pods_of_template(template)) == replicas
        assert deployment_complete(self.d, self.d["status"])
        assert self.d["status"]["observedGeneration"] == self.d["metadata"]["generation"]
        progressing = [c for c in self.d["status"]["conditions"] if c["type"] == "Progressing"]
        assert progressing and progressing[0]["reason"] == "NewReplicaSetAvailable"


fencepost = st.one_of(st.integers(0, 3), st.integers(0, 100).map(lambda n: f"{n}%"))
# Releases are rarer than the steps of a rollout, so that rollouts get somewhere between two of them.
OPS = ["deploy"] * 4 + ["rs"] * 4 + ["ready"] * 3 + ["reap"] * 2 + ["release"]
ops = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50)), min_size=10, max_size=150)


def _is_zero(value: Any) -> bool:
    return value in (0, "0%")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replicas=st.integers(1, 8),
    surge=fencepost,
    unavailable=fencepost,
    steps=ops,
)
def test_rolling_update_respects_bounds_and_always_completes(
    replicas: int, surge: Any, unavailable: Any, steps: list[tuple[str, int]]
) -> None:
    if _is_zero(surge) and _is_zero(unavailable):
        unavailable = 1  # validation rejects both zero
    cluster = Cluster(deployment(replicas, surge, unavailable))
    cluster.converge()  # v1 fully rolled out
    cluster.assert_complete()
    most = replicas + max_surge(cluster.d)
    least = replicas - max_unavailable(cluster.d)
    for op, arg in steps:
        live_before = len(cluster.live_pods())
        ready_before = len(cluster.ready_pods())
        cluster.tick()
        if op == "deploy":
            cluster.sync_deployment()
        elif op == "rs":
            cluster.sync_replica_set(arg)
        elif op == "ready":
            cluster.make_ready(arg)
        elif op == "reap":
            cluster.reap(arg)
        else:
            cluster.new_release()
        live, ready = len(cluster.live_pods()), len(cluster.ready_pods())
        if live > live_before:
            assert live <= most, f"{live} pods > {replicas} + maxSurge after {op}"
        if ready < ready_before:
            assert ready >= least, f"{ready} Ready pods < {replicas} - maxUnavailable after {op}"
    cluster.converge()
    cluster.assert_complete()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replicas=st.integers(1, 8),
    surge=fencepost,
    unavailable=fencepost,
    steps=ops,
    scale_at=st.integers(0, 120),
    new_replicas=st.integers(0, 10),
)
def test_scaling_mid_rollout_still_completes(
    replicas: int,
    surge: Any,
    unavailable: Any,
    steps: list[tuple[str, int]],
    scale_at: int,
    new_replicas: int,
) -> None:
    if _is_zero(surge) and _is_zero(unavailable):
        unavailable = 1
    cluster = Cluster(deployment(replicas, surge, unavailable))
    cluster.converge()
    cluster.new_release()
    for i, (op, arg) in enumerate(steps):
        cluster.tick()
        if i == scale_at:
            cluster.scale(new_replicas)
        if op == "deploy":
            cluster.sync_deployment()
        elif op == "rs":
            cluster.sync_replica_set(arg)
        elif op == "ready":
            cluster.make_ready(arg)
        elif op == "reap":
            cluster.reap(arg)
        else:
            cluster.new_release()
    if scale_at >= len(steps):
        cluster.scale(new_replicas)
    cluster.converge()
    cluster.assert_complete()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replicas=st.integers(1, 6), steps=ops)
def test_recreate_never_runs_old_and_new_together(replicas: int, steps: list[tuple[str, int]]) -> None:
    cluster = Cluster(deployment(replicas, None, None, strategy="Recreate"))
    cluster.converge()
    cluster.assert_complete()
    for op, arg in steps:
        cluster.tick()
        if op == "deploy":
            cluster.sync_deployment()
        elif op == "rs":
            cluster.sync_replica_set(arg)
        elif op == "ready":
            cluster.make_ready(arg)
        elif op == "reap":
            cluster.reap(arg)
        else:
            cluster.new_release()
        templates = {
            p["metadata"]["labels"]["pod-template-hash"]
            for p in cluster.pods.values()
            if p["status"].get("phase") not in ("Succeeded", "Failed")
        }
        assert len(templates) <= 1, f"pods of {len(templates)} templates run together after {op}"
    cluster.converge()
    cluster.assert_complete()


def test_simulated_rollout_takes_the_expected_steps() -> None:
    """4 replicas, maxSurge 1, maxUnavailable 1: at most 5 pods, at least 3 Ready, at every step."""
    cluster = Cluster(deployment(4, 1, 1))
    cluster.converge()
    cluster.new_release()
    seen_live, seen_ready = set(), set()
    for _ in range(60):
        cluster.tick()
        cluster.sync_deployment()
        for i in range(len(cluster.rss)):
            cluster.sync_replica_set(i)
            seen_live.add(len(cluster.live_pods()))
            seen_ready.add(len(cluster.ready_pods()))
        cluster.make_ready(0)
        cluster.reap(0)
        seen_ready.add(len(cluster.ready_pods()))
    cluster.converge()
    cluster.assert_complete()
    assert max(seen_live) == 5
    assert min(seen_ready) == 3
