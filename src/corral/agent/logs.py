"""Container log files: writing, size-based rotation, a time index, and reading for ``kubectl logs``.

Boundary: files only. The process runtime opens the log with :func:`open_for_append` and hands the descriptor
to the container process, so the process keeps logging while the agent is down; the agent calls
:meth:`ManagedLog.tick` on a timer to rotate and index the file. Readers (:func:`iter_log`,
:func:`follow_log`) serve ``tail``, ``limitBytes``, ``sinceSeconds``/``sinceTime``, ``timestamps`` and
``follow``; :func:`read_log` is the entry point for ``GET pods/<name>/log``. ``previous`` is a *path*
question: each attempt has its own file (see :func:`attempt_log_path` and :func:`previous_attempt_log`).

Rotation is copy-truncate: the writer holds an ``O_APPEND`` descriptor that the agent cannot replace, so the
file is copied to ``<log>.1`` (older copies shift to ``.2`` …) and then truncated in place; the next write of
the process lands at the new end. Bytes written in the microseconds between the last copy pass and the
truncate are lost (the same trade-off as logrotate's ``copytruncate``). Rotation runs synchronously on the
agent's event loop, so a follower in the same loop never sees a half-rotated state.

Timestamps. The process writes raw bytes straight to the file, so there is nowhere to stamp each line as it is
written. Instead the agent appends *checkpoints* ``(size, time)`` to ``<log>.idx`` whenever it sees the file
grow (at most once per ``checkpoint_interval``, default 1 s). A line is stamped with the time of the first
checkpoint at or beyond its end: the moment by which the agent had seen the line, an upper bound that is late
by at most one interval while the agent runs (bytes never checkpointed are stamped with the file's mtime).
``since`` keeps lines whose stamp is at or after the limit, so it may show a line up to one interval older,
never hide a newer one. Followed lines are stamped when read. The index rotates with its log and is thinned
(older half, every other entry) when it passes 64 KiB.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from corral.util.clock import Clock, SystemClock

CHUNK = 64 * 1024
INDEX_MAX_BYTES = 64 * 1024
MAX_SEGMENTS = 64
"""Upper bound when scanning for rotated files, whatever ``max_files`` said when they were written."""


# --------------------------------------------------------------------------------------------- names


def rotated_path(path: Path, n: int) -> Path:
    """``<log>.n``: the n-th most recent rotated copy (n >= 1)."""
    return path.with_name(f"{path.name}.{n}")


def index_path(segment: Path) -> Path:
    return segment.with_name(f"{segment.name}.idx")


def segments(path: Path) -> list[Path]:
    """Existing rotated copies, oldest first, then the current file (even when it does not exist yet)."""
    rotated = []
    for n in range(1, MAX_SEGMENTS + 1):
        p = rotated_path(path, n)
        if not p.exists():
            break
        rotated.append(p)
    return [*reversed(rotated), path]


def attempt_log_path(logs_dir: Path, container: str, attempt: int) -> Path:
    """Where an attempt of ``container`` logs: ``<logs_dir>/<container>/<attempt>.log`` (as the kubelet)."""
    return logs_dir / container / f"{attempt}.log"


def previous_attempt_log(logs_dir: Path, container: str, attempt: int) -> Path | None:
    """The log of the latest earlier attempt that left a file (``kubectl logs --previous``)."""
    found = _attempt_logs(logs_dir, container)
    earlier = [a for a in found if a < attempt]
    return found[max(earlier)] if earlier else None


def prune_attempt_logs(logs_dir: Path, container: str, keep: Iterable[int]) -> None:
    """Delete the logs (with rotated copies and indexes) of every attempt not in ``keep``."""
    keep_set = set(keep)
    for attempt, path in _attempt_logs(logs_dir, container).items():
        if attempt in keep_set:
            continue
        for seg in segments(path):
            for p in (seg, index_path(seg)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def _attempt_logs(logs_dir: Path, container: str) -> dict[int, Path]:
    found: dict[int, Path] = {}
    with contextlib.suppress(OSError):
        for p in (logs_dir / container).iterdir():
            stem, _, ext = p.name.partition(".")
            if ext == "log" and stem.isdigit():
                found[int(stem)] = p
    return found


# --------------------------------------------------------------------------------------------- writing


def open_for_append(path: Path) -> int:
    """An ``O_APPEND`` descriptor for the container's stdout and stderr (close-on-exec in the agent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    offset: int
    """The file had at least this many bytes …"""
    time: float
    """… at this moment (unix seconds)."""


