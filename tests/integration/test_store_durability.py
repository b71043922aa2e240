"""Crash test: a child writes to a SqliteStore and is SIGKILLed; every acknowledged write must survive.

The child prints each write after the store acknowledged it. After each kill the test checks the file with
``PRAGMA integrity_check``, reopens it and checks every acknowledged create and update is there (at that
revision or a later one: later writes may have committed unacknowledged), every acknowledged delete is gone,
and the revision never went backwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import corral
from corral.store import NotFound, SqliteStore

RUNS = 10
DEADLINE = 30.0
SRC = str(Path(corral.__file__).resolve().parent.parent)

CHILD = """
import asyncio
import sys

from corral.store import NotFound, SqliteStore


def say(*words):
    sys.stdout.write(" ".join(map(str, words)) + "\\n")
    sys.stdout.flush()


async def worker(store, run, w):
    counter = f"/test/counters/default/w{w}"
    n = 0
    while True:
        key = f"/test/items/default/r{run}-w{w}-{n}"
        doomed = n % 3 == 0  # deleted below: an unacknowledged delete may legitimately follow its create
        created = await store.create(key, {"metadata": {"name": key}, "n": n})
        say("TMP" if doomed else "PUT", key, created["metadata"]["resourceVersion"])
        try:
            current = await store.get(counter)
        except NotFound:
            current = await store.create(counter, {"metadata": {"name": counter}, "count": 0})
            say("PUT", counter, current["metadata"]["resourceVersion"])
        updated = await store.update(
            counter, {**current, "count": current["count"] + 1}, int(current["metadata"]["resourceVersion"])
        )
        say("PUT", counter, updated["metadata"]["resourceVersion"])
        if doomed:
            gone = await store.delete(key, int(created["metadata"]["resourceVersion"]))
            say("DEL", key, gone["metadata"]["resourceVersion"])
        n += 1


async def main(path, run, workers):
    store = await SqliteStore.open(path)
    say("OPEN", store.revision)
    await asyncio.gather(*(worker(store, run, w) for w in range(workers)))


asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


@dataclass
class Acks:
    opened_at: int = -1
    put: dict[str, int] = field(default_factory=dict)  # key -> newest acknowledged revision
    doomed: dict[str, int] = field(default_factory=dict)  # created, and deleted later (maybe unacknowledged)
    deleted: dict[str, int] = field(default_factory=dict)
    count: int = 0
    newest: int = 0

    def record(self, line: str) -> None:
        verb, *rest = line.split()
        if verb == "OPEN":
            self.opened_at = int(rest[0])
            return
        key, revision = rest[0], int(rest[1])
        if verb == "PUT":
            self.put[key] = max(self.put.get(key, 0), revision)
        elif verb == "TMP":
            self.doomed[key] = revision
        elif verb == "DEL":
            self.deleted[key] = revision
            self.doomed.pop(key, None)
        else:
            raise AssertionError(f"unexpected line from child: {line!r}")
        self.count += 1
        self.newest = max(self.newest, revision)


async def crash_once(script: Path, db: Path, run: int, kill_after: int, stderr_path: Path) -> Acks:
    """Start the writer, SIGKILL it after ``kill_after`` acknowledgements; collect every acknowledgement."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    acks = Acks()
    with stderr_path.open("wb") as stderr:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(db),
            str(run),
            "6",
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
        )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(DEADLINE):
            while acks.count < kill_after:
                line = await child.stdout.readline()
                if not line:
                    await child.wait()
                    raise AssertionError(f"writer exited early ({child.returncode}): {read(stderr_path)}")
                acks.record(line.decode())
        os.kill(child.pid, signal.SIGKILL)
        # Whatever was printed before the kill was acknowledged too; a torn last line was not.
        async with asyncio.timeout(DEADLINE):
            rest = await child.stdout.read()
            await child.wait()
        for text in rest.decode().splitlines(keepends=True):
            if text.endswith("\n"):
                acks.record(text)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.returncode is None:
            child.kill()  # only our own child, by its pid
            await child.wait()
    return acks


def read(path: Path) -> str:
    return path.read_text(errors="replace")


def integrity_problems(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    db = tmp_path / "state.db"
    revision = 0
    total_acks = 0
    for run in range(RUNS):
        kill_after = rng.randrange(1, 400)
        acks = await crash_once(script, db, run, kill_after, tmp_path / f"writer-{run}.err")
        context = f"seed={seed} run={run} kill_after={kill_after}"
        assert acks.opened_at == revision, context
        assert acks.count >= kill_after, context
        total_acks += acks.count

        assert integrity_problems(db) == ["ok"], context
        store = await SqliteStore.open(db)
        try:
            assert store.revision >= max(acks.newest, revision), context
            for key, acked in acks.put.items():
                stored = await store.get(key)
                assert int(stored["metadata"]["resourceVersion"]) >= acked, f"{context} {key}"
            for key in acks.deleted:
                with pytest.raises(NotFound):
                    await store.get(key)
            for key, acked in acks.doomed.items():
                try:
                    stored = await store.get(key)
                except NotFound:
                    continue  # its delete was committed but the child died before acknowledging it
                assert int(stored["metadata"]["resourceVersion"]) >= acked, f"{context} {key}"
            revision = store.revision
        finally:
            await store.close()
        assert integrity_problems(db) == ["ok"], context
    assert total_acks >= RUNS
