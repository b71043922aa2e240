"""``corral agent``: run one node agent in the foreground and join it to a cluster over HTTPS.

It is the same agent that ``corral up`` runs in-process, with the HTTP transport instead of the local one:
it registers its Node, renews its Lease and runs the pods bound to it (``spec.nodeName`` = its name; every
agent watches only its own pods, so the built-in node and joined nodes never touch each other's pods).
Its runtime state lives in ``--data-dir``, which must belong to this agent alone (a lock file enforces it
among ``corral agent`` processes); the default is ``<corral data dir>/agents/<name>``, never the directory
of ``corral up``'s built-in node.

On SIGTERM or Ctrl-C the agent stops and, by default, leaves its pods' processes running: the next agent
started on the same data dir adopts them. ``--stop-workloads-on-exit`` stops them instead.

Joining with a join token (``--token <id>.<secret> --ca-hash sha256:...``, as ``corral token create`` prints
it) verifies the server first and trades the token for a node credential kept in the data dir
(``cli/join.py``); the node may then do only what node authorization allows (``apiserver/nodeauth.py``).

The agent serves its node API (``agent/nodeapi.py``: logs, exec, usage; mutual TLS with the API server) on
``--address``:``--node-api-port`` (10250, as the kubelet) and publishes the port in its Node's
``status.daemonEndpoints``; the API server reaches it there for ``kubectl logs/exec/top`` of its pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
from pathlib import Path
from typing import IO, Annotated
from urllib.parse import urlsplit

import typer

from corral.apiserver.jointokens import normalize_ca_hash
from corral.apiserver.status import ApiError
from corral.cli.errors import CliError
from corral.cli.join import JoinOptions, node_access
from corral.cli.output import Printer
from corral.cli.up import (
    DnsPortOption,
    IngressPortOption,
    MetricsIntervalOption,
    VolumeModeOption,
    _loop_factory,
    check_volume_mode,
    configure_logging,
    port_or_off,
)
from corral.client.base import Transport
from corral.util.gctune import tune_for_service

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 10249
DEFAULT_NODE_API_PORT = 10250
"""The kubelet's port: logs, exec and usage for the API server (``agent/nodeapi.py``)."""
"""kube-proxy's metrics port: the agent's series include its node's service proxy."""


