"""Field errors: one validation failure at a Kubernetes field path (``field.Error`` in apimachinery).

Validation produces these; the API layer turns a list of them into a 422 ``Invalid`` Status with one cause
each. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson


@dataclass(frozen=True, slots=True)
class Cause:
    reason: str
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation failure at a field path; ``kind`` mirrors field.ErrorType in apimachinery."""

    path: str
    kind: str  # Invalid | Required | Forbidden | NotSupported | Duplicate | TooLong | TooMany
    detail: str = ""
    value: Any = None

    _REASONS: ClassVar[dict[str, tuple[str, str]]] = {
        "Invalid": ("FieldValueInvalid", "Invalid value"),
        "Required": ("FieldValueRequired", "Required value"),
        "Forbidden": ("FieldValueForbidden", "Forbidden"),
        "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
        "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
        "TooLong": ("FieldValueTooLong", "Too long"),
        "TooMany": ("FieldValueTooMany", "Too many"),
    }

    def message(self) -> str:
        _, label = self._REASONS.get(self.kind, ("FieldValueInvalid", "Invalid value"))
        text = label
        if self.kind in ("Invalid", "NotSupported", "Duplicate"):
            text += f": {_go_value(self.value)}"
        if self.detail:
            text += f": {self.detail}"
        return text

    def cause(self) -> Cause:
        reason, _ = self._REASONS.get(self.kind, ("FieldValueInvalid", ""))
        return Cause(reason, self.message(), self.path)


def _go_value(value: Any) -> str:
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value).decode()
