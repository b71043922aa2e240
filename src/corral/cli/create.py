"""``corral create configmap`` and ``corral create secret generic``: kubectl's flags, output and messages.

The object is built by the pure ``corral.cli.configdata`` from the flags before anything connects (so a bad
flag never reaches the server and ``--dry-run=client`` needs no server); this module only reads the real
files and environment, POSTs the object, and prints kubectl's ``configmap/NAME created`` line or the object.
"""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated

import typer

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver.status import ApiError
from corral.cli.configdata import JSON, LocalFiles, SourceError, Sources, build_configmap, build_secret
from corral.cli.errors import CliError, is_connection_error
from corral.cli.output import Printer, for_output, to_json, to_yaml
from corral.cli.session import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    cluster_options,
    connected,
    object_name,
    run,
)

FIELD_MANAGER = "kubectl-create"  # the manager kubectl records, so a later kubectl apply/edit sees the same


class DryRun(StrEnum):
    NONE = "none"
    CLIENT = "client"
    SERVER = "server"


class Output(StrEnum):
    YAML = "yaml"
    JSON = "json"
    NAME = "name"


LiteralOption = Annotated[
    list[str] | None,
    typer.Option(
        "--from-literal", help="A key and literal value: KEY=VALUE (repeatable).", show_default=False
    ),
]
FileOption = Annotated[
    list[str] | None,
    typer.Option(
        "--from-file",
        help="[KEY=]PATH: a file (key defaults to its base name) or a directory (one key per regular file).",
        show_default=False,
    ),
]
EnvFileOption = Annotated[
    list[str] | None,
    typer.Option("--from-env-file", help="A file of KEY=VALUE lines (repeatable).", show_default=False),
]
DryRunOption = Annotated[
    DryRun,
    typer.Option("--dry-run", help="client: only print the object; server: validate without storing."),
]
OutputOption = Annotated[
    Output | None, typer.Option("--output", "-o", help="yaml, json or name.", show_default=False)
]

create_app = typer.Typer(
    name="create", help="Create a ConfigMap or a Secret from literals and files.", no_args_is_help=True
)
secret_app = typer.Typer(name="secret", help="Create a Secret.", no_args_is_help=True)


def _kind(kind: str) -> ResourceType:
    rt = REGISTRY.by_kind("v1", kind)
    assert rt is not None, kind  # built-in kinds are always registered
    return rt


def _sources(literals: list[str] | None, files: list[str] | None, env_files: list[str] | None) -> Sources:
    return Sources(list(literals or []), list(files or []), list(env_files or []))


def _submit(
    ctx: typer.Context,
    obj: JSON,
    namespace: str | None,
    dry_run: DryRun,
    output: Output | None,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """POST ``obj`` (unless a client dry run) and print it the way kubectl does."""
    kind = str(obj["kind"])
    rt = _kind(kind)
    result = obj
    if dry_run is not DryRun.CLIENT:
        options = cluster_options(ctx, kubeconfig, context)

        async def _create() -> JSON:
            async with connected(options) as (transport, access):
                ns = namespace or access.namespace
                try:
                    return await transport.create(
                        rt, ns, obj, dry_run=dry_run is DryRun.SERVER, field_manager=FIELD_MANAGER
                    )
                except ApiError as exc:
                    if is_connection_error(exc):
                        raise
                    # kubectl's wording for a refused create: the server's message, behind the verb.
                    raise CliError(
                        f"failed to create {kind.lower()}: {' '.join(exc.message.split())}"
                    ) from exc

        result = run(_create())
    printer = Printer()
    name = object_name(rt, str(obj["metadata"]["name"]))
    if output is Output.NAME:
        printer.line(name)
    elif output is not None:
        shown = for_output(rt, result)
        if dry_run is DryRun.CLIENT:
            # kubectl's client-built objects show an unset creationTimestamp as null
            shown["metadata"].setdefault("creationTimestamp", None)
        printer.text(to_yaml(shown) if output is Output.YAML else to_json(shown))
    else:
        suffix = {DryRun.CLIENT: " (dry run)", DryRun.SERVER: " (server dry run)"}.get(dry_run, "")
        printer.line(f"{name} created{suffix}")


@create_app.command("configmap", help="Create a ConfigMap from literals, files, directories or env files.")
def create_configmap(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The ConfigMap's name.", show_default=False)],
    from_literal: LiteralOption = None,
    from_file: FileOption = None,
    from_env_file: EnvFileOption = None,
    dry_run: DryRunOption = DryRun.NONE,
    output: OutputOption = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    try:
        obj = build_configmap(
            name, _sources(from_literal, from_file, from_env_file), LocalFiles(), os.environ, namespace
        )
    except SourceError as exc:
        raise CliError(str(exc)) from exc
    _submit(ctx, obj, namespace, dry_run, output, kubeconfig, context)


@secret_app.command("generic", help="Create a Secret from literals, files, directories or env files.")
def create_secret_generic(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The Secret's name.", show_default=False)],
    from_literal: LiteralOption = None,
    from_file: FileOption = None,
    from_env_file: EnvFileOption = None,
    secret_type: Annotated[
        str, typer.Option("--type", help="The Secret's type (default Opaque).", show_default=False)
    ] = "",
    dry_run: DryRunOption = DryRun.NONE,
    output: OutputOption = None,
    namespace: NamespaceOption = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    try:
        obj = build_secret(
            name,
            _sources(from_literal, from_file, from_env_file),
            LocalFiles(),
            os.environ,
            namespace,
            secret_type,
        )
    except SourceError as exc:
        raise CliError(str(exc)) from exc
    _submit(ctx, obj, namespace, dry_run, output, kubeconfig, context)


create_app.add_typer(secret_app)


def register(app: typer.Typer) -> None:
    app.add_typer(create_app)


__all__ = ["create_configmap", "create_secret_generic", "register"]
