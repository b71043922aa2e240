"""Waiting on a condition in async tests and benchmarks: poll until it holds, fail with what was awaited.

The one way tests wait (never a bare sleep): the condition may be a plain or an async callable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def eventually(
    check: Callable[[], Any], within: float = 5.0, what: str = "condition", interval: float = 0.01
) -> Any:
    """Poll ``check`` until it returns something truthy (returned); AssertionError after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)
