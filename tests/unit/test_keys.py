"""API keys: hashed at rest, roles ordered, revocation immediate, names unique while active."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest

from alerts.keys import (
    BOOTSTRAP_NAME,
    InvalidKeyName,
    KeyExists,
    KeyNotFound,
    KeyStore,
    Role,
)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.sqlite3")


def test_a_created_key_authenticates_with_its_role_and_name(store: KeyStore) -> None:
    key, token = store.create("alice", Role.DISPATCHER, actor="admin", now_ms=5)
    found = store.authenticate(token)
    assert found is not None
    assert (found.name, found.role, found.created_at, found.created_by) == (
        "alice", Role.DISPATCHER, 5, "admin")
    assert found == key


def test_only_the_hash_of_the_token_is_stored(store: KeyStore, tmp_path: Path) -> None:
    _, token = store.create("alice", "viewer", actor="admin")
    raw = (tmp_path / "keys.sqlite3").read_bytes()
    wal = tmp_path / "keys.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    secret = token.split("_", 2)[2]  # hck_<id>_<secret>; the secret itself may contain "_"
    assert secret.encode() not in raw
    assert token.encode() not in raw


@pytest.mark.parametrize("token", [
    "", "hck_", "nonsense", "hck_000000000000_" + "A" * 43, "x" * 10_000])
def test_unknown_or_malformed_tokens_are_refused(store: KeyStore, token: str) -> None:
    store.create("alice", "viewer", actor="admin")
    assert store.authenticate(token) is None


def test_a_token_with_a_known_id_but_a_wrong_secret_is_refused(store: KeyStore) -> None:
    _, token = store.create("alice", "admin", actor="admin")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert store.authenticate(forged) is None


def test_a_revoked_key_stops_working_at_once_and_its_name_can_be_reused(
        store: KeyStore) -> None:
    _, token = store.create("alice", "dispatcher", actor="admin")
    revoked = store.revoke("alice", actor="root", now_ms=9)
    assert (revoked.revoked_at, revoked.revoked_by) == (9, "root")
    assert store.authenticate(token) is None
    with pytest.raises(KeyNotFound):
        store.revoke("alice", actor="root")
    _, again = store.create("alice", "viewer", actor="admin")
    assert store.authenticate(again) is not None
    assert store.authenticate(token) is None
    names = [(k.name, k.active) for k in store.list_keys()]
    assert names == [("alice", False), ("alice", True)]
    assert [k.name for k in store.list_keys(include_revoked=False)] == ["alice"]


def test_revocation_by_another_process_is_seen(store: KeyStore, tmp_path: Path) -> None:
    _, token = store.create("alice", "viewer", actor="admin")
    other = KeyStore(tmp_path / "keys.sqlite3")  # the CLI, while the gateway runs
    other.revoke("alice", actor="cli")
    other.close()
    assert store.authenticate(token) is None


def test_active_names_are_unique(store: KeyStore) -> None:
    store.create("alice", "viewer", actor="admin")
    with pytest.raises(KeyExists):
        store.create("alice", "admin", actor="admin")


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "bootstrap", "system", "Person",
                                  "ünïcode", "a/b"])
def test_invalid_or_reserved_names_are_refused(store: KeyStore, name: str) -> None:
    with pytest.raises(InvalidKeyName):
        store.create(name, "viewer", actor="admin")


def test_unknown_roles_are_refused(store: KeyStore) -> None:
    with pytest.raises(ValueError):
        store.create("alice", "root", actor="admin")


def test_roles_are_ordered() -> None:
    assert Role.ADMIN.allows(Role.DISPATCHER)
    assert Role.ADMIN.allows(Role.VIEWER)
    assert Role.DISPATCHER.allows(Role.VIEWER)
    assert not Role.DISPATCHER.allows(Role.ADMIN)
    assert not Role.VIEWER.allows(Role.DISPATCHER)


def test_the_bootstrap_token_is_an_admin_that_is_never_stored(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    store = KeyStore(tmp_path / "keys.sqlite3", bootstrap_token=token)
    key = store.authenticate(token)
    assert key is not None
    assert (key.name, key.role) == (BOOTSTRAP_NAME, Role.ADMIN)
    assert store.list_keys() == []
    assert store.authenticate(token + "x") is None
    assert KeyStore(tmp_path / "keys.sqlite3").authenticate(token) is None


def test_a_short_bootstrap_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        KeyStore(tmp_path / "keys.sqlite3", bootstrap_token="short")


def test_audit_entries_are_kept_newest_first(store: KeyStore, tmp_path: Path) -> None:
    store.audit(actor="alice", action="POST", target="/api/v1/alerts/A/acknowledge",
                status=200, now_ms=1)
    store.audit(actor="bob", action="DELETE", target="/api/v1/keys/alice", status=403, now_ms=2)
    entries = store.audit_log()
    assert [(e.actor, e.status) for e in entries] == [("bob", 403), ("alice", 200)]
    assert [e.actor for e in store.audit_log(actor="alice")] == ["alice"]
    with sqlite3.connect(tmp_path / "keys.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM audit").fetchone()[0] == 2
