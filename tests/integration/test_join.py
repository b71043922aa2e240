"""Joining machines (issue 8): a real ``corral server``, join tokens, CA-hash verification, node authorization.

One control-plane-only server and three ``corral agent`` processes on loopback addresses (127.0.0.2-4), each
with its own data dir, joined with the command ``corral token create`` prints. The agents run no pods.
Refusals: a wrong token, an expired or deleted one, a wrong CA hash, an impostor server (checked on the
impostor's side: the token never reached it), and a node writing another node.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from corral.apiserver import jointokens as jt
from corral.apiserver.tls import ensure_pki
from tests.integration.clusterkit import KUBECTL, Cluster, eventually, stop

NAMES = {"j1": "127.0.0.2", "j2": "127.0.0.3", "j3": "127.0.0.4"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    c = Cluster.create(tmp_path_factory.mktemp("join"))
    try:
        c.start_server()
        for name, address in NAMES.items():
            c.start_agent(c.join, name, address)
        yield c
    finally:
        c.close()


def test_token_create_prints_the_join_command(cluster: Cluster) -> None:
    ca_pem = (cluster.kubeconfig.parent / "pki" / "ca.crt").read_bytes()
    assert cluster.join[:4] == ["corral", "agent", "--server", cluster.url]
    assert cluster.join[4] == "--token" and jt.TOKEN_RE.match(cluster.join[5])
    assert cluster.join[6:] == ["--ca-hash", jt.ca_hash(ca_pem)]
    # Stored as kubeadm stores it: a bootstrap-token Secret in kube-system.
    token_id = cluster.join[5].split(".")[0]
    secret = json.loads(cluster.kubectl("get", "secret", "-n", "kube-system", f"bootstrap-token-{token_id}",
                                        "-o", "json").stdout)  # fmt: skip
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    listed = cluster.corral("token", "list", "--kubeconfig", str(cluster.kubeconfig))
    assert listed.returncode == 0 and re.search(rf"^{token_id}\s+\S+Z\s+valid\s", listed.stdout, re.M), listed


def test_three_agents_join_and_are_ready(cluster: Cluster) -> None:
    for name in NAMES:
        eventually(lambda name=name: cluster.ready(name), f"node {name} to be Ready")
    done = cluster.kubectl("get", "nodes", "-o", "wide")
    assert done.returncode == 0, done
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    # Control plane only: the three joined nodes and no built-in one.
    assert {(r[0], r[1], r[5]) for r in rows} == {(n, "Ready", a) for n, a in NAMES.items()}
    # Each holds its own node credential, not the join token.
    for name in NAMES:
        saved = (cluster.root / name / "node.kubeconfig").read_text()
        assert f"token: node:{name}:" in saved and cluster.join[5] not in saved
        assert (cluster.root / name / "node.kubeconfig").stat().st_mode & 0o077 == 0


def test_a_wrong_token_is_refused(cluster: Cluster) -> None:
    join = [*cluster.join[:5], "zzzzzz.zzzzzzzzzzzzzzzz", *cluster.join[6:]]
    done = cluster.run_agent(join, "bad-token", "127.0.0.5")
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        'error: the server refused the join token: Unauthorized: join token "zzzzzz" is unknown, deleted or '
        "wrong (create a new one on the server with `corral token create`)"
    ]
    assert cluster.node("bad-token") is None


def test_expired_and_deleted_tokens_are_refused(cluster: Cluster) -> None:
    expired = "exp123.0123456789abcdef"
    secret = jt.token_secret(expired, datetime.now(UTC) - timedelta(minutes=1))
    created = cluster.kubectl("create", "-f", "-", stdin=json.dumps(secret))
    assert created.returncode == 0, created
    done = cluster.run_agent([*cluster.join[:5], expired, *cluster.join[6:]], "late", "127.0.0.5")
    assert done.returncode == 1 and 'join token "exp123" has expired' in done.stderr, done

    join = cluster.token_create("--ttl", "10m")
    token_id = join[5].split(".")[0]
    deleted = cluster.corral("token", "delete", token_id, "--kubeconfig", str(cluster.kubeconfig))
    assert deleted.returncode == 0 and deleted.stdout == f'join token "{token_id}" deleted\n', deleted
    done = cluster.run_agent(join, "orphan", "127.0.0.5")
    assert done.returncode == 1 and f'join token "{token_id}" is unknown, deleted or wrong' in done.stderr, (
        done
    )
    assert cluster.node("late") is None and cluster.node("orphan") is None


def test_a_wrong_ca_hash_refuses_before_sending_the_token(cluster: Cluster) -> None:
    wrong = "sha256:" + "0" * 64
    done = cluster.run_agent([*cluster.join[:7], wrong], "mistrust", "127.0.0.5")
    assert done.returncode == 1, done
    assert re.fullmatch(
        rf"error: the cluster CA of {re.escape(cluster.url)} has hash sha256:[0-9a-f]{{64}}, not {wrong} "
        r"\(--ca-hash\): refusing to join; the join token was not sent\n",
        done.stderr,
    ), done.stderr
    assert cluster.node("mistrust") is None
    bad = cluster.run_agent([*cluster.join[:7], "md5:abc"], "mistrust", "127.0.0.5")
    assert bad.returncode == 1 and "--ca-hash must be sha256:<64 hex digits>" in bad.stderr, bad


class Impostor:
    """A TLS server with a CA of its own, recording every request: what a man in the middle would see."""

    def __init__(self, pki_dir: Path) -> None:
        self.pki = ensure_pki(pki_dir, ["127.0.0.1"])
        self.cluster_info: dict[str, Any] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, request.headers.get("Authorization", "")))
        if request.path == jt.CLUSTER_INFO_PATH:
            return web.json_response(self.cluster_info)
        return web.json_response({"token": "node:x:y", "nodeName": "x"})

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.pki.server_context())
        self._loop.run_until_complete(site.start())
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"https://127.0.0.1:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def __enter__(self) -> Impostor:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_an_impostor_server_never_sees_the_token(cluster: Cluster, tmp_path: Path) -> None:
    real_info = json.loads(cluster.kubectl("get", "configmap", "-n", "kube-public", "cluster-info", "-o",
                                           "json").stdout)  # fmt: skip
    with Impostor(tmp_path / "impostor-pki") as impostor:
        join = ["corral", "agent", "--server", impostor.url, *cluster.join[4:]]
        # 1. It publishes its own CA: the hash does not match.
        impostor.cluster_info = jt.cluster_info(impostor.url, impostor.pki.ca_pem())
        done = cluster.run_agent(join, "fooled", "127.0.0.5")
        assert done.returncode == 1 and "refusing to join; the join token was not sent" in done.stderr, done
        assert f"has hash {jt.ca_hash(impostor.pki.ca_pem())}, not {cluster.join[7]}" in done.stderr
        # 2. It publishes the real CA (public knowledge) but cannot present a certificate of it.
        impostor.cluster_info = real_info
        done = cluster.run_agent(join, "fooled", "127.0.0.5")
        assert done.returncode == 1, done
        assert "does not prove it holds a certificate of the cluster CA" in done.stderr, done
        assert "the join token was not sent" in done.stderr
    assert impostor.requests, "the agent never asked the impostor for cluster-info"
    assert all(path == jt.CLUSTER_INFO_PATH and method == "GET" for method, path, _ in impostor.requests)
    assert all(auth == "" for _, _, auth in impostor.requests), impostor.requests


def test_a_node_may_not_write_another_node(cluster: Cluster) -> None:
    own = cluster.root / "j1" / "node.kubeconfig"
    done = cluster.kubectl("label", "node", "j2", "evil=yes", kubeconfig=own)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        'Error from server (Forbidden): nodes "j2" is forbidden: node "j1" is not allowed to modify node "j2"'
    )
    patch = json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    done = cluster.kubectl("patch", "node", "j2", "--subresource=status", "--type=merge", "-p", patch,
                           kubeconfig=own)  # fmt: skip
    assert done.returncode == 1 and 'node "j1" is not allowed to modify node "j2"' in done.stderr, done
    assert "evil" not in ((cluster.node("j2") or {}).get("metadata") or {}).get("labels", {})
    assert cluster.ready("j2")
    # Its own Node it may label; reading what its pods do not reference is refused.
    assert cluster.kubectl("label", "node", "j1", "rack=r1", kubeconfig=own).returncode == 0
    secrets = cluster.kubectl("get", "secrets", "-n", "kube-system", kubeconfig=own)
    assert secrets.returncode == 1 and 'cannot list resource "secrets"' in secrets.stderr, secrets
    admin_ops = cluster.kubectl("create", "namespace", "mine", kubeconfig=own)
    assert admin_ops.returncode == 1 and "(Forbidden)" in admin_ops.stderr
    # Creating another node's Lease (the name is in the body, checked on the decoded object) is refused.
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "someone-else", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "someone-else"},
    }
    forged = cluster.kubectl("create", "-f", "-", stdin=json.dumps(lease), kubeconfig=own)
    assert forged.returncode == 1 and "(Forbidden)" in forged.stderr, forged
    assert "someone-else" not in cluster.kubectl("get", "leases", "-n", "kube-node-lease").stdout


def test_a_restarted_agent_needs_no_join_token(cluster: Cluster) -> None:
    # The join token the agents used is deleted: j3 restarts on its saved node credential.
    assert stop(cluster.agents.pop("j3")) == 0
    token_id = cluster.join[5].split(".")[0]
    done = cluster.corral("token", "delete", token_id, "--kubeconfig", str(cluster.kubeconfig))
    assert done.returncode == 0, done
    cluster.start_agent(cluster.join, "j3", NAMES["j3"])
    eventually(lambda: cluster.ready("j3"), "node j3 to be Ready again")


def test_a_node_reads_the_secrets_its_pods_reference_and_runs_them(cluster: Cluster) -> None:
    ns = "default"
    for name in ("wanted", "unrelated"):
        created = cluster.kubectl("create", "secret", "generic", name, "-n", ns, "--from-literal=k=v")
        assert created.returncode == 0, created
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reader", "namespace": ns},
        "spec": {
            "nodeName": "j1",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": "none",
                    "command": ["sleep", "300"],
                    "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "wanted", "key": "k"}}}],
                }
            ],
        },
    }
    assert cluster.kubectl("create", "-f", "-", stdin=json.dumps(pod)).returncode == 0

    def running() -> bool | None:
        done = cluster.kubectl("get", "pod", "reader", "-n", ns, "-o", "json")
        return (
            True
            if done.returncode == 0 and json.loads(done.stdout)["status"].get("phase") == "Running"
            else None
        )

    eventually(running, "pod reader to run on j1 (its agent read the secret as node j1)")
    j1, j2 = (cluster.root / n / "node.kubeconfig" for n in ("j1", "j2"))
    assert cluster.kubectl("get", "secret", "wanted", "-n", ns, kubeconfig=j1).returncode == 0
    for kubeconfig, name in ((j1, "unrelated"), (j2, "wanted")):
        node = kubeconfig.parent.name
        done = cluster.kubectl("get", "secret", name, "-n", ns, kubeconfig=kubeconfig)
        assert done.returncode == 1
        assert f"no relationship found between node '{node}' and this object" in done.stderr, done
    # The pod's own node finishes its deletion; another node may not delete it.
    refused = cluster.kubectl("delete", "pod", "reader", "-n", ns, "--wait=false", kubeconfig=j2)
    assert refused.returncode == 1 and 'node "j2" can only delete pods' in refused.stderr, refused
    assert cluster.kubectl("delete", "pod", "reader", "-n", ns, "--wait=false").returncode == 0
    gone = lambda: True if cluster.kubectl("get", "pod", "reader", "-n", ns).returncode == 1 else None  # noqa: E731
    eventually(gone, "pod reader to be deleted")
