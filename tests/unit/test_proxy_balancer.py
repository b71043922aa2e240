"""Backend choice per route (pure, fake time): round-robin, least-connections, ClientIP affinity, exclude."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from corral.proxy.backends import Backend
from corral.proxy.balancer import SWEEP_EVERY, Picker
from corral.proxy.table import Algorithm
from corral.testing.clock import FakeClock

A, B, C = (Backend("127.0.0.1", port) for port in (31001, 31002, 31003))


def test_round_robin_is_even() -> None:
    picker = Picker([A, B, C], FakeClock())
    picks = Counter(picker.pick("10.0.0.1") for _ in range(3000))
    assert picks == {A: 1000, B: 1000, C: 1000}


def test_round_robin_order_is_a_cycle() -> None:
    picker = Picker([A, B, C], FakeClock())
    assert [picker.pick("c") for _ in range(6)] == [A, B, C, A, B, C]


def test_no_backend_gives_none() -> None:
    assert Picker([], FakeClock()).pick("c") is None
    assert Picker([], FakeClock(), Algorithm.LEAST_CONNECTIONS, 60).pick("c") is None


def test_exclude_walks_every_backend_once_then_gives_up() -> None:
    for algorithm in Algorithm:
        picker = Picker([A, B, C], FakeClock(), algorithm)
        tried: set[tuple[str, int]] = set()
        order = []
        while (backend := picker.pick("c", tried)) is not None:
            assert backend.address not in tried
            tried.add(backend.address)
            order.append(backend)
        assert sorted(order) == [A, B, C]


def test_retry_does_not_skew_round_robin() -> None:
    # A connect to B failed, the caller retries with B excluded: the rotation keeps going after the retry.
    picker = Picker([A, B, C], FakeClock())
    assert picker.pick("c") == A
    assert picker.pick("c") == B
    assert picker.pick("c", {B.address}) == C
    assert picker.pick("c") == A


def test_least_connections_prefers_the_idlest() -> None:
    picker = Picker([A, B, C], FakeClock(), Algorithm.LEAST_CONNECTIONS)
    for _ in range(5):
        picker.opened(A.address)
    picker.opened(B.address)
    assert picker.pick("c") == C
    picker.opened(C.address)
    picker.opened(C.address)
    assert picker.pick("c") == B
    for _ in range(5):
        picker.closed(A.address)
    assert picker.pick("c") == A
    assert picker.active(A.address) == 0


def test_least_connections_ties_rotate() -> None:
    # Short connections that always finish before the next: everyone is at zero, so rotate, not pile on A.
    picker = Picker([A, B, C], FakeClock(), Algorithm.LEAST_CONNECTIONS)
    picks = []
    for _ in range(6):
        backend = picker.pick("c")
        assert backend is not None
        picker.opened(backend.address)
        picker.closed(backend.address)
        picks.append(backend)
    assert Counter(picks) == {A: 2, B: 2, C: 2}


def test_least_connections_spreads_concurrent_connections() -> None:
    picker = Picker([A, B, C], FakeClock(), Algorithm.LEAST_CONNECTIONS)
    for _ in range(30):
        backend = picker.pick("c")
        assert backend is not None
        picker.opened(backend.address)
    assert [picker.active(b.address) for b in (A, B, C)] == [10, 10, 10]


def test_affinity_sticks_until_it_expires() -> None:
    clock = FakeClock()
    picker = Picker([A, B, C], clock, affinity_timeout=60)
    first = picker.pick("10.0.0.1")
    assert all(picker.pick("10.0.0.1") == first for _ in range(10))
    other = picker.pick("10.0.0.2")
    assert other != first
    # Each use refreshes the timeout; idle for longer than it and the client is picked afresh.
    clock.advance(59)
    assert picker.pick("10.0.0.1") == first
    clock.advance(59)
    assert picker.pick("10.0.0.1") == first
    clock.advance(61)
    assert picker.pick("10.0.0.1") != first


def test_affinity_moves_when_the_backend_is_excluded_or_gone() -> None:
    clock = FakeClock()
    picker = Picker([A, B, C], clock, affinity_timeout=60)
    first = picker.pick("10.0.0.1")
    assert first is not None
    moved = picker.pick("10.0.0.1", {first.address})
    assert moved is not None and moved != first
    assert picker.pick("10.0.0.1") == moved  # sticks to the new one
    remaining = [b for b in (A, B, C) if b != moved]
    picker.set_backends(remaining, affinity_timeout=60)
    again = picker.pick("10.0.0.1")
    assert again in remaining
    assert picker.pick("10.0.0.1") == again


def test_affinity_survives_backend_changes_that_keep_its_backend() -> None:
    clock = FakeClock()
    picker = Picker([A, B], clock, affinity_timeout=60)
    first = picker.pick("10.0.0.1")
    picker.set_backends([A, B, C], affinity_timeout=60)
    assert picker.pick("10.0.0.1") == first
    # Turning affinity off forgets it.
    picker.set_backends([A, B, C])
    assert picker.affinity_size() == 0


def test_expired_affinity_entries_are_swept() -> None:
    clock = FakeClock()
    picker = Picker([A, B, C], clock, affinity_timeout=10)
    for i in range(100):
        picker.pick(f"10.0.{i // 256}.{i % 256}")
    assert picker.affinity_size() == 100
    clock.advance(11)
    for _ in range(SWEEP_EVERY):
        picker.pick("10.9.9.9")
    assert picker.affinity_size() == 1


def test_counts_survive_set_backends() -> None:
    picker = Picker([A, B], FakeClock(), Algorithm.LEAST_CONNECTIONS)
    picker.opened(A.address)
    picker.set_backends([A, B, C], Algorithm.LEAST_CONNECTIONS)
    assert picker.active(A.address) == 1
    # A backend that left keeps its count until its connections close (they drain).
    picker.set_backends([B, C], Algorithm.LEAST_CONNECTIONS)
    assert picker.active(A.address) == 1
    picker.closed(A.address)
    assert picker.active(A.address) == 0


def test_failed_backend_is_skipped_for_the_cooldown() -> None:
    clock = FakeClock()
    picker = Picker([A, B, C], clock, failure_cooldown=5)
    picker.failed(A.address)
    assert picker.is_down(A.address)
    assert A not in [picker.pick("c") for _ in range(9)]
    clock.advance(5.1)
    assert not picker.is_down(A.address)
    assert A in [picker.pick("c") for _ in range(3)]


def test_success_clears_the_cooldown() -> None:
    picker = Picker([A, B], FakeClock())
    picker.failed(A.address)
    picker.succeeded(A.address)
    assert sorted(picker.pick("c") for _ in range(2)) == [A, B]  # type: ignore[type-var]


def test_when_every_backend_failed_they_are_still_tried() -> None:
    # The cooldown only reorders: with nothing else left a suspect backend is better than a reset.
    for algorithm in Algorithm:
        picker = Picker([A, B], FakeClock(), algorithm, affinity_timeout=60)
        picker.failed(A.address)
        picker.failed(B.address)
        first = picker.pick("c")
        assert first is not None
        second = picker.pick("c", {first.address})
        assert {first, second} == {A, B}
        assert picker.pick("c", {A.address, B.address}) is None


def test_affinity_avoids_a_failed_backend() -> None:
    picker = Picker([A, B, C], FakeClock(), affinity_timeout=60)
    first = picker.pick("10.0.0.1")
    assert first is not None
    picker.failed(first.address)
    moved = picker.pick("10.0.0.1")
    assert moved is not None and moved != first
    assert picker.pick("10.0.0.1") == moved


def test_failures_of_unknown_or_removed_backends_are_forgotten() -> None:
    picker = Picker([A, B], FakeClock())
    picker.failed(C.address)  # not (or no longer) a backend of this route
    assert not picker.is_down(C.address)
    picker.failed(A.address)
    picker.set_backends([B, C])
    picker.set_backends([A, B, C])
    assert not picker.is_down(A.address)


@given(st.integers(1, 8), st.integers(0, 200))
def test_round_robin_counts_differ_by_at_most_one(size: int, picks: int) -> None:
    backends = [Backend("127.0.0.1", 30000 + i) for i in range(size)]
    picker = Picker(backends, FakeClock())
    counts = Counter(picker.pick("c") for _ in range(picks))
    assert sum(counts.values()) == picks
    values = [counts.get(b, 0) for b in backends]
    assert max(values) - min(values) <= 1
