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
        # A non-string value (only in an object that fails validation) equals no selector value.
        equal = present and isinstance(labels[self.key], str) and labels[self.key] in self.values
        if self.op in (Op.EQ, Op.IN):
            return equal
        # != and notin match objects without the label too, as in Kubernetes.
        return not equal


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|[^\s!=(),]+)")


_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def label_key_errors(key: str) -> list[str]:
    """Every reason ``key`` is not a valid label key (``validation.IsQualifiedName``); empty when valid."""
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        return [
            "a qualified name " + _QUALIFIED_NAME_MSG + " with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUBDOMAIN.fullmatch(prefix):
                errs.append("prefix part " + _SUBDOMAIN_MSG)
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME.fullmatch(name):
        errs.append("name part " + _QUALIFIED_NAME_MSG)
    return errs


def label_key_error(key: str) -> str | None:
    """Why ``key`` is not a valid label key (messages joined by "; "), or None."""
    return "; ".join(label_key_errors(key)) or None


def label_value_errors(value: str) -> list[str]:
    """Every reason ``value`` is not a valid label value (``validation.IsValidLabelValue``)."""
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def label_value_error(value: str) -> str | None:
    return "; ".join(label_value_errors(value)) or None


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
                # As apimachinery's parseValues: "()" is {""}, and an empty item ("(a,,b)", "(,a)") is "".
                values: set[str] = set()
                j = i + 3
                expect_value = True
                while need(j) != ")":
                    if toks[j] == ",":
                        if expect_value:
                            values.add("")
                        expect_value = True
                    elif not expect_value or toks[j] in ("(", "=", "==", "!=", "!"):
                        raise SelectorError(f"found '{toks[j]}', expected: ',' or ')' in selector {text!r}")
                    else:
                        _check_value(toks[j])
                        values.add(toks[j])
                        expect_value = False
                    j += 1
                if expect_value:
                    values.add("")
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
            if i == len(toks):
                raise SelectorError(f"found '', expected: identifier after ',' in selector {text!r}")
    return LabelSelector(tuple(reqs))


def _check_key(key: str) -> None:
    # "in" and "notin" are operators only after a key; as keys they are identifiers, as in apimachinery.
    if key in ("=", "==", "!=", "!", "(", ")", ","):
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

    An empty selector object matches everything, as in apimachinery's ``LabelSelectorAsSelector``; like it,
    a malformed selector (unknown operator, ``In`` without values, ``Exists`` with values, invalid keys or
    values, wrong shapes) raises :class:`SelectorError`.
    """
    if not selector:
        return LabelSelector()
    if not isinstance(selector, Mapping):
        raise SelectorError("a label selector must be an object")
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        raise SelectorError("matchLabels must be an object and matchExpressions a list")
    reqs: list[Requirement] = []
    for key, value in sorted(match_labels.items(), key=lambda kv: str(kv[0])):
        if not isinstance(value, str):
            raise SelectorError(f"matchLabels value for {key!r} must be a string")
        _check_key(str(key))
        _check_value(value)
        reqs.append(Requirement(str(key), Op.EQ, frozenset([value])))
    ops = {"In": Op.IN, "NotIn": Op.NOTIN, "Exists": Op.EXISTS, "DoesNotExist": Op.NOT_EXISTS}
    for expr in expressions:
        if not isinstance(expr, Mapping):
            raise SelectorError("a matchExpressions entry must be an object")
        operator = expr.get("operator", "")
        op = ops.get(operator) if isinstance(operator, str) else None
        if op is None:
            raise SelectorError(f"{operator!r} is not a valid label selector operator")
        values = expr.get("values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SelectorError("matchExpressions values must be a list of strings")
        if op in (Op.IN, Op.NOTIN) and not values:
            raise SelectorError("for 'in', 'notin' operators, values set can't be empty")
        if op in (Op.EXISTS, Op.NOT_EXISTS) and values:
            raise SelectorError("values set must be empty for exists and does not exist")
        key = str(expr.get("key", ""))
        _check_key(key)
        for value in values:
            _check_value(value)
        reqs.append(Requirement(key, op, frozenset(values)))
    return LabelSelector(tuple(reqs))


def format_selector_object(selector: Mapping[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: ``app=web,tier in (a,b)``; ``<none>`` for nil or empty.

    Like apimachinery's selector ``String()``, requirements are ordered by key (stable for equal keys).
    """
    if not selector:
        return "<none>"
    parts: list[tuple[str, str]] = [
        (str(k), f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append((key, f"{key} in ({','.join(sorted(values))})"))
        elif op == "NotIn":
            parts.append((key, f"{key} notin ({','.join(sorted(values))})"))
        elif op == "Exists":
            parts.append((key, key))
        elif op == "DoesNotExist":
            parts.append((key, f"!{key}"))
    parts.sort(key=lambda part: part[0])
    return ",".join(text for _, text in parts) or "<none>"


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
        split = _split_term(term)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        key, separator, value = split
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
    if escaped:
        current.append("\\")
    parts.append("".join(current))
    return parts


def _split_term(term: str) -> tuple[str, str, str] | None:
    """Split at the first operator, as apimachinery's ``splitTerm`` does (``a=b!=c`` is ``a`` = ``b!=c``)."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def _unescape(value: str) -> str:
    r"""``fields.UnescapeValue``: ``\\``, ``\,`` and ``\=`` are escapes; others (and a bare ``=``) fail."""
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character: {ch!r}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


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