def default_address(server_url: str) -> str:
    """The local address on the route to the server: what a pod on this node is reachable at from there.

    Connecting a UDP socket sends nothing; it only makes the kernel pick the source address."""
    parts = urlsplit(server_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(sockaddr)
            return str(sock.getsockname()[0])
    except (OSError, IndexError):
        return "127.0.0.1"


def _lock(data_dir: Path) -> IO[str]:
    """Hold ``<data-dir>/agent.lock`` for the life of the process (released by the kernel on exit)."""
    handle = open(data_dir / "agent.lock", "a+")  # noqa: SIM115 - kept open on purpose: it is the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise CliError(f"another corral agent is running with data dir {data_dir}") from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _claim(data_dir: Path, node_name: str) -> None:
    """Tie the data dir to one node name. An agent adopts every process recorded in its runtime dir and
    stops those of pods that are not bound to it, so a dir reused under another name would kill that
    node's workloads."""
    marker = data_dir / "node-name"
    try:
        owner = marker.read_text().strip()
    except FileNotFoundError:
        marker.write_text(node_name + "\n")
        return
    if owner != node_name:
        raise CliError(
            f"data dir {data_dir} belongs to node {owner!r}; use another --data-dir for node {node_name!r}"
        )


async def run_agent(
    server: str,
    token: str | None,
    ca_pem: bytes | None,
    insecure: bool,
    name: str,
    address: str,
    data_dir: Path,
    stop_workloads: bool,
    printer: Printer,
    dns_port: int | None = None,
    ingress_port: int | None = None,
    metrics_interval: float = 5.0,
    prometheus_listen: tuple[str, int] | None = None,
    volume_mode: str = "auto",
    node_api_port: int | None = None,
) -> None:
    from corral.agent.agent import Agent, AgentConfig
    from corral.agent.nodeapi import NodeApiServer, open_node_api
    from corral.agent.runtimes.process import ProcessRuntime
    from corral.client import ClusterAccess, HttpTransport
    from corral.observability import track_proxy
    from corral.observability.http import MetricsServer
    from corral.proxy.node import NodeDataPlane, open_dataplane

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    transport = HttpTransport(ClusterAccess(server, token, ca_pem, insecure))
    node_agent: Agent | None = None
    dataplane: NodeDataPlane | None = None
    prometheus: MetricsServer | None = None
    node_api: NodeApiServer | None = None
    try:
        # Reach the server before binding anything, so a wrong --server or --token is one error line.
        await _reach(transport, name)
        dataplane = await open_dataplane(transport, address, name, dns_port, ingress_port)
        if dataplane.proxy is not None:
            track_proxy(dataplane.proxy)
        if prometheus_listen is not None:
            prometheus = MetricsServer(*prometheus_listen)
            try:
                printer.line(f"Metrics: http://{await prometheus.start()}/metrics")
            except OSError as exc:  # as for DNS and ingress: a taken port leaves that part off, not the node
                log.warning("metrics listener on %s:%s: %s", *prometheus_listen, exc.strerror or exc)
                prometheus = None
        runtime = await ProcessRuntime.open(data_dir / "runtime")
        node_agent = Agent(
            transport,
            runtime,
            AgentConfig(
                node_name=name,
                address=address,
                data_dir=data_dir,
                dns_address=dataplane.dns_address or None,
                metrics_interval=metrics_interval,
                volume_mode=volume_mode,
            ),
        )
        node_agent.termination_gate = dataplane.drained
        if node_api_port is not None:  # before start: the first Node status publishes its port
            node_api, node_agent.config.node_api_port = await open_node_api(
                node_agent, name, data_dir, ca_pem, address, node_api_port
            )
        started = asyncio.ensure_future(node_agent.start())
        stop_wait = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({started, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            started.result()  # a failed registration (401, unreachable server) ends the command here
            await dataplane.start()
            tune_for_service()
            printer.line(
                f"Corral agent is running as node {name} (address {address}, data dir {data_dir}), "
                f"joined {server}",
                style="bold green",
            )
            await stopping.wait()
        else:
            started.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await started
        stop_wait.cancel()
        log.info("stopping")
    finally:
        if node_api is not None:
            await node_api.stop()
        if prometheus is not None:
            await prometheus.stop()
        if dataplane is not None:
            await dataplane.close()
        if node_agent is not None:
            await node_agent.stop(stop_workloads=stop_workloads)
        await transport.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    printer.line(
        "Corral agent stopped." if not stop_workloads else "Corral agent stopped (workloads stopped)."
    )


async def _reach(transport: Transport, node_name: str) -> None:
    from corral.api.resources import REGISTRY

    nodes = REGISTRY.resolve("nodes")
    assert nodes is not None
    try:
        await transport.get(nodes, None, node_name)
    except ApiError as exc:
        if exc.code != 404:
            raise


def agent(
    server: Annotated[
        str,
        typer.Option(
            "--server", help="The API server's URL, e.g. https://10.0.0.5:6443.", show_default=False
        ),
    ],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CORRAL_TOKEN",
            help="Bearer token for the API server (or $CORRAL_TOKEN, which other users cannot see in ps).",
            show_default=False,
        ),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file", help="PEM file of the CA that signed the server's certificate.", show_default=False
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure-skip-tls-verify", help="Do not verify the server's certificate (testing only)."
        ),
    ] = False,
    ca_hash: Annotated[
        str | None,
        typer.Option(
            "--ca-hash",
            help="sha256:<hex> of the cluster CA's public key (from `corral token create`): the server must "
            "prove it has a certificate of that CA before the token is sent.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Node name (default: the host name).", show_default=False)
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Address the node advertises (status.podIP of its pods) and its pods' ports bind to "
            "(default: the local address on the route to the server).",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="This agent's own state directory (default: <corral data dir>/agents/<name>).",
            show_default=False,
        ),
    ] = None,
    dns_port: DnsPortOption = 10053,
    ingress_port: IngressPortOption = 10080,
    metrics_interval: MetricsIntervalOption = 5.0,
    metrics_port: Annotated[
        int,
        typer.Option(
            "--metrics-port",
            min=-1,
            max=65535,
            help="Port of the agent's Prometheus /metrics, plain HTTP (0: any free, -1: off).",
        ),
    ] = DEFAULT_METRICS_PORT,
    metrics_address: Annotated[
        str,
        typer.Option(
            "--metrics-address",
            help="Address the /metrics listener binds. It has no authentication: keep it on loopback "
            "unless the network is trusted.",
        ),
    ] = "127.0.0.1",
    node_api_port: Annotated[
        int,
        typer.Option(
            "--node-api-port",
            min=-1,
            max=65535,
            help="Port of the node API on --address (HTTPS, mutual TLS: only the API server may call it), "
            "which serves logs, exec and usage of this node's pods (0: any free, -1: off).",
        ),
    ] = DEFAULT_NODE_API_PORT,
    stop_workloads: Annotated[
        bool,
        typer.Option(
            "--stop-workloads-on-exit",
            help="On stop, stop the pods' processes too (default: leave them for the next agent to adopt).",
        ),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
    ] = 0,
    volume_mode: VolumeModeOption = "auto",
) -> None:
    """Join this machine to a Corral cluster as a node; run the pods bound to it until Ctrl-C/SIGTERM.

    The API server reaches the node's pods (logs, exec, top) through its node API (--node-api-port).
    """
    from corral.server import default_data_dir, default_node_name

    if ca_file is not None and insecure:
        raise CliError("specify a root certificates file (--ca-file) or --insecure-skip-tls-verify, not both")
    pinned = None
    if ca_hash is not None:
        pinned = normalize_ca_hash(ca_hash)
        if pinned is None:
            raise CliError(f"--ca-hash must be sha256:<64 hex digits>, got {ca_hash!r}")
        if ca_file is not None or insecure:
            raise CliError("--ca-hash replaces --ca-file and --insecure-skip-tls-verify: give only one")
    if not server.startswith(("https://", "http://")):
        raise CliError(f"--server must be an http:// or https:// URL, got {server!r}")
    check_volume_mode(volume_mode)
    ca_pem = None
    if ca_file is not None:
        try:
            ca_pem = ca_file.expanduser().read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read --ca-file {ca_file}: {exc.strerror or exc}") from exc
    node_name = name or default_node_name()
    node_address = address or default_address(server)
    directory = (data_dir or default_data_dir() / "agents" / node_name).expanduser().resolve()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise CliError(f"cannot use data dir {directory}: {exc.strerror or exc}") from exc
    configure_logging(verbose)
    lock = _lock(directory)
    try:
        _claim(directory, node_name)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            access = runner.run(
                node_access(
                    JoinOptions(
                        server.rstrip("/"),
                        token,
                        ca_pem,
                        pinned,
                        insecure,
                        node_name,
                        directory,
                        (node_address,),
                    )
                )
            )
            runner.run(
                run_agent(
                    access.server,
                    access.token,
                    access.ca_pem,
                    access.insecure,
                    node_name,
                    node_address,
                    directory,
                    stop_workloads,
                    Printer(),
                    port_or_off(dns_port),
                    port_or_off(ingress_port),
                    metrics_interval,
                    None if metrics_port < 0 else (metrics_address, metrics_port),
                    volume_mode,
                    None if node_api_port < 0 else node_api_port,
                )
            )
    except ApiError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in exc.message and ca_file is None:
            raise CliError(
                f"{exc.message} (pass --ca-file with the server's CA, e.g. <server data dir>/pki/ca.crt)"
            ) from None
        raise
    finally:
        lock.close()


def register(app: typer.Typer) -> None:
    app.command()(agent)
