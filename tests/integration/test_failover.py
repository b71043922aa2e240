"""Failover across real agents (issue 8, Done-means 2): a node dies, its replicas come back elsewhere.

A ``corral server`` and three ``corral agent`` processes (f1-f3 on 127.0.0.12-14, one data dir each) run a
6-replica HTTP Deployment spread 2-2-2 by a hostname ``topologySpreadConstraint``, behind a NodePort Service.
Each replica binds ``$POD_IP`` (downward API ``status.podIP`` = its node's address) on the host port its
agent allocated, so replicas on different agents never collide even when two agents hand out the same port
number.

What one machine can and cannot show. Every agent runs its own service proxy. A NodePort frontend is bound on
the node's own address, so each node serves it independently. A ClusterIP (127.96.0.0/12) is one address
for the whole machine: the first agent to bind ``clusterIP:port`` owns it; the others get ``EADDRINUSE``,
post a ``FailedToListen`` Warning and retry every 5 s. (On separate machines each node would own its own
copy.) The test finds the owner from /proc and kills **that** agent, so it also measures the hand-over of
the ClusterIP to a surviving agent's proxy.

Three ways a node goes away:

* ``agent``: ``SIGKILL`` of the agent's PID only. Its pods' processes (their own process groups) keep running,
  as on a machine whose kubelet died; that is what makes the return meaningful: the restarted agent must stop
  those stale copies before it reports Ready.
* ``machine``: the agent and its pods' process groups are killed (PIDs from the runtime's records).
* partition (root only): the third agent runs in a network namespace joined to the host by a veth pair; the
  namespace's end of the link goes down and comes back up. The agent lives on, cut off.

Asserted, with the times printed:

* the node goes ``Ready=Unknown``; 6 Ready replicas run on the two other nodes within 15 s of the kill
  (which needs ``corral server``'s 4 s eviction timeout; see docs/nodes.md, "Failover, measured");
* a steady load through a surviving node's NodePort fails at most in a short window (the dead node's proxy
  is gone, but its pods still answer until the endpoints drop them, so normally nothing fails);
* the load through the ClusterIP fails at most for the hand-over window (≤ the 5 s bind retry + a margin);
* the agent, restarted on the same data dir and name (or healed), has stopped every stale process (PIDs from the old
  pods' ``containerID``) when it reports Ready, and exactly 6 replicas run.

The spread constraint uses ``nodeTaintsPolicy: Honor``: with upstream's default ``Ignore`` the dead node
(pods gone, 0 replicas) would stay a domain and ``maxSkew: 1`` would forbid the replacements anywhere else,
exactly as in Kubernetes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.clusterkit import KUBECTL, Cluster, eventually, kill_recorded_pods
from tests.integration.loadgen import SteadyLoad, http_get
from tests.integration.podkit import alive, api_client, main_pid

pytestmark = pytest.mark.slow

JSON = dict[str, Any]
NODES = {"f1": "127.0.0.12", "f2": "127.0.0.13", "f3": "127.0.0.14"}
REPLICAS = 6
FAILOVER_BUDGET = 15.0
"""Issue 8: the dead node's replicas Running and Ready elsewhere within 15 s of the kill."""
CLUSTER_IP_HANDOVER = 5.0 + 2.0
"""The ClusterIP moves to another agent's proxy on its next bind retry (every 5 s), plus a margin."""

WEB_SERVER = """
import http.server, os
BODY = (os.environ["HOSTNAME"] + " " + os.environ["NODE_NAME"] + "\\n").encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
Server((os.environ["POD_IP"], int(os.environ["PORT"])), Handler).serve_forever()
"""

DEPLOYMENT: JSON = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "replicas": REPLICAS,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "terminationGracePeriodSeconds": 2,
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule",
                        "nodeTaintsPolicy": "Honor",
                        "labelSelector": {"matchLabels": {"app": "web"}},
                    }
                ],
                "containers": [
                    {
                        "name": "web",
                        "image": "python:3",
                        "command": ["python3", "-c", WEB_SERVER],
                        "env": [
                            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        ],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                    }
                ],
            },
        },
    },
}
SERVICE: JSON = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
}


