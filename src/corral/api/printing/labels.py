"""Label sets and ``metav1.LabelSelector`` objects rendered the way apimachinery's ``String()`` methods do.

Three upstream renderings meet in the Table cells, and they differ in small ways kubectl users see:

- ``labels.FormatLabels`` (Service SELECTOR): ``k=v`` pairs sorted as whole strings, ``<none>`` when empty.
- ``LabelSelectorAsSelector(s).String()`` (Deployment SELECTOR): requirements sorted by key, set values
  sorted, ``""`` for a nil or empty selector, an error for an invalid one (the printer shows ``<invalid>``).
- ``metav1.FormatLabelSelector`` (ReplicaSet, Job, CronJob): the same string, ``<none>`` when empty and
  ``<error>`` when invalid.

``corral.api.selectors`` parses and matches selectors; this module only renders them. Pure logic.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from corral.api.selectors import label_key_error, label_value_error

_SET_OPS = {"In": " in ", "NotIn": " notin "}


# Keys and values repeat across the rows of a table (app=web on every Deployment); validating each once
# keeps selector rendering off the profile. Bounded, so odd values cannot grow the caches without limit.
@lru_cache(maxsize=4096)
def _key_ok(key: str) -> bool:
    return label_key_error(key) is None


@lru_cache(maxsize=4096)
def _value_ok(value: str) -> bool:
    return label_value_error(value) is None


def format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: ``a=1,b=2`` (sorted as ``key=value`` strings), ``<none>`` when empty."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(sorted(f"{k}={v}" for k, v in labels.items()))


def selector_string(selector: Any) -> str | None:
    """``metav1.LabelSelectorAsSelector(selector).String()``; None where upstream returns an error.

    A missing (nil) selector selects nothing and an empty one everything; both render as ``""``.
    """
    if not isinstance(selector, Mapping):
        return ""
    match_labels = selector.get("matchLabels")
    expressions = selector.get("matchExpressions")
    if match_labels is not None and not isinstance(match_labels, Mapping):
        return None
    if expressions is not None and not isinstance(expressions, list):
        return None
    if not match_labels and not expressions:
        return ""
    reqs: list[tuple[str, str]] = []
    for key, value in (match_labels or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            return None
        if not _key_ok(key) or not _value_ok(value):
            return None
        reqs.append((key, f"{key}={value}"))
    for expr in expressions or ():
        if not isinstance(expr, Mapping):
            return None
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values")
        if values is None:
            values = []
        if not isinstance(key, str) or not isinstance(op, str) or not isinstance(values, list):
            return None
        if not _key_ok(key):
            return None
        if any(not isinstance(v, str) or not _value_ok(v) for v in values):
            return None
        if op in _SET_OPS:
            if not values:
                return None
            reqs.append((key, f"{key}{_SET_OPS[op]}({','.join(sorted(values))})"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                return None
            reqs.append((key, key if op == "Exists" else f"!{key}"))
        else:
            return None
    # Selector.Add sorts requirements by key only; Python's stable sort keeps declaration order on ties.
    reqs.sort(key=lambda r: r[0])
    return ",".join(r[1] for r in reqs)


def format_label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: the selector, ``<none>`` when empty, ``<error>`` when invalid."""
    text = selector_string(selector)
    if text is None:
        return "<error>"
    return text or "<none>"
