"""Services end to end against a real server: real agent, real processes, the node's service proxy.

* Done-means 1: 3,000 requests through ``clusterIP:port`` of a 3-replica HTTP deployment are spread over the
  replicas (each 33% ± 10%), and through a NodePort on 127.0.0.1 too.
* Done-means 2: under a steady load of 200+ requests/s through the Service, SIGKILL of a replica's process,
  ``kubectl delete pod``, ``kubectl rollout restart`` and a rolling update to a new version each cause zero
  failed requests. The graceful cases send POST, which no proxy may replay, so they pass only because the
  terminating pod leaves the proxy before it gets SIGTERM and its in-flight requests finish.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml

from corral.testing.process import ServerProcess
from tests.conftest import Kubectl
from tests.integration.loadgen import SteadyLoad, http_get
from tests.integration.podkit import wait_until

pytestmark = pytest.mark.slow

JSON = dict[str, Any]

# Each replica answers GET and POST with its pod name and release, after 20 ms of "work", so that requests
# are in flight whenever a replica goes away (a drain that does not wait would fail some of them).
WEB_SERVER = """
import http.server, os, time
BODY = (os.environ["HOSTNAME"] + " " + os.environ["VERSION"] + "\\n").encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        time.sleep(0.02)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
WEB_COMMAND = ["python3", "-c", WEB_SERVER]


def web_deployment(name: str, version: str = "v1", replicas: int = 3) -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 10,
                    "containers": [
                        {
                            "name": "web",
                            "image": "python:3",
                            "command": WEB_COMMAND,
                            "env": [{"name": "VERSION", "value": version}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": "http"},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def service(name: str, svc_type: str = "ClusterIP") -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": svc_type,
            "selector": {"app": name},
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
        },
    }


def apply(kubectl: Kubectl, *docs: JSON) -> None:
    kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump_all(list(docs), sort_keys=False))


def get(kubectl: Kubectl, *what: str) -> JSON:
    return dict(json.loads(kubectl.run("get", *what, "-o", "json").stdout))


def ready_endpoints(kubectl: Kubectl, name: str) -> int:
    endpoints = get(kubectl, "endpoints", name)
    return sum(len(s.get("addresses") or []) for s in endpoints.get("subsets") or [])


def wait_serving(kubectl: Kubectl, name: str, replicas: int, host: str, port: int) -> None:
    """All replicas are endpoints and the proxy reaches each of them."""
    wait_until(lambda: ready_endpoints(kubectl, name) == replicas, 60, f"{replicas} ready endpoints")
    seen: set[str] = set()

    def all_reached() -> bool:
        try:
            seen.add(http_get(host, port).split()[0])
        except OSError:
            return False
        return len(seen) >= replicas

    wait_until(all_reached, 30, f"the proxy reaching {replicas} replicas")


def rollout_status(kubectl: Kubectl, name: str) -> None:
    kubectl.run("rollout", "status", f"deployment/{name}", "--timeout=120s", timeout=150)


@pytest.fixture
def web(kubectl: Kubectl) -> Iterator[str]:
    yield "web"
    kubectl.run("delete", "deployment,service", "--all", "--wait=false", check=False)


def spread(host: str, port: int, count: int) -> Counter[str]:
    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: http_get(host, port).split()[0], range(count)))
    return Counter(bodies)


def assert_even(counts: Counter[str], replicas: int) -> None:
    total = sum(counts.values())
    assert len(counts) == replicas, counts
    for pod, seen in counts.items():
        share = seen / total
        assert abs(share - 1 / replicas) <= 0.10, f"{pod} got {share:.1%} of {total}: {counts}"


def test_cluster_ip_and_node_port_spread_over_replicas(kubectl: Kubectl, web: str) -> None:
    apply(kubectl, web_deployment(web), service(web, "NodePort"))
    svc = get(kubectl, "service", web)
    cluster_ip = svc["spec"]["clusterIP"]
    node_port = svc["spec"]["ports"][0]["nodePort"]
    wait_serving(kubectl, web, 3, cluster_ip, 80)

    assert_even(spread(cluster_ip, 80, 3000), 3)
    assert_even(spread("127.0.0.1", node_port, 3000), 3)


