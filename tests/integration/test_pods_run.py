"""Pods run as supervised processes, through the real server, real kubectl and the official Python client.

Each test shows one point of "pods run": fast start with logs and exec, restarts and CrashLoopBackOff, probes,
graceful deletion, memory limits, and bad input reported in status and events while other pods keep running.
Timings are measured (printed with ``-s``) and asserted with margins fit for a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.agent.runtimes.process import ProcessRuntime
from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import (
    HTTP_SERVER,
    JSON,
    Pods,
    alive,
    condition,
    container_status,
    free_port,
    group_members,
    is_ready,
    main_pid,
    pgid_of,
    pod_doc,
    wait_until,
    waiting_reason,
)

pytestmark = pytest.mark.compat


@pytest.fixture
def pods(kubectl: Kubectl, server: ServerProcess) -> Iterator[Pods]:
    p = Pods(kubectl, server.kubeconfig)
    try:
        yield p
        p.delete_all()
    finally:
        p.close()


def host_port(pod: JSON, container: str = "main", port: int = 8080) -> int:
    mapping = json.loads(pod["metadata"]["annotations"]["corral.dev/ports"])
    return int(mapping[f"{container}/{port}/TCP"])


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy


def http_get(port: int, path: str) -> int:
    """The HTTP status of GET ``path`` on the pod's host port; 0 when nothing accepts the connection."""
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError):
        return 0


def web_pod(name: str, **container: object) -> JSON:
    return pod_doc(
        name,
        HTTP_SERVER,
        ports=[{"name": "http", "containerPort": 8080}],
        container={
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            **container,
        },
    )


