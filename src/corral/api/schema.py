"""Schema index over the official Kubernetes 1.32 JSON schemas.

Purpose: one place that knows the shape of every built-in kind. It loads the definitions shipped by the
``kubernetes-validate`` package (``kubernetes-json-schema/v1.32.0-local[-strict]/_definitions.json``) and
offers

* navigation (:class:`SchemaIndex`, :class:`SchemaNode`) with ``$ref`` resolution and the patch metadata
  (``x-kubernetes-patch-merge-key``, ``-patch-strategy``, ``-list-type``, ``-list-map-keys``, ``-map-type``)
  that drives strategic merge patch and server-side apply;
* structural validation (:func:`validate`) with compiled ``jsonschema-rs`` validators, reporting
  Kubernetes-style field paths and telling unknown fields apart from type errors;
* pruning of unknown fields (:func:`prune_unknown`) for ``fieldValidation=Ignore|Warn``.

Boundary: structure only. Semantic rules (name syntax, selector/template agreement, immutability, defaulting)
live elsewhere. Nothing here does IO except reading the packaged schema files once per process; every
function is pure with respect to its arguments and never mutates them.
"""

from __future__ import annotations

import enum
import functools
import importlib.util
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import jsonschema_rs

__all__ = [
    "KUBERNETES_SCHEMA_VERSION",
    "SchemaIndex",
    "SchemaNode",
    "SchemaViolation",
    "UnknownDefinitionError",
    "ViolationKind",
    "format_field_path",
    "prune_unknown",
    "schema_index",
    "validate",
    "validator",
]

KUBERNETES_SCHEMA_VERSION = "v1.32.0"

_REF_PREFIX = "#/$defs/"


class UnknownDefinitionError(KeyError):
    """Raised when a definition name is not in the schema index."""


def _schema_dir(strict: bool) -> Path:
    # Find the package without importing it: importing kubernetes_validate pulls in the pure-Python
    # jsonschema stack, which costs more than reading the file.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the kubernetes-validate package (Kubernetes JSON schemas) is not installed")
    base = Path(next(iter(spec.submodule_search_locations))) / "kubernetes-json-schema"
    suffix = "-local-strict" if strict else "-local"
    return base / f"{KUBERNETES_SCHEMA_VERSION}{suffix}"


def _types_of(schema: Mapping[str, Any]) -> frozenset[str]:
    raw = schema.get("type")
    if isinstance(raw, str):
        return frozenset((raw,))
    if isinstance(raw, list):
        return frozenset(t for t in raw if isinstance(t, str))
    out: set[str] = set()
    for key in ("oneOf", "anyOf"):
        for branch in schema.get(key) or ():
            if isinstance(branch, Mapping):
                out |= _types_of(branch)
    return frozenset(out)


STRUCT, MAP, OTHER = 0, 1, 2
"""``SchemaNode.shape`` kinds: an object with declared properties, a string-keyed map, anything else."""


