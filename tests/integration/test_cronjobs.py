"""CronJobs end to end.

In-process with a fake clock (memory store, the cronjob, job and garbage-collector controllers; the test
plays the node by writing pod status) for schedules and concurrency; then ``kubectl create job
--from=cronjob/…`` against a server process.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
import yaml

from corral.controllers.cronjob import CronJobController
from corral.controllers.cronplan import SCHEDULED_TIMESTAMP, job_name
from corral.controllers.gc import GarbageCollector
from corral.controllers.job import JobController
from corral.testing.controllers import InProcessCluster, rt
from corral.testing.process import ServerProcess
from corral.util.clock import rfc3339
from tests.conftest import Kubectl

JSON = dict[str, Any]
NS = "default"


def cluster() -> InProcessCluster:
    return InProcessCluster(
        lambda t, clock: CronJobController(t, clock),
        lambda t, clock: JobController(t, clock),
        lambda t, _: GarbageCollector(t),
    )


def cronjob_body(name: str, schedule: str, **spec: Any) -> JSON:
    body: JSON = {
        "schedule": schedule,
        "jobTemplate": {
            "metadata": {"labels": {"from": name}},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {"name": "main", "image": "busybox", "command": ["sh", "-c", "exit 0"]}
                        ],
                    }
                }
            },
        },
    }
    body.update(spec)
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": body}


async def jobs_of(c: InProcessCluster, cj: str) -> list[JSON]:
    items = await c.list("jobs", NS, label_selector=f"from={cj}")
    return sorted(items, key=lambda j: j["metadata"]["name"])


async def tick(c: InProcessCluster, seconds: float, *names: str) -> None:
    """Move the fake clock and have the cronjob controller look at ``names`` now."""
    c.clock.advance(seconds)
    for name in names:
        c.kick(c.controllers[0], f"{NS}/{name}")


async def wait_jobs(c: InProcessCluster, cj: str, n: int) -> list[JSON]:
    async def check() -> list[JSON] | None:
        found = await jobs_of(c, cj)
        return found if len(found) == n else None

    result: list[JSON] = await c.wait_for(check, what=f"{n} jobs of {cj}")
    return result


async def finish_pods(c: InProcessCluster, job: str) -> None:
    """Play the node: every pod of ``job`` ran and exited 0."""

    async def pods() -> list[JSON]:
        return await c.list("pods", NS, label_selector=f"job-name={job}")

    await c.wait_for(pods, what=f"pods of {job}")
    now = rfc3339(c.clock.now())
    for pod in await pods():
        pod["status"] = {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "main",
                    "image": "busybox",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "finishedAt": now}},
                }
            ],
        }
        await c.transport.update(rt("pods"), NS, pod["metadata"]["name"], pod, subresource="status")


async def cj_status(c: InProcessCluster, name: str) -> JSON:
    cj = await c.get("cronjobs", NS, name)
    assert cj is not None
    status: JSON = cj.get("status") or {}
    return status


async def event_reasons(c: InProcessCluster, name: str) -> list[str]:
    return [e["reason"] for e in await c.list("events", NS) if e["involvedObject"]["name"] == name]


async def test_fires_on_schedule() -> None:
    async with cluster() as c:
        await c.transport.create(rt("cronjobs"), NS, cronjob_body("every", "*/5 * * * *"))
        start = c.clock.now()
        await tick(c, 120, "every")
        await c.settle()
        assert await jobs_of(c, "every") == [], "nothing is due before the first schedule time"
        ctrl = c.controllers[0]
        delay = await ctrl.reconcile(f"{NS}/every")
        assert delay == pytest.approx(180.1), "the reconcile returns the time until the next schedule"
        await tick(c, 185, "every")
        (job,) = await wait_jobs(c, "every", 1)
        scheduled = start + timedelta(minutes=5)
        assert job["metadata"]["name"] == job_name("every", scheduled)
        assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == rfc3339(scheduled)
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("CronJob", "every", True)

        async def recorded() -> JSON | None:
            status = await cj_status(c, "every")
            return status if status.get("active") else None

        status = await c.wait_for(recorded, what="cronjob status records the job")
        assert status["lastScheduleTime"] == rfc3339(scheduled)
        assert [r["name"] for r in status["active"]] == [job["metadata"]["name"]]
        assert "SuccessfulCreate" in await event_reasons(c, "every")

        # The job runs; the cronjob notices it finished.
        await finish_pods(c, job["metadata"]["name"])

        async def saw_completed() -> JSON | None:
            status = await cj_status(c, "every")
            return status if not status.get("active") and status.get("lastSuccessfulTime") else None

        await c.wait_for(saw_completed, what="completed job leaves active")
        assert "SawCompletedJob" in await event_reasons(c, "every")
        # Allow: the next time starts another job.
        await tick(c, 300, "every")
        await wait_jobs(c, "every", 2)


async def test_forbid_skips_while_the_previous_job_runs() -> None:
    async with cluster() as c:
        await c.transport.create(
            rt("cronjobs"), NS, cronjob_body("single", "* * * * *", concurrencyPolicy="Forbid")
        )
        await tick(c, 61, "single")
        (first,) = await wait_jobs(c, "single", 1)

        async def active() -> bool:
            return bool((await cj_status(c, "single")).get("active"))

        await c.wait_for(active, what="first job active")
        await tick(c, 60, "single")

        async def refused() -> bool:
            return "JobAlreadyActive" in await event_reasons(c, "single")

        await c.wait_for(refused, what="JobAlreadyActive event")
        assert [j["metadata"]["name"] for j in await jobs_of(c, "single")] == [first["metadata"]["name"]]
        # Once the first job is done, the skipped time (still the most recent one, and no
        # startingDeadlineSeconds rules it out) starts, as upstream.
        await finish_pods(c, first["metadata"]["name"])
        _, second = await wait_jobs(c, "single", 2)
        assert second["metadata"]["name"] == job_name("single", c.clock.now().replace(second=0))


async def test_forbid_with_a_starting_deadline_drops_the_skipped_time() -> None:
    async with cluster() as c:
        body = cronjob_body("strict", "* * * * *", concurrencyPolicy="Forbid", startingDeadlineSeconds=10)
        await c.transport.create(rt("cronjobs"), NS, body)
        await tick(c, 61, "strict")
        (first,) = await wait_jobs(c, "strict", 1)

        async def active() -> bool:
            return bool((await cj_status(c, "strict")).get("active"))

        await c.wait_for(active, what="first job active")
        await tick(c, 60, "strict")
        await c.wait_for(lambda: refused(c, "strict"), what="JobAlreadyActive event")
        await tick(c, 20, "strict")  # the skipped time is now past its starting deadline
        await finish_pods(c, first["metadata"]["name"])

        async def idle() -> bool:
            return not (await cj_status(c, "strict")).get("active")

        await c.wait_for(idle, what="first job finished")
        await c.settle()
        assert len(await jobs_of(c, "strict")) == 1
        await tick(c, 40, "strict")
        await wait_jobs(c, "strict", 2)


async def refused(c: InProcessCluster, name: str) -> bool:
    return "JobAlreadyActive" in await event_reasons(c, name)


async def test_replace_deletes_the_running_job() -> None:
    async with cluster() as c:
        await c.transport.create(
            rt("cronjobs"), NS, cronjob_body("fresh", "* * * * *", concurrencyPolicy="Replace")
        )
        await tick(c, 61, "fresh")
        (first,) = await wait_jobs(c, "fresh", 1)

        async def active_is(name: str) -> bool:
            refs = (await cj_status(c, "fresh")).get("active") or []
            return [r["name"] for r in refs] == [name]

        await c.wait_for(lambda: active_is(first["metadata"]["name"]), what="first job active")
        await tick(c, 60, "fresh")

        async def replaced() -> JSON | None:
            found = await jobs_of(c, "fresh")
            return (
                found[0]
                if len(found) == 1 and found[0]["metadata"]["name"] != first["metadata"]["name"]
                else None
            )

        second = await c.wait_for(replaced, what="first job replaced by a second")
        await c.wait_for(lambda: active_is(second["metadata"]["name"]), what="second job active")
        assert "SuccessfulDelete" in await event_reasons(c, "fresh")

        async def first_pods_gone() -> bool:
            return await c.list("pods", NS, label_selector=f"job-name={first['metadata']['name']}") == []

        await c.wait_for(first_pods_gone, what="replaced job's pods collected")


async def test_suspended_cronjob_starts_nothing() -> None:
    async with cluster() as c:
        await c.transport.create(rt("cronjobs"), NS, cronjob_body("paused", "* * * * *", suspend=True))
        await tick(c, 600, "paused")
        await c.settle()
        assert await jobs_of(c, "paused") == []


async def test_time_zone_schedule() -> None:
    async with cluster() as c:
        # The fake clock starts at 2026-01-01T00:00Z, which is 09:00 in Tokyo.
        await c.transport.create(
            rt("cronjobs"), NS, cronjob_body("tokyo", "0 9 * * *", timeZone="Asia/Tokyo")
        )
        await tick(c, 23 * 3600, "tokyo")
        await c.settle()
        assert await jobs_of(c, "tokyo") == []
        await tick(c, 3600, "tokyo")
        (job,) = await wait_jobs(c, "tokyo", 1)
        assert job["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-01-02T09:00:00+09:00"


async def test_history_limit_deletes_old_finished_jobs() -> None:
    async with cluster() as c:
        await c.transport.create(
            rt("cronjobs"), NS, cronjob_body("hist", "* * * * *", successfulJobsHistoryLimit=1)
        )
        names = []
        for n in range(1, 4):
            await tick(c, 60, "hist")

            async def started(n: int = n) -> list[JSON] | None:
                found = [j for j in await jobs_of(c, "hist") if j["metadata"]["name"] not in names]
                return found or None

            (job,) = await c.wait_for(started, what=f"job {n}")
            names.append(job["metadata"]["name"])
            await finish_pods(c, job["metadata"]["name"])

            async def complete(name: str = job["metadata"]["name"]) -> bool:
                j = await c.get("jobs", NS, name)
                conds = (j or {}).get("status", {}).get("conditions") or []
                return any(cond["type"] == "Complete" for cond in conds)

            await c.wait_for(complete, what=f"job {n} complete")
        c.kick(c.controllers[0], f"{NS}/hist")

        async def only_last() -> bool:
            return [j["metadata"]["name"] for j in await jobs_of(c, "hist")] == names[-1:]

        await c.wait_for(only_last, what="older finished jobs deleted")


# ------------------------------------------------------------------------------------------------ kubectl


@pytest.mark.compat
@pytest.mark.slow
def test_kubectl_create_job_from_cronjob(kubectl: Kubectl, server: ServerProcess) -> None:
    doc = cronjob_body("nightly", "0 3 * * *")
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    out = kubectl.run("create", "job", "manual-run", "--from=cronjob/nightly").stdout
    assert "job.batch/manual-run created" in out
    job = json.loads(kubectl.run("get", "job", "manual-run", "-o", "json").stdout)
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("CronJob", "nightly")
    assert job["metadata"]["labels"]["from"] == "nightly"

    deadline = time.monotonic() + 60
    while True:
        status = json.loads(kubectl.run("get", "job", "manual-run", "-o", "json").stdout).get("status") or {}
        if any(c["type"] == "Complete" and c["status"] == "True" for c in status.get("conditions") or []):
            break
        assert time.monotonic() < deadline, f"manual job did not complete: {status}"
        time.sleep(0.1)
    lines = kubectl.run("get", "cronjobs").stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "SCHEDULE",
        "TIMEZONE",
        "SUSPEND",
        "ACTIVE",
        "LAST",
        "SCHEDULE",
        "AGE",
    ]
    assert lines[1].split()[:6] == ["nightly", "0", "3", "*", "*", "*"]
    # Deleting the cronjob takes its jobs (and their pods) along.
    kubectl.run("delete", "cronjob", "nightly")
    deadline = time.monotonic() + 30
    while kubectl.run("get", "job", "manual-run", check=False).returncode == 0:
        assert time.monotonic() < deadline, "job of a deleted cronjob was not collected"
        time.sleep(0.1)
