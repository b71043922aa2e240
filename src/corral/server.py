"""Assembling a running control plane: data directory, store, PKI, tokens, kubeconfig and the HTTP server.

``CorralServer`` is what ``corral up`` runs, and what integration tests start in-process. It owns the order
of start-up (store → bootstrap objects → listener → kubeconfig) and of shut-down (listener → store).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from corral.agent.agent import Agent, AgentConfig
from corral.agent.runtimes.process import ProcessRuntime
from corral.api.defaults import DEFAULT_TOLERATION_SECONDS, set_default_toleration_seconds
from corral.api.resources import REGISTRY
from corral.apiserver import status as st
from corral.apiserver.app import ApiServerApp
from corral.apiserver.auth import TokenAuthenticator, admin_token, load_or_create_tokens
from corral.apiserver.joining import JoinHandler, ServingSigner, publish_cluster_info
from corral.apiserver.jointokens import JOIN_PATH
from corral.apiserver.nodecerts import serving_signer
from corral.apiserver.nodeproxy import NodeDirectory
from corral.apiserver.remotenode import RemoteNodes
from corral.apiserver.rest import ResourceAPI
from corral.apiserver.tls import default_sans, ensure_pki, local_addresses
from corral.client.local import LocalTransport
from corral.controllers.catalog import all_controllers
from corral.controllers.hpa import DataPlaneMetrics
from corral.controllers.leader import LeaderElector
from corral.controllers.nodelifecycleplan import LifecycleConfig
from corral.controllers.runtime import ControllerManager
from corral.observability import track_proxy, track_store
from corral.proxy.node import NodeDataPlane, open_dataplane
from corral.scheduler.scheduler import Scheduler
from corral.store import EngineStore, SqliteStore, open_store
from corral.util.clock import SystemClock

log = logging.getLogger(__name__)

ENCRYPTION_KEY_FILE = "encryption-keys"
ROTATE_KEY_PATH = "/corral/v1/secrets/rotate-key"
BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def default_node_name() -> str:
    """The host name as a DNS-1123 subdomain (node names must be one)."""
    name = re.sub(r"[^a-z0-9.-]", "-", socket.gethostname().lower()).strip("-.")
    return name[:253] or "corral-node"


def default_data_dir() -> Path:
    return Path(os.environ.get("CORRAL_DATA_DIR") or Path.home() / ".corral")


@dataclass(slots=True)
class ServerConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    store: str | None = None
    """``memory``, a SQLite path, or None for ``<data-dir>/state.db``."""
    tls: bool = True
    auth: bool = True
    node_name: str | None = None
    """Name of the built-in node; defaults to the host name."""
    agent: bool = True
    scheduler: bool = True
    controllers: bool = True
    max_pods: int = 110
    keep_workloads: bool = False
    """On a clean stop, leave pod processes running for the next start to adopt (SIGKILL leaves them too)."""
    dns_port: int | None = 10053
    """Port of the node's DNS server on the node address (0: any free port; None: no DNS server)."""
    ingress_port: int | None = 10080
    """Port of the node's HTTP ingress on the node address (0: any free port; None: no ingress)."""
    metrics_interval: float = 5.0
    """Seconds between the node agent's resource usage samples (the metrics API, ``kubectl top``)."""
    hpa_sync_period: float = 5.0
    """Seconds between two syncs of one HorizontalPodAutoscaler (Kubernetes: 15)."""
    readiness_warmup: bool = True
    """Probe readiness every 50 ms until the first success (False: the kubelet's timing; benchmarks)."""
    volume_mode: str = "auto"
    pod_eviction_timeout: int = DEFAULT_TOLERATION_SECONDS
    """Seconds pods tolerate an unreachable / not-ready node before eviction: the tolerationSeconds API
    defaulting gives pods, and the node lifecycle controller's fallback (upstream: 300)."""
    advertise_addresses: tuple[str, ...] = ()
    """Addresses agents reach the server at: added to the serving certificate; the first one is the URL
    published in ``kube-public/cluster-info`` (what ``corral token create`` prints)."""
    """The built-in agent's volume mode: ``auto``, ``namespace`` or ``sandbox`` (see ``AgentConfig``)."""


