"""Kubernetes strategic merge patch (``application/strategic-merge-patch+json``).

The default patch type of ``kubectl patch``, client-side ``kubectl apply``, ``set image``,
``rollout restart``, ``cordon`` and the Python client's dict bodies. It is a JSON merge patch whose list
handling is steered by the schema of the patched kind:

* a list whose field has ``x-kubernetes-patch-strategy: merge`` and a ``x-kubernetes-patch-merge-key`` merges
  element-wise by that key (containers/env/volumes by ``name``, container ports by ``containerPort``,
  service ports by ``port``, conditions by ``type``…); a merge list of primitives is a set union
  (``finalizers``); any other list is replaced;
* ``null`` deletes a key; maps (``labels``, ``annotations``, ``data``) merge key by key;
* directives: ``$patch: replace|delete|merge`` (in maps and in list elements), ``$setElementOrder/<list>``,
  ``$deleteFromPrimitiveList/<list>`` and ``$retainKeys``. Directives are always interpreted and never end up
  in the result;
* where the schema knows nothing (unknown or opaque subtree) the patch falls back to JSON-merge semantics.

The algorithm follows apimachinery's ``pkg/util/strategicpatch`` (``mergeMap``/``mergeSlice`` with
``MergeParallelList`` and ``IgnoreUnmatchedNulls``), including its element order rules: items named in the
patch keep the patch's relative order, server-only items keep theirs, and the two interleave by the live
order; ``$setElementOrder`` takes precedence over both. Deliberate differences, all on malformed or unusual
input: ``$patch: merge`` is accepted as the explicit default (upstream rejects it in lists), values added
under a key the target lacks have their directives interpreted rather than dropped or copied, and live
list items without the merge key are tolerated instead of failing the whole patch.

Hand-written on purpose: no maintained Python library implements strategic merge patch; it only exists in
Go inside apimachinery, driven by Go struct tags or OpenAPI, which here is :mod:`corral.api.schema`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from typing import Any

from corral.api.schema import SchemaNode
from corral.apiserver.patch import PatchError, deep_copy_json, json_type_name

__all__ = ["apply_strategic_merge_patch"]

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
SET_ELEMENT_ORDER = "$setElementOrder"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"

_DROP = object()  # a fresh value that must not be stored at all (a map carrying `$patch: delete`)
_MISSING = object()


def apply_strategic_merge_patch(target: Any, patch: Any, node: SchemaNode | None) -> dict[str, Any]:
    """Apply a strategic merge patch to ``target`` (an object of the kind ``node`` describes).

    ``node`` is the :class:`SchemaNode` of the kind, for instance
    ``schema_index().node("io.k8s.api.apps.v1.Deployment")``; ``None`` means no schema, i.e. JSON-merge
    semantics plus directives. Returns a new object; raises :class:`PatchError` for malformed patches.
    """
    if not isinstance(patch, dict):
        raise PatchError(f"a strategic merge patch must be a JSON object, got {json_type_name(patch)}")
    original = deep_copy_json(target) if isinstance(target, dict) else {}
    return _merge_map(original, deep_copy_json(patch), node)


# --- maps ---------------------------------------------------------------------------------------------


def _merge_map(original: dict[str, Any], patch: dict[str, Any], node: SchemaNode | None) -> dict[str, Any]:
    """Merge ``patch`` into ``original``. Both are private copies: this function may change them."""
    if DIRECTIVE in patch:
        directive = patch.pop(DIRECTIVE)
        if directive == "replace":
            return _merge_map({}, patch, node)
        if directive == "delete":
            return {}
        if directive != "merge":
            raise PatchError(f"unknown patch directive {DIRECTIVE}: {json.dumps(directive)} in a map")

    if RETAIN_KEYS in patch:
        _apply_retain_keys(original, patch)

    _apply_set_element_order(original, patch, node)

    delete_lists: list[tuple[str, Any]] = []
    for key, value in patch.items():
        if key.startswith(DELETE_FROM_PRIMITIVE_LIST):
            delete_lists.append((_directive_field(key, DELETE_FROM_PRIMITIVE_LIST), value))
            continue
        child = node.child(key) if node is not None else None
        if value is None:
            original.pop(key, None)
            continue
        current = original.get(key, _MISSING)
        if current is _MISSING or _shape(current) != _shape(value):
            fresh = _fresh(value, child)
            if fresh is _DROP:
                original.pop(key, None)
            else:
                original[key] = fresh
        elif isinstance(value, dict):
            if child is not None and "replace" in child.patch_strategy:
                original[key] = _merge_map({}, value, child)
            else:
                original[key] = _merge_map(current, value, child)
        elif isinstance(value, list):
            original[key] = _merge_list(current, value, child)
        else:
            original[key] = value

    for field, value in delete_lists:
        _apply_delete_from_primitive_list(original, field, value)
    return original


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "list"
    return "scalar"


def _directive_field(key: str, prefix: str) -> str:
    head, sep, field = key.partition("/")
    if head != prefix or not sep or not field:
        raise PatchError(f'invalid directive key "{key}": expected "{prefix}/<field>"')
    return field


def _fresh(value: Any, node: SchemaNode | None) -> Any:
    """The value to store under a key the original lacks (or holds with another shape)."""
    if isinstance(value, dict):
        if value.get(DIRECTIVE) == "delete":
            return _DROP
        return _merge_map({}, value, node)
    if isinstance(value, list):
        return _merge_list([], value, node)
    return value


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    keys = patch.pop(RETAIN_KEYS)
    if not isinstance(keys, list):
        raise PatchError(f"{RETAIN_KEYS} must be a list of field names, got {json_type_name(keys)}")
    retained = {k for k in keys if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in retained:
            raise PatchError(f'{RETAIN_KEYS} does not list "{key}", which the patch sets')
    for key in [k for k in original if k not in retained]:
        del original[key]


def _apply_delete_from_primitive_list(original: dict[str, Any], field: str, value: Any) -> None:
    if value is None:
        original.pop(field, None)  # as upstream: a null deletion list clears the field
        return
    current = original.get(field)
    if not isinstance(current, list) or not isinstance(value, list):
        return  # nothing to delete from (upstream skips mismatched shapes too)
    for item in (*current, *value):
        if isinstance(item, dict | list):
            raise PatchError(f"{DELETE_FROM_PRIMITIVE_LIST}/{field} only applies to lists of primitives")
    doomed = {_hashable(v) for v in value}
    original[field] = [v for v in current if _hashable(v) not in doomed]


# --- lists --------------------------------------------------------------------------------------------


def _merge_list(original: list[Any], patch: list[Any], node: SchemaNode | None) -> list[Any]:
    """Merge ``patch`` into ``original`` following the field's patch strategy. May change both."""
    return _merge_list_with_view(original, patch, node)[0]


