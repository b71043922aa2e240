"""JSON patch (RFC 6902) and JSON pointers (RFC 6901): the RFC examples, kubectl's patches, errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corral.apiserver.patch import PatchError
from corral.apiserver.patch.jsonpatch import apply_json_patch, escape_pointer_token, parse_pointer

# RFC 6902 Appendix A (the successful ones).
RFC_EXAMPLES: list[tuple[str, Any, list[dict[str, Any]], Any]] = [
    (
        "A.1 add object member",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux"}],
        {"baz": "qux", "foo": "bar"},
    ),
    (
        "A.2 add array element",
        {"foo": ["bar", "baz"]},
        [{"op": "add", "path": "/foo/1", "value": "qux"}],
        {"foo": ["bar", "qux", "baz"]},
    ),
    (
        "A.3 remove object member",
        {"baz": "qux", "foo": "bar"},
        [{"op": "remove", "path": "/baz"}],
        {"foo": "bar"},
    ),
    (
        "A.4 remove array element",
        {"foo": ["bar", "qux", "baz"]},
        [{"op": "remove", "path": "/foo/1"}],
        {"foo": ["bar", "baz"]},
    ),
    (
        "A.5 replace",
        {"baz": "qux", "foo": "bar"},
        [{"op": "replace", "path": "/baz", "value": "boo"}],
        {"baz": "boo", "foo": "bar"},
    ),
    (
        "A.6 move value",
        {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
        [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
        {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}},
    ),
    (
        "A.7 move array element",
        {"foo": ["all", "grass", "cows", "eat"]},
        [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
        {"foo": ["all", "cows", "eat", "grass"]},
    ),
    (
        "A.8 test success",
        {"baz": "qux", "foo": ["a", 2, "c"]},
        [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
        {"baz": "qux", "foo": ["a", 2, "c"]},
    ),
    (
        "A.10 add nested member",
        {"foo": "bar"},
        [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
        {"foo": "bar", "child": {"grandchild": {}}},
    ),
    (
        "A.11 ignore unrecognized elements",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
        {"foo": "bar", "baz": "qux"},
    ),
    (
        "A.14 ~ escape ordering",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": 10}],
        {"/": 9, "~1": 10},
    ),
    (
        "A.16 add array value",
        {"foo": ["bar"]},
        [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
        {"foo": ["bar", ["abc", "def"]]},
    ),
    ("replace root", {"a": 1}, [{"op": "replace", "path": "", "value": [1]}], [1]),
    ("add root", {"a": 1}, [{"op": "add", "path": "", "value": {"b": 2}}], {"b": 2}),
    (
        "copy",
        {"a": {"b": [1]}},
        [{"op": "copy", "from": "/a", "path": "/c"}],
        {"a": {"b": [1]}, "c": {"b": [1]}},
    ),
    ("add at end index", {"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]}),
    ("slash in key", {"a/b": 1}, [{"op": "replace", "path": "/a~1b", "value": 2}], {"a/b": 2}),
    ("move to itself", {"a": 1}, [{"op": "move", "from": "/a", "path": "/a"}], {"a": 1}),
    ("test null value", {"a": None}, [{"op": "test", "path": "/a", "value": None}], {"a": None}),
    ("test number equality", {"a": 1}, [{"op": "test", "path": "/a", "value": 1.0}], {"a": 1}),
    ("empty patch", {"a": 1}, [], {"a": 1}),
]


@pytest.mark.parametrize(
    ("doc", "patch", "expected"),
    [pytest.param(d, p, e, id=i) for i, d, p, e in RFC_EXAMPLES],
)
def test_rfc6902_examples(doc: Any, patch: list[dict[str, Any]], expected: Any) -> None:
    assert apply_json_patch(doc, patch) == expected


ERRORS: list[tuple[str, Any, Any, str]] = [
    (
        "A.9 test failure",
        {"baz": "qux"},
        [{"op": "test", "path": "/baz", "value": "bar"}],
        "operation 0: test failed",
    ),
    (
        "A.12 add to nonexistent target",
        {"foo": "bar"},
        [{"op": "add", "path": "/baz/bat", "value": "qux"}],
        "does not exist",
    ),
    (
        "A.15 comparing strings and numbers",
        {"/": 9, "~1": 10},
        [{"op": "test", "path": "/~01", "value": "10"}],
        "test failed",
    ),
    ("test true is not 1", {"a": 1}, [{"op": "test", "path": "/a", "value": True}], "test failed"),
    ("remove missing", {"a": 1}, [{"op": "remove", "path": "/b"}], 'cannot remove "/b"'),
    ("replace missing", {"a": 1}, [{"op": "replace", "path": "/b", "value": 1}], 'cannot replace "/b"'),
    ("index out of range", {"a": [1]}, [{"op": "replace", "path": "/a/1", "value": 1}], "out of range"),
    ("add beyond end", {"a": [1]}, [{"op": "add", "path": "/a/2", "value": 1}], "out of range"),
    ("leading zero index", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}], "not a valid array index"),
    ("dash is only for add", {"a": [1]}, [{"op": "remove", "path": "/a/-"}], "not a valid array index"),
    ("bad escape", {"a": 1}, [{"op": "remove", "path": "/a~2"}], "invalid"),
    ("pointer without slash", {"a": 1}, [{"op": "remove", "path": "a"}], 'start with "/"'),
    ("unknown op", {}, [{"op": "frobnicate", "path": "/a"}], 'unknown op "frobnicate"'),
    ("missing op", {}, [{"path": "/a"}], '"op"'),
    ("missing path", {}, [{"op": "add", "value": 1}], 'needs a "path"'),
    ("missing value", {}, [{"op": "add", "path": "/a"}], 'needs a "value"'),
    ("missing from", {"a": 1}, [{"op": "move", "path": "/b"}], 'needs a "from"'),
    ("move into own child", {"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}], "own child"),
    ("remove root", {"a": 1}, [{"op": "remove", "path": ""}], "whole document"),
    ("traverse scalar", {"a": 1}, [{"op": "add", "path": "/a/b", "value": 1}], "is a number"),
    ("patch not a list", {}, {"op": "add"}, "must be an array"),
    ("operation not an object", {}, ["add"], "must be an object"),
    (
        "second op fails",
        {"a": 1},
        [{"op": "remove", "path": "/a"}, {"op": "remove", "path": "/a"}],
        "operation 1:",
    ),
]


@pytest.mark.parametrize(
    ("doc", "patch", "message"),
    [pytest.param(d, p, m, id=i) for i, d, p, m in ERRORS],
)
def test_errors(doc: Any, patch: Any, message: str) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(PatchError) as info:
        apply_json_patch(doc, patch)
    assert message in str(info.value)
    assert doc == before


def test_error_carries_the_operation_index() -> None:
    with pytest.raises(PatchError) as info:
        apply_json_patch(
            {"a": 1}, [{"op": "test", "path": "/a", "value": 1}, {"op": "test", "path": "/a", "value": 2}]
        )
    assert info.value.operation == 1


def test_operation_limit() -> None:
    patch = [{"op": "test", "path": "", "value": {}}] * 3
    assert apply_json_patch({}, patch, max_operations=3) == {}
    with pytest.raises(PatchError, match="more than the allowed 2"):
        apply_json_patch({}, patch, max_operations=2)


def test_kubectl_rollout_undo() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"deployment.kubernetes.io/revision": "3"}},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]},
            },
        },
    }
    old_template: dict[str, Any] = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]},
    }
    patch = [
        {"op": "replace", "path": "/spec/template", "value": old_template},
        {
            "op": "replace",
            "path": "/metadata/annotations",
            "value": {"deployment.kubernetes.io/revision": "3", "kubernetes.io/change-cause": "undo"},
        },
    ]
    result = apply_json_patch(deployment, patch)
    assert result["spec"]["template"] == old_template
    assert result["spec"]["replicas"] == 2
    assert result["metadata"]["annotations"]["kubernetes.io/change-cause"] == "undo"
    # the value in the patch is copied, not shared
    result["spec"]["template"]["spec"]["containers"].append({})
    assert len(old_template["spec"]["containers"]) == 1


def test_python_client_style_label_patch() -> None:
    pod = {"metadata": {"name": "p", "labels": {"app": "web"}}}
    patch = [
        {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"},
        {"op": "remove", "path": "/metadata/labels/app"},
    ]
    assert apply_json_patch(pod, patch) == {
        "metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "web"}}
    }


def test_atomicity_and_no_mutation() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    before = copy.deepcopy(doc)
    patch = [{"op": "add", "path": "/a/-", "value": 3}, {"op": "move", "from": "/b/c", "path": "/d"}]
    patch_before = copy.deepcopy(patch)
    assert apply_json_patch(doc, patch) == {"a": [1, 2, 3], "b": {}, "d": 1}
    assert doc == before and patch == patch_before
    with pytest.raises(PatchError):
        apply_json_patch(doc, [*patch, {"op": "remove", "path": "/zzz"}])
    assert doc == before


@pytest.mark.parametrize(
    ("pointer", "tokens"),
    [
        ("", []),
        ("/", [""]),
        ("/a/b", ["a", "b"]),
        ("/a~1b/~0c", ["a/b", "~c"]),
        ("/~01", ["~1"]),
        ("/ ", [" "]),
    ],
)
def test_parse_pointer(pointer: str, tokens: list[str]) -> None:
    assert parse_pointer(pointer) == tokens
    assert "".join("/" + escape_pointer_token(t) for t in tokens) == pointer
