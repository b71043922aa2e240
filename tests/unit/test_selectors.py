"""Label and field selectors: parsing, matching and formatting, checked against apimachinery's behaviour."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.selectors import (
    FieldSelector,
    LabelSelector,
    Op,
    Requirement,
    SelectorError,
    field_value,
    format_selector_object,
    label_key_error,
    label_key_errors,
    label_value_error,
    parse_field_selector,
    parse_label_selector,
    selector_from_object,
)

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

WEB = {"app": "web", "tier": "front"}
DB = {"app": "db", "tier": "back"}
BARE: dict[str, str] = {}

# ------------------------------------------------------------------------------------------ label parsing


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", WEB, True),
        ("   ", WEB, True),
        ("app=web", WEB, True),
        ("app=web", DB, False),
        ("app==web", WEB, True),
        ("app = web", WEB, True),
        ("app!=web", WEB, False),
        ("app!=web", DB, True),
        ("app!=web", BARE, True),  # != matches objects without the label, as in Kubernetes
        ("app in (web,db)", DB, True),
        ("app in (web, db)", WEB, True),
        ("app in (x)", WEB, False),
        ("app in (web)", BARE, False),
        ("app notin (web)", WEB, False),
        ("app notin (web)", DB, True),
        ("app notin (web)", BARE, True),
        ("app", WEB, True),
        ("app", BARE, False),
        ("!app", BARE, True),
        ("!app", WEB, False),
        ("app=web,tier=front", WEB, True),
        ("app=web,tier=back", WEB, False),
        ("app,!missing", WEB, True),
        ("app=", {"app": ""}, True),
        ("app=", WEB, False),
        ("app in ()", {"app": ""}, True),  # "()" is the set {""} upstream
        ("app in ()", WEB, False),
        ("app in (web,,db)", {"app": ""}, True),
        ("app in (,web)", {"app": ""}, True),
        ("app in (web,)", {"app": ""}, True),
        ("x in (in,notin)", {"x": "notin"}, True),  # keywords are plain values inside parentheses
        ("in", {"in": "1"}, True),  # ... and plain keys at the start of a requirement
        ("in in (a)", {"in": "a"}, True),
        ("example.com/role=api", {"example.com/role": "api"}, True),
        ("a=b\t,\tc", {"a": "b", "c": "1"}, True),
    ],
)
def test_label_selector_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


@pytest.mark.parametrize(
    "text",
    [
        ",a",
        "a=b,",  # apimachinery: "found '', expected: identifier after ','"
        "a b",
        "a=b=c",
        "a in",
        "a in (x",
        "a in x",
        "a in (x y)",  # values need commas
        "a in (x=y)",
        "!",
        "!!a",
        "!a=b",
        "a=(",
        "a=!",
        "-bad=x",
        "a=-bad",
        "a/b/c",
        "/a",
        "Upper.Prefix/a",
        "a=" + "v" * 64,
        "k" * 64,
        "a==b==c",
        "(",
        ")",
    ],
)
def test_label_selector_rejects(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_parsed_requirements_have_the_expected_operators() -> None:
    reqs = parse_label_selector("a=1,b!=2,c in (x,y),d notin (z),e,!f").requirements
    assert reqs == (
        Requirement("a", Op.EQ, frozenset({"1"})),
        Requirement("b", Op.NE, frozenset({"2"})),
        Requirement("c", Op.IN, frozenset({"x", "y"})),
        Requirement("d", Op.NOTIN, frozenset({"z"})),
        Requirement("e", Op.EXISTS),
        Requirement("f", Op.NOT_EXISTS),
    )


def test_empty_selector_matches_none_labels() -> None:
    assert LabelSelector().empty
    assert LabelSelector().matches(None)
    assert not parse_label_selector("a").empty
    assert not parse_label_selector("a").matches(None)
    assert parse_label_selector("!a").matches(None)


# ------------------------------------------------------------------------------------ label key/value rules


@pytest.mark.parametrize(
    ("key", "valid"),
    [
        ("app", True),
        ("App_1.x-y", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("example.com/app", True),
        ("kubernetes.io/metadata.name", True),
        ("a.b-c/d", True),
        ("Example.com/app", False),  # the prefix is a lower-case DNS subdomain
        ("/app", False),
        ("example.com/", False),
        ("a/b/c", False),
        ("", False),
        ("-app", False),
        ("app-", False),
        ("app\n", False),  # "$" in a Python regex would accept a trailing newline
        ("ap p", False),
        ("x" * 254 + "/a", False),
    ],
)
def test_label_key_rules(key: str, valid: bool) -> None:
    assert (label_key_error(key) is None) is valid


@pytest.mark.parametrize(
    ("key", "messages"),
    [
        ("/a", ["prefix part must be non-empty"]),
        ("a" * 64, ["name part must be no more than 63 characters"]),
        ("", ["name part must be non-empty", "name part must consist of"]),
        ("Bad_Prefix/a", ["prefix part a lowercase RFC 1123 subdomain must consist of"]),
        ("a/b/c", ["a qualified name must consist of"]),
        ("-a", ["name part must consist of alphanumeric characters"]),
    ],
)
def test_label_key_messages_follow_is_qualified_name(key: str, messages: list[str]) -> None:
    errs = label_key_errors(key)
    assert len(errs) == len(messages)
    for err, start in zip(errs, messages, strict=True):
        assert err.startswith(start)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("", True),
        ("web", True),
        ("1.2_3-4", True),
        ("v" * 63, True),
        ("v" * 64, False),
        ("-web", False),
        ("web-", False),
        ("a b", False),
        ("a/b", False),
        ("web\n", False),
    ],
)
def test_label_value_rules(value: str, valid: bool) -> None:
    assert (label_value_error(value) is None) is valid


# ------------------------------------------------------------------------------------ selector objects


@pytest.mark.parametrize(
    ("obj", "labels", "expected"),
    [
        (None, WEB, True),
        ({}, WEB, True),  # empty selector object: everything (LabelSelectorAsSelector)
        ({"matchLabels": {}}, WEB, True),
        ({"matchLabels": {"app": "web"}}, WEB, True),
        ({"matchLabels": {"app": "web"}}, DB, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "x"]}]}, DB, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, DB, False),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, BARE, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, BARE, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, BARE, True),
        (
            {
                "matchLabels": {"tier": "front"},
                "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}],
            },
            WEB,
            True,
        ),
        (
            {
                "matchLabels": {"tier": "back"},
                "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}],
            },
            WEB,
            False,
        ),
    ],
)
def test_selector_from_object(obj: dict[str, Any] | None, labels: dict[str, str], expected: bool) -> None:
    assert selector_from_object(obj).matches(labels) is expected


@pytest.mark.parametrize(
    "obj",
    [
        {"matchExpressions": [{"key": "a", "operator": "Maybe"}]},
        {"matchExpressions": [{"key": "a", "operator": "In"}]},  # In needs values
        {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
        {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
        {"matchExpressions": [1]},
        {"matchExpressions": {"key": "a"}},
        {"matchExpressions": [{"key": "a", "operator": "In", "values": [{"x": 1}]}]},
        {"matchExpressions": [{"key": "a", "operator": ["In"], "values": ["x"]}]},
        {"matchExpressions": [{"key": "bad key", "operator": "Exists"}]},
        {"matchLabels": [1]},
        {"matchLabels": {"a": 1}},
        {"matchLabels": {"a": "bad value"}},
        {"matchLabels": {"-a": "x"}},
    ],
)
def test_selector_from_object_rejects_malformed(obj: dict[str, Any]) -> None:
    with pytest.raises(SelectorError):
        selector_from_object(obj)


@pytest.mark.parametrize(
    ("obj", "text"),
    [
        (None, "<none>"),
        ({}, "<none>"),
        ({"matchLabels": {}}, "<none>"),
        ({"matchLabels": {"app": "web"}}, "app=web"),
        ({"matchLabels": {"tier": "a", "app": "web"}}, "app=web,tier=a"),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["b", "a"]}]}, "app in (a,b)"),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["x"]}]}, "app notin (x)"),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, "app"),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, "!app"),
        # Requirements are sorted by key across matchLabels and matchExpressions, as selector.String() does.
        (
            {"matchLabels": {"z": "1"}, "matchExpressions": [{"key": "a", "operator": "Exists"}]},
            "a,z=1",
        ),
    ],
)
def test_format_selector_object(obj: dict[str, Any] | None, text: str) -> None:
    assert format_selector_object(obj) == text


# ------------------------------------------------------------------------------------------ field selectors

ALLOWED = {"metadata.name", "metadata.namespace", "status.phase", "spec.nodeName", "involvedObject.kind"}


def _fields(values: dict[str, str]) -> Any:
    return lambda path: values.get(path, "")


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("", {}, True),
        ("metadata.name=web", {"metadata.name": "web"}, True),
        ("metadata.name==web", {"metadata.name": "web"}, True),
        ("metadata.name=web", {"metadata.name": "db"}, False),
        ("metadata.name!=web", {"metadata.name": "db"}, True),
        ("metadata.name!=web", {"metadata.name": "web"}, False),
        ("spec.nodeName=", {}, True),  # unscheduled pods: an empty value matches a missing field
        ("spec.nodeName!=", {"spec.nodeName": "n1"}, True),
        ("status.phase=Running,spec.nodeName=n1", {"status.phase": "Running", "spec.nodeName": "n1"}, True),
        ("status.phase=Running,spec.nodeName=n1", {"status.phase": "Running", "spec.nodeName": "n2"}, False),
        (r"metadata.name=a\,b", {"metadata.name": "a,b"}, True),
        (r"metadata.name=a\=b", {"metadata.name": "a=b"}, True),
        (r"metadata.name=a\\b", {"metadata.name": "a\\b"}, True),
        (
            "involvedObject.kind=Pod,,metadata.name=x",
            {"involvedObject.kind": "Pod", "metadata.name": "x"},
            True,
        ),
    ],
)
def test_field_selector_matches(text: str, values: dict[str, str], expected: bool) -> None:
    assert parse_field_selector(text, ALLOWED).matches(_fields(values)) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "can't understand"),
        ("spec.unknown=x", "field label not supported: spec.unknown"),
        ("metadata.name=a=b", "unescaped"),  # the first operator splits (splitTerm); "=" must be escaped
        ("metadata.name=a!=b", "unescaped"),
        (r"metadata.name=a\x", "invalid escape sequence"),
        ("metadata.name=a\\", "invalid escape sequence"),
        ("metadata.name>1", "can't understand"),
    ],
)
def test_field_selector_rejects(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        parse_field_selector(text, ALLOWED)


def test_field_selector_exact_names_the_first_equality() -> None:
    sel = parse_field_selector("metadata.name!=x,metadata.name=web,status.phase=Running", ALLOWED)
    assert sel.exact("metadata.name") == "web"
    assert sel.exact("status.phase") == "Running"
    assert sel.exact("spec.nodeName") is None
    assert FieldSelector().exact("metadata.name") is None


@pytest.mark.parametrize(
    ("obj", "path", "value"),
    [
        ({"metadata": {"name": "x"}}, "metadata.name", "x"),
        ({"metadata": {}}, "metadata.name", ""),
        ({}, "spec.nodeName", ""),
        ({"spec": "oops"}, "spec.nodeName", ""),
        ({"spec": {"unschedulable": True}}, "spec.unschedulable", "true"),
        ({"spec": {"unschedulable": False}}, "spec.unschedulable", "false"),
        ({"status": {"replicas": 3}}, "status.replicas", "3"),
        ({"source": {"component": "kubelet", "host": "n1"}}, "source", "kubelet"),
        ({"source": {}}, "source", ""),
        ({"spec": {"nodeName": None}}, "spec.nodeName", ""),
    ],
)
def test_field_value(obj: dict[str, Any], path: str, value: str) -> None:
    assert field_value(obj, path) == value


# ---------------------------------------------------------------------------------------------- properties

_KEYS = st.sampled_from(["app", "tier", "env", "example.com/role", "in", "x"])
_VALUES = st.sampled_from(["", "web", "db", "a", "v1.2", "in"])
_LABELS = st.dictionaries(_KEYS, _VALUES, max_size=5)


@st.composite
def _expressions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
    expr: dict[str, Any] = {"key": draw(_KEYS), "operator": op}
    if op in ("In", "NotIn"):
        expr["values"] = draw(st.lists(_VALUES, min_size=1, max_size=3))
    return expr


_SELECTOR_OBJECTS = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(_KEYS, _VALUES, max_size=3),
        "matchExpressions": st.lists(_expressions(), max_size=3),
    },
)


@SETTINGS
@given(_SELECTOR_OBJECTS, st.lists(_LABELS, min_size=1, max_size=5))
def test_formatted_selector_parses_to_the_same_selector(obj: dict[str, Any], label_sets: list[Any]) -> None:
    text = format_selector_object(obj)
    parsed = parse_label_selector("" if text == "<none>" else text)
    direct = selector_from_object(obj)
    for labels in label_sets:
        assert parsed.matches(labels) == direct.matches(labels)


@st.composite
def _requirements(draw: st.DrawFn) -> Requirement:
    op = draw(st.sampled_from(list(Op)))
    values: frozenset[str] = frozenset()
    if op in (Op.EQ, Op.NE):
        values = frozenset([draw(_VALUES)])
    elif op in (Op.IN, Op.NOTIN):
        values = frozenset(draw(st.lists(_VALUES, min_size=1, max_size=3)))
    return Requirement(draw(_KEYS), op, values)


def _render(req: Requirement) -> str:
    if req.op is Op.EXISTS:
        return req.key
    if req.op is Op.NOT_EXISTS:
        return f"!{req.key}"
    if req.op in (Op.EQ, Op.NE):
        return f"{req.key}{req.op.value}{next(iter(req.values))}"
    return f"{req.key} {req.op.value} ({','.join(sorted(req.values))})"


@SETTINGS
@given(st.lists(_requirements(), max_size=5), _LABELS)
def test_selector_is_the_conjunction_of_its_requirements(reqs: list[Requirement], labels: Any) -> None:
    selector = LabelSelector(tuple(reqs))
    assert selector.matches(labels) == all(LabelSelector((r,)).matches(labels) for r in reqs)


@SETTINGS
@given(st.lists(_requirements(), min_size=1, max_size=5))
def test_rendered_requirements_parse_back(reqs: list[Requirement]) -> None:
    assert parse_label_selector(",".join(_render(r) for r in reqs)).requirements == tuple(reqs)


@SETTINGS
@given(st.text(alphabet="ab=!(),  in\t\\/.-_x", max_size=30) | st.text(max_size=30))
def test_label_selector_parser_raises_only_selector_error(text: str) -> None:
    with contextlib.suppress(SelectorError):
        parse_label_selector(text)


@SETTINGS
@given(st.text(max_size=30) | st.text(alphabet="metadata.name=!\\,x", max_size=30))
def test_field_selector_parser_raises_only_selector_error(text: str) -> None:
    with contextlib.suppress(SelectorError):
        parse_field_selector(text, ALLOWED)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@SETTINGS
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20).map(str.strip))
def test_escaped_field_values_round_trip(value: str) -> None:
    sel = parse_field_selector(f"metadata.name={_escape(value)}", ALLOWED)
    assert sel.exact("metadata.name") == value.strip()
