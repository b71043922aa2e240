"""Reading request bodies safely: size limit, JSON or YAML, alias-bomb and nesting checks.

The real apiserver refuses bodies over 3 MiB and bounds YAML alias expansion; we do the same before any
object is built, so one bad request costs milliseconds and never the server. PyYAML's ``SafeLoader`` shares
aliased nodes instead of copying them, so a billion-laughs document loads small but explodes when encoded;
we measure the expanded size of the composed node graph (memoised) before constructing Python objects.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import yaml

MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_EXPANDED_NODES = 500_000
MAX_DEPTH = 100


class BodyError(ValueError):
    """The body cannot be decoded; the message says why."""


class NestingError(BodyError):
    """The body is nested deeper than :data:`MAX_DEPTH`; no other decoder should try it."""


def _yaml_size_and_depth(root: yaml.Node) -> tuple[int, int]:
    sizes: dict[int, tuple[int, int]] = {}
    # Iterative post-order walk: deep documents must not hit Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children += [k, v]
        if not done:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            if len(stack) > 4 * MAX_EXPANDED_NODES:
                raise BodyError("YAML document is too large")
            continue
        size, depth = 1, 0
        for c in children:
            csize, cdepth = sizes[id(c)]
            size += csize
            depth = max(depth, cdepth)
        sizes[id(node)] = (size, depth + 1)
        if size > MAX_EXPANDED_NODES:
            raise BodyError(
                f"YAML document expands to more than {MAX_EXPANDED_NODES} nodes (too many aliases?)"
            )
        if depth + 1 > MAX_DEPTH:
            raise BodyError(f"YAML document is nested deeper than {MAX_DEPTH} levels")
    return sizes[id(root)]


class _Loader(yaml.SafeLoader):
    """SafeLoader without the implicit timestamp type: as with sigs.k8s.io/yaml (go-yaml v2 decoding into
    interface{}), ``2024-01-01`` stays the string written, and ``2024-13-01`` is no error."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)) and math.isfinite(key):
        return str(key)
    raise BodyError(f"error converting YAML to JSON: unsupported map key of type {type(key).__name__}")


def _jsonable(value: Any) -> Any:
    """A constructed YAML value as JSON, the way sigs.k8s.io/yaml converts it: numeric and boolean map
    keys become strings (``80: http`` in a ConfigMap), and values JSON cannot hold are errors."""
    if isinstance(value, dict):
        return {_json_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise BodyError(f"error converting YAML to JSON: {value} is not a JSON number")
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise BodyError(f"error converting YAML to JSON: unsupported value of type {type(value).__name__}")


def load_yaml_documents(text: str) -> list[Any]:
    """All documents of a (multi-document) YAML stream, with expansion and depth limits."""
    docs: list[Any] = []
    try:
        loader = _Loader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                _yaml_size_and_depth(node)
                docs.append(_jsonable(loader.construct_document(node)))
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise BodyError(f"error converting YAML to JSON: {exc}") from exc
    except ValueError as exc:  # a constructor's own limit, such as an integer with 5000 digits
        if isinstance(exc, BodyError):
            raise
        raise BodyError(f"error converting YAML to JSON: {exc}") from exc
    except RecursionError as exc:
        raise BodyError(f"YAML document is nested deeper than {MAX_DEPTH} levels") from exc
    return docs


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise NestingError(f"object is nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def decode_json(raw: bytes) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc):
            raise NestingError(f"object is nested deeper than {MAX_DEPTH} levels") from exc
        raise BodyError(f"couldn't get version/kind; json parse error: {exc}") from exc
    check_depth(value)
    return value


def decode_body(raw: bytes, content_type: str) -> Any:
    """JSON, or YAML for ``application/yaml`` and ``apply-patch+yaml`` (whose body may be JSON)."""
    if "yaml" in content_type:
        stripped = raw.lstrip()
        if stripped[:1] in (b"{", b"["):
            try:
                return decode_json(raw)
            except NestingError:
                raise  # valid JSON, just too deep: re-parsing it as YAML would only cost time
            except BodyError:
                pass  # YAML flow style such as {a: 1} is not JSON
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BodyError("body is not valid UTF-8") from exc
        docs = load_yaml_documents(text)
        if len(docs) != 1:
            raise BodyError(f"expected exactly one YAML document, found {len(docs)}")
        check_depth(docs[0])
        return docs[0]
    return decode_json(raw)
