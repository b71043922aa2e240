"""Request body decoding: JSON and YAML, alias bombs, nesting limits, multi-document streams."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.apiserver.bodies import (
    MAX_DEPTH,
    BodyError,
    NestingError,
    check_depth,
    decode_body,
    decode_json,
    load_yaml_documents,
)

SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

DEPLOYMENT_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: &labels
    app: web
spec:
  replicas: 2
  selector:
    matchLabels: *labels
  template:
    metadata:
      labels: *labels
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
"""


def _billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = ['a: &a ["lol"' + ', "lol"' * (width - 1) + "]"]
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * width) + "]")
    return "\n".join(lines) + "\n"


def _nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_yaml_with_anchors_decodes() -> None:
    obj = decode_body(DEPLOYMENT_YAML.encode(), "application/yaml")
    assert obj["spec"]["selector"]["matchLabels"] == {"app": "web"}
    assert obj["spec"]["template"]["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]


def test_multi_document_yaml_loads() -> None:
    text = "---\n" + DEPLOYMENT_YAML + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
    docs = load_yaml_documents(text)
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    # A trailing separator opens an empty document; callers (the CLI) skip the None it loads as.
    assert load_yaml_documents(text + "---\n")[2] is None


def test_empty_documents_in_a_stream_load_as_none() -> None:
    assert load_yaml_documents("---\n---\na: 1\n") == [None, {"a": 1}]
    assert load_yaml_documents("") == []


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", {"a": 1}),
        (b"[1, 2]", "application/json-patch+json", [1, 2]),
        (b'{"a": 1}', "application/apply-patch+yaml", {"a": 1}),  # apply bodies may be JSON
        (b'  \n{"a": [1]}', "application/yaml", {"a": [1]}),
        (b"{a: 1}", "application/yaml", {"a": 1}),  # YAML flow style is not JSON; falls back to YAML
        (b"a: 1\nb: [x, y]\n", "application/apply-patch+yaml", {"a": 1, "b": ["x", "y"]}),
        (b"a: '1'\n", "application/yaml", {"a": "1"}),
        (_nested_json(MAX_DEPTH), "application/json", _nested_json(MAX_DEPTH)),
    ],
)
def test_decode_body(body: bytes, content_type: str, expected: Any) -> None:
    if isinstance(expected, bytes):
        expected = orjson.loads(expected)
    assert decode_body(body, content_type) == expected


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"{", "application/json", "json parse error"),
        (b"", "application/json", "json parse error"),
        (b"\xff", "application/json", "json parse error"),
        (b"\xff", "application/yaml", "not valid UTF-8"),
        (b"a: [", "application/yaml", "error converting YAML to JSON"),
        (b"a: 1\n---\nb: 2\n", "application/yaml", "expected exactly one YAML document, found 2"),
        (b"", "application/yaml", "found 0"),
        (b"!!python/object/apply:os.system ['true']", "application/yaml", "error converting YAML to JSON"),
        (_nested_json(MAX_DEPTH + 1), "application/json", "nested deeper than 100"),
        (_nested_json(5000), "application/json", "nested deeper than 100"),
        (_nested_json(5000), "application/yaml", "nested deeper than 100"),
        (
            b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 150)),
            "application/yaml",
            "nested deeper than 100",
        ),
    ],
)
def test_decode_body_rejects(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(BodyError, match=message):
        decode_body(body, content_type)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # As sigs.k8s.io/yaml: timestamps stay the text written (even impossible dates), keys become strings.
        (b"d: 2024-01-01\n", {"d": "2024-01-01"}),
        (b"d: 2024-13-45\n", {"d": "2024-13-45"}),
        (b"d: 2024-01-01T10:00:00Z\n", {"d": "2024-01-01T10:00:00Z"}),
        (b"data:\n  80: http\n  8.5: x\n  true: y\n", {"data": {"80": "http", "8.5": "x", "true": "y"}}),
        (b"a: [1, 2.5, true, null, x]\n", {"a": [1, 2.5, True, None, "x"]}),
    ],
)
def test_yaml_values_become_json_values(body: bytes, expected: Any) -> None:
    assert decode_body(body, "application/yaml") == expected


@pytest.mark.parametrize(
    "body",
    [
        b"a: " + b"9" * 5000,  # int() refuses this many digits: a client error, not a 500
        b"a: .inf",
        b"a: .nan",
        b"a: !!set {x}",
        b"a: !!binary aGk=",
        b"a: !!timestamp 2024-01-01",
        b"a: {null: 1}",
        b"? [1]\n: x\n",
    ],
)
def test_yaml_values_json_cannot_hold_are_body_errors(body: bytes) -> None:
    with pytest.raises(BodyError, match="error converting YAML to JSON"):
        decode_body(body, "application/yaml")


def test_billion_laughs_is_rejected_quickly() -> None:
    body = _billion_laughs().encode()
    start = time.perf_counter()
    with pytest.raises(BodyError, match="expands to more than"):
        decode_body(body, "application/yaml")
    assert time.perf_counter() - start < 0.5


def test_alias_fan_out_within_the_limit_loads() -> None:
    docs = load_yaml_documents(_billion_laughs(levels=3, width=9))
    assert len(docs[0]["c"]) == 9 and len(docs[0]["c"][0]) == 9


@pytest.mark.parametrize(
    "body",
    [
        _nested_json(1_000_000),  # deeper than orjson's own limit
        b"[a, " * 500_000,  # not JSON, so it goes to the YAML parser
        b"- " * 1_000_000 + b"x",
        b"{a: " * 500_000,
    ],
    ids=["json", "flow-yaml", "block-yaml", "mapping-yaml"],
)
def test_deep_bodies_are_rejected_quickly(body: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(BodyError):
        decode_body(body, "application/yaml")
    # Generous for a shared 2-core machine; the point is "not seconds or a crash".
    assert time.perf_counter() - start < 3


def test_deep_json_with_a_yaml_content_type_is_not_reparsed_as_yaml() -> None:
    with pytest.raises(NestingError):
        decode_body(_nested_json(2000), "application/apply-patch+yaml")


def test_check_depth() -> None:
    check_depth({"a": [{"b": 1}]}, limit=4)
    with pytest.raises(NestingError):
        check_depth({"a": [{"b": 1}]}, limit=3)
    check_depth(1, limit=1)


def test_decode_json_is_plain() -> None:
    assert decode_json(b'{"kind":"Pod","n":1.5,"t":true,"x":null}') == {
        "kind": "Pod",
        "n": 1.5,
        "t": True,
        "x": None,
    }


# ---------------------------------------------------------------------------------------------- properties

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)


@SETTINGS
@given(_JSON)
def test_json_and_yaml_round_trip(value: Any) -> None:
    assert decode_body(orjson.dumps(value), "application/json") == value
    assert decode_body(yaml.safe_dump(value).encode(), "application/yaml") == value
    assert load_yaml_documents(yaml.safe_dump_all([value, value])) == [value, value]


@SETTINGS
@given(st.binary(max_size=200) | st.text(alphabet="{}[]:,-&*!'\"\n #ab1", max_size=200).map(str.encode))
def test_decode_body_raises_only_body_error(raw: bytes) -> None:
    for content_type in ("application/json", "application/yaml"):
        with contextlib.suppress(BodyError):
            decode_body(raw, content_type)
