"""Status bodies and field errors, byte for byte as the Go apiserver encodes them (reference §6)."""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.api.fielderrors import NIL_STRING_MAP, Cause, FieldError, GoLiteral, go_quote
from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st_
from corral.apiserver.status import ApiError, encode_status, invalid, success_status

SETTINGS = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])

KEY_ORDER = ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]


def resource(api_version: str, kind: str) -> ResourceType:
    rt = REGISTRY.by_kind(api_version, kind)
    assert rt is not None
    return rt


PODS = resource("v1", "Pod")
DEPLOYMENTS = resource("apps/v1", "Deployment")


def test_not_found_bodies_match_the_reference_exactly() -> None:
    assert st_.not_found(PODS, "nope").body() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \\"nope\\" not found",'
        b'"reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}\n'
    )
    assert st_.not_found(DEPLOYMENTS, "x").body() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"deployments.apps \\"x\\" not found","reason":"NotFound",'
        b'"details":{"name":"x","group":"apps","kind":"deployments"},"code":404}\n'
    )


def test_unknown_url_has_no_details() -> None:
    assert st_.not_found_url().body() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"the server could not find the requested resource","reason":"NotFound","code":404}\n'
    )


@pytest.mark.parametrize(
    ("err", "code", "reason", "message"),
    [
        (st_.already_exists(PODS, "solo"), 409, "AlreadyExists", 'pods "solo" already exists'),
        (st_.namespace_not_found("nosuchns"), 404, "NotFound", 'namespaces "nosuchns" not found'),
        (
            st_.conflict(DEPLOYMENTS, "web"),
            409,
            "Conflict",
            'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
            "please apply your changes to the latest version and try again",
        ),
        (
            st_.conflict(PODS, "p", "why not"),
            409,
            "Conflict",
            'Operation cannot be fulfilled on pods "p": why not',
        ),
        (st_.bad_request("nope"), 400, "BadRequest", "nope"),
        (
            st_.method_not_allowed(),
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ),
        (st_.unauthorized(), 401, "Unauthorized", "Unauthorized"),
        (st_.too_large(3145728), 413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728"),
        (
            st_.unsupported_media_type("text/plain", ["application/json", "application/yaml"]),
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml",
        ),
        (
            st_.unsupported_media_type("", ["application/json"]),
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format",
        ),
        (
            st_.not_acceptable(["application/json"]),
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json",
        ),
        (st_.expired("too old resource version: 1 (5)"), 410, "Expired", "too old resource version: 1 (5)"),
        (st_.gone("gone"), 410, "Gone", "gone"),
        (st_.internal("boom"), 500, "InternalError", "Internal error occurred: boom"),
        (st_.timeout("slow"), 504, "Timeout", "slow"),
    ],
)
def test_constructors(err: ApiError, code: int, reason: str, message: str) -> None:
    body = err.status()
    assert (body["code"], body["reason"], body["message"]) == (code, reason, message)
    assert str(err) == message
    assert list(body) == [k for k in KEY_ORDER if k in body]


def test_details_order_and_omission() -> None:
    err = ApiError(
        429,
        "TooManyRequests",
        "slow down",
        name="n",
        group="g",
        kind="k",
        causes=[Cause("R", "m", "f")],
        retry_after=3,
    )
    assert err.body() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"slow down",'
        b'"reason":"TooManyRequests","details":{"name":"n","group":"g","kind":"k",'
        b'"causes":[{"reason":"R","message":"m","field":"f"}],"retryAfterSeconds":3},"code":429}\n'
    )
    assert Cause("R", "m").to_dict() == {"reason": "R", "message": "m"}


def test_success_status() -> None:
    body = success_status(DEPLOYMENTS, "web", "uid-1")
    assert json.dumps(body, separators=(",", ":")) == (
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success",'
        '"details":{"name":"web","group":"apps","kind":"deployments","uid":"uid-1"}}'
    )
    assert "group" not in success_status(PODS, "p", "u")["details"]


