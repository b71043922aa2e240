"""A small steady HTTP load for service tests: N threads, one new connection per request (HTTP/1.0), a
target rate, and a record of every failure. Loopback only.

One connection per request on purpose: a keep-alive client would hide a proxy that cuts connections by
silently reconnecting, and a failed request is exactly what the zero-downtime tests count.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


def http_get(
    host: str, port: int, path: str = "/", timeout: float = 5.0, host_header: str = "svc", method: str = "GET"
) -> str:
    """One request over a fresh connection; returns the body; raises on anything but a complete 200.
    A POST carries a small body (and so is never retried by a proxy: it is not idempotent)."""
    body = b"ping" if method == "POST" else b""
    head = f"{method} {path} HTTP/1.0\r\nHost: {host_header}\r\nUser-Agent: corral-test\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(head.encode() + b"\r\n" + body)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    head_bytes, sep, body_bytes = raw.partition(b"\r\n\r\n")
    if not sep:
        raise OSError(f"incomplete response ({len(raw)} bytes)")
    status_line = head_bytes.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split()
    if len(parts) < 2 or parts[1] != "200":
        raise OSError(f"unexpected status: {status_line}")
    for line in head_bytes.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and int(value.strip()) != len(body_bytes):
            raise OSError(f"truncated body: {len(body_bytes)} of {int(value.strip())} bytes")
    return body_bytes.decode(errors="replace").strip()


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    bodies: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds else 0.0


class SteadyLoad:
    """Sends ``rate`` requests per second (spread over ``workers`` threads) until :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        rate: float = 250.0,
        workers: int = 8,
        method: str = "GET",
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.rate, self.workers, self.method = host, port, rate, workers, method
        self.timeout = timeout
        self.outcomes: list[tuple[float, bool, str]] = []
        """Every request: (monotonic send time, answered, body or error), for failure windows."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.result = LoadResult()
        self._started = 0.0

    def __enter__(self) -> SteadyLoad:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        interval = self.workers / self.rate
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, args=(interval, index * interval / self.workers))
            thread.daemon = True
            thread.start()
            self._threads.append(thread)

    def _run(self, interval: float, offset: float) -> None:
        next_at = time.monotonic() + offset
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            next_at = max(next_at + interval, time.monotonic() - interval)
            at = time.monotonic()
            try:
                body = http_get(self.host, self.port, method=self.method, timeout=self.timeout)
            except Exception as exc:
                with self._lock:
                    self.outcomes.append((at, False, repr(exc)))
                    self.result.failed += 1
                    if len(self.result.errors) < 20:
                        self.result.errors.append(f"{time.monotonic() - self._started:.2f}s {exc!r}")
            else:
                with self._lock:
                    self.outcomes.append((at, True, body))
                    self.result.ok += 1
                    self.result.bodies[body] += 1

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.result.ok, self.result.failed

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._threads = []
        self.result.seconds = time.monotonic() - self._started
        return self.result
