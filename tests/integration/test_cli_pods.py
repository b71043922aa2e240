"""End-to-end tests of the pod verbs of the ``corral`` CLI: ``logs``, ``exec``, ``get``/``describe`` of pods
and nodes, and ``corral agent`` joining a second node.

A real server (``corral.testing.serve`` via :class:`ServerProcess`) serves the module, its built-in node runs
the pods (plain ``sleep``/python processes), and the CLI runs as subprocesses. Each test works in its own
namespace. Waits poll with a deadline; every process a test starts is stopped by its PID (pods' processes
stop with the server, which does not keep workloads).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from corral.cli.describers import Related, describe
from corral.cli.pods import exit_code_from_status, parse_duration
from corral.testing.process import ServerProcess

DEADLINE = 30.0
CLI = [sys.executable, "-m", "corral.cli.main"]
PYTHON = sys.executable
T = TypeVar("T")


# --- Helpers -------------------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Cluster:
    server: ServerProcess
    home: Path

    @property
    def kubeconfig(self) -> Path:
        return self.server.kubeconfig


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CORRAL_DATA_DIR", "CORRAL_DEBUG")}
    env.update(
        HOME=str(home), CORRAL_DATA_DIR=str(home / "no-corral-here"), NO_COLOR="1", PYTHONUNBUFFERED="1"
    )
    return env


def corral(cluster: Cluster, *args: str, stdin: str | None = None) -> Result:
    done = subprocess.run(
        [*CLI, "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        env=_env(cluster.home),
    )
    return Result(done.returncode, done.stdout, done.stderr)


def corral_popen(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "--kubeconfig", str(cluster.kubeconfig), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(cluster.home),
    )


def ok(result: Result) -> str:
    assert result.code == 0, result
    return result.out


def one_error_line(result: Result, expected: str) -> None:
    assert result.code == 1, result
    assert result.out == "", result
    assert result.err.splitlines() == [expected], result.err


def eventually(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """Poll ``probe`` until it returns something other than None (no fixed sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Signal ``proc`` by its PID and reap it (SIGKILL when it does not exit in time)."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    return proc.returncode


class Lines:
    """A process's stdout lines, collected on a thread so a test can wait for one with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._cond = threading.Condition()
        self._done = False
        assert proc.stdout is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._cond:
                self.seen.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = DEADLINE) -> None:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(regex.search(line) for line in self.seen):
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}")
                self._cond.wait(remaining)

    def wait_closed(self, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"output did not end; saw {self.seen}")
                self._cond.wait(remaining)


def pod_manifest(
    name: str,
    command: list[str],
    *,
    node: str | None = None,
    restart_policy: str = "Always",
    extra: dict[str, Any] | None = None,
) -> str:
    container: dict[str, Any] = {"name": "main", "image": "none", "command": command, **(extra or {})}
    spec: dict[str, Any] = {"containers": [container], "restartPolicy": restart_policy}
    if node:
        spec["nodeName"] = node
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})


def get_json(cluster: Cluster, *args: str) -> dict[str, Any] | None:
    result = corral(cluster, "get", *args, "-o", "json")
    if result.code != 0:
        return None
    doc: dict[str, Any] = json.loads(result.out)
    return doc


def wait_running(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        pod = get_json(cluster, "pod", name, "-n", ns)
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        if pod and pod["status"].get("phase") == "Running" and statuses and statuses[0].get("ready"):
            return pod
        return None

    return eventually(running, f"pod {ns}/{name} to run")


def run_pod(cluster: Cluster, ns: str, name: str, command: list[str], **kwargs: Any) -> dict[str, Any]:
    ok(corral(cluster, "apply", "-n", ns, "-f", "-", stdin=pod_manifest(name, command, **kwargs)))
    return wait_running(cluster, ns, name)


def wait_logs(cluster: Cluster, ns: str, name: str, expected: str, *extra: str) -> str:
    def logs() -> str | None:
        result = corral(cluster, "logs", name, "-n", ns, *extra)
        return result.out if result.code == 0 and expected in result.out else None

    return eventually(logs, f"{expected!r} in the logs of {ns}/{name}")


def python_pod(script: str) -> list[str]:
    return [PYTHON, "-u", "-c", script]


SLEEPER = python_pod("import time\nprint('line 1')\nprint('line 2')\nprint('line 3')\ntime.sleep(300)")


# --- Fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("corral-cli-pods")
    home = root / "home"
    home.mkdir()
    server = ServerProcess(root / "data").start()
    try:
        yield Cluster(server, home)
    finally:
        server.stop()


@pytest.fixture
def ns(cluster: Cluster) -> str:
    name = f"p-{uuid.uuid4().hex[:10]}"
    ok(
        corral(
            cluster, "apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
        )
    )
    return name


@pytest.fixture(scope="module")
def node_name(cluster: Cluster) -> str:
    out = ok(corral(cluster, "get", "nodes", "-o", "name"))
    names = [line.split("/", 1)[1] for line in out.splitlines()]
    assert len(names) == 1, names
    return names[0]


# --- logs ----------------------------------------------------------------------------------------------


def test_logs_prints_output_tail_timestamps_and_since(cluster: Cluster, ns: str) -> None:
    run_pod(cluster, ns, "talker", SLEEPER)
    assert wait_logs(cluster, ns, "talker", "line 3") == "line 1\nline 2\nline 3\n"
    assert ok(corral(cluster, "logs", "talker", "-n", ns, "--tail", "1")) == "line 3\n"
    assert ok(corral(cluster, "logs", "pod/talker", "-n", ns, "--tail=2")) == "line 2\nline 3\n"
    assert ok(corral(cluster, "logs", "talker", "-n", ns, "-c", "main", "--since", "1h")).count("line") == 3
    stamped = ok(corral(cluster, "logs", "talker", "-n", ns, "--timestamps", "--tail", "1"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z line 3\n", stamped), stamped
    assert ok(corral(cluster, "logs", "talker", "-n", ns, "--limit-bytes", "4")) == "line"


def test_logs_follow_streams_new_lines_until_interrupted(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    trigger = tmp_path / "go"
    script = (
        "import os, time\nprint('first')\n"
        f"while not os.path.exists({str(trigger)!r}): time.sleep(0.05)\n"
        "print('second')\ntime.sleep(300)"
    )
    run_pod(cluster, ns, "follower", python_pod(script))
    wait_logs(cluster, ns, "follower", "first")
    proc = corral_popen(cluster, "logs", "-f", "follower", "-n", ns)
    try:
        lines = Lines(proc)
        lines.wait_for("^first$")
        trigger.touch()
        lines.wait_for("^second$")  # appended after the stream started
        assert proc.poll() is None  # still following
        code = stop_process(proc, signal.SIGINT)
    finally:
        stop_process(proc, signal.SIGKILL)
    assert code == 0
    assert lines.seen == ["first", "second"]
    assert proc.stderr is not None and proc.stderr.read() == ""


def test_logs_follow_ends_when_the_container_exits(cluster: Cluster, ns: str, tmp_path: Path) -> None:
    trigger = tmp_path / "done"
    script = (
        "import os, time\nprint('working')\n"
        f"while not os.path.exists({str(trigger)!r}): time.sleep(0.05)\nprint('bye')"
    )
    run_pod(cluster, ns, "finisher", python_pod(script), restart_policy="Never")
    proc = corral_popen(cluster, "logs", "-f", "finisher", "-n", ns)
    try:
        lines = Lines(proc)
        lines.wait_for("^working$")
        trigger.touch()
        lines.wait_closed()  # the server ends the stream once the process has exited
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        stop_process(proc, signal.SIGKILL)
    assert lines.seen == ["working", "bye"]


def test_logs_errors_are_one_line(cluster: Cluster, ns: str) -> None:
    run_pod(cluster, ns, "quiet", ["sleep", "300"])
    one_error_line(
        corral(cluster, "logs", "nope", "-n", ns), 'Error from server (NotFound): pods "nope" not found'
    )
    one_error_line(
        corral(cluster, "logs", "quiet", "-n", ns, "-c", "bad"),
        "Error from server (BadRequest): container bad is not valid for pod quiet",
    )
    one_error_line(
        corral(cluster, "logs", "quiet", "-n", ns, "--previous"),
        'Error from server (BadRequest): previous terminated container "main" in pod "quiet" not found',
    )
    one_error_line(
        corral(cluster, "logs", "quiet", "-n", ns, "--since", "5x"),
        'error: invalid argument "5x" for "--since" flag: time: invalid duration "5x"',
    )
    one_error_line(
        corral(cluster, "logs", "deploy/quiet", "-n", ns),
        "error: cannot use 'deploy/quiet': only pods are supported (give a pod name or pod/NAME)",
    )


def test_logs_previous_shows_the_restarted_instance(cluster: Cluster, ns: str) -> None:
    script = (
        "import os, sys, time\n"
        "marker = os.path.join(os.environ['HOME'], 'ran-once')\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close(); print('first life'); sys.exit(2)\n"
        "print('second life'); time.sleep(300)"
    )
    manifest = json.loads(pod_manifest("phoenix", python_pod(script)))
    manifest["metadata"]["annotations"] = {"corral.dev/restart-backoff-base": "0"}
    ok(corral(cluster, "apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest)))
    wait_logs(cluster, ns, "phoenix", "second life")
    assert ok(corral(cluster, "logs", "phoenix", "-n", ns, "-p")) == "first life\n"


# --- exec ----------------------------------------------------------------------------------------------


def test_exec_separates_streams_and_returns_the_exit_code(cluster: Cluster, ns: str) -> None:
    run_pod(cluster, ns, "shell", ["sleep", "300"], extra={"env": [{"name": "GREETING", "value": "hi"}]})
    result = corral(
        cluster, "exec", "shell", "-n", ns, "--", "sh", "-c", 'echo "$GREETING out"; echo err >&2; exit 3'
    )
    assert result == Result(3, "hi out\n", "err\ncommand terminated with exit code 3\n")
    assert corral(cluster, "exec", "shell", "-n", ns, "--", "true") == Result(0, "", "")
    assert corral(cluster, "exec", "pod/shell", "-n", ns, "-c", "main", "--", "sh", "-c", "exit 7").code == 7
    # A large output crosses many frames and arrives whole; without -i the command's stdin is at EOF.
    big = corral(
        cluster, "exec", "shell", "-n", ns, "--", PYTHON, "-c", "import sys; sys.stdout.write('x' * 300000)"
    )
    assert big.code == 0 and big.out == "x" * 300000
    assert corral(cluster, "exec", "shell", "-n", ns, "--", "cat") == Result(0, "", "")


def test_exec_stdin_is_forwarded_and_closed(cluster: Cluster, ns: str) -> None:
    run_pod(cluster, ns, "echoer", ["sleep", "300"])
    assert corral(cluster, "exec", "-i", "echoer", "-n", ns, "--", "cat", stdin="hello\nworld\n") == Result(
        0, "hello\nworld\n", ""
    )
    payload = "".join(f"{i:06d}\n" for i in range(40000))  # 280 KB: several stdin frames
    counted = corral(cluster, "exec", "echoer", "-i", "-n", ns, "--", "wc", "-l", stdin=payload)
    assert counted.code == 0 and counted.out.strip() == "40000"


def test_exec_errors_are_one_line(cluster: Cluster, ns: str) -> None:
    run_pod(cluster, ns, "target", ["sleep", "300"])
    one_error_line(
        corral(cluster, "exec", "nope", "-n", ns, "--", "true"),
        'Error from server (NotFound): pods "nope" not found',
    )
    one_error_line(
        corral(cluster, "exec", "target", "-n", ns, "-c", "bad", "--", "true"),
        "Error from server (BadRequest): container bad is not valid for pod target",
    )
    one_error_line(
        corral(cluster, "exec", "target", "-n", ns),
        "error: you must specify at least one command for the container",
    )
    missing = corral(cluster, "exec", "target", "-n", ns, "--", "no-such-command")
    assert missing.code == 1 and missing.out == ""
    assert missing.err.startswith("Error from server (InternalError): "), missing.err
    assert 'exec: "no-such-command": executable file not found in $PATH' in missing.err
    assert len(missing.err.splitlines()) == 1


# --- get and describe ----------------------------------------------------------------------------------


def test_get_pods_and_nodes_show_kubectl_columns(cluster: Cluster, ns: str, node_name: str) -> None:
    run_pod(cluster, ns, "web", ["sleep", "300"])
    lines = ok(corral(cluster, "get", "pods", "-n", ns)).splitlines()
    assert lines[0] == "NAME   READY   STATUS    RESTARTS   AGE"
    assert re.fullmatch(r"web    1/1     Running   0          \d+s", lines[1]), lines
    wide = ok(corral(cluster, "get", "pods", "-n", ns, "-o", "wide")).splitlines()
    assert re.fullmatch(
        r"NAME   READY   STATUS    RESTARTS   AGE\s+IP\s+NODE\s+NOMINATED NODE   READINESS GATES", wide[0]
    ), wide
    assert re.fullmatch(
        rf"web    1/1     Running   0          \d+s\s+127\.0\.0\.1\s+{re.escape(node_name)}\s+<none>\s+<none>",
        wide[1],
    ), wide
    nodes = ok(corral(cluster, "get", "nodes")).splitlines()
    assert re.fullmatch(r"NAME\s+STATUS   ROLES    AGE\s+VERSION", nodes[0]), nodes
    assert re.fullmatch(
        rf"{re.escape(node_name)}\s+Ready    <none>   \d+[smh]\S*\s+v1\.32\.0-corral", nodes[1]
    ), nodes
    wide_nodes = ok(corral(cluster, "get", "nodes", "-o", "wide")).splitlines()
    assert wide_nodes[0].split() == [
        "NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]  # fmt: skip
    assert " 127.0.0.1 " in wide_nodes[1] and wide_nodes[1].endswith("process://corral-0.1")


def test_describe_pod_sections(cluster: Cluster, ns: str, node_name: str) -> None:
    extra = {
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "GREETING", "value": "hello"},
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "resources": {
            "limits": {"cpu": "500m", "memory": "64Mi"},
            "requests": {"cpu": "250m", "memory": "32Mi"},
        },
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
    }
    pod = run_pod(cluster, ns, "described", ["sleep", "300"], extra=extra)
    host_port = json.loads(pod["metadata"]["annotations"]["corral.dev/ports"])["main/8080/TCP"]
    out = ok(corral(cluster, "describe", "pod", "described", "-n", ns))
    lines = out.splitlines()
    assert lines[:3] == ["Name:         described", f"Namespace:    {ns}", "Priority:     0"]
    assert lines[3] == f"Node:         {node_name}/127.0.0.1"
    for expected in (
        "Status:       Running",
        "IP:           127.0.0.1",
        "IPs:",
        "  IP:  127.0.0.1",
        "Containers:",
        "  main:",
        "    Image:         none",
        "    Port:          8080/TCP",
        f"    Host Port:     {host_port}/TCP",
        "    Command:",
        "      sleep",
        "      300",
        "    Ready:          True",
        "    Restart Count:  0",
        "    Limits:",
        "      cpu:     500m",
        "      memory:  64Mi",
        "    Requests:",
        "      cpu:      250m",
        "      memory:   32Mi",
        "    Readiness:  exec [true] delay=0s timeout=1s period=1s #success=1 #failure=3",
        "    Environment:",
        "      GREETING:  hello",
        "      ME:        described (v1:metadata.name)",
        "    Mounts:      <none>",
        "Conditions:",
        "  Type                        Status",
        "  PodReadyToStartContainers   True",
        "  Ready                       True",
        "Volumes:                      <none>",
        "QoS Class:                    Burstable",
        "Node-Selectors:               <none>",
    ):
        assert expected in lines, (expected, out)
    assert re.search(r"^    Container ID:  process://\d+$", out, re.M), out
    assert re.search(
        r"^    State:          Running\n      Started:      \w{3}, \d\d \w{3} \d{4} ", out, re.M
    ), out
    assert re.search(
        r"^Tolerations:\s+node\.kubernetes\.io/not-ready:NoExecute op=Exists for 5s$", out, re.M
    )
    at = lines.index("Events:")
    assert lines[at + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert any(
        re.fullmatch(r"  Normal\s+Started\s+\S+\s+kubelet\s+Started container main", line) for line in lines
    )


def test_describe_pod_shows_last_state_after_a_restart(cluster: Cluster, ns: str) -> None:
    script = (
        "import os, sys, time\n"
        "marker = os.path.join(os.environ['HOME'], 'crashed')\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close(); sys.exit(4)\n"
        "time.sleep(300)"
    )
    manifest = json.loads(pod_manifest("crasher", python_pod(script)))
    manifest["metadata"]["annotations"] = {"corral.dev/restart-backoff-base": "0"}
    ok(corral(cluster, "apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest)))

    def restarted() -> str | None:
        out = ok(corral(cluster, "describe", "pod", "crasher", "-n", ns))
        return out if "Restart Count:  1" in out and "State:          Running" in out else None

    out = eventually(restarted, "the container to restart once")
    assert re.search(
        r"^    Last State:     Terminated\n      Reason:       Error\n      Exit Code:    4\n"
        r"      Started:      .+\n      Finished:     .+$",
        out,
        re.M,
    ), out


def test_describe_node_sections(cluster: Cluster, ns: str, node_name: str) -> None:
    extra = {"resources": {"requests": {"cpu": "100m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}}
    run_pod(cluster, ns, "resident", ["sleep", "300"], extra=extra)
    out = ok(corral(cluster, "describe", "node", node_name))
    lines = out.splitlines()
    assert lines[0] == f"Name:               {node_name}"
    assert lines[1] == "Roles:              <none>"
    assert lines[2] == "Labels:             beta.kubernetes.io/arch=" + lines[2].rsplit("=", 1)[1]
    for expected in (
        f"                    kubernetes.io/hostname={node_name}",
        "                    kubernetes.io/os=linux",
        "Annotations:        <none>",
        "Taints:             <none>",
        "Unschedulable:      false",
        "Lease:",
        f"  HolderIdentity:  {node_name}",
        "  AcquireTime:     <unset>",
        "Addresses:",
        "  InternalIP:  127.0.0.1",
        "Capacity:",
        "  pods:               110",
        "Allocatable:",
        "System Info:",
        "  Operating System:           linux",
        "  Container Runtime Version:  process://corral-0.1",
        "  Kubelet Version:            v1.32.0-corral",
        "Allocated resources:",
        "  (Total limits may be over 100 percent, i.e., overcommitted.)",
    ):
        assert expected in lines, (expected, out)
    at = lines.index("Conditions:")
    assert lines[at + 1].split() == [
        "Type", "Status", "LastHeartbeatTime", "LastTransitionTime", "Reason", "Message",
    ]  # fmt: skip
    assert re.fullmatch(
        r"  Ready\s+True\s+.+KubeletReady\s+corral agent is posting ready status", lines[at + 6]
    )
    assert re.search(r"^Non-terminated Pods:\s+\(\d+ in total\)$", out, re.M), out
    row = next(line for line in lines if re.match(rf"  {ns}\s+resident\s", line))
    assert re.fullmatch(
        rf"  {ns}\s+resident\s+100m \(\d+%\)\s+0 \(0%\)\s+16Mi \(0%\)\s+32Mi \(0%\)\s+\d+s", row
    ), row
    assert re.search(r"^  cpu\s+\d+m \(\d+%\)\s+\d+m? \(\d+%\)$", out, re.M), out
    assert re.search(r"^Events:\s+", out, re.M)


# --- corral agent --------------------------------------------------------------------------------------


def _node_ready(cluster: Cluster, name: str) -> bool | None:
    node = get_json(cluster, "node", name)
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return True if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None


def _gone(cluster: Cluster, ns: str, name: str) -> bool | None:
    result = corral(cluster, "get", "pod", name, "-n", ns)
    return True if result.code == 1 and "NotFound" in result.err else None


def _pid(pod: dict[str, Any]) -> int:
    return int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("process://"))


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def test_agent_joins_a_node_that_runs_its_own_pods(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = ServerProcess(tmp_path / "server").start()
    agent: subprocess.Popen[str] | None = None
    try:
        cluster = Cluster(server, home)
        local_node = ok(corral(cluster, "get", "nodes", "-o", "name")).strip().split("/", 1)[1]
        token = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]["token"]
        agent_dir = tmp_path / "agent"
        agent = subprocess.Popen(
            [
                *CLI, "agent", "--server", server.url, "--token", token,
                "--ca-file", str(tmp_path / "server" / "pki" / "ca.crt"),
                "--name", "remote-1", "--data-dir", str(agent_dir), "--stop-workloads-on-exit",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(home),
        )  # fmt: skip
        output = Lines(agent)
        output.wait_for(
            r"^Corral agent is running as node remote-1 \(address 127\.0\.0\.1, data dir .+\), joined "
        )
        eventually(lambda: _node_ready(cluster, "remote-1"), "node remote-1 to be Ready")
        nodes = ok(corral(cluster, "get", "nodes")).splitlines()
        assert sorted(line.split()[0] for line in nodes[1:]) == sorted([local_node, "remote-1"])

        ns = "default"
        home_pod = run_pod(cluster, ns, "homebody", ["sleep", "300"], node=local_node)
        far = run_pod(cluster, ns, "far", ["sleep", "300"], node="remote-1")
        assert far["spec"]["nodeName"] == "remote-1" and far["status"]["hostIP"] == "127.0.0.1"
        pid = _pid(far)
        assert _cmdline(pid) == ["sleep", "300"]
        # The remote agent runs it from its own data dir; the built-in node never saw it.
        assert (agent_dir / "pods" / far["metadata"]["uid"]).is_dir()
        assert not (tmp_path / "server" / "agent" / "pods" / far["metadata"]["uid"]).exists()
        one_error_line(
            corral(cluster, "logs", "far"),
            # Joined with a static token, not a join token: no serving certificate, so no node API.
            'Error from server (ServiceUnavailable): node "remote-1" publishes no node API '
            "(status.daemonEndpoints.kubeletEndpoint.Port is 0): its agent cannot serve logs, exec or metrics "
            "— see its log for why",
        )

        ok(corral(cluster, "delete", "pod", "far"))
        eventually(lambda: _gone(cluster, ns, "far"), "pod far to be deleted")
        eventually(lambda: True if _cmdline(pid) != ["sleep", "300"] else None, "the remote process to stop")

        # Neither agent touched the other's pod.
        after = wait_running(cluster, ns, "homebody")
        assert _pid(after) == _pid(home_pod) and _cmdline(_pid(after)) == ["sleep", "300"]
        assert after["status"]["containerStatuses"][0]["restartCount"] == 0

        assert stop_process(agent, signal.SIGTERM) == 0
        output.wait_for(r"^Corral agent stopped")
        assert agent.stderr is not None and "Traceback" not in agent.stderr.read()
    finally:
        if agent is not None:
            stop_process(agent, signal.SIGKILL)
            for stream in (agent.stdout, agent.stderr):
                if stream is not None:
                    stream.close()
        server.stop()


def test_agent_refuses_bad_options_with_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()

    def agent(*args: str) -> Result:
        done = subprocess.run(
            [*CLI, "agent", *args], capture_output=True, text=True, timeout=DEADLINE, env=_env(home)
        )
        return Result(done.returncode, done.stdout, done.stderr)

    data = str(tmp_path / "a")
    one_error_line(
        agent(
            "--server", "https://127.0.0.1:1", "--token", "t", "--ca-file", "/nonexistent", "--data-dir", data
        ),
        "error: cannot read --ca-file /nonexistent: No such file or directory",
    )
    one_error_line(
        agent("--server", "127.0.0.1:6443", "--data-dir", data),
        "error: --server must be an http:// or https:// URL, got '127.0.0.1:6443'",
    )
    unreachable = agent("--server", "https://127.0.0.1:1", "--token", "t", "--name", "n1", "--data-dir", data)
    assert unreachable.code == 1 and len(unreachable.err.splitlines()) == 1, unreachable
    assert unreachable.err.startswith("error: cannot reach the Corral API server at https://127.0.0.1:1")
    one_error_line(
        agent("--server", "https://127.0.0.1:1", "--name", "n2", "--data-dir", data),
        f"error: data dir {data} belongs to node 'n1'; use another --data-dir for node 'n2'",
    )


# --- Pure helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("5s", 5.0), ("2m", 120.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("250ms", 0.25)],
)
def test_parse_duration_reads_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_exit_code_from_status() -> None:
    assert exit_code_from_status({"status": "Success"}) == 0
    failure = {
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "42"}]},
    }
    assert exit_code_from_status(failure) == 42
    error = exit_code_from_status(
        {"status": "Failure", "reason": "BadRequest", "message": "nope", "code": 400}
    )
    assert not isinstance(error, int)
    assert (error.code, error.reason, error.message) == (400, "BadRequest", "nope")


def test_describe_node_totals_requests_against_allocatable() -> None:
    node = {
        "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}, "nodeInfo": {}},
    }

    def pod(name: str, cpu: str, memory: str) -> dict[str, Any]:
        resources = {"requests": {"cpu": cpu, "memory": memory}}
        return {
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {
                "containers": [{"name": "c", "resources": resources}, {"name": "d", "resources": resources}]
            },
        }

    related = Related(pods=[pod("a", "250m", "128Mi"), pod("b", "500m", "64Mi")])
    now = datetime(2024, 1, 1, 0, 1, tzinfo=UTC)
    lines = describe("Node", node, related, now, namespaced=False).splitlines()
    assert lines[1] == "Roles:              control-plane"
    assert "Taints:             k=v:NoSchedule" in lines
    assert (
        "  default                     a       500m (25%)    0 (0%)      256Mi (25%)      0 (0%)         60s"
        in lines
    )
    assert (
        "  default                     b       1 (50%)       0 (0%)      128Mi (12%)      0 (0%)         60s"
        in lines
    )
    assert "  cpu                1500m (75%)  0 (0%)" in lines
    assert "  memory             384Mi (37%)  0 (0%)" in lines
