"""Exponential backoff with a cap: ``delay(n) = min(cap, base * 2**n)``. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    base: float = 0.005
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        if failures >= 64:
            return self.cap
        return float(min(self.cap, self.base * (2**failures)))
