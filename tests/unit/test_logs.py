"""Log files: copy-truncate rotation, the time index, tail/limit/since/timestamps, follow across rotation."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from corral.agent import logs
from corral.agent.logs import LogQuery, ManagedLog
from corral.agent.logs import read_log_bytes as read_log
from corral.testing.clock import FakeClock


def write_segment(path: Path, data: bytes, checkpoints: list[tuple[int, float]], mtime: float) -> None:
    path.write_bytes(data)
    logs.index_path(path).write_text("".join(f"{o} {t:.6f}\n" for o, t in checkpoints))
    os.utime(path, (mtime, mtime))


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def lines(n: int, start: int = 1) -> bytes:
    return b"".join(f"{i}\n".encode() for i in range(start, start + n))


# --------------------------------------------------------------------------------------------- writing


def test_rotation_keeps_max_files_and_the_writer_keeps_appending(tmp_path: Path) -> None:
    path = tmp_path / "c" / "0.log"
    fd = logs.open_for_append(path)  # what the container process holds
    try:
        for round_ in range(4):
            os.write(fd, f"round {round_}\n".encode() * 10)
            logs.rotate_log(path, max_files=3, now=1000.0 + round_)
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"after\n"  # O_APPEND: written at the new end, no hole
    assert logs.rotated_path(path, 1).read_bytes() == b"round 3\n" * 10
    assert logs.rotated_path(path, 2).read_bytes() == b"round 2\n" * 10
    assert not logs.rotated_path(path, 3).exists()
    assert logs.segments(path) == [logs.rotated_path(path, 2), logs.rotated_path(path, 1), path]
    # Each rotated copy carries its own index, ending with the copied size.
    assert logs.read_index(logs.rotated_path(path, 1))[-1] == logs.Checkpoint(80, 1003.0)
    assert logs.read_index(path) == [logs.Checkpoint(0, 1003.0)]
    assert read_log(path) == b"round 2\n" * 10 + b"round 3\n" * 10 + b"after\n"


def test_rotation_with_one_file_only_truncates(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"x" * 100)
    logs.rotate_log(path, max_files=1, now=1.0)
    assert path.read_bytes() == b"" and logs.segments(path) == [path]


def test_managed_log_checkpoints_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    managed = ManagedLog(path, max_bytes=100, max_files=2, checkpoint_interval=1.0)
    fd = managed.open(now=10.0)
    try:
        assert logs.read_index(path) == [logs.Checkpoint(0, 10.0)]
        os.write(fd, b"a" * 10)
        assert managed.tick(10.5) is False
        assert len(logs.read_index(path)) == 1  # interval not elapsed
        assert managed.tick(11.0) is False
        assert logs.read_index(path)[-1] == logs.Checkpoint(10, 11.0)
        assert managed.tick(12.0) is False
        assert len(logs.read_index(path)) == 2  # no growth, no checkpoint
        os.write(fd, b"b" * 95)
        assert managed.tick(13.0) is True
        assert path.stat().st_size == 0 and logs.rotated_path(path, 1).stat().st_size == 105

        # A new agent resumes from the index.
        again = ManagedLog(path, max_bytes=100, max_files=2)
        again.resume()
        os.write(fd, b"c")
        again.tick(20.0)
        assert logs.read_index(path)[-1] == logs.Checkpoint(1, 20.0)
    finally:
        os.close(fd)


def test_index_is_thinned_when_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "INDEX_MAX_BYTES", 2000)
    path = tmp_path / "0.log"
    path.write_bytes(b"")
    managed = ManagedLog(path, max_bytes=0, checkpoint_interval=0.0)
    for i in range(1, 500):
        with open(path, "ab") as f:
            f.write(b"x\n")
        managed.tick(float(i))
    cps = logs.read_index(path)
    assert logs.index_path(path).stat().st_size <= 2000 + 40
    assert cps[-1] == logs.Checkpoint(998, 499.0)
    assert [c.offset for c in cps] == sorted(c.offset for c in cps)


# --------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("data", "tail", "expected"),
    [
        (lines(10), 3, b"8\n9\n10\n"),
        (lines(10), 0, b""),
        (lines(3), 10, lines(3)),
        (b"a\nb\nc", 1, b"c"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"\n\n\n", 2, b"\n\n"),
        (b"", 5, b""),
    ],
)
def test_tail(tmp_path: Path, data: bytes, tail: int, expected: bytes) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(data)
    assert read_log(path, LogQuery(tail_lines=tail)) == expected


def test_tail_across_segments_and_split_lines(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    logs.rotated_path(path, 2).write_bytes(lines(5, 1))
    logs.rotated_path(path, 1).write_bytes(lines(5, 6) + b"par")  # a line cut by the rotation
    path.write_bytes(b"tial\n" + lines(2, 11))
    assert read_log(path, LogQuery(tail_lines=4)) == b"10\npartial\n11\n12\n"
    assert read_log(path, LogQuery(tail_lines=9)) == b"5\n6\n7\n8\n9\n10\npartial\n11\n12\n"
    assert read_log(path) == lines(10) + b"partial\n11\n12\n"
    assert read_log(path, LogQuery(tail_lines=100)) == read_log(path)


def test_tail_over_many_chunks(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(lines(50_000))  # several 64 KiB chunks
    assert read_log(path, LogQuery(tail_lines=20_000)) == lines(20_000, 30_001)


def test_limit_bytes(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(lines(10))
    assert read_log(path, LogQuery(limit_bytes=5)) == b"1\n2\n3"
    assert read_log(path, LogQuery(tail_lines=2, limit_bytes=3)) == b"9\n1"
    assert read_log(path, LogQuery(limit_bytes=0)) == b""


def test_since_and_timestamps_use_the_index(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    # "a" seen by t=100, "b" by t=200, "c" by t=300; "d" never checkpointed, file mtime 400.
    write_segment(path, b"a\nb\nc\nd\n", [(0, 50.0), (2, 100.0), (4, 200.0), (6, 300.0)], mtime=400.0)
    assert read_log(path, LogQuery(since=150.0)) == b"b\nc\nd\n"
    assert read_log(path, LogQuery(since=200.0)) == b"b\nc\nd\n"
    assert read_log(path, LogQuery(since=250.0)) == b"c\nd\n"
    assert read_log(path, LogQuery(since=350.0)) == b"d\n"
    assert read_log(path, LogQuery(since=401.0)) == b""
    assert read_log(path, LogQuery(since=0.0)) == b"a\nb\nc\nd\n"
    assert read_log(path, LogQuery(timestamps=True)) == (
        b"1970-01-01T00:01:40Z a\n1970-01-01T00:03:20Z b\n1970-01-01T00:05:00Z c\n1970-01-01T00:06:40Z d\n"
    )
    assert read_log(path, LogQuery(timestamps=True, tail_lines=1, since=0.0)) == b"1970-01-01T00:06:40Z d\n"


def test_since_spanning_rotated_segments(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    old = logs.rotated_path(path, 1)
    write_segment(old, b"old1\nold2\n", [(0, 10.0), (5, 20.0), (10, 30.0)], mtime=30.0)
    write_segment(path, b"new1\n", [(0, 30.0), (5, 40.0)], mtime=40.0)
    assert read_log(path, LogQuery(since=25.0)) == b"old2\nnew1\n"
    assert read_log(path, LogQuery(since=35.0)) == b"new1\n"
    # Without any index, the mtime stamps every line.
    bare = tmp_path / "bare.log"
    bare.write_bytes(b"x\ny\n")
    os.utime(bare, (500.0, 500.0))
    assert read_log(bare, LogQuery(since=499.0)) == b"x\ny\n"
    assert read_log(bare, LogQuery(since=501.0)) == b""


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (0.0, "1970-01-01T00:00:00Z"),
        (1.5, "1970-01-01T00:00:01.5Z"),
        (1.123456, "1970-01-01T00:00:01.123456Z"),
        (datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC).timestamp(), "2026-03-04T05:06:07.89Z"),
    ],
)
def test_format_timestamp(t: float, text: str) -> None:
    assert logs.format_timestamp(t) == text


def test_attempt_logs(tmp_path: Path) -> None:
    for attempt in (0, 1, 3):
        p = logs.attempt_log_path(tmp_path, "web", attempt)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"attempt {attempt}\n")
    logs.rotated_path(logs.attempt_log_path(tmp_path, "web", 0), 1).write_text("rotated\n")
    assert logs.previous_attempt_log(tmp_path, "web", 3) == tmp_path / "web" / "1.log"
    assert logs.previous_attempt_log(tmp_path, "web", 1) == tmp_path / "web" / "0.log"
    assert logs.previous_attempt_log(tmp_path, "web", 0) is None
    assert logs.previous_attempt_log(tmp_path, "other", 5) is None
    logs.prune_attempt_logs(tmp_path, "web", keep={1, 3})
    assert sorted(p.name for p in (tmp_path / "web").iterdir()) == ["1.log", "3.log"]


# --------------------------------------------------------------------------------------------- follow


async def collect(agen: object, into: list[bytes]) -> None:
    async for chunk in agen:  # type: ignore[attr-defined]
        into.append(chunk)


async def wait_for_bytes(got: list[bytes], expected: bytes, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while b"".join(got) != expected:
        assert asyncio.get_running_loop().time() < deadline, (b"".join(got), expected)
        await asyncio.sleep(0.005)


async def test_follow_survives_rotation(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    fd = logs.open_for_append(path)
    stop = asyncio.Event()
    got: list[bytes] = []
    try:
        os.write(fd, lines(3))
        task = asyncio.create_task(
            collect(logs.follow_log(path, LogQuery(tail_lines=1), stop=stop, poll_interval=0.005), got)
        )
        await wait_for_bytes(got, b"3\n")
        os.write(fd, b"4\n5")
        await wait_for_bytes(got, b"3\n4\n5")
        os.write(fd, b"\n6\n")  # unread when the rotation happens: must come from the rotated copy
        logs.rotate_log(path, max_files=3, now=1.0)
        os.write(fd, b"7\n")
        await wait_for_bytes(got, b"3\n4\n5\n6\n7\n")
        logs.rotate_log(path, max_files=3, now=2.0)
        os.write(fd, b"8\n")
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        os.close(fd)
    assert b"".join(got) == b"3\n4\n5\n6\n7\n8\n"


async def test_follow_with_timestamps_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    write_segment(path, b"old\n", [(0, 100.0), (4, 100.0)], mtime=100.0)
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    stop = asyncio.Event()
    got: list[bytes] = []
    task = asyncio.create_task(
        collect(
            logs.follow_log(path, LogQuery(timestamps=True), stop=stop, clock=clock, poll_interval=0.005), got
        )
    )
    await wait_for_bytes(got, b"1970-01-01T00:01:40Z old\n")
    append(path, b"half")
    await wait_for_bytes(got, b"1970-01-01T00:01:40Z old\n2026-01-01T00:00:00Z half")
    clock.advance(1)
    append(path, b" line\nnext\n")
    await wait_for_bytes(
        got, b"1970-01-01T00:01:40Z old\n2026-01-01T00:00:00Z half line\n2026-01-01T00:00:01Z next\n"
    )
    stop.set()
    await asyncio.wait_for(task, 5)

    limited: list[bytes] = []
    await asyncio.wait_for(collect(logs.follow_log(path, LogQuery(limit_bytes=6)), limited), 5)
    assert b"".join(limited) == b"old\nha"


async def test_follow_stop_drains_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"a\n")
    stop = asyncio.Event()
    stop.set()
    got: list[bytes] = []
    await asyncio.wait_for(collect(logs.follow_log(path, stop=stop), got), 5)
    assert b"".join(got) == b"a\n"


@dataclass(frozen=True)
class ApiOptions:
    """Shaped like ``apiserver.nodeproxy.LogOptions``."""

    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def test_query_from_api_options() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    q = logs.query_from(ApiOptions(tail_lines=-1, since_seconds=60, limit_bytes=10), now)
    assert q == LogQuery(tail_lines=None, limit_bytes=10, since=now.timestamp() - 60, timestamps=False)
    moment = datetime(2025, 6, 1, tzinfo=UTC)
    assert logs.query_from(ApiOptions(since_time=moment, tail_lines=5), now).since == moment.timestamp()
    assert logs.query_from(ApiOptions(tail_lines=5), now).tail_lines == 5


async def test_read_log_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(lines(5))
    got: list[bytes] = []
    await asyncio.wait_for(collect(logs.read_log(path, ApiOptions(tail_lines=2)), got), 5)
    assert b"".join(got) == b"4\n5\n"

    running = True
    got = []
    task = asyncio.create_task(
        collect(
            logs.read_log(
                path,
                ApiOptions(tail_lines=1),
                follow=True,
                still_running=lambda: running,
                poll_interval=0.005,
            ),
            got,
        )
    )
    await wait_for_bytes(got, b"5\n")
    append(path, b"6\n")
    await wait_for_bytes(got, b"5\n6\n")
    append(path, b"7\n")
    running = False  # the container exited: drain and end
    await asyncio.wait_for(task, 5)
    assert b"".join(got) == b"5\n6\n7\n"