class LineReader:
    """Reads a subprocess's stdout on a thread so the test can wait for a line with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if text in line:
                return line
        raise AssertionError(f"no line containing {text!r} within {timeout}s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # kubectl was started in its own session
        self.proc.wait()
        self.thread.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


# -------------------------------------------------------------------------------- 1. run, logs, exec


def test_http_server_pod_is_ready_fast_streams_logs_and_execs(pods: Pods) -> None:
    doc = web_pod(
        "web",
        env=[
            {"name": "GREETING", "value": "hello corral"},
            {"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    )
    started = pods.apply(doc)
    pod = pods.wait_ready("web", timeout=10)
    latency = time.monotonic() - started
    print(f"\nkubectl apply -> Ready: {latency:.3f}s")
    assert pod["status"]["phase"] == "Running"
    assert latency <= 2.0, f"Ready took {latency:.2f}s after kubectl apply"
    port = host_port(pod)

    logs = LineReader(pods.kubectl.popen("logs", "-f", "web"))
    try:
        for _ in range(2):  # a second request after the first line: the stream really follows
            marker = f"/streamed-{uuid.uuid4().hex}"
            assert http_get(port, marker) == 404
            line = logs.wait_for(marker, timeout=5)
            assert '"GET ' in line and " 404 " in line
    finally:
        logs.kill()

    code, out, _ = pods.exec("web", "env")
    assert code == 0
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert env["PORT"] == str(port) and env["PORT_HTTP"] == str(port)
    assert env["GREETING"] == "hello corral"
    assert env["MY_POD_NAME"] == "web"
    code, _, _ = pods.exec("web", "sh", "-c", "exit 3")
    assert code == 3
    code, out, _ = pods.exec("web", "sh", "-c", "echo out; echo err >&2; exit 0")
    assert code == 0 and out == "out\n"


# -------------------------------------------------------------------------------- 2. restarts


def test_killed_process_is_restarted_within_a_second(pods: Pods) -> None:
    pods.apply(pod_doc("victim", ["sleep", "3600"]))
    pod = pods.wait_running("victim")
    old = main_pid(pod)
    assert old is not None and alive(old)
    killed = time.monotonic()
    os.kill(old, signal.SIGKILL)
    pod = pods.wait(
        "victim", lambda p: main_pid(p) not in (None, old), timeout=5, what="restarted with a new process"
    )
    latency = time.monotonic() - killed
    print(f"\nkill -9 -> new process reported running: {latency:.3f}s")
    assert latency <= 1.0, f"restart took {latency:.2f}s"
    cs = container_status(pod)
    assert cs["restartCount"] == 1
    terminated = cs["lastState"]["terminated"]
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "Error"
    assert terminated["signal"] == 9
    assert terminated["containerID"] == f"process://{old}"
    new = main_pid(pod)
    assert new is not None and alive(new) and not alive(old)


def test_crashing_container_backs_off_with_growing_delays(pods: Pods, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    doc = pod_doc(
        "crasher",
        ["sh", "-c", 'date +%s.%N >> "$STARTS"; echo crashing; exit 2'],
        env=[{"name": "STARTS", "value": str(starts)}],
    )
    pods.apply(doc)
    reasons: set[str] = set()

    def five_starts() -> bool:
        reasons.add(waiting_reason(pods.get("crasher")))
        return starts.exists() and len(starts.read_text().split()) >= 5

    wait_until(five_starts, timeout=20, what="five starts of the crashing container")
    times = [float(t) for t in starts.read_text().split()]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    print(f"\ngaps between starts (backoff base 1s): {gaps}")
    # The kubelet's schedule: restart at once, then base, 2*base, 4*base…
    assert gaps[1] >= 0.9
    assert gaps[2] > gaps[1] + 0.5 and gaps[2] > gaps[0]
    assert gaps[3] > gaps[2] + 1.0
    assert "CrashLoopBackOff" in reasons
    pod = pods.wait(
        "crasher",
        lambda p: waiting_reason(p) == "CrashLoopBackOff" and container_status(p)["restartCount"] >= 4,
        5,
        "CrashLoopBackOff after the fifth start",
    )
    cs = container_status(pod)
    assert cs["lastState"]["terminated"]["exitCode"] == 2
    assert "back-off" in cs["state"]["waiting"]["message"]
    row = pods.kubectl.run("get", "pod", "crasher", "--no-headers").stdout.split()
    assert row[2] == "CrashLoopBackOff"


def test_restart_policy_never_leaves_the_pod_failed(pods: Pods, tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    doc = pod_doc(
        "once",
        ["sh", "-c", 'echo started >> "$STARTS"; exit 1'],
        env=[{"name": "STARTS", "value": str(starts)}],
        restartPolicy="Never",
    )
    pods.apply(doc)
    pod = pods.wait("once", lambda p: p["status"].get("phase") == "Failed", 10, "phase Failed")
    cs = container_status(pod)
    assert cs["state"]["terminated"]["exitCode"] == 1
    assert cs["state"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] == 0
    # With a 1 s backoff base a restart would come at once; it must not come at all.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        pod = pods.get("once")
        assert pod is not None and pod["status"]["phase"] == "Failed"
        assert container_status(pod)["restartCount"] == 0
        time.sleep(0.1)
    assert starts.read_text().split() == ["started"]


# -------------------------------------------------------------------------------- 3. probes


def test_failing_liveness_probe_restarts_the_container(pods: Pods) -> None:
    doc = pod_doc(
        "live",
        ["sh", "-c", "touch healthz && exec python3 -m http.server $PORT --bind 127.0.0.1"],
        ports=[{"name": "http", "containerPort": 8080}],
        container={
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http"},
                "initialDelaySeconds": 1,
                "periodSeconds": 1,
                "failureThreshold": 2,
            }
        },
    )
    pods.apply(doc)
    pod = pods.wait_running("live")
    old = main_pid(pod)
    wait_until(lambda: http_get(host_port(pod), "/healthz") == 200, 5, "the server to answer /healthz")
    code, _, err = pods.exec("live", "rm", "healthz")  # the working directory is the pod's sandbox
    assert code == 0, err
    pod = pods.wait(
        "live",
        lambda p: container_status(p).get("restartCount") == 1 and main_pid(p) not in (None, old),
        timeout=10,
        what="restarted after failing liveness",
    )
    assert old is not None and not alive(old)
    assert container_status(pod)["lastState"]["terminated"]["containerID"] == f"process://{old}"
    unhealthy = [e for e in pods.events("live") if e["reason"] == "Unhealthy"]
    assert any("Liveness probe failed" in e["message"] and "404" in e["message"] for e in unhealthy), (
        unhealthy
    )
    assert any(e["reason"] == "Killing" for e in pods.events("live"))
    table = pods.kubectl.run("get", "events").stdout
    assert "Unhealthy" in table and "Liveness probe failed" in table
    # The new instance recreated /healthz and serves it.
    wait_until(lambda: http_get(host_port(pod), "/healthz") == 200, 5, "the new instance to answer /healthz")


def test_failing_readiness_probe_flips_ready_and_back(pods: Pods) -> None:
    doc = pod_doc(
        "flappy",
        ["sh", "-c", "touch ready && exec sleep 3600"],
        container={
            "readinessProbe": {
                "exec": {"command": ["test", "-f", "ready"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
            }
        },
    )
    pods.apply(doc)
    pod = pods.wait_ready("flappy")
    pid = main_pid(pod)
    assert pods.exec("flappy", "rm", "ready")[0] == 0
    pod = pods.wait("flappy", lambda p: not is_ready(p), timeout=5, what="Ready False")
    assert condition(pod, "Ready")["reason"] == "ContainersNotReady"
    assert container_status(pod)["ready"] is False
    assert pod["status"]["phase"] == "Running"
    assert pods.exec("flappy", "touch", "ready")[0] == 0
    pod = pods.wait_ready("flappy", timeout=5)
    assert main_pid(pod) == pid and container_status(pod)["restartCount"] == 0
    assert any(
        e["reason"] == "Unhealthy" and "Readiness probe failed" in e["message"] for e in pods.events("flappy")
    )


# -------------------------------------------------------------------------------- 4. deletion


def test_delete_sends_term_then_kill_after_the_grace_period(pods: Pods, tmp_path: Path) -> None:
    term_log = tmp_path / "term.log"
    stubborn = pod_doc(
        "stubborn",
        ["sh", "-c", 'trap "echo TERM >> \\"$OUT\\"" TERM; while :; do sleep 0.1; done'],
        env=[{"name": "OUT", "value": str(term_log)}],
        terminationGracePeriodSeconds=2,
    )
    polite = pod_doc("polite", ["sleep", "3600"])  # default grace period 30 s: it must not take that long
    pods.apply(stubborn, polite)
    groups: dict[str, list[int]] = {}
    for name in ("stubborn", "polite"):
        pid = main_pid(pods.wait_running(name))
        assert pid is not None
        pgid = pgid_of(pid)
        assert pgid is not None
        groups[name] = wait_until(lambda g=pgid: group_members(g), 5, f"{name} processes")  # type: ignore[misc]
        assert pid in groups[name]
    asked = time.monotonic()
    pods.kubectl.run("delete", "pod", "stubborn", "polite", "--wait=false")
    gone: dict[str, float] = {}

    def all_gone() -> bool:
        for name, pids in groups.items():
            if name not in gone and not any(alive(p) for p in pids):
                gone[name] = time.monotonic() - asked
        return len(gone) == len(groups)

    wait_until(all_gone, timeout=10, what=f"processes to stop: {groups}")
    print(
        f"\ndelete -> processes gone: polite {gone['polite']:.3f}s, stubborn (grace 2s) {gone['stubborn']:.3f}s"
    )
    assert gone["polite"] <= 1.5
    assert 1.8 <= gone["stubborn"] <= 4.0
    assert "TERM" in term_log.read_text()  # SIGTERM came first, and was ignored
    for name in groups:
        wait_until(lambda n=name: pods.get(n) is None, 5, f"pod {name} removed from the API")  # type: ignore[misc]


# -------------------------------------------------------------------------------- 5. memory limit


def _cgroup_support(tmp_path: Path) -> tuple[bool, str]:
    async def probe() -> tuple[bool, str]:
        runtime = await ProcessRuntime.open(tmp_path / "cgroup-probe")
        try:
            support = runtime.cgroups
            usable = support.enforced and "memory" in support.controllers
            return usable, support.describe()
        finally:
            await runtime.close()

    return asyncio.run(probe())


def test_memory_limit_is_enforced_as_oomkilled(pods: Pods, tmp_path: Path) -> None:
    usable, description = _cgroup_support(tmp_path)
    if os.geteuid() != 0 or not usable:
        pytest.skip(f"memory limits are not enforced here: {description}")
    doc = pod_doc(
        "hog",
        [
            "python3",
            "-c",
            "import time; b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(60)",
        ],
        restartPolicy="Never",
        container={"resources": {"limits": {"memory": "50Mi"}}},
    )
    pods.apply(doc)
    pod = pods.wait(
        "hog",
        lambda p: "terminated" in (container_status(p).get("state") or {}),
        timeout=20,
        what=f"the 200 MiB allocation to end the container (cgroups: {description})",
    )
    terminated = container_status(pod)["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", (
        f"running as root with usable cgroups ({description}) but the container ended {terminated}"
    )
    assert terminated["exitCode"] == 137
    assert pod["status"]["phase"] == "Failed"


# -------------------------------------------------------------------------------- 7. bad input


def test_bad_pods_report_reasons_and_the_rest_keeps_running(pods: Pods) -> None:
    pods.apply(web_pod("steady"))
    steady = pods.wait_ready("steady")
    steady_pid = main_pid(steady)
    node = pods.node_name()
    hostport = free_port()
    sleeper = ["sleep", "3600"]

    def hostport_pod(name: str, **spec: object) -> JSON:
        return pod_doc(name, sleeper, ports=[{"containerPort": 80, "hostPort": hostport}], **spec)

    bad = [
        pod_doc("no-command", None),
        pod_doc("gvisor", sleeper, runtimeClassName="gvisor"),
        pod_doc(
            "bad-probe",
            sleeper,
            ports=[{"name": "web", "containerPort": 80}],
            container={"livenessProbe": {"httpGet": {"path": "/", "port": "nope"}}},
        ),
        pod_doc("no-such-binary", ["corral-no-such-binary", "--flag"]),
    ]
    pods.apply(*bad)
    pods.apply(hostport_pod("port-a"))
    pods.wait_running("port-a")
    pods.apply(
        hostport_pod("port-b"),  # the scheduler sees the collision
        hostport_pod("port-c", nodeName=node),  # bound directly: the agent sees it
    )

    def steady_still_fine() -> None:
        pod = pods.get("steady")
        assert pod is not None and is_ready(pod) and main_pid(pod) == steady_pid, (
            "the healthy pod was disturbed"
        )

    expected = {
        "no-command": ("CreateContainerConfigError", "has no command"),
        "gvisor": ("CreateContainerConfigError", 'RuntimeClass "gvisor" is not supported'),
        "bad-probe": ("CreateContainerConfigError", 'livenessProbe.httpGet.port: port name "nope" not found'),
        "no-such-binary": ("StartError", '"corral-no-such-binary": executable file not found'),
        "port-c": (
            "CreateContainerConfigError",
            f"port {hostport} is already allocated to pod {pods.ns}/port-a",
        ),
    }
    for name, (reason, text) in expected.items():

        def reported(n: str = name, r: str = reason) -> JSON | None:
            steady_still_fine()
            pod = pods.get(n)
            return pod if waiting_reason(pod) == r else None

        pod = wait_until(reported, 10, f"{name}: waiting reason {reason}")
        assert text in container_status(pod)["state"]["waiting"]["message"]
        assert pod["status"]["phase"] == "Pending"
        wait_until(
            lambda n=name, t=text: [  # type: ignore[misc]
                e
                for e in pods.events(n)
                if e["type"] == "Warning" and e["reason"] == "Failed" and t in e["message"]
            ],
            5,
            f"a Warning/Failed event for {name}",
        )

    def unschedulable() -> JSON | None:
        steady_still_fine()
        pod = pods.get("port-b")
        return (
            pod
            if pod is not None and condition(pod, "PodScheduled").get("reason") == "Unschedulable"
            else None
        )

    pod = wait_until(unschedulable, 10, "port-b: Unschedulable")
    assert "free ports" in condition(pod, "PodScheduled")["message"]
    assert any(e["reason"] == "FailedScheduling" for e in pods.events("port-b"))

    described = pods.kubectl.run("describe", "pod", "no-such-binary").stdout
    assert "StartError" in described and "executable file not found" in described

    # The agent still starts new pods, and the healthy one never noticed.
    pods.apply(web_pod("after"))
    pods.wait_ready("after")
    steady_still_fine()
    assert container_status(pods.get("steady") or {})["restartCount"] == 0