def test_no_failed_request_while_replicas_die_restart_and_roll(
    kubectl: Kubectl, web: str, server: ServerProcess
) -> None:
    apply(kubectl, web_deployment(web), service(web))
    cluster_ip = get(kubectl, "service", web)["spec"]["clusterIP"]
    wait_serving(kubectl, web, 3, cluster_ip, 80)

    def pods() -> list[JSON]:
        listed = get(kubectl, "pods", "-l", f"app={web}")["items"]
        return [p for p in listed if not p["metadata"].get("deletionTimestamp")]

    def all_ready(count: int) -> bool:
        live = pods()
        return len(live) == count and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            for p in live
        )

    def under_load(what: str, disrupt: Any, method: str = "POST") -> None:
        with SteadyLoad(cluster_ip, 80, rate=300, workers=32, method=method) as load:
            wait_until(lambda: load.snapshot()[0] >= 100, 10, "load to start")
            disrupt()
            # Keep the load on for a while after the cluster settled, so late failures count too.
            settled = load.snapshot()[0]
            wait_until(lambda: load.snapshot()[0] >= settled + 250, 20, "load after settling")
        result = load.result
        assert result.failed == 0, (
            f"{what}: {result.failed} failed of {result.ok + result.failed}: {result.errors}"
        )
        assert result.rate >= 200, f"{what}: only {result.rate:.0f} requests/s"

    def sigkill_one() -> None:
        victim = pods()[0]
        pid = int(victim["status"]["containerStatuses"][0]["containerID"].removeprefix("process://"))
        restarts = victim["status"]["containerStatuses"][0]["restartCount"]
        os.kill(pid, signal.SIGKILL)

        def restarted() -> bool:
            now = [p for p in pods() if p["metadata"]["name"] == victim["metadata"]["name"]]
            return bool(now) and now[0]["status"]["containerStatuses"][0]["restartCount"] > restarts

        wait_until(restarted, 20, "the killed container to restart")
        wait_until(lambda: all_ready(3), 30, "3 ready pods again")

    def delete_one() -> None:
        kubectl.run("delete", "pod", pods()[0]["metadata"]["name"], "--wait=true", timeout=60)
        wait_until(lambda: all_ready(3), 30, "3 ready pods again")

    def restart() -> None:
        kubectl.run("rollout", "restart", f"deployment/{web}")
        rollout_status(kubectl, web)
        wait_until(lambda: all_ready(3), 30, "3 ready pods after the restart")

    def update() -> None:
        apply(kubectl, web_deployment(web, "v2"))
        rollout_status(kubectl, web)
        wait_until(lambda: all_ready(3), 30, "3 ready pods after the update")
        started = time.monotonic()
        while time.monotonic() - started < 0.5:
            assert http_get(cluster_ip, 80).split()[1] == "v2"

    # A SIGKILLed process loses the requests it was working on; the proxy replays idempotent ones (GET)
    # that got no response byte on another replica. POST requests, never replayed, would fail there as
    # anywhere else, so that case runs GET; the others run POST and so prove the drain before SIGTERM.
    under_load("SIGKILL of a replica", sigkill_one, method="GET")
    under_load("kubectl delete pod", delete_one)
    under_load("kubectl rollout restart", restart)
    under_load("rolling update to v2", update)


# ------------------------------------------------------------------------------------------------ discovery


def dns_query(server: ServerProcess, name: str, qtype: str) -> list[tuple[str, str]]:
    """(type, rdata) of every answer record, asked over UDP to the node's DNS server."""
    from dnslib import QTYPE, DNSRecord

    assert server.dns_address is not None, "the server runs no DNS"
    host, port = server.dns_address
    reply = DNSRecord.parse(DNSRecord.question(name, qtype).send(host, port, timeout=5))
    return [(str(QTYPE[rr.rtype]), str(rr.rdata)) for rr in reply.rr]


