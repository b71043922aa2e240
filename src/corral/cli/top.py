"""``corral top pods|nodes``: CPU and memory in use, as ``kubectl top`` prints it.

Reads the resource metrics API (``metrics.k8s.io/v1beta1`` PodMetrics / NodeMetrics, served from the node
agents' samples) and, for nodes, the Nodes' ``status.allocatable`` for the percentages. Numbers are formatted
as kubectl does: CPU in millicores rounded up (``250m``), memory in whole MiB rounded down (``12Mi``).
Pure row building (:func:`pod_rows`, :func:`node_rows`); the commands only fetch and print.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.api.quantity import QuantityError, to_millis, to_units
from corral.api.resources import REGISTRY
from corral.apiserver.status import ApiError
from corral.cli.errors import CliError
from corral.cli.output import GET_MIN_WIDTH, GET_PADDING, Printer, tabwrite
from corral.cli.session import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    cluster_options,
    connected,
    run,
)

JSON = dict[str, Any]
POD_METRICS = REGISTRY.require("podmetrics.metrics.k8s.io")
NODE_METRICS = REGISTRY.require("nodemetrics.metrics.k8s.io")
NODES = REGISTRY.require("nodes")
MIB = 1024 * 1024
SORT_KEYS = ("cpu", "memory")

SelectorOption = Annotated[
    str | None,
    typer.Option("--selector", "-l", help="Label selector, e.g. app=hello,tier!=db.", show_default=False),
]
SortOption = Annotated[
    str | None,
    typer.Option("--sort-by", help="Sort by cpu or memory (highest first).", show_default=False),
]


# --- pure formatting ------------------------------------------------------------------------------------


def _millis(usage: JSON, key: str) -> int:
    try:
        return to_millis(str(usage.get(key) or "0"))
    except QuantityError:
        return 0


def _bytes(usage: JSON, key: str) -> int:
    try:
        return to_units(str(usage.get(key) or "0"))
    except QuantityError:
        return 0


def cpu_text(millis: int) -> str:
    return f"{millis}m"


def memory_text(amount: int) -> str:
    return f"{amount // MIB}Mi"


def _pod_totals(pod: JSON) -> tuple[int, int]:
    containers = pod.get("containers") or []
    return (
        sum(_millis(c.get("usage") or {}, "cpu") for c in containers),
        sum(_bytes(c.get("usage") or {}, "memory") for c in containers),
    )


def _check_sort(sort_by: str | None) -> None:
    if sort_by is not None and sort_by not in SORT_KEYS:
        raise CliError(f"--sort-by accepts only cpu or memory, got {sort_by!r}")


def pod_rows(
    items: list[JSON], *, with_namespace: bool, containers: bool, sort_by: str | None = None
) -> list[list[str]]:
    """Header plus one row per pod (or per container with ``containers``), kubectl's columns."""
    _check_sort(sort_by)
    pods = list(items)
    if sort_by is not None:
        index = SORT_KEYS.index(sort_by)
        pods.sort(key=lambda p: _pod_totals(p)[index], reverse=True)
    header = ["NAMESPACE"] if with_namespace else []
    header += ["POD", "NAME"] if containers else ["NAME"]
    header += ["CPU(cores)", "MEMORY(bytes)"]
    rows = [header]
    for pod in pods:
        meta = pod.get("metadata") or {}
        prefix = [str(meta.get("namespace", ""))] if with_namespace else []
        if containers:
            for c in pod.get("containers") or []:
                usage = c.get("usage") or {}
                rows.append(
                    [
                        *prefix,
                        str(meta.get("name", "")),
                        str(c.get("name", "")),
                        cpu_text(_millis(usage, "cpu")),
                        memory_text(_bytes(usage, "memory")),
                    ]
                )
        else:
            cpu, memory = _pod_totals(pod)
            rows.append([*prefix, str(meta.get("name", "")), cpu_text(cpu), memory_text(memory)])
    return rows


