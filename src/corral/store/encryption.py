"""Encryption at rest for stored objects (Secrets): AES-256-GCM envelopes and the key ring behind them.

Boundary: the pure part (:class:`DataKey`, :class:`KeyRing`, :func:`seal`/:func:`open_envelope`, the key-file
text format) knows nothing about SQLite; :mod:`corral.store.sqlite` calls it at its persistence boundary so
memory and watches stay plaintext. The two small IO helpers at the end read and write the key file.

Envelope: ``b"corral-aesgcm:v1:" + key_id + b":" + nonce(12) + ciphertext_and_tag``. The whole object is
sealed (not only ``data``: kubectl's last-applied annotation repeats the values). The storage key is the
associated data, so a ciphertext copied under another key fails authentication instead of decrypting.

Key file (``<data-dir>/encryption-keys``, mode 0600), JSON:
``{"current": ID, "keys": {ID: base64(32 bytes)}}``.
Keys other than ``current`` are kept only so rows sealed before a rotation stay readable until the rotation
has re-sealed them; then they are dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from corral.store.base import StoreError

ENVELOPE_PREFIX: Final = b"corral-aesgcm:v1:"
NONCE_SIZE: Final = 12
KEY_SIZE: Final = 32
ENCRYPTED_PREFIXES: Final = ("/core/secrets/",)
"""Storage-key prefixes whose objects are sealed on disk."""

_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class DecryptError(StoreError):
    """A stored ciphertext cannot be opened: corrupted, moved, or sealed with a key we no longer have.

    The message names the storage key and the key id, never any part of the value.
    """


class KeyFileError(Exception):
    """The key file is missing a piece or malformed."""


@dataclass(frozen=True, slots=True)
class DataKey:
    id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not _KEY_ID.match(self.id):
            raise ValueError(f"invalid key id {self.id!r}")
        if len(self.secret) != KEY_SIZE:
            raise ValueError(f"key {self.id} must be {KEY_SIZE} bytes, not {len(self.secret)}")

    def __repr__(self) -> str:  # keep key material out of logs and tracebacks
        return f"DataKey(id={self.id!r})"


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The key new writes use (``current``) and older keys still accepted for reading."""

    current: DataKey
    previous: tuple[DataKey, ...] = ()

    def find(self, key_id: str) -> DataKey | None:
        for key in (self.current, *self.previous):
            if key.id == key_id:
                return key
        return None

    @property
    def ids(self) -> list[str]:
        return [self.current.id, *(k.id for k in self.previous)]

    def rotated(self, new: DataKey) -> KeyRing:
        """``new`` becomes current; every key held so far stays readable."""
        return KeyRing(new, (self.current, *(k for k in self.previous if k.id != new.id)))

    def retired(self) -> KeyRing:
        """Only the current key: after every row was re-sealed with it."""
        return KeyRing(self.current)


def needs_encryption(storage_key: str) -> bool:
    return storage_key.startswith(ENCRYPTED_PREFIXES)


def is_sealed(value: bytes) -> bool:
    return value.startswith(ENVELOPE_PREFIX)


def seal(key: DataKey, storage_key: str, plaintext: bytes, nonce: bytes) -> bytes:
    """The envelope of ``plaintext`` bound to ``storage_key``; ``nonce`` must be fresh random bytes."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes")
    body = AESGCM(key.secret).encrypt(nonce, plaintext, storage_key.encode())
    return ENVELOPE_PREFIX + key.id.encode() + b":" + nonce + body


def envelope_key_id(value: bytes) -> str:
    """The key id an envelope names (raises :class:`ValueError` when it is not an envelope)."""
    if not is_sealed(value):
        raise ValueError("not a corral-aesgcm envelope")
    rest = value[len(ENVELOPE_PREFIX) :]
    key_id, sep, _ = rest.partition(b":")
    if not sep:
        raise ValueError("envelope without key id")
    return key_id.decode("ascii", errors="replace")


def open_envelope(ring: KeyRing, storage_key: str, value: bytes) -> bytes:
    """The plaintext sealed in ``value`` for ``storage_key``, or :class:`DecryptError`."""
    try:
        key_id = envelope_key_id(value)
    except ValueError as exc:
        message = f"{storage_key}: stored value is not a valid envelope ({exc})"
        raise DecryptError(storage_key, message) from None
    key = ring.find(key_id)
    if key is None:
        raise DecryptError(
            storage_key,
            f"{storage_key}: sealed with encryption key {key_id!r}, which is not in the key file "
            f"(have {', '.join(ring.ids)})",
        )
    payload = value[len(ENVELOPE_PREFIX) + len(key_id.encode()) + 1 :]
    nonce, body = payload[:NONCE_SIZE], payload[NONCE_SIZE:]
    if len(nonce) != NONCE_SIZE or not body:
        raise DecryptError(storage_key, f"{storage_key}: stored ciphertext is truncated")
    try:
        return AESGCM(key.secret).decrypt(nonce, body, storage_key.encode())
    except InvalidTag:
        raise DecryptError(
            storage_key,
            f"{storage_key}: stored ciphertext failed authentication with key {key_id!r} "
            "(corrupted, or copied from another key)",
        ) from None


def render_key_file(ring: KeyRing) -> str:
    keys = {k.id: base64.b64encode(k.secret).decode() for k in (ring.current, *ring.previous)}
    return json.dumps({"current": ring.current.id, "keys": keys}, indent=2) + "\n"


def parse_key_file(text: str) -> KeyRing:
    try:
        doc = json.loads(text)
        current_id = doc["current"]
        raw = doc["keys"]
        if not isinstance(raw, dict) or not isinstance(current_id, str):
            raise TypeError("'keys' must be an object and 'current' a string")
        keys = {kid: DataKey(kid, base64.b64decode(b64, validate=True)) for kid, b64 in raw.items()}
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyFileError(f"malformed key file: {exc}") from None
    if current_id not in keys:
        raise KeyFileError(f"current key {current_id!r} is not in the key file")
    return KeyRing(keys.pop(current_id), tuple(keys.values()))


# ----- IO: key material and the key file


def new_data_key() -> DataKey:
    return DataKey(f"k{secrets.token_hex(6)}", AESGCM.generate_key(bit_length=KEY_SIZE * 8))


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def write_key_file(path: Path, ring: KeyRing) -> None:
    """Replace the key file atomically (mode 0600, fsynced) so a crash leaves the old or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, render_key_file(ring).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_or_create_key_file(path: Path) -> KeyRing:
    """The key ring in ``path``, creating the file with a fresh key on first start."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        ring = KeyRing(new_data_key())
        write_key_file(path, ring)
        return ring
    try:
        return parse_key_file(text)
    except KeyFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
