"""``corral up``: run the all-in-one server in the foreground until Ctrl-C or SIGTERM.

Prints one ready line (URL and kubeconfig path) once the listener is up and the kubeconfig is written, so
scripts and tests can wait for it; with ``--port 0`` the URL carries the port the kernel chose. Both
signals stop the server cleanly and exit 0. A port that cannot be bound is one line and exit 1.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corral.cli.errors import CliError
from corral.cli.kubeconfig import DataDirOption
from corral.cli.output import Printer
from corral.util.gctune import tune_for_service

if TYPE_CHECKING:
    from corral.server import ServerConfig

log = logging.getLogger(__name__)


# The node data plane's listeners, shared by `corral up` and `corral agent`.
DnsPortOption = Annotated[
    int, typer.Option("--dns-port", min=-1, max=65535, help="Port of the cluster DNS (0: any free, -1: off).")
]
IngressPortOption = Annotated[
    int,
    typer.Option(
        "--ingress-port", min=-1, max=65535, help="Port of the HTTP ingress (0: any free, -1: off)."
    ),
]

MetricsIntervalOption = Annotated[
    float,
    typer.Option(
        "--metrics-interval",
        min=0.1,
        help="Seconds between resource usage samples of the node (kubectl top, metrics API).",
    ),
]

PodEvictionTimeoutOption = Annotated[
    int,
    typer.Option(
        "--pod-eviction-timeout",
        min=0,
        help="Seconds pods stay on an unreachable or not-ready node before they are evicted and replaced "
        "(the default tolerationSeconds of new pods; Kubernetes: 300).",
    ),
]


VolumeModeOption = Annotated[
    str,
    typer.Option(
        "--volume-mode",
        help="Where pod volumes appear: 'namespace' (at their real mountPath, in a private mount "
        "namespace per container; root on Linux), 'sandbox' (under the pod's sandbox, $CORRAL_VOLUMES), "
        "or 'auto' (namespace when possible).",
    ),
]


# The listener and the built-in node, shared by `corral up` and `corral server`.
PortOption = Annotated[
    int, typer.Option("--port", "-p", help="Port to listen on (0 picks a free one).", min=0, max=65535)
]
HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
StoreOption = Annotated[
    str | None, typer.Option("--store", hidden=True, help="'memory' or a SQLite path (tests).")
]
VerboseOption = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")
]
NodeNameOption = Annotated[
    str | None, typer.Option("--node-name", help="Name of the built-in node (default: the host name).")
]
MaxPodsOption = Annotated[
    int, typer.Option("--max-pods", min=1, help="Pods the built-in node accepts (Kubernetes default 110).")
]
KeepWorkloadsOption = Annotated[
    bool,
    typer.Option(
        "--keep-workloads", help="On stop, leave pod processes running; the next `corral up` adopts them."
    ),
]


def check_volume_mode(mode: str) -> None:
    """Refuse an impossible ``--volume-mode`` before anything starts, naming why."""
    from corral.agent.mounting import resolve_volume_mode
    from corral.agent.mountplan import VolumeModeError

    try:
        resolve_volume_mode(mode)
    except VolumeModeError as exc:
        raise CliError(str(exc)) from exc


def port_or_off(port: int) -> int | None:
    """The value of a DnsPortOption/IngressPortOption as ServerConfig takes it: -1 means off (None)."""
    return None if port < 0 else port


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    # Where the node's DNS server and ingress listen is always worth one line, whatever the verbosity.
    for name in ("corral.proxy.dns", "corral.proxy.ingress"):
        logging.getLogger(name).setLevel(min(level, logging.INFO))


def _listen_error(exc: OSError, host: str, port: int) -> CliError:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return CliError(
            f"cannot listen on {where}: address already in use (is another `corral up` running? "
            "choose another port with --port)"
        )
    reason = exc.strerror or str(exc)
    return CliError(f"cannot listen on {where}: {reason}")


async def serve(config: ServerConfig, printer: Printer) -> None:
    """Start, announce, wait for SIGINT/SIGTERM, stop."""
    from corral.server import CorralServer

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    server = CorralServer(config)
    try:
        try:
            await server.start()
        except OSError as exc:
            raise _listen_error(exc, config.host, config.port) from exc
        tune_for_service()
        printer.line(
            f"Corral is ready at {server.url} — kubeconfig: {server.kubeconfig_path}", style="bold green"
        )
        printer.line(f"  export KUBECONFIG={server.kubeconfig_path}   # for kubectl; Ctrl-C stops Corral")
        await stopping.wait()
        log.info("stopping")
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    printer.line("Corral stopped.")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def up(
    data_dir: DataDirOption = None,
    port: PortOption = 6443,
    host: HostOption = "127.0.0.1",
    store: StoreOption = None,
    verbose: VerboseOption = 0,
    node_name: NodeNameOption = None,
    max_pods: MaxPodsOption = 110,
    keep_workloads: KeepWorkloadsOption = False,
    dns_port: DnsPortOption = 10053,
    ingress_port: IngressPortOption = 10080,
    metrics_interval: MetricsIntervalOption = 5.0,
    volume_mode: VolumeModeOption = "auto",
    pod_eviction_timeout: PodEvictionTimeoutOption = 5,
) -> None:
    """Run Corral (API server and all) in the foreground; writes a kubeconfig into the data dir."""
    run_control_plane(
        data_dir,
        verbose,
        check_volumes=True,
        host=host,
        port=port,
        store=store,
        node_name=node_name,
        keep_workloads=keep_workloads,
        max_pods=max_pods,
        dns_port=port_or_off(dns_port),
        ingress_port=port_or_off(ingress_port),
        metrics_interval=metrics_interval,
        volume_mode=volume_mode,
        pod_eviction_timeout=pod_eviction_timeout,
    )


def run_control_plane(data_dir: Path | None, verbose: int, *, check_volumes: bool, **config: Any) -> None:
    """What `corral up` and `corral server` do once their options are read: logging, the ServerConfig
    (``config`` are its fields), the volume mode check when this process runs a node, and the server."""
    from corral.server import ServerConfig, default_data_dir  # heavy imports: only these commands pay

    configure_logging(verbose)
    server_config = ServerConfig(data_dir=(data_dir or default_data_dir()).expanduser(), **config)
    if check_volumes:
        check_volume_mode(server_config.volume_mode)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(server_config, Printer()))


def register(app: typer.Typer) -> None:
    app.command()(up)
