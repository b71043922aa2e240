"""Logs, exec and top for pods of a joined agent: the API server reaches its node API over mutual TLS.

A control-plane-only ``corral server`` and one ``corral agent`` (127.0.0.2, node API on a free port, samples
every 0.5 s), joined with a join token; a pod bound to the agent. kubectl talks only to the server, which
relays to the agent. Refusals: a client without the server's certificate (none, or a node's own, also signed
by the cluster CA), and a node whose agent publishes no node API (a clear 503, no hang).
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import pytest

from corral.agent import nodewire as wire
from corral.apiserver.nodecerts import issue_client_cert, load_ca
from tests.integration.clusterkit import KUBECTL, Cluster, eventually, stop

NODE, ADDRESS = "r1", "127.0.0.2"
NS = "default"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    c = Cluster.create(tmp_path_factory.mktemp("remote"))
    try:
        c.start_server()
        c.start_agent([*c.join, "--node-api-port", "0", "--metrics-interval", "0.5"], NODE, ADDRESS)
        eventually(lambda: c.ready(NODE), f"node {NODE} to be Ready")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "talker", "namespace": NS},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": NODE},  # placed by the server's scheduler
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "c",
                        "image": "none",
                        "command": ["sh", "-c", "echo started; i=0; while true; do i=$((i+1)); echo tick $i; "
                                    "sleep 0.3; done"],
                    }
                ],
            },
        }  # fmt: skip
        created = c.kubectl("create", "-f", "-", stdin=json.dumps(pod))
        assert created.returncode == 0, created
        eventually(lambda: _phase(c, "talker") == "Running" or None, "pod talker to run on r1")
        yield c
    finally:
        c.close()


def _phase(c: Cluster, name: str) -> str | None:
    done = c.kubectl("get", "pod", name, "-n", NS, "-o", "json")
    return json.loads(done.stdout)["status"].get("phase") if done.returncode == 0 else None


def _node_api_port(c: Cluster) -> int:
    node = c.node(NODE)
    assert node is not None
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert isinstance(port, int)
    return port


def test_the_node_publishes_its_node_api_port_and_keeps_its_key(cluster: Cluster) -> None:
    port = _node_api_port(cluster)
    assert 0 < port < 65536
    with socket.create_connection((ADDRESS, port), timeout=5):
        pass  # listening on the node's address
    key = cluster.root / NODE / "node-api.key"
    assert key.exists() and key.stat().st_mode & 0o077 == 0
    assert (cluster.root / NODE / "node-api.crt").exists()


def test_kubectl_logs_of_a_remote_pod(cluster: Cluster) -> None:
    def has_ticks() -> str | None:
        done = cluster.kubectl("logs", "talker", "-n", NS)
        return done.stdout if done.returncode == 0 and "tick 2\n" in done.stdout else None

    out = eventually(has_ticks, "kubectl logs to show ticks")
    assert out.startswith("started\ntick 1\n"), out
    tail = cluster.kubectl("logs", "talker", "-n", NS, "--tail", "1")
    assert tail.returncode == 0 and re.fullmatch(r"tick \d+\n", tail.stdout), tail


def test_kubectl_logs_follow_streams_new_lines(cluster: Cluster) -> None:
    assert KUBECTL is not None
    now = cluster.kubectl("logs", "talker", "-n", NS, "--tail", "1")
    last = int(now.stdout.split()[-1])
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", str(cluster.kubeconfig), "logs", "-f", "talker", "-n", NS, "--tail", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # a line arrives every 0.3 s while the stream is alive
            if not line:
                break
            seen.append(line)
            if int(line.split()[-1]) >= last + 3:
                break
        assert seen and int(seen[-1].split()[-1]) >= last + 3, (seen, proc.poll())
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_kubectl_exec_in_a_remote_pod(cluster: Cluster) -> None:
    done = cluster.kubectl("exec", "talker", "-n", NS, "--", "sh", "-c", "echo hi; echo err >&2; exit 3")
    assert done.returncode == 3, done
    assert done.stdout == "hi\n" and "err\n" in done.stderr, done
    ok = cluster.kubectl("exec", "talker", "-n", NS, "--", "echo", "fine")
    assert ok.returncode == 0 and ok.stdout == "fine\n", ok


def test_kubectl_exec_passes_stdin(cluster: Cluster) -> None:
    done = cluster.kubectl("exec", "-i", "talker", "-n", NS, "--", "sh", "-c", "wc -l", stdin="a\nb\nc\n")
    assert done.returncode == 0 and done.stdout.strip() == "3", done


def test_errors_of_the_agent_come_back_as_statuses(cluster: Cluster) -> None:
    done = cluster.kubectl("logs", "talker", "-n", NS, "--previous")
    assert done.returncode == 1, done
    assert 'previous terminated container "c" in pod "talker" not found' in done.stderr, done


def test_kubectl_top_lists_the_remote_pod_and_node(cluster: Cluster) -> None:
    def listed() -> str | None:
        done = cluster.kubectl("top", "pod", "-n", NS)
        return (
            done.stdout
            if done.returncode == 0 and re.search(r"^talker\s+\d+m\s+\d+Mi", done.stdout, re.M)
            else None
        )

    eventually(listed, "kubectl top pod to list talker")

    def node_row() -> str | None:
        done = cluster.kubectl("top", "node")
        return (
            done.stdout
            if done.returncode == 0 and re.search(rf"^{NODE}\s+\d+m\s", done.stdout, re.M)
            else None
        )

    eventually(node_row, f"kubectl top node to list {NODE}")


def test_the_node_api_refuses_other_clients(cluster: Cluster, tmp_path: Path) -> None:
    port = _node_api_port(cluster)
    ca = cluster.kubeconfig.parent / "pki" / "ca.crt"
    # No client certificate: the TLS handshake fails (or the first read does, with TLS 1.3).
    bare = ssl.create_default_context(cafile=str(ca))
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        urlopen(f"https://{ADDRESS}:{port}{wire.USAGE_PATH}", context=bare, timeout=10).read()
    # The node's own certificate is signed by the same CA, but only for serving: refused in the handshake.
    node_dir = cluster.root / NODE
    own = ssl.create_default_context(cafile=str(ca))
    own.load_cert_chain(node_dir / "node-api.crt", node_dir / "node-api.key")
    with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
        urlopen(f"https://{ADDRESS}:{port}{wire.USAGE_PATH}", context=own, timeout=10).read()
    # A client certificate of the cluster CA with another name: 403.
    pki = cluster.kubeconfig.parent / "pki"
    cert_pem, key_pem = issue_client_cert(load_ca(pki), datetime.now(UTC), common_name="mallory")
    (tmp_path / "m.crt").write_bytes(cert_pem)
    (tmp_path / "m.key").write_bytes(key_pem)
    other = ssl.create_default_context(cafile=str(ca))
    other.load_cert_chain(tmp_path / "m.crt", tmp_path / "m.key")
    with pytest.raises(HTTPError) as refused:
        urlopen(f"https://{ADDRESS}:{port}{wire.USAGE_PATH}", context=other, timeout=10).read()
    assert refused.value.code == 403
    assert json.loads(refused.value.read())["message"] == 'forbidden: User "mallory" may not use the node API'
    # The API server's own client certificate works (what the server uses).
    server = ssl.create_default_context(cafile=str(ca))
    server.load_cert_chain(pki / "apiserver-kubelet-client.crt", pki / "apiserver-kubelet-client.key")
    body = json.loads(
        urlopen(f"https://{ADDRESS}:{port}{wire.USAGE_PATH}", context=server, timeout=10).read()
    )
    assert set(body) == {"node", "pods"}


def test_a_node_without_a_node_api_is_a_clear_503(cluster: Cluster, tmp_path: Path) -> None:
    # An agent joined with a static (admin) token has no serving certificate: it runs, without a node API.
    token = cluster.kubeconfig.read_text().split("token: ")[1].split()[0]
    ca = cluster.kubeconfig.parent / "pki" / "ca.crt"
    lines = cluster.start_agent(
        ["corral", "agent", "--server", cluster.url, "--token", token, "--ca-file", str(ca), "--node-api-port", "0"],
        "r2", "127.0.0.3",
    )  # fmt: skip
    del lines
    log = (cluster.root / "r2.log").read_text()
    assert "node API off: no serving certificate" in log, log
    eventually(lambda: cluster.ready("r2"), "node r2 to be Ready")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mute", "namespace": NS},
        "spec": {
            "nodeName": "r2",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "none", "command": ["sleep", "300"]}],
        },
    }
    assert cluster.kubectl("create", "-f", "-", stdin=json.dumps(pod)).returncode == 0
    eventually(lambda: _phase(cluster, "mute") == "Running" or None, "pod mute to run on r2")
    started = time.monotonic()
    done = cluster.kubectl("logs", "mute", "-n", NS)
    assert done.returncode == 1 and time.monotonic() - started < 15, done
    assert 'node "r2" publishes no node API' in done.stderr, done
    done = cluster.kubectl("exec", "mute", "-n", NS, "--", "true")
    assert done.returncode == 1 and 'node "r2" publishes no node API' in done.stderr, done
    assert cluster.kubectl("delete", "pod", "mute", "-n", NS, "--wait=false").returncode == 0


def test_an_unreachable_agent_is_a_503_naming_the_node(cluster: Cluster) -> None:
    # Last in the module: r1 goes away (its Node still says where it was).
    assert stop(cluster.agents.pop(NODE)) == 0
    started = time.monotonic()
    done = cluster.kubectl("logs", "talker", "-n", NS)
    assert done.returncode == 1 and time.monotonic() - started < 15, done
    assert re.search(rf'\(ServiceUnavailable\): error dialing backend: node "{NODE}" at https://{ADDRESS}:\d+: ',
                     done.stderr), done.stderr  # fmt: skip
    done = cluster.kubectl("exec", "talker", "-n", NS, "--", "true")
    assert done.returncode == 1 and f'error dialing backend: node "{NODE}"' in done.stderr, done