def _merge_list_with_view(
    original: list[Any], patch: list[Any], node: SchemaNode | None
) -> tuple[list[Any], list[Any]]:
    """The merged list, and the live list as apimachinery's caller observes it afterwards (see
    :func:`_merge_keyed_list`); ``$setElementOrder`` uses the latter as the live order."""
    items = node.items() if node is not None else None
    if node is None or "merge" not in node.patch_strategy:
        return _replace_list(patch, items), original
    if not original and not patch:
        return [], original
    kind = _element_kind(original, patch)
    if kind == "scalar":
        return _merge_scalar_list(original, patch), original
    merge_key = node.patch_merge_key
    if not merge_key:
        raise PatchError("cannot merge a list of objects without a merge key")
    return _merge_keyed_list(original, patch, merge_key, items)


def _replace_list(patch: list[Any], items: SchemaNode | None) -> list[Any]:
    out: list[Any] = []
    for element in patch:
        if isinstance(element, dict):
            fresh = _fresh(element, items)
            if fresh is not _DROP:
                out.append(fresh)
        elif isinstance(element, list):
            out.append(_replace_list(element, None))
        else:
            out.append(element)
    return out


def _element_kind(*lists: list[Any]) -> str:
    kinds = {_shape(v) for values in lists for v in values}
    if "list" in kinds:
        raise PatchError("lists of lists cannot be merged")
    if len(kinds) > 1:
        raise PatchError("cannot merge a list whose elements are not all objects or all primitives")
    return kinds.pop() if kinds else "scalar"


