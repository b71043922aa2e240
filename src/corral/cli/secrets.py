"""``corral secrets rotate-key``: re-encrypt every Secret at rest with a new key.

Online first: when a server holds the data dir's store (the SQLite file is locked), the command asks that
server to rotate through its admin endpoint (``POST /corral/v1/secrets/rotate-key``, reached with the data
dir's kubeconfig), so the cluster keeps serving throughout. When no server runs, it opens the store itself
(offline mode) and does the same rotation. Either way, the old key is gone from the key file afterwards.
The key material itself is never printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from corral.cli.errors import CliError
from corral.cli.kubeconfig import DataDirOption
from corral.cli.output import Printer
from corral.cli.session import ClusterOptions, connected, run

secrets_app = typer.Typer(
    name="secrets",
    help="Manage how Secrets are stored (encryption at rest).",
    no_args_is_help=True,
)


async def _rotate_offline(state: Path, key_file: Path) -> dict[str, Any] | None:
    """Rotate with the store opened here; ``None`` when a running server holds it."""
    from corral.store import SqliteStore, StoreLocked

    try:
        store = await SqliteStore.open(state, key_file=key_file)
    except StoreLocked:
        return None
    try:
        result = await store.rotate_key()
    finally:
        await store.close()
    return dataclasses.asdict(result)


async def _rotate_online(kubeconfig: Path | None, options: ClusterOptions) -> dict[str, Any]:
    from corral.server import ROTATE_KEY_PATH

    if kubeconfig is not None:
        options = ClusterOptions(str(kubeconfig), options.context)
    async with connected(options) as (transport, _):
        answer: dict[str, Any] = await transport.request("POST", ROTATE_KEY_PATH, body={})
    return answer


def rotate_key(ctx: typer.Context, data_dir: DataDirOption = None) -> None:
    """Re-encrypt every Secret with a new key (online when a server runs, else offline); drop the old key."""
    from corral.server import ENCRYPTION_KEY_FILE, default_data_dir

    directory = data_dir or default_data_dir()
    state = directory / "state.db"
    printer = Printer()
    result: dict[str, Any] | None = None
    mode = "offline"
    if state.exists():
        result = run(_rotate_offline(state, directory / ENCRYPTION_KEY_FILE))
    if result is None:
        mode = "online"
        kubeconfig = directory / "kubeconfig"
        parent = ctx.find_object(ClusterOptions) or ClusterOptions()
        if not kubeconfig.exists() and parent.kubeconfig is None:
            raise CliError(f"no Corral store or kubeconfig in {directory} (use --data-dir)")
        result = run(_rotate_online(kubeconfig if kubeconfig.exists() else None, parent))
    retired = ", ".join(k for k in result.get("retired", []) if k != result.get("key_id")) or "none"
    printer.line(
        f"encryption key rotated ({mode}): new key {result['key_id']}, "
        f"{result['resealed']} secret(s) re-encrypted, retired key(s): {retired}"
    )
    unreadable = result.get("unreadable") or []
    if unreadable:
        raise CliError(
            f"{len(unreadable)} stored secret(s) could not be decrypted and were left as they are: "
            + ", ".join(unreadable)
        )


def register(app: typer.Typer) -> None:
    secrets_app.command("rotate-key")(rotate_key)
    app.add_typer(secrets_app)
