"""Issue 8: scheduler throughput with hollow nodes — pods bound per second, API to binding persisted, and
scheduling latency, while the nodes heartbeat in the background.

THERE IS NO PEER RUNNING ON THIS MACHINE. kube-scheduler cannot run here (no internet, no Kubernetes
binaries), so the comparison is with published numbers, printed as published and labelled so, never as
measured: kube-scheduler's CI (scheduler_perf) requires >= 680 pods/s at 5,000 nodes / 10,000 pods on large
machines; HashiCorp's Nomad C2M placed about 1,500 containers/s across many servers. Corral's target on
this 2-core machine: >= 500 pods/s.

Scenario (per run: a fresh server and data dir):

* The server: ``python -m corral.testing.serve --no-agent`` (API server, SQLite store, scheduler,
  controllers; no node of its own), its stderr drained to a log file.
* ``--nodes`` hollow nodes (``corral.testing.hollow``) in a separate process: each registers a Ready Node
  (8 cpu, 32Gi, 110 pods; ``topology.kubernetes.io/zone`` over ``--zones`` zones) and renews its Lease every
  2 s (the agent's interval), re-posting its Node status every 60 s. That is the background load:
  ``nodes / 2`` Lease writes per second. They do not mark pods Running (binding is what is measured).
* ``--pods`` bare pods in namespace ``bench``, in groups of ``--group`` pods with the label ``app=g-NNN``
  (what a controller's replicas share), each with requests cpu 100m / memory 128Mi and a
  ``topologySpreadConstraint`` on ``kubernetes.io/hostname`` (``maxSkew 1``, ``DoNotSchedule``, selecting
  its group). Bare pods, as kube-scheduler's scheduler_perf creates them: a Deployment would add the
  ReplicaSet controller's pace to what is measured.
* Creation: ``--concurrency`` clients (default 16) create the pods as fast as the server accepts them (a
  burst, as scheduler_perf does), or at ``--rate`` pods/s if given (paced; latency then is not queueing).
  Each pod's *send time* is taken just before its POST.
* Measurement: one watch on the namespace's pods, opened before the first create; a pod is *bound* when the
  first event showing ``spec.nodeName`` arrives: the binding was committed to SQLite and published, so this
  is "API to binding persisted" end to end (plus the watch delivery to this client).

Reported per run: **pods/s overall** = pods / (last bound - first send); **pods/s steady** = the middle 80 %:
0.8 pods / (time of the 90th-percentile binding - time of the 10th-percentile binding); **latency p50 / p99**
= bound - send per pod (in a burst it is mostly waiting in the scheduler's queue; see ``--rate``); the
server's CPU (cores) during the phase; the heartbeats' success, p99 write time and longest gap (10 s makes
the lifecycle controller mark a node Unknown); the nodes Ready at the end; how the pods spread (max - min
per node within each group, which the constraint keeps <= 1). Medians over ``--runs``.

Safety: loopback only; the server and the hollow process are stopped by pid in a ``finally``; own temp
data dir, removed afterwards unless ``--keep``.

Run: ``.venv/bin/python bench/scheduler_throughput.py`` (1,000 nodes, 10,000 pods), smaller:
``--nodes 50 --pods 500``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from corral.client.http import HttpTransport
from corral.client.kubeconfig import load_access
from corral.testing.hollow import NODES, PODS, HollowConfig, HollowNodes
from corral.testing.process import ServerProcess

JSON = dict[str, Any]
NAMESPACES_PLURAL = "namespaces"
NAMESPACE = "bench"
RESULTS = Path(__file__).resolve().parent / "results"

ANCHORS = [
    (
        "kube-scheduler CI (scheduler_perf), 5,000 nodes / 10,000 pods, large machines",
        ">= 680 pods/s required",
    ),
    ("Nomad C2M (HashiCorp), many servers", "about 1,500 placements/s"),
    ("Corral target, this 2-core machine, 1,000 nodes / 10,000 pods", ">= 500 pods/s"),
]


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------- hollow process


def _hollow_main(kubeconfig: str, nodes: int, zones: int, conn: Connection) -> None:
    """Child process: run the hollow nodes until the parent says stop, then send the heartbeat stats."""

    async def run() -> None:
        transport = HttpTransport(load_access(Path(kubeconfig)))
        hollow = HollowNodes([transport], HollowConfig(count=nodes, zones=zones, register_concurrency=64))
        try:
            started = time.monotonic()
            await hollow.start()
            conn.send(("ready", time.monotonic() - started))
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            loop.add_reader(conn.fileno(), stop.set)
            # Stats only from now on: registration is not the background load.
            hollow.stats.latencies.clear()
            hollow.stats.renewals = hollow.stats.failures = 0
            await stop.wait()
            loop.remove_reader(conn.fileno())
            conn.recv()
            lat = hollow.stats.latencies
            conn.send(
                (
                    "stats",
                    {
                        "renewals": hollow.stats.renewals,
                        "failures": hollow.stats.failures,
                        "max_gap_s": hollow.stats.max_gap,
                        "write_p50_ms": percentile(lat, 50) * 1000,
                        "write_p99_ms": percentile(lat, 99) * 1000,
                    },
                )
            )
        finally:
            await hollow.stop()
            await transport.close()

    try:
        import uvloop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())


# ---------------------------------------------------------------------------------------------- one run


def pod_object(index: int, group_size: int) -> JSON:
    group = f"g-{index // group_size:03d}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p-{index:05d}", "labels": {"app": group}},
        "spec": {
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "DoNotSchedule",
                    "labelSelector": {"matchLabels": {"app": group}},
                }
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }


async def measure(server: ServerProcess, args: argparse.Namespace) -> JSON:
    from corral.api.resources import REGISTRY

    namespaces = REGISTRY.by_path("", "v1", NAMESPACES_PLURAL)
    assert namespaces is not None and server.proc is not None
    transport = HttpTransport(load_access(server.kubeconfig))
    try:
        await transport.create(
            namespaces, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        )
        # The scheduler must see every node Ready before the clock starts.
        deadline = time.monotonic() + 60
        while True:
            items = (await transport.list(NODES, None)).items
            ready = sum(_ready(n) for n in items)
            if ready == args.nodes:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ready}/{args.nodes} nodes Ready")
            await asyncio.sleep(0.2)

        sent: dict[str, float] = {}
        bound: dict[str, float] = {}
        placed: dict[str, str] = {}
        done = asyncio.Event()
        listed = await transport.list(PODS, NAMESPACE)

        async def watch() -> None:
            async for event in transport.watch(PODS, NAMESPACE, resource_version=listed.resource_version):
                now = time.monotonic()
                obj = event.obj
                name = (obj.get("metadata") or {}).get("name")
                node = (obj.get("spec") or {}).get("nodeName")
                if name and node and name not in bound:
                    bound[name] = now
                    placed[name] = node
                    if len(bound) == args.pods:
                        done.set()
                        return

        watcher = asyncio.create_task(watch())
        cpu_before = cpu_seconds(server.proc.pid)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(args.pods):
            queue.put_nowait(i)
        start = time.monotonic()

        async def creator() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                if args.rate:
                    # Paced: pod i is due at start + i / rate (no catching up in bursts is needed below it).
                    await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                obj = pod_object(i, args.group)
                sent[obj["metadata"]["name"]] = time.monotonic()
                await transport.create(PODS, NAMESPACE, obj)

        creators = [asyncio.create_task(creator()) for _ in range(args.concurrency)]
        await asyncio.gather(*creators)
        created_at = time.monotonic()
        with contextlib.suppress(TimeoutError):  # reported as fewer pods bound than created
            await asyncio.wait_for(done.wait(), timeout=args.timeout)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        end = time.monotonic()
        cpu_after = cpu_seconds(server.proc.pid)

        nodes_ready = sum(_ready(n) for n in (await transport.list(NODES, None)).items)
    finally:
        await transport.close()

    times = sorted(bound.values())
    latencies = [bound[n] - sent[n] for n in bound if n in sent]
    n = len(times)
    first_send = min(sent.values())
    result: JSON = {
        "pods": args.pods,
        "bound": n,
        "create_seconds": created_at - start,
        "create_rate": args.pods / (created_at - start),
        "pods_per_s": n / (times[-1] - first_send) if n else 0.0,
        "steady_pods_per_s": float("nan"),
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
        "latency_max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "server_cores": (cpu_after - cpu_before) / (end - start),
        "nodes_ready_at_end": nodes_ready,
    }
    if n >= 10:
        lo, hi = times[int(0.1 * n)], times[int(0.9 * n) - 1]
        result["steady_pods_per_s"] = (int(0.9 * n) - int(0.1 * n)) / (hi - lo) if hi > lo else float("nan")
    per_group: dict[str, Counter[str]] = defaultdict(Counter)
    for name, node in placed.items():
        per_group[f"g-{int(name[2:]) // args.group:03d}"][node] += 1
    skews = []
    for counts in per_group.values():
        # Nodes holding none of the group count as 0 whenever the group is smaller than the cluster.
        low = min(counts.values()) if len(counts) == args.nodes else 0
        skews.append(max(counts.values()) - low)
    result["max_group_skew"] = max(skews) if skews else 0
    return result


def pure_decisions(args: argparse.Namespace) -> JSON:
    """The scheduler's pure decision cost at ``--nodes`` nodes, no server: ``schedule()`` on the same hollow
    Node objects and pods as a run, each binding carried into the snapshot with ``Snapshot.place`` as the
    scheduler does. An upper bound on pods/s that no IO can beat (one core, one decision at a time).

    The same decisions are first made carrying each binding with ``with_pod`` (value semantics, a copy per
    placement), for comparison: both passes must choose the same nodes."""
    from dataclasses import replace

    from corral.agent.node import node_status
    from corral.scheduler.scheduler import schedule
    from corral.scheduler.snapshot import NodeInfo, PodInfo, Snapshot
    from corral.testing.hollow import hollow_facts, hollow_node_object, node_address

    config = HollowConfig(count=args.nodes, zones=args.zones)
    infos = []
    for i in range(args.nodes):
        obj = hollow_node_object(config, i)
        obj["metadata"]["uid"] = f"node-{i}"
        name = obj["metadata"]["name"]
        obj["status"] = node_status(
            hollow_facts(config, name), node_address(i), datetime.datetime.now(datetime.UTC)
        )
        infos.append(NodeInfo.from_object(obj))
    pods = []
    for i in range(args.pure_decisions):
        obj = pod_object(i, args.group)
        obj["metadata"].update(namespace=NAMESPACE, uid=f"pod-{i}")
        pods.append(PodInfo.from_object(obj))

    def run(owning: bool) -> tuple[float, float, list[str]]:
        snapshot = Snapshot.assemble(infos, [], {})
        chosen: list[str] = []
        decide = carry = 0.0
        for pod in pods:
            t0 = time.perf_counter()
            decision = schedule(pod, snapshot)
            t1 = time.perf_counter()
            assert decision.node is not None, decision.reason
            bound = replace(pod, node_name=decision.node)
            if owning:
                snapshot = snapshot.place(bound, decision.node)
            else:
                snapshot = snapshot.with_pod(bound, decision.node)
            carry += time.perf_counter() - t1
            decide += t1 - t0
            chosen.append(decision.node)
        return decide, carry, chosen

    value_decide, value_carry, value_chosen = run(owning=False)
    decide, carry, chosen = run(owning=True)
    assert chosen == value_chosen, "place and with_pod lineages chose different nodes"
    n = len(pods)
    result = {
        "decisions": n,
        "decision_ms": 1000 * decide / n,
        "with_pod_ms": 1000 * value_carry / n,
        "place_ms": 1000 * carry / n,
        "value_decision_ms": 1000 * value_decide / n,
        "ceiling_pods_per_s": n / (decide + carry),
    }
    print(
        f"carrying a binding at {args.nodes} nodes: {result['place_ms']:.4f} ms per place (owning, "
        f"{result['decision_ms']:.3f} ms per schedule()), {result['with_pod_ms']:.4f} ms per with_pod "
        f"(value, {result['value_decision_ms']:.3f} ms per schedule())"
    )
    return result


def _ready(node: JSON) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def one_run(args: argparse.Namespace, workdir: Path, index: int) -> JSON:
    data_dir = workdir / f"run-{index}"
    data_dir.mkdir(parents=True)
    server = ServerProcess(data_dir, agent=False)
    hollow: multiprocessing.process.BaseProcess | None = None
    parent: Connection | None = None
    spy: Any = None
    try:
        server.start(timeout=60)
        assert server.proc is not None and server.proc.stderr is not None
        # Drain the server's stderr (its log) to a file: a full pipe would stall the server.
        log_path = data_dir / "server.log"
        stderr = server.proc.stderr

        def drain() -> None:
            with log_path.open("w") as out:
                for line in stderr:
                    out.write(line)

        threading.Thread(target=drain, daemon=True).start()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        hollow = ctx.Process(
            target=_hollow_main, args=(str(server.kubeconfig), args.nodes, args.zones, child), daemon=True
        )
        hollow.start()
        if not parent.poll(300):
            raise RuntimeError("hollow nodes did not register within 300 s")
        tag, register_seconds = parent.recv()
        assert tag == "ready"
        print(f"  run {index}: {args.nodes} hollow nodes registered in {register_seconds:.1f} s", flush=True)
        time.sleep(args.settle)  # heartbeats reach their steady rate (phases spread over one interval)
        if args.py_spy:
            import subprocess

            spy = subprocess.Popen(
                [
                    args.py_spy_bin,
                    "record",
                    "--pid",
                    str(server.proc.pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(args.py_spy_rate),
                    *(["--gil"] if args.py_spy_gil else []),
                    "--output",
                    f"{args.py_spy}-run{index}.txt",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(measure(server, args))
        else:
            result = uvloop.run(measure(server, args))
        parent.send("stop")
        if not parent.poll(60):
            raise RuntimeError("hollow process did not report")
        tag, beats = parent.recv()
        assert tag == "stats"
        result["heartbeats"] = beats
        result["register_seconds"] = register_seconds
        return result
    finally:
        try:
            if spy is not None:
                import signal
                import subprocess

                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
            if hollow is not None:
                hollow.join(30)
                if hollow.is_alive():
                    hollow.kill()
                    hollow.join()
            if parent is not None:
                parent.close()
        finally:
            server.stop(timeout=30)  # whatever failed above, never leave the server running


def main() -> None:
    import signal

    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every run's finally stops its server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument(
        "--group", type=int, default=100, help="pods per spread group (a controller's replicas)"
    )
    parser.add_argument("--zones", type=int, default=10, help="zone labels on the nodes (0: none)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent pod creates")
    parser.add_argument("--rate", type=float, default=0.0, help="paced creation, pods/s (0: burst)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--settle", type=float, default=4.0, help="seconds of heartbeats before the pods")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for every binding")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--py-spy", default=None, help="record the server with py-spy to FILE-runN.txt")
    parser.add_argument("--py-spy-rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument(
        "--py-spy-gil", action="store_true", help="sample only the thread holding the GIL (the hot path)"
    )
    parser.add_argument(
        "--pure-decisions",
        type=int,
        default=0,
        help="only time N pure schedule() decisions at --nodes nodes in this process (no server)",
    )
    args = parser.parse_args()
    if args.pure_decisions:
        pure = pure_decisions(args)
        print(
            f"pure decisions at {args.nodes} nodes: {pure['decision_ms']:.2f} ms per schedule(), "
            f"{pure['with_pod_ms']:.2f} ms per with_pod; ceiling {pure['ceiling_pods_per_s']:.0f} pods/s "
            f"({pure['decisions']} decisions, one core, no IO)"
        )
        return
    args.py_spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    workdir = Path(tempfile.mkdtemp(prefix="corral-sched-", dir=args.workdir))
    stamp = datetime.datetime.now(datetime.UTC)
    print(
        f"scheduler throughput: {args.nodes} hollow nodes, {args.pods} pods "
        f"(groups of {args.group}, hostname maxSkew 1), {'burst' if not args.rate else f'{args.rate}/s'}, "
        f"{args.runs} run(s), {os.cpu_count()} cpus",
        flush=True,
    )
    runs = []
    try:
        for i in range(args.runs):
            result = one_run(args, workdir, i)
            runs.append(result)
            b = result["heartbeats"]
            print(
                f"  run {i}: {result['bound']}/{result['pods']} bound, "
                f"{result['pods_per_s']:.0f} pods/s overall, "
                f"{result['steady_pods_per_s']:.0f} steady, p50 {result['latency_p50_ms']:.0f} ms, "
                f"p99 {result['latency_p99_ms']:.0f} ms; creates {result['create_rate']:.0f}/s; "
                f"server {result['server_cores']:.2f} cores; heartbeats {b['renewals']} ok / {b['failures']} "
                f"failed, write p99 {b['write_p99_ms']:.0f} ms, max gap {b['max_gap_s']:.1f} s; "
                f"nodes Ready at end {result['nodes_ready_at_end']}; "
                f"max group skew {result['max_group_skew']}",
                flush=True,
            )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print()
    print(f"MEASURED (Corral, median of {len(runs)} run(s), {args.nodes} nodes / {args.pods} pods):")
    print(f"  pods bound per second, overall        {med('pods_per_s'):8.0f}")
    print(f"  pods bound per second, middle 80 %    {med('steady_pods_per_s'):8.0f}")
    print(f"  latency send -> binding watched p50   {med('latency_p50_ms'):8.0f} ms")
    print(f"  latency send -> binding watched p99   {med('latency_p99_ms'):8.0f} ms")
    print(f"  server CPU during the phase           {med('server_cores'):8.2f} cores")
    print("PUBLISHED ANCHORS (not measured here):")
    for what, value in ANCHORS:
        print(f"  {what}: {value}")
    if args.nodes != 1000 or args.pods != 10000:
        print("NOTE: not the benchmark's scale (1,000 nodes / 10,000 pods): a smaller run, not comparable.")
    RESULTS.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS / f"scheduler_throughput-{stamp:%Y%m%d-%H%M%S}.json"
    out.write_text(
        json.dumps(
            {"args": {k: v for k, v in vars(args).items()}, "date": stamp.isoformat(), "runs": runs}, indent=2
        )
    )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
