"""The serving certificate covers the addresses agents use (apiserver/tls.py), and the agent's saved node
credential (cli/join.py) round-trips."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509

from corral.apiserver.tls import default_sans, ensure_pki, local_addresses
from corral.cli.join import NODE_KUBECONFIG, save_access, stored_access
from corral.client import ClusterAccess


def _sans(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(
        san.get_values_for_type(x509.DNSName)
    )


def test_advertised_addresses_are_in_the_certificate_and_the_ca_survives(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path, default_sans(["127.0.0.1"]))
    ca, cert = first.ca_pem(), first.server_cert.read_bytes()
    assert "10.9.8.7" not in _sans(first.server_cert)
    again = ensure_pki(tmp_path, default_sans(["127.0.0.1"]))
    assert again.server_cert.read_bytes() == cert  # nothing new wanted: nothing re-issued
    second = ensure_pki(tmp_path, default_sans(["127.0.0.1", "10.9.8.7", "corral.example"]))
    assert {"10.9.8.7", "corral.example", "127.0.0.1", "localhost"} <= _sans(second.server_cert)
    assert second.ca_pem() == ca
    issued = x509.load_pem_x509_certificate(second.server_cert.read_bytes())
    issued.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))


def test_a_wildcard_listen_address_means_every_local_address() -> None:
    names = default_sans(["0.0.0.0"])
    assert "0.0.0.0" not in names
    assert set(local_addresses()) <= set(names)
    assert all(not ipaddress.ip_address(a).is_link_local for a in local_addresses())


def test_the_node_credential_round_trips(tmp_path: Path) -> None:
    access = ClusterAccess("https://10.0.0.5:6443", "node:n1:secret", b"-----BEGIN CERTIFICATE-----\n")
    save_access(tmp_path, access)
    assert (tmp_path / NODE_KUBECONFIG).stat().st_mode & 0o777 == 0o600
    loaded = stored_access(tmp_path, "https://10.0.0.5:6443")
    assert loaded is not None
    assert (loaded.server, loaded.token, loaded.ca_pem) == (access.server, access.token, access.ca_pem)
    assert stored_access(tmp_path, "https://10.0.0.6:6443") is None  # another cluster: join again
    assert stored_access(tmp_path / "none", "https://10.0.0.5:6443") is None
