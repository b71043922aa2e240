"""Terminal output: kubectl-style aligned tables, YAML/JSON/name renderings, and the stdout/stderr writers.

Tables use the server's own Table columns (``corral.api.printing``) so ``corral get`` shows exactly what
``kubectl get`` shows against Corral. Alignment is Go's ``text/tabwriter`` as kubectl configures it
(re-implemented in :func:`tabwrite` because kubectl's spacing *is* the format users and scripts expect, and
no Python library reproduces its column-block rules). On a terminal the header is bold via rich; otherwise
the output is plain text with no escape codes at all. Pure except for :class:`Printer`, which writes.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import datetime
from typing import Any, TextIO

import yaml
from rich.console import Console
from rich.text import Text

from corral.api.printing import column_definitions, row_cells
from corral.api.resources import ResourceType
from corral.cli.session import object_name

JSON = dict[str, Any]

GET_MIN_WIDTH, GET_PADDING = 6, 3  # kubectl's printers.GetNewTabWriter
DESCRIBE_MIN_WIDTH, DESCRIBE_PADDING = 0, 2  # kubectl describe's tabbedString


# --- Alignment -----------------------------------------------------------------------------------------


def tabwrite(lines: list[str], *, minwidth: int, padding: int) -> list[str]:
    """Align tab-separated ``lines`` as Go's ``tabwriter`` (pad char ' ', no flags) does.

    A cell is tab-terminated text; the text after a line's last tab is not part of any column. A column
    block is a run of consecutive lines that all have a tab-terminated cell in that column, and its width is
    the widest such cell plus ``padding`` (at least ``minwidth``).
    """
    rows = [line.split("\t") for line in lines]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(line0: int, line1: int) -> None:
        for cells in rows[line0:line1]:
            out.append(
                "".join(cell.ljust(widths[j]) if j < len(widths) else cell for j, cell in enumerate(cells))
            )

    def format_block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(rows[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(rows[this]) - 1:
                width = max(width, len(rows[this][column]) + padding)
                this += 1
            widths.append(width)
            format_block(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    format_block(0, len(rows))
    return out


class TableLayout:
    """Column widths for a table printed in pieces (``get -w``): widths only grow, so rows stay aligned."""

    def __init__(self, minwidth: int = GET_MIN_WIDTH, padding: int = GET_PADDING) -> None:
        self.minwidth = minwidth
        self.padding = padding
        self.widths: list[int] = []

    def render(self, rows: list[list[str]]) -> list[str]:
        for cells in rows:
            for j, cell in enumerate(cells[:-1]):
                wanted = max(self.minwidth, len(cell) + self.padding)
                if j >= len(self.widths):
                    self.widths.append(wanted)
                elif wanted > self.widths[j]:
                    self.widths[j] = wanted
        return [
            "".join(
                cell.ljust(self.widths[j]) if j < len(cells) - 1 else cell for j, cell in enumerate(cells)
            )
            for cells in rows
        ]


# --- Table rows of objects -----------------------------------------------------------------------------


def _cell_text(cell: Any) -> str:
    """kubectl's ``printTable``: a string cell stops at its first line break, marked by ``...``."""
    text = cell if isinstance(cell, str) else str(cell)
    for i, char in enumerate(text):
        if char in "\f\n\r":
            return text[:i] + "..."
    return text


def _visible(rt: ResourceType, wide: bool) -> list[int]:
    return [i for i, col in enumerate(column_definitions(rt.kind)) if wide or not col.get("priority")]


def header_cells(rt: ResourceType, *, wide: bool, with_namespace: bool) -> list[str]:
    columns = column_definitions(rt.kind)
    names = [str(columns[i]["name"]).upper() for i in _visible(rt, wide)]
    return (["NAMESPACE"] if with_namespace and rt.namespaced else []) + names


def object_cells(
    rt: ResourceType, obj: JSON, now: datetime, *, wide: bool, with_namespace: bool, with_kind: bool
) -> list[str]:
    """One table row; ``with_kind`` prefixes the name (``deployment.apps/hello``) as kubectl does when a
    command shows several kinds."""
    cells = row_cells(obj, now, kind=rt.kind, api_version=rt.api_version)
    shown = [_cell_text(cells[i]) if i < len(cells) else "" for i in _visible(rt, wide)]
    if with_kind and shown:
        shown[0] = object_name(rt, shown[0])
    if with_namespace and rt.namespaced:
        shown.insert(0, str((obj.get("metadata") or {}).get("namespace", "")))
    return shown


# --- Whole-object renderings ---------------------------------------------------------------------------


def for_output(rt: ResourceType, obj: JSON) -> JSON:
    """The object as ``-o yaml/json`` shows it: kind and apiVersion set, managedFields hidden (as kubectl
    does by default). Never changes ``obj``."""
    out = {"apiVersion": rt.api_version, "kind": rt.kind, **copy.deepcopy(obj)}
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return out


def as_list(items: list[JSON]) -> JSON:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


class _Dumper(yaml.SafeDumper):
    """Quotes strings that need it with double quotes (``resourceVersion: "12"``), as kubectl's YAML does."""

    def choose_scalar_style(self) -> str:
        style: str = super().choose_scalar_style()
        return '"' if style == "'" else style


def to_yaml(doc: Any) -> str:
    return yaml.dump(
        doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1 << 30
    )


def to_json(doc: Any) -> str:
    return json.dumps(doc, indent=4, ensure_ascii=False) + "\n"


# --- Writers -------------------------------------------------------------------------------------------


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_console(stream: TextIO) -> Console:
    """A rich console for ``stream``: colours only on a terminal, never wrapping or highlighting."""
    tty = _is_tty(stream)
    return Console(
        file=stream,
        highlight=False,
        soft_wrap=True,
        markup=False,
        emoji=False,
        color_system="auto" if tty else None,
        force_terminal=tty,
    )


class Printer:
    """Writes lines to stdout (bold headers on a terminal) and error lines to stderr (red on a terminal)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._out_console = make_console(self.out) if _is_tty(self.out) else None
        self._err_console = make_console(self.err) if _is_tty(self.err) else None

    def line(self, text: str = "", *, style: str | None = None) -> None:
        if self._out_console is not None and style:
            self._out_console.print(Text(text, style=style))
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def header(self, text: str) -> None:
        self.line(text, style="bold")

    def text(self, text: str) -> None:
        """Write a block as-is (YAML/JSON documents)."""
        self.out.write(text)
        self.out.flush()

    def error(self, text: str) -> None:
        if self._err_console is not None:
            self._err_console.print(Text(text, style="red"))
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def note(self, text: str) -> None:
        """An informational line on stderr (``No resources found ...``), as kubectl prints it."""
        self.err.write(text + "\n")
        self.err.flush()
