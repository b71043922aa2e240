"""RFC 7386 JSON merge patch (``application/merge-patch+json``), and the inverse: building one.

Sent by ``kubectl label``, ``annotate``, ``scale`` and ``patch --type=merge``. Objects merge key by key,
``null`` deletes a key, everything else (lists included) replaces.

Hand-written on purpose: the algorithm is a dozen lines, and no merge-patch library is among our
dependencies (we do not add one for this).
"""

from __future__ import annotations

from typing import Any

from corral.apiserver.patch import deep_copy_json as _copy
from corral.apiserver.patch import json_equal

__all__ = ["apply_merge_patch", "create_merge_patch"]


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """Apply ``patch`` to ``target`` (RFC 7386 §2). Returns a new value; inputs are not changed.

    A non-object patch replaces the target. Nulls nested in a patch never reach the result.
    """
    if not isinstance(patch, dict):
        return _without_nulls(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = apply_merge_patch(result.get(key), value)
        else:
            result[key] = _without_nulls(value)
    # Values carried over from target are shared with it; copy them so the result is independent.
    for key in result.keys() - patch.keys():
        result[key] = _copy(result[key])
    return result


def create_merge_patch(original: Any, modified: Any) -> Any:
    """A merge patch that turns ``original`` into ``modified``.

    Exact whenever ``modified`` holds no ``null`` inside objects (a merge patch cannot set a key to null).
    """
    if not isinstance(original, dict) or not isinstance(modified, dict):
        return _copy(modified)
    patch: dict[str, Any] = {}
    for key in original:
        if key not in modified:
            patch[key] = None
    for key, new in modified.items():
        if key not in original:
            patch[key] = _copy(new)
            continue
        old = original[key]
        if isinstance(old, dict) and isinstance(new, dict):
            sub = create_merge_patch(old, new)
            if sub:
                patch[key] = sub
        elif not json_equal(old, new):
            patch[key] = _copy(new)
    return patch


def _without_nulls(value: Any) -> Any:
    # RFC 7386: a patch value that is an object is merged into "{}", which drops its null members.
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
