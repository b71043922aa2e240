"""What every cluster-facing command shares: the global options, the connection, and kind names.

Commands read ``--kubeconfig``/``--context`` either before the verb (``corral --context x get pods``) or
after it (``corral get pods --context x``), as kubectl allows; :func:`cluster_options` merges the two.
:func:`connected` opens one HTTP transport for the duration of a command and always closes it. Kind
resolution and the ``deployment.apps/hello`` style object names live here because apply, get, describe and
delete all print them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer

from corral.api.resources import REGISTRY, ResourceType
from corral.cli.errors import CliError
from corral.client import ClusterAccess, HttpTransport, connect

T = TypeVar("T")

KubeconfigOption = Annotated[
    str | None, typer.Option("--kubeconfig", help="Path to the kubeconfig file to use.", show_default=False)
]
ContextOption = Annotated[
    str | None, typer.Option("--context", help="The kubeconfig context to use.", show_default=False)
]
NamespaceOption = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="The namespace (default: the context's).", show_default=False),
]


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    kubeconfig: str | None = None
    context: str | None = None


def cluster_options(ctx: typer.Context, kubeconfig: str | None, context: str | None) -> ClusterOptions:
    """The command's own flags, falling back to the ones given before the verb."""
    parent = ctx.find_object(ClusterOptions) or ClusterOptions()
    return ClusterOptions(kubeconfig or parent.kubeconfig, context or parent.context)


@asynccontextmanager
async def connected(options: ClusterOptions) -> AsyncIterator[tuple[HttpTransport, ClusterAccess]]:
    transport, access = connect(options.kubeconfig, options.context)
    try:
        yield transport, access
    finally:
        await transport.close()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop."""
    return asyncio.run(coro)


def resolve_kind(name: str) -> ResourceType:
    rt = REGISTRY.resolve(name)
    if rt is None:
        raise CliError(f'the server doesn\'t have a resource type "{name}"')
    return rt


def resolve_kinds(spec: str) -> list[ResourceType]:
    """``deploy,svc`` → both kinds; ``all`` → the kinds in the ``all`` category (as kubectl does)."""
    kinds: list[ResourceType] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        found = (
            [r for r in REGISTRY.preferred() if "all" in r.categories]
            if part == "all"
            else [resolve_kind(part)]
        )
        kinds.extend(r for r in found if r not in kinds)
    if not kinds:
        raise CliError("you must specify the type of resource to get")
    return kinds


def kind_for_object(obj: dict[str, Any], source: str = "") -> ResourceType:
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    rt = REGISTRY.by_kind(str(api_version), str(kind)) if api_version and kind else None
    if rt is None:
        name = (obj.get("metadata") or {}).get("name", "")
        where = f' from "{source}"' if source else ""
        raise CliError(
            f'resource mapping not found for name: "{name}"{where}: no matches for kind "{kind}" '
            f'in version "{api_version}"'
        )
    return rt


def type_name(rt: ResourceType) -> str:
    """``deployment.apps`` / ``service``: the prefix kubectl prints before ``/name``."""
    return f"{rt.kind.lower()}.{rt.group}" if rt.group else rt.kind.lower()


def object_name(rt: ResourceType, name: str) -> str:
    return f"{type_name(rt)}/{name}"


def object_namespace(rt: ResourceType, obj: dict[str, Any], flag: str | None, default: str) -> str | None:
    """The namespace an object from a manifest goes to: its own, else ``-n``, else the context's.

    Like kubectl, an explicit ``-n`` that contradicts the manifest is an error rather than a silent pick.
    """
    if not rt.namespaced:
        return None
    own = (obj.get("metadata") or {}).get("namespace")
    if own and flag and own != flag:
        raise CliError(
            f'the namespace from the provided object "{own}" does not match the namespace '
            f"\"{flag}\". You must pass '--namespace={own}' to perform this operation."
        )
    return str(own or flag or default)
