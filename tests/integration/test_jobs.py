"""Jobs end to end.

In-process (memory store, the job controller and the garbage collector, a fake clock; the test plays the
node by writing pod status) for counting, backoff, deadlines, suspend, TTL and Indexed mode; then real pod
processes on a server process, driven by kubectl.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.controllers.gc import GarbageCollector
from corral.controllers.job import JobController
from corral.controllers.jobplan import COMPLETION_INDEX
from corral.testing.controllers import InProcessCluster, rt
from corral.testing.process import ServerProcess
from corral.util.clock import rfc3339
from tests.conftest import Kubectl

JSON = dict[str, Any]
NS = "default"


def cluster() -> InProcessCluster:
    return InProcessCluster(lambda t, clock: JobController(t, clock), lambda t, _: GarbageCollector(t))


def job_body(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> JSON:
    body: JSON = {
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 0"]}],
            }
        }
    }
    body.update(spec)
    meta: JSON = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": body}


async def create_job(
    c: InProcessCluster, name: str, annotations: dict[str, str] | None = None, **spec: Any
) -> JSON:
    return await c.transport.create(rt("jobs"), NS, job_body(name, annotations, **spec))


async def pods_of(c: InProcessCluster, job: str) -> list[JSON]:
    return await c.list("pods", NS, label_selector=f"job-name={job}")


async def live_pods(c: InProcessCluster, job: str) -> list[JSON]:
    return [
        p
        for p in await pods_of(c, job)
        if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        and not p["metadata"].get("deletionTimestamp")
    ]


async def finish(c: InProcessCluster, pod: JSON, exit_code: int) -> None:
    """Play the node: the pod's container ran and exited."""
    now = rfc3339(c.clock.now())
    current = await c.get("pods", NS, pod["metadata"]["name"])
    assert current is not None
    current["status"] = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": "main",
                "image": "busybox",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "startedAt": now, "finishedAt": now}},
            }
        ],
    }
    await c.transport.update(rt("pods"), NS, current["metadata"]["name"], current, subresource="status")


async def job_status(c: InProcessCluster, name: str) -> JSON:
    job = await c.get("jobs", NS, name)
    assert job is not None
    status: JSON = job.get("status") or {}
    return status


def has_condition(status: JSON, ctype: str) -> JSON | None:
    for cond in status.get("conditions") or []:
        if cond["type"] == ctype and cond["status"] == "True":
            return dict(cond)
    return None


async def events(c: InProcessCluster, name: str) -> list[str]:
    items = await c.list("events", NS)
    return [
        e["reason"]
        for e in items
        if e["involvedObject"]["name"] == name
        for _ in range(int(e.get("count") or 1))
    ]


async def wait_live(c: InProcessCluster, job: str, n: int) -> list[JSON]:
    async def check() -> list[JSON] | None:
        pods = await live_pods(c, job)
        return pods if len(pods) == n else None

    result: list[JSON] = await c.wait_for(check, what=f"{n} running pods of {job}")
    return result


async def test_completions_with_parallelism() -> None:
    async with cluster() as c:
        await create_job(c, "work", completions=3, parallelism=2)
        first = await wait_live(c, "work", 2)
        for pod in first:
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"
            assert pod["metadata"]["labels"]["job-name"] == "work"
            await finish(c, pod, 0)
        last = await wait_live(c, "work", 1)
        await finish(c, last[0], 0)

        async def complete() -> JSON | None:
            status = await job_status(c, "work")
            return status if has_condition(status, "Complete") else None

        status = await c.wait_for(complete, what="job Complete")
        assert status["succeeded"] == 3 and not status.get("failed") and not status.get("active")
        assert status["completionTime"] and status["startTime"]
        assert has_condition(status, "SuccessCriteriaMet")
        assert status["uncountedTerminatedPods"] == {}
        assert len(await pods_of(c, "work")) == 3
        reasons = await events(c, "work")
        assert reasons.count("SuccessfulCreate") == 3 and "Completed" in reasons


async def test_pods_are_not_duplicated_while_the_cache_catches_up() -> None:
    async with cluster() as c:
        await create_job(c, "wide", completions=20, parallelism=6)
        await wait_live(c, "wide", 6)
        await c.settle()  # nothing more appears while nothing finishes
        assert len(await pods_of(c, "wide")) == 6


