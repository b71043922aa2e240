"""ConfigMap and Secret validation: upstream's rules and its exact 422 messages, and no Secret value in them.

Rules and wording follow ``ValidateConfigMap``, ``ValidateSecret`` and their ``...Update`` counterparts in
Kubernetes 1.32 (``field.TooLong`` there says ``may not be more than N bytes``; the ConfigMap size error has
an empty path, printed ``[]``). Messages are checked through ``status.invalid``, the 422 the API returns.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from corral.api.validation import CONFIG_KEY_MSG, config_key_errors, validate_object, validate_update
from corral.apiserver.status import invalid

JSON = dict[str, Any]
MIB = 1024 * 1024
CANARY = "canary-7f3a9c-do-not-print"


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def message(obj: JSON) -> str:
    kind = str(obj["kind"])
    errors = validate_object(kind, obj, namespaced=True)
    return invalid(kind, "", "x", errors).message


def obj_of(kind: str, **fields: Any) -> JSON:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x", "namespace": "d"}, **fields}


@pytest.mark.parametrize(
    ("key", "errors"),
    [
        ("a.b", []),
        ("C_D-e.9", []),
        (".hidden", []),
        ("", [CONFIG_KEY_MSG]),
        ("a b", [CONFIG_KEY_MSG]),
        ("a/b", [CONFIG_KEY_MSG]),
        (".", ["must not be '.'"]),
        ("..", ["must not be '..'"]),
        ("..data", ["must not start with '..'"]),
        ("k" * 254, ["must be no more than 253 characters"]),
    ],
)
def test_config_key_rules(key: str, errors: list[str]) -> None:
    assert config_key_errors(key) == errors


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (obj_of("ConfigMap", data={"k": "v"}, binaryData={"b": b64(b"\xff")}), ""),
        (
            obj_of("ConfigMap", data={"a b": "v"}),
            f'ConfigMap "x" is invalid: data[a b]: Invalid value: "a b": {CONFIG_KEY_MSG}',
        ),
        (
            obj_of("ConfigMap", binaryData={"..": "dg=="}),
            'ConfigMap "x" is invalid: binaryData[..]: Invalid value: "..": must not be \'..\'',
        ),
        (
            obj_of("ConfigMap", data={"": "v"}),
            f'ConfigMap "x" is invalid: data[]: Invalid value: "": {CONFIG_KEY_MSG}',
        ),
        (
            obj_of("ConfigMap", data={"k": "v"}, binaryData={"k": "dg=="}),
            'ConfigMap "x" is invalid: data[k]: Invalid value: "k": duplicate of key present in binaryData',
        ),
        (
            obj_of("ConfigMap", data={"k": "v" * (MIB + 1)}),
            'ConfigMap "x" is invalid: []: Too long: may not be more than 1048576 bytes',
        ),
        # binaryData counts decoded bytes: 1 MiB of content in base64 is within the limit.
        (obj_of("ConfigMap", binaryData={"k": b64(b"\0" * MIB)}), ""),
        (
            obj_of("ConfigMap", data={"a": "v" * MIB}, binaryData={"b": b64(b"\0")}),
            'ConfigMap "x" is invalid: []: Too long: may not be more than 1048576 bytes',
        ),
        # data counts UTF-8 bytes, as Go's len(string) does.
        (
            obj_of("ConfigMap", data={"k": "é" * (MIB // 2 + 1)}),
            'ConfigMap "x" is invalid: []: Too long: may not be more than 1048576 bytes',
        ),
        (obj_of("Secret", data={"k": b64(b"\0" * MIB)}), ""),
        (
            obj_of("Secret", data={"k": b64(b"\0" * (MIB + 1))}),
            'Secret "x" is invalid: data: Too long: may not be more than 1048576 bytes',
        ),
        (
            obj_of("Secret", data={"a/b": b64(CANARY)}),
            f'Secret "x" is invalid: data[a/b]: Invalid value: "a/b": {CONFIG_KEY_MSG}',
        ),
        (
            obj_of("Secret", data={"k": "not base64!"}),
            'Secret "x" is invalid: data[k]: Invalid value: "<secret contents redacted>": '
            "illegal base64 data at input byte 3",
        ),
        (
            obj_of("ConfigMap", binaryData={"k": "YQ=a"}),
            'ConfigMap "x" is invalid: binaryData[k]: Invalid value: "<value omitted>": '
            "illegal base64 data at input byte 0",
        ),
        (obj_of("Secret", data={"k": "YWJj\nZGVm"}), ""),  # line breaks are skipped, as Go's decoder does
        (
            obj_of("Secret", type="kubernetes.io/tls", data={}),
            'Secret "x" is invalid: [data[tls.crt]: Required value, data[tls.key]: Required value]',
        ),
        (
            obj_of("Secret", type="kubernetes.io/basic-auth", data={"password": b64("")}),
            "",
        ),
        (
            obj_of("Secret", type="kubernetes.io/ssh-auth"),
            'Secret "x" is invalid: data[ssh-privatekey]: Required value',
        ),
        (
            obj_of("Secret", type="kubernetes.io/service-account-token"),
            'Secret "x" is invalid: metadata.annotations[kubernetes.io/service-account.name]: Required value',
        ),
    ],
)
def test_create_rules_and_messages(obj: JSON, expected: str) -> None:
    errors = validate_object(str(obj["kind"]), obj, namespaced=True)
    if not expected:
        assert errors == []
    else:
        assert message(obj) == expected


def test_secret_errors_never_carry_values() -> None:
    secret = obj_of(
        "Secret",
        type="kubernetes.io/dockerconfigjson",
        data={
            ".dockerconfigjson": b64(CANARY),
            "bad key": b64(CANARY),
            "big": b64("x" * MIB),
            "plain": CANARY,  # not base64: refused, and the message must not quote it
        },
    )
    errors = validate_object("Secret", secret, namespaced=True)
    assert {(e.path, e.kind) for e in errors} == {
        ("data[.dockerconfigjson]", "Invalid"),
        ("data[bad key]", "Invalid"),
        ("data[plain]", "Invalid"),
        ("data", "TooLong"),
    }
    status = invalid("Secret", "", "x", errors)
    rendered = status.message + " ".join(str(c.to_dict()) for c in status.causes)
    assert CANARY not in rendered and b64(CANARY) not in rendered
    assert "<secret contents redacted>" in rendered


IMMUTABLE = "field is immutable when `immutable` is set"


@pytest.mark.parametrize(
    ("kind", "old", "new", "expected"),
    [
        ("ConfigMap", {"immutable": True, "data": {"a": "1"}}, {"immutable": True, "data": {"a": "1"}}, []),
        # Metadata may change on an immutable object.
        (
            "ConfigMap",
            {"immutable": True, "data": {"a": "1"}},
            {"immutable": True, "data": {"a": "1"}, "metadata": {"labels": {"x": "y"}}},
            [],
        ),
        # An absent map and an empty one are the same content.
        ("ConfigMap", {"immutable": True}, {"immutable": True, "data": {}}, []),
        (
            "ConfigMap",
            {"immutable": True, "data": {"a": "1"}},
            {"immutable": True, "data": {"a": "2"}},
            [f"data: Forbidden: {IMMUTABLE}"],
        ),
        (
            "ConfigMap",
            {"immutable": True, "binaryData": {"b": "dg=="}},
            {"immutable": True},
            [f"binaryData: Forbidden: {IMMUTABLE}"],
        ),
        (
            "ConfigMap",
            {"immutable": True, "data": {"a": "1"}},
            {"immutable": False, "data": {"a": "1"}},
            [f"immutable: Forbidden: {IMMUTABLE}"],
        ),
        (
            "Secret",
            {"immutable": True, "type": "Opaque", "data": {"a": "MQ=="}},
            {"type": "Opaque", "data": {"a": "Mg=="}},
            [f"immutable: Forbidden: {IMMUTABLE}", f"data: Forbidden: {IMMUTABLE}"],
        ),
        # Not immutable: anything may change, and the flag may be set.
        ("ConfigMap", {"data": {"a": "1"}}, {"immutable": True, "data": {"a": "2"}}, []),
    ],
)
def test_immutable_updates(kind: str, old: JSON, new: JSON, expected: list[str]) -> None:
    errors = validate_update(kind, new, old)
    assert [f"{e.path}: {e.message()}" for e in errors] == expected
