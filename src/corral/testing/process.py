"""Start and stop a Corral server process from tests: wait for its READY line, kill only that process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ServerProcess:
    data_dir: Path
    port: int = 0
    store: str | None = None
    url: str = ""
    kubeconfig: Path = field(default_factory=Path)
    proc: subprocess.Popen[str] | None = None
    max_pods: int | None = None
    metrics_interval: float | None = None
    dns_address: tuple[str, int] | None = None
    ingress_address: tuple[str, int] | None = None
    volume_mode: str | None = None
    """``auto`` / ``namespace`` / ``sandbox`` for the built-in agent (None: the server's default, auto)."""
    hpa_sync_period: float | None = None
    kubelet_probe_timing: bool = False
    """Readiness probed once per period from the start, as the kubelet (no warm-up; for benchmarks)."""
    agent: bool = True
    """False: control plane only (``--no-agent``), no built-in node; for hollow-node tests and benchmarks."""

    def start(self, timeout: float = 30.0) -> ServerProcess:
        cmd = [
            sys.executable,
            "-m",
            "corral.testing.serve",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
        ]
        if self.store:
            cmd += ["--store", self.store]
        if self.max_pods:
            cmd += ["--max-pods", str(self.max_pods)]
        if self.volume_mode:
            cmd += ["--volume-mode", self.volume_mode]
        if self.metrics_interval:
            cmd += ["--metrics-interval", str(self.metrics_interval)]
        if self.hpa_sync_period:
            cmd += ["--hpa-sync-period", str(self.hpa_sync_period)]
        if self.kubelet_probe_timing:
            cmd += ["--kubelet-probe-timing"]
        if not self.agent:
            cmd += ["--no-agent"]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RuntimeError(f"server exited before READY (code {self.proc.wait()}): {err[-2000:]}")
            if line.startswith("READY "):
                _, self.url, kubeconfig = line.split()
                self.kubeconfig = Path(kubeconfig)
                self.port = int(self.url.rsplit(":", 1)[1])
                self._read_dataplane_line()
                return self
        self.kill()
        raise TimeoutError("server did not become ready")

    def _read_dataplane_line(self) -> None:
        """``DATAPLANE dns=HOST:PORT ingress=HOST:PORT`` follows READY (``-`` for a part that is off)."""
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("DATAPLANE"):
            return
        for item in line.split()[1:]:
            name, _, value = item.partition("=")
            if value == "-" or ":" not in value:
                continue
            host, _, port = value.rpartition(":")
            if name == "dns":
                self.dns_address = (host, int(port))
            elif name == "ingress":
                self.ingress_address = (host, int(port))

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        code = self.proc.wait()
        self._close_pipes()
        return code

    def kill(self) -> None:
        """SIGKILL the server (only the process we started, by its pid)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None:
            for pipe in (self.proc.stdout, self.proc.stderr):
                if pipe is not None:
                    pipe.close()
