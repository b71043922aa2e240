"""Go's duration.HumanDuration / ShortHumanDuration, boundary by boundary."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.util.humanize import human_duration, human_duration_us, short_human_duration

S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
Y = 365 * D


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        # Clock skew: up to 2s (excluded) in the future reads as now; int(d.Seconds()) truncates toward zero.
        (timedelta(0), "0s"),
        (-S, "0s"),
        (timedelta(seconds=-1.999), "0s"),
        (-2 * S, "<invalid>"),
        (-1 * H, "<invalid>"),
        (timedelta(milliseconds=999), "0s"),
        (timedelta(seconds=1.999), "1s"),
        (59 * S, "59s"),
        (60 * S, "60s"),
        (119 * S, "119s"),
        (timedelta(seconds=119.999999), "119s"),
        (120 * S, "2m"),
        (121 * S, "2m1s"),
        (2 * M + 59 * S, "2m59s"),
        (3 * M, "3m"),
        (9 * M + 59 * S, "9m59s"),
        (10 * M, "10m"),
        (10 * M + 59 * S, "10m"),
        (179 * M + 59 * S, "179m"),
        (3 * H, "3h"),
        (3 * H + 5 * M, "3h5m"),
        (3 * H + 5 * M + 59 * S, "3h5m"),
        (7 * H + 59 * M, "7h59m"),
        (8 * H, "8h"),
        (8 * H + 30 * M, "8h"),
        (47 * H + 59 * M, "47h"),
        (48 * H, "2d"),
        (2 * D + 3 * H, "2d3h"),
        (7 * D + 23 * H, "7d23h"),
        (8 * D, "8d"),
        (8 * D + 23 * H, "8d"),
        (729 * D, "729d"),
        (2 * Y, "2y"),
        (2 * Y + 100 * D, "2y100d"),
        (7 * Y + 364 * D, "7y364d"),
        (8 * Y, "8y"),
        (10 * Y + 200 * D, "10y"),
        # time.Sub saturates at Go's maxDuration (~292.47 years).
        (500 * Y, "292y"),
    ],
)
def test_human_duration(d: timedelta, expected: str) -> None:
    assert human_duration(d) == expected


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (timedelta(0), "0s"),
        (-S, "0s"),
        (-2 * S, "<invalid>"),
        (59 * S, "59s"),
        (60 * S, "1m"),
        (119 * S, "1m"),
        (59 * M + 59 * S, "59m"),
        (60 * M, "1h"),
        (23 * H + 59 * M, "23h"),
        (24 * H, "1d"),
        (364 * D, "364d"),
        (365 * D, "1y"),
        (3 * Y + 100 * D, "3y"),
    ],
)
def test_short_human_duration(d: timedelta, expected: str) -> None:
    assert short_human_duration(d) == expected


@given(st.timedeltas(min_value=timedelta(days=-10 * 365), max_value=timedelta(days=400 * 365)))
def test_human_duration_total_and_consistent(d: timedelta) -> None:
    text = human_duration(d)
    us = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    assert text == human_duration_us(min(us, (2**63 - 1) // 1000))
    assert text == "<invalid>" or text[0].isdigit()
    assert short_human_duration(d)


@given(st.integers(min_value=0, max_value=100 * 365 * 86_400))
def test_human_duration_never_overstates(seconds: int) -> None:
    """Every unit shown is a floor: the printed duration never exceeds the real one."""
    text = human_duration(timedelta(seconds=seconds))
    units = {"y": 365 * 86_400, "d": 86_400, "h": 3600, "m": 60, "s": 1}
    total, number = 0, ""
    for ch in text:
        if ch.isdigit():
            number += ch
        else:
            total += int(number) * units[ch]
            number = ""
    assert total <= seconds
