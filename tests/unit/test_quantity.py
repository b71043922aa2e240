"""Kubernetes quantities: the grammar, exact values, rounding up, and round trips through the formatters."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.api.quantity import (
    QuantityError,
    format_bytes,
    format_millis,
    parse_quantity,
    to_millis,
    to_units,
)


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("100m", 100),
        ("0.5", 500),
        ("1", 1000),
        ("1.5", 1500),
        (".25", 250),
        ("2.", 2000),
        ("+3", 3000),
        ("1e3", 1_000_000),
        ("1E3", 1_000_000),
        ("1e-3", 1),
        ("0.1m", 1),  # rounds up, as MilliValue does
        ("250u", 1),
        ("1n", 1),
        ("0", 0),
        (2, 2000),
        (0.1, 100),
        (1.25, 1250),
    ],
)
def test_cpu_millis(text: str | int | float, millis: int) -> None:
    assert to_millis(text) == millis


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("128Mi", 128 * 1024**2),
        ("1G", 10**9),
        ("1Gi", 1024**3),
        ("2Ki", 2048),
        ("1k", 1000),
        ("1M", 10**6),
        ("1T", 10**12),
        ("1Ti", 1024**4),
        ("1P", 10**15),
        ("1Pi", 1024**5),
        ("1E", 10**18),  # exa, not an exponent
        ("1Ei", 1024**6),
        ("1e3", 1000),
        ("1.5Gi", 3 * 512 * 1024**2),
        ("1.5", 2),  # rounds up
        ("110", 110),
        ("500m", 1),
        (" 64Mi ", 64 * 1024**2),
        (7, 7),
    ],
)
def test_units(text: str | int, units: int) -> None:
    assert to_units(text) == units


def test_exact_values() -> None:
    assert parse_quantity("0.1") == Fraction(1, 10)
    assert parse_quantity(0.1) == Fraction(1, 10)
    assert parse_quantity("-1.5k") == Fraction(-1500)
    assert parse_quantity("12e-1") == Fraction(6, 5)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "1Kb",
        "1 Mi",
        "Mi",
        "1e",
        "1.2.3",
        "--1",
        "1ki",
        "1e999",
        "1" * 100,
        True,
        None,
        [],
        float("inf"),
    ],
)
def test_rejects(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "0"),
        (1024, "1Ki"),
        (128 * 1024**2, "128Mi"),
        (10**9, "1G"),
        (1500, "1500"),
        (3 * 1024**3, "3Gi"),
        (7, "7"),
    ],
)
def test_format_bytes(amount: int, text: str) -> None:
    assert format_bytes(amount) == text


@pytest.mark.parametrize(("millis", "text"), [(0, "0"), (100, "100m"), (1000, "1"), (2500, "2500m")])
def test_format_millis(millis: int, text: str) -> None:
    assert format_millis(millis) == text


@given(st.integers(min_value=0, max_value=2**63))
def test_bytes_round_trip(amount: int) -> None:
    assert to_units(format_bytes(amount)) == amount


@given(st.integers(min_value=0, max_value=2**53))
def test_millis_round_trip(millis: int) -> None:
    assert to_millis(format_millis(millis)) == millis


_SUFFIXES = {
    "": Fraction(1),
    "m": Fraction(1, 1000),
    "k": Fraction(1000),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "Ki": Fraction(1024),
    "Mi": Fraction(1024**2),
    "Gi": Fraction(1024**3),
}


@given(
    whole=st.integers(min_value=0, max_value=10**9),
    frac=st.text(alphabet="0123456789", max_size=6),
    suffix=st.sampled_from(sorted(_SUFFIXES)),
)
def test_decimal_text_is_exact(whole: int, frac: str, suffix: str) -> None:
    text = f"{whole}.{frac}{suffix}" if frac else f"{whole}{suffix}"
    expected = (Fraction(whole) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)) * _SUFFIXES[suffix]
    assert parse_quantity(text) == expected
    assert to_millis(text) >= expected * 1000 > to_millis(text) - 1


@given(st.integers(min_value=-(10**6), max_value=10**6), st.integers(min_value=-20, max_value=20))
def test_exponent_form(mantissa: int, exponent: int) -> None:
    assert parse_quantity(f"{mantissa}e{exponent}") == Fraction(mantissa) * Fraction(10) ** exponent
