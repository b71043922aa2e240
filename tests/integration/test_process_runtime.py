"""The process runtime against real processes: start/stop, exit codes, adoption, logs, exec, cgroups.

Every test goes through the ``harness`` fixture, which records the process group of every container it
starts and, in teardown, closes the runtimes, SIGKILLs whatever is left in those groups (checked in /proc, one
pid at a time through a pidfd), reaps our own children and removes the cgroups the runtimes created.
No sleeps as synchronisation: conditions are polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corral.agent import logs
from corral.agent.cgroups import CgroupSupport, CgroupVersion
from corral.agent.runtimes.base import (
    ContainerId,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    StartError,
)
from corral.agent.runtimes.process import ProcessRuntime, read_proc_stat

IS_ROOT = os.geteuid() == 0
PYTHON = sys.executable
SRC = Path(__file__).resolve().parents[2] / "src"


# --------------------------------------------------------------------------------------------- helpers


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group *and* session are ``pgid`` (only ours are both)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = read_proc_stat(int(name))
        if st is not None and st.pgid == pgid and st.sid == pgid and st.state != "Z":
            found.append(st.pid)
    return found


def alive(pid: int) -> bool:
    st = read_proc_stat(pid)
    return st is not None and st.state != "Z"


def kill_group(pgid: int) -> None:
    for pid in group_members(pgid):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            st = read_proc_stat(pid)
            if st is not None and st.pgid == pgid and st.sid == pgid:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)


async def wait_until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def wrapper_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


def sigign_mask(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


@dataclass
class Harness:
    root: Path
    runtimes: list[ProcessRuntime] = field(default_factory=list)
    pgids: set[int] = field(default_factory=set)
    extra_pids: set[int] = field(default_factory=set)
    cgroup_parents: set[Path] = field(default_factory=set)

    @property
    def sandbox(self) -> Path:
        d = self.root / "sandbox"
        d.mkdir(exist_ok=True)
        return d

    async def runtime(self, state: str = "state", **kw: Any) -> ProcessRuntime:
        rt = await ProcessRuntime.open(self.root / state, **kw)
        self.runtimes.append(rt)
        self.cgroup_parents.update(rt.cgroups.parents.values())
        return rt

    def spec(self, name: str, argv: list[str], attempt: int = 0, **kw: Any) -> ContainerSpec:
        env = kw.pop("env", {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1"})
        return ContainerSpec(
            id=ContainerId("pod-uid-1", name, attempt),
            pod_namespace="default",
            pod_name="web",
            argv=argv,
            env=env,
            working_dir=kw.pop("working_dir", self.sandbox),
            log_path=kw.pop("log_path", self.root / "logs" / name / f"{attempt}.log"),
            **kw,
        )

    async def start(self, rt: ProcessRuntime, spec: ContainerSpec) -> ContainerStatus:
        st = await rt.start(spec)
        pgid = rt.process_group(spec.id)
        assert pgid is not None
        self.pgids.add(pgid)
        return st

    def track(self, pgid: int) -> None:
        self.pgids.add(pgid)

    async def cleanup(self) -> None:
        for rt in self.runtimes:
            await rt.close()
        for pgid in self.pgids:
            kill_group(pgid)
        deadline = time.monotonic() + 10
        for pid in self.pgids | self.extra_pids:
            # Reap our own children (wrappers spawned in this process, or re-parented to us as subreaper).
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (WNOHANG never blocks)
                except ChildProcessError:
                    break
                if done:
                    break
                await asyncio.sleep(0.005)
        # SIGKILL is delivered asynchronously: on a loaded machine a killed process can still show as running
        # for a moment, so wait (with the deadline) for the groups to empty before calling it a survivor.
        leftovers = {pgid: group_members(pgid) for pgid in self.pgids}
        while any(leftovers.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            leftovers = {pgid: group_members(pgid) for pgid in self.pgids}
        for parent in self.cgroup_parents:
            while time.monotonic() < deadline:
                children = [p for p in parent.iterdir() if p.is_dir()] if parent.exists() else []
                for child in children:
                    with contextlib.suppress(OSError):
                        child.rmdir()
                with contextlib.suppress(OSError):
                    parent.rmdir()
                if not parent.exists():
                    break
                await asyncio.sleep(0.01)
        assert not any(leftovers.values()), f"processes survived teardown: {leftovers}"


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path)
    try:
        yield h
    finally:
        await h.cleanup()


class Exits:
    """Collects on_exit callbacks with their arrival time."""

    def __init__(self, rt: ProcessRuntime) -> None:
        self.seen: list[tuple[float, ContainerStatus]] = []
        rt.on_exit(lambda st: self.seen.append((time.monotonic(), st)))

    async def of(self, cid: ContainerId, timeout: float = 15.0) -> ContainerStatus:
        await wait_until(lambda: any(st.id == cid for _, st in self.seen), timeout, f"exit of {cid}")
        return next(st for _, st in self.seen if st.id == cid)


def log_text(h: Harness, name: str, attempt: int = 0) -> str:
    return (h.root / "logs" / name / f"{attempt}.log").read_text()


# --------------------------------------------------------------------------------------------- lifecycle


async def test_start_list_stop(harness: Harness) -> None:
    rt = await harness.runtime()
    spec = harness.spec("sleeper", ["sleep", "300"])
    st = await harness.start(rt, spec)
    assert st.state is ContainerState.RUNNING
    pgid = rt.process_group(spec.id)
    assert pgid is not None and pgid != st.pid
    assert read_proc_stat(st.pid) is not None
    assert os.getpgid(st.pid) == pgid and os.getsid(st.pid) == pgid
    assert sorted(group_members(pgid)) == sorted([pgid, st.pid])
    (listed,) = await rt.list()
    assert listed.id == spec.id and listed.state is ContainerState.RUNNING and listed.pid == st.pid

    began = time.monotonic()
    final = await rt.stop(spec.id, 10)
    assert time.monotonic() - began < 5
    assert final is not None and final.state is ContainerState.EXITED
    assert (final.exit_code, final.signal, final.reason) == (143, 15, "Error")
    assert final.finished_at is not None and final.finished_at >= final.started_at
    assert group_members(pgid) == []
    assert await rt.stop(spec.id, 10) == final  # idempotent
    assert await rt.stop(ContainerId("nope", "x", 0), 1) is None

    with pytest.raises(StartError) as err:
        await rt.start(spec)
    assert err.value.reason == "AlreadyExists"
    await rt.remove(spec.id)
    assert await rt.list() == []
    await rt.close()
    assert not any(p.exists() for p in rt.cgroups.parents.values()), "no empty cgroup dirs left behind"


@pytest.mark.parametrize(
    ("argv", "code", "sig", "reason"),
    [
        (["sh", "-c", "exit 0"], 0, None, "Completed"),
        (["sh", "-c", "exit 3"], 3, None, "Error"),
        (["sh", "-c", "kill -9 $$"], 137, 9, "Error"),
        (["sh", "-c", "kill -TERM $$"], 143, 15, "Error"),
    ],
)
async def test_exit_codes(harness: Harness, argv: list[str], code: int, sig: int | None, reason: str) -> None:
    rt = await harness.runtime()
    exits = Exits(rt)
    spec = harness.spec("c", argv)
    await harness.start(rt, spec)
    st = await exits.of(spec.id)
    assert (st.state, st.exit_code, st.signal, st.reason, st.oom_killed) == (
        ContainerState.EXITED,
        code,
        sig,
        reason,
        False,
    )
    assert (await rt.list())[0] == st


async def test_kill_9_from_outside_reports_137(harness: Harness) -> None:
    rt = await harness.runtime()
    exits = Exits(rt)
    spec = harness.spec("c", ["sleep", "300"])
    st = await harness.start(rt, spec)
    os.kill(st.pid, signal.SIGKILL)
    done = await exits.of(spec.id)
    assert (done.exit_code, done.signal, done.reason) == (137, 9, "Error")
    assert group_members(rt.process_group(spec.id) or 0) == []


TRAPS_TERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: (print("got TERM"), sys.exit(0)))
print("ready")
time.sleep(300)
"""