def test_encoding_is_compact_with_a_trailing_newline() -> None:
    assert encode_status({"b": 1, "a": [1, 2]}) == b'{"b":1,"a":[1,2]}\n'


# -------------------------------------------------------------------------------------------- 422 Invalid


def test_single_invalid_message() -> None:
    err = invalid(
        "Deployment",
        "apps",
        "x",
        [FieldError("spec.replicas", "Invalid", "must be greater than or equal to 0", -1)],
    )
    assert (
        err.message
        == 'Deployment.apps "x" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0'
    )
    assert err.body() == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"Deployment.apps \\"x\\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",'
        b'"reason":"Invalid","details":{"name":"x","group":"apps","kind":"Deployment","causes":[{"reason":"FieldValueInvalid",'
        b'"message":"Invalid value: -1: must be greater than or equal to 0","field":"spec.replicas"}]},"code":422}\n'
    )


def test_several_invalid_messages_are_bracketed_and_deduplicated() -> None:
    errors = [
        FieldError("metadata.name", "Required", "name or generateName is required"),
        FieldError("spec.containers[0].image", "Required"),
        FieldError("spec.containers[0].image", "Required"),
    ]
    err = invalid("Pod", "", "p", errors)
    assert err.message == (
        'Pod "p" is invalid: [metadata.name: Required value: name or generateName is required, '
        "spec.containers[0].image: Required value]"
    )
    assert len(err.causes) == 3  # causes keep every error, as NewInvalid does
    assert err.status()["details"] == {
        "name": "p",
        "kind": "Pod",
        "causes": [
            {
                "reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required",
                "field": "metadata.name",
            },
            {
                "reason": "FieldValueRequired",
                "message": "Required value",
                "field": "spec.containers[0].image",
            },
            {
                "reason": "FieldValueRequired",
                "message": "Required value",
                "field": "spec.containers[0].image",
            },
        ],
    }


def test_duplicates_collapsing_to_one_message_drop_the_brackets() -> None:
    err = invalid("Pod", "", "p", [FieldError("spec", "Required")] * 2)
    assert err.message == 'Pod "p" is invalid: spec: Required value'


def test_invalid_without_errors() -> None:
    assert invalid("Pod", "", "p", []).message == 'Pod "p" is invalid'


def test_invalid_quotes_names_like_go() -> None:
    assert (
        invalid("ConfigMap", "", 'a"b', [FieldError("x", "Required")]).message
        == 'ConfigMap "a\\"b" is invalid: x: Required value'
    )


# ------------------------------------------------------------------------------------------------ field errors


