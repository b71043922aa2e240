"""json_copy: an exact, independent deep copy of JSON documents, with deepcopy's answer for anything else."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as stt

from corral.util.jsoncopy import json_copy

JSON_VALUES = stt.recursive(
    stt.none()
    | stt.booleans()
    | stt.integers(min_value=-(2**63), max_value=2**64 - 1)
    | stt.floats(allow_nan=False, allow_infinity=False)
    | stt.text(),
    lambda inner: stt.lists(inner, max_size=4) | stt.dictionaries(stt.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def _shares_nothing(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a is not b and all(_shares_nothing(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return a is not b and all(_shares_nothing(x, y) for x, y in zip(a, b, strict=True))
    return True


@given(JSON_VALUES)
def test_copy_equals_the_original_and_shares_no_container(value: Any) -> None:
    copied = json_copy(value)
    assert copied == value
    assert type(copied) is type(value)
    assert _shares_nothing(value, copied)


def test_values_orjson_cannot_encode_fall_back_to_deepcopy() -> None:
    value = {"big": [2**80], "keys": {1: "int key"}}
    copied = json_copy(value)
    assert copied == value
    assert copied["big"] is not value["big"] and copied["keys"] is not value["keys"]


def test_mutating_the_copy_leaves_the_original_alone() -> None:
    pod = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a"}]}}
    copied = json_copy(pod)
    copied["metadata"]["labels"]["app"] = "other"
    copied["spec"]["containers"].append({"name": "b"})
    assert pod == {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a"}]}}
