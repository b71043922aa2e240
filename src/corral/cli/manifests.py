"""Reading ``-f`` arguments into objects: files, directories (``*.yaml``, ``*.yml``, ``*.json``, sorted, not
recursive) and ``-`` for stdin; multi-document YAML or JSON; ``kind: List`` documents expanded.

YAML goes through ``load_yaml_documents``, the same alias- and depth-limited loader the API server uses, so
a manifest the CLI accepts is one the server would accept too. Boundary: local files only, no network.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.apiserver.bodies import BodyError, load_yaml_documents
from corral.cli.errors import CliError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Manifest:
    source: str
    """The file the object came from (``-`` for stdin), for messages."""
    obj: dict[str, Any]


def _files(arg: str) -> list[Path]:
    path = Path(arg).expanduser()
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
    if not path.exists():
        raise CliError(f'the path "{arg}" does not exist')
    return [path]


def parse_documents(text: str, source: str) -> list[Any]:
    """All documents in ``text``: one JSON value, or a YAML stream (JSON is tried first because JSON files
    may be indented with tabs, which YAML forbids)."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            return [json.loads(text)]
        except json.JSONDecodeError:
            pass
    try:
        return load_yaml_documents(text)
    except BodyError as exc:
        raise CliError(f"error parsing {source}: {exc}") from exc


def _expand(doc: Any, source: str) -> list[dict[str, Any]]:
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise CliError(
            f'error validating "{source}": a manifest document must be an object, got {type(doc).__name__}'
        )
    if doc.get("kind") == "List" or (str(doc.get("kind", "")).endswith("List") and "items" in doc):
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise CliError(f'error validating "{source}": items of a List must be a list')
        return [obj for item in items for obj in _expand(item, source)]
    for field in ("apiVersion", "kind"):
        if not doc.get(field):
            raise CliError(f'error validating "{source}": {field} not set')
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        raise CliError(
            f'error validating "{source}": metadata.name not set (generateName is not supported by apply)'
        )
    return [doc]


def read_manifests(args: list[str]) -> list[Manifest]:
    """Every object named by the ``-f`` arguments, in order."""
    if not args:
        raise CliError("must specify one of -f")
    manifests: list[Manifest] = []
    for arg in args:
        if arg == "-":
            sources: list[tuple[str, str]] = [("-", sys.stdin.read())]
        else:
            try:
                sources = [(str(p), p.read_text(encoding="utf-8")) for p in _files(arg)]
            except OSError as exc:
                raise CliError(f'cannot read "{arg}": {exc.strerror or exc}') from exc
            except UnicodeDecodeError as exc:
                raise CliError(f'cannot read "{arg}": not UTF-8 text') from exc
        for source, text in sources:
            for doc in parse_documents(text, source):
                manifests.extend(Manifest(source, obj) for obj in _expand(doc, source))
    return manifests
