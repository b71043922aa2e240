"""Garbage-collector settings for Corral's long-running processes (``corral up``/``server``/``agent``).

CPython's defaults (a young collection every 700 net allocations, a full one every 100 young ones) suit
short scripts. A control plane keeps a large, long-lived heap — every object in the store, the informer
caches, the scheduler's snapshot — and allocates quickly while serving, so collections come often and full
ones walk the whole heap: at 1,000 nodes and 6,000 pods the server spent 3.2 s of a ~17 s benchmark in the
collector (11 full collections), about 20 % of its one core (docs/benchmarks.md, scheduler throughput).

``tune_for_service`` does what long-running Python services commonly do: it moves everything that exists
once the process has started (imported modules, the OpenAPI schemas, the state loaded from disk) to the
permanent generation with ``gc.freeze()`` — never scanned again — and makes young collections rarer.
Reference cycles are still collected (young ones within a young collection, as before); only the pace
changes. Call it once start-up has finished.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 20_000
"""Net allocations between young collections (CPython: 700)."""
GEN1_THRESHOLD = 50
"""Young collections between middle-generation ones (CPython: 10)."""
GEN2_THRESHOLD = 100
"""Middle collections between full ones (CPython: 10); CPython also waits until the objects that survived
since the last full collection reach a quarter of the long-lived ones."""


def tune_for_service() -> None:
    """Freeze the start-up heap and space collections out; idempotent."""
    gc.collect()  # start-up garbage goes now, not into the permanent generation
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