class SchemaNode:
    """A position in the schema graph, with ``$ref`` already resolved.

    A node wraps the schema *as seen from its parent*: sibling keys of a ``$ref`` (where Kubernetes puts
    the patch metadata of a field) override those of the referenced definition.
    """

    __slots__ = (
        "_children",
        "_index",
        "_items",
        "_items_done",
        "_local",
        "_shape",
        "_target",
        "_values",
        "_values_done",
        "name",
    )

    def __init__(self, index: SchemaIndex, schema: Mapping[str, Any]) -> None:
        self._index = index
        self._local: Mapping[str, Any] = schema
        target: Mapping[str, Any] = schema
        name: str | None = None
        seen = 0
        while isinstance(target.get("$ref"), str) and seen < 32:
            name = index._ref_name(target["$ref"])
            target = index._definition(name)
            seen += 1
        self._target: Mapping[str, Any] = target
        self.name: str | None = name
        self._children: dict[str, SchemaNode | None] = {}
        self._items: SchemaNode | None = None
        self._items_done = False
        self._values: SchemaNode | None = None
        self._values_done = False
        self._shape: tuple[int, Mapping[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"SchemaNode({self.name or sorted(self.types)!r})"

    def get(self, key: str, default: Any = None) -> Any:
        """A schema keyword, looked up locally first, then on the referenced definition."""
        if key in self._local and key != "$ref":
            return self._local[key]
        return self._target.get(key, default)

    @property
    def index(self) -> SchemaIndex:
        return self._index

    @property
    def types(self) -> frozenset[str]:
        local = _types_of(self._local)
        return local if local else _types_of(self._target)

    @property
    def properties(self) -> Mapping[str, Any]:
        props = self.get("properties")
        return props if isinstance(props, Mapping) else {}

    @property
    def required(self) -> tuple[str, ...]:
        req = self.get("required")
        return tuple(r for r in req if isinstance(r, str)) if isinstance(req, list) else ()

    @property
    def is_list(self) -> bool:
        return "array" in self.types

    @property
    def is_map(self) -> bool:
        """True for string-keyed maps (``additionalProperties`` with a schema), e.g. labels, data."""
        return isinstance(self.get("additionalProperties"), Mapping) and not self.properties

    @property
    def is_struct(self) -> bool:
        """True for objects with declared properties (most Kubernetes types)."""
        return bool(self.properties)

    @property
    def is_opaque(self) -> bool:
        """True when the schema says nothing about the content (RawExtension, FieldsV1, untyped JSON)."""
        if self.properties or isinstance(self.get("additionalProperties"), Mapping) or self.is_list:
            return False
        return not self.types or "object" in self.types

    @property
    def patch_merge_key(self) -> str | None:
        key = self.get("x-kubernetes-patch-merge-key")
        return key if isinstance(key, str) and key else None

    @property
    def patch_strategy(self) -> set[str]:
        raw = self.get("x-kubernetes-patch-strategy")
        if not isinstance(raw, str):
            return set()
        return {part.strip() for part in raw.split(",") if part.strip()}

    @property
    def list_type(self) -> str | None:
        raw = self.get("x-kubernetes-list-type")
        return raw if isinstance(raw, str) else None

    @property
    def list_map_keys(self) -> tuple[str, ...]:
        raw = self.get("x-kubernetes-list-map-keys")
        return tuple(k for k in raw if isinstance(k, str)) if isinstance(raw, list) else ()

    @property
    def map_type(self) -> str | None:
        raw = self.get("x-kubernetes-map-type")
        return raw if isinstance(raw, str) else None

    def shape(self) -> tuple[int, Mapping[str, Any]]:
        """``(STRUCT, properties)``, ``(MAP, {})`` or ``(OTHER, {})``: what pruning asks of every node of
        every incoming object, worked out once per node (the schema never changes)."""
        if self._shape is None:
            if self.is_struct:
                self._shape = (STRUCT, self.properties)
            elif self.is_map:
                self._shape = (MAP, {})
            else:
                self._shape = (OTHER, {})
        return self._shape

    def child(self, field: str) -> SchemaNode | None:
        """The node of an object property, or of a map value (``additionalProperties``)."""
        try:
            return self._children[field]
        except KeyError:
            pass
        sub = self.properties.get(field)
        node = SchemaNode(self._index, sub) if isinstance(sub, Mapping) else self.values()
        self._children[field] = node
        return node

    def values(self) -> SchemaNode | None:
        """The node of the values of a map (``additionalProperties``), if the schema declares one."""
        if not self._values_done:
            raw = self.get("additionalProperties")
            self._values = SchemaNode(self._index, raw) if isinstance(raw, Mapping) else None
            self._values_done = True
        return self._values

    def items(self) -> SchemaNode | None:
        """The node of the elements of an array."""
        if not self._items_done:
            raw = self.get("items")
            self._items = SchemaNode(self._index, raw) if isinstance(raw, Mapping) else None
            self._items_done = True
        return self._items


class SchemaIndex:
    """All definitions of one schema file, with lazily built :class:`SchemaNode` objects."""

    def __init__(self, definitions: Mapping[str, Any]) -> None:
        self._defs: Mapping[str, Any] = definitions
        self._nodes: dict[str, SchemaNode] = {}
        self._gvk: dict[tuple[str, str], str] | None = None
        self._refs: dict[str, frozenset[str]] = {}

    @classmethod
    def from_file(cls, path: Path) -> SchemaIndex:
        doc = orjson.loads(path.read_bytes())
        defs = doc.get("$defs") if isinstance(doc, dict) else None
        if not isinstance(defs, dict):
            raise ValueError(f"{path}: no $defs object")
        return cls(defs)

    @property
    def definitions(self) -> Mapping[str, Any]:
        """The raw definitions (read-only by convention; shared, never mutate)."""
        return self._defs

    def __contains__(self, name: object) -> bool:
        return name in self._defs

    def __len__(self) -> int:
        return len(self._defs)

    def names(self) -> Iterator[str]:
        return iter(self._defs)

    def _ref_name(self, ref: str) -> str:
        if not ref.startswith(_REF_PREFIX):
            raise UnknownDefinitionError(ref)
        return ref[len(_REF_PREFIX) :]

    def _definition(self, name: str) -> Mapping[str, Any]:
        try:
            found = self._defs[name]
        except KeyError:
            raise UnknownDefinitionError(name) from None
        if not isinstance(found, Mapping):
            raise UnknownDefinitionError(name)
        return found

    def node(self, definition_name: str) -> SchemaNode:
        """The node of a definition, e.g. ``io.k8s.api.apps.v1.Deployment``."""
        try:
            return self._nodes[definition_name]
        except KeyError:
            pass
        self._definition(definition_name)  # raise early on unknown names
        node = SchemaNode(self, {"$ref": _REF_PREFIX + definition_name})
        self._nodes[definition_name] = node
        return node

    def definition_for(self, api_version: str, kind: str) -> str | None:
        """The definition name for ``apiVersion``/``kind`` (``apps/v1``, ``Deployment``), if known."""
        if self._gvk is None:
            table: dict[tuple[str, str], str] = {}
            shared: dict[tuple[str, str], str] = {}
            for name, schema in self._defs.items():
                gvks = schema.get("x-kubernetes-group-version-kind") if isinstance(schema, Mapping) else None
                if not isinstance(gvks, list):
                    continue
                # Types like DeleteOptions list every group; a kind's own definition lists just itself.
                target = table if len(gvks) == 1 else shared
                for gvk in gvks:
                    group, version = gvk.get("group", ""), gvk.get("version", "")
                    key = (f"{group}/{version}" if group else version, gvk.get("kind", ""))
                    target.setdefault(key, name)
            for key, name in shared.items():
                table.setdefault(key, name)
            self._gvk = table
        return self._gvk.get((api_version, kind))

    def reachable(self, definition_name: str) -> frozenset[str]:
        """All definitions reachable from one, including itself."""
        out: set[str] = set()
        todo = [definition_name]
        while todo:
            name = todo.pop()
            if name in out:
                continue
            out.add(name)
            todo.extend(self._direct_refs(name))
        return frozenset(out)

    def _direct_refs(self, name: str) -> frozenset[str]:
        cached = self._refs.get(name)
        if cached is not None:
            return cached
        found: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, Mapping):
                for key, sub in value.items():
                    if key == "$ref" and isinstance(sub, str) and sub.startswith(_REF_PREFIX):
                        found.add(sub[len(_REF_PREFIX) :])
                    elif key not in ("description", "enum", "x-kubernetes-group-version-kind"):
                        walk(sub)
            elif isinstance(value, list):
                for sub in value:
                    walk(sub)

        walk(self._definition(name))
        result = frozenset(found)
        self._refs[name] = result
        return result


_lock = threading.Lock()
_indexes: dict[bool, SchemaIndex] = {}


def schema_index(strict: bool = False) -> SchemaIndex:
    """The process-wide index (loaded on first use). ``strict`` adds ``additionalProperties: false``.

    Navigation and patch metadata are identical in both variants; only validation differs.
    """
    found = _indexes.get(strict)
    if found is not None:
        return found
    with _lock:
        found = _indexes.get(strict)
        if found is None:
            found = SchemaIndex.from_file(_schema_dir(strict) / "_definitions.json")
            _indexes[strict] = found
    return found


# --- validation ---------------------------------------------------------------------------------------


class ViolationKind(enum.Enum):
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    REQUIRED = "required"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class SchemaViolation:
    """One structural problem: a Kubernetes field path (``spec.template.spec.containers[0].image``)."""

    path: str
    message: str
    kind: ViolationKind

    @property
    def is_unknown_field(self) -> bool:
        return self.kind is ViolationKind.UNKNOWN_FIELD

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _relax_one_of(value: Any) -> Any:
    # IntOrString and Quantity are `oneOf` string|integer (number), each branch also allowing null, so a
    # null matches both branches and fails `oneOf`. The branches are otherwise disjoint: `anyOf` is exact.
    if isinstance(value, Mapping):
        return {("anyOf" if k == "oneOf" else k): _relax_one_of(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_relax_one_of(v) for v in value]
    return value


@functools.lru_cache(maxsize=512)
def validator(definition_name: str, strict: bool) -> jsonschema_rs.Validator:
    """A compiled validator for one definition (cached per name and strictness)."""
    import jsonschema_rs  # imported on first use: keeps `import corral.api.schema` cheap for the CLI

    index = schema_index(strict)
    names = sorted(index.reachable(definition_name))
    defs = {name: _relax_one_of(index.definitions[name]) for name in names}
    schema = {"$ref": _REF_PREFIX + definition_name, "$defs": defs}
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=False)


def format_field_path(node: SchemaNode | None, parts: Sequence[str | int]) -> str:
    """Render an instance path the Kubernetes way: ``a.b[0].c``; map keys in brackets (``labels[app]``)."""
    out: list[str] = []
    current = node
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
            current = current.items() if current is not None else None
            continue
        if current is not None and current.is_map:
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
        current = current.child(part) if current is not None else None
    return "".join(out)


_JSON_TYPE_NAMES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _expected(types: Sequence[str] | frozenset[str]) -> str:
    wanted = sorted(t for t in types if t != "null")
    return " or ".join(wanted) if wanted else "null"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _violations(error: jsonschema_rs.ValidationError, root: SchemaNode) -> Iterator[SchemaViolation]:
    import jsonschema_rs

    kind = error.kind
    parts = list(error.instance_path)
    name = kind.name
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        for field in kind.unexpected:
            path = format_field_path(root, [*parts, field])
            yield SchemaViolation(path, f'unknown field "{path}"', ViolationKind.UNKNOWN_FIELD)
        return
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        path = format_field_path(root, [*parts, kind.property])
        yield SchemaViolation(path, "Required value", ViolationKind.REQUIRED)
        return
    path = format_field_path(root, parts)
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Type):
        message = f"expected {_expected(kind.types)}, got {_json_type(error.instance)}"
        yield SchemaViolation(path, message, ViolationKind.WRONG_TYPE)
        return
    if name in ("anyOf", "oneOf"):
        node = _node_at(root, parts)
        types = node.types if node is not None else frozenset()
        if types:
            message = f"expected {_expected(types)}, got {_json_type(error.instance)}"
            yield SchemaViolation(path, message, ViolationKind.WRONG_TYPE)
            return
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        supported = ", ".join(_short(o) for o in kind.options)
        message = f"Unsupported value: {_short(error.instance)}: supported values: {supported}"
        yield SchemaViolation(path, message, ViolationKind.INVALID)
        return
    yield SchemaViolation(path, error.message, ViolationKind.INVALID)