def _merge_scalar_list(original: list[Any], patch: list[Any]) -> list[Any]:
    merged: list[Any] = []
    seen: set[Hashable] = set()
    for value in (*original, *patch):
        key = _hashable(value)
        if key not in seen:
            seen.add(key)
            merged.append(value)
    return _order_like_upstream(merged, patch, original, _hashable)


def _merge_keyed_list(
    original: list[Any], patch: list[Any], merge_key: str, items: SchemaNode | None
) -> tuple[list[Any], list[Any]]:
    def identity(element: Any) -> Hashable:
        if isinstance(element, dict) and merge_key in element:
            return _hashable(element[merge_key])
        return (id(element),)  # never equal to anything else

    # `backing` mirrors the Go slice apimachinery edits in place: deleting shifts the tail left, and
    # appending a new item writes into the slot freed at the end while the length is below the original
    # one. Its caller then reads the live list through the old slice header, so for `$setElementOrder`
    # the live order is this edited array. Emulating it keeps the resulting element order identical.
    backing = list(original)
    length = len(backing)
    plain: list[dict[str, Any]] = []
    replace = False
    for element in patch:
        directive = element.get(DIRECTIVE, _MISSING)
        if directive is _MISSING:
            plain.append(element)
        elif directive == "delete":
            if merge_key not in element:
                raise PatchError(
                    f'an element with "{DIRECTIVE}: delete" must set the merge key "{merge_key}"'
                )
            doomed = identity(element)
            k = 0
            while k < length:
                if identity(backing[k]) == doomed:
                    backing[k : length - 1] = backing[k + 1 : length]
                    length -= 1
                else:
                    k += 1
        elif directive == "replace":
            replace = True  # keep scanning: the other directive elements must be dropped too
        elif directive == "merge":
            del element[DIRECTIVE]
            plain.append(element)
        else:
            raise PatchError(
                f"unknown patch directive {DIRECTIVE}: {json.dumps(directive)} in a list element"
            )
    if replace:
        return [_merge_map({}, element, items) for element in plain], backing

    survivors = backing[:length]
    merged = list(survivors)
    positions: dict[Hashable, int] = {}
    for index, element in enumerate(merged):
        positions.setdefault(identity(element), index)
    for element in plain:
        if merge_key not in element:
            raise PatchError(
                f"an element of the patch list does not contain the declared merge key "
                f'"{merge_key}": {_short(element)}'
            )
        key = identity(element)
        at = positions.get(key)
        if at is None:
            new = _merge_map({}, element, items)
            if len(merged) < len(backing):
                backing[len(merged)] = new
            positions[key] = len(merged)
            merged.append(new)
        else:
            merged[at] = _merge_map(merged[at], element, items)
    return _order_like_upstream(merged, plain, survivors, identity), backing


def _order_like_upstream(
    merged: list[Any], patch: list[Any], server: list[Any], identity: Callable[[Any], Hashable]
) -> list[Any]:
    """apimachinery's ``normalizeElementOrder``: patch items in patch order, server-only items in live
    order, interleaved by their positions in the live list (``mergeSortedSlice``)."""
    in_patch: dict[Hashable, int] = {}
    for index, element in enumerate(patch):
        in_patch.setdefault(identity(element), index)
    patch_items = sorted((e for e in merged if identity(e) in in_patch), key=lambda e: in_patch[identity(e)])
    server_only = [e for e in merged if identity(e) not in in_patch]
    server_pos: dict[Hashable, int] = {}
    for index, element in enumerate(server):
        server_pos.setdefault(identity(element), index)
    server_only.sort(key=lambda e: server_pos.get(identity(e), len(server)))
    return _merge_sorted(server_only, patch_items, server_pos, identity)