IGNORES_TERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready")
time.sleep(300)
"""


async def test_process_trapping_term_completes_within_grace(harness: Harness) -> None:
    rt = await harness.runtime()
    spec = harness.spec("trap", [PYTHON, "-c", TRAPS_TERM])
    await harness.start(rt, spec)
    await wait_until(lambda: "ready" in log_text(harness, "trap"), what="handler installed")
    began = time.monotonic()
    st = await rt.stop(spec.id, 10)
    assert time.monotonic() - began < 5
    assert st is not None and (st.exit_code, st.reason) == (0, "Completed")
    assert "got TERM" in log_text(harness, "trap")


async def test_process_ignoring_term_is_killed_after_grace(harness: Harness) -> None:
    rt = await harness.runtime()
    spec = harness.spec("stubborn", [PYTHON, "-c", IGNORES_TERM])
    await harness.start(rt, spec)
    await wait_until(lambda: "ready" in log_text(harness, "stubborn"), what="handler installed")
    began = time.monotonic()
    st = await rt.stop(spec.id, 0.5)
    took = time.monotonic() - began
    assert 0.5 <= took < 3
    assert st is not None and (st.exit_code, st.signal, st.reason) == (137, 9, "Error")
    assert group_members(rt.process_group(spec.id) or 0) == []


async def test_concurrent_stops_share_one_termination(harness: Harness) -> None:
    rt = await harness.runtime()
    spec = harness.spec("c", ["sleep", "300"])
    await harness.start(rt, spec)
    a, b = await asyncio.gather(rt.stop(spec.id, 5), rt.stop(spec.id, 5))
    assert a == b and a is not None and a.exit_code == 143


async def test_stop_and_exit_leave_no_process_in_the_group(harness: Harness) -> None:
    rt = await harness.runtime()
    exits = Exits(rt)
    # Children left behind by a main process that exits are killed, as a pid namespace would.
    spec = harness.spec("parent-exits", ["sh", "-c", "sleep 300 & sleep 300 & echo started; exit 0"])
    await harness.start(rt, spec)
    st = await exits.of(spec.id)
    assert st.exit_code == 0
    pgid = rt.process_group(spec.id) or 0
    await wait_until(lambda: group_members(pgid) == [], what="leftover children killed")

    spec2 = harness.spec("tree", ["sh", "-c", "sleep 300 & sleep 300 & wait"])
    await harness.start(rt, spec2)
    pgid2 = rt.process_group(spec2.id) or 0
    await wait_until(lambda: len(group_members(pgid2)) == 4, what="two sleeps started")
    await rt.stop(spec2.id, 5)
    assert group_members(pgid2) == []


async def test_remove_kills_a_running_container(harness: Harness) -> None:
    rt = await harness.runtime()
    spec = harness.spec("c", ["sleep", "300"])
    st = await harness.start(rt, spec)
    await rt.remove(spec.id)
    assert await rt.list() == []
    await rt.close()
    assert not any(p.exists() for p in rt.cgroups.parents.values()), "no empty cgroup dirs left behind"
    await wait_until(lambda: not alive(st.pid), what="container killed")


# --------------------------------------------------------------------------------------------- start errors


async def test_start_errors_are_synchronous_and_clear(harness: Harness) -> None:
    rt = await harness.runtime()
    plain = harness.sandbox / "plain.txt"
    plain.write_text("not a program")
    plain.chmod(0o644)
    cases = [
        ([], harness.sandbox, "no command specified"),
        (["nope-not-here"], harness.sandbox, 'exec: "nope-not-here": executable file not found in $PATH'),
        (["/nope/bin"], harness.sandbox, 'exec: "/nope/bin": stat /nope/bin: no such file or directory'),
        ([str(plain)], harness.sandbox, f'exec: "{plain}": permission denied'),
        (["/tmp"], harness.sandbox, 'exec: "/tmp": permission denied'),
        (["./plain.txt"], harness.sandbox, 'exec: "./plain.txt": permission denied'),
        (["sleep", "1"], harness.root / "missing", "no such file or directory"),
        (["sleep", "1"], plain, "not a directory"),
    ]
    for i, (argv, wd, message) in enumerate(cases):
        with pytest.raises(StartError) as err:
            await rt.start(harness.spec(f"bad{i}", argv, working_dir=wd))
        assert err.value.reason == "StartError"
        assert message in err.value.message, (argv, err.value.message)
    assert await rt.list() == []
    assert list((harness.root / "state" / "instances").iterdir()) == []


async def test_env_working_dir_and_signal_dispositions(harness: Harness) -> None:
    rt = await harness.runtime()
    workdir = harness.root / "wd"
    workdir.mkdir()
    exits = Exits(rt)
    env = {"PATH": os.environ["PATH"], "FOO": "bar baz", "rc": "kept"}
    argv = ["sh", "-c", 'env -0 > env.out; pwd > pwd.out; exec "$0" 300', "sleep"]
    spec = harness.spec("env", argv, env=env, working_dir=workdir)
    st = await harness.start(rt, spec)
    await wait_until(lambda: (workdir / "pwd.out").exists() and alive(st.pid), what="env written")
    seen = dict(kv.split("=", 1) for kv in (workdir / "env.out").read_text().split("\0") if kv)
    seen.pop("PWD", None)  # the user's own `sh -c` exports PWD, as it would in a container
    seen.pop("OLDPWD", None)
    assert seen == env
    assert (workdir / "pwd.out").read_text().strip() == str(workdir)
    # The main process starts with default dispositions: nothing ignored (no SIGINT/SIGQUIT/SIGPIPE leaks).
    await wait_until(lambda: Path(f"/proc/{st.pid}/comm").read_text().strip() == "sleep", what="exec sleep")
    assert sigign_mask(st.pid) == 0
    assert os.readlink(f"/proc/{st.pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{st.pid}/fd/1") == str(harness.root / "logs" / "env" / "0.log")
    # Just after exec the dynamic loader and setlocale briefly hold fd 3 (a library or the locale archive) in
    # sleep itself; an fd leaked by the runtime would stay open for good, so wait for the loader to finish.
    await wait_until(
        lambda: sorted(os.listdir(f"/proc/{st.pid}/fd")) == ["0", "1", "2"], timeout=5, what="only fds 0-2 open"
    )
    await rt.stop(spec.id, 5)
    assert (await exits.of(spec.id)).exit_code == 143

    direct = harness.spec("direct-env", ["env"], env={"PATH": os.environ["PATH"], "A": "1"})
    await harness.start(rt, direct)
    await exits.of(direct.id)
    assert sorted(log_text(harness, "direct-env").splitlines()) == ["A=1", f"PATH={os.environ['PATH']}"]


# --------------------------------------------------------------------------------------------- adoption

EXITS_ON_TRIGGER = """
import os, sys, time
trigger = sys.argv[1]
while not os.path.exists(trigger):
    time.sleep(0.01)
