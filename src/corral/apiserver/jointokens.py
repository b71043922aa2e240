"""Join tokens, node credentials, the cluster-info document and the CA hash. Pure: no IO, time passed in.

Join tokens are kubeadm's bootstrap tokens: ``<id>.<secret>`` (6 and 16 characters of ``[a-z0-9]``),
stored as a Secret ``kube-system/bootstrap-token-<id>`` of type ``bootstrap.kubernetes.io/token`` with the
fields kubeadm writes (``token-id``, ``token-secret``, ``expiration`` in RFC 3339,
``usage-bootstrap-authentication``). A Secret rather than a store object of our own: Secrets are already
sealed at rest, admins list and delete them with kubectl as on kubeadm clusters, and nothing new is needed in
the API catalogue.

A join token only buys one thing: the join exchange (``POST /corral/v1/join``), which answers a per-node token
``node:<name>:<secret>``. The server keeps only its SHA-256 (Secret ``kube-system/corral-node-token-<name>``,
type ``corral.dev/node-token``); the agent keeps the token in its data dir, so a restart needs no join token.
Requests with it authenticate as ``system:node:<name>`` in group ``system:nodes`` — the identity the Node
authorizer (``nodeauth.py``) restricts. This replaces kubeadm's TLS bootstrap (a CSR signed into a client
certificate) with a bearer token: same identity, far less machinery.

The CA hash is kubeadm's ``--discovery-token-ca-cert-hash``: ``sha256:`` + hex SHA-256 of the CA certificate's
DER-encoded SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

JSON = dict[str, Any]

TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
BOOTSTRAP_SECRET_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_SECRET_PREFIX = "bootstrap-token-"
BOOTSTRAP_GROUP = "system:bootstrappers"
BOOTSTRAP_EXTRA_GROUP = "system:bootstrappers:corral:default-node-token"
NODE_TOKEN_SECRET_TYPE = "corral.dev/node-token"
NODE_TOKEN_SECRET_PREFIX = "corral-node-token-"
NODE_TOKEN_PREFIX = "node:"
NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
SYSTEM_NAMESPACE = "kube-system"
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO_NAME = "cluster-info"
CLUSTER_INFO_PATH = f"/api/v1/namespaces/{CLUSTER_INFO_NAMESPACE}/configmaps/{CLUSTER_INFO_NAME}"
JOIN_PATH = "/corral/v1/join"
DEFAULT_TTL = datetime.timedelta(hours=24)


def random_string(length: int, choice: Callable[[str], str] = secrets.choice) -> str:
    return "".join(choice(TOKEN_ALPHABET) for _ in range(length))


def new_token(choice: Callable[[str], str] = secrets.choice) -> str:
    """A fresh ``<id>.<secret>`` join token."""
    return f"{random_string(6, choice)}.{random_string(16, choice)}"


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime.datetime | None:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def token_secret(
    token: str, expires: datetime.datetime | None, description: str = "corral join token"
) -> JSON:
    """The Secret kubeadm would write for ``token`` (no expiry when ``expires`` is None)."""
    match = TOKEN_RE.match(token)
    if match is None:
        raise ValueError(f"not a join token: {token!r}")
    data = {
        "token-id": match.group(1),
        "token-secret": match.group(2),
        "usage-bootstrap-authentication": "true",
        "auth-extra-groups": BOOTSTRAP_EXTRA_GROUP,
        "description": description,
    }
    if expires is not None:
        data["expiration"] = rfc3339(expires)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": BOOTSTRAP_SECRET_PREFIX + match.group(1), "namespace": SYSTEM_NAMESPACE},
        "type": BOOTSTRAP_SECRET_TYPE,
        "data": {k: _b64(v) for k, v in data.items()},
    }


def secret_data(obj: Mapping[str, Any]) -> dict[str, str]:
    """A Secret's ``data`` decoded to text (undecodable values are dropped)."""
    out: dict[str, str] = {}
    for key, value in (obj.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value)).decode()
        except (ValueError, UnicodeDecodeError):
            continue
    return out


class TokenCheck(Enum):
    OK = "ok"
    UNKNOWN = "unknown"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    expiration: datetime.datetime | None
    description: str
    usages: tuple[str, ...]


def token_info(obj: Mapping[str, Any]) -> TokenInfo | None:
    """What ``corral token list`` shows of a bootstrap-token Secret (None for another kind of Secret)."""
    if obj.get("type") != BOOTSTRAP_SECRET_TYPE:
        return None
    data = secret_data(obj)
    expiration = parse_rfc3339(data["expiration"]) if "expiration" in data else None
    usages = tuple(
        sorted(
            k.removeprefix("usage-bootstrap-")
            for k, v in data.items()
            if k.startswith("usage-bootstrap-") and v == "true"
        )
    )
    return TokenInfo(data.get("token-id", ""), expiration, data.get("description", ""), usages)


