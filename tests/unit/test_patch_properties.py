"""Hypothesis properties of the patch engines."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.schema import SchemaNode, schema_index
from corral.apiserver.patch import PatchError, json_equal
from corral.apiserver.patch.apply import apply_patch
from corral.apiserver.patch.jsonpatch import apply_json_patch, escape_pointer_token
from corral.apiserver.patch.merge import apply_merge_patch, create_merge_patch
from corral.apiserver.patch.strategic import apply_strategic_merge_patch

SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

# Keys mix real Kubernetes field names (so the schema-driven engines take their schema paths) with
# arbitrary text, including the characters JSON pointers must escape.
_KEYS = st.one_of(
    st.sampled_from(
        [
            "metadata",
            "labels",
            "annotations",
            "spec",
            "template",
            "containers",
            "name",
            "image",
            "replicas",
            "selector",
            "matchLabels",
            "finalizers",
            "env",
            "ports",
            "data",
            "status",
            "a",
            "b",
        ]
    ),
    st.text(alphabet="ab/~.-_ xyz", min_size=0, max_size=4).filter(lambda k: not k.startswith("$")),
)
_NON_NULL_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
_SCALARS = st.one_of(st.none(), _NON_NULL_SCALARS)


def _json(scalars: st.SearchStrategy[Any] = _SCALARS) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(_KEYS, children, max_size=4),
        ),
        max_leaves=20,
    )


_JSON = _json()
_OBJECTS = st.dictionaries(_KEYS, _JSON, max_size=5)

# Objects whose members are never null (a merge patch cannot set a member to null); nulls inside lists
# are fine, lists are replaced whole.
_NO_NULL_MEMBERS = st.recursive(
    _SCALARS.filter(lambda v: v is not None),
    lambda children: st.one_of(
        st.lists(_JSON, max_size=4),
        st.dictionaries(_KEYS, children, max_size=4),
    ),
    max_leaves=20,
)
_NO_NULL_OBJECTS = st.dictionaries(_KEYS, _NO_NULL_MEMBERS, max_size=5)

# Map-only patches: no lists, no directives.
_MAP_PATCHES = st.dictionaries(
    _KEYS,
    st.recursive(_SCALARS, lambda children: st.dictionaries(_KEYS, children, max_size=3), max_leaves=12),
    max_size=5,
)


def _nodes() -> list[SchemaNode | None]:
    index = schema_index()
    return [
        None,
        index.node("io.k8s.api.apps.v1.Deployment"),
        index.node("io.k8s.api.core.v1.ConfigMap"),
        index.node("io.k8s.api.core.v1.Pod"),
    ]


_NODE = st.sampled_from(_nodes())


@SETTINGS
@given(_OBJECTS, _NO_NULL_OBJECTS)
def test_create_merge_patch_round_trips(original: dict[str, Any], modified: dict[str, Any]) -> None:
    patch = create_merge_patch(original, modified)
    assert json_equal(apply_merge_patch(original, patch), modified)


@SETTINGS
@given(_JSON)
def test_create_merge_patch_of_equal_objects_is_empty(value: Any) -> None:
    doc = {"k": value}
    assert create_merge_patch(doc, copy.deepcopy(doc)) == {}


def _pointers(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = [(prefix, value)]
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _pointers(sub, f"{prefix}/{escape_pointer_token(key)}")
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            out += _pointers(sub, f"{prefix}/{index}")
    return out


@SETTINGS
@given(_JSON)
def test_json_patch_test_of_every_pointer_succeeds(doc: Any) -> None:
    ops = [{"op": "test", "path": path, "value": value} for path, value in _pointers(doc)]
    assert json_equal(apply_json_patch(doc, ops), doc)


@SETTINGS
@given(_JSON, st.data())
def test_json_patch_remove_then_add_restores(doc: Any, data: st.DataObject) -> None:
    pointers = [p for p, _ in _pointers(doc) if p]
    if not pointers:
        return
    path = data.draw(st.sampled_from(pointers))
    value = apply_json_patch(doc, [{"op": "copy", "from": path, "path": ""}])
    restored = apply_json_patch(
        doc, [{"op": "remove", "path": path}, {"op": "add", "path": path, "value": value}]
    )
    assert json_equal(restored, doc)


@SETTINGS
@given(_OBJECTS, _MAP_PATCHES, _NODE)
def test_strategic_merge_of_maps_equals_json_merge(
    target: dict[str, Any], patch: dict[str, Any], node: SchemaNode | None
) -> None:
    assert apply_strategic_merge_patch(target, patch, node) == apply_merge_patch(target, patch)


# Server-side apply drops every null of an applied configuration, lists included.
# Built without nulls rather than filtered: filtering them out tripped Hypothesis' filter_too_much check.
_NULL_FREE_OBJECTS = st.dictionaries(_KEYS, _json(_NON_NULL_SCALARS), max_size=5)


@SETTINGS
@given(_NULL_FREE_OBJECTS)
def test_apply_of_an_object_onto_itself_is_identity(obj: dict[str, Any]) -> None:
    assert apply_patch(obj, obj, None) == obj
    assert apply_patch(None, obj, None) == obj


def _json_patch_ops() -> st.SearchStrategy[list[dict[str, Any]]]:
    paths = st.lists(_KEYS, max_size=3).map(lambda ks: "".join("/" + escape_pointer_token(k) for k in ks))
    op = st.one_of(
        st.fixed_dictionaries(
            {"op": st.sampled_from(["add", "replace", "test"]), "path": paths, "value": _JSON}
        ),
        st.fixed_dictionaries({"op": st.just("remove"), "path": paths}),
        st.fixed_dictionaries({"op": st.sampled_from(["move", "copy"]), "from": paths, "path": paths}),
    )
    return st.lists(op, max_size=4)


# Strategic patches with directives sprinkled in, so the no-mutation property covers the directive paths.
_DIRECTIVE_PATCHES = st.recursive(
    _MAP_PATCHES,
    lambda children: st.one_of(
        st.dictionaries(_KEYS, children, max_size=3).map(lambda d: {**d, "$patch": "replace"}),
        st.dictionaries(_KEYS, children, max_size=3).map(lambda d: {**d, "$retainKeys": sorted(d)}),
        st.lists(st.fixed_dictionaries({"name": st.text(max_size=2)}), max_size=3).map(
            lambda xs: {"containers": xs, "$setElementOrder/containers": [{"name": x["name"]} for x in xs]}
        ),
        st.just({"finalizers": ["a"], "$deleteFromPrimitiveList/finalizers": ["b"]}),
        st.dictionaries(_KEYS, children, max_size=3),
    ),
    max_leaves=8,
)


@SETTINGS
@given(_OBJECTS, _JSON, _json_patch_ops(), _DIRECTIVE_PATCHES, _NODE)
def test_no_engine_mutates_its_inputs(
    target: dict[str, Any],
    merge_patch: Any,
    json_ops: list[dict[str, Any]],
    strategic: dict[str, Any],
    node: SchemaNode | None,
) -> None:
    snapshot = copy.deepcopy((target, merge_patch, json_ops, strategic))

    apply_merge_patch(target, merge_patch)
    create_merge_patch(target, merge_patch)
    with contextlib.suppress(PatchError):
        apply_json_patch(target, json_ops)
    with contextlib.suppress(PatchError):
        apply_strategic_merge_patch(target, strategic, node)
    with contextlib.suppress(PatchError):
        apply_patch(target, strategic, node)
    assert (target, merge_patch, json_ops, strategic) == snapshot
