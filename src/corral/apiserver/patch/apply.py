"""Server-side apply (``application/apply-patch+yaml``) without managed-fields tracking.

Sent by ``kubectl apply --server-side`` and by the Python client with
``_content_type="application/apply-patch+yaml"``. When the object does not exist the applied configuration
becomes the object. Otherwise the applied configuration is merged into the live object following the
structural schema, the way structured-merge-diff merges two typed values:

* maps and structs merge field by field (``x-kubernetes-map-type: atomic`` ones are replaced whole);
* lists with ``x-kubernetes-list-type: map`` merge element-wise by their ``x-kubernetes-list-map-keys``
  (recursively); ``set`` lists are unioned; ``atomic`` lists, and lists the schema says nothing about, are
  replaced;
* ``null`` in the applied configuration removes the field; where the schema knows nothing, maps merge and
  everything else is replaced.

Limitation, by design for now: there is no ``metadata.managedFields`` bookkeeping, so there is no notion of
field ownership. Consequently nothing is ever *removed by omission*: a field (or list item) that an earlier
apply set and the new applied configuration leaves out stays in the object, where real Kubernetes would
remove it when the same manager owned it alone. There are also never conflicts (no 409), so ``force`` is
moot.

Hand-written on purpose: structured-merge-diff only exists in Go; the merge half is small once the schema
(:mod:`corral.api.schema`) provides list types and keys.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from corral.api.schema import SchemaNode
from corral.apiserver.patch import PatchError, deep_copy_json, json_type_name

__all__ = ["LIST_MAP_KEY_DEFAULTS", "apply_patch"]

# Defaults of list-map key fields that clients usually omit. The real apiserver defaults the applied object
# before merging (from the OpenAPI `default`s, which our JSON schemas lack), so `{"containerPort": 80}` and
# the live `{"containerPort": 80, "protocol": "TCP"}` are the same item. Keys not listed default to null.
LIST_MAP_KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


def apply_patch(live: dict[str, Any] | None, applied: Any, node: SchemaNode | None) -> dict[str, Any]:
    """The object after applying ``applied`` to ``live`` (``None`` when the object does not exist yet).

    Returns a new object; never mutates its inputs. Raises :class:`PatchError` when ``applied`` is not an
    object.
    """
    if not isinstance(applied, dict):
        raise PatchError(f"an apply configuration must be a JSON object, got {json_type_name(applied)}")
    if live is None:
        return {k: _without_nulls(v) for k, v in applied.items() if v is not None}
    return _merge_object(live, applied, node)


def _merge_object(live: dict[str, Any], applied: dict[str, Any], node: SchemaNode | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in live.items():
        if key not in applied:
            out[key] = deep_copy_json(value)
            continue
        new = applied[key]
        if new is None:
            continue  # explicit null: the field goes away
        out[key] = _merge(value, new, node.child(key) if node is not None else None)
    for key, new in applied.items():
        if key not in live and new is not None:
            out[key] = _without_nulls(new)
    return out


def _merge(live: Any, applied: Any, node: SchemaNode | None) -> Any:
    if isinstance(applied, dict):
        if not isinstance(live, dict) or (node is not None and node.map_type == "atomic"):
            return _without_nulls(applied)
        return _merge_object(live, applied, node)
    if isinstance(applied, list):
        if not isinstance(live, list) or node is None:
            return _without_nulls(applied)
        list_type, keys = _list_semantics(node)
        if list_type == "map":
            return _merge_map_list(live, applied, node, keys)
        if list_type == "set":
            return _merge_set(live, applied)
        return _without_nulls(applied)
    return applied


def _list_semantics(node: SchemaNode) -> tuple[str, tuple[str, ...]]:
    """``(list type, map keys)``. Without ``x-kubernetes-list-type`` the strategic-merge tags decide, as in
    kube-openapi's conversion for structured-merge-diff; the default is atomic."""
    list_type = node.list_type
    if list_type == "map":
        keys = node.list_map_keys or ((node.patch_merge_key,) if node.patch_merge_key else ())
        return ("map", keys) if keys else ("atomic", ())
    if list_type is not None:
        return list_type, ()
    if "merge" in node.patch_strategy:
        merge_key = node.patch_merge_key
        return ("map", (merge_key,)) if merge_key else ("set", ())
    return "atomic", ()