def read_index(segment: Path) -> list[Checkpoint]:
    try:
        text = index_path(segment).read_text()
    except OSError:
        return []
    out: list[Checkpoint] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue  # a torn last line after a crash
        try:
            out.append(Checkpoint(int(parts[0]), float(parts[1])))
        except ValueError:
            continue
    return out


def _append_checkpoint(segment: Path, cp: Checkpoint) -> None:
    idx = index_path(segment)
    with open(idx, "a") as f:
        f.write(f"{cp.offset} {cp.time:.6f}\n")
    with contextlib.suppress(OSError):
        if idx.stat().st_size > INDEX_MAX_BYTES:
            _thin_index(segment)


def _thin_index(segment: Path) -> None:
    cps = read_index(segment)
    half = len(cps) // 2
    kept = cps[:half][1::2] + cps[half:]
    tmp = index_path(segment).with_name(index_path(segment).name + ".tmp")
    tmp.write_text("".join(f"{cp.offset} {cp.time:.6f}\n" for cp in kept))
    os.replace(tmp, index_path(segment))


def _copy_tail(src: Path, dst: Path) -> int:
    """Copy ``src`` to ``dst`` (created), chasing bytes appended meanwhile; returns the bytes copied."""
    copied = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for _ in range(4):
            size = os.fstat(fin.fileno()).st_size
            while copied < size:
                n = os.sendfile(fout.fileno(), fin.fileno(), copied, size - copied)
                if n == 0:
                    break
                copied += n
            if os.fstat(fin.fileno()).st_size <= copied:
                break
    return copied


