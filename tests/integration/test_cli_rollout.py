"""``corral rollout …``, ``corral scale`` and ``corral apply --wait`` against a real server with real pods.

Two tests run the CLI as a subprocess: one with stdout a pipe (plain progress lines), one on a
pseudo-terminal (the live table). The others call the same entry point, ``corral.cli.main.main``, in this
process with stdout and stderr captured, which saves an interpreter start per command; the server, HTTP
and pods are as real either way. Every assertion about an effect reads the API object with the official
client; the output is asserted exactly where kubectl's wording is the contract. Workloads are ``sleep`` processes that
become Ready at once (or never, with a failing readiness probe). Each test owns a namespace; teardown deletes
it and waits until every pod process the test saw has exited.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from corral.cli.main import main
from corral.testing.process import ServerProcess
from tests.integration.podkit import alive, api_client, wait_until

pytestmark = pytest.mark.slow

JSON = dict[str, Any]
CLI = [sys.executable, "-m", "corral.cli.main"]
DEADLINE = 60.0
REVISION = "deployment.kubernetes.io/revision"


def sleeper_deployment(
    name: str, version: str, replicas: int = 2, *, ready: bool = True, **spec: Any
) -> JSON:
    container: JSON = {
        "name": "main",
        "image": "busybox",
        "command": ["sleep", "3600"],
        "env": [{"name": "VERSION", "value": version}],
    }
    if not ready:
        container["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
            },
            **spec,
        },
    }


def job(name: str, command: list[str], **spec: Any) -> JSON:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        # A short retry delay keeps a failing job's backoff from dominating the test.
        "metadata": {"name": name, "annotations": {"corral.dev/job-backoff-base": "0.1"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "busybox", "command": command}],
                }
            },
            **spec,
        },
    }


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cluster:
    server: ServerProcess
    api: client.ApiClient
    namespace: str
    home: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CORRAL_DEBUG", "NO_COLOR")}
        env["HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def argv(self, *args: str) -> list[str]:
        return [*CLI, "--kubeconfig", str(self.server.kubeconfig), *args, "-n", self.namespace]

    def corral(self, *args: str) -> Result:
        """The CLI in this process: ``main`` exactly as the console script runs it, output captured."""
        out, err = io.StringIO(), io.StringIO()
        code: int | str | None = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(self.argv(*args)[len(CLI) :])
            except SystemExit as exc:
                code = exc.code
        return Result(
            code if isinstance(code, int) else (0 if code is None else 1), out.getvalue(), err.getvalue()
        )

    def subprocess(self, *args: str, stdin: str | None = None) -> Result:
        done = subprocess.run(
            self.argv(*args), input=stdin, capture_output=True, text=True, timeout=DEADLINE, env=self.env()
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> str:
        result = self.corral(*args)
        assert result.code == 0, result
        assert "Traceback" not in result.err
        return result.out

    def apply(self, *docs: JSON, extra: tuple[str, ...] = ()) -> Result:
        manifest = self.home / f"manifest-{uuid.uuid4().hex[:8]}.yaml"
        manifest.write_text(yaml.safe_dump_all(list(docs)))
        return self.corral("apply", "-f", str(manifest), *extra)

    def deployment(self, name: str) -> JSON:
        raw = client.AppsV1Api(self.api).read_namespaced_deployment(
            name, self.namespace, _preload_content=False
        )
        obj: JSON = _json(raw)
        return obj

    def replica_sets(self, app: str) -> list[JSON]:
        raw = client.AppsV1Api(self.api).list_namespaced_replica_set(
            self.namespace, label_selector=f"app={app}", _preload_content=False
        )
        items: list[JSON] = _json(raw)["items"]
        return items

    def job(self, name: str) -> JSON:
        raw = client.BatchV1Api(self.api).read_namespaced_job(name, self.namespace, _preload_content=False)
        obj: JSON = _json(raw)
        return obj

    def pods(self) -> list[JSON]:
        raw = client.CoreV1Api(self.api).list_namespaced_pod(self.namespace, _preload_content=False)
        items: list[JSON] = _json(raw)["items"]
        return items


def _json(response: Any) -> Any:
    """The body of a ``_preload_content=False`` call: the server's JSON, not the client's models."""
    return json.loads(response.data)


def pids_of(pods: list[JSON]) -> set[int]:
    found = set()
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            cid = cs.get("containerID") or ""
            if cid.startswith("process://"):
                found.add(int(cid.removeprefix("process://")))
    return found


@pytest.fixture
def cluster(server: ServerProcess, tmp_path: Path) -> Iterator[Cluster]:
    api = api_client(server.kubeconfig)
    namespace = f"rollout-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    c = Cluster(server, api, namespace, tmp_path)
    try:
        yield c
    finally:
        pids = pids_of(c.pods())
        core.delete_namespace(namespace)

        def gone() -> bool:
            return not c.pods() and not any(alive(pid) for pid in pids)

        try:
            wait_until(gone, 30, f"the pods of {namespace} and their processes {sorted(pids)} to go", 0.1)
        finally:
            api.close()  # type: ignore[no-untyped-call]


def condition(obj: JSON, ctype: str) -> JSON:
    return next(c for c in obj["status"].get("conditions") or [] if c["type"] == ctype)


def template_env(d: JSON) -> str:
    return str(d["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"])


# --- apply --wait --------------------------------------------------------------------------------------


def test_apply_wait_reports_rollout_and_job_completion(cluster: Cluster) -> None:
    started = time.monotonic()
    manifest = yaml.safe_dump_all(
        [
            sleeper_deployment("web", "v1", replicas=3),
            job("pi", ["sh", "-c", "exit 0"], completions=2, parallelism=2),
        ]
    )
    # The real console entry point with stdout a pipe: it must choose plain lines by itself.
    result = cluster.subprocess("apply", "-f", "-", "--wait", "--timeout", "45s", stdin=manifest)
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[:2] == ["deployment.apps/web created", "job.batch/pi created"]
    assert 'deployment "web" successfully rolled out' in lines
    assert 'job "pi" completed' in lines
    assert all(line.startswith(("Waiting for ", "deployment", "job")) for line in lines), lines
    assert "\x1b" not in result.out  # not a terminal: plain lines, no colours, no cursor movement
    assert result.err == ""
    print(f"\napply --wait of 3 replicas + a 2-pod job: {time.monotonic() - started:.2f} s")
    d = cluster.deployment("web")
    assert d["status"]["readyReplicas"] == 3 and d["status"]["availableReplicas"] == 3
    assert d["status"]["updatedReplicas"] == 3
    j = cluster.job("pi")
    assert j["status"]["succeeded"] == 2 and condition(j, "Complete")["status"] == "True"

    # Nothing changed: the second --wait finds everything done at once.
    again = cluster.apply(sleeper_deployment("web", "v1", replicas=3), extra=("--wait",))
    assert again.out == 'deployment.apps/web unchanged\ndeployment "web" successfully rolled out\n'


def test_apply_wait_fails_with_the_reason(cluster: Cluster) -> None:
    result = cluster.apply(
        sleeper_deployment("stuck", "v1", ready=False, progressDeadlineSeconds=2),
        job("boom", ["false"], backoffLimit=0),
        extra=("--wait", "--timeout", "40s"),
    )
    assert result.code == 1, result
    assert result.out.splitlines()[:2] == ["deployment.apps/stuck created", "job.batch/boom created"]
    assert sorted(result.err.splitlines()) == [
        'error: deployment "stuck" exceeded its progress deadline',
        'error: job "boom" failed: BackoffLimitExceeded: Job has reached the specified backoff limit',
    ]
    d = cluster.deployment("stuck")
    assert condition(d, "Progressing")["reason"] == "ProgressDeadlineExceeded"
    assert d["status"].get("readyReplicas", 0) == 0
    assert condition(cluster.job("boom"), "Failed")["reason"] == "BackoffLimitExceeded"

    status = cluster.corral("rollout", "status", "deploy/stuck")
    assert (status.code, status.err) == (1, 'error: deployment "stuck" exceeded its progress deadline\n')


def test_wait_and_status_time_out(cluster: Cluster) -> None:
    slow = sleeper_deployment("slow", "v1", ready=False)  # default 600 s deadline: only the timeout ends it
    result = cluster.apply(slow, extra=("--wait", "--timeout", "2s"))
    assert result.code == 1
    assert result.err == (
        'error: timed out waiting for deployment "slow": Waiting for deployment "slow" rollout to finish: '
        "0 of 2 updated replicas are available\n"
    )
    started = time.monotonic()
    status = cluster.corral("rollout", "status", "deployment", "slow", "--timeout", "1s")
    assert (status.code, status.err) == (1, "error: timed out waiting for the condition\n")
    assert (
        status.out
        == 'Waiting for deployment "slow" rollout to finish: 0 of 2 updated replicas are available...\n'
    )
    assert time.monotonic() - started < 15
    # --no-watch prints the state once and succeeds, as kubectl's --watch=false does.
    once = cluster.corral("rollout", "status", "deploy/slow", "--no-watch")
    assert once.code == 0 and once.out == status.out


def test_apply_wait_on_a_terminal_draws_a_live_table(cluster: Cluster) -> None:
    manifest = yaml.safe_dump(sleeper_deployment("tty", "v1", replicas=1))
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cluster.argv("apply", "-f", "-", "--wait"),
        stdin=subprocess.PIPE,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**cluster.env(), "TERM": "xterm-256color", "COLUMNS": "120"},
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        assert proc.stdin is not None
        proc.stdin.write(manifest.encode())
        proc.stdin.close()
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
        if proc.stderr is not None:
            proc.stderr.close()
    text = b"".join(chunks).decode(errors="replace")
    assert "\x1b[" in text  # a terminal gets colours and the live redraw
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert (
        "PROGRESS" in plain
        and "deployment.apps/tty" in plain
        and "1/1 updated, 1 ready, 1 available" in plain
    )
    assert plain.rstrip().splitlines()[-1].strip() == 'deployment "tty" successfully rolled out'


# --- rollout history / undo / restart / pause / resume, scale ------------------------------------------


def test_history_undo_restart_pause_resume_and_scale(cluster: Cluster) -> None:
    wait = ("--wait", "--timeout", "40s")
    assert cluster.apply(sleeper_deployment("web", "v1"), extra=wait).code == 0
    v2 = sleeper_deployment("web", "v2")
    v2["metadata"]["annotations"] = {"kubernetes.io/change-cause": "release v2"}
    assert cluster.apply(v2, extra=wait).code == 0

    assert cluster.ok("rollout", "history", "deployment/web") == (
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         release v2\n\n"
    )
    one = cluster.ok("rollout", "history", "deploy", "web", "--revision", "1")
    assert one.startswith("deployment.apps/web with revision #1\nPod Template:\n")
    assert re.search(r"^      VERSION: +v1$", one, re.M), one
    missing = cluster.corral("rollout", "history", "deploy/web", "--revision", "7")
    assert (missing.code, missing.err) == (1, "error: unable to find the specified revision\n")

    # undo: back to the previous revision, reusing (and renumbering) its ReplicaSet.
    assert cluster.ok("rollout", "undo", "deployment/web") == "deployment.apps/web rolled back\n"
    assert cluster.ok("rollout", "status", "deploy/web", "--timeout", "30s").endswith(
        'deployment "web" successfully rolled out\n'
    )
    d = cluster.deployment("web")
    assert template_env(d) == "v1"
    assert "pod-template-hash" not in d["spec"]["template"]["metadata"]["labels"]
    assert d["metadata"]["annotations"][REVISION] == "3"
    rss = {rs["metadata"]["annotations"][REVISION]: rs for rs in cluster.replica_sets("web")}
    assert set(rss) == {"2", "3"}
    assert rss["3"]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert rss["3"]["spec"]["replicas"] == 2 and rss["2"]["spec"]["replicas"] == 0

    # undo --to-revision: the named one; the current one is a no-op; an unknown one is an error.
    assert (
        cluster.ok("rollout", "undo", "deploy", "web", "--to-revision", "2")
        == "deployment.apps/web rolled back\n"
    )
    cluster.ok("rollout", "status", "deploy/web", "--timeout", "30s")
    d = cluster.deployment("web")
    assert template_env(d) == "v2" and d["metadata"]["annotations"][REVISION] == "4"
    assert d["metadata"]["annotations"]["kubernetes.io/change-cause"] == "release v2"  # from the ReplicaSet
    assert cluster.ok("rollout", "undo", "deploy/web", "--to-revision", "4") == (
        "deployment.apps/web skipped rollback (current template already matches revision 4)\n"
    )
    unknown = cluster.corral("rollout", "undo", "deploy/web", "--to-revision", "9")
    assert (unknown.code, unknown.err) == (1, "error: unable to find specified revision 9 in history\n")

    # restart: a new template annotation, so a new revision and new pods.
    before_pods = {p["metadata"]["name"] for p in cluster.pods()}
    assert cluster.ok("rollout", "restart", "deploy/web") == "deployment.apps/web restarted\n"
    cluster.ok("rollout", "status", "deploy/web", "--timeout", "30s")
    d = cluster.deployment("web")
    stamp = d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
    assert abs(time.time() - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()) < 120
    assert d["metadata"]["annotations"][REVISION] == "5"

    def restarted_pods() -> list[JSON] | None:
        live = [p for p in cluster.pods() if not p["metadata"].get("deletionTimestamp")]
        return live if len(live) == 2 else None

    after = wait_until(restarted_pods, 20, "two live pods after the restart")
    assert not before_pods & {p["metadata"]["name"] for p in after}

    # pause / resume, with kubectl's refusals.
    assert cluster.ok("rollout", "pause", "deploy/web") == "deployment.apps/web paused\n"
    assert cluster.deployment("web")["spec"]["paused"] is True
    again = cluster.corral("rollout", "pause", "deploy/web")
    assert (again.code, again.err) == (1, 'error: deployments.apps "web" is already paused\n')
    paused_undo = cluster.corral("rollout", "undo", "deploy/web")
    assert paused_undo.code == 1 and "you cannot rollback a paused deployment" in paused_undo.err
    assert cluster.ok("rollout", "resume", "deploy/web") == "deployment.apps/web resumed\n"
    assert not cluster.deployment("web")["spec"].get("paused")
    not_paused = cluster.corral("rollout", "resume", "deploy/web")
    assert (not_paused.code, not_paused.err) == (1, 'error: deployments.apps "web" is not paused\n')

    # scale through the scale subresource, with the --current-replicas precondition.
    assert cluster.ok("scale", "deployment/web", "--replicas", "3") == "deployment.apps/web scaled\n"
    assert cluster.deployment("web")["spec"]["replicas"] == 3
    refused = cluster.corral("scale", "deploy", "web", "--replicas", "1", "--current-replicas", "2")
    assert (refused.code, refused.err) == (1, "error: Expected replicas to be 2, was 3\n")
    assert cluster.deployment("web")["spec"]["replicas"] == 3
    assert cluster.ok("scale", "deploy", "web", "--replicas", "1", "--current-replicas", "3") == (
        "deployment.apps/web scaled\n"
    )
    assert cluster.deployment("web")["spec"]["replicas"] == 1
    # rollout status does not wait for a scale-down (kubectl's viewer compares updated replicas only), so
    # the end state is polled.
    wait_until(lambda: cluster.deployment("web")["status"].get("replicas") == 1, 20, "the scale-down to 1")
