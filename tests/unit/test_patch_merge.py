"""JSON merge patch (RFC 7386): the RFC's own examples, kubectl's merge patches, and patch creation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from corral.apiserver.patch.merge import apply_merge_patch, create_merge_patch

# RFC 7386 Appendix A.
RFC_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_EXAMPLES)
def test_rfc7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert apply_merge_patch(target, patch) == expected


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {"a": "1"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]},
            },
        },
    }


def test_kubectl_label() -> None:
    result = apply_merge_patch(_deployment(), {"metadata": {"labels": {"tier": "fe"}}})
    assert result["metadata"]["labels"] == {"app": "web", "tier": "fe"}


def test_kubectl_label_removal_and_annotate() -> None:
    result = apply_merge_patch(
        _deployment(), {"metadata": {"labels": {"app": None}, "annotations": {"b": "2"}}}
    )
    assert result["metadata"]["labels"] == {}
    assert result["metadata"]["annotations"] == {"a": "1", "b": "2"}


def test_kubectl_scale_on_the_scale_subresource() -> None:
    scale = {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "spec": {"replicas": 2},
        "status": {"replicas": 2},
    }
    assert apply_merge_patch(scale, {"spec": {"replicas": 3}})["spec"] == {"replicas": 3}


def test_lists_are_replaced_whole() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}}}
    result = apply_merge_patch(_deployment(), patch)
    assert result["spec"]["template"]["spec"]["containers"] == [{"name": "redis", "image": "redis:7"}]


def test_configmap_data() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}
    assert apply_merge_patch(cm, {"data": {"a": None, "c": "3"}})["data"] == {"b": "2", "c": "3"}


def test_result_is_independent_of_inputs() -> None:
    target, patch = _deployment(), {"metadata": {"labels": {"x": "y"}}, "spec": {"new": {"k": [1]}}}
    before_t, before_p = copy.deepcopy(target), copy.deepcopy(patch)
    result = apply_merge_patch(target, patch)
    assert target == before_t and patch == before_p
    result["spec"]["template"]["spec"]["containers"].append({})
    result["spec"]["new"]["k"].append(2)
    result["metadata"]["annotations"]["z"] = "1"
    assert target == before_t and patch == before_p


@pytest.mark.parametrize(
    ("original", "modified", "patch"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, {"a": {"c": None}}),
        ({"a": {"b": 1}}, {"a": {"b": 1}}, {}),
        ({"a": [1, 2]}, {"a": [1, 2, 3]}, {"a": [1, 2, 3]}),
        ({"a": 1}, {"a": True}, {"a": True}),
        ({"a": 1}, {"a": 1.0}, {}),
        ({"a": "x"}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": {"b": 1}}, {"a": "x"}, {"a": "x"}),
        ([1], {"a": 1}, {"a": 1}),
        ({"a": 1}, [1], [1]),
    ],
)
def test_create_merge_patch(original: Any, modified: Any, patch: Any) -> None:
    assert create_merge_patch(original, modified) == patch
    assert apply_merge_patch(original, patch) == modified


def test_create_merge_patch_for_a_deployment_update() -> None:
    original = _deployment()
    modified = _deployment()
    modified["spec"]["replicas"] = 3
    modified["metadata"]["labels"]["tier"] = "fe"
    del modified["metadata"]["annotations"]
    patch = create_merge_patch(original, modified)
    assert patch == {"metadata": {"labels": {"tier": "fe"}, "annotations": None}, "spec": {"replicas": 3}}
    assert apply_merge_patch(original, patch) == modified
