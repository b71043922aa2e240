"""The collector settings of long-running Corral processes: frozen start-up heap, rarer collections, and
reference cycles still reclaimed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from corral.util.gctune import GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD, tune_for_service


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_freezes_the_start_up_heap_and_spaces_collections(restored_gc: None) -> None:
    alive = Node()
    tune_for_service()
    assert gc.get_threshold() == (GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    assert gc.get_freeze_count() > 0
    assert not any(o is alive for o in gc.get_objects())  # frozen objects are out of every generation


def test_cycles_made_after_tuning_are_still_collected(restored_gc: None) -> None:
    tune_for_service()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
