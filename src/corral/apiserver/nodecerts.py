"""Certificates of the node API's mutual TLS, all signed by the cluster CA (``apiserver/tls.py``).

* The API server's **client certificate** (CN ``corral:apiserver-kubelet-client``, extended key usage
  clientAuth), kept in ``<data-dir>/pki/apiserver-kubelet-client.{crt,key}``: what it presents to an agent's
  node API, as kube-apiserver presents ``apiserver-kubelet-client.crt`` to a kubelet.
* Each node's **serving certificate** (CN ``system:node:<name>``, O ``system:nodes``, serverAuth, SANs = the
  node's name as a DNS name plus the IP addresses the agent asked for), as the kubelet's serving
  certificate. The agent makes its key and a CSR itself; the CSR travels in the join exchange (``POST
  /corral/v1/join``) and only the signed certificate comes back, so no private key is ever on the wire. The
  API server verifies the agent's certificate against the CA with the node's name as the TLS host name
  (``remotenode.py``). Requested SANs may only be IP addresses: a DNS name could be another node's name.

Pure functions of (CA, inputs, now) plus two small file helpers; the CA key never leaves the server's pki
directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from corral.agent.nodewire import APISERVER_CLIENT_CN

CLIENT_VALIDITY = datetime.timedelta(days=365)
SERVING_VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
MAX_ADDRESSES = 16
NODE_CN_PREFIX = "system:node:"
CLIENT_CERT, CLIENT_KEY = "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"


class CertError(ValueError):
    """A CSR or certificate that cannot be used; the message says why."""


class ReservedName(CertError):
    """The node's name is one of the API server's own: no serving certificate (the join still succeeds)."""


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError("the cluster CA key is not an EC key")
    return cert, key


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _signed(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    usage: x509.ObjectIdentifier,
    sans: list[str],
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> x509.Certificate:
    ca_cert, ca_key = ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(n) for n in sans]), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


# --------------------------------------------------------------------------------------------- server side


def issue_client_cert(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    now: datetime.datetime,
    common_name: str = APISERVER_CLIENT_CN,
) -> tuple[bytes, bytes]:
    """A fresh ``(cert_pem, key_pem)`` for the API server's calls to node APIs."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = _signed(ca, subject, key.public_key(), ExtendedKeyUsageOID.CLIENT_AUTH, [], now, CLIENT_VALIDITY)
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def ensure_client_cert(pki_dir: Path, now: datetime.datetime | None = None) -> tuple[Path, Path]:
    """The API server's client certificate and key files, (re-)issued when missing or near expiry."""
    now = now or datetime.datetime.now(datetime.UTC)
    cert_path, key_path = pki_dir / CLIENT_CERT, pki_dir / CLIENT_KEY
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc > now + RENEW_BEFORE:
            return cert_path, key_path
    cert_pem, key_pem = issue_client_cert(load_ca(pki_dir), now)
    _write_private(key_path, key_pem)
    cert_path.write_bytes(cert_pem)
    return cert_path, key_path


def check_addresses(addresses: object) -> list[str]:
    """The SANs a node asked for: IP addresses only (a DNS name could be another node's name, which is what
    the API server verifies), at most :data:`MAX_ADDRESSES`."""
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise CertError("addresses must be a list of strings")
    if len(addresses) > MAX_ADDRESSES:
        raise CertError(f"at most {MAX_ADDRESSES} addresses may be certified")
    out: list[str] = []
    for address in addresses:
        try:
            out.append(str(ipaddress.ip_address(address)))
        except ValueError:
            raise CertError(f"{address!r} is not an IP address") from None
    return out


def sign_serving_csr(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    csr_pem: bytes,
    node_name: str,
    addresses: object,
    now: datetime.datetime,
) -> bytes:
    """Node ``node_name``'s serving certificate for the key in ``csr_pem``, valid for ``addresses``.

    Only the CSR's public key is taken (after checking its signature, i.e. that the requester holds the
    key); subject and SANs are the server's choice."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertError(f"the serving certificate request is not a PEM CSR: {exc}") from exc
    if not csr.is_signature_valid:
        raise CertError("the serving certificate request's signature is invalid")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CertError("the serving certificate request must be for an EC key")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node_name),
        ]
    )
    sans = [*dict.fromkeys([*check_addresses(addresses), node_name])]
    cert = _signed(ca, subject, public_key, ExtendedKeyUsageOID.SERVER_AUTH, sans, now, SERVING_VALIDITY)
    return cert.public_bytes(serialization.Encoding.PEM)


def serving_signer(
    pki_dir: Path, reserved_names: Iterable[str] = ()
) -> Callable[[str, bytes, object], bytes]:
    """The join exchange's signer: ``(node name, CSR PEM, addresses) → certificate PEM`` (CertError).

    ``reserved_names`` are the API server's own DNS names (its serving certificate's): a node called
    ``localhost`` or ``kubernetes.default`` would otherwise get a CA-signed certificate clients would accept
    for the API server itself."""
    ca = load_ca(pki_dir)
    reserved = {name.lower() for name in reserved_names}

    def sign(node_name: str, csr_pem: bytes, addresses: object) -> bytes:
        if node_name.lower() in reserved:
            raise ReservedName(f"{node_name!r} is one of the API server's own names")
        return sign_serving_csr(ca, csr_pem, node_name, addresses, datetime.datetime.now(datetime.UTC))

    return sign


# --------------------------------------------------------------------------------------------- agent side


def make_serving_csr(node_name: str) -> tuple[bytes, bytes]:
    """A new key and a CSR for it: ``(csr_pem, key_pem)``. The key stays with the agent."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODE_CN_PREFIX + node_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def serving_cert_problem(cert_pem: bytes, node_name: str, now: datetime.datetime) -> str | None:
    """Why this serving certificate cannot serve node ``node_name`` now (None: it can)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "it is not a PEM certificate"
    if cert.not_valid_after_utc <= now:
        return f"it expired at {cert.not_valid_after_utc.isoformat()}"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it names no address"
    names = san.get_values_for_type(x509.DNSName)
    if node_name not in names:
        return f"it is for {', '.join(sorted(names)) or 'no name'}, not node {node_name}"
    return None


def peer_identity(der: bytes) -> tuple[str, bool]:
    """``(common name, may authenticate a client)`` of a peer certificate in DER form."""
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(names[0].value) if names else ""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return cn, True  # no EKU extension: any use (RFC 5280 §4.2.1.12)
    return cn, ExtendedKeyUsageOID.CLIENT_AUTH in usages
