"""The object verbs: ``apply``, ``get`` and ``delete``, with kubectl's arguments, output and exit codes.

Each command parses and checks its arguments before connecting, runs one coroutine over one HTTP transport,
and reports per-object failures as kubectl does: one ``Error from server (...)`` line each, carry on with
the remaining objects, exit 1 at the end. A failure to reach the server stops the command at once.
``describe`` lives in ``corral.cli.describe``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import typer

from corral.api.resources import ResourceType
from corral.apiserver.status import ApiError
from corral.cli import rollout
from corral.cli.errors import CliError
from corral.cli.manifests import read_manifests
from corral.cli.output import (
    JSON,
    Printer,
    TableLayout,
    as_list,
    for_output,
    header_cells,
    object_cells,
    to_json,
    to_yaml,
)
from corral.cli.rollout import Failures
from corral.cli.session import (
    ClusterOptions,
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    cluster_options,
    connected,
    kind_for_object,
    object_name,
    object_namespace,
    resolve_kind,
    resolve_kinds,
    run,
    type_name,
)
from corral.client import HttpTransport

FIELD_MANAGER = "corral"
PATCH_APPLY = "application/apply-patch+yaml"
OUTPUT_FORMATS = ("json", "name", "wide", "yaml")
DEFAULT_WAIT = "5m"  # apply --wait gives up after this unless --timeout says otherwise

FilenameOption = Annotated[
    list[str] | None,
    typer.Option(
        "--filename", "-f", help="A file, a directory of manifests, or - for stdin.", show_default=False
    ),
]
SelectorOption = Annotated[
    str | None,
    typer.Option("--selector", "-l", help="Label selector, e.g. app=hello,tier!=db.", show_default=False),
]


# --- apply ---------------------------------------------------------------------------------------------


def apply(
    ctx: typer.Context,
    filename: FilenameOption = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Then wait until every Deployment has rolled out and every Job has finished, showing "
            "progress; exit non-zero if one fails or the timeout passes.",
        ),
    ] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            help="With --wait: give up after this long (default 5m; 0 waits forever).",
            show_default=False,
        ),
    ] = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Create or update objects from manifests (server-side apply, field manager "corral")."""
    if timeout is not None and not wait:
        raise CliError("--timeout is only used with --wait")
    limit = rollout.timeout_seconds(timeout or DEFAULT_WAIT)
    manifests = read_manifests(filename or [])
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()
    failures = Failures(printer)
    waited: list[rollout.Waited] = []

    async def _apply() -> bool:
        async with connected(options) as (transport, access):
            for manifest in manifests:
                try:
                    rt = kind_for_object(manifest.obj, manifest.source)
                    ns = object_namespace(rt, manifest.obj, namespace, access.namespace)
                    outcome = await _apply_one(transport, rt, ns, manifest.obj)
                except (ApiError, CliError) as exc:
                    failures.report(exc)
                    continue
                name = str(manifest.obj["metadata"]["name"])
                printer.line(f"{object_name(rt, name)} {outcome}")
                if wait and rollout.waitable(rt):
                    waited.append(rollout.Waited(rt, ns, name))
            return await rollout.wait_for(transport, waited, printer, limit) if wait else True

    succeeded = run(_apply())
    failures.exit_if_any()
    if not succeeded:
        raise typer.Exit(1)


def _content(obj: JSON) -> JSON:
    """What an apply can change: the object without status, resourceVersion and field ownership."""
    out = {k: v for k, v in obj.items() if k != "status"}
    out["metadata"] = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")
    }
    return out


async def _apply_one(transport: HttpTransport, rt: ResourceType, ns: str | None, obj: JSON) -> str:
    """Apply ``obj``: ``created`` if it did not exist, ``unchanged`` if the apply changed nothing but
    status or field ownership (a controller's status write between our read and our patch must not make
    a no-op apply look like a change), else ``configured``."""
    name = str(obj["metadata"]["name"])
    body = copy.deepcopy(obj)
    if ns is not None:
        body["metadata"]["namespace"] = ns
    try:
        before: JSON | None = await transport.get(rt, ns, name)
    except ApiError as exc:
        if exc.code != 404:
            raise
        before = None
    result = await transport.patch(rt, ns, name, PATCH_APPLY, body, field_manager=FIELD_MANAGER, force=True)
    if before is None:
        return "created"
    same_version = result["metadata"].get("resourceVersion") == before["metadata"].get("resourceVersion")
    return "unchanged" if same_version or _content(result) == _content(before) else "configured"


