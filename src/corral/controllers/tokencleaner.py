"""Token cleaner: deletes a join token's Secret once the token has expired, as upstream's ``tokencleaner``.

Join tokens (``corral token create``) are kubeadm-style bootstrap-token Secrets in ``kube-system`` with an
``expiration``. The API server already refuses an expired one; this controller removes its Secret so that
``corral token list`` and the Secret list do not grow with dead tokens. Unlike upstream (which deletes at the
expiration), an expired token is kept for ``KEEP_EXPIRED`` (an hour) first: meanwhile an agent presenting it
is told "has expired" rather than that the token is unknown, and ``corral token list`` shows it as expired.
Keyed by Secret, only bootstrap-token Secrets are enqueued; one not yet due is looked at again when it is.
The delete carries the Secret's uid as a precondition (as upstream), so a token recreated under the same id
is never removed by an old decision. Pure part: :func:`seconds_left`.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from corral.api.resources import REGISTRY
from corral.apiserver import jointokens as jt
from corral.apiserver import status as st
from corral.client.base import Transport
from corral.client.informer import Informer, object_key
from corral.controllers.runtime import ControllerManager
from corral.util.clock import Clock

log = logging.getLogger(__name__)

JSON = dict[str, Any]
SECRETS = REGISTRY.require("secrets")
LATE = 0.05  # a hair past the deadline, so the next look is not a few microseconds early
KEEP_EXPIRED = datetime.timedelta(hours=1)


def seconds_left(secret: JSON, now: datetime.datetime) -> float | None:
    """How long until the join token Secret ``secret`` is to be deleted (≤ 0: now), i.e. its expiration
    plus :data:`KEEP_EXPIRED`; None when it is not a join token Secret in kube-system or has no expiration
    (it never expires)."""
    if (secret.get("metadata") or {}).get("namespace") != jt.SYSTEM_NAMESPACE:
        return None
    info = jt.token_info(secret)
    if info is None or info.expiration is None:
        return None
    return (info.expiration + KEEP_EXPIRED - now).total_seconds()


class TokenCleaner:
    name = "token-cleaner"
    workers = 1

    def __init__(self, transport: Transport, clock: Clock) -> None:
        self.transport = transport
        self.clock = clock
        self.secrets: Informer | None = None

    def setup(self, manager: ControllerManager) -> None:
        self.secrets = manager.watch(self, SECRETS, self._join_tokens)

    @staticmethod
    def _join_tokens(secret: JSON) -> list[str]:
        meta = secret.get("metadata") or {}
        if meta.get("namespace") == jt.SYSTEM_NAMESPACE and secret.get("type") == jt.BOOTSTRAP_SECRET_TYPE:
            return [object_key(secret)]
        return []

    async def reconcile(self, key: str) -> float | None:
        assert self.secrets is not None
        secret = self.secrets.get(key)
        if secret is None:
            return None
        left = seconds_left(secret, self.clock.now())
        if left is None:
            return None
        if left > 0:
            return left + LATE
        meta = secret.get("metadata") or {}
        try:
            await self.transport.delete(
                SECRETS, jt.SYSTEM_NAMESPACE, str(meta.get("name")), precondition_uid=str(meta.get("uid"))
            )
        except st.ApiError as exc:
            if exc.code not in (404, 409):
                raise
            return None  # gone already, or replaced by a new token of that id: its own event brings it
        log.info("deleted expired join token %s", meta.get("name"))
        return None
