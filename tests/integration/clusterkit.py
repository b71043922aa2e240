"""A multi-node cluster of real processes for integration tests: ``corral server`` plus ``corral agent``\\ s.

One control-plane-only server (a subprocess on a free port) and agents on loopback addresses (127.0.0.2…),
each with its own data dir and name, joined with the command ``corral token create`` prints. Output lines are
read on threads so tests wait for them with a deadline. Used by ``test_join.py`` and ``test_failover.py``.

Boundary: process plumbing only (start, signal, reap, clean up); assertions stay in the tests. Every process
is stopped by its own PID; pods an agent left behind (it was SIGKILLed) are found through the process
runtime's records in the agent's data dir and killed by process group (``kill_recorded_pods``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

CLI = [sys.executable, "-m", "corral.cli.main"]
DEADLINE = 30.0
KUBECTL = shutil.which("kubectl")
T = TypeVar("T")


def eventually(probe: Callable[[], T | None], what: str, timeout: float = DEADLINE, poll: float = 0.1) -> T:
    """The first non-None value ``probe`` returns, polled until ``timeout``; AssertionError after that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll)


class Lines:
    """A process's stdout lines, read on a thread so a test can wait for one with a deadline."""

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

    def wait_for(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.seen:
                    if match := regex.search(line):
                        return match
                remaining = deadline - time.monotonic()
                if self._done or remaining <= 0:
                    raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}")
                self._cond.wait(remaining)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> int:
    """Signal the process we started, by its PID, and reap it (SIGKILL when it lingers)."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a process from a later one with its pid."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2 :].split()[19])


def kill_recorded_pods(agent_dir: Path) -> list[int]:
    """SIGKILL the process group of every container the agent's runtime recorded that still runs (the
    wrapper's pid and start time both match, so a reused pid is left alone). Returns the groups killed."""
    killed = []
    for record_file in sorted((agent_dir / "runtime" / "instances").glob("*/record.json")):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        pgid, ticks = record.get("pgid"), record.get("wrapper_start_ticks")
        if not isinstance(pgid, int) or pgid <= 1 or ticks is None or _start_ticks(pgid) != ticks:
            continue
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        killed.append(pgid)
    return killed


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    kubeconfig: Path = field(default_factory=Path)
    url: str = ""
    join: list[str] = field(default_factory=list)
    server: subprocess.Popen[str] | None = None
    agents: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> Cluster:
        """A cluster rooted at ``root``, with a HOME of its own and no inherited kubeconfig or data dir."""
        home = root / "home"
        home.mkdir()
        env = {
            k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CORRAL_DATA_DIR", "CORRAL_DEBUG")
        }
        env.update(
            HOME=str(home), CORRAL_DATA_DIR=str(home / "no-corral-here"), NO_COLOR="1", PYTHONUNBUFFERED="1"
        )
        return cls(root, env)

    def start_server(self, *extra: str) -> None:
        """``corral server`` on a free port; waits for its ready line and creates a 1 h join token."""
        self.server = subprocess.Popen(
            [*CLI, "server", "--data-dir", str(self.root / "server"), "--port", "0", "--dns-port", "-1",
             "--ingress-port", "-1", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )  # fmt: skip
        match = Lines(self.server).wait_for(r"^Corral is ready at (\S+) — kubeconfig: (\S+)$")
        self.url, self.kubeconfig = match.group(1), Path(match.group(2))
        self.join = self.token_create("--ttl", "1h")

    def close(self) -> None:
        """Stop every agent and the server by PID, then kill what pods an agent left behind."""
        for proc in self.agents.values():
            stop(proc)
        if self.server is not None:
            stop(self.server)
        for name in self.agents:
            kill_recorded_pods(self.root / name)

    def corral(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], capture_output=True, text=True, timeout=DEADLINE, env=self.env, check=False
        )

    def kubectl(self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        assert KUBECTL is not None
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            capture_output=True, text=True, timeout=DEADLINE, input=stdin, env=self.env, check=False,
        )  # fmt: skip

    def token_create(self, *extra: str) -> list[str]:
        done = self.corral("token", "create", "--kubeconfig", str(self.kubeconfig), *extra)
        assert done.returncode == 0, done
        return done.stdout.split()

    def agent_args(self, join: list[str], name: str, address: str, prefix: Sequence[str] = ()) -> list[str]:
        """The agent's command line; ``prefix`` runs it through another command (``ip netns exec <ns>``,
        which execs it, so the PID stays the agent's)."""
        assert join[:2] == ["corral", "agent"]
        return [
            *prefix, *CLI, *join[1:], "--name", name, "--address", address, "--data-dir", str(self.root / name),
            "--dns-port", "-1", "--ingress-port", "-1", "--metrics-port", "-1", "--stop-workloads-on-exit",
        ]  # fmt: skip

    def run_agent(self, join: list[str], name: str, address: str) -> subprocess.CompletedProcess[str]:
        """An agent expected to refuse: it must exit by itself."""
        return subprocess.run(
            self.agent_args(join, name, address), capture_output=True, text=True, timeout=DEADLINE,
            env=self.env, check=False,
        )  # fmt: skip

    def start_agent(self, join: list[str], name: str, address: str, prefix: Sequence[str] = ()) -> Lines:
        """An agent in the background, stderr to ``<root>/<name>.log``; waits for its running line."""
        log = open(self.root / f"{name}.log", "a")  # noqa: SIM115 - the child holds it; closed right after
        try:
            proc = subprocess.Popen(
                self.agent_args(join, name, address, prefix), stdout=subprocess.PIPE, stderr=log, text=True,
                env=self.env,
            )  # fmt: skip
        finally:
            log.close()
        self.agents[name] = proc
        lines = Lines(proc)
        lines.wait_for(rf"^Corral agent is running as node {name} \(address {re.escape(address)}, ")
        return lines

    def node(self, name: str) -> dict[str, Any] | None:
        done = self.kubectl("get", "node", name, "-o", "json")
        return json.loads(done.stdout) if done.returncode == 0 else None

    def ready(self, name: str) -> bool | None:
        conditions = ((self.node(name) or {}).get("status") or {}).get("conditions") or []
        return True if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None
