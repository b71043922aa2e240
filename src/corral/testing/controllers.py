"""An in-process control plane for controller tests: memory store, ResourceAPI, local transport, a manager.

No sockets, no agent: tests play the node by writing pod status themselves, and drive time with the
:class:`FakeClock` shared by the API (timestamps) and the controllers (schedules, deadlines, backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any

from corral.api.resources import REGISTRY, ResourceType
from corral.apiserver import status as st
from corral.apiserver.rest import ResourceAPI
from corral.client.local import LocalTransport
from corral.controllers.runtime import Controller, ControllerManager
from corral.store import MemoryStore
from corral.testing.clock import FakeClock
from corral.testing.waiting import eventually

JSON = dict[str, Any]


class InProcessCluster:
    def __init__(self, *controllers: Callable[[LocalTransport, FakeClock], Controller]) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore()
        self.api = ResourceAPI(self.store, self.clock)
        self.transport = LocalTransport(self.api)
        self.manager = ControllerManager(self.transport, self.clock)
        self.controllers = [make(self.transport, self.clock) for make in controllers]
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> InProcessCluster:
        from corral.server import bootstrap  # the server module pulls in the agent; tests import it lazily

        await bootstrap(self.api)
        for controller in self.controllers:
            self.manager.add(controller)
        self._task = asyncio.create_task(self.manager.run())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.store.close()

    def kick(self, controller: Controller, key: str) -> None:
        """Ask ``controller`` to look at ``key`` now (after moving the fake clock, say)."""
        self.manager.queue_of(controller).add(key)

    async def settle(self, quiet_rounds: int = 5, interval: float = 0.01, within: float = 5.0) -> None:
        """Wait until no controller has queued work for ``quiet_rounds`` polls in a row.

        For checks that something does *not* happen: once the controllers are quiet, it did not.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        quiet = 0
        while quiet < quiet_rounds:
            busy = any(len(self.manager.queue_of(c)) for c in self.controllers)
            quiet = 0 if busy else quiet + 1
            if loop.time() > deadline:
                raise AssertionError("controllers did not settle")
            await asyncio.sleep(interval)

    async def get(self, resource: str, namespace: str | None, name: str) -> JSON | None:
        try:
            return await self.transport.get(rt(resource), namespace, name)
        except st.ApiError as exc:
            if exc.code == 404:
                return None
            raise

    async def list(self, resource: str, namespace: str | None = None, **kw: Any) -> list[JSON]:
        return (await self.transport.list(rt(resource), namespace, **kw)).items

    async def wait_for(
        self, check: Callable[[], Any], within: float = 5.0, what: str = "condition", interval: float = 0.01
    ) -> Any:
        """Poll an (async or plain) check until it returns something truthy; fail after ``within`` s."""
        return await eventually(check, within, what, interval)


def rt(name: str) -> ResourceType:
    return REGISTRY.require(name)