def check_token(presented: str, secret: Mapping[str, Any] | None, now: datetime.datetime) -> TokenCheck:
    """Whether ``presented`` is a live join token according to its Secret (None: no such Secret)."""
    match = TOKEN_RE.match(presented)
    if match is None or secret is None or secret.get("type") != BOOTSTRAP_SECRET_TYPE:
        return TokenCheck.UNKNOWN
    data = secret_data(secret)
    if data.get("token-id") != match.group(1) or data.get("usage-bootstrap-authentication") != "true":
        return TokenCheck.UNKNOWN
    if not hmac.compare_digest(data.get("token-secret", "").encode(), match.group(2).encode()):
        return TokenCheck.UNKNOWN
    if "expiration" in data:
        expiration = parse_rfc3339(data["expiration"])
        if expiration is None or expiration <= now:
            return TokenCheck.EXPIRED
    return TokenCheck.OK


# --- node credentials ---------------------------------------------------------------------------------


def node_user(node: str) -> str:
    return NODE_USER_PREFIX + node


def node_of_user(user: str, groups: tuple[str, ...]) -> str | None:
    """The node a request acts as, if its identity is a node's."""
    if NODES_GROUP in groups and user.startswith(NODE_USER_PREFIX):
        return user[len(NODE_USER_PREFIX) :]
    return None


def new_node_token(node: str, choice: Callable[[str], str] = secrets.choice) -> str:
    return f"{NODE_TOKEN_PREFIX}{node}:{random_string(43, choice)}"


def parse_node_token(token: str) -> tuple[str, str] | None:
    """``(node, secret)`` of a node token."""
    if not token.startswith(NODE_TOKEN_PREFIX):
        return None
    node, sep, secret = token[len(NODE_TOKEN_PREFIX) :].partition(":")
    return (node, secret) if sep and node and secret else None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def node_token_secret(token: str) -> JSON:
    parsed = parse_node_token(token)
    if parsed is None:
        raise ValueError("not a node token")
    node, secret = parsed
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NODE_TOKEN_SECRET_PREFIX + node, "namespace": SYSTEM_NAMESPACE},
        "type": NODE_TOKEN_SECRET_TYPE,
        "data": {"node-name": _b64(node), "token-sha256": _b64(_digest(secret))},
    }


def check_node_token(presented: str, secret: Mapping[str, Any] | None) -> str | None:
    """The node ``presented`` authenticates as, or None."""
    parsed = parse_node_token(presented)
    if parsed is None or secret is None or secret.get("type") != NODE_TOKEN_SECRET_TYPE:
        return None
    node, value = parsed
    data = secret_data(secret)
    if data.get("node-name") != node:
        return None
    if not hmac.compare_digest(data.get("token-sha256", "").encode(), _digest(value).encode()):
        return None
    return node


# --- discovery ----------------------------------------------------------------------------------------


def ca_hash(ca_pem: bytes) -> str:
    """kubeadm's CA hash: ``sha256:<hex>`` of the first certificate's SubjectPublicKeyInfo (DER)."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def normalize_ca_hash(text: str) -> str | None:
    """``sha256:<64 hex>`` in lower case, or None if ``text`` is not one (kubeadm accepts only sha256)."""
    algo, sep, digest = text.strip().partition(":")
    digest = digest.lower()
    if not sep or algo.lower() != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", digest):
        return None
    return "sha256:" + digest


def cluster_info(server_url: str, ca_pem: bytes) -> JSON:
    """The ConfigMap ``kube-public/cluster-info`` as kubeadm publishes it: a kubeconfig with server and CA."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "",
                "cluster": {
                    "server": server_url,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "contexts": [],
        "users": [],
        "current-context": "",
        "preferences": {},
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CLUSTER_INFO_NAME, "namespace": CLUSTER_INFO_NAMESPACE},
        "data": {"kubeconfig": yaml.safe_dump(kubeconfig, sort_keys=False)},
    }


def ca_from_cluster_info(configmap: Mapping[str, Any]) -> bytes | None:
    """The CA certificate (PEM) published in a cluster-info ConfigMap."""
    try:
        doc = yaml.safe_load(str((configmap.get("data") or {}).get("kubeconfig", "")))
        cluster = doc["clusters"][0]["cluster"]
        return base64.b64decode(cluster["certificate-authority-data"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError):
        return None


def join_command(server_url: str, token: str, ca_pem: bytes) -> str:
    return f"corral agent --server {server_url} --token {token} --ca-hash {ca_hash(ca_pem)}"