@pytest.mark.parametrize(
    ("error", "message", "reason"),
    [
        (FieldError("f", "Required"), "Required value", "FieldValueRequired"),
        (FieldError("f", "Required", "why"), "Required value: why", "FieldValueRequired"),
        (FieldError("f", "Forbidden", "no", "ignored"), "Forbidden: no", "FieldValueForbidden"),
        (
            FieldError("f", "TooLong", "must have at most 10 bytes", "x" * 20),
            "Too long: must have at most 10 bytes",
            "FieldValueTooLong",
        ),
        (
            FieldError("f", "Invalid", "bad", "Bad_Name"),
            'Invalid value: "Bad_Name": bad',
            "FieldValueInvalid",
        ),
        (FieldError("f", "Invalid", "bad", None), "Invalid value: null: bad", "FieldValueInvalid"),
        (FieldError("f", "Invalid", "bad", True), "Invalid value: true: bad", "FieldValueInvalid"),
        (FieldError("f", "Invalid", "bad", 2.5), "Invalid value: 2.5: bad", "FieldValueInvalid"),
        (FieldError("f", "Invalid", "", 3), "Invalid value: 3", "FieldValueInvalid"),
        (
            FieldError("f", "NotSupported", 'supported values: "A"', "B"),
            'Unsupported value: "B": supported values: "A"',
            "FieldValueNotSupported",
        ),
        (FieldError("f", "Duplicate", value="http"), 'Duplicate value: "http"', "FieldValueDuplicate"),
        (
            FieldError("f", "Duplicate", value={"port": 80, "protocol": "TCP"}),
            'Duplicate value: {"port":80,"protocol":"TCP"}',
            "FieldValueDuplicate",
        ),
        (
            FieldError("f", "Invalid", "x", {"b": "2", "a": "1"}),
            'Invalid value: map[string]string{"a":"1", "b":"2"}: x',
            "FieldValueInvalid",
        ),
        (FieldError("f", "Invalid", "x", {}), "Invalid value: map[string]string{}: x", "FieldValueInvalid"),
        (
            FieldError("f", "Invalid", "x", NIL_STRING_MAP),
            "Invalid value: map[string]string(nil): x",
            "FieldValueInvalid",
        ),
        (
            FieldError("f", "Invalid", "x", GoLiteral("v1.Thing{}")),
            "Invalid value: v1.Thing{}: x",
            "FieldValueInvalid",
        ),
        (FieldError("f", "Invalid", "x", ["a", 1]), 'Invalid value: ["a",1]: x', "FieldValueInvalid"),
        (FieldError("f", "Invalid", "x", {1, 2}), "Invalid value: {1, 2}: x", "FieldValueInvalid"),
        (FieldError("f", "Mystery", "x", 1), "Invalid value: x", "FieldValueInvalid"),
    ],
)
def test_field_error_messages(error: FieldError, message: str, reason: str) -> None:
    assert error.message() == message
    assert error.cause() == Cause(reason, message, error.path)


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("", '""'),
        ("web", '"web"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("tab\there", '"tab\\there"'),
        ("line\n", '"line\\n"'),
        ("\x00\x1f\x7f", '"\\x00\\x1f\\x7f"'),
        ("\a\b\f\r\v", '"\\a\\b\\f\\r\\v"'),
        ("héllo 世界", '"héllo 世界"'),  # printable runes are kept
        ("\u00a0\u200b", '"\\u00a0\\u200b"'),
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


@SETTINGS
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_go_quote_equals_json_for_printable_ascii(text: str) -> None:
    assert go_quote(text) == json.dumps(text)


@SETTINGS
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_go_quote_unquotes_to_the_original(text: str) -> None:
    # Go's escapes (\a \v \xNN \uNNNN \UNNNNNNNN) are Python escapes too.
    assert ast.literal_eval(go_quote(text)) == text


_VALUES: Any = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)
_ERRORS = st.builds(
    FieldError,
    st.text(max_size=12),
    st.sampled_from(["Invalid", "Required", "Forbidden", "NotSupported", "Duplicate", "TooLong", "TooMany"]),
    st.text(max_size=12),
    _VALUES,
)


@SETTINGS
@given(
    st.text(max_size=10),
    st.sampled_from(["", "apps", "batch"]),
    st.text(max_size=10),
    st.lists(_ERRORS, max_size=5),
)
def test_invalid_bodies_are_well_formed(kind: str, group: str, name: str, errors: list[FieldError]) -> None:
    body = invalid(kind, group, name, errors).body()
    assert body.endswith(b"}\n") and b"\n" not in body[:-1]
    decoded = json.loads(body)
    has_details = bool(name or group or kind or errors)
    assert list(decoded) == [k for k in KEY_ORDER if k != "details" or has_details]
    assert decoded["code"] == 422 and decoded["reason"] == "Invalid"
    assert len(decoded.get("details", {}).get("causes", [])) == len(errors)
    summaries = {f"{e.path}: {e.message()}" for e in errors}
    for summary in summaries:
        assert summary in decoded["message"]
    assert decoded["message"].startswith(f"{kind}.{group}" if group else kind)
    assert decoded["message"].count("[") >= (1 if len(summaries) > 1 else 0)
