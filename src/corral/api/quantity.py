"""Kubernetes resource quantities (``100m``, ``0.5``, ``128Mi``, ``1G``, ``1e3``) as exact numbers. Pure.

The scheduler compares requests against node allocatable in integer units: CPU in millicores, memory and
everything else in whole units (bytes, pods). Like upstream's ``Quantity.MilliValue`` / ``Value``, a
fraction is rounded *up*, so ``0.1m`` of CPU is one millicore and ``1.5`` bytes are two.

Written by hand because the grammar is tiny and no maintained Python library implements it; parsing is
exact (``Fraction``) so ``0.1`` is never ``0.1000000000000000055…``. Exponents are bounded so a hostile
``1e999999999`` cannot make the parser build an enormous integer.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction

__all__ = [
    "QuantityError",
    "QuantityValue",
    "format_bytes",
    "format_millis",
    "parse_quantity",
    "to_millis",
    "to_units",
]

QuantityValue = str | int | float

_MAX_TEXT = 64
_MAX_EXPONENT = 64

_GRAMMAR = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?"
)

_BINARY = {s: 1024 ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_MULTIPLIER: dict[str, Fraction] = {**_DECIMAL, **{k: Fraction(v) for k, v in _BINARY.items()}}


_REGEX_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


class QuantityError(ValueError):
    """The value is not a Kubernetes quantity."""


def parse_quantity(value: QuantityValue) -> Fraction:
    """The exact value of a quantity; JSON numbers are accepted as their decimal text."""
    if isinstance(value, bool):
        raise QuantityError(f"{_REGEX_MESSAGE}, got {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"quantity must be finite, got {value!r}")
        return _parse_text(repr(value))  # the shortest decimal that round-trips, so 0.1 stays 0.1
    if isinstance(value, str):
        return _parse_text(value.strip())
    raise QuantityError(f"a quantity must be a string or a number, got {type(value).__name__}")


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Fraction:
    """Memoised: a cluster uses a handful of distinct quantities ("100m", "128Mi"), read on every pod view
    the scheduler and controllers build; Fractions are immutable, so sharing them is safe (errors are not
    cached and raise every time)."""
    if len(text) > _MAX_TEXT:
        raise QuantityError(f"quantity {text[:_MAX_TEXT]!r}… is too long")
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise QuantityError(f"{_REGEX_MESSAGE}, got {text!r}")
    number = Fraction(match["number"])
    exponent = match["exponent"]
    if exponent is not None:
        power = int(exponent[1:])
        if abs(power) > _MAX_EXPONENT:
            raise QuantityError(f"quantity {text!r} has an exponent out of range")
        return number * Fraction(10) ** power
    return number * _MULTIPLIER[match["suffix"] or ""]


def to_millis(value: QuantityValue) -> int:
    """Thousandths of the quantity, rounded up (CPU millicores)."""
    if isinstance(value, str):
        return _text_millis(value)
    return math.ceil(parse_quantity(value) * 1000)


def to_units(value: QuantityValue) -> int:
    """The quantity in whole units, rounded up (bytes, pods, extended resources)."""
    if isinstance(value, str):
        return _text_units(value)
    return math.ceil(parse_quantity(value))


@functools.lru_cache(maxsize=4096)
def _text_millis(text: str) -> int:
    return math.ceil(parse_quantity(text) * 1000)


@functools.lru_cache(maxsize=4096)
def _text_units(text: str) -> int:
    return math.ceil(parse_quantity(text))


def format_millis(millis: int) -> str:
    """Canonical text for a count of millicores: ``2`` when whole, else ``1500m``."""
    if millis % 1000 == 0:
        return str(millis // 1000)
    return f"{millis}m"


def format_bytes(amount: int) -> str:
    """Canonical text for a byte count: the largest exact binary suffix, else decimal, else plain."""
    if amount == 0:
        return "0"
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        if amount % _BINARY[suffix] == 0:
            return f"{amount // _BINARY[suffix]}{suffix}"
    for suffix in ("E", "P", "T", "G", "M", "k"):
        factor = int(_DECIMAL[suffix])
        if amount % factor == 0:
            return f"{amount // factor}{suffix}"
    return str(amount)
