"""Identifier generation behind a seam, so logic can be tested with deterministic IDs."""

from __future__ import annotations

import secrets
import uuid
from typing import Protocol

# Kubernetes' generateName suffix alphabet: consonants and digits without look-alikes (no vowels, 0, 1, 3).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class IdSource(Protocol):
    def uid(self) -> str: ...

    def suffix(self, length: int = 5) -> str: ...


class RandomIds:
    def uid(self) -> str:
        return str(uuid.uuid4())

    def suffix(self, length: int = 5) -> str:
        return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))