def node_rows(metrics: list[JSON], nodes: list[JSON], sort_by: str | None = None) -> list[list[str]]:
    """Header plus one row per node; percentages of ``status.allocatable``; ``<unknown>`` without metrics."""
    _check_sort(sort_by)
    by_name = {str((m.get("metadata") or {}).get("name", "")): m for m in metrics}
    measured: list[tuple[int, int, list[str]]] = []
    unknown: list[list[str]] = []
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name", ""))
        found = by_name.get(name)
        if found is None:
            unknown.append([name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"])
            continue
        usage = found.get("usage") or {}
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        cpu, memory = _millis(usage, "cpu"), _bytes(usage, "memory")
        cpu_total, memory_total = _millis(allocatable, "cpu"), _bytes(allocatable, "memory")
        cpu_pct = f"{cpu * 100 // cpu_total}%" if cpu_total else "<unknown>"
        memory_pct = f"{memory * 100 // memory_total}%" if memory_total else "<unknown>"
        measured.append((cpu, memory, [name, cpu_text(cpu), cpu_pct, memory_text(memory), memory_pct]))
    if sort_by is not None:
        index = SORT_KEYS.index(sort_by)
        measured.sort(key=lambda m: m[index], reverse=True)
    header = ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    return [header, *(row for _, _, row in measured), *unknown]


def render(rows: list[list[str]]) -> list[str]:
    # kubectl ends every cell with a tab (trailing padding included), so the last column is padded too.
    return [
        line.rstrip()
        for line in tabwrite(["\t".join(r) + "\t" for r in rows], minwidth=GET_MIN_WIDTH, padding=GET_PADDING)
    ]


# --- commands -------------------------------------------------------------------------------------------


def _metrics_unavailable(exc: ApiError) -> CliError | None:
    if exc.code == 404 and exc.message == "the server could not find the requested resource":
        return CliError("Metrics API not available")
    return None


def top_pods(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One pod's name.", show_default=False)] = None,
    selector: SelectorOption = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Pods of all namespaces.")
    ] = False,
    containers: Annotated[
        bool, typer.Option("--containers", help="One line per container instead of per pod.")
    ] = False,
    sort_by: SortOption = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """CPU (millicores) and memory (MiB) in use by pods, from the agents' latest samples."""
    if name and selector:
        raise CliError("only one of NAME or --selector can be provided")
    _check_sort(sort_by)
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()

    async def _top() -> tuple[list[JSON], str | None]:
        async with connected(options) as (transport, access):
            ns = None if all_namespaces else (namespace or access.namespace)
            try:
                if name:
                    return [await transport.get(POD_METRICS, ns or access.namespace, name)], ns
                listed = await transport.list(POD_METRICS, ns, label_selector=selector)
            except ApiError as exc:
                raise _metrics_unavailable(exc) or exc from None
            return listed.items, ns

    items, ns = run(_top())
    if not items:
        printer.note(f"No resources found in {ns} namespace." if ns else "No resources found")
        return
    for line in render(
        pod_rows(items, with_namespace=all_namespaces, containers=containers, sort_by=sort_by)
    ):
        printer.line(line)


def top_nodes(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="One node's name.", show_default=False)] = None,
    selector: SelectorOption = None,
    sort_by: SortOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """CPU and memory in use on nodes, also as a share of what each node can allocate."""
    if name and selector:
        raise CliError("only one of NAME or --selector can be provided")
    _check_sort(sort_by)
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()

    async def _top() -> tuple[list[JSON], list[JSON]]:
        async with connected(options) as (transport, _access):
            try:
                if name:
                    return [await transport.get(NODE_METRICS, None, name)], [
                        await transport.get(NODES, None, name)
                    ]
                metrics = await transport.list(NODE_METRICS, None, label_selector=selector)
            except ApiError as exc:
                raise _metrics_unavailable(exc) or exc from None
            nodes = await transport.list(NODES, None, label_selector=selector)
            return metrics.items, nodes.items

    metrics, nodes = run(_top())
    if not metrics:
        raise CliError("metrics not available yet")
    for line in render(node_rows(metrics, nodes, sort_by)):
        printer.line(line)


top_app = typer.Typer(
    name="top",
    help="Show CPU and memory use of pods or nodes (the resource metrics API).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    for verb, hidden in (("pods", False), ("pod", True), ("po", True)):
        top_app.command(verb, hidden=hidden)(top_pods)
    for verb, hidden in (("nodes", False), ("node", True), ("no", True)):
        top_app.command(verb, hidden=hidden)(top_nodes)
    app.add_typer(top_app)
