"""Stateful property test: random writes to each backend and to a model dict agree after every step."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from corral.store import (
    AlreadyExists,
    Conflict,
    EngineStore,
    EventType,
    Expired,
    MemoryStore,
    NotFound,
    SqliteStore,
)

KEYS = st.sampled_from(["/g/a/1", "/g/a/2", "/g/ab/1", "/g/b/1", "/h/a/1"])
PREFIXES = ["", "/g/", "/g/a/", "/g/ab/", "/h/"]
# orjson (like Kubernetes) only takes 64-bit integers; bigger ones are rejected, tested elsewhere.
VALUES = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# How a CAS write names its expected revision: unconditional, the right one, or a wrong one.
EXPECTATIONS = st.sampled_from(["none", "current", "stale"])


class StoreMachine(RuleBasedStateMachine):
    backend = "memory"
    directory = Path()
    counter = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.path = self.directory / f"model-{next(self.counter)}.db"
        self.store: EngineStore = self.run(self.open())
        self.model: dict[str, dict[str, Any]] = {}
        self.revision = 0
        # The state when the history last started (at open): a watch from there must rebuild the model.
        self.base_revision = 0
        self.base_state: dict[str, dict[str, Any]] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def open(self) -> EngineStore:
        if self.backend == "memory":
            return MemoryStore()
        return await SqliteStore.open(self.path)

    def expected_for(self, key: str, mode: str) -> int | None:
        if mode == "none":
            return None
        current = int(self.model[key]["metadata"]["resourceVersion"]) if key in self.model else 0
        return current if mode == "current" else current + 1000

    @rule(key=KEYS, value=VALUES)
    def create(self, key: str, value: int) -> None:
        try:
            result = self.run(self.store.create(key, {"metadata": {"name": key}, "value": value}))
        except AlreadyExists:
            assert key in self.model
            return
        assert key not in self.model
        self.revision += 1
        assert result["metadata"]["resourceVersion"] == str(self.revision)
        self.model[key] = result

    @rule(key=KEYS, value=VALUES, mode=EXPECTATIONS)
    def update(self, key: str, value: int, mode: str) -> None:
        expected = self.expected_for(key, mode)
        try:
            result = self.run(self.store.update(key, {"metadata": {"name": key}, "value": value}, expected))
        except NotFound:
            assert key not in self.model
            return
        except Conflict:
            assert key in self.model and mode == "stale"
            return
        assert key in self.model and mode != "stale"
        self.revision += 1
        assert result["value"] == value and result["metadata"]["resourceVersion"] == str(self.revision)
        self.model[key] = result

    @rule(key=KEYS, mode=EXPECTATIONS)
    def delete(self, key: str, mode: str) -> None:
        expected = self.expected_for(key, mode)
        try:
            result = self.run(self.store.delete(key, expected))
        except NotFound:
            assert key not in self.model
            return
        except Conflict:
            assert key in self.model and mode == "stale"
            return
        assert key in self.model and mode != "stale"
        self.revision += 1
        assert result["value"] == self.model.pop(key)["value"]
        assert result["metadata"]["resourceVersion"] == str(self.revision)

    @precondition(lambda self: self.backend == "sqlite")
    @rule()
    def reopen(self) -> None:
        self.run(self.store.close())
        self.store = self.run(self.open())
        self.base_revision = self.revision
        self.base_state = dict(self.model)

    @invariant()
    def state_matches_model(self) -> None:
        assert self.store.revision == self.revision
        for prefix in PREFIXES:
            listed = self.run(self.store.list(prefix))
            assert listed.revision == self.revision
            assert listed.items == [self.model[k] for k in sorted(self.model) if k.startswith(prefix)]

    @invariant()
    def watch_replays_to_model(self) -> None:
        if self.base_revision > 0:
            with pytest.raises(Expired):
                self.store.watch("", self.base_revision - 1)
        watch = self.store.watch("", self.base_revision)
        state = dict(self.base_state)
        while self.revision > self.base_revision:
            event = self.run(asyncio.wait_for(anext(watch), 5))
            if event.type is EventType.DELETED:
                del state[event.key]
            else:
                state[event.key] = event.obj
            if event.revision == self.revision:
                break
        watch.close()
        assert state == self.model

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()


@pytest.mark.parametrize(("backend", "examples"), [("memory", 150), ("sqlite", 50)])
def test_store_agrees_with_model(backend: str, examples: int, tmp_path: Path) -> None:
    attributes = {"backend": backend, "directory": tmp_path}
    machine = type(f"{backend.title()}StoreMachine", (StoreMachine,), attributes)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