# ------------------------------------------------------------------------------------------------ load


class Load(SteadyLoad):
    """``rate`` requests per second to one frontend over fresh connections; every outcome time-stamped."""

    def __init__(self, host: str, port: int, rate: float = 40.0, workers: int = 4) -> None:
        super().__init__(host, port, rate=rate, workers=workers, timeout=2.0)

    def failures(self) -> list[tuple[float, str]]:
        with self._lock:
            return [(at, text) for at, ok, text in self.outcomes if not ok]

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def report(self, name: str, since: float) -> tuple[int, int, float]:
        """Requests, failures, and the failure window (first to last failure, s); printed relative to ``since``."""
        failed = self.failures()
        window = failed[-1][0] - failed[0][0] if failed else 0.0
        where = f" from +{failed[0][0] - since:.2f}s to +{failed[-1][0] - since:.2f}s" if failed else ""
        print(f"load via {name}: {self.count()} requests, {len(failed)} failed{where}; first: {failed[:3]}")
        return self.count(), len(failed), window


# ------------------------------------------------------------------------------------------------ views


class View:
    """The cluster seen through the official Python client (fast to poll, unlike a kubectl per probe)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.api = api_client(kubeconfig)
        self.core = client.CoreV1Api(self.api)

    def pods(self) -> list[JSON]:
        resp = self.core.list_namespaced_pod("default", label_selector="app=web", _preload_content=False)
        return list(json.loads(resp.data)["items"])

    def node(self, name: str) -> JSON:
        return dict(json.loads(self.core.read_node(name, _preload_content=False).data))

    def ready_status(self, name: str) -> str:
        for c in self.node(name).get("status", {}).get("conditions") or []:
            if c["type"] == "Ready":
                return str(c["status"])
        return ""

    def service(self) -> JSON:
        return dict(
            json.loads(self.core.read_namespaced_service("web", "default", _preload_content=False).data)
        )


def live(pods: list[JSON]) -> list[JSON]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: JSON) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def spread(pods: list[JSON]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pod in pods:
        node = pod["spec"].get("nodeName") or ""
        counts[node] = counts.get(node, 0) + 1
    return counts


def listener_pid(ip: str, port: int, pids: dict[str, int]) -> str | None:
    """Which of the given processes (name → pid) holds the listening TCP socket ``ip:port``, from /proc."""
    want = f"{''.join(f'{int(b):02X}' for b in reversed(ip.split('.')))}:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == want and cols[3] == "0A":  # 0A: LISTEN
            inodes.add(f"socket:[{cols[9]}]")
    for name, pid in pids.items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return name
            except OSError:
                continue
    return None


# ------------------------------------------------------------------------------------------------ test


@dataclass
class Deployed:
    pods: list[JSON]
    node_port: int
    cluster_ip: str


def deploy(cluster: Cluster, view: View, nodes: dict[str, str], proxies: list[str]) -> Deployed:
    """The Deployment and Service, spread 2-2-2 over ``nodes``; each node in ``proxies`` reaches all six
    replicas through its NodePort (cross-node traffic)."""
    for name in nodes:
        eventually(lambda name=name: cluster.ready(name), f"node {name} to be Ready")
    applied = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([DEPLOYMENT, SERVICE]))
    assert applied.returncode == 0, applied

    def all_ready() -> list[JSON] | None:
        pods = live(view.pods())
        return pods if len(pods) == REPLICAS and all(map(is_ready, pods)) else None

    pods = eventually(all_ready, "6 Ready replicas", timeout=60)
    assert spread(pods) == {name: 2 for name in nodes}, spread(pods)
    # `corral server`'s default eviction timeout, which the 15 s budget relies on (docs/nodes.md).
    tolerations = {t["key"]: t.get("tolerationSeconds") for t in pods[0]["spec"]["tolerations"]}
    assert tolerations["node.kubernetes.io/unreachable"] == 4, tolerations
    # Each replica is reached at its node's address (status.podIP), on the port its agent allocated.
    for pod in pods:
        assert pod["status"]["podIP"] == nodes[pod["spec"]["nodeName"]], pod["status"]
    svc = view.service()
    node_port = int(svc["spec"]["ports"][0]["nodePort"])

    # Cross-node traffic: the endpoints carry the three node addresses, and a node's proxy (its NodePort on
    # its own address) reaches all six replicas on all three nodes.
    def slice_addresses() -> set[str] | None:
        done = cluster.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json")
        items = json.loads(done.stdout)["items"] if done.returncode == 0 else []
        found = {a for s in items for e in s.get("endpoints") or [] for a in e["addresses"]}
        return found if found == set(nodes.values()) else None

    eventually(slice_addresses, "EndpointSlices carrying the three node addresses")
    names = {p["metadata"]["name"] for p in pods}
    for node in proxies:
        seen: set[str] = set()

        def reached_all(address: str = nodes[node], seen: set[str] = seen) -> bool | None:
            try:
                seen.add(http_get(address, node_port, timeout=2.0))
            except OSError:
                return None
            return True if {line.split()[0] for line in seen} == names else None

        eventually(reached_all, f"{node}'s NodePort reaching all six replicas")
        assert {line.split()[1] for line in seen} == set(nodes), (node, seen)
    return Deployed(pods, node_port, str(svc["spec"]["clusterIP"]))


def stale_pids(pods: list[JSON], victim: str) -> dict[str, int]:
    """The victim's replicas' main processes (``containerID``), by pod name."""
    stale = {p["metadata"]["name"]: main_pid(p) for p in pods if p["spec"]["nodeName"] == victim}
    assert len(stale) == 2 and all(stale.values()), stale
    return {name: pid for name, pid in stale.items() if pid is not None}


def wait_failover(view: View, victim: str) -> tuple[float, float]:
    """When the victim went Ready=Unknown, and when 6 Ready replicas ran on the other nodes (monotonic)."""
    unknown_at = eventually(
        lambda: time.monotonic() if view.ready_status(victim) == "Unknown" else None,
        f"node {victim} Ready=Unknown",
        poll=0.05,
    )

    def failed_over() -> float | None:
        pods = live(view.pods())
        on_survivors = [p for p in pods if p["spec"].get("nodeName") != victim and is_ready(p)]
        return time.monotonic() if len(on_survivors) == REPLICAS else None

    replaced_at = eventually(failed_over, "6 Ready replicas on the surviving nodes", timeout=40, poll=0.05)
    node = view.node(victim)
    assert {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []} >= {
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoSchedule"),
    }, node["spec"]
    return unknown_at, replaced_at


def wait_return(view: View, victim: str, stale: dict[str, int], since: float, timeout: float = 30) -> None:
    """The victim reports Ready again with its stale copies stopped; then exactly 6 Ready pods remain."""
    eventually(
        lambda: True if view.ready_status(victim) == "True" else None,
        f"{victim} Ready again",
        timeout=timeout,
        poll=0.05,
    )
    back_at = time.monotonic()
    still = [pid for pid in stale.values() if alive(pid)]
    assert not still, f"stale processes {still} of {sorted(stale)} still run after {victim} reported Ready"
    print(f"{victim} back: Ready after {back_at - since:.2f}s, stale copies {sorted(stale.values())} stopped")

    def settled() -> list[JSON] | None:
        pods = view.pods()  # every pod object, terminating ones included: the stale ones must be gone
        return pods if len(pods) == REPLICAS and all(map(is_ready, pods)) else None

    pods = eventually(settled, "exactly 6 pods, all Ready, after the node returned")
    assert victim not in spread(pods) and sorted(spread(pods).values()) == [3, 3], spread(pods)
    assert not set(stale) & {p["metadata"]["name"] for p in pods}
    assert all(main_pid(p) for p in pods), "every replica has a running main process"


def load_until_failed_over(loads: list[Load], cut: Callable[[], None], view: View, victim: str) -> tuple[float, float, float]:  # fmt: skip
    """Start the loads, ``cut`` the victim off, wait for the failover and a little more load (so a late
    blip would show). Returns the cut, Unknown and replaced times (monotonic)."""
    for load in loads:
        load.start()
    try:
        eventually(lambda: True if loads[0].count() > 40 else None, "the load to get going")
        cut_at = time.monotonic()
        cut()
        unknown_at, replaced_at = wait_failover(view, victim)
        settle_from = loads[0].count()
        eventually(lambda: True if loads[0].count() > settle_from + 80 else None, "load after failover")
    finally:
        for load in loads:
            load.stop()
    print(f"{victim} Ready=Unknown after {unknown_at - cut_at:.2f}s; "
          f"6 Ready replicas on the other nodes after {replaced_at - cut_at:.2f}s")  # fmt: skip
    return cut_at, unknown_at, replaced_at


# ------------------------------------------------------------------------------------------------ kill


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    c = Cluster.create(tmp_path)
    try:
        c.start_server()
        for name, address in NODES.items():
            c.start_agent(c.join, name, address)
        yield c
    finally:
        c.close()


@pytest.mark.parametrize("death", ["agent", "machine"])
def test_a_killed_node_s_replicas_run_elsewhere_within_15s_and_its_stale_copies_stop_on_return(
    cluster: Cluster, death: str
) -> None:
    view = View(cluster.kubeconfig)
    deployed = deploy(cluster, view, NODES, proxies=list(NODES))
    # One ClusterIP on one machine: exactly one agent's proxy holds it. That is the node we kill.
    agent_pids = {name: proc.pid for name, proc in cluster.agents.items()}
    victim = eventually(
        lambda: listener_pid(deployed.cluster_ip, 80, agent_pids), f"an agent on {deployed.cluster_ip}:80"
    )
    survivor = next(n for n in NODES if n != victim)

    # The other agents' proxies could not bind it: they say so on the Service (and keep retrying).
    def failed_to_listen() -> list[str] | None:
        done = cluster.kubectl("get", "events", "-o", "json")
        items = json.loads(done.stdout)["items"] if done.returncode == 0 else []
        found = [
            e["message"]
            for e in items
            if e.get("reason") == "FailedToListen" and e["involvedObject"].get("name") == "web"
        ]
        return found or None

    messages = eventually(failed_to_listen, "a FailedToListen Warning on Service web")
    assert all(f"{deployed.cluster_ip}:80" in m for m in messages), messages
    print(f"\nClusterIP {deployed.cluster_ip}:80 is held by {victim}'s proxy; killing {victim} ({death}), "
          f"load via {survivor}'s NodePort")  # fmt: skip
    stale = stale_pids(deployed.pods, victim)

    def kill() -> None:
        # "agent": SIGKILL the agent only, its pods keep running (a machine whose kubelet died).
        # "machine": SIGKILL the agent and its pods' process groups (the machine is gone).
        os.kill(cluster.agents[victim].pid, signal.SIGKILL)
        if death == "machine":
            assert len(kill_recorded_pods(cluster.root / victim)) == 2
        cluster.agents[victim].wait(timeout=10)

    node_port_load = Load(NODES[survivor], deployed.node_port)
    cluster_ip_load = Load(deployed.cluster_ip, 80)
    killed_at, _, replaced_at = load_until_failed_over([node_port_load, cluster_ip_load], kill, view, victim)
    _, np_failed, np_window = node_port_load.report(f"{survivor} NodePort", killed_at)
    _, _, cip_window = cluster_ip_load.report("ClusterIP", killed_at)
    # After a kubelet death the stale copies still run (nobody could stop them) but serve no Service traffic.
    assert all(alive(pid) == (death == "agent") for pid in stale.values()), stale
    assert replaced_at - killed_at <= FAILOVER_BUDGET, f"failover took {replaced_at - killed_at:.2f}s"
    assert np_window <= 2.0 and np_failed <= 100, node_port_load.failures()[:10]
    assert cip_window <= CLUSTER_IP_HANDOVER, cluster_ip_load.failures()[:10]

    # The node returns on the same data dir and name: by the time it reports Ready, the stale copies are gone.
    restarted_at = time.monotonic()
    cluster.start_agent(cluster.join, victim, NODES[victim])
    wait_return(view, victim, stale, restarted_at)


# ------------------------------------------------------------------------------------------------ partition


@dataclass
class Netns:
    """A network namespace linked to the host by a veth pair (``host_if`` on the host side)."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str
    subnet: str


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, (args, done.stderr)


