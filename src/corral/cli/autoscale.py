"""``corral autoscale deploy/NAME --max N [--min N] [--cpu-percent P] [--rps R] [--idle-seconds S]``.

kubectl's ``autoscale`` (same flags, same ``horizontalpodautoscaler.autoscaling/NAME autoscaled`` line, the
HPA named after its target), creating an ``autoscaling/v2`` HPA, plus Corral's traffic target: ``--rps R``
scales on the ``requests_per_second`` Pods metric the service proxy measures, and ``--min 0`` with
``--idle-seconds`` sets up scale to zero. The object is built by the pure :func:`build_hpa`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver.status import ApiError
from corral.cli.errors import CliError
from corral.cli.output import Printer
from corral.cli.rolloutplan import RolloutError, parse_targets
from corral.cli.session import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    cluster_options,
    connected,
    resolve_kind,
    run,
)

JSON = dict[str, Any]
HPAS = REGISTRY.require("horizontalpodautoscalers.autoscaling")
IDLE_ANNOTATION = "corral.dev/scale-to-zero-idle-seconds"


def build_hpa(
    rt: ResourceType,
    name: str,
    *,
    hpa_name: str | None,
    max_replicas: int,
    min_replicas: int | None,
    cpu_percent: int | None,
    rps: str | None,
    idle_seconds: int | None,
) -> JSON:
    """The HPA ``autoscale`` creates; raises :class:`CliError` with kubectl's wording for bad flags."""
    if not any(sub.name == "scale" for sub in rt.subresources):
        raise CliError(
            f"cannot autoscale a {rt.kind}: {rt.plural}.{rt.group or 'core'} has no scale subresource"
        )
    if max_replicas < 1:
        raise CliError("--max=MAXPODS is required and must be at least 1")
    if min_replicas is not None and min_replicas > max_replicas:
        raise CliError(
            "--max=MAXPODS must be larger or equal to --min=MINPODS, "
            f"max: {max_replicas}, min: {min_replicas}"
        )
    if min_replicas is not None and min_replicas < 0:
        raise CliError("--min=MINPODS must be 0 or more")
    if idle_seconds is not None and min_replicas != 0:
        raise CliError("--idle-seconds needs --min=0 (scale to zero)")
    metrics: list[JSON] = []
    if cpu_percent is not None:
        if cpu_percent < 1:
            raise CliError("--cpu-percent must be at least 1")
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": cpu_percent},
                },
            }
        )
    if rps is not None:
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "requests_per_second"},
                    "target": {"type": "AverageValue", "averageValue": rps},
                },
            }
        )
    spec: JSON = {
        "scaleTargetRef": {"apiVersion": rt.api_version, "kind": rt.kind, "name": name},
        "maxReplicas": max_replicas,
    }
    if min_replicas is not None:
        spec["minReplicas"] = min_replicas
    if metrics:
        spec["metrics"] = metrics
    metadata: JSON = {"name": hpa_name or name}
    if idle_seconds is not None:
        metadata["annotations"] = {IDLE_ANNOTATION: str(idle_seconds)}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": spec,
    }


def autoscale(
    ctx: typer.Context,
    resources: Annotated[
        list[str] | None, typer.Argument(help="deploy/NAME (or: deploy NAME).", show_default=False)
    ] = None,
    max_replicas: Annotated[int, typer.Option("--max", help="Upper limit of replicas (required).")] = -1,
    min_replicas: Annotated[
        int | None,
        typer.Option(
            "--min", help="Lower limit of replicas (0: scale to zero when idle).", show_default=False
        ),
    ] = None,
    cpu_percent: Annotated[
        int | None,
        typer.Option(
            "--cpu-percent",
            help="Target average CPU use, in percent of the pods' requests.",
            show_default=False,
        ),
    ] = None,
    rps: Annotated[
        str | None,
        typer.Option(
            "--rps",
            help="Target requests per second per pod (measured by the service proxy).",
            show_default=False,
        ),
    ] = None,
    idle_seconds: Annotated[
        int | None,
        typer.Option(
            "--idle-seconds",
            help="With --min 0: seconds without traffic before scaling to zero (300).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The HPA's name (default: the target's).", show_default=False)
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Create a HorizontalPodAutoscaler for a Deployment or ReplicaSet."""
    try:
        targets = parse_targets(list(resources or []))
    except RolloutError as exc:
        raise CliError(str(exc)) from exc
    if len(targets) != 1:
        raise CliError("autoscale takes exactly one resource")
    target = targets[0]
    rt = resolve_kind(target.kind)
    body = build_hpa(
        rt,
        target.name,
        hpa_name=name,
        max_replicas=max_replicas,
        min_replicas=min_replicas,
        cpu_percent=cpu_percent,
        rps=rps,
        idle_seconds=idle_seconds,
    )
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()

    async def _create() -> None:
        async with connected(options) as (transport, access):
            ns = namespace or access.namespace
            try:
                await transport.get(rt, ns, target.name, "scale")
                created = await transport.create(HPAS, ns, body)
            except ApiError as exc:
                raise CliError(f"Error from server ({exc.reason}): {exc.message}") from exc
            printer.text(f"horizontalpodautoscaler.autoscaling/{created['metadata']['name']} autoscaled")

    run(_create())


def register(app: typer.Typer) -> None:
    app.command("autoscale")(autoscale)


__all__ = ["autoscale", "build_hpa", "register"]