def test_dns_and_env_vars_find_services(kubectl: Kubectl, web: str, server: ServerProcess) -> None:
    headless = service(web)
    headless["metadata"]["name"] = "web-headless"
    headless["spec"]["clusterIP"] = "None"
    apply(kubectl, web_deployment(web, replicas=2), service(web), headless)
    cluster_ip = get(kubectl, "service", web)["spec"]["clusterIP"]
    wait_serving(kubectl, web, 2, cluster_ip, 80)
    ns = kubectl.namespace

    assert dns_query(server, f"{web}.{ns}.svc.cluster.local", "A") == [("A", cluster_ip)]
    srv = dns_query(server, f"_web._tcp.{web}.{ns}.svc.cluster.local", "SRV")
    assert len(srv) == 1 and srv[0][1].split()[2] == "80", srv

    # Headless: one A record per ready endpoint, and SRV records carrying each pod's own host port.
    ports = {
        p["port"]
        for s in get(kubectl, "endpointslices", "-l", f"kubernetes.io/service-name={web}")["items"]
        for p in s.get("ports") or []
    }

    def headless_srv() -> list[tuple[str, str]]:
        return dns_query(server, f"_web._tcp.web-headless.{ns}.svc.cluster.local", "SRV")

    wait_until(lambda: len(headless_srv()) == 2, 10, "2 SRV records for the headless service")
    assert {int(rdata.split()[2]) for _, rdata in headless_srv()} == ports
    # Every Corral pod shares its node's address, so the A records collapse to the node's; SRV tells them apart.
    assert dns_query(server, f"web-headless.{ns}.svc.cluster.local", "A") == [("A", "127.0.0.1")]
    assert dns_query(server, f"nothing.{ns}.svc.cluster.local", "A") == []

    # A pod started after the Service finds it through the environment and reaches it.
    client_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "client"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "python:3",
                    "command": [
                        "python3",
                        "-c",
                        "import os, urllib.request; "
                        "url = f\"http://{os.environ['WEB_SERVICE_HOST']}:{os.environ['WEB_SERVICE_PORT']}/\"; "
                        "print('dns', os.environ.get('CORRAL_DNS', '')); "
                        "print('answer', urllib.request.urlopen(url, timeout=5).read().decode().strip())",
                    ],
                }
            ],
        },
    }
    apply(kubectl, client_pod)
    wait_until(
        lambda: get(kubectl, "pod", "client")["status"].get("phase") in ("Succeeded", "Failed"),
        30,
        "client done",
    )
    logs = kubectl.run("logs", "client").stdout
    assert get(kubectl, "pod", "client")["status"]["phase"] == "Succeeded", logs
    assert f"dns {server.dns_address[0]}:{server.dns_address[1]}" in logs
    answer = [line for line in logs.splitlines() if line.startswith("answer ")]
    assert answer and answer[0].split()[1].startswith(f"{web}-") and answer[0].split()[2] == "v1", logs


# ------------------------------------------------------------------------------------------------ ingress


def ingress_get(server: ServerProcess, host: str, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    assert server.ingress_address is not None, "the server runs no ingress"
    address, port = server.ingress_address
    request = urllib.request.Request(f"http://{address}:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ingress_routes_hosts_and_paths(kubectl: Kubectl, web: str, server: ServerProcess) -> None:
    a, b = web_deployment("alpha", "a1", replicas=1), web_deployment("beta", "b1", replicas=1)
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "site"},
        "spec": {
            "rules": [
                {
                    "host": "a.example",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "alpha", "port": {"number": 80}}},
                            }
                        ]
                    },
                },
                {
                    "host": "b.example",
                    "http": {
                        "paths": [
                            {
                                "path": "/api",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "beta", "port": {"name": "web"}}},
                            },
                            {
                                "path": "/down",
                                "pathType": "Exact",
                                "backend": {"service": {"name": "gamma", "port": {"number": 80}}},
                            },
                        ]
                    },
                },
            ]
        },
    }
    gamma = service("gamma")  # selects no pod: never a ready endpoint
    apply(kubectl, a, b, service("alpha"), service("beta"), gamma, ingress)
    wait_until(
        lambda: ready_endpoints(kubectl, "alpha") == 1 and ready_endpoints(kubectl, "beta") == 1,
        60,
        "alpha and beta endpoints",
    )

    def routed() -> bool:
        return (
            ingress_get(server, "a.example", "/")[0] == 200
            and ingress_get(server, "b.example", "/api")[0] == 200
        )

    wait_until(routed, 20, "the ingress to route both hosts")
    for _ in range(5):
        status, body = ingress_get(server, "a.example", "/x")
        assert status == 200 and body.split()[1] == "a1", (status, body)
        status, body = ingress_get(server, "b.example", "/api/v1")
        assert status == 200 and body.split()[1] == "b1", (status, body)
    assert ingress_get(server, "b.example", "/other")[0] == 404
    status, page = ingress_get(server, "b.example", "/down")
    assert status == 503 and "gamma" in page, (status, page)

    def published() -> list[JSON]:
        lb = (get(kubectl, "ingress", "site").get("status") or {}).get("loadBalancer") or {}
        return list(lb.get("ingress") or [])

    lb = wait_until(published, 10, "the ingress status address")
    assert lb[0]["ip"] == server.ingress_address[0]


