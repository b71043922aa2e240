"""Encryption at rest: envelopes, key ring, key file; and the SQLite store sealing Secrets with them."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from corral.store import NotFound, SqliteStore
from corral.store.encryption import (
    ENVELOPE_PREFIX,
    DataKey,
    DecryptError,
    KeyFileError,
    KeyRing,
    envelope_key_id,
    is_sealed,
    load_or_create_key_file,
    open_envelope,
    parse_key_file,
    render_key_file,
    seal,
)
from corral.store.sqlite import RotationResult

K1 = DataKey("k1", bytes(range(32)))
K2 = DataKey("k2", bytes(range(1, 33)))
NONCE = b"\x01" * 12
SKEY = "/core/secrets/default/db"


def test_round_trip_and_envelope_shape() -> None:
    sealed = seal(K1, SKEY, b'{"data":{"p":"hunter2"}}', NONCE)
    assert sealed.startswith(ENVELOPE_PREFIX + b"k1:" + NONCE)
    assert b"hunter2" not in sealed
    assert envelope_key_id(sealed) == "k1"
    assert open_envelope(KeyRing(K1), SKEY, sealed) == b'{"data":{"p":"hunter2"}}'


def test_older_key_still_reads_after_rotation() -> None:
    sealed = seal(K1, SKEY, b"old", NONCE)
    ring = KeyRing(K1).rotated(K2)
    assert ring.current == K2 and ring.ids == ["k2", "k1"]
    assert open_envelope(ring, SKEY, sealed) == b"old"
    with pytest.raises(DecryptError, match="'k1', which is not in the key file"):
        open_envelope(ring.retired(), SKEY, sealed)


def test_unknown_key_id_names_the_storage_key() -> None:
    sealed = seal(K2, SKEY, b"x", NONCE)
    with pytest.raises(DecryptError) as info:
        open_envelope(KeyRing(K1), SKEY, sealed)
    assert info.value.key == SKEY and SKEY in str(info.value) and "'k2'" in str(info.value)


@pytest.mark.parametrize("offset", [len(ENVELOPE_PREFIX) + 3, len(ENVELOPE_PREFIX) + 3 + 12, -1])
def test_flipped_byte_fails_loudly(offset: int) -> None:
    sealed = bytearray(seal(K1, SKEY, b"secret value", NONCE))
    sealed[offset] ^= 0x01
    with pytest.raises(DecryptError, match="failed authentication") as info:
        open_envelope(KeyRing(K1), SKEY, bytes(sealed))
    assert "secret value" not in str(info.value)


def test_ciphertext_moved_to_another_key_fails() -> None:
    sealed = seal(K1, SKEY, b"x", NONCE)
    with pytest.raises(DecryptError, match="/core/secrets/default/other"):
        open_envelope(KeyRing(K1), "/core/secrets/default/other", sealed)


def test_truncated_and_foreign_values() -> None:
    with pytest.raises(DecryptError, match="truncated"):
        open_envelope(KeyRing(K1), SKEY, ENVELOPE_PREFIX + b"k1:" + b"abc")
    with pytest.raises(DecryptError, match="not a valid envelope"):
        open_envelope(KeyRing(K1), SKEY, b'{"plain": true}')
    assert not is_sealed(b'{"plain": true}')


def test_key_repr_hides_material() -> None:
    assert "secret" not in repr(K1) and repr(bytes(range(32))) not in repr(KeyRing(K1))


def test_bad_keys_rejected() -> None:
    with pytest.raises(ValueError):
        DataKey("a:b", bytes(32))
    with pytest.raises(ValueError):
        DataKey("k", bytes(16))


def test_key_file_round_trip_and_errors() -> None:
    ring = KeyRing(K2, (K1,))
    assert parse_key_file(render_key_file(ring)) == ring
    with pytest.raises(KeyFileError, match="current key"):
        parse_key_file('{"current": "k9", "keys": {}}')
    with pytest.raises(KeyFileError):
        parse_key_file("not json")


def test_key_file_created_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "encryption-keys"
    ring = load_or_create_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key_file(path) == ring


@given(
    plaintext=hs.binary(max_size=2048),
    storage_key=hs.text(min_size=1, max_size=80),
    nonce=hs.binary(min_size=12, max_size=12),
)
def test_round_trip_property(plaintext: bytes, storage_key: str, nonce: bytes) -> None:
    ring = KeyRing(K1).rotated(K2)
    sealed = seal(ring.current, storage_key, plaintext, nonce)
    assert open_envelope(ring, storage_key, sealed) == plaintext
    assert open_envelope(KeyRing(K2), storage_key, sealed) == plaintext


# ----- the SQLite store at its persistence boundary


def _secret(name: str, value: str) -> dict[str, object]:
    return {"kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "stringData": {"v": value}}


def _rows(db: Path) -> dict[str, bytes]:
    conn = sqlite3.connect(db)
    try:
        return {k: bytes(v) for k, v in conn.execute("SELECT key, value FROM objects")}
    finally:
        conn.close()


async def test_sqlite_seals_secrets_only_and_reads_back(tmp_path: Path) -> None:
    db, keys = tmp_path / "state.db", tmp_path / "encryption-keys"
    store = await SqliteStore.open(db, key_file=keys)
    await store.create("/core/secrets/default/a", _secret("a", "canary-aaa"))
    await store.create("/core/configmaps/default/c", _secret("c", "visible-ccc"))
    await store.close()
    rows = _rows(db)
    assert is_sealed(rows["/core/secrets/default/a"]) and b"canary-aaa" not in rows["/core/secrets/default/a"]
    assert b"visible-ccc" in rows["/core/configmaps/default/c"]
    store = await SqliteStore.open(db, key_file=keys)
    try:
        assert (await store.get("/core/secrets/default/a"))["stringData"] == {"v": "canary-aaa"}
    finally:
        await store.close()


async def test_sqlite_damaged_row_fails_alone_and_rotation(tmp_path: Path) -> None:
    db, keys = tmp_path / "state.db", tmp_path / "encryption-keys"
    store = await SqliteStore.open(db, key_file=keys)
    for name in ("good", "bad"):
        await store.create(f"/core/secrets/default/{name}", _secret(name, f"v-{name}"))
    await store.close()
    bad = bytearray(_rows(db)["/core/secrets/default/bad"])
    bad[-3] ^= 0x40
    conn = sqlite3.connect(db)
    conn.execute("UPDATE objects SET value = ? WHERE key = ?", (bytes(bad), "/core/secrets/default/bad"))
    conn.commit()
    conn.close()
    old_id = parse_key_file(keys.read_text()).current.id

    store = await SqliteStore.open(db, key_file=keys)
    try:
        with pytest.raises(DecryptError, match="/core/secrets/default/bad"):
            await store.get("/core/secrets/default/bad")
        assert (await store.get("/core/secrets/default/good"))["stringData"] == {"v": "v-good"}
        assert [o["metadata"]["name"] for o in (await store.list("/core/secrets/")).items] == ["good"]
        result = await store.rotate_key()
        assert result.resealed == 1 and result.unreadable == ["/core/secrets/default/bad"]
        assert result.retired == [old_id]
        # Writing the damaged key again heals it.
        await store.create("/core/secrets/default/bad", _secret("bad", "v-new"))
        assert (await store.get("/core/secrets/default/bad"))["stringData"] == {"v": "v-new"}
        with pytest.raises(NotFound):
            await store.get("/core/secrets/default/none")
    finally:
        await store.close()
    ring = parse_key_file(keys.read_text())
    assert ring.ids == [result.key_id] and old_id not in keys.read_text()
    assert all(
        envelope_key_id(v) == result.key_id for k, v in _rows(db).items() if k.startswith("/core/secrets/")
    )
    store = await SqliteStore.open(db, key_file=keys)
    try:
        assert (await store.get("/core/secrets/default/good"))["stringData"] == {"v": "v-good"}
        assert (await store.get("/core/secrets/default/bad"))["stringData"] == {"v": "v-new"}
    finally:
        await store.close()


async def test_rotation_seals_rows_written_before_encryption(tmp_path: Path) -> None:
    db, keys = tmp_path / "state.db", tmp_path / "encryption-keys"
    store = await SqliteStore.open(db)
    await store.create("/core/secrets/default/legacy", _secret("legacy", "plain-old"))
    await store.close()
    store = await SqliteStore.open(db, key_file=keys)
    try:
        assert (await store.get("/core/secrets/default/legacy"))["stringData"] == {"v": "plain-old"}
        assert (await store.rotate_key()).resealed == 1
    finally:
        await store.close()
    assert b"plain-old" not in _rows(db)["/core/secrets/default/legacy"]


async def test_rotation_while_writes_keep_coming(tmp_path: Path) -> None:
    db, keys = tmp_path / "state.db", tmp_path / "encryption-keys"
    store = await SqliteStore.open(db, key_file=keys)
    names = [f"s{i}" for i in range(60)]
    try:
        await asyncio.gather(*(store.create(f"/core/secrets/default/{n}", _secret(n, n)) for n in names[:30]))
        writes = [store.create(f"/core/secrets/default/{n}", _secret(n, n)) for n in names[30:]]
        result, *_ = await asyncio.gather(store.rotate_key(), *writes)
        assert isinstance(result, RotationResult)
    finally:
        await store.close()
    ring = parse_key_file(keys.read_text())
    assert ring.ids == [result.key_id]
    store = await SqliteStore.open(db, key_file=keys)  # only the new key: every row must open
    try:
        listed = await store.list("/core/secrets/default/")
        assert sorted(o["metadata"]["name"] for o in listed.items) == sorted(names)
        assert store._database.unreadable == {}
    finally:
        await store.close()
