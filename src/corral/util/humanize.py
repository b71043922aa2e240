"""Human-readable durations, digit for digit as Go's ``k8s.io/apimachinery/pkg/util/duration``.

kubectl shows the AGE, LAST SEEN, DURATION and "(5m ago)" cells that the API server formats with
``duration.HumanDuration``, so ours must round and switch units at exactly the same places: seconds up to
119s, then ``2m0s``-style minutes+seconds below 10 minutes (printed ``2m`` when the seconds are zero),
whole minutes below 3 hours, hours+minutes below 8 hours, whole hours below 48 hours, days+hours below
8 days, whole days below 2 years, years+days below 8 years, then whole years.

Go durations are int64 nanoseconds; ``time.Sub`` saturates at about ±292 years instead of overflowing, and
``int(d.Seconds())`` truncates toward zero. Both are reproduced here on integer microseconds (the resolution
of ``timedelta``), so no float rounding can move a boundary. Hand-written: no library matches Go's rules.
"""

from __future__ import annotations

from datetime import timedelta

_US_PER_S = 1_000_000
_US_PER_MIN = 60 * _US_PER_S
_US_PER_H = 60 * _US_PER_MIN
# Go's maxDuration (2**63 - 1 ns) in whole microseconds: time.Sub saturates here.
_MAX_US = (2**63 - 1) // 1000


def _micros(d: timedelta) -> int:
    us = (d.days * 86_400 + d.seconds) * _US_PER_S + d.microseconds
    if us > _MAX_US:
        return _MAX_US
    if us < -_MAX_US:
        return -_MAX_US
    return us


def _whole_seconds(us: int) -> int:
    """``int(d.Seconds())``: truncation toward zero, also for negative durations."""
    return us // _US_PER_S if us >= 0 else -((-us) // _US_PER_S)


def human_duration(d: timedelta) -> str:
    """``duration.HumanDuration``: about 2-3 significant figures (``2m59s``, ``10m``, ``3h5m``, ``2d3h``)."""
    return human_duration_us(_micros(d))


def human_duration_us(us: int) -> str:
    """:func:`human_duration` of a duration given in integer microseconds (the hot path of table printing)."""
    # Up to 2 seconds (excluded) in the future is tolerated as clock skew and shown as "0s".
    seconds = _whole_seconds(us)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = us // _US_PER_MIN
    if minutes < 10:
        s = seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = us // _US_PER_H
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def short_human_duration(d: timedelta) -> str:
    """``duration.ShortHumanDuration``: a single unit (``59s``, ``5m``, ``3h``, ``12d``, ``2y``)."""
    us = _micros(d)
    seconds = _whole_seconds(us)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    minutes = us // _US_PER_MIN
    if minutes < 60:
        return f"{minutes}m"
    hours = us // _US_PER_H
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    # Go computes int(d.Hours()/24/365) in floating point; so do we.
    return f"{int(us / _US_PER_H / 24 / 365)}y"
