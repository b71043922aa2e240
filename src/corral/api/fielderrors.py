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


@dataclass(frozen=True, slots=True)
class GoLiteral:
    """A value that messages print verbatim: Go renderings JSON cannot express, such as a nil map."""

    text: str


NIL_STRING_MAP = GoLiteral("map[string]string(nil)")


def go_quote(text: str) -> str:
    """Go's ``%q`` (``strconv.Quote``): printable runes kept, the rest escaped as Go does."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_value(value: Any) -> str:
    """The bad value as ``field.Error.ErrorBody`` prints it (%q for strings, %v for numbers, %#v maps)."""
    if isinstance(value, GoLiteral):
        return value.text
    if isinstance(value, str):
        return go_quote(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        # Labels and matchLabels are map[string]string upstream; %#v sorts the keys.
        items = ", ".join(f"{go_quote(k)}:{go_quote(v)}" for k, v in sorted(value.items()))
        return f"map[string]string{{{items}}}"
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)
