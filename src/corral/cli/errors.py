"""How the CLI reports failures: one line on stderr, kubectl's wording, a non-zero exit, never a traceback.

:class:`CliError` is what command code raises for a user-facing failure; :func:`error_line` turns any of
the exceptions a command can meet (our ``ApiError``, a kubeconfig problem, a local file problem) into the
single line the user sees. ``corral.cli.main.main`` is the only place that prints it and exits.
"""

from __future__ import annotations

import aiohttp

from corral.apiserver.status import ApiError
from corral.client import KubeconfigError


class CliError(Exception):
    """A failure the user can act on; ``str(exc)`` is the whole line (without the ``error: `` prefix)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def is_connection_error(exc: ApiError) -> bool:
    """The transport could not talk to the server at all (as opposed to the server answering 503)."""
    return isinstance(exc.__cause__, aiohttp.ClientError | OSError)


def api_error_line(exc: ApiError) -> str:
    """kubectl's ``Error from server (Reason): message``, or ``error: ...`` when no server answered."""
    message = " ".join(exc.message.split())  # one line, even for multi-line server messages
    if is_connection_error(exc):
        return f"error: {message}"
    if exc.code == 401:
        return "error: You must be logged in to the server (Unauthorized)"
    reason = exc.reason or "Unknown"
    return f"Error from server ({reason}): {message}"


def error_line(exc: BaseException) -> str:
    """The one line shown for ``exc``."""
    if isinstance(exc, ApiError):
        return api_error_line(exc)
    text = " ".join(str(exc).split())
    if isinstance(exc, CliError | KubeconfigError):
        return f"error: {text}"
    return f"error: {type(exc).__name__}: {text}" if text else f"error: {type(exc).__name__}"