sys.exit(7)
"""


async def test_adoption_after_close(harness: Harness) -> None:
    a = await harness.runtime()
    trigger = harness.root / "trigger"
    one = await harness.start(a, harness.spec("one", ["sleep", "300"]))
    two = await harness.start(a, harness.spec("two", ["sleep", "300"]))
    three = await harness.start(a, harness.spec("three", [PYTHON, "-c", EXITS_ON_TRIGGER, str(trigger)]))
    await a.close()

    trigger.touch()  # exits while no runtime watches
    await wait_until(lambda: not alive(three.pid), what="three exited")

    b = await harness.runtime()
    exits = Exits(b)
    by_name = {st.id.name: st for st in await b.list()}
    assert by_name["one"].state is ContainerState.RUNNING and by_name["one"].pid == one.pid
    assert by_name["two"].state is ContainerState.RUNNING and by_name["two"].pid == two.pid
    assert by_name["one"].started_at == one.started_at
    gone = by_name["three"]
    assert (gone.state, gone.exit_code, gone.reason) == (ContainerState.EXITED, 7, "Error")
    assert gone.finished_at is not None
    # Never started twice: each group still holds exactly its wrapper and its one process.
    one_pgid = b.process_group(one.id)
    assert one_pgid is not None and sorted(group_members(one_pgid)) == sorted([one_pgid, one.pid])

    os.kill(one.pid, signal.SIGKILL)
    st = await exits.of(one.id)
    assert (st.exit_code, st.reason) == (137, "Error")
    stopped = await b.stop(two.id, 5)
    assert stopped is not None and stopped.exit_code == 143
    assert group_members(b.process_group(two.id) or 0) == []

    # And a third runtime sees the final statuses, unchanged.
    await b.close()
    c = await harness.runtime()
    final = {st.id.name: st for st in await c.list()}
    assert final["one"] == st and final["two"] == stopped and final["three"] == gone


@pytest.mark.parametrize("forged", ["start_ticks", "boot_id"])
async def test_pid_reuse_guard(harness: Harness, forged: str) -> None:
    a = await harness.runtime(cgroups=False)
    spec = harness.spec("c", ["sleep", "300"])
    st = await harness.start(a, spec)
    await a.close()
    (record_file,) = (harness.root / "state" / "instances").glob("*/record.json")
    record = json.loads(record_file.read_text())
    if forged == "start_ticks":
        record["wrapper_start_ticks"] += 1  # as if the pid now belonged to another process
    else:
        record["boot_id"] = "an-earlier-boot"  # as if the machine had rebooted since
    record_file.write_text(json.dumps(record))

    b = await harness.runtime(cgroups=False)
    (seen,) = await b.list()
    assert seen.state is ContainerState.EXITED
    assert (seen.exit_code, seen.reason) == (137, "ContainerStatusUnknown")
    assert seen.message == "The container could not be located when the pod was terminated"
    assert alive(st.pid), "a process that is not provably ours must never be signalled"
    assert await b.stop(spec.id, 1) == seen  # and stop does not touch it either
    assert alive(st.pid)


async def test_adoption_of_a_start_interrupted_before_its_record_was_complete(harness: Harness) -> None:
    a = await harness.runtime()
    spec = harness.spec("c", ["sleep", "300"])
    st = await harness.start(a, spec)
    await a.close()
    # As if the agent died right after spawning: the record has no pids yet (the wrapper wrote its own).
    (record_file,) = (harness.root / "state" / "instances").glob("*/record.json")
    record = json.loads(record_file.read_text())
    record.update(wrapper_pid=None, wrapper_start_ticks=None, pid=None, pgid=None)
    record_file.write_text(json.dumps(record))

    b = await harness.runtime()
    exits = Exits(b)
    (seen,) = await b.list()
    assert seen.state is ContainerState.RUNNING and seen.pid == st.pid
    os.kill(st.pid, signal.SIGKILL)
    assert (await exits.of(spec.id)).exit_code == 137


AGENT = """
import asyncio, json, sys
from pathlib import Path
from corral.agent.runtimes.process import ProcessRuntime
from corral.agent.runtimes.base import ContainerId, ContainerSpec

