"""Join tokens, node tokens, the CA hash and cluster-info (apiserver/jointokens.py), and the authenticator's
reading of them over an in-memory API (apiserver/auth.py)."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from corral.api.resources import REGISTRY
from corral.apiserver import jointokens as jt
from corral.apiserver import status as st
from corral.apiserver.auth import Identity, TokenAuthenticator
from corral.apiserver.rest import ResourceAPI
from corral.apiserver.tls import ensure_pki
from corral.server import bootstrap
from corral.store.memory import MemoryStore

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_new_tokens_have_kubeadms_format_and_differ() -> None:
    tokens = {jt.new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(jt.TOKEN_RE.match(t) for t in tokens)
    assert jt.TOKEN_RE.match("abcdef.0123456789abcdef")
    for bad in ("abcde.0123456789abcdef", "ABCDEF.0123456789abcdef", "abcdef-0123456789abcdef", "abcdef."):
        assert not jt.TOKEN_RE.match(bad)


def test_token_secret_is_what_kubeadm_writes() -> None:
    secret = jt.token_secret("abcdef.0123456789abcdef", NOW + timedelta(hours=24))
    assert secret["metadata"] == {"name": "bootstrap-token-abcdef", "namespace": "kube-system"}
    assert secret["type"] == "bootstrap.kubernetes.io/token"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["token-id"] == "abcdef"
    assert data["token-secret"] == "0123456789abcdef"
    assert data["expiration"] == "2026-11-27T12:00:00Z"
    assert data["usage-bootstrap-authentication"] == "true"
    with pytest.raises(ValueError):
        jt.token_secret("not-a-token", None)


@pytest.mark.parametrize(
    ("presented", "expires", "outcome"),
    [
        ("abcdef.0123456789abcdef", NOW + timedelta(seconds=1), jt.TokenCheck.OK),
        ("abcdef.0123456789abcdef", None, jt.TokenCheck.OK),
        ("abcdef.0123456789abcdef", NOW, jt.TokenCheck.EXPIRED),
        ("abcdef.0123456789abcdef", NOW - timedelta(days=1), jt.TokenCheck.EXPIRED),
        ("abcdef.0123456789abcdeX", None, jt.TokenCheck.UNKNOWN),
        ("abcdef.0123456789abcdee", None, jt.TokenCheck.UNKNOWN),
        ("zzzzzz.0123456789abcdef", None, jt.TokenCheck.UNKNOWN),
    ],
)
def test_check_token(presented: str, expires: datetime | None, outcome: jt.TokenCheck) -> None:
    secret = jt.token_secret("abcdef.0123456789abcdef", expires)
    assert jt.check_token(presented, secret, NOW) is outcome


def test_check_token_without_secret_or_of_another_type() -> None:
    assert jt.check_token("abcdef.0123456789abcdef", None, NOW) is jt.TokenCheck.UNKNOWN
    secret = jt.token_secret("abcdef.0123456789abcdef", None)
    assert (
        jt.check_token("abcdef.0123456789abcdef", {**secret, "type": "Opaque"}, NOW) is jt.TokenCheck.UNKNOWN
    )
    off = {**secret, "data": {**secret["data"], "usage-bootstrap-authentication": ""}}
    assert jt.check_token("abcdef.0123456789abcdef", off, NOW) is jt.TokenCheck.UNKNOWN


def test_token_info_for_listing() -> None:
    info = jt.token_info(jt.token_secret("abcdef.0123456789abcdef", NOW, "for rack 3"))
    assert info is not None
    assert (info.token_id, info.expiration, info.description) == ("abcdef", NOW, "for rack 3")
    assert "authentication" in info.usages
    assert jt.token_info({"type": "Opaque", "data": {}}) is None


def test_node_tokens_round_trip_and_only_their_hash_is_stored() -> None:
    token = jt.new_node_token("worker-1.example")
    node, secret_part = jt.parse_node_token(token) or ("", "")
    assert node == "worker-1.example" and len(secret_part) == 43
    stored = jt.node_token_secret(token)
    assert stored["metadata"]["name"] == "corral-node-token-worker-1.example"
    assert secret_part not in str(stored) and base64.b64encode(secret_part.encode()).decode() not in str(
        stored
    )
    assert jt.check_node_token(token, stored) == "worker-1.example"
    assert jt.check_node_token(token + "x", stored) is None
    other = jt.new_node_token("worker-2")
    assert jt.check_node_token(other, stored) is None
    assert jt.parse_node_token("node:only-name") is None


def test_node_identity() -> None:
    assert jt.node_of_user("system:node:a", ("system:nodes",)) == "a"
    assert jt.node_of_user("system:node:a", ()) is None
    assert jt.node_of_user("admin", ("system:nodes",)) is None


def test_ca_hash_is_sha256_of_the_subject_public_key_info(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki", ["127.0.0.1"])
    pem = pki.ca_pem()
    spki = (
        x509.load_pem_x509_certificate(pem)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert jt.ca_hash(pem) == "sha256:" + hashlib.sha256(spki).hexdigest()
    # The command kubeadm's documentation gives for computing --discovery-token-ca-cert-hash.
    if shutil.which("openssl"):
        pub = subprocess.run(
            ["openssl", "x509", "-pubkey", "-noout", "-in", str(pki.ca_cert)], capture_output=True, check=True
        ).stdout
        der = subprocess.run(
            ["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True, check=True
        ).stdout
        assert jt.ca_hash(pem) == "sha256:" + hashlib.sha256(der).hexdigest()


def test_normalize_ca_hash() -> None:
    digest = "AB" * 32
    assert jt.normalize_ca_hash(f"sha256:{digest}") == "sha256:" + digest.lower()
    assert jt.normalize_ca_hash(f"SHA256:{digest}") == "sha256:" + digest.lower()
    for bad in (digest, "sha1:" + "ab" * 20, "sha256:" + "ab" * 31, "sha256:" + "zz" * 32):
        assert jt.normalize_ca_hash(bad) is None


def test_cluster_info_carries_the_ca(tmp_path: Path) -> None:
    pem = ensure_pki(tmp_path / "pki", ["127.0.0.1"]).ca_pem()
    info = jt.cluster_info("https://10.0.0.5:6443", pem)
    assert (info["metadata"]["namespace"], info["metadata"]["name"]) == ("kube-public", "cluster-info")
    assert jt.ca_from_cluster_info(info) == pem
    assert jt.ca_from_cluster_info({"data": {"kubeconfig": "clusters: []"}}) is None
    command = jt.join_command("https://10.0.0.5:6443", "abcdef.0123456789abcdef", pem)
    assert command == (
        f"corral agent --server https://10.0.0.5:6443 --token abcdef.0123456789abcdef --ca-hash {jt.ca_hash(pem)}"
    )


# --- the authenticator over an in-memory API ------------------------------------------------------------


async def _api() -> ResourceAPI:
    api = ResourceAPI(MemoryStore())
    await bootstrap(api)
    return api


async def test_authenticator_reads_join_and_node_tokens() -> None:
    api = await _api()
    now = [NOW]
    auth = TokenAuthenticator({"admintoken": "admin"}, api, now=lambda: now[0])
    secrets = REGISTRY.require("secrets")
    await api.create(
        secrets, "kube-system", jt.token_secret("abcdef.0123456789abcdef", NOW + timedelta(hours=1))
    )
    node_token = jt.new_node_token("w1")
    await api.create(secrets, "kube-system", jt.node_token_secret(node_token))

    assert await auth.identify("Bearer admintoken") == Identity("admin")
    joining = await auth.identify("Bearer abcdef.0123456789abcdef")
    assert isinstance(joining, Identity) and joining.user == "system:bootstrap:abcdef"
    assert "system:bootstrappers" in joining.groups
    node = await auth.identify(f"Bearer {node_token}")
    assert node == Identity("system:node:w1", ("system:nodes", "system:authenticated"))

    wrong = await auth.identify("Bearer abcdef.0123456789abcdee")
    assert (
        isinstance(wrong, st.ApiError) and wrong.code == 401 and "unknown, deleted or wrong" in wrong.message
    )
    now[0] = NOW + timedelta(hours=2)
    expired = await auth.identify("Bearer abcdef.0123456789abcdef")
    assert isinstance(expired, st.ApiError) and expired.code == 401
    assert expired.message == 'Unauthorized: join token "abcdef" has expired'
    for header in (None, "Basic x", "Bearer nope", "Bearer node:w1:wrong", "Bearer node:w2:" + "a" * 43):
        refused = await auth.identify(header)
        assert isinstance(refused, st.ApiError) and refused.message == "Unauthorized", header