# --- get -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _GetRequest:
    kinds: list[ResourceType]
    names: list[str]
    output: str | None
    selector: str | None
    all_namespaces: bool
    namespace: str | None
    watch: bool

    @property
    def wide(self) -> bool:
        return self.output == "wide"

    @property
    def table(self) -> bool:
        return self.output in (None, "wide")


@dataclass(slots=True)
class _Found:
    rt: ResourceType
    items: list[JSON] = field(default_factory=list)
    resource_version: str = ""


def _split_kind_name(kind: str, names: list[str]) -> tuple[str, list[str]]:
    if "/" in kind:
        kind, first = kind.split("/", 1)
        return kind, [first, *names]
    return kind, names


def get(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind (deploy, svc, pods, deployments.apps; a,b; all).")],
    names: Annotated[list[str] | None, typer.Argument(help="Object names.", show_default=False)] = None,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="wide, yaml, json or name.", show_default=False)
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Stream changes after listing.")] = False,
    selector: SelectorOption = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="List across all namespaces.")
    ] = False,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Show objects as a table (like kubectl get), or as YAML, JSON or names."""
    kind, name_list = _split_kind_name(kind, list(names or []))
    if output is not None and output not in OUTPUT_FORMATS:
        raise CliError(
            f'unable to match a printer suitable for the output format "{output}", '
            f"allowed formats are: {','.join(OUTPUT_FORMATS)}"
        )
    if name_list and selector:
        raise CliError("name cannot be provided when a selector is specified")
    request = _GetRequest(resolve_kinds(kind), name_list, output, selector, all_namespaces, namespace, watch)
    if watch and len(request.kinds) > 1:
        raise CliError("you may only specify a single resource type when watching")
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()
    failures = Failures(printer)
    try:
        run(_get(options, request, printer, failures))
    except KeyboardInterrupt:
        if not watch:
            raise
    failures.exit_if_any()


async def _get(options: ClusterOptions, request: _GetRequest, printer: Printer, failures: Failures) -> None:
    async with connected(options) as (transport, access):
        ns = None if request.all_namespaces else (request.namespace or access.namespace)
        found: list[_Found] = []
        for rt in request.kinds:
            scope = ns if rt.namespaced else None
            if request.names:
                entry = _Found(rt)
                for name in request.names:
                    try:
                        entry.items.append(await transport.get(rt, scope, name))
                    except ApiError as exc:
                        failures.report(exc)
                found.append(entry)
            else:
                listed = await transport.list(rt, scope, label_selector=request.selector)
                found.append(_Found(rt, listed.items, listed.resource_version))
        layout = TableLayout()
        _print_found(printer, request, found, layout, ns, failures.count > 0)
        if request.watch:
            await _watch(transport, printer, request, found[0], ns, layout)


def _print_found(
    printer: Printer,
    request: _GetRequest,
    found: list[_Found],
    layout: TableLayout,
    ns: str | None,
    had_errors: bool,
) -> None:
    total = sum(len(f.items) for f in found)
    if request.output in ("yaml", "json"):
        objects = [for_output(f.rt, obj) for f in found for obj in f.items]
        single = len(request.names) == 1 and len(request.kinds) == 1
        if single and not objects:
            return
        doc = objects[0] if single else as_list(objects)
        printer.text(to_yaml(doc) if request.output == "yaml" else to_json(doc))
        return
    if request.output == "name":
        for f in found:
            for obj in f.items:
                printer.line(object_name(f.rt, obj["metadata"]["name"]))
        return
    if total == 0:
        if not had_errors:
            where = "" if ns is None or not any(f.rt.namespaced for f in found) else f" in {ns} namespace"
            printer.note(f"No resources found{where}.")
        return
    first = True
    for f in found:
        if not f.items:
            continue
        if not first:
            printer.line()
            layout = TableLayout()  # a new kind has its own columns
        first = False
        _print_rows(printer, request, f.rt, f.items, layout, header=True, with_kind=len(request.kinds) > 1)


def _print_rows(
    printer: Printer,
    request: _GetRequest,
    rt: ResourceType,
    items: list[JSON],
    layout: TableLayout,
    *,
    header: bool,
    with_kind: bool,
) -> None:
    now = datetime.now(UTC)  # the CLI is an edge: ages are relative to the user's clock
    rows = [
        object_cells(
            rt, obj, now, wide=request.wide, with_namespace=request.all_namespaces, with_kind=with_kind
        )
        for obj in items
    ]
    if header:
        rows.insert(0, header_cells(rt, wide=request.wide, with_namespace=request.all_namespaces))
    lines = layout.render(rows)
    for i, text in enumerate(lines):
        if header and i == 0:
            printer.header(text)
        else:
            printer.line(text)


async def _watch(
    transport: HttpTransport,
    printer: Printer,
    request: _GetRequest,
    found: _Found,
    ns: str | None,
    layout: TableLayout,
) -> None:
    """Print every later change to the listed objects until interrupted; re-watch when a stream ends."""
    rt = found.rt
    scope = ns if rt.namespaced else None
    header_printed = bool(found.items) and request.table
    field_selector = f"metadata.name={request.names[0]}" if len(request.names) == 1 else None
    resource_version = found.resource_version or max(
        (str(o["metadata"].get("resourceVersion", "")) for o in found.items), key=_rv_key, default=""
    )
    wanted = set(request.names)
    while True:
        try:
            events = transport.watch(
                rt,
                scope,
                resource_version=resource_version or None,
                label_selector=request.selector,
                field_selector=field_selector,
            )
            async for event in events:
                obj = event.obj
                resource_version = str((obj.get("metadata") or {}).get("resourceVersion") or resource_version)
                if event.type == "BOOKMARK" or (wanted and obj.get("metadata", {}).get("name") not in wanted):
                    continue
                _print_event(printer, request, rt, obj, layout, header=not header_printed)
                header_printed = header_printed or request.table
        except ApiError as exc:
            if exc.code != 410:
                raise
            resource_version = (
                await transport.list(rt, scope, label_selector=request.selector, limit=1)
            ).resource_version


def _rv_key(rv: str) -> int:
    return int(rv) if rv.isdigit() else 0


def _print_event(
    printer: Printer, request: _GetRequest, rt: ResourceType, obj: JSON, layout: TableLayout, *, header: bool
) -> None:
    if request.output == "yaml":
        printer.text("---\n" + to_yaml(for_output(rt, obj)))
    elif request.output == "json":
        printer.text(to_json(for_output(rt, obj)))
    elif request.output == "name":
        printer.line(object_name(rt, obj["metadata"]["name"]))
    else:
        _print_rows(printer, request, rt, [obj], layout, header=header, with_kind=False)


# --- delete --------------------------------------------------------------------------------------------


def delete(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument(help="Kind (deploy, svc, ...).", show_default=False)] = None,
    names: Annotated[list[str] | None, typer.Argument(help="Object names.", show_default=False)] = None,
    filename: FilenameOption = None,
    selector: SelectorOption = None,
    all_objects: Annotated[
        bool, typer.Option("--all", help="Delete every object of the kind in the namespace.")
    ] = False,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Delete objects by kind and name, by label selector, or named in manifests."""
    targets: list[tuple[ResourceType, str | None, str]] = []  # namespace None = the context's, filled later
    manifests = read_manifests(filename) if filename else []
    if manifests and kind:
        raise CliError(
            "there is no need to specify a resource type as a separate argument when passing "
            "arguments in resource/name form or with -f"
        )
    rt: ResourceType | None = None
    name_list: list[str] = []
    if not filename:
        if not kind:
            raise CliError("you must specify the type of resource to delete, or use -f")
        kind, name_list = _split_kind_name(kind, list(names or []))
        rt = resolve_kind(kind)
        if not name_list and not selector and not all_objects:
            raise CliError("resource(s) were provided, but no name was specified")
        if name_list and (selector or all_objects):
            raise CliError("name cannot be provided when a selector or --all is specified")
    options = cluster_options(ctx, kubeconfig, context)
    printer = Printer()
    failures = Failures(printer)

    async def _delete() -> None:
        async with connected(options) as (transport, access):
            for manifest in manifests:
                try:
                    mrt = kind_for_object(manifest.obj, manifest.source)
                    ns = object_namespace(mrt, manifest.obj, namespace, access.namespace)
                except CliError as exc:
                    failures.report(exc)
                    continue
                targets.append((mrt, ns, str(manifest.obj["metadata"]["name"])))
            if rt is not None:
                ns = (namespace or access.namespace) if rt.namespaced else None
                chosen = name_list
                if not chosen:
                    listed = await transport.list(rt, ns, label_selector=selector)
                    chosen = [str(o["metadata"]["name"]) for o in listed.items]
                    if not chosen:
                        where = f" in {ns} namespace" if ns else ""
                        printer.note(f"No resources found{where}.")
                targets.extend((rt, ns, name) for name in chosen)
            for trt, ns, name in targets:
                try:
                    await transport.delete(trt, ns, name)
                except ApiError as exc:
                    failures.report(exc)
                    continue
                printer.line(f'{type_name(trt)} "{name}" deleted')

    run(_delete())
    failures.exit_if_any()


def register(app: typer.Typer) -> None:
    app.command()(apply)
    app.command()(get)
    app.command()(delete)


__all__ = ["apply", "delete", "get", "register"]
