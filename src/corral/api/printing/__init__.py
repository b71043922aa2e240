"""Server-side Table printing: the ``meta.k8s.io/v1`` Table bodies ``kubectl get`` asks for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever columns and
cells the server returns, so the columns and cell strings here follow the real API server's printers
(``pkg/printers/internalversion/printers.go``, Kubernetes 1.32) and its Table assembly
(``TableGenerator.GenerateTable`` with ``Wide: true``; ``asTable`` in the endpoint handlers).

Boundary: pure functions of ``(objects, now)``; no IO, no clock reads. Objects are plain JSON dicts and are
never mutated; the returned Table shares metadata dicts with them, so serialise it before changing them.

- :func:`column_definitions` — the ``columnDefinitions`` for a kind.
- :func:`row_cells` — the ``cells`` of one object's row.
- :func:`to_table` — the whole Table body for a list, a single object, or one watch event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from corral.api.printing.columns import columns_for
from corral.api.printing.rows import Cell, new_context, pod_row_conditions, printer_for

__all__ = ["Cell", "IncludeObject", "column_definitions", "row_cells", "to_table"]

IncludeObject = Literal["None", "Metadata", "Object"]
"""The ``includeObject`` query parameter: what each row's ``object`` carries."""

_INCLUDE_VALUES = ("None", "Metadata", "Object")


def column_definitions(kind: str) -> list[dict[str, Any]]:
    """The TableColumnDefinitions for ``kind`` (``Name`` + ``Age`` for kinds without a printer)."""
    return [dict(col) for col in columns_for(kind)]


def row_cells(
    obj: Mapping[str, Any], now: datetime, *, kind: str | None = None, api_version: str | None = None
) -> list[Cell]:
    """The cells of ``obj``'s row, one per column of ``column_definitions(kind)``.

    ``kind`` and ``api_version`` default to the object's own ``kind``/``apiVersion`` (list items may omit
    them); the version only matters for HorizontalPodAutoscalers, whose v1 and v2 shapes differ.
    """
    data = obj if isinstance(obj, dict) else dict(obj)
    printer = printer_for(kind if kind is not None else str(data.get("kind") or ""))
    return printer(data, new_context(now), api_version or "")


def _metadata_row_object(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta if isinstance(meta, dict) else {},
    }


def _full_row_object(obj: dict[str, Any], kind: str, api_version: str | None) -> dict[str, Any]:
    # Upstream converts each row's object to the request's version, which sets kind and apiVersion;
    # stored list items may lack them, so fill them in on a shallow copy.
    if obj.get("kind") and (obj.get("apiVersion") or not api_version):
        return obj
    out = dict(obj)
    out["kind"] = obj.get("kind") or kind
    if api_version and not obj.get("apiVersion"):
        out["apiVersion"] = api_version
    return out


def to_table(
    kind: str,
    objects: list[dict[str, Any]],
    now: datetime,
    *,
    list_resource_version: str,
    continue_token: str | None = None,
    include_object: str = "Metadata",
    include_column_definitions: bool = True,
    api_version: str | None = None,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objects`` (all of ``kind``), as the API server encodes it.

    ``list_resource_version`` becomes ``metadata.resourceVersion`` (for a single object or a watch event,
    pass that object's resourceVersion, as upstream does); ``continue`` appears only when non-empty.
    ``include_object`` is the request's ``includeObject``: ``Metadata`` (default) gives each row a
    ``PartialObjectMetadata`` with the full metadata, ``Object`` the full object, ``None`` a null object.
    ``include_column_definitions=False`` is upstream's ``NoHeaders``, used for every watch event after the
    first: ``columnDefinitions`` is then ``null`` (Go's nil slice), not ``[]``.

    Raises ``ValueError`` for an unknown ``include_object`` (upstream answers 400 Bad Request).
    """
    if include_object not in _INCLUDE_VALUES:
        raise ValueError(f'unrecognized includeObject value: "{include_object}"')
    printer = printer_for(kind)
    ctx = new_context(now)
    version = api_version or ""
    is_pod = kind == "Pod"
    rows: list[dict[str, Any]] = []
    append = rows.append
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, ctx, version)}
        if is_pod:
            conditions = pod_row_conditions(obj)
            if conditions is not None:
                row["conditions"] = conditions
        if include_object == "Metadata":
            row["object"] = _metadata_row_object(obj)
        elif include_object == "Object":
            row["object"] = _full_row_object(obj, kind, api_version)
        else:
            row["object"] = None
        append(row)
    metadata: dict[str, Any] = {}
    if list_resource_version:  # ListMeta fields are omitempty
        metadata["resourceVersion"] = list_resource_version
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(kind) if include_column_definitions else None,
        "rows": rows,
    }