def out(obj):
    print(json.dumps(obj), flush=True)

def show(st):
    return {"name": st.id.name, "state": st.state.value, "pid": st.pid, "exit_code": st.exit_code,
            "reason": st.reason}

async def main():
    mode, state, root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    rt = await ProcessRuntime.open(state)
    exits = asyncio.Queue()
    rt.on_exit(exits.put_nowait)
    if mode == "A":
        started = []
        for name, argv in json.loads(sys.argv[4]):
            spec = ContainerSpec(id=ContainerId("uid", name, 0), pod_namespace="ns", pod_name="p", argv=argv,
                                 env={"PATH": "/usr/bin:/bin"}, working_dir=root, log_path=root / f"{name}.log")
            st = await rt.start(spec)
            started.append({**show(st), "pgid": rt.process_group(spec.id)})
        out(started)
        await asyncio.Event().wait()
    out([show(st) for st in await rt.list()])
    loop = asyncio.get_running_loop()
    while True:
        cmd = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not cmd or cmd[0] == "quit":
            break
        if cmd[0] == "wait-exit":
            out(show(await exits.get()))
        elif cmd[0] == "stop":
            out(show(await rt.stop(ContainerId("uid", cmd[1], 0), float(cmd[2]))))
    await rt.close()

asyncio.run(main())
"""

PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Orphans re-parent to this test process instead of init (which may not reap): we reap them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("cannot become a child subreaper")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


async def test_adoption_after_agent_sigkill(harness: Harness) -> None:
    """The real thing: agent A (a process) is SIGKILLed; agent B (another process) adopts its containers."""
    state, work = harness.root / "agent-state", harness.root / "work"
    work.mkdir()
    trigger = work / "trigger"
    containers = [
        ["one", ["sleep", "300"]],
        ["two", ["sleep", "300"]],
        ["three", [PYTHON, "-c", EXITS_ON_TRIGGER, str(trigger)]],
    ]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    with subreaper():
        agent_a = subprocess.Popen(  # noqa: ASYNC220 (a quick fork; we want the handle here)
            [PYTHON, "-c", AGENT, "A", str(state), str(work), json.dumps(containers)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            line = await asyncio.to_thread(agent_a.stdout.readline)  # type: ignore[union-attr]
            started = {c["name"]: c for c in json.loads(line)}
            for c in started.values():
                harness.track(c["pgid"])
        finally:
            agent_a.kill()
            agent_a.wait()
        # The containers outlive their agent.
        assert all(alive(c["pid"]) for c in started.values())
        trigger.touch()
        await wait_until(lambda: not alive(started["three"]["pid"]), what="three exits while no agent runs")

        agent_b = subprocess.Popen(  # noqa: ASYNC220
            [PYTHON, "-c", AGENT, "B", str(state), str(work)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert agent_b.stdin is not None and agent_b.stdout is not None
        stdin, stdout = agent_b.stdin, agent_b.stdout

        async def ask(cmd: str | None = None) -> Any:
            if cmd is not None:
                stdin.write(cmd + "\n")
                stdin.flush()
            return json.loads(await asyncio.to_thread(stdout.readline))

        try:
            listed = {c["name"]: c for c in await ask()}
            for name in ("one", "two"):
                assert listed[name]["state"] == "running" and listed[name]["pid"] == started[name]["pid"]
                # Adopted, not restarted: the group holds the same wrapper and the same single process.
                assert sorted(group_members(started[name]["pgid"])) == sorted(
                    [started[name]["pgid"], started[name]["pid"]]
                )
            assert (listed["three"]["state"], listed["three"]["exit_code"]) == ("exited", 7)

            os.kill(started["one"]["pid"], signal.SIGKILL)
            exited = await ask("wait-exit")
            assert (exited["name"], exited["exit_code"], exited["reason"]) == ("one", 137, "Error")
            stopped = await ask("stop two 5")
            assert (stopped["exit_code"], stopped["reason"]) == (143, "Error")
            assert group_members(started["two"]["pgid"]) == []
            stdin.write("quit\n")
            stdin.flush()
            assert await asyncio.to_thread(agent_b.wait, 10) == 0
        finally:
            if agent_b.poll() is None:
                agent_b.kill()
                agent_b.wait()
        # The wrappers were re-parented to us (subreaper): reap them in teardown.
        harness.extra_pids.update(c["pgid"] for c in started.values())
    # A third agent over the same state sees the settled statuses (and lets teardown find its cgroups).
    c = await harness.runtime(state="agent-state")
    final = {st.id.name: st for st in await c.list()}
    assert {name: (st.state, st.exit_code) for name, st in final.items()} == {
        "one": (ContainerState.EXITED, 137),
        "two": (ContainerState.EXITED, 143),
        "three": (ContainerState.EXITED, 7),
    }


# --------------------------------------------------------------------------------------------- logs

CHATTY = """
import sys, time
i = 0
while True:
    print(f"line {i:08d} " + "x" * 80, flush=True)
    if i % 3 == 0:
        print(f"err {i:08d}", file=sys.stderr, flush=True)
    i += 1
    time.sleep(0.0005)
