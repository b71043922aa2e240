"""RFC 6902 JSON patch (``application/json-patch+json``) with RFC 6901 JSON pointers.

Sent by ``kubectl rollout undo``, ``kubectl patch --type=json`` and the Python client for list bodies.
Operations ``add``, ``remove``, ``replace``, ``move``, ``copy`` and ``test`` run in order against a private
copy of the document; the first failure raises :class:`PatchError` naming the operation's index, and the
input is left untouched (a patch applies entirely or not at all).

Hand-written on purpose: the ``jsonpatch`` package is not among our dependencies, and the whole RFC fits in
this file with error messages we control.
"""

from __future__ import annotations

import re
from typing import Any

from corral.apiserver.patch import PatchError, deep_copy_json, json_equal, json_type_name

__all__ = ["DEFAULT_MAX_OPERATIONS", "apply_json_patch", "escape_pointer_token", "parse_pointer"]

# The Kubernetes apiserver refuses JSON patches with more operations than this (maxJSONPatchOperations).
DEFAULT_MAX_OPERATIONS = 10000

_BAD_ESCAPE = re.compile(r"~(?![01])")
_INDEX = re.compile(r"0|[1-9][0-9]*")
_OPS = frozenset(("add", "remove", "replace", "move", "copy", "test"))


def escape_pointer_token(token: str) -> str:
    """Escape one reference token for use in a JSON pointer (``~`` → ``~0``, ``/`` → ``~1``)."""
    return token.replace("~", "~0").replace("/", "~1")


def parse_pointer(pointer: Any) -> list[str]:
    """Split a JSON pointer into unescaped reference tokens; ``""`` is the whole document."""
    if not isinstance(pointer, str):
        raise PatchError(f"JSON pointer must be a string, got {json_type_name(pointer)}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f'JSON pointer "{pointer}" must be empty or start with "/"')
    if _BAD_ESCAPE.search(pointer):
        raise PatchError(f'JSON pointer "{pointer}" has an invalid "~" escape (only ~0 and ~1 are allowed)')
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def apply_json_patch(
    document: Any, patch: Any, *, max_operations: int | None = DEFAULT_MAX_OPERATIONS
) -> Any:
    """Apply a JSON patch (a list of operation objects) and return the new document."""
    if not isinstance(patch, list):
        raise PatchError(f"a JSON patch must be an array of operations, got {json_type_name(patch)}")
    if max_operations is not None and len(patch) > max_operations:
        raise PatchError(
            f"the JSON patch has {len(patch)} operations, more than the allowed {max_operations}"
        )
    doc = deep_copy_json(document)
    for index, operation in enumerate(patch):
        try:
            doc = _apply_one(doc, operation)
        except PatchError as exc:
            raise PatchError(f"JSON patch operation {index}: {exc.message}", operation=index) from None
    return doc


def _apply_one(doc: Any, operation: Any) -> Any:
    if not isinstance(operation, dict):
        raise PatchError(f"an operation must be an object, got {json_type_name(operation)}")
    op = operation.get("op")
    if not isinstance(op, str):
        raise PatchError('missing or non-string "op"')
    if op not in _OPS:
        raise PatchError(f'unknown op "{op}"')
    if "path" not in operation:
        raise PatchError(f'"{op}" needs a "path"')
    path = operation["path"]
    tokens = parse_pointer(path)

    if op in ("add", "replace", "test") and "value" not in operation:
        raise PatchError(f'"{op}" at "{path}" needs a "value"')
    if op == "add":
        return _add(doc, tokens, deep_copy_json(operation["value"]), path)
    if op == "remove":
        doc, _ = _remove(doc, tokens, path)
        return doc
    if op == "replace":
        return _replace(doc, tokens, deep_copy_json(operation["value"]), path)
    if op == "test":
        found = _get(doc, tokens, path)
        if not json_equal(found, operation["value"]):
            raise PatchError(f'test failed: the value at "{path}" is not the expected one')
        return doc

    if "from" not in operation:
        raise PatchError(f'"{op}" to "{path}" needs a "from"')
    source = operation["from"]
    from_tokens = parse_pointer(source)
    if op == "copy":
        value = deep_copy_json(_get(doc, from_tokens, source))
        return _add(doc, tokens, value, path)
    # move
    if from_tokens == tokens:
        _get(doc, from_tokens, source)  # must still exist
        return doc
    if tokens[: len(from_tokens)] == from_tokens:
        raise PatchError(f'cannot move "{source}" into its own child "{path}"')
    doc, value = _remove(doc, from_tokens, source)
    return _add(doc, tokens, value, path)


def _container(doc: Any, tokens: list[str], path: str) -> Any:
    """The value the parent part of ``tokens`` points at."""
    current = doc
    for depth, token in enumerate(tokens[:-1]):
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f'path "{path}" does not exist (missing "{token}")')
            current = current[token]
        elif isinstance(current, list):
            current = current[_existing_index(current, token, path)]
        else:
            where = "/".join(tokens[: depth + 1])
            raise PatchError(f'path "{path}" does not exist ("/{where}" is a {json_type_name(current)})')
    return current


def _existing_index(items: list[Any], token: str, path: str) -> int:
    if not _INDEX.fullmatch(token):
        raise PatchError(f'path "{path}": "{token}" is not a valid array index')
    index = int(token)
    if index >= len(items):
        raise PatchError(f'path "{path}": index {index} is out of range (array length {len(items)})')
    return index


def _get(doc: Any, tokens: list[str], path: str) -> Any:
    if not tokens:
        return doc
    parent = _container(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'path "{path}" does not exist')
        return parent[last]
    if isinstance(parent, list):
        return parent[_existing_index(parent, last, path)]
    raise PatchError(f'path "{path}" does not exist (parent is a {json_type_name(parent)})')


def _add(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent = _container(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            if not _INDEX.fullmatch(last):
                raise PatchError(f'path "{path}": "{last}" is not a valid array index')
            index = int(last)
            if index > len(parent):
                raise PatchError(
                    f'path "{path}": index {index} is out of range for add (array length {len(parent)})'
                )
            parent.insert(index, value)
    else:
        raise PatchError(f'cannot add at "{path}": the parent is a {json_type_name(parent)}')
    return doc


def _remove(doc: Any, tokens: list[str], path: str) -> tuple[Any, Any]:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _container(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'cannot remove "{path}": it does not exist')
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_existing_index(parent, last, path))
    raise PatchError(f'cannot remove "{path}": the parent is a {json_type_name(parent)}')


def _replace(doc: Any, tokens: list[str], value: Any, path: str) -> Any:
    if not tokens:
        return value
    parent = _container(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f'cannot replace "{path}": it does not exist')
        parent[last] = value
    elif isinstance(parent, list):
        parent[_existing_index(parent, last, path)] = value
    else:
        raise PatchError(f'cannot replace "{path}": the parent is a {json_type_name(parent)}')
    return doc
