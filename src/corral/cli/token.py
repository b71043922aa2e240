"""``corral token create|list|delete``: join tokens, kept as kubeadm bootstrap-token Secrets in kube-system.

``create`` writes the Secret through the API with the kubeconfig's credentials (admin: a node or a join token
is refused by the server) and prints exactly the command a new machine runs::

    corral agent --server https://HOST:PORT --token <id>.<secret> --ca-hash sha256:<hex>

The URL and CA come from ``kube-public/cluster-info`` (what the server advertises to agents), else from the
kubeconfig. ``--ttl 0`` makes a token that never expires (as kubeadm).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

import typer

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import jointokens as jt
from corral.apiserver.status import ApiError
from corral.cli.errors import CliError
from corral.cli.output import Printer
from corral.cli.pods import parse_duration
from corral.cli.session import ContextOption, KubeconfigOption, cluster_options, connected, run

token_app = typer.Typer(name="token", help="Manage join tokens for `corral agent`.", no_args_is_help=True)


def _rt(name: str) -> ResourceType:
    rt = REGISTRY.resolve(name)
    assert rt is not None
    return rt


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


async def _create(ctx_options: Any, ttl: float, description: str) -> str:
    async with connected(ctx_options) as (transport, access):
        token = jt.new_token()
        expires = _now() + datetime.timedelta(seconds=ttl) if ttl > 0 else None
        await transport.create(
            _rt("secrets"), jt.SYSTEM_NAMESPACE, jt.token_secret(token, expires, description)
        )
        server, ca_pem = access.server, access.ca_pem
        try:
            info = await transport.get(_rt("configmaps"), jt.CLUSTER_INFO_NAMESPACE, jt.CLUSTER_INFO_NAME)
        except ApiError as exc:
            if exc.code != 404:
                raise
        else:
            published = jt.ca_from_cluster_info(info)
            if published is not None:
                ca_pem = published
            server = _cluster_info_server(info) or server
    if ca_pem is None:
        raise CliError(
            "the kubeconfig has no cluster CA and the server publishes none: cannot make a CA hash"
        )
    return jt.join_command(server, token, ca_pem)


def _cluster_info_server(info: dict[str, Any]) -> str | None:
    import yaml

    try:
        doc = yaml.safe_load(str((info.get("data") or {}).get("kubeconfig", "")))
        return str(doc["clusters"][0]["cluster"]["server"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def create(
    ctx: typer.Context,
    ttl: Annotated[
        str, typer.Option("--ttl", help="How long the token is valid (Go duration; 0: never expires).")
    ] = "24h",
    description: Annotated[str, typer.Option("--description", help="A note stored with the token.")] = (
        "corral join token"
    ),
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Create a join token and print the `corral agent` command that joins a machine with it."""
    try:
        seconds = parse_duration(ttl)
    except CliError:
        raise CliError(f'invalid argument "{ttl}" for "--ttl" flag: time: invalid duration "{ttl}"') from None
    command = run(_create(cluster_options(ctx, kubeconfig, context), seconds, description))
    Printer().text(command + "\n")


async def _list(options: Any) -> list[jt.TokenInfo]:
    async with connected(options) as (transport, _):
        listed = await transport.list(_rt("secrets"), jt.SYSTEM_NAMESPACE)
    infos = [jt.token_info(item) for item in listed.items]
    return sorted((i for i in infos if i is not None), key=lambda i: i.token_id)


def list_tokens(
    ctx: typer.Context, kubeconfig: KubeconfigOption = None, context: ContextOption = None
) -> None:
    """List join tokens (ids, expiry, description; never the secret part)."""
    infos = run(_list(cluster_options(ctx, kubeconfig, context)))
    printer = Printer()
    rows = [("TOKEN ID", "EXPIRES", "STATUS", "DESCRIPTION")]
    now = _now()
    for info in infos:
        expires = jt.rfc3339(info.expiration) if info.expiration else "<never>"
        status = "expired" if info.expiration is not None and info.expiration <= now else "valid"
        rows.append((info.token_id, expires, status, info.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        printer.line("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _delete(options: Any, token_id: str) -> None:
    async with connected(options) as (transport, _):
        try:
            await transport.delete(_rt("secrets"), jt.SYSTEM_NAMESPACE, jt.BOOTSTRAP_SECRET_PREFIX + token_id)
        except ApiError as exc:
            if exc.code == 404:
                raise CliError(f'join token "{token_id}" not found') from None
            raise


def delete(
    ctx: typer.Context,
    token: Annotated[
        str, typer.Argument(help="The token's id (the part before the dot) or the whole token.")
    ],
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Delete a join token: agents can no longer join with it (joined nodes keep their own credentials)."""
    token_id = token.split(".", 1)[0]
    run(_delete(cluster_options(ctx, kubeconfig, context), token_id))
    Printer().line(f'join token "{token_id}" deleted')


def register(app: typer.Typer) -> None:
    token_app.command("create")(create)
    token_app.command("list")(list_tokens)
    token_app.command("delete")(delete)
    app.add_typer(token_app)
