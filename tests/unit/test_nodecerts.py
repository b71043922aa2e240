"""Certificates of the node API (``apiserver/nodecerts.py``): who gets which name and usage, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.agent.nodewire import APISERVER_CLIENT_CN
from corral.apiserver import nodecerts as nc
from corral.apiserver.tls import ensure_pki

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    ensure_pki(directory, ["127.0.0.1"], now=NOW)
    return directory


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _verify(cert: x509.Certificate, pki: Path) -> None:
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)


def test_the_apiserver_client_cert_is_for_client_auth_and_reused(pki: Path) -> None:
    cert_path, key_path = nc.ensure_client_cert(pki, NOW)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    _verify(cert, pki)
    assert _cn(cert) == APISERVER_CLIENT_CN
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert key_path.stat().st_mode & 0o077 == 0
    assert nc.peer_identity(cert.public_bytes(serialization.Encoding.DER)) == (APISERVER_CLIENT_CN, True)
    assert nc.ensure_client_cert(pki, NOW + timedelta(days=30))[0].read_bytes() == cert_path.read_bytes()
    # Close to expiry it is issued again.
    renewed = nc.ensure_client_cert(pki, NOW + timedelta(days=340))[0].read_bytes()
    assert renewed != cert.public_bytes(serialization.Encoding.PEM)


def test_a_serving_csr_gets_the_node_name_and_its_ips(pki: Path) -> None:
    csr_pem, key_pem = nc.make_serving_csr("n1")
    cert_pem = nc.sign_serving_csr(nc.load_ca(pki), csr_pem, "n1", ["10.0.0.5", "::1"], NOW)
    cert = x509.load_pem_x509_certificate(cert_pem)
    _verify(cert, pki)
    assert _cn(cert) == "system:node:n1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "::1"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert nc.peer_identity(cert.public_bytes(serialization.Encoding.DER)) == ("system:node:n1", False)
    assert nc.serving_cert_problem(cert_pem, "n1", NOW) is None
    assert nc.serving_cert_problem(cert_pem, "n2", NOW) == "it is for n1, not node n2"
    assert "expired" in (nc.serving_cert_problem(cert_pem, "n1", NOW + timedelta(days=400)) or "")
    assert nc.serving_cert_problem(b"junk", "n1", NOW) == "it is not a PEM certificate"


def test_the_subject_is_the_servers_choice_not_the_csrs(pki: Path) -> None:
    csr_pem, _ = nc.make_serving_csr("someone-else")
    cert = x509.load_pem_x509_certificate(nc.sign_serving_csr(nc.load_ca(pki), csr_pem, "n1", [], NOW))
    assert _cn(cert) == "system:node:n1"


@pytest.mark.parametrize(
    ("addresses", "why"),
    [
        (["n2"], "'n2' is not an IP address"),  # another node's name: the API server verifies names
        ("10.0.0.1", "addresses must be a list of strings"),
        ([1], "addresses must be a list of strings"),
        ([f"10.0.0.{i}" for i in range(17)], "at most 16 addresses may be certified"),
    ],
)
def test_requested_addresses_are_ips_only(pki: Path, addresses: object, why: str) -> None:
    csr_pem, _ = nc.make_serving_csr("n1")
    with pytest.raises(nc.CertError) as err:
        nc.sign_serving_csr(nc.load_ca(pki), csr_pem, "n1", addresses, NOW)
    assert str(err.value) == why


def test_a_csr_must_be_a_valid_one(pki: Path) -> None:
    with pytest.raises(nc.CertError, match="not a PEM CSR"):
        nc.sign_serving_csr(nc.load_ca(pki), b"-----BEGIN CERTIFICATE REQUEST-----\n", "n1", [], NOW)
    csr_pem, _ = nc.make_serving_csr("n1")
    csr = x509.load_pem_x509_csr(csr_pem)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1  # break the signature: the requester must hold the key
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(nc.CertError, match="signature is invalid"):
        nc.sign_serving_csr(nc.load_ca(pki), forged, "n1", [], NOW)


def test_no_node_gets_a_certificate_for_one_of_the_servers_own_names(pki: Path) -> None:
    sign = nc.serving_signer(pki, reserved_names=["localhost", "127.0.0.1", "control-plane.example"])
    csr_pem, _ = nc.make_serving_csr("localhost")
    with pytest.raises(nc.ReservedName):
        sign("localhost", csr_pem, [])
    with pytest.raises(nc.ReservedName):
        sign("Control-Plane.example", csr_pem, [])
    cert = x509.load_pem_x509_certificate(sign("worker-1", nc.make_serving_csr("worker-1")[0], []))
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["worker-1"]