async def test_backoff_delays_retries_and_the_limit_fails_the_job() -> None:
    async with cluster() as c:
        ctrl = c.controllers[0]
        await create_job(c, "flaky", backoffLimit=1)
        (pod,) = await wait_live(c, "flaky", 1)
        await finish(c, pod, 1)

        async def failed_once() -> bool:
            return (await job_status(c, "flaky")).get("failed") == 1

        await c.wait_for(failed_once, what="first failure counted")
        await c.settle()
        assert await live_pods(c, "flaky") == [], "the replacement waits out the 10 s backoff"
        c.clock.advance(10)
        c.kick(ctrl, f"{NS}/flaky")
        (pod,) = await wait_live(c, "flaky", 1)
        await finish(c, pod, 1)

        async def failed() -> JSON | None:
            status = await job_status(c, "flaky")
            return status if has_condition(status, "Failed") else None

        status = await c.wait_for(failed, what="job Failed")
        cond = has_condition(status, "Failed")
        assert cond is not None and cond["reason"] == "BackoffLimitExceeded"
        assert status["failed"] == 2 and not status.get("succeeded")
        assert "BackoffLimitExceeded" in await events(c, "flaky")
        assert len(await pods_of(c, "flaky")) == 2


async def test_active_deadline_kills_pods_and_fails_the_job() -> None:
    async with cluster() as c:
        await create_job(c, "slow", completions=2, parallelism=2, activeDeadlineSeconds=30)
        await wait_live(c, "slow", 2)
        c.clock.advance(31)
        c.kick(c.controllers[0], f"{NS}/slow")

        async def failed() -> JSON | None:
            status = await job_status(c, "slow")
            return status if has_condition(status, "Failed") else None

        status = await c.wait_for(failed, what="job Failed by its deadline")
        cond = has_condition(status, "Failed")
        assert cond is not None and cond["reason"] == "DeadlineExceeded"
        assert await pods_of(c, "slow") == []  # unscheduled pods go at once
        assert status["failed"] == 2
        assert "DeadlineExceeded" in await events(c, "slow")


async def test_suspend_and_resume() -> None:
    async with cluster() as c:
        await create_job(c, "later", suspend=True, completions=2, parallelism=2)

        async def suspended() -> JSON | None:
            status = await job_status(c, "later")
            return status if has_condition(status, "Suspended") else None

        status = await c.wait_for(suspended, what="Suspended condition")
        assert "startTime" not in status and await pods_of(c, "later") == []
        await c.transport.patch(
            rt("jobs"), NS, "later", "application/merge-patch+json", {"spec": {"suspend": False}}
        )
        await wait_live(c, "later", 2)
        status = await job_status(c, "later")
        assert status["startTime"] and not has_condition(status, "Suspended")
        await c.transport.patch(
            rt("jobs"), NS, "later", "application/merge-patch+json", {"spec": {"suspend": True}}
        )
        await c.wait_for(lambda: live_pods_empty(c, "later"), what="pods deleted on suspend")
        assert (await events(c, "later")).count("Suspended") == 2
        assert "Resumed" in await events(c, "later")


async def live_pods_empty(c: InProcessCluster, job: str) -> bool:
    return await live_pods(c, job) == []


async def test_ttl_after_finished_deletes_job_and_pods() -> None:
    async with cluster() as c:
        await create_job(c, "brief", ttlSecondsAfterFinished=60)
        (pod,) = await wait_live(c, "brief", 1)
        await finish(c, pod, 0)

        async def complete() -> bool:
            return has_condition(await job_status(c, "brief"), "Complete") is not None

        await c.wait_for(complete, what="job Complete")
        c.clock.advance(30)
        c.kick(c.controllers[0], f"{NS}/brief")
        await c.settle()
        assert await c.get("jobs", NS, "brief") is not None
        c.clock.advance(31)
        c.kick(c.controllers[0], f"{NS}/brief")

        async def all_gone() -> bool:
            return await c.get("jobs", NS, "brief") is None and await pods_of(c, "brief") == []

        await c.wait_for(all_gone, what="job and its pods deleted after the TTL")


async def test_indexed_job_gives_each_pod_its_index() -> None:
    async with cluster() as c:
        await create_job(c, "idx", completionMode="Indexed", completions=3, parallelism=3)
        pods = await wait_live(c, "idx", 3)
        indexes = sorted(int(p["metadata"]["annotations"][COMPLETION_INDEX]) for p in pods)
        assert indexes == [0, 1, 2]
        for pod in pods:
            index = pod["metadata"]["annotations"][COMPLETION_INDEX]
            assert pod["metadata"]["name"].startswith(f"idx-{index}-")
            assert pod["metadata"]["labels"][COMPLETION_INDEX] == index
            env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
            assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
                f"metadata.annotations['{COMPLETION_INDEX}']"
            )
        # Index 1 fails once and is retried with the same index.
        by_index = {p["metadata"]["annotations"][COMPLETION_INDEX]: p for p in pods}
        await finish(c, by_index["0"], 0)
        await finish(c, by_index["2"], 0)
        await finish(c, by_index["1"], 1)
        c.clock.advance(10)
        c.kick(c.controllers[0], f"{NS}/idx")
        (retry,) = await wait_live(c, "idx", 1)
        assert retry["metadata"]["annotations"][COMPLETION_INDEX] == "1"
        await finish(c, retry, 0)

        async def complete() -> JSON | None:
            status = await job_status(c, "idx")
            return status if has_condition(status, "Complete") else None

        status = await c.wait_for(complete, what="indexed job Complete")
        assert status["completedIndexes"] == "0-2" and status["succeeded"] == 3 and status["failed"] == 1