@pytest.fixture
def partitionable(tmp_path: Path) -> Iterator[tuple[Cluster, Netns, dict[str, str]]]:
    """The server on the host end of a veth (10.213.x.1), agents p1 and p2 on the host (127.0.0.12-13) and
    p3 inside the namespace, at its end of the veth (10.213.x.2). Private addresses on a veth never leave
    the machine."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = os.getpid() % 10000
    octet = os.getpid() % 250 + 1
    net = Netns(
        f"corral-fo-{tag}",
        f"cfo{tag}h",
        f"cfo{tag}n",
        f"10.213.{octet}.1",
        f"10.213.{octet}.2",
        f"10.213.{octet}.0/30",
    )
    peer = net.ns_if
    nodes = {"p1": "127.0.0.12", "p2": "127.0.0.13", "p3": net.ns_ip}
    c = Cluster.create(tmp_path)
    created = False
    try:
        _ip("netns", "add", net.name)
        created = True
        _ip("link", "add", net.host_if, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", net.name)
        _ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
        _ip("link", "set", net.host_if, "up")
        # Should the veth's route go away, the subnet is unreachable rather than sent to the default gateway:
        # nothing of this test may leave the machine.
        _ip("route", "add", "unreachable", net.subnet, "metric", "4242")
        _ip("-n", net.name, "addr", "add", f"{net.ns_ip}/30", "dev", peer)
        _ip("-n", net.name, "link", "set", peer, "up")
        _ip("-n", net.name, "link", "set", "lo", "up")
        c.start_server("--host", net.host_ip, "--advertise-address", net.host_ip)
        for name, address in nodes.items():
            prefix = ["ip", "netns", "exec", net.name] if address == net.ns_ip else []
            c.start_agent(c.join, name, address, prefix)
        yield c, net, nodes
    finally:
        c.close()
        if created:
            for argv in (
                ["ip", "netns", "del", net.name],
                ["ip", "link", "del", net.host_if],
                ["ip", "route", "del", "unreachable", net.subnet, "metric", "4242"],
            ):
                subprocess.run(argv, capture_output=True, timeout=10, check=False)


def test_a_partitioned_node_s_replicas_run_elsewhere_within_15s_and_its_stale_copies_stop_when_it_heals(
    partitionable: tuple[Cluster, Netns, dict[str, str]],
) -> None:
    cluster, net, nodes = partitionable
    victim, survivor = "p3", "p1"
    # `ip netns exec` execs the agent: the PID we hold is the agent's, inside the namespace.
    agent_pid = cluster.agents[victim].pid
    assert "corral.cli.main" in Path(f"/proc/{agent_pid}/cmdline").read_text()
    assert os.readlink(f"/proc/{agent_pid}/ns/net") != os.readlink("/proc/self/ns/net")
    view = View(cluster.kubeconfig)
    # p3's own proxy lives in the namespace, where 127.0.0.12-13 are its own loopback: only the host nodes'
    # proxies are checked for cross-node reach (they reach p3's replicas over the veth).
    deployed = deploy(cluster, view, nodes, proxies=["p1", "p2"])
    stale = stale_pids(deployed.pods, victim)
    print(f"\npartitioning {victim} ({net.ns_ip}, netns {net.name}); load via {survivor}'s NodePort")

    load = Load(nodes[survivor], deployed.node_port)
    cut_at, _, replaced_at = load_until_failed_over(
        [load], lambda: _ip("-n", net.name, "link", "set", net.ns_if, "down"), view, victim
    )
    _, failed, window = load.report(f"{survivor} NodePort", cut_at)
    assert cluster.agents[victim].poll() is None, "the partitioned agent lives on"
    assert all(alive(pid) for pid in stale.values()), stale
    assert replaced_at - cut_at <= FAILOVER_BUDGET, f"failover took {replaced_at - cut_at:.2f}s"
    assert window <= 2.0 and failed <= 100, load.failures()[:10]

    # The link comes back: the agent notices its node is not Ready, stops its stale copies, reports Ready.
    healed_at = time.monotonic()
    _ip("-n", net.name, "link", "set", net.ns_if, "up")
    wait_return(view, victim, stale, healed_at, timeout=60)