def _node_at(root: SchemaNode, parts: Sequence[str | int]) -> SchemaNode | None:
    current: SchemaNode | None = root
    for part in parts:
        if current is None:
            return None
        current = current.items() if isinstance(part, int) else current.child(part)
    return current


def validate(definition_name: str, obj: Any, strict: bool) -> list[SchemaViolation]:
    """Structural violations of ``obj`` against a definition; empty when valid.

    ``strict`` rejects unknown fields (``fieldValidation=Strict``); otherwise they are not reported (use
    :func:`prune_unknown` to find and drop them).
    """
    compiled = validator(definition_name, strict)
    if compiled.is_valid(obj):
        return []
    root = schema_index(strict).node(definition_name)
    out: list[SchemaViolation] = []
    seen: set[tuple[str, ViolationKind]] = set()
    for error in compiled.iter_errors(obj):
        for violation in _violations(error, root):
            key = (violation.path, violation.kind)
            if key not in seen:
                seen.add(key)
                out.append(violation)
    return out


# --- pruning ------------------------------------------------------------------------------------------


def prune_unknown(definition_name: str, obj: Any) -> tuple[Any, list[str]]:
    """A copy of ``obj`` without the fields the schema does not declare, and the paths of those fields.

    This is what the apiserver does for ``fieldValidation=Ignore`` (silently) and ``Warn`` (with a warning
    per path). Opaque subtrees (RawExtension, FieldsV1, untyped JSON) are kept as they are; values of the
    wrong type are kept too, validation reports them.
    """
    unknown: list[str] = []
    root = schema_index(False).node(definition_name)
    pruned = _prune(obj, root, "", unknown)
    return pruned, unknown


def _prune(value: Any, node: SchemaNode | None, path: str, unknown: list[str]) -> Any:
    # Scalars are taken as they are without a call, and a child's path is only spelled out when it is
    # needed (a container to descend into, or an unknown field): most fields of most objects are scalars.
    if isinstance(value, dict):
        if node is None:
            return _copy(value)
        shape, props = node.shape()
        if shape == STRUCT:
            out: dict[str, Any] = {}
            for key, sub in value.items():
                if key in props:
                    if isinstance(sub, dict | list):
                        out[key] = _prune(sub, node.child(key), f"{path}.{key}" if path else key, unknown)
                    else:
                        out[key] = sub
                else:
                    unknown.append(f"{path}.{key}" if path else key)
            return out
        if shape == MAP:
            values = node.values()
            return {
                key: _prune(sub, values, f"{path}[{key}]", unknown) if isinstance(sub, dict | list) else sub
                for key, sub in value.items()
            }
        return _copy(value)
    if isinstance(value, list):
        items = node.items() if node is not None else None
        return [
            _prune(sub, items, f"{path}[{i}]", unknown) if isinstance(sub, dict | list) else sub
            for i, sub in enumerate(value)
        ]
    return value


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
