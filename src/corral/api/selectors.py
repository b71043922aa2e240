"""Label and field selectors: parsing the query-string syntax and matching objects. Pure logic.

Label selector syntax (``labels.Parse`` in apimachinery): comma-separated requirements, each one of
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not exist).
Field selectors allow ``=``, ``==`` and ``!=`` only, on the fields a kind declares.
Both are hand-written because no maintained Python library speaks this grammar.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector string or object that does not parse; the message names the problem."""


class Op(enum.StrEnum):
    EQ = "="
    NE = "!="
    IN = "in"
    NOTIN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op is Op.EXISTS:
            return present
        if self.op is Op.NOT_EXISTS:
            return not present
        if self.op in (Op.EQ, Op.IN):
            return present and labels[self.key] in self.values
        # != and notin match objects without the label too, as in Kubernetes.
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|[^\s!=(),]+)")


def label_key_error(key: str) -> str | None:
    """Why ``key`` is not a valid label key, or None."""
    if not key:
        return "name part must be non-empty"
    prefix, _, name = key.rpartition("/")
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if prefix and len(prefix) > 253:
        return "prefix part must be no more than 253 characters"
    if not _LABEL_KEY.match(key):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        )
    return None


def label_value_error(value: str) -> str | None:
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _LABEL_VALUE.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
            "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        )
    return None


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise SelectorError(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query syntax."""
    if not text or not text.strip():
        return LabelSelector()
    toks = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def need(pos: int) -> str:
        if pos >= len(toks):
            raise SelectorError(f"unable to parse requirement: unexpected end of selector {text!r}")
        return toks[pos]

    while i < len(toks):
        tok = toks[i]
        if tok == "!":
            key = need(i + 1)
            _check_key(key)
            reqs.append(Requirement(key, Op.NOT_EXISTS))
            i += 2
        else:
            key = tok
            _check_key(key)
            nxt = toks[i + 1] if i + 1 < len(toks) else ","
            if nxt == ",":
                reqs.append(Requirement(key, Op.EXISTS))
                i += 1
            elif nxt in ("=", "==", "!="):
                value = toks[i + 2] if i + 2 < len(toks) and toks[i + 2] != "," else ""
                _check_value(value)
                reqs.append(Requirement(key, Op.NE if nxt == "!=" else Op.EQ, frozenset([value])))
                i += 3 if value else 2
            elif nxt in ("in", "notin"):
                if need(i + 2) != "(":
                    raise SelectorError(f"found '{toks[i + 2]}', expected: '(' in selector {text!r}")
                values: list[str] = []
                j = i + 3
                while need(j) != ")":
                    if toks[j] != ",":
                        _check_value(toks[j])
                        values.append(toks[j])
                    j += 1
                reqs.append(Requirement(key, Op.IN if nxt == "in" else Op.NOTIN, frozenset(values)))
                i = j + 1
            else:
                raise SelectorError(
                    f"found '{nxt}', expected: in, notin, =, ==, !=, ',' or end of string "
                    f"in selector {text!r}"
                )
        if i < len(toks):
            if toks[i] != ",":
                raise SelectorError(f"found '{toks[i]}', expected: ',' or end of string in selector {text!r}")
            i += 1
    return LabelSelector(tuple(reqs))


def _check_key(key: str) -> None:
    if key in ("=", "==", "!=", "(", ")", ",", "in", "notin"):
        raise SelectorError(f"found '{key}', expected: identifier")
    err = label_key_error(key)
    if err:
        raise SelectorError(f"invalid label key {key!r}: {err}")


def _check_value(value: str) -> None:
    err = label_value_error(value)
    if err:
        raise SelectorError(f"invalid label value: {value!r}: {err}")


def selector_from_object(selector: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions) as a :class:`LabelSelector`.

    An empty selector object matches everything, as in apimachinery's ``LabelSelectorAsSelector``.
    """
    if not selector:
        return LabelSelector()
    reqs: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key, Op.EQ, frozenset([str(value)])))
    ops = {"In": Op.IN, "NotIn": Op.NOTIN, "Exists": Op.EXISTS, "DoesNotExist": Op.NOT_EXISTS}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(str(expr.get("key", "")), op, frozenset(expr.get("values") or [])))
    return LabelSelector(tuple(reqs))


def format_selector_object(selector: Mapping[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: ``app=web,tier in (a,b)``; ``<none>`` for nil or empty."""
    if not selector:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    value: str
    negate: bool


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, fields: Callable[[str], str]) -> bool:
        for req in self.requirements:
            equal = fields(req.field) == req.value
            if equal == req.negate:
                return False
        return True

    def exact(self, field: str) -> str | None:
        """The value required by an ``=`` term on ``field``, if any (lets the server narrow a LIST)."""
        for req in self.requirements:
            if req.field == field and not req.negate:
                return req.value
        return None


def parse_field_selector(text: str | None, allowed: set[str]) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(text):
        term = term.strip()
        if not term:
            continue
        separator = next((sep for sep in ("!=", "==", "=") if sep in term), None)
        if separator is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        key, value = term.split(separator, 1)
        negate = separator == "!="
        key = key.strip()
        if key not in allowed:
            raise SelectorError(f"field label not supported: {key}")
        reqs.append(FieldRequirement(key, _unescape(value.strip()), negate))
    return FieldSelector(tuple(reqs))


def _split_unescaped(text: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string a field selector compares for ``path`` (``spec.nodeName``); missing fields are ``""``."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
        if current is None:
            return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, Mapping):
        # Event's "source" selector compares source.component.
        return str(current.get("component", ""))
    return str(current)