def _merge_sorted(
    left: list[Any], right: list[Any], server_pos: dict[Hashable, int], identity: Callable[[Any], Hashable]
) -> list[Any]:
    # A server-only item (left) goes first only when both it and the next patch item (right) are in the
    # live list and it comes earlier there; otherwise the patch item goes first.
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = server_pos.get(identity(left[i]))
            ri = server_pos.get(identity(right[j]))
            if li is not None and ri is not None and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


# --- $setElementOrder ---------------------------------------------------------------------------------


def _apply_set_element_order(
    original: dict[str, Any], patch: dict[str, Any], node: SchemaNode | None
) -> None:
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        field = _directive_field(key, SET_ELEMENT_ORDER)
        if not isinstance(order, list):
            raise PatchError(f"{key} must be a list, got {json_type_name(order)}")
        child = node.child(field) if node is not None else None
        merge_key = child.patch_merge_key if child is not None else None

        found_original = field in original
        found_patch = field in patch
        current = original.get(field)
        patch_list = patch.get(field)
        if found_original and not isinstance(current, list):
            raise PatchError(f'{key}: the target "{field}" is a {json_type_name(current)}, not a list')
        if found_patch and not isinstance(patch_list, list):
            raise PatchError(f'{key}: the patch "{field}" is a {json_type_name(patch_list)}, not a list')

        identity = _identity_for(merge_key)
        if isinstance(patch_list, list):
            _check_order(patch_list, order, merge_key, key)

        server: list[Any] = current if isinstance(current, list) else []
        if isinstance(current, list) and isinstance(patch_list, list):
            merged, server = _merge_list_with_view(current, patch_list, child)
        elif isinstance(current, list):
            merged = current
        elif isinstance(patch_list, list):
            merged = _merge_list([], patch_list, child)
        else:
            continue

        wanted: dict[Hashable, int] = {}
        for index, element in enumerate(order):
            wanted.setdefault(identity(element), index)
        patch_items = sorted((e for e in merged if identity(e) in wanted), key=lambda e: wanted[identity(e)])
        server_pos: dict[Hashable, int] = {}
        for index, element in enumerate(server):
            server_pos.setdefault(identity(element), index)
        server_only = [e for e in merged if identity(e) not in wanted]
        server_only.sort(key=lambda e: server_pos.get(identity(e), len(server)))
        original[field] = _merge_sorted(server_only, patch_items, server_pos, identity)
        patch.pop(field, None)


def _identity_for(merge_key: str | None) -> Callable[[Any], Hashable]:
    if merge_key is None:
        return _hashable

    def identity(element: Any) -> Hashable:
        if isinstance(element, dict) and merge_key in element:
            return _hashable(element[merge_key])
        return (id(element),)

    return identity


def _check_order(patch_list: list[Any], order: list[Any], merge_key: str | None, key: str) -> None:
    """Upstream ``validatePatchWithSetOrderList``: the patch list must follow the order list."""
    if not patch_list or not order:
        return
    items = [e for e in patch_list if not (isinstance(e, dict) and DIRECTIVE in e)]

    def same(a: Any, b: Any) -> bool:
        if merge_key is None:
            return _hashable(a) == _hashable(b)
        for element in (a, b):
            if not isinstance(element, dict) or merge_key not in element:
                raise PatchError(f'{key}: {_short(element)} does not contain the merge key "{merge_key}"')
        return _hashable(a[merge_key]) == _hashable(b[merge_key])

    p = o = 0
    while p < len(items) and o < len(order):
        if same(items[p], order[o]):
            p += 1
        o += 1
    if p < len(items):
        raise PatchError(
            f"the order in the patch list {_short(patch_list)} doesn't match {key} {_short(order)}"
        )


# --- helpers ------------------------------------------------------------------------------------------


def _hashable(value: Any) -> Hashable:
    """A hashable identity with JSON equality: ``1`` equals ``1.0`` but not ``true``."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if value is None:
        return ("null",)
    return ("json", json.dumps(value, sort_keys=True, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
