"""Bearer-token authentication: every request needs a known token, except health and version probes.

Tokens live in ``<data-dir>/tokens`` (one ``token,user`` line each, mode 0600). ``corral up`` creates the
admin token on first start. Comparison is constant-time. Authorisation (RBAC) is out of scope: a valid
token may do anything.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from corral.apiserver import status as st

ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


class TokenAuthenticator:
    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = dict(tokens)

    def user_for(self, header: str | None) -> str | None:
        if not header or not header.lower().startswith("bearer "):
            return None
        presented = header[7:].strip()
        for token, user in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                return user
        return None

    def middleware(self) -> Callable[..., Awaitable[web.StreamResponse]]:
        @web.middleware
        async def authenticate(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.path not in ANONYMOUS_PATHS and not request.path.startswith(
                ("/healthz/", "/livez/", "/readyz/")
            ):
                user = self.user_for(request.headers.get("Authorization"))
                if user is None:
                    err = st.unauthorized()
                    return web.Response(body=err.body(), status=401, content_type="application/json")
                request["user"] = user
            return await handler(request)

        return authenticate


def load_or_create_tokens(path: Path) -> dict[str, str]:
    """Read the token file, creating it with a fresh admin token if it does not exist."""
    if not path.exists():
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{token},admin\n")
    tokens: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            token, _, user = line.partition(",")
            tokens[token.strip()] = user.strip() or "admin"
    return tokens


def admin_token(tokens: dict[str, str]) -> str:
    for token, user in tokens.items():
        if user == "admin":
            return token
    raise LookupError("no admin token")
