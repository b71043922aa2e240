"""Reading kubeconfig files: the current context's server URL, CA, token and namespace.

Only what Corral's own clients need (token or no auth, CA data or file, insecure-skip-tls-verify).
Lookup order for the file: explicit path, ``$KUBECONFIG`` (first entry), ``<default data dir>/kubeconfig``.
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubeconfigError(Exception):
    """The kubeconfig is missing or unusable; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class ClusterAccess:
    server: str
    token: str | None = None
    ca_pem: bytes | None = None
    insecure: bool = False
    namespace: str = "default"

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https://"):
            return False
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        return ctx


def find_kubeconfig(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    from corral.server import default_data_dir

    return default_data_dir() / "kubeconfig"


def _named(entries: Any, name: str, what: str, path: Path) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(what)
            return value if isinstance(value, dict) else {}
    raise KubeconfigError(f"{path}: no {what} named {name!r}")


def load_access(path: Path, context: str | None = None) -> ClusterAccess:
    if not path.exists():
        raise KubeconfigError(
            f"no kubeconfig at {path} (is `corral up` running? pass --kubeconfig or set KUBECONFIG)"
        )
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path}: not valid YAML: {exc}") from exc
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no current-context")
    ctx = _named(doc.get("contexts"), name, "context", path)
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster")), "cluster", path)
    user = _named(doc.get("users"), str(ctx.get("user")), "user", path) if ctx.get("user") else {}
    ca_pem = None
    if cluster.get("certificate-authority-data"):
        ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    elif cluster.get("certificate-authority"):
        ca_pem = Path(cluster["certificate-authority"]).expanduser().read_bytes()
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    return ClusterAccess(
        server=str(server).rstrip("/"),
        token=user.get("token"),
        ca_pem=ca_pem,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        namespace=str(ctx.get("namespace") or "default"),
    )
