"""How ``corral agent`` gets its node credential: CA discovery against a pinned hash, the join exchange, and
the credential kept in the agent's data dir. IO at the edges of the pure rules in ``apiserver/jointokens.py``.

With ``--ca-hash`` (as ``kubeadm join --discovery-token-ca-cert-hash``) the agent first reads
``kube-public/cluster-info`` anonymously over TLS *without* verifying (it has nothing to verify with yet) and
sending no token, checks that the CA published there has the pinned hash, then reads it again verifying the
server's certificate against that CA. Only a server holding a certificate signed by the pinned CA, for the
host name in ``--server``, ever sees the join token. (A server could publish the real CA in cluster-info
while presenting its own certificate; the second, verified read is what stops it.)

The join token then buys a node token (``POST /corral/v1/join``), saved with the server URL and the CA as a
kubeconfig, ``<data-dir>/node.kubeconfig`` (mode 0600). Later starts use it and need no join token — join
tokens expire; a restarted node must not. If the saved credential is refused (its node token was revoked)
and a join token is given, the agent joins again.

The join also gets the node API's serving certificate (``apiserver/nodecerts.py``): the agent makes a key,
sends a CSR with its addresses, and keeps the signed certificate and the key as ``<data-dir>/node-api.crt``
and ``node-api.key`` (0600). The key never leaves the machine.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml

from corral.agent.nodeapi import SERVING_CERT, SERVING_KEY
from corral.api.resources import REGISTRY
from corral.apiserver import jointokens as jt
from corral.apiserver.nodecerts import make_serving_csr
from corral.apiserver.status import ApiError
from corral.cli.errors import CliError
from corral.cli.kubeconfig import write_private
from corral.client import ClusterAccess, HttpTransport
from corral.client.kubeconfig import KubeconfigError, load_access

NODE_KUBECONFIG = "node.kubeconfig"


@dataclass(frozen=True, slots=True)
class JoinOptions:
    server: str
    token: str | None
    ca_pem: bytes | None
    ca_hash: str | None
    insecure: bool
    name: str
    data_dir: Path
    addresses: tuple[str, ...] = ()
    """What the node API's serving certificate must be valid for (the node's ``--address``)."""


def stored_access(data_dir: Path, server: str) -> ClusterAccess | None:
    """The credential a previous join saved, if it is for this server."""
    path = data_dir / NODE_KUBECONFIG
    if not path.exists():
        return None
    try:
        access = load_access(path)
    except (KubeconfigError, OSError):
        return None
    return access if access.server == server and access.token else None


def save_access(data_dir: Path, access: ClusterAccess) -> None:
    from corral.server import kubeconfig_document

    doc = kubeconfig_document(access.server, access.ca_pem, access.token, name="corral-node")
    if access.insecure and access.ca_pem is None:
        doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    write_private(data_dir / NODE_KUBECONFIG, yaml.safe_dump(doc, sort_keys=False))


async def _get_cluster_info(access: ClusterAccess) -> dict[str, object]:
    transport = HttpTransport(access, timeout=15.0)
    try:
        info: dict[str, object] = await transport.request("GET", jt.CLUSTER_INFO_PATH)
        return info
    finally:
        await transport.close()


async def discover_ca(server: str, expected: str) -> bytes:
    """The cluster CA, once the server proved it serves a certificate of the CA with hash ``expected``."""
    try:
        info = await _get_cluster_info(ClusterAccess(server, None, None, insecure=True))
    except ApiError as exc:
        raise CliError(f"cannot read the cluster's CA from {server}: {exc.message}") from None
    ca_pem = jt.ca_from_cluster_info(info)
    if ca_pem is None:
        raise CliError(f"{server} publishes no CA in kube-public/cluster-info: is it a Corral server?")
    try:
        found = jt.ca_hash(ca_pem)
    except ValueError:
        raise CliError(f"{server} publishes a cluster CA that is not a PEM certificate") from None
    if found != expected:
        raise CliError(
            f"the cluster CA of {server} has hash {found}, not {expected} (--ca-hash): refusing to join; "
            "the join token was not sent"
        )
    try:
        await _get_cluster_info(ClusterAccess(server, None, ca_pem))
    except ApiError as exc:
        raise CliError(
            f"the server at {server} does not prove it holds a certificate of the cluster CA {expected} "
            f"({exc.message}): refusing to join; the join token was not sent"
        ) from None
    return ca_pem


async def _works(access: ClusterAccess, node: str) -> bool:
    """Whether the server accepts this credential (401 → False; any other failure is raised)."""
    nodes = REGISTRY.resolve("nodes")
    assert nodes is not None
    transport = HttpTransport(access, timeout=15.0)
    try:
        await transport.get(nodes, None, node)
    except ApiError as exc:
        if exc.code == 401:
            return False
        if exc.code != 404:
            raise
    finally:
        await transport.close()
    return True


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def exchange(
    access: ClusterAccess, node: str, data_dir: Path | None = None, addresses: tuple[str, ...] = ()
) -> str:
    """Trade the join token in ``access`` for a node token (and, with ``data_dir``, a serving certificate)."""
    body: dict[str, object] = {"nodeName": node}
    key_pem = b""
    if data_dir is not None:
        csr_pem, key_pem = make_serving_csr(node)
        body.update(servingCSR=csr_pem.decode(), addresses=[a for a in addresses if _is_ip(a)])
    transport = HttpTransport(access, timeout=15.0)
    try:
        answer = await transport.request("POST", jt.JOIN_PATH, body=body)
    except ApiError as exc:
        if exc.code == 401:
            raise CliError(
                f"the server refused the join token: {exc.message} (create a new one on the server with "
                "`corral token create`)"
            ) from None
        if exc.code == 409:
            raise CliError(f"cannot join as node {node!r}: {exc.message}") from None
        raise
    finally:
        await transport.close()
    token = answer.get("token") if isinstance(answer, dict) else None
    if not isinstance(token, str):
        raise CliError(f"the server at {access.server} answered the join without a node token")
    cert = answer.get("servingCertificate")
    if data_dir is not None and key_pem and isinstance(cert, str):
        write_private(data_dir / SERVING_KEY, key_pem.decode())
        write_private(data_dir / SERVING_CERT, cert)
    return token


async def node_access(options: JoinOptions) -> ClusterAccess:
    """The credential and trust the agent runs with (joining first when it has none)."""
    server = options.server
    join_token = options.token if options.token and jt.TOKEN_RE.match(options.token) else None
    ca_pem, insecure = options.ca_pem, options.insecure
    if options.ca_hash is not None:
        ca_pem, insecure = await discover_ca(server, options.ca_hash), False
    if options.token and join_token is None:  # a static token (the admin's): used as it is, no join
        return ClusterAccess(server, options.token, ca_pem, insecure)
    stored = stored_access(options.data_dir, server)
    if stored is not None:
        access = ClusterAccess(
            server, stored.token, ca_pem or stored.ca_pem, insecure if ca_pem else stored.insecure
        )
        if join_token is None or await _works(access, options.name):
            return access
    if join_token is None:
        return ClusterAccess(server, None, ca_pem, insecure)
    node_token = await exchange(
        ClusterAccess(server, join_token, ca_pem, insecure), options.name, options.data_dir, options.addresses
    )
    access = ClusterAccess(server, node_token, ca_pem, insecure)
    save_access(options.data_dir, access)
    return access
