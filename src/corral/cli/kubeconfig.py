"""``corral kubeconfig``: show the kubeconfig ``corral up`` wrote, or merge it into the one kubectl reads.

The merge target is the file kubectl would write to: the first entry of ``$KUBECONFIG``, else
``~/.kube/config``. Clusters, users and contexts with the same names are replaced, all others kept, and
``current-context`` switches to Corral's. The file is written atomically (temporary file + rename) with
mode 0600 because it holds a bearer token. :func:`merge_documents` is pure; the rest is file IO.
"""

from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from corral.cli.errors import CliError
from corral.cli.output import Printer

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Corral's data directory (default: $CORRAL_DATA_DIR or ~/.corral).",
        show_default=False,
    ),
]

_NAMED_SECTIONS = ("clusters", "users", "contexts")


def merge_documents(target: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """``target`` with ``source``'s named entries replacing same-named ones and its current context."""
    merged = copy.deepcopy(target)
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    for section in _NAMED_SECTIONS:
        incoming = [e for e in source.get(section) or [] if isinstance(e, dict)]
        names = {e.get("name") for e in incoming}
        kept = [e for e in merged.get(section) or [] if not (isinstance(e, dict) and e.get("name") in names)]
        merged[section] = kept + copy.deepcopy(incoming)
    if source.get("current-context"):
        merged["current-context"] = source["current-context"]
    merged.setdefault("preferences", {})
    return merged


def kubectl_config_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    first = next((p for p in (env or "").split(os.pathsep) if p), None)
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(doc, dict):
        raise CliError(f"{path} is not a kubeconfig (expected a mapping)")
    return doc


def kubeconfig(
    data_dir: DataDirOption = None,
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Merge into $KUBECONFIG's first file or ~/.kube/config and switch to Corral's context.",
        ),
    ] = False,
) -> None:
    """Print the kubeconfig written by `corral up`, or merge it into kubectl's kubeconfig."""
    from corral.server import default_data_dir  # the server's imports are heavy; only this verb needs it

    source = (data_dir or default_data_dir()).expanduser() / "kubeconfig"
    if not source.exists():
        raise CliError(
            f"no kubeconfig at {source}: start the server with `corral up` first (or pass --data-dir)"
        )
    printer = Printer()
    if not merge:
        printer.text(source.read_text(encoding="utf-8"))
        return
    target = kubectl_config_path()
    if target.exists() and target.resolve() == source.resolve():
        printer.line(f"{target} is Corral's own kubeconfig; nothing to merge.")
        return
    incoming = _load(source)
    merged = merge_documents(_load(target) if target.exists() else {}, incoming)
    write_private(target, yaml.safe_dump(merged, sort_keys=False))
    printer.line(
        f"Merged Corral's kubeconfig into {target}; current context is now "
        f'"{merged.get("current-context", "")}".'
    )


def register(app: typer.Typer) -> None:
    app.command()(kubeconfig)
