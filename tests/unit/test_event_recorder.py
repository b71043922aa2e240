"""EventRecorder: deduplication bumps count; its memory stays bounded however many objects it sees."""

from __future__ import annotations

from corral.api.resources import REGISTRY
from corral.controllers.events import EventRecorder
from corral.testing.controllers import InProcessCluster

EVENTS = REGISTRY.require("events")


def pod(i: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{i}", "namespace": "default", "uid": f"u{i}"},
    }


async def test_repeats_bump_count_and_memory_is_bounded() -> None:
    async with InProcessCluster() as cluster:
        recorder = EventRecorder(cluster.transport, "test", cluster.clock, max_entries=5)
        for _ in range(3):
            await recorder.record(pod(0), "Normal", "Tick", "same message")
        listed = await cluster.transport.list(EVENTS, "default")
        assert [(e["reason"], e["count"]) for e in listed.items] == [("Tick", 3)]

        for i in range(1, 20):
            await recorder.record(pod(i), "Normal", "Tick", "same message")
        assert recorder.tracked() == 5

        # A forgotten event that recurs is still one Event object: its count goes on.
        await recorder.record(pod(0), "Normal", "Tick", "same message")
        listed = await cluster.transport.list(EVENTS, "default")
        counts = {e["involvedObject"]["name"]: e["count"] for e in listed.items}
        assert len(counts) == 20 and counts["p0"] == 4
        assert recorder.tracked() == 5

        recorder.forget("u0")
        assert recorder.tracked() == 4