async def test_deleting_a_job_collects_its_pods() -> None:
    async with cluster() as c:
        await create_job(c, "doomed", completions=2, parallelism=2)
        await wait_live(c, "doomed", 2)
        await c.transport.delete(rt("jobs"), NS, "doomed")

        async def no_pods() -> bool:
            return await pods_of(c, "doomed") == []

        await c.wait_for(no_pods, what="pods collected with their job")


# ------------------------------------------------------------------------------------------------ real pods


def _apply(kubectl: Kubectl, *docs: JSON) -> None:
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs)))


def _json(kubectl: Kubectl, *args: str) -> JSON:
    data: JSON = json.loads(kubectl.run(*args, "-o", "json").stdout)
    return data


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _job_doc(name: str, script: str, annotations: dict[str, str] | None = None, **spec: Any) -> JSON:
    doc = job_body(name, annotations, **spec)
    doc["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", script]
    return doc


def _finished(kubectl: Kubectl, name: str) -> Any:
    def check() -> JSON | None:
        job = _json(kubectl, "get", "job", name)
        status: JSON = job.get("status") or {}
        return status if has_condition(status, "Complete") or has_condition(status, "Failed") else None

    return check


def _pods(kubectl: Kubectl, job: str) -> list[JSON]:
    items: list[JSON] = _json(kubectl, "get", "pods", "-l", f"job-name={job}")["items"]
    return items


@pytest.mark.compat
@pytest.mark.slow
def test_real_job_runs_exactly_completions_pods(kubectl: Kubectl, server: ServerProcess) -> None:
    _apply(kubectl, _job_doc("five", "exit 0", completions=5, parallelism=2))
    status = _wait(_finished(kubectl, "five"), 60, "job five finished")
    assert has_condition(status, "Complete"), status
    assert status["succeeded"] == 5 and not status.get("failed")
    pods = _pods(kubectl, "five")
    assert len(pods) == 5
    assert all(p["status"]["phase"] == "Succeeded" for p in pods)
    out = kubectl.run("get", "jobs").stdout.splitlines()
    assert out[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert out[1].split()[:3] == ["five", "Complete", "5/5"]
    kubectl.run("delete", "job", "five")
    _wait(lambda: _pods(kubectl, "five") == [], 30, "pods of five collected")


@pytest.mark.compat
@pytest.mark.slow
def test_real_failing_job_stops_at_the_backoff_limit(kubectl: Kubectl, server: ServerProcess) -> None:
    doc = _job_doc("fails", "exit 3", {"corral.dev/job-backoff-base": "0.2"}, backoffLimit=2)
    _apply(kubectl, doc)
    status = _wait(_finished(kubectl, "fails"), 60, "job fails finished")
    cond = has_condition(status, "Failed")
    assert cond is not None and cond["reason"] == "BackoffLimitExceeded", status
    assert status["failed"] == 3
    pods = _pods(kubectl, "fails")
    assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)
    out = kubectl.run("get", "job", "fails").stdout.splitlines()
    assert out[1].split()[:3] == ["fails", "Failed", "0/1"]
    reasons = [
        e["reason"]
        for e in _json(kubectl, "get", "events")["items"]
        if e["involvedObject"]["name"] == "fails"
    ]
    assert "BackoffLimitExceeded" in reasons and "SuccessfulCreate" in reasons


@pytest.mark.compat
@pytest.mark.slow
def test_real_indexed_job_pods_see_their_index(
    kubectl: Kubectl, server: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "indexes"
    out.mkdir()
    script = f'echo "$JOB_COMPLETION_INDEX" > {out}/"$JOB_COMPLETION_INDEX"'
    _apply(kubectl, _job_doc("ix", script, completionMode="Indexed", completions=4, parallelism=2))
    status = _wait(_finished(kubectl, "ix"), 60, "indexed job finished")
    assert has_condition(status, "Complete"), status
    assert status["completedIndexes"] == "0-3"
    assert sorted(p.name for p in out.iterdir()) == ["0", "1", "2", "3"]
    assert all(p.read_text().strip() == p.name for p in out.iterdir())
