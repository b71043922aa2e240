"""Kubernetes ``Status`` error bodies, encoded byte for byte as the Go apiserver does.

Clients compare raw bodies (the Python client's ``ApiException.body``), so key order matters:
``kind, apiVersion, metadata, status, message, reason, details, code``; inside ``details``:
``name, group, kind, uid, causes``; inside a cause: ``reason, message, field``. Empty members are omitted.
:class:`ApiError` is the one exception type handlers raise; the HTTP layer turns it into a response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from corral.api.fielderrors import Cause as Cause
from corral.api.fielderrors import FieldError as FieldError
from corral.api.fielderrors import go_quote
from corral.api.resources import ResourceType


@dataclass(slots=True)
class ApiError(Exception):
    code: int
    reason: str
    message: str
    name: str = ""
    group: str = ""
    kind: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after: int = 0

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        details = _details(self.name, self.group, self.kind, "", [c.to_dict() for c in self.causes])
        if self.retry_after:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        body["code"] = self.code
        return body

    def body(self) -> bytes:
        return encode_status(self.status())


def _details(name: str, group: str, kind: str, uid: str, causes: list[dict[str, str]]) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for key, value in (("name", name), ("group", group), ("kind", kind), ("uid", uid)):
        if value:
            details[key] = value
    if causes:
        details["causes"] = causes
    return details


def encode_status(status: dict[str, Any]) -> bytes:
    """Compact JSON plus the trailing newline Go's encoder writes."""
    return orjson.dumps(status) + b"\n"


def success_status(rt: ResourceType, name: str, uid: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": _details(name, rt.group, rt.plural, uid, []),
    }


# Constructors named after apimachinery's k8s.io/apimachinery/pkg/api/errors.


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.group_resource} "{name}" not found', name, rt.group, rt.plural)


def not_found_url() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def namespace_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{name}" not found', name, "", "namespaces")


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{rt.group_resource} "{name}" already exists', name, rt.group, rt.plural
    )


def conflict(rt: ResourceType, name: str, why: str = "") -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {why}',
        name,
        rt.group,
        rt.plural,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def too_large(limit: int) -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted)
        if content_type
        else "the body of the request was in an unknown format",
    )


def not_acceptable(accepted: list[str]) -> ApiError:
    return ApiError(
        406, "NotAcceptable", f"only the following media types are accepted: {', '.join(accepted)}"
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Gone", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", message)


def invalid(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid, message as ``Deployment.apps "x" is invalid: <path>: <msg>`` (bracketed when several).

    As ``errors.NewInvalid`` with ``ErrorList.ToAggregate``: repeated messages appear once in the summary
    (every cause is kept), and an empty list gives just ``... is invalid``.
    """
    qualified = f"{kind}.{group}" if group else kind
    parts = list(dict.fromkeys(f"{e.path}: {e.message()}" for e in errors))
    message = f"{qualified} {go_quote(name)} is invalid"
    if parts:
        message += ": " + (parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]")
    return ApiError(422, "Invalid", message, name, group, kind, [e.cause() for e in errors])
