"""``corral server``: the control plane alone (API server, store, controllers, scheduler) for agents to join.

The same process as ``corral up`` without the built-in node unless ``--with-agent``. It writes
``<data-dir>/kubeconfig`` the same way. Machines join with the command ``corral token create`` prints.
``--advertise-address`` names the addresses agents reach the server at: each goes into the serving
certificate (re-issued by the same CA when one is missing) and the first is the URL published in
``kube-public/cluster-info``, which the join command carries. When the server listens on all addresses
(``--host 0.0.0.0``) and no address is advertised, every local address is in the certificate.
"""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.kubeconfig import DataDirOption
from corral.cli.up import (
    DnsPortOption,
    HostOption,
    IngressPortOption,
    KeepWorkloadsOption,
    MaxPodsOption,
    MetricsIntervalOption,
    NodeNameOption,
    PodEvictionTimeoutOption,
    PortOption,
    StoreOption,
    VerboseOption,
    VolumeModeOption,
    port_or_off,
    run_control_plane,
)


def server(
    data_dir: DataDirOption = None,
    port: PortOption = 6443,
    host: HostOption = "127.0.0.1",
    advertise_address: Annotated[
        list[str] | None,
        typer.Option(
            "--advertise-address",
            help="Address agents reach this server at (repeatable): added to the serving certificate; "
            "the first is the URL in join commands (default: the listen address).",
            show_default=False,
        ),
    ] = None,
    with_agent: Annotated[
        bool, typer.Option("--with-agent", help="Also run a node on this machine (as `corral up` does).")
    ] = False,
    store: StoreOption = None,
    verbose: VerboseOption = 0,
    node_name: NodeNameOption = None,
    max_pods: MaxPodsOption = 110,
    keep_workloads: KeepWorkloadsOption = False,
    dns_port: DnsPortOption = 10053,
    ingress_port: IngressPortOption = 10080,
    metrics_interval: MetricsIntervalOption = 5.0,
    volume_mode: VolumeModeOption = "auto",
    # 4 s, not `corral up`'s 5 s: with the 10 s grace period and a 2 s Lease renewal, a dead node's
    # replicas are Ready elsewhere within 15 s even when it died just after a renewal (docs/nodes.md).
    pod_eviction_timeout: PodEvictionTimeoutOption = 4,
) -> None:
    """Run the control plane for agents to join (`corral token create` prints the join command)."""
    run_control_plane(
        data_dir,
        verbose,
        check_volumes=with_agent,
        host=host,
        port=port,
        store=store,
        node_name=node_name,
        agent=with_agent,
        keep_workloads=keep_workloads,
        max_pods=max_pods,
        dns_port=port_or_off(dns_port),
        ingress_port=port_or_off(ingress_port),
        metrics_interval=metrics_interval,
        volume_mode=volume_mode,
        advertise_addresses=tuple(advertise_address or ()),
        pod_eviction_timeout=pod_eviction_timeout,
    )


def register(app: typer.Typer) -> None:
    app.command()(server)
