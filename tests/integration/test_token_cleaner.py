"""The token cleaner deletes a join token's Secret once it has expired, and nothing else."""

from __future__ import annotations

import datetime
from typing import Any

from corral.apiserver import jointokens as jt
from corral.controllers.tokencleaner import KEEP_EXPIRED, TokenCleaner, seconds_left
from corral.testing.controllers import InProcessCluster, rt

JSON = dict[str, Any]
NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def test_seconds_left_reads_the_expiration_of_join_tokens_only() -> None:
    token = jt.token_secret("abcdef.0123456789abcdef", NOW + datetime.timedelta(seconds=30))
    token["metadata"]["namespace"] = jt.SYSTEM_NAMESPACE
    kept = KEEP_EXPIRED.total_seconds()
    assert seconds_left(token, NOW) == 30 + kept
    assert seconds_left(token, NOW + datetime.timedelta(seconds=31 + kept)) == -1
    forever = jt.token_secret("bbbbbb.0123456789abcdef", None)
    assert seconds_left(forever, NOW) is None
    elsewhere = {**token, "metadata": {**token["metadata"], "namespace": "default"}}
    assert seconds_left(elsewhere, NOW) is None
    assert seconds_left({**token, "type": "Opaque"}, NOW) is None


async def test_expired_join_tokens_are_deleted_an_hour_after_they_expire() -> None:
    holder: list[TokenCleaner] = []

    def cleaner(t: Any, clock: Any) -> TokenCleaner:
        holder.append(TokenCleaner(t, clock))
        return holder[0]

    c = InProcessCluster(cleaner)
    async with c:
        secrets = rt("secrets")
        now = c.clock.now()
        soon = jt.token_secret("aaaaaa.0123456789abcdef", now + datetime.timedelta(seconds=10))
        forever = jt.token_secret("bbbbbb.0123456789abcdef", None)
        later = jt.token_secret("cccccc.0123456789abcdef", now + datetime.timedelta(hours=1))
        other_ns = jt.token_secret("dddddd.0123456789abcdef", now - datetime.timedelta(seconds=1))
        for body in (soon, forever, later):
            await c.transport.create(secrets, jt.SYSTEM_NAMESPACE, body)
        other_ns["metadata"]["namespace"] = "default"
        await c.transport.create(secrets, "default", other_ns)
        await c.settle()
        names = {s["metadata"]["name"] for s in await c.list("secrets", jt.SYSTEM_NAMESPACE)}
        assert {"bootstrap-token-aaaaaa", "bootstrap-token-bbbbbb", "bootstrap-token-cccccc"} <= names

        # Still valid: the next look is scheduled for its deletion time (a hair after).
        kept = KEEP_EXPIRED.total_seconds()
        delay = await holder[0].reconcile(f"{jt.SYSTEM_NAMESPACE}/bootstrap-token-aaaaaa")
        assert delay is not None and 10 + kept < delay < 10.1 + kept

        # Expired, but kept a while: an agent presenting it is told it expired.
        c.clock.advance(11)
        c.kick(holder[0], f"{jt.SYSTEM_NAMESPACE}/bootstrap-token-aaaaaa")
        await c.settle()
        assert await c.get("secrets", jt.SYSTEM_NAMESPACE, "bootstrap-token-aaaaaa") is not None

        c.clock.advance(kept)
        c.kick(holder[0], f"{jt.SYSTEM_NAMESPACE}/bootstrap-token-aaaaaa")
        c.kick(holder[0], f"{jt.SYSTEM_NAMESPACE}/bootstrap-token-cccccc")
        await c.wait_for(
            lambda: _absent(c, "bootstrap-token-aaaaaa"), what="the expired token's Secret deleted"
        )
        await c.settle()
        names = {s["metadata"]["name"] for s in await c.list("secrets", jt.SYSTEM_NAMESPACE)}
        assert {"bootstrap-token-bbbbbb", "bootstrap-token-cccccc"} <= names
        assert "bootstrap-token-aaaaaa" not in names
        assert await c.get("secrets", "default", "bootstrap-token-dddddd") is not None  # not kube-system


async def _absent(c: InProcessCluster, name: str) -> bool:
    return await c.get("secrets", jt.SYSTEM_NAMESPACE, name) is None
