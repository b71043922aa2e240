"""``corral describe``: fetch an object, the objects its description mentions, and its events; print the
text that ``corral.cli.describers`` renders.

Events are found the way kubectl finds them: a list of ``events`` with the field selector
``involvedObject.name=…,involvedObject.namespace=…,involvedObject.uid=…``. A Node's description also needs
its Lease and its non-terminated pods (all namespaces, ``spec.nodeName=…,status.phase!=Succeeded,…``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from corral.api.printing.labels import selector_string
from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver.status import ApiError
from corral.cli.describers import JSON, Related, describe
from corral.cli.errors import CliError, api_error_line, is_connection_error
from corral.cli.output import Printer
from corral.cli.session import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    cluster_options,
    connected,
    resolve_kind,
    run,
)
from corral.client import HttpTransport


def _required(group: str, version: str, plural: str) -> ResourceType:
    rt = REGISTRY.by_path(group, version, plural)
    assert rt is not None, plural
    return rt


async def _optional_get(transport: HttpTransport, rt: ResourceType, ns: str | None, name: str) -> JSON | None:
    try:
        return await transport.get(rt, ns, name)
    except ApiError as exc:
        if exc.code == 404:
            return None
        raise


async def gather_related(transport: HttpTransport, rt: ResourceType, obj: JSON) -> Related:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace") if rt.namespaced else None
    related = Related()
    clauses = [f"involvedObject.name={meta.get('name', '')}"]
    if ns:
        clauses.append(f"involvedObject.namespace={ns}")
    if meta.get("uid"):
        clauses.append(f"involvedObject.uid={meta['uid']}")
    events = await transport.list(_required("", "v1", "events"), ns, field_selector=",".join(clauses))
    related.events = events.items
    if rt.kind == "Service":
        related.endpoints = await _optional_get(transport, _required("", "v1", "endpoints"), ns, meta["name"])
        slices = await transport.list(
            _required("discovery.k8s.io", "v1", "endpointslices"),
            ns,
            label_selector=f"kubernetes.io/service-name={meta['name']}",
        )
        related.endpoint_slices = slices.items
    elif rt.kind == "Node":
        related.lease = await _optional_get(
            transport, _required("coordination.k8s.io", "v1", "leases"), "kube-node-lease", meta["name"]
        )
        pods = await transport.list(
            _required("", "v1", "pods"),
            None,
            field_selector=f"spec.nodeName={meta['name']},status.phase!=Succeeded,status.phase!=Failed",
        )
        related.pods = pods.items
    elif rt.kind == "Deployment":
        selector = selector_string((obj.get("spec") or {}).get("selector"))
        if selector:
            listed = await transport.list(_required("apps", "v1", "replicasets"), ns, label_selector=selector)
            related.replica_sets = listed.items
    return related


def describe_command(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind (deploy, svc, cm, secret, po, ...).")],
    names: Annotated[
        list[str] | None, typer.Argument(help="Object names (default: all).", show_default=False)
    ] = None,
    selector: Annotated[
        str | None, typer.Option("--selector", "-l", help="Label selector.", show_default=False)
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Show a readable description of objects and their recent events."""
    name_list = list(names or [])
    if "/" in kind:
        kind, first = kind.split("/", 1)
        name_list.insert(0, first)
    rt = resolve_kind(kind)
    if name_list and selector:
        raise CliError("name cannot be provided when a selector is specified")
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()
    failed = False

    async def _describe() -> None:
        nonlocal failed
        async with connected(options) as (transport, access):
            ns = (namespace or access.namespace) if rt.namespaced else None
            objects: list[JSON] = []
            if name_list:
                for name in name_list:
                    try:
                        objects.append(await transport.get(rt, ns, name))
                    except ApiError as exc:
                        if is_connection_error(exc):
                            raise
                        failed = True
                        printer.error(api_error_line(exc))
            else:
                objects = (await transport.list(rt, ns, label_selector=selector)).items
                if not objects:
                    where = f" in {ns} namespace" if ns else ""
                    printer.note(f"No resources found{where}.")
            for i, obj in enumerate(objects):
                related = await gather_related(transport, rt, obj)
                text = describe(
                    rt.kind,
                    {"apiVersion": rt.api_version, "kind": rt.kind, **obj},
                    related,
                    datetime.now(UTC),
                    namespaced=rt.namespaced,
                )
                printer.text(("\n\n" if i else "") + text)

    run(_describe())
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("describe")(describe_command)
