"""End-to-end tests of the ``corral`` CLI: a real ``corral up`` process, the CLI run as subprocesses.

One server (``corral up --port 0 --store memory``) serves the module; each test works in its own namespace.
The ready line is the synchronisation point for ``up`` (no sleeps: every wait polls with a deadline), and
every process a test starts is stopped by its PID in teardown. Output is asserted exactly where kubectl's
format is the contract (tables, apply/delete lines, error lines).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from corral.cli.kubeconfig import merge_documents
from corral.cli.output import tabwrite

DEADLINE = 30.0
CLI = [sys.executable, "-m", "corral.cli.main"]
READY = re.compile(r"^Corral is ready at (?P<url>\S+) — kubeconfig: (?P<kubeconfig>.+)$")
AGE = r"\d+s"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels:
    app: hello
spec:
  replicas: 0
  selector:
    matchLabels:
      app: hello
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
        - name: web
          image: busybox
          command: ["sleep", "3600"]
          ports:
            - name: http
              containerPort: 8080
          env:
            - name: GREETING
              value: "{greeting}"
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  labels:
    tier: {tier}
data:
  GREETING: Hello
"""


# --- Processes -----------------------------------------------------------------------------------------


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CORRAL_DATA_DIR", "CORRAL_DEBUG")}
    env["HOME"] = str(home)
    env["CORRAL_DATA_DIR"] = str(home / "no-corral-here")  # the CLI must never find a real ~/.corral
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LineReader:
    """Collects a process's stdout lines on a thread so the test can wait for one with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = DEADLINE) -> re.Match[str]:
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {regex.pattern!r} within {timeout}s; saw {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"output ended before a line matched {regex.pattern!r}; saw {self.seen}")
            self.seen.append(line)
            match = regex.search(line)
            if match:
                return match


def stop_process(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal ``proc`` by its PID and reap it; SIGKILL if it does not exit in time. Returns its exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


@dataclass
class Server:
    url: str
    kubeconfig: Path
    data_dir: Path
    home: Path
    proc: subprocess.Popen[str]


def start_up(
    data_dir: Path, home: Path, *extra: str
) -> tuple[subprocess.Popen[str], LineReader, re.Match[str]]:
    """``corral up --port 0`` with stderr in ``<home>/up.log`` (a file, so a chatty server cannot block)."""
    with open(home / "up.log", "ab") as log:
        proc = subprocess.Popen(
            [*CLI, "up", "--data-dir", str(data_dir), "--port", "0", *extra],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=_base_env(home),
        )
    reader = LineReader(proc)
    try:
        match = reader.wait_for(READY)
    except BaseException:
        stop_process(proc, signal.SIGKILL)
        raise
    return proc, reader, match


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("corral-cli")
    home = root / "home"
    home.mkdir()
    proc, _reader, match = start_up(root / "data", home, "--store", "memory")
    try:
        yield Server(match["url"], Path(match["kubeconfig"]), root / "data", home, proc)
    finally:
        stop_process(proc)


@dataclass
class Result:
    code: int
    out: str
    err: str


def corral(
    server: Server | None,
    *args: str,
    stdin: str | None = None,
    home: Path | None = None,
    env: dict[str, str] | None = None,
) -> Result:
    """Run the CLI to completion (``--kubeconfig`` of ``server`` first, when given)."""
    argv = [*CLI, *(["--kubeconfig", str(server.kubeconfig)] if server else []), *args]
    run_env = _base_env(home or (server.home if server else Path("/nonexistent")))
    run_env.update(env or {})
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=DEADLINE, env=run_env)
    return Result(done.returncode, done.stdout, done.stderr)


def ok(result: Result) -> str:
    assert result.code == 0, result
    return result.out


@pytest.fixture
def ns(server: Server, request: pytest.FixtureRequest) -> str:
    name = f"{re.sub(r'[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')}-{uuid.uuid4().hex[:6]}"
    assert (
        ok(
            corral(
                server,
                "apply",
                "-f",
                "-",
                stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n",
            )
        )
        == f"namespace/{name} created\n"
    )
    return name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_one_error_line(result: Result, expected: str | re.Pattern[str]) -> None:
    assert result.code != 0, result
    assert result.out == "", result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    if isinstance(expected, str):
        assert lines[0] == expected
    else:
        assert expected.fullmatch(lines[0]), lines[0]
    assert "Traceback" not in result.err


# --- corral up -----------------------------------------------------------------------------------------


def test_up_writes_private_kubeconfig_naming_the_ready_url(server: Server) -> None:
    assert server.kubeconfig == server.data_dir / "kubeconfig"
    assert stat.S_IMODE(server.kubeconfig.stat().st_mode) == 0o600
    doc = yaml.safe_load(server.kubeconfig.read_text())
    assert doc["clusters"][0]["cluster"]["server"] == server.url
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", server.url)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_up_stops_cleanly_on_signal(tmp_path: Path, sig: int) -> None:
    proc, reader, _ = start_up(tmp_path / "data", tmp_path)  # the default SQLite store
    try:
        reader.wait_for(r"^  export KUBECONFIG=" + re.escape(str(tmp_path / "data" / "kubeconfig")))
        started = time.monotonic()
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        reader.wait_for(r"^Corral stopped\.$")
        assert "Traceback" not in (tmp_path / "up.log").read_text()
    finally:
        stop_process(proc, signal.SIGKILL)
    assert (tmp_path / "data" / "state.db").exists()


def test_up_on_a_busy_port_is_one_line_and_fails(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [*CLI, "up", "--data-dir", str(tmp_path / "data"), "--port", str(port), "--store", "memory"],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            env=_base_env(tmp_path),
        )
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: address already in use (is another `corral up` running? "
        "choose another port with --port)"
    ]


# --- apply ---------------------------------------------------------------------------------------------


def test_apply_reports_created_then_unchanged_then_configured(server: Server, ns: str) -> None:
    manifest = DEPLOYMENT.format(greeting="hi")
    assert (
        ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=manifest)) == "deployment.apps/hello created\n"
    )
    assert (
        ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=manifest))
        == "deployment.apps/hello unchanged\n"
    )
    changed = DEPLOYMENT.format(greeting="hello again")
    assert (
        ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=changed))
        == "deployment.apps/hello configured\n"
    )
    got = json.loads(ok(corral(server, "get", "deploy", "hello", "-n", ns, "-o", "json")))
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "GREETING", "value": "hello again"}
    ]


def test_apply_directory_sorted_with_lists_and_json(server: Server, ns: str, tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        CONFIGMAP.format(name="b", tier="x") + "---\n" + CONFIGMAP.format(name="c", tier="x")
    )
    items = [yaml.safe_load(CONFIGMAP.format(name=n, tier="y")) for n in ("a1", "a2")]
    (tmp_path / "a.json").write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent="\t")
    )
    (tmp_path / "notes.txt").write_text("not a manifest")
    assert ok(corral(server, "apply", "-f", str(tmp_path), "-n", ns)) == (
        "configmap/a1 created\nconfigmap/a2 created\nconfigmap/b created\nconfigmap/c created\n"
    )


def test_apply_namespace_from_object_wins_and_conflicts_are_errors(server: Server, ns: str) -> None:
    manifest = CONFIGMAP.format(name="placed", tier="z").replace(
        "  name: placed", f"  name: placed\n  namespace: {ns}"
    )
    assert ok(corral(server, "apply", "-f", "-", stdin=manifest)) == "configmap/placed created\n"
    assert ok(corral(server, "get", "cm", "placed", "-n", ns, "-o", "name")) == "configmap/placed\n"
    result = corral(server, "apply", "-f", "-", "-n", "default", stdin=manifest)
    assert_one_error_line(
        result,
        f'error: the namespace from the provided object "{ns}" does not match the '
        f"namespace \"default\". You must pass '--namespace={ns}' to perform this operation.",
    )


def test_apply_unknown_kind_continues_with_the_rest(server: Server, ns: str) -> None:
    manifest = "apiVersion: v1\nkind: Foo\nmetadata:\n  name: x\n---\n" + CONFIGMAP.format(
        name="real", tier="a"
    )
    result = corral(server, "apply", "-n", ns, "-f", "-", stdin=manifest)
    assert result.code == 1
    assert result.out == "configmap/real created\n"
    assert result.err == (
        'error: resource mapping not found for name: "x" from "-": no matches for kind "Foo" '
        'in version "v1"\n'
    )


# --- get -----------------------------------------------------------------------------------------------


def test_get_prints_kubectl_columns(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT.format(greeting="hi")))
    lines = ok(corral(server, "get", "deploy", "-n", ns)).splitlines()
    assert lines[0] == "NAME    READY   UP-TO-DATE   AVAILABLE   AGE"
    assert re.fullmatch(rf"hello   0/0     0            0           {AGE}", lines[1]), lines
    assert len(lines) == 2


def test_get_wide_adds_containers_images_selector(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT.format(greeting="hi")))
    lines = ok(corral(server, "get", "deployments.apps", "-n", ns, "-o", "wide")).splitlines()
    assert lines[0] == "NAME    READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   IMAGES    SELECTOR"
    assert re.fullmatch(
        rf"hello   0/0     0            0           {AGE} +web          busybox   app=hello", lines[1]
    ), lines


def test_get_single_object_and_missing_object(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name="one", tier="a")))
    lines = ok(corral(server, "get", "cm/one", "-n", ns)).splitlines()
    assert lines[0] == "NAME   DATA   AGE"
    assert re.fullmatch(rf"one    1      {AGE}", lines[1])
    result = corral(server, "get", "cm", "missing", "-n", ns)
    assert_one_error_line(result, 'Error from server (NotFound): configmaps "missing" not found')


def test_get_yaml_round_trips(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT.format(greeting="hi")))
    text = ok(corral(server, "get", "deploy", "hello", "-n", ns, "-o", "yaml"))
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "apps/v1"
    assert doc["kind"] == "Deployment"
    assert doc["metadata"]["namespace"] == ns
    assert "managedFields" not in doc["metadata"]
    assert re.search(r'^  resourceVersion: "\d+"$', text, re.M)  # quoted like kubectl, so it stays a string
    assert doc == json.loads(ok(corral(server, "get", "deploy", "hello", "-n", ns, "-o", "json")))
    assert ok(corral(server, "apply", "-f", "-", stdin=text)) == "deployment.apps/hello unchanged\n"
    listed = yaml.safe_load(ok(corral(server, "get", "deploy", "-n", ns, "-o", "yaml")))
    assert listed["kind"] == "List"
    assert listed["apiVersion"] == "v1"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["hello"]
    assert listed["items"][0] == doc


def test_get_label_selector_filters(server: Server, ns: str) -> None:
    for name, tier in (("front", "web"), ("back", "db"), ("edge", "web")):
        ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name=name, tier=tier)))
    assert ok(corral(server, "get", "cm", "-n", ns, "-l", "tier=web", "-o", "name")) == (
        "configmap/edge\nconfigmap/front\n"
    )
    assert ok(corral(server, "get", "cm", "-n", ns, "-l", "tier!=web", "-o", "name")) == "configmap/back\n"
    table = ok(corral(server, "get", "cm", "-n", ns, "-l", "tier=db")).splitlines()
    assert [line.split()[0] for line in table] == ["NAME", "back"]


def test_get_all_namespaces_adds_namespace_column(server: Server, ns: str) -> None:
    other = f"{ns[:50]}-b"
    ok(
        corral(
            server, "apply", "-f", "-", stdin=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {other}\n"
        )
    )
    label = uuid.uuid4().hex[:10]
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name="mine", tier=label)))
    ok(corral(server, "apply", "-n", other, "-f", "-", stdin=CONFIGMAP.format(name="theirs", tier=label)))
    lines = ok(corral(server, "get", "cm", "-A", "-l", f"tier={label}")).splitlines()
    width = max(len(ns), len(other), len("NAMESPACE")) + 3
    assert lines[0] == "NAMESPACE".ljust(width) + "NAME     DATA   AGE"
    rows = sorted(lines[1:])
    assert len(rows) == 2
    assert re.fullmatch(re.escape(ns.ljust(width)) + rf"mine     1      {AGE}", rows[0]), rows
    assert re.fullmatch(re.escape(other.ljust(width)) + rf"theirs   1      {AGE}", rows[1]), rows


def test_get_nothing_says_so_on_stderr(server: Server, ns: str) -> None:
    result = corral(server, "get", "deploy", "-n", ns)
    assert (result.code, result.out, result.err) == (0, "", f"No resources found in {ns} namespace.\n")


def test_get_several_kinds_prefixes_names(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name="conf", tier="a")))
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT.format(greeting="hi")))
    out = ok(corral(server, "get", "deploy,cm", "-n", ns))
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].splitlines()[0] == "NAME                    READY   UP-TO-DATE   AVAILABLE   AGE"
    assert blocks[0].splitlines()[1].startswith("deployment.apps/hello   0/0")
    assert blocks[1].splitlines()[0] == "NAME             DATA   AGE"
    assert blocks[1].splitlines()[1].startswith("configmap/conf   1      ")


def test_get_watch_streams_new_rows_until_interrupted(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name="first", tier="a")))
    proc = subprocess.Popen(
        [*CLI, "--kubeconfig", str(server.kubeconfig), "get", "cm", "-w", "-n", ns],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_base_env(server.home),
    )
    try:
        reader = LineReader(proc)
        reader.wait_for(r"^NAME\s+DATA\s+AGE$")
        reader.wait_for(r"^first\s+1\s+")
        ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name="second", tier="a")))
        reader.wait_for(rf"^second\s+1\s+{AGE}$")
        assert stop_process(proc, signal.SIGINT) == 0
    finally:
        stop_process(proc, signal.SIGKILL)


# --- describe ------------------------------------------------------------------------------------------


def test_describe_deployment_sections(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT.format(greeting="hi")))
    out = ok(corral(server, "describe", "deploy", "hello", "-n", ns))
    lines = out.splitlines()
    assert lines[0] == "Name:                   hello"
    assert lines[1] == f"Namespace:              {ns}"
    assert lines[2].startswith("CreationTimestamp:      ")
    # The deployment controller records the revision (replicas 0: no pods, so the rest stays still).
    assert lines[3:6] == [
        "Labels:                 app=hello",
        "Annotations:            deployment.kubernetes.io/revision: 1",
        "Selector:               app=hello",
    ] or lines[3:6] == [
        "Labels:                 app=hello",
        "Annotations:            <none>",
        "Selector:               app=hello",
    ]
    for expected in (
        "Replicas:               0 desired | 0 updated | 0 total | 0 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "Pod Template:",
        "  Labels:  app=hello",
        "  Containers:",
        "   web:",
        "    Image:      busybox",
        "    Port:       8080/TCP",
        "    Host Port:  0/TCP",
        "    Command:",
        "      sleep",
        "    Environment:",
        "      GREETING:    hi",
    ):
        assert expected in lines, (expected, out)
    assert re.search(r"^Events:\s+(<none>|$)", out, re.M)


def test_describe_configmap_and_events(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name="settings", tier="a")))
    out = ok(corral(server, "describe", "cm", "settings", "-n", ns))
    assert out == (
        f"Name:         settings\nNamespace:    {ns}\nLabels:       tier=a\nAnnotations:  <none>\n\n"
        "Data\n====\nGREETING:\n----\nHello\n\nBinaryData\n====\n\nEvents:  <none>\n"
    )
    uid = json.loads(ok(corral(server, "get", "cm", "settings", "-n", ns, "-o", "json")))["metadata"]["uid"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "settings.1", "namespace": ns},
        "involvedObject": {
            "kind": "ConfigMap",
            "namespace": ns,
            "name": "settings",
            "uid": uid,
            "apiVersion": "v1",
        },
        "reason": "Checked",
        "message": "looked fine",
        "type": "Normal",
        "count": 2,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "source": {"component": "tester"},
    }
    ok(corral(server, "apply", "-f", "-", stdin=json.dumps(event)))
    lines = ok(corral(server, "describe", "cm", "settings", "-n", ns)).splitlines()
    at = lines.index("Events:")
    assert lines[at + 1] == "  Type    Reason   Age              From    Message"
    assert lines[at + 2] == "  ----    ------   ----             ----    -------"
    assert re.fullmatch(rf"  Normal  Checked  {AGE} \(x2 over {AGE}\)\s+tester  looked fine", lines[at + 3])


def test_describe_secret_shows_sizes_never_values(server: Server, ns: str) -> None:
    secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  password: aHVudGVyMjI=\n"
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=secret))
    out = ok(corral(server, "describe", "secret", "creds", "-n", ns))
    assert "password:  8 bytes" in out.splitlines()
    assert "hunter22" not in out
    assert "aHVudGVyMjI=" not in out
    assert "Type:  Opaque" in out.splitlines()


def test_describe_service(server: Server, ns: str) -> None:
    service = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: hello\n"
        "  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n"
    )
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=service))
    lines = ok(corral(server, "describe", "svc", "web", "-n", ns)).splitlines()
    # Aligned on the longest label, "Internal Traffic Policy:" (as kubectl 1.32 prints it).
    assert "Selector:                 app=hello" in lines
    assert "Type:                     ClusterIP" in lines
    assert "Port:                     http  80/TCP" in lines
    assert "TargetPort:               8080/TCP" in lines
    assert "Endpoints:                <none>" in lines
    assert "Internal Traffic Policy:  Cluster" in lines
    assert any(re.fullmatch(r"IP:\s+\S+", line) for line in lines)


# --- delete --------------------------------------------------------------------------------------------


def test_delete_by_name_continues_past_missing(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=DEPLOYMENT.format(greeting="hi")))
    result = corral(server, "delete", "deploy", "ghost", "hello", "-n", ns)
    assert result.code == 1
    assert result.out == 'deployment.apps "hello" deleted\n'
    assert result.err == 'Error from server (NotFound): deployments.apps "ghost" not found\n'
    missing = corral(server, "get", "deploy", "hello", "-n", ns)
    assert_one_error_line(missing, 'Error from server (NotFound): deployments.apps "hello" not found')


def test_delete_from_file(server: Server, ns: str, tmp_path: Path) -> None:
    manifest = tmp_path / "both.yaml"
    manifest.write_text(CONFIGMAP.format(name="x1", tier="a") + "---\n" + DEPLOYMENT.format(greeting="hi"))
    ok(corral(server, "apply", "-n", ns, "-f", str(manifest)))
    assert ok(corral(server, "delete", "-n", ns, "-f", str(manifest))) == (
        'configmap "x1" deleted\ndeployment.apps "hello" deleted\n'
    )
    result = corral(server, "get", "cm,deploy", "-n", ns)
    assert (result.code, result.out, result.err) == (0, "", f"No resources found in {ns} namespace.\n")


# --- errors --------------------------------------------------------------------------------------------


def test_unknown_kind_is_one_line(server: Server) -> None:
    assert_one_error_line(
        corral(server, "get", "foos"), 'error: the server doesn\'t have a resource type "foos"'
    )


def test_missing_kubeconfig_says_how_to_fix_it(tmp_path: Path) -> None:
    result = corral(None, "get", "pods", home=tmp_path)
    expected = tmp_path / "no-corral-here" / "kubeconfig"
    assert_one_error_line(
        result,
        f"error: no kubeconfig at {expected} (is `corral up` running? pass --kubeconfig or set KUBECONFIG)",
    )


def test_unreachable_server_names_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "config"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "gone",
                "clusters": [{"name": "gone", "cluster": {"server": url}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone"}}],
            }
        )
    )
    result = corral(None, "get", "pods", "--kubeconfig", str(config), home=tmp_path)
    assert_one_error_line(
        result, re.compile(rf"error: cannot reach the Corral API server at {re.escape(url)}: .+")
    )


def test_flags_after_the_verb_and_kubeconfig_env(server: Server, ns: str) -> None:
    ok(corral(server, "apply", "-n", ns, "-f", "-", stdin=CONFIGMAP.format(name="env", tier="a")))
    by_flag = corral(
        None,
        "get",
        "cm",
        "env",
        "-o",
        "name",
        "-n",
        ns,
        "--kubeconfig",
        str(server.kubeconfig),
        home=server.home,
    )
    assert ok(by_flag) == "configmap/env\n"
    by_env = corral(
        None,
        "get",
        "cm",
        "env",
        "-o",
        "name",
        "-n",
        ns,
        home=server.home,
        env={"KUBECONFIG": str(server.kubeconfig)},
    )
    assert ok(by_env) == "configmap/env\n"


# --- corral kubeconfig ---------------------------------------------------------------------------------


def test_kubeconfig_prints_the_file(server: Server) -> None:
    out = ok(corral(None, "kubeconfig", "--data-dir", str(server.data_dir), home=server.home))
    assert out == server.kubeconfig.read_text()


def test_kubeconfig_without_server_says_how_to_fix_it(tmp_path: Path) -> None:
    result = corral(None, "kubeconfig", "--data-dir", str(tmp_path / "nothing"), home=tmp_path)
    assert_one_error_line(
        result,
        f"error: no kubeconfig at {tmp_path / 'nothing' / 'kubeconfig'}: start the "
        "server with `corral up` first (or pass --data-dir)",
    )


def test_kubeconfig_merge_keeps_other_entries(server: Server, tmp_path: Path) -> None:
    home = tmp_path / "home"
    kube = home / ".kube" / "config"
    kube.parent.mkdir(parents=True)
    theirs = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "work",
        "clusters": [
            {"name": "work", "cluster": {"server": "https://work.example:6443"}},
            {"name": "corral", "cluster": {"server": "https://stale:1"}},
        ],
        "users": [{"name": "work-user", "user": {"token": "t"}}],
        "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work-user"}}],
    }
    kube.write_text(yaml.safe_dump(theirs))
    kube.chmod(0o644)
    out = ok(corral(None, "kubeconfig", "--merge", "--data-dir", str(server.data_dir), home=home))
    assert out == f'Merged Corral\'s kubeconfig into {kube}; current context is now "corral".\n'
    merged = yaml.safe_load(kube.read_text())
    assert stat.S_IMODE(kube.stat().st_mode) == 0o600
    assert merged["current-context"] == "corral"
    assert [c["name"] for c in merged["clusters"]] == ["work", "corral"]
    assert merged["clusters"][1]["cluster"]["server"] == server.url
    assert [u["name"] for u in merged["users"]] == ["work-user", "corral-admin"]
    assert [c["name"] for c in merged["contexts"]] == ["work", "corral"]
    assert [p.name for p in kube.parent.iterdir()] == ["config"]  # no temporary files left behind
    # kubectl's default file now reaches Corral, and the old context still exists.
    assert ok(corral(None, "get", "ns", "default", "-o", "name", "--kubeconfig", str(kube), home=home)) == (
        "namespace/default\n"
    )


def test_kubeconfig_merge_follows_kubeconfig_env(server: Server, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    out = ok(
        corral(
            None,
            "kubeconfig",
            "--merge",
            "--data-dir",
            str(server.data_dir),
            home=tmp_path,
            env={"KUBECONFIG": f"{first}{os.pathsep}{second}"},
        )
    )
    assert str(first) in out
    assert not second.exists()
    assert yaml.safe_load(first.read_text())["current-context"] == "corral"


# --- Pure helpers (no server) --------------------------------------------------------------------------


def test_tabwrite_aligns_column_blocks_like_go() -> None:
    lines = [
        "Name:\thello",
        "Labels:\ta=1",
        "\tb=2",
        "Pod Template:",
        "  Labels:\tx",
        "  Containers:",
        "Events:\t<none>",
    ]
    assert tabwrite(lines, minwidth=0, padding=2) == [
        "Name:    hello",
        "Labels:  a=1",
        "         b=2",
        "Pod Template:",
        "  Labels:  x",
        "  Containers:",
        "Events:  <none>",
    ]
    assert tabwrite(["A\tBB\tC", "AAAA\tB\tCCCC"], minwidth=6, padding=3) == [
        "A      BB    C",
        "AAAA   B     CCCC",
    ]  # minwidth 6 wins over 2 + padding


def test_merge_documents_replaces_same_names_and_keeps_the_rest() -> None:
    target: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "a",
        "preferences": {"colors": True},
        "clusters": [
            {"name": "a", "cluster": {"server": "https://a"}},
            {"name": "corral", "cluster": {"server": "https://old"}},
        ],
        "contexts": [{"name": "a", "context": {"cluster": "a"}}],
    }
    source = {
        "current-context": "corral",
        "clusters": [{"name": "corral", "cluster": {"server": "https://new"}}],
        "users": [{"name": "corral-admin", "user": {"token": "t"}}],
        "contexts": [{"name": "corral", "context": {"cluster": "corral", "user": "corral-admin"}}],
    }
    merged = merge_documents(target, source)
    assert merged["current-context"] == "corral"
    assert merged["preferences"] == {"colors": True}
    assert merged["clusters"] == [
        {"name": "a", "cluster": {"server": "https://a"}},
        {"name": "corral", "cluster": {"server": "https://new"}},
    ]
    assert [c["name"] for c in merged["contexts"]] == ["a", "corral"]
    assert merged["users"] == source["users"]
    assert target["clusters"][1]["cluster"]["server"] == "https://old"  # inputs untouched
