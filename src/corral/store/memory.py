"""The memory backend: the shared engine with no persistence, for tests and throwaway clusters.

It keeps every rule of the persistent backends (revisions, compare-and-set, batching, history, watch,
plain-JSON values only), so code tested against it behaves the same on SQLite. Construct it directly;
``close()`` is still worth calling so the writer task ends cleanly.
"""

from __future__ import annotations

from corral.store.core import EngineStore


class MemoryStore(EngineStore):
    """``MemoryStore(history_window=..., watch_buffer=..., max_batch=...)``; all arguments optional."""
