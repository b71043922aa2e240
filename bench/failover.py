"""Failover time over repeated node deaths (issue 8's benchmark, second part).

A ``corral server`` and three ``corral agent`` processes on 127.0.0.12-14 (the cluster kit of the failover
test, tests/integration/clusterkit.py) run the failover test's 6-replica Deployment spread 2-2-2. Each round:
SIGKILL a node (the agent and its pods' process groups: a machine dying), time until 6 Ready replicas run on
the other two nodes, restart the agent on the same data dir, wait for it to be Ready, and spread the replicas
2-2-2 again (scale to 0 and back) before the next round. Victims rotate over the three nodes.

There is no peer to run side by side on this machine (no Kubernetes, Nomad or Swarm cluster of three
machines can be started here), so the script prints the published defaults the issue names as anchors —
Kubernetes ≈ 5 min 50 s (40 s node-monitor grace + 300 s default tolerations + restart), Nomad ≈ 20 s,
Swarm ≈ 15 s — clearly labelled as published, not measured.

    .venv/bin/python bench/failover.py --kills 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package: the cluster kit

from tests.integration.clusterkit import Cluster, eventually, kill_recorded_pods
from tests.integration.test_failover import (
    NODES,
    REPLICAS,
    View,
    deploy,
    is_ready,
    live,
    spread,
)

ANCHORS = {"Kubernetes (defaults)": 350.0, "Nomad (defaults)": 20.0, "Docker Swarm (defaults)": 15.0}


def respread(cluster: Cluster, view: View) -> None:
    """Back to 2-2-2 over the three Ready nodes: scale to 0 and back (a rolling restart would place the new
    replicas against the old ones' counts, so they need not come out even)."""
    for replicas in (0, REPLICAS):
        done = cluster.kubectl("scale", "deployment/web", f"--replicas={replicas}")
        assert done.returncode == 0, done
        if replicas == 0:
            eventually(lambda: True if not view.pods() else None, "no replica left", timeout=60)

    def even() -> bool | None:
        pods = view.pods()  # terminating included: wait until the old ones are gone
        ok = len(pods) == REPLICAS and all(map(is_ready, pods)) and sorted(spread(pods).values()) == [2, 2, 2]
        return True if ok else None

    eventually(even, "6 Ready replicas spread 2-2-2", timeout=90)


def one_kill(cluster: Cluster, view: View, victim: str) -> float:
    """Kill ``victim`` like a dying machine; seconds until 6 Ready replicas run on the other nodes."""
    proc = cluster.agents[victim]
    killed_at = time.monotonic()
    proc.kill()
    proc.wait()
    kill_recorded_pods(cluster.root / victim)

    def failed_over() -> float | None:
        pods = live(view.pods())
        others = [p for p in pods if p["spec"].get("nodeName") != victim and is_ready(p)]
        return time.monotonic() if len(others) == REPLICAS else None

    replaced_at = eventually(failed_over, "6 Ready replicas on the other nodes", timeout=120, poll=0.05)
    cluster.start_agent(cluster.join, victim, NODES[victim])
    eventually(lambda: cluster.ready(victim), f"{victim} Ready again", timeout=60)
    return replaced_at - killed_at


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="corral-failover-") as tmp:
        cluster = Cluster.create(Path(tmp))
        try:
            cluster.start_server()
            for name, address in NODES.items():
                cluster.start_agent(cluster.join, name, address)
            view = View(cluster.kubeconfig)
            deploy(cluster, view, NODES, proxies=[])
            names = list(NODES)
            for i in range(args.kills):
                victim = names[i % len(names)]
                seconds = one_kill(cluster, view, victim)
                times.append(seconds)
                print(
                    f"kill {i + 1:2d}/{args.kills}: {victim}: 6 Ready elsewhere after {seconds:.2f} s",
                    flush=True,
                )
                respread(cluster, view)
        finally:
            cluster.close()
    print()
    print(f"Failover, {len(times)} node deaths (agent + its pods SIGKILLed), started {started}:")
    print(f"  median {statistics.median(times):.2f} s   worst {max(times):.2f} s   best {min(times):.2f} s")
    over = sum(1 for t in times if t > 15)
    print(f"  over 15 s: {over} of {len(times)}")
    print("Published defaults (not measured here):")
    for name, seconds in ANCHORS.items():
        ratio = seconds / statistics.median(times)
        print(f"  {name:26s} ~ {seconds:6.0f} s   (ratio to Corral's median: {ratio:.0f}x)")
    if args.json:
        args.json.write_text(json.dumps({"started": started, "seconds": times, "anchors": ANCHORS}, indent=1))


if __name__ == "__main__":
    main()