# ------------------------------------------------------------------------------------------------ bad input


def events_for(kubectl: Kubectl, kind: str, name: str) -> list[JSON]:
    listed = get(
        kubectl, "events", "--field-selector", f"involvedObject.kind={kind},involvedObject.name={name}"
    )
    return list(listed["items"])


def test_bad_service_input_is_reported_and_isolated(
    kubectl: Kubectl, web: str, server: ServerProcess
) -> None:
    apply(kubectl, web_deployment(web, replicas=1), service(web, "NodePort"))
    svc = get(kubectl, "service", web)
    cluster_ip, node_port = svc["spec"]["clusterIP"], svc["spec"]["ports"][0]["nodePort"]
    wait_serving(kubectl, web, 1, cluster_ip, 80)

    # A Service selecting nothing: empty endpoints, no crash.
    nothing = service("nothing")
    nothing["spec"]["selector"] = {"app": "no-such-app"}
    # A targetPort name no pod declares: a Warning event, the pod left out of that port.
    wrong_port = service("wrong-port")
    wrong_port["spec"]["selector"] = {"app": web}
    wrong_port["spec"]["ports"][0]["targetPort"] = "grpc"
    # An Ingress to a missing Service: a Warning event on the Ingress, 503 through the ingress.
    dangling = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "dangling"},
        "spec": {
            "rules": [
                {
                    "host": "dangling.example",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "missing", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    apply(kubectl, nothing, wrong_port, dangling)
    wait_until(
        lambda: kubectl.run("get", "endpoints", "nothing", check=False).returncode == 0,
        10,
        "the (empty) Endpoints of a Service selecting nothing",
    )
    assert ready_endpoints(kubectl, "nothing") == 0
    wait_until(
        lambda: any(
            e["reason"] == "FailedToResolvePort" for e in events_for(kubectl, "Service", "wrong-port")
        ),
        15,
        "a FailedToResolvePort event",
    )
    assert ready_endpoints(kubectl, "wrong-port") == 0
    wait_until(
        lambda: any(e["type"] == "Warning" for e in events_for(kubectl, "Ingress", "dangling")),
        15,
        "a Warning event on the dangling Ingress",
    )
    assert ingress_get(server, "dangling.example", "/")[0] == 503

    # Duplicate ClusterIP and NodePort: refused with the field named, nothing stored.
    dup_ip = service("dup-ip")
    dup_ip["spec"]["clusterIP"] = cluster_ip
    result = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(dup_ip), check=False)
    assert (
        result.returncode != 0 and "spec.clusterIP" in result.stderr and "already allocated" in result.stderr
    ), result.stderr
    dup_port = service("dup-port", "NodePort")
    dup_port["spec"]["ports"][0]["nodePort"] = node_port
    result = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(dup_port), check=False)
    assert result.returncode != 0 and "nodePort" in result.stderr, result.stderr
    assert kubectl.run("get", "service", "dup-ip", "dup-port", check=False).returncode != 0

    # The healthy Service still answers, through its ClusterIP and its NodePort.
    assert http_get(cluster_ip, 80).startswith(f"{web}-")
    assert http_get("127.0.0.1", node_port).startswith(f"{web}-")