def kubeconfig_document(
    server_url: str, ca_pem: bytes | None, token: str | None, name: str = "corral"
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server_url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    user: dict[str, Any] = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}
        ],
        "current-context": name,
        "preferences": {},
    }


class CorralServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store: EngineStore | None = None
        self.api: ResourceAPI | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.kubeconfig_path = config.data_dir / "kubeconfig"
        self.token: str | None = None
        self.advertise_url = ""
        self.nodes = NodeDirectory()
        self.remote_nodes: RemoteNodes | None = None
        self.agent: Agent | None = None
        self.dataplane: NodeDataPlane | None = None
        self.dns_address = ""
        self.ingress_address = ""
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o700)
        self.store = await open_store(
            cfg.store or str(cfg.data_dir / "state.db"), key_file=cfg.data_dir / ENCRYPTION_KEY_FILE
        )
        track_store(self.store)
        set_default_toleration_seconds(self.config.pod_eviction_timeout)
        self.api = ResourceAPI(self.store)
        await bootstrap(self.api)
        authenticator = None
        if cfg.auth:
            tokens = load_or_create_tokens(cfg.data_dir / "tokens")
            self.token = admin_token(tokens)
            authenticator = TokenAuthenticator(tokens, self.api)
        ssl_context = None
        ca_pem = None
        signer: ServingSigner | None = None
        if cfg.tls:
            sans = default_sans([cfg.host, *cfg.advertise_addresses])
            pki = ensure_pki(cfg.data_dir / "pki", sans)
            ssl_context = pki.server_context()
            ca_pem = pki.ca_pem()
            # Remote agents' node APIs (logs, exec, usage): their serving certs come with the join.
            signer = serving_signer(cfg.data_dir / "pki", reserved_names=sans)
            self.remote_nodes = RemoteNodes.for_pki(self.api, cfg.data_dir / "pki")
            self.nodes.fallback = self.remote_nodes.endpoint
        app = ApiServerApp(self.api, authenticator, f"{cfg.host}:{cfg.port}", self.nodes).build()
        app.router.add_post(ROTATE_KEY_PATH, self._rotate_key)
        app.router.add_post(JOIN_PATH, JoinHandler(self.api, signer))
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, cfg.host, cfg.port, ssl_context=ssl_context, backlog=1024, reuse_address=True
        )
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else cfg.port
        host = cfg.host if cfg.host not in ("0.0.0.0", "::") else "127.0.0.1"
        scheme = "https" if cfg.tls else "http"
        display_host = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{display_host}:{port}"
        self.write_kubeconfig(ca_pem)
        advertised = next(iter(cfg.advertise_addresses), None) or _reachable_address(cfg.host) or host
        self.advertise_url = f"{scheme}://{f'[{advertised}]' if ':' in advertised else advertised}:{port}"
        if ca_pem is not None:
            await publish_cluster_info(self.api, self.advertise_url, ca_pem)
        await self._start_node(host)
        # Everything loaded so far (the stored objects, schemas, modules) lives as long as the process:
        # moving it out of the collector's generations keeps full collections from rescanning it.
        gc.freeze()

    async def _rotate_key(self, request: web.Request) -> web.Response:
        """Admin endpoint behind ``corral secrets rotate-key``: re-seal every Secret with a new key."""
        if self.config.auth and request.get("user") != "admin":
            raise st.ApiError(403, "Forbidden", "rotating the encryption key needs the admin token")
        store = self.store
        if not isinstance(store, SqliteStore) or not store.encrypted:
            raise st.ApiError(400, "BadRequest", "this server keeps no secrets at rest (memory store)")
        result = await store.rotate_key()
        return web.json_response(dataclasses.asdict(result))

    async def _start_node(self, address: str) -> None:
        """The built-in scheduler and node agent, talking to the API in-process."""
        assert self.api is not None
        transport = LocalTransport(self.api)
        if self.config.scheduler:
            self._background.append(asyncio.create_task(Scheduler(transport).run(), name="scheduler"))
        if self.config.controllers:
            self._background.append(asyncio.create_task(self._run_controllers(transport), name="controllers"))
        if self.config.agent:
            name = self.config.node_name or default_node_name()
            # The data plane first: pods started by the agent get its DNS address in their environment.
            self.dataplane = await open_dataplane(
                transport, address, name, self.config.dns_port, self.config.ingress_port
            )
            self.dns_address = self.dataplane.dns_address
            if self.dataplane.proxy is not None:
                track_proxy(self.dataplane.proxy)
            self.ingress_address = self.dataplane.ingress_address
            runtime = await ProcessRuntime.open(self.config.data_dir / "agent" / "runtime")
            self.agent = Agent(
                transport,
                runtime,
                AgentConfig(
                    node_name=name,
                    address=address,
                    data_dir=self.config.data_dir / "agent",
                    max_pods=self.config.max_pods,
                    dns_address=self.dns_address or None,
                    metrics_interval=self.config.metrics_interval,
                    readiness_warmup=self.config.readiness_warmup,
                    volume_mode=self.config.volume_mode,
                ),
            )
            self.agent.termination_gate = self.dataplane.drained
            await self.agent.start()
            self.nodes.register(name, self.agent)
            await self.dataplane.start()

    async def _run_controllers(self, transport: LocalTransport) -> None:
        """Controllers run while this process holds the controller-manager Lease."""
        clock = SystemClock()

        async def lead() -> None:
            manager = ControllerManager(transport, clock)
            traffic = DataPlaneMetrics(lambda: [self.dataplane.traffic()] if self.dataplane else [], clock)
            lifecycle = LifecycleConfig(default_toleration_seconds=self.config.pod_eviction_timeout)
            for controller in all_controllers(
                transport, clock, traffic, self.config.hpa_sync_period, node_lifecycle=lifecycle
            ):
                manager.add(controller)
            await manager.run()

        identity = f"{socket.gethostname()}-{os.getpid()}"
        await LeaderElector(transport, identity, clock).run(lead)

    def write_kubeconfig(self, ca_pem: bytes | None) -> None:
        doc = kubeconfig_document(self.url, ca_pem, self.token)
        tmp = self.kubeconfig_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(doc, handle, sort_keys=False)
        os.replace(tmp, self.kubeconfig_path)

    async def stop(self) -> None:
        if self.dataplane is not None:
            await self.dataplane.close()
            self.dataplane = None
        if self.agent is not None:
            self.nodes.unregister(self.agent.config.node_name)
            await self.agent.stop(stop_workloads=not self.config.keep_workloads)
            self.agent = None
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background = []
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.remote_nodes is not None:
            self.nodes.fallback = None
            await self.remote_nodes.close()
            self.remote_nodes = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


def _reachable_address(listen: str) -> str | None:
    """For a wildcard listen address, the first non-loopback local address: what join commands carry."""
    if listen not in ("0.0.0.0", "::"):
        return None
    return next((a for a in local_addresses() if not ipaddress.ip_address(a).is_loopback), None)


async def bootstrap(api: ResourceAPI) -> None:
    """Objects every cluster has: the system namespaces, each with a ``default`` ServiceAccount."""
    ns_rt = REGISTRY.by_path("", "v1", "namespaces")
    assert ns_rt is not None
    for name in BOOTSTRAP_NAMESPACES:
        try:
            await api.create(
                ns_rt, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        except st.ApiError as exc:
            if exc.code != 409:
                raise
    listed = await api.list(ns_rt, None)
    for ns in listed.items:
        if not ns["metadata"].get("deletionTimestamp"):
            await api.ensure_default_service_account(ns["metadata"]["name"])