"""


async def test_stdout_and_stderr_interleave_in_one_file(harness: Harness) -> None:
    rt = await harness.runtime()
    exits = Exits(rt)
    script = "import sys\nfor i in range(3):\n    print(f'out{i}', flush=True)\n    print(f'err{i}', file=sys.stderr, flush=True)"
    spec = harness.spec("mixed", [PYTHON, "-c", script])
    st = await harness.start(rt, spec)
    await exits.of(spec.id)
    assert st.log_path == harness.root / "logs" / "mixed" / "0.log"
    assert log_text(harness, "mixed").split() == ["out0", "err0", "out1", "err1", "out2", "err2"]
    assert logs.read_log_bytes(st.log_path, logs.LogQuery(tail_lines=2)) == b"out2\nerr2\n"


async def test_log_rotation_while_running_and_follow(harness: Harness) -> None:
    rt = await harness.runtime(maintenance_interval=3600)  # we drive maintenance by hand
    spec = harness.spec("chatty", [PYTHON, "-c", CHATTY], log_max_bytes=20_000, log_max_files=3)
    st = await harness.start(rt, spec)
    path = st.log_path
    stop = asyncio.Event()
    received: list[bytes] = []

    async def follow() -> None:
        async for chunk in logs.follow_log(path, stop=stop, poll_interval=0.01):
            received.append(chunk)

    follower = asyncio.create_task(follow())
    rotations = 0
    deadline = time.monotonic() + 30
    while rotations < 4:
        assert time.monotonic() < deadline, "log never grew enough to rotate"
        await asyncio.sleep(0.02)
        if path.stat().st_size >= 20_000:
            rt.maintain_now()
            rotations += 1
    # After rotation the running process keeps writing into the (truncated) current file.
    size_after = path.stat().st_size
    await wait_until(lambda: path.stat().st_size > size_after + 1000, what="writes after rotation")
    assert logs.rotated_path(path, 1).exists() and logs.rotated_path(path, 2).exists()
    assert not logs.rotated_path(path, 3).exists()  # max_files=3: current + 2 copies
    await rt.stop(spec.id, 5)
    stop.set()
    await asyncio.wait_for(follower, 10)

    def numbers(text: bytes) -> list[int]:
        return [int(line.split()[1]) for line in text.splitlines() if line.startswith(b"line ")]

    followed = numbers(b"".join(received))
    assert followed == sorted(followed) and len(set(followed)) == len(followed), "no duplicates, in order"
    # Copy-truncate can lose the few bytes written between the copy and the truncate; nothing more.
    assert followed[-1] - followed[0] + 1 - len(followed) <= rotations * 5
    on_disk = numbers(logs.read_log_bytes(path))
    assert on_disk == sorted(on_disk) and on_disk[-1] == followed[-1]
    # The index gives every line a timestamp.
    stamped = logs.read_log_bytes(path, logs.LogQuery(tail_lines=3, timestamps=True)).splitlines()
    assert len(stamped) == 3 and all(line[:4].isdigit() and b"Z " in line for line in stamped)


async def test_previous_attempt_log(harness: Harness) -> None:
    rt = await harness.runtime()
    exits = Exits(rt)
    first = harness.spec("app", ["sh", "-c", "echo attempt zero; exit 1"], attempt=0)
    await harness.start(rt, first)
    await exits.of(first.id)
    second = harness.spec("app", ["sh", "-c", "echo attempt one; exit 0"], attempt=1)
    await harness.start(rt, second)
    await exits.of(second.id)
    logs_dir = harness.root / "logs"
    previous = logs.previous_attempt_log(logs_dir, "app", 1)
    assert previous is not None and logs.read_log_bytes(previous) == b"attempt zero\n"
    statuses = {st.id.attempt: st for st in await rt.list()}
    assert (statuses[0].exit_code, statuses[1].exit_code) == (1, 0)


# --------------------------------------------------------------------------------------------- exec


class Streams:
    def __init__(self, stdin: bytes = b"") -> None:
        self._stdin = [stdin] if stdin else []
        self.out = bytearray()
        self.err = bytearray()

    async def read_stdin(self) -> bytes | None:
        return self._stdin.pop(0) if self._stdin else None

    async def write_stdout(self, data: bytes) -> None:
        self.out += data

    async def write_stderr(self, data: bytes) -> None:
        self.err += data


@pytest.mark.parametrize("cgroups", [None, False], ids=["cgroups-auto", "no-cgroups"])
async def test_exec(harness: Harness, cgroups: bool | None) -> None:
    rt = await harness.runtime(cgroups=cgroups)
    env = {"PATH": os.environ["PATH"], "FOO": "bar"}
    spec = harness.spec("c", ["sleep", "300"], env=env)
    await harness.start(rt, spec)
    streams = Streams(b"hello from stdin\n")
    result = await rt.exec(spec.id, ["sh", "-c", 'cat; echo "$FOO"; pwd; echo oops >&2; exit 5'], streams)
    assert result.exit_code == 5
    assert bytes(streams.out) == f"hello from stdin\nbar\n{harness.sandbox}\n".encode()
    assert bytes(streams.err) == b"oops\n"

    streams = Streams()
    assert (await rt.exec(spec.id, ["sh", "-c", "kill -9 $$"], streams)).exit_code == 137

    cgroup = rt.cgroup_of(spec.id)
    if cgroup is not None:
        streams = Streams()
        await rt.exec(spec.id, ["cat", "/proc/self/cgroup"], streams)
        own = streams.out.decode()
        assert all(d.name in own for d in cgroup.dirs.values())

    with pytest.raises(StartError, match="executable file not found"):
        await rt.exec(spec.id, ["nope-not-here"], Streams())
    with pytest.raises(StartError) as err:
        await rt.exec(ContainerId("x", "y", 0), ["true"], Streams())
    assert err.value.reason == "NotFound"
    await rt.stop(spec.id, 5)
    with pytest.raises(StartError) as err:
        await rt.exec(spec.id, ["true"], Streams())
    assert err.value.reason == "ContainerNotRunning"


# --------------------------------------------------------------------------------------------- cgroups

ALLOCATE_200MI = (
    "b = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint('survived')"
)


def _cgroups_or_skip() -> CgroupSupport:
    if not IS_ROOT:
        pytest.skip("cgroup limits are only enforced as root")
    support = CgroupSupport.detect("corral-test-probe")
    for parent in support.parents.values():
        with contextlib.suppress(OSError):
            parent.rmdir()
    if not support.enforced:
        if os.environ.get("CORRAL_REQUIRE_CGROUPS") == "1":
            pytest.fail(f"running as root but cgroups are not usable: {support.reason}")
        pytest.skip(f"root, but cgroups are not usable here: {support.reason}")
    return support


async def test_memory_limit_oom_kill(harness: Harness) -> None:
    _cgroups_or_skip()
    rt = await harness.runtime()
    assert rt.cgroups.enforced
    exits = Exits(rt)
    spec = harness.spec("hog", [PYTHON, "-c", ALLOCATE_200MI], memory_limit_bytes=50 * 1024 * 1024)
    await harness.start(rt, spec)
    st = await exits.of(spec.id, timeout=60)
    assert (st.exit_code, st.oom_killed, st.reason) == (137, True, "OOMKilled")
    assert "survived" not in log_text(harness, "hog")

    # The same program without a limit is fine (the limit, not the machine, killed it).
    free = harness.spec("free", [PYTHON, "-c", ALLOCATE_200MI])
    await harness.start(rt, free)
    st = await exits.of(free.id, timeout=60)
    assert (st.exit_code, st.oom_killed, st.reason) == (0, False, "Completed")


async def test_cpu_limit_is_written(harness: Harness) -> None:
    support = _cgroups_or_skip()
    if "cpu" not in support.controllers:
        pytest.skip("no cpu controller")
    rt = await harness.runtime()
    spec = harness.spec("cpu", ["sleep", "300"], cpu_limit_millicores=250, memory_limit_bytes=64 << 20)
    st = await harness.start(rt, spec)
    cg = rt.cgroup_of(spec.id)
    assert cg is not None
    if cg.version is CgroupVersion.V2:
        assert (cg.dirs["unified"] / "cpu.max").read_text().split() == ["25000", "100000"]
        assert (cg.dirs["unified"] / "memory.max").read_text().strip() == str(64 << 20)
    else:
        assert (cg.dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "25000"
        assert (cg.dirs["memory"] / "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert st.pid in cg.pids()
    assert rt.process_group(spec.id) not in cg.pids(), "the wrapper stays outside the limits"
    await rt.stop(spec.id, 5)
    await wait_until(lambda: not cg.exists(), what="cgroup removed after exit")


# --------------------------------------------------------------------------------------------- performance


async def test_exit_notification_latency(harness: Harness) -> None:
    rt = await harness.runtime()
    exits = Exits(rt)
    latencies = []
    for i in range(50):
        spec = harness.spec(f"c{i}", ["sleep", "300"])
        st = await harness.start(rt, spec)
        began = time.monotonic()
        os.kill(st.pid, signal.SIGKILL)
        await exits.of(spec.id)
        latencies.append(exits.seen[-1][0] - began)
    latencies.sort()
    p50, p99 = statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]
    print(f"\nexit notification latency over 50 kills: p50={p50 * 1000:.1f}ms p99={p99 * 1000:.1f}ms")
    assert p50 < 0.05, latencies


async def test_start_100_containers(harness: Harness) -> None:
    rt = await harness.runtime()
    specs = [harness.spec(f"c{i}", ["sleep", "3600"]) for i in range(100)]
    began = time.monotonic()
    statuses = [await harness.start(rt, s) for s in specs]
    took = time.monotonic() - began
    rss = [wrapper_rss_kb(rt.process_group(s.id) or 0) for s in specs]
    print(f"\nstarted 100 containers in {took:.2f}s; wrapper RSS median {statistics.median(rss)} kB")
    assert took < 10
    assert all(st.state is ContainerState.RUNNING for st in statuses)
    assert len({st.pid for st in statuses}) == 100
    assert statistics.median(rss) < 4096
    began = time.monotonic()
    done = await asyncio.gather(*(rt.stop(s.id, 5) for s in specs))
    print(f"stopped 100 containers in {time.monotonic() - began:.2f}s")
    assert all(st is not None and st.exit_code == 143 for st in done)


# --------------------------------------------------------------------------------------------- mount namespaces


def _namespaces_or_skip() -> None:
    from corral.agent.mounting import host_facts
    from corral.agent.mountplan import namespace_problem

    problem = namespace_problem(host_facts())
    if problem:
        pytest.skip(f"namespace volume mode not possible here: {problem}")


def _mounted_anywhere(path: Path) -> bool:
    return any(f" {path} " in line for line in Path("/proc/self/mountinfo").read_text().splitlines())


async def test_mount_namespace_start_exec_adopt_and_cleanup(harness: Harness) -> None:
    """Bind mounts at a path the host does not have: the container and exec see them, the host does not;
    read-only is enforced; adoption needs no re-mount; the created mount points go with the last user."""
    _namespaces_or_skip()
    from corral.agent.runtimes.base import BindMount

    source = harness.root / "volume"
    source.mkdir()
    (source / "greeting").write_text("hello\n")
    top = harness.root / f"mnt-{os.urandom(4).hex()}"
    rw, ro = top / "rw", top / "ro"
    mounts = (
        BindMount(str(source), str(rw), str(rw)),
        BindMount(str(source), str(ro), str(ro), read_only=True),
    )
    rt = await harness.runtime()
    script = f"cat {rw}/greeting; pwd; touch {ro}/x 2>&1; touch {rw}/made && echo rw-ok; exec sleep 300"
    one = harness.spec("one", ["sh", "-c", script], mounts=mounts, working_dir=rw)
    st = await harness.start(rt, one)
    await wait_until(lambda: "rw-ok" in log_text(harness, "one"), what="the container's output")
    text = log_text(harness, "one")
    assert text.startswith(f"hello\n{rw}\n"), text
    assert "Read-only file system" in text
    assert (source / "made").exists()  # written through the read-write mount
    assert rw.is_dir() and not (rw / "greeting").exists()  # the host sees only the empty mount point
    assert not _mounted_anywhere(rw)  # nothing was mounted in the agent's (host's) namespace
    # A second container shares the mount point: it must survive the first one's exit.
    two = harness.spec("two", ["sleep", "300"], mounts=mounts[:1])
    await harness.start(rt, two)

    await rt.close()
    adopted = await harness.runtime()
    statuses = {s.id.name: s for s in await adopted.list()}
    assert statuses["one"].state is ContainerState.RUNNING and statuses["one"].pid == st.pid
    streams = Streams()
    result = await adopted.exec(
        one.id, ["sh", "-c", 'cat greeting; pwd; cat "$1/greeting"', "x", str(ro)], streams
    )
    assert (result.exit_code, bytes(streams.out)) == (0, f"hello\n{rw}\nhello\n".encode()), streams.err

    await adopted.stop(one.id, 5)
    await adopted.remove(one.id)
    assert rw.is_dir() and not ro.exists()  # rw is still the mount point of "two"
    streams = Streams()
    assert (await adopted.exec(two.id, ["cat", f"{rw}/greeting"], streams)).exit_code == 0
    assert bytes(streams.out) == b"hello\n"
    await adopted.stop(two.id, 5)
    assert not top.exists()  # every mount point the runtime created is gone with the last container


async def test_mount_namespace_failure_is_a_start_error(harness: Harness) -> None:
    _namespaces_or_skip()
    from corral.agent.runtimes.base import BindMount

    target = harness.root / f"mnt-{os.urandom(4).hex()}" / "data"
    missing = harness.root / "no-such-volume"
    rt = await harness.runtime()
    spec = harness.spec("bad", ["sleep", "300"], mounts=(BindMount(str(missing), str(target), str(target)),))
    with pytest.raises(StartError) as err:
        await rt.start(spec)
    assert err.value.reason == "CreateContainerError"
    assert str(missing) in err.value.message
    assert await rt.list() == []
    assert not target.parent.exists()  # the mount points it created are removed again
    # The same instance can be started again once the problem is fixed (nothing half-registered).
    missing.mkdir()
    st = await harness.start(rt, spec)
    assert st.state is ContainerState.RUNNING
    await rt.stop(spec.id, 5)


async def test_mount_hiding_the_runtimes_own_files_is_refused(harness: Harness) -> None:
    _namespaces_or_skip()
    from corral.agent.runtimes.base import BindMount

    source = harness.root / "volume"
    source.mkdir()
    rt = await harness.runtime()
    # Mounting over the state dir's parent would hide the wrapper script and the exit-code file.
    spec = harness.spec(
        "hides", ["true"], mounts=(BindMount(str(source), str(harness.root), str(harness.root)),)
    )
    with pytest.raises(StartError) as err:
        await rt.start(spec)
    assert err.value.reason == "CreateContainerConfigError"
    assert "would hide" in err.value.message
    assert await rt.list() == []


@pytest.mark.parametrize("with_pwd", [False, True])
async def test_mount_namespace_keeps_the_spec_environment(harness: Harness, with_pwd: bool) -> None:
    """The setup script runs in a shell and changes directory; none of that may leak into the container."""
    _namespaces_or_skip()
    from corral.agent.runtimes.base import BindMount

    source = harness.root / "volume"
    source.mkdir()
    target = harness.root / f"mnt-{os.urandom(4).hex()}"
    env = {"PATH": os.environ["PATH"], "A": "1", **({"PWD": "/elsewhere"} if with_pwd else {})}
    rt = await harness.runtime()
    exits = Exits(rt)
    mounts = (BindMount(str(source), str(target), str(target)),)
    spec = harness.spec("env", ["env"], env=env, working_dir=target, mounts=mounts)
    await harness.start(rt, spec)
    assert (await exits.of(spec.id)).exit_code == 0
    expected = {**env, **({"PWD": str(target)} if with_pwd else {})}  # as without mounts: PWD is the real one
    assert sorted(log_text(harness, "env").splitlines()) == sorted(f"{k}={v}" for k, v in expected.items())