def _merge_map_list(
    live: list[Any], applied: list[Any], node: SchemaNode, keys: tuple[str, ...]
) -> list[Any]:
    items = node.items()

    def identity(element: Any) -> Hashable:
        if not isinstance(element, dict):
            raise PatchError(f"an element of a keyed list must be an object, got {json_type_name(element)}")
        return tuple(_hashable(element.get(k, LIST_MAP_KEY_DEFAULTS.get(k))) for k in keys)

    applied_by_key: dict[Hashable, Any] = {}
    for element in applied:
        key = identity(element)
        if key in applied_by_key:
            raise PatchError(f"duplicate entries for key {_describe(keys, element)} in the applied list")
        applied_by_key[key] = element
    live_keys = [identity(element) if isinstance(element, dict) else None for element in live]
    live_by_key: dict[Hashable, Any] = {}
    for key, element in zip(live_keys, live, strict=True):
        if key is not None:
            live_by_key.setdefault(key, element)

    def merged_item(key: Hashable) -> Any:
        if key in applied_by_key:
            new = applied_by_key[key]
            old = live_by_key.get(key)
            return _merge(old, new, items) if old is not None else _without_nulls(new)
        return deep_copy_json(live_by_key[key])

    return _interleave(live, live_keys, [identity(e) for e in applied], merged_item)


def _merge_set(live: list[Any], applied: list[Any]) -> list[Any]:
    live_keys: list[Hashable | None] = [_hashable(v) for v in live]
    applied_keys = [_hashable(v) for v in applied]
    values: dict[Hashable, Any] = {}
    for key, value in zip(live_keys, live, strict=True):
        values.setdefault(key, value)
    for key, value in zip(applied_keys, applied, strict=True):
        values.setdefault(key, value)
    unique_applied = list(dict.fromkeys(applied_keys))
    return _interleave(live, live_keys, unique_applied, lambda k: deep_copy_json(values[k]))


def _interleave(
    live: list[Any],
    live_keys: list[Hashable | None],
    applied_keys: list[Hashable],
    make: Callable[[Hashable], Any],
) -> list[Any]:
    """structured-merge-diff's list order (``visitListItems``): live-only items keep their place, applied
    items come in the applied order, and items in both are placed by the applied order.

    ``live_keys[i]`` is ``None`` for live elements that have no identity (kept where they are).
    ``make(key)`` builds the result element of an applied key (merged with its live twin, if any).
    """
    applied_set = set(applied_keys)
    live_set = {k for k in live_keys if k is not None}
    shared = deque(k for k in applied_keys if k in live_set)
    next_shared: Hashable | None = shared.popleft() if shared else None
    merged: set[Hashable] = set()
    out: list[Any] = []
    li = ri = 0
    while li < len(live) or ri < len(applied_keys):
        if li < len(live) and ri < len(applied_keys):
            lkey = live_keys[li]
            if lkey is not None and lkey == applied_keys[ri]:
                merged.add(lkey)
                out.append(make(lkey))
                li += 1
                ri += 1
                next_shared = shared.popleft() if shared else None
                continue
            if lkey in applied_set and next_shared is not None and next_shared != lkey:
                li += 1  # a shared item whose turn comes later, in the applied order
                continue
        if li < len(live):
            lkey = live_keys[li]
            if lkey is None or lkey not in applied_set:
                out.append(deep_copy_json(live[li]))
                li += 1
                continue
            if lkey in merged:
                li += 1
                continue
        if ri < len(applied_keys):
            rkey = applied_keys[ri]
            merged.add(rkey)
            out.append(make(rkey))
            ri += 1
            if next_shared is not None and next_shared == rkey:
                next_shared = shared.popleft() if shared else None
    return out


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _hashable(value: Any) -> Hashable:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if value is None:
        return ("null",)
    return ("json", json.dumps(value, sort_keys=True, default=str))


def _describe(keys: tuple[str, ...], element: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(element.get(k), default=str)}" for k in keys)
