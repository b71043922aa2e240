"""Pods survive their agent: after SIGKILL of the whole server the next start adopts the same processes (no
second copy, restart counts kept), and processes of pods deleted while no agent watched are stopped.

The server test owns its own server process and data dir (it kills it). The second test wires two Agents over
one ProcessRuntime state dir in-process, because only there can a pod be deleted from the API while no agent
runs at all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.agent.agent import PODS, Agent, AgentConfig
from corral.agent.runtimes.base import ContainerState
from corral.agent.runtimes.process import ProcessRuntime
from corral.apiserver.rest import ResourceAPI
from corral.client.local import LocalTransport
from corral.server import bootstrap
from corral.store import MemoryStore
from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.podkit import (
    JSON,
    Pods,
    alive,
    container_status,
    group_members,
    is_ready,
    main_pid,
    pgid_of,
    pod_doc,
    processes_with_argv,
    wait_until,
)


@pytest.mark.compat
def test_sigkilled_server_adopts_its_pods_and_stops_deleted_ones(tmp_path: Path, kubectl_cache: Path) -> None:
    marker = uuid.uuid4().hex[:8]
    keep_argv = ["sh", "-c", "sleep 3600", f"keep-{marker}"]  # $0 makes the command line unique
    gone_argv = ["sh", "-c", "sleep 3600", f"gone-{marker}"]
    server = ServerProcess(tmp_path / "data").start()
    seen: set[int] = set()
    pods: Pods | None = None
    try:
        kubectl = Kubectl(server.kubeconfig, kubectl_cache, "adopt")
        kubectl.run(
            "apply",
            "-f",
            "-",
            namespace=False,
            stdin="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: adopt\n",
        )
        pods = Pods(kubectl, server.kubeconfig)
        # The readiness probe shows the new agent probes what it adopted (and gives a status change to wait on).
        probe = {"exec": {"command": ["test", "!", "-f", "down"]}, "periodSeconds": 1, "failureThreshold": 1}
        pods.apply(
            pod_doc("keep", keep_argv, container={"readinessProbe": probe}), pod_doc("gone", gone_argv)
        )
        first = main_pid(pods.wait_ready("keep"))
        gone_pid = main_pid(pods.wait_running("gone"))
        assert first is not None and gone_pid is not None
        # One restart before the crash, so there is a restart count to keep.
        os.kill(first, signal.SIGKILL)
        keep = pods.wait(
            "keep",
            lambda p: (
                container_status(p).get("restartCount") == 1
                and main_pid(p) not in (None, first)
                and is_ready(p)
            ),
            timeout=5,
            what="restarted once and Ready",
        )
        keep_pid = main_pid(keep)
        assert keep_pid is not None
        gone_pgid = pgid_of(gone_pid)
        assert gone_pgid is not None
        gone_group = group_members(gone_pgid)
        keep_group = group_members(pgid_of(keep_pid) or -1)
        seen.update(gone_group + keep_group)
        assert processes_with_argv(keep_argv) == [keep_pid]

        server.kill()
        pods.close()
        pods = None
        assert all(alive(p) for p in keep_group + gone_group), "pod processes must outlive a SIGKILLed server"

        server.start()
        pods = Pods(kubectl, server.kubeconfig)
        # The pod goes away while the new agent may still be adopting: it must stop the adopted processes.
        kubectl.run("delete", "pod", "gone", "--grace-period=0", "--force")
        wait_until(
            lambda: not [p for p in gone_group if alive(p)],
            10,
            f"processes of the deleted pod to stop: {gone_group}",
        )

        # The new agent execs into and probes the adopted instance: Ready flips to False and back.
        assert pods.exec("keep", "touch", "down")[0] == 0
        pods.wait("keep", lambda p: not is_ready(p), 5, "Ready False from the adopted instance's probe")
        assert pods.exec("keep", "rm", "down")[0] == 0
        keep = pods.wait_ready("keep", timeout=5)
        assert main_pid(keep) == keep_pid
        assert container_status(keep)["restartCount"] == 1
        assert is_running(keep)
        assert all(alive(p) for p in keep_group)
        assert processes_with_argv(keep_argv) == [keep_pid], "a second copy was started"
        assert processes_with_argv(gone_argv) == []
    finally:
        if pods is not None:
            pods.close()
        server.stop()  # SIGTERM: a clean stop stops the pods' processes
        wait_until(lambda: not [p for p in seen if alive(p)], 15, "pod processes to stop with the server")


def is_running(pod: JSON) -> bool:
    return pod["status"]["phase"] == "Running" and "running" in container_status(pod)["state"]


# ------------------------------------------------------------------------------------ agents in-process


async def eventually(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


def _pod(name: str, node: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
        },
    }


async def test_agent_stops_processes_of_a_pod_deleted_while_no_agent_ran(tmp_path: Path) -> None:
    store = MemoryStore()
    api = ResourceAPI(store)
    await bootstrap(api)
    transport = LocalTransport(api)
    config = AgentConfig(node_name="node-a", address="127.0.0.1", data_dir=tmp_path / "agent")
    state_dir = tmp_path / "agent" / "runtime"
    agent_a = Agent(transport, await ProcessRuntime.open(state_dir, cgroups=False), config)
    current: Agent | None = agent_a
    groups: list[int] = []

    async def running_pid(name: str) -> int | None:
        pod = await transport.get(PODS, "default", name)
        return main_pid(pod)

    try:
        await agent_a.start()
        for name in ("doomed", "kept"):
            await transport.create(PODS, "default", _pod(name, "node-a"))
        doomed = await eventually(lambda: running_pid("doomed"), 10, "doomed running")
        kept = await eventually(lambda: running_pid("kept"), 10, "kept running")
        doomed_group = await eventually(lambda: group_members(pgid_of(doomed) or -1), 5, "doomed's processes")
        groups += doomed_group + group_members(pgid_of(kept) or -1)
        doomed_uid = (await transport.get(PODS, "default", "doomed"))["metadata"]["uid"]

        current = None
        await agent_a.stop()  # like a crash: the workloads keep running
        assert alive(doomed) and alive(kept)
        await transport.delete(PODS, "default", "doomed", grace_period_seconds=0)

        runtime_b = await ProcessRuntime.open(state_dir, cgroups=False)
        adopted = {s.id.pod_uid for s in await runtime_b.list() if s.state is ContainerState.RUNNING}
        assert doomed_uid in adopted  # B's runtime found the orphan…
        current = Agent(transport, runtime_b, config)
        await current.start()
        await eventually(lambda: not [p for p in doomed_group if alive(p)], 10, "the orphan to be stopped")
        assert doomed_uid not in {s.id.pod_uid for s in await runtime_b.list()}  # …and forgot it
        assert not (config.data_dir / "pods" / doomed_uid).exists()
        assert alive(kept) and await running_pid("kept") == kept
    finally:
        if current is not None:
            await current.stop(stop_workloads=True, grace_seconds=1)
        await store.close()
        await eventually(lambda: not [p for p in groups if alive(p)], 10, "every pod process to stop")
