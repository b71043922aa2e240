"""Binder outcomes from API answers, and the Binding request the HTTP transport sends."""

from __future__ import annotations

from typing import Any

import pytest

from corral.apiserver import status as st
from corral.client.http import HttpTransport
from corral.scheduler.binder import Binder, BindOutcome


class FakeTransport:
    def __init__(self, error: st.ApiError | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, str, str, str | None]] = []

    async def bind(self, namespace: str, name: str, node_name: str, *, uid: str | None = None) -> None:
        self.calls.append((namespace, name, node_name, uid))
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, BindOutcome.BOUND),
        (st.ApiError(404, "NotFound", "gone"), BindOutcome.GONE),
        (st.ApiError(409, "Conflict", "already assigned"), BindOutcome.CONFLICT),
    ],
)
async def test_outcomes(error: st.ApiError | None, outcome: BindOutcome) -> None:
    fake = FakeTransport(error)
    assert await Binder(fake).bind("ns", "p", "n1", "u1") is outcome  # type: ignore[arg-type]
    assert fake.calls == [("ns", "p", "n1", "u1")]


async def test_transient_errors_propagate() -> None:
    with pytest.raises(st.ApiError):
        await Binder(FakeTransport(st.ApiError(503, "ServiceUnavailable", "down"))).bind("ns", "p", "n")  # type: ignore[arg-type]


async def test_http_transport_posts_a_binding() -> None:
    sent: list[tuple[str, str, Any]] = []
    transport = object.__new__(HttpTransport)  # no session: only the request shape is under test

    async def request(method: str, path: str, *, body: Any = None, **_: Any) -> Any:
        sent.append((method, path, body))
        return {"kind": "Status", "status": "Success", "code": 201}

    transport.request = request  # type: ignore[method-assign]
    await transport.bind("default", "web-0", "node-a", uid="u1")
    assert sent == [
        (
            "POST",
            "/api/v1/namespaces/default/pods/web-0/binding",
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": "web-0", "namespace": "default", "uid": "u1"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"},
            },
        )
    ]
