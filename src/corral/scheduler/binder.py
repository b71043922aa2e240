"""Binding: the scheduler's one write that places a pod, through the ``pods/binding`` subresource.

The server does the compare-and-set (it refuses a pod that already has a node, is being deleted, or is a
different pod of the same name), so two schedulers, or a scheduler racing a deletion, can never place a
pod twice. This module turns the API's answer into an outcome the scheduler acts on; other errors
(transient ones) propagate for the caller's backoff.
"""

from __future__ import annotations

import enum

from corral.apiserver import status as st
from corral.client.base import Transport


class BindOutcome(enum.Enum):
    BOUND = "Bound"
    GONE = "Gone"
    """The pod no longer exists."""
    CONFLICT = "Conflict"
    """Already assigned, being deleted, replaced by another pod of that name, or a lost CAS race."""


class Binder:
    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    async def bind(self, namespace: str, name: str, node_name: str, uid: str | None = None) -> BindOutcome:
        try:
            await self.transport.bind(namespace, name, node_name, uid=uid or None)
        except st.ApiError as exc:
            if exc.code == 404:
                return BindOutcome.GONE
            if exc.code == 409:
                return BindOutcome.CONFLICT
            raise
        return BindOutcome.BOUND
