"""Patch engines for the four PATCH content types the Kubernetes API accepts.

| content type                              | module        | entry point                     |
|-------------------------------------------|---------------|---------------------------------|
| ``application/merge-patch+json``          | ``merge``     | :func:`apply_merge_patch`       |
| ``application/json-patch+json``           | ``jsonpatch`` | :func:`apply_json_patch`        |
| ``application/strategic-merge-patch+json``| ``strategic`` | :func:`apply_strategic_merge_patch` |
| ``application/apply-patch+yaml``          | ``apply``     | :func:`apply_patch`             |

Boundary: pure functions over JSON values (dicts, lists, str, int, float, bool, None). They never mutate
their inputs and return new objects. Malformed patches raise :class:`PatchError`; mapping it to an HTTP
status (Kubernetes answers 400/422/500 depending on the case) is the apiserver's job. Parsing request bodies,
validation and defaulting of the result happen outside this package.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "PatchError",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_patch",
    "apply_strategic_merge_patch",
    "create_merge_patch",
    "deep_copy_json",
    "json_equal",
    "json_type_name",
]


class PatchError(ValueError):
    """A patch that cannot be applied: malformed, a failed JSON-patch ``test``, a missing path…

    ``operation`` is the index of the failing JSON-patch operation, when there is one.
    """

    def __init__(self, message: str, *, operation: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation


def deep_copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (much faster than :func:`copy.deepcopy` for this shape of data)."""
    if isinstance(value, dict):
        return {k: deep_copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy_json(v) for v in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: like ``==`` but ``true`` is not ``1`` and ``1`` equals ``1.0`` (both are numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        if not isinstance(b, dict) or len(a) != len(b):
            return False
        return all(k in b and json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return False
        return all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def json_type_name(value: Any) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# Re-exported entry points (imported last: the engines import PatchError from here).
from corral.apiserver.patch.apply import apply_patch  # noqa: E402
from corral.apiserver.patch.jsonpatch import apply_json_patch  # noqa: E402
from corral.apiserver.patch.merge import apply_merge_patch, create_merge_patch  # noqa: E402
from corral.apiserver.patch.strategic import apply_strategic_merge_patch  # noqa: E402