def rotate_log(path: Path, max_files: int, now: float) -> None:
    """Copy-truncate ``path``, keeping ``max_files - 1`` rotated copies (none when ``max_files < 2``)."""
    keep = max(0, max_files - 1)
    if keep >= 1:
        oldest = rotated_path(path, keep)
        for p in (oldest, index_path(oldest)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        for n in range(keep - 1, 0, -1):
            src, dst = rotated_path(path, n), rotated_path(path, n + 1)
            for a, b in ((src, dst), (index_path(src), index_path(dst))):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(a, b)
        first = rotated_path(path, 1)
        tmp = path.with_name(f"{path.name}.rotating")
        copied = _copy_tail(path, tmp)
        _append_checkpoint(path, Checkpoint(copied, now))
        os.replace(tmp, first)
        with contextlib.suppress(FileNotFoundError):
            os.replace(index_path(path), index_path(first))
    os.truncate(path, 0)
    with contextlib.suppress(FileNotFoundError):
        index_path(path).unlink()
    _append_checkpoint(path, Checkpoint(0, now))


@dataclass(slots=True)
class ManagedLog:
    """The agent's bookkeeping for one running container's log: rotation and time checkpoints."""

    path: Path
    max_bytes: int = 10 * 1024 * 1024
    max_files: int = 3
    checkpoint_interval: float = 1.0
    _last: Checkpoint | None = field(default=None, init=False)

    def open(self, now: float) -> int:
        """Open for appending and record the starting checkpoint; returns the descriptor for the child."""
        fd = open_for_append(self.path)
        self._checkpoint(os.fstat(fd).st_size, now)
        return fd

    def resume(self) -> None:
        """Pick up after an agent restart: continue from the last checkpoint on disk."""
        cps = read_index(self.path)
        self._last = cps[-1] if cps else None

    def tick(self, now: float) -> bool:
        """Checkpoint growth and rotate when too big; returns True when the log was rotated."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        last = self._last
        if last is None or (size != last.offset and now - last.time >= self.checkpoint_interval):
            self._checkpoint(size, now)
        if self.max_bytes > 0 and size >= self.max_bytes:
            self.rotate(now)
            return True
        return False

    def rotate(self, now: float) -> None:
        rotate_log(self.path, self.max_files, now)
        self._last = Checkpoint(0, now)

    def _checkpoint(self, size: int, now: float) -> None:
        cp = Checkpoint(size, now)
        _append_checkpoint(self.path, cp)
        self._last = cp


# --------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Options of ``GET pods/<name>/log`` that shape the bytes (``follow`` and ``previous`` are not here)."""

    tail_lines: int | None = None
    """Only the last N lines (``tailLines``); None = all."""
    limit_bytes: int | None = None
    """Stop after this many bytes of output (``limitBytes``)."""
    since: float | None = None
    """Unix time; drop lines stamped earlier (``sinceSeconds`` / ``sinceTime``)."""
    timestamps: bool = False
    """Prefix each line with its RFC 3339 timestamp and a space (``timestamps``)."""


def format_timestamp(t: float) -> str:
    """Go's RFC3339Nano in UTC (trailing zeros of the fraction trimmed), as kubelet prints it."""
    moment = datetime.fromtimestamp(t, UTC)
    frac = f"{moment.microsecond:06d}000".rstrip("0")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int
    size: int
    offsets: list[int]
    times: list[float]
    fallback: float

    def stamp(self, end: int) -> float:
        """When the byte just before ``end`` had been written, at the latest."""
        i = bisect.bisect_left(self.offsets, end)
        return self.times[i] if i < len(self.times) else self.fallback


class _Snapshot:
    """Open descriptors on every segment at one moment, so renames during the read do not matter."""

    def __init__(self, path: Path) -> None:
        self.segs: list[_Segment] = []
        first = rotated_path(path, 1)
        self.rotated_identity = _identity(first)
        for p in segments(path):
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            st = os.fstat(fd)
            cps = read_index(p)
            self.segs.append(
                _Segment(
                    path=p,
                    fd=fd,
                    size=st.st_size,
                    offsets=[c.offset for c in cps],
                    times=[c.time for c in cps],
                    fallback=st.st_mtime,
                )
            )

    def close(self) -> None:
        for s in self.segs:
            os.close(s.fd)
        self.segs = []

    def ends_with_newline(self) -> bool:
        for s in reversed(self.segs):
            if s.size:
                return os.pread(s.fd, 1, s.size - 1) == b"\n"
        return True

    def since_start(self, since: float) -> tuple[int, int]:
        """Position (segment, offset) of the first line stamped at or after ``since``."""
        for i, s in enumerate(self.segs):
            if s.size == 0:
                continue
            j = bisect.bisect_left(s.times, since)
            # Bytes up to ``boundary`` are stamped before ``since``; the line containing it is the first kept.
            if j < len(s.times):
                boundary = s.offsets[j - 1] if j > 0 else 0
            elif j >= len(s.times) and s.fallback >= since:
                boundary = s.offsets[-1] if s.offsets else 0
            else:
                continue
            if boundary >= s.size:
                continue
            return i, self._line_start(s, boundary)
        return len(self.segs), 0

    @staticmethod
    def _line_start(s: _Segment, pos: int) -> int:
        while pos > 0:
            lo = max(0, pos - CHUNK)
            chunk = os.pread(s.fd, pos - lo, lo)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                return lo + nl + 1
            pos = lo
        return 0

    def tail_start(self, lines: int, floor: tuple[int, int]) -> tuple[int, int]:
        """Position where the last ``lines`` lines begin, not before ``floor``."""
        if lines <= 0:
            return len(self.segs), 0
        needed = lines + (1 if self.ends_with_newline() else 0)
        for i in range(len(self.segs) - 1, floor[0] - 1, -1):
            s = self.segs[i]
            low = floor[1] if i == floor[0] else 0
            pos = s.size
            while pos > low:
                lo = max(low, pos - CHUNK)
                chunk = os.pread(s.fd, pos - lo, lo)
                end = len(chunk)
                while True:
                    nl = chunk.rfind(b"\n", 0, end)
                    if nl < 0:
                        break
                    needed -= 1
                    if needed == 0:
                        return (i, lo + nl + 1) if lo + nl + 1 < s.size else (i + 1, 0)
                    end = nl
                pos = lo
        return floor

    def emit(self, start: tuple[int, int], timestamps: bool) -> Iterator[bytes]:
        pending = b""
        last_stamp = 0.0
        for i in range(start[0], len(self.segs)):
            s = self.segs[i]
            off = start[1] if i == start[0] else 0
            while off < s.size:
                chunk = os.pread(s.fd, min(CHUNK, s.size - off), off)
                if not chunk:
                    break
                if not timestamps:
                    yield chunk
                else:
                    out: list[bytes] = []
                    begin = 0
                    while True:
                        nl = chunk.find(b"\n", begin)
                        if nl < 0:
                            break
                        stamp = s.stamp(off + nl + 1)
                        out.append(format_timestamp(stamp).encode() + b" " + pending + chunk[begin : nl + 1])
                        pending = b""
                        begin = nl + 1
                    pending += chunk[begin:]
                    if pending:
                        last_stamp = s.stamp(off + len(chunk))
                    if out:
                        yield b"".join(out)
                off += len(chunk)
        if pending:
            yield format_timestamp(last_stamp).encode() + b" " + pending


def _identity(p: Path) -> tuple[int, int] | None:
    try:
        st = p.stat()
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


def _limited(chunks: Iterable[bytes], limit: int | None) -> Iterator[bytes]:
    if limit is None:
        yield from chunks
        return
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        piece = chunk[:left]
        left -= len(piece)
        yield piece


def _start(snap: _Snapshot, query: LogQuery) -> tuple[int, int]:
    start = (0, 0)
    if query.since is not None:
        start = snap.since_start(query.since)
    if query.tail_lines is not None:
        start = snap.tail_start(query.tail_lines, start)
    return start


def iter_log(path: Path, query: LogQuery | None = None) -> Iterator[bytes]:
    """The log (rotated copies first, then the current file) shaped by ``query``, in chunks."""
    query = query or LogQuery()
    snap = _Snapshot(path)
    try:
        yield from _limited(snap.emit(_start(snap, query), query.timestamps), query.limit_bytes)
    finally:
        snap.close()


def read_log_bytes(path: Path, query: LogQuery | None = None) -> bytes:
    """The whole (shaped) log in memory: for tests and small reads."""
    return b"".join(iter_log(path, query))


class LogRequest(Protocol):
    """The ``pods/log`` options as the API layer parses them (e.g. ``apiserver.nodeproxy.LogOptions``)."""

    @property
    def tail_lines(self) -> int | None: ...
    @property
    def since_seconds(self) -> int | None: ...
    @property
    def since_time(self) -> datetime | None: ...
    @property
    def timestamps(self) -> bool: ...
    @property
    def limit_bytes(self) -> int | None: ...


def query_from(request: LogRequest, now: datetime) -> LogQuery:
    """Translate API options; ``sinceSeconds`` counts back from ``now``, negative ``tailLines`` means all."""
    since: float | None = None
    if request.since_seconds is not None:
        since = now.timestamp() - request.since_seconds
    elif request.since_time is not None:
        since = request.since_time.timestamp()
    tail = request.tail_lines
    return LogQuery(
        tail_lines=tail if tail is not None and tail >= 0 else None,
        limit_bytes=request.limit_bytes,
        since=since,
        timestamps=request.timestamps,
    )


async def read_log(
    path: Path,
    request: LogRequest | LogQuery | None = None,
    *,
    follow: bool = False,
    still_running: Callable[[], bool] | None = None,
    now: datetime | None = None,
    clock: Clock | None = None,
    poll_interval: float = 0.1,
) -> AsyncIterator[bytes]:
    """What ``GET pods/<name>/log`` streams: the shaped log, then (``follow``) new bytes while
    ``still_running()`` holds; once it turns false the rest is drained and the stream ends."""
    clock = clock or SystemClock()
    query = (
        request
        if isinstance(request, LogQuery) or request is None
        else query_from(request, now or clock.now())
    )
    if not follow:
        for chunk in iter_log(path, query):
            yield chunk
            await asyncio.sleep(0)  # let other tasks run between 64 KiB chunks
        return
    async for chunk in follow_log(
        path, query, still_running=still_running, clock=clock, poll_interval=poll_interval
    ):
        yield chunk


async def follow_log(
    path: Path,
    query: LogQuery | None = None,
    *,
    stop: asyncio.Event | None = None,
    still_running: Callable[[], bool] | None = None,
    clock: Clock | None = None,
    poll_interval: float = 0.1,
) -> AsyncIterator[bytes]:
    """Like :func:`iter_log`, then keep yielding what is appended until ``stop`` is set or
    ``still_running()`` returns False; then drain what is there and end.

    Survives copy-truncate rotation: when a new ``<log>.1`` appears, the rest of what we were reading is taken
    from it, and reading continues at the start of the truncated current file.
    """
    query = query or LogQuery()
    clock = clock or SystemClock()
    left = query.limit_bytes
    snap = _Snapshot(path)
    try:
        offset = snap.segs[-1].size if snap.segs and snap.segs[-1].path == path else 0
        at_line_start = snap.ends_with_newline()
        rotated = snap.rotated_identity
        for chunk in snap.emit(_start(snap, query), query.timestamps):
            if left is not None:
                chunk = chunk[:left]
                left -= len(chunk)
            if chunk:
                yield chunk
            if left is not None and left <= 0:
                return
    finally:
        snap.close()

    while True:
        stopping = (stop is not None and stop.is_set()) or (still_running is not None and not still_running())
        data, offset, rotated = _read_appended(path, offset, rotated)
        if data:
            if query.timestamps:
                data, at_line_start = _stamp(data, at_line_start, clock.now().timestamp())
            else:
                at_line_start = data.endswith(b"\n")
            if left is not None:
                data = data[:left]
                left -= len(data)
            yield data
            if left is not None and left <= 0:
                return
            continue
        if stopping:
            return
        if stop is None:
            await asyncio.sleep(poll_interval)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_interval)


def _read_appended(
    path: Path, offset: int, rotated: tuple[int, int] | None
) -> tuple[bytes, int, tuple[int, int] | None]:
    out = b""
    now_rotated = _identity(rotated_path(path, 1))
    if now_rotated is not None and now_rotated != rotated:
        with contextlib.suppress(OSError), open(rotated_path(path, 1), "rb") as f:
            f.seek(offset)
            out = f.read()
        offset, rotated = 0, now_rotated
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:
                offset = 0  # truncated without a rotated copy (max_files == 1)
            if size > offset:
                f.seek(offset)
                more = f.read(min(size - offset, 16 * CHUNK))
                out += more
                offset += len(more)
    except FileNotFoundError:
        pass
    return out, offset, rotated


def _stamp(data: bytes, at_line_start: bool, now: float) -> tuple[bytes, bool]:
    prefix = format_timestamp(now).encode() + b" "
    parts = data.split(b"\n")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last and not part:
            break
        start_of_line = at_line_start if i == 0 else True
        out.append((prefix if start_of_line else b"") + part + (b"" if last else b"\n"))
    return b"".join(out), data.endswith(b"\n")
