"""API keys: who may read alerts, who may handle them, who may manage keys (SQLite, WAL).

A key is a random token shown once at creation; only its SHA-256 is stored, so a copy of the
database does not let anyone in. Each key has a unique ``name`` (the actor recorded in audits
and in alert transitions) and a :class:`Role`:

* ``viewer`` reads alerts, beds, series and service logs;
* ``dispatcher`` also acknowledges and resolves alerts and checks caregivers in and out;
* ``admin`` also creates, lists and revokes keys.

Tokens look like ``hck_<12 hex id>_<43 url-safe chars>`` (256 bits of secret). The id part
finds the row; the hash is then compared in constant time. A *bootstrap* token (from
``HOMECARE_API_KEY``) is accepted as the admin ``bootstrap`` without being a stored key, so a
fresh gateway can be administered before any key exists. Because it is chosen by a person, it must
prove to be a secret: at least :data:`MIN_BOOTSTRAP_LENGTH` characters and an estimated
:data:`MIN_BOOTSTRAP_BITS` bits (:func:`estimated_entropy_bits`), else the store refuses to
open and says how to make one. Long-lived requests (event streams) re-check their key by id
(:meth:`KeyStore.is_active`), so revoking a key also ends what it has open.

Revoked keys stay in the table (revoked_at/by) for the audit trail; their name may be reused.
Every API write is recorded in the ``audit`` table with the key's name.

When a token last authenticated is kept by its SHA-256 in ``key_uses`` (:meth:`KeyStore.note_use`,
the bootstrap token's too; rows older than :data:`KEY_USE_KEPT_MS` are dropped), so the API's
lockout of an address that tried too many wrong keys still lets through a key that worked
within the last day after a restart too (:class:`alerts.api._limits.ProvenKeys`); memory
alone forgot them, and one careless client behind a station's address locked its colleagues
out for a minute after every restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Literal

from alerts.errors import InvalidKeyName, KeyExists, KeyNotFound
from alerts.secret_strength import estimated_entropy_bits, weak_reading

BOOTSTRAP_NAME: Final = "bootstrap"
"""Name under which the bootstrap token acts (reserved)."""
RESERVED_NAMES: Final = frozenset({BOOTSTRAP_NAME, "system", "person", "environment"})
"""Names a key cannot take: they are actors of the gateway itself in audits."""
TOKEN_PREFIX: Final = "hck_"
MIN_BOOTSTRAP_LENGTH: Final = 32
MIN_BOOTSTRAP_BITS: Final = 112
"""Estimated bits a bootstrap key must carry: 112 is the least security strength NIST allows
(SP 800-131A). ``secrets.token_urlsafe(32)`` gives 256 real bits and is always accepted; a
random 32-character key is refused about once in 3,000 by this conservative estimate; 32 random
hex digits (128 bits, ``openssl rand -hex 16``) about once in 11 (275 of 3,000): one such run in
eight reads as a UUID, and a time- or name-based UUID leaves little to guess; 64 (``openssl rand
-hex 32``) none of 3,000. Phrases of common words, years and digests of a word never pass
(:mod:`alerts.secret_strength`)."""
GENERATE_COMMAND: Final = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'
MAX_TOKEN_LENGTH: Final = 512
NAME_PATTERN: Final = r"^[A-Za-z0-9_.@-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)
_TOKEN = re.compile(r"^hck_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")
KEY_USE_WRITE_MS: Final = 600_000
"""A token's use is written at most this often (a write per request would cost a disk flush
each); so the time kept is at most this much older than its last use."""
KEY_USE_KEPT_MS: Final = 86_400_000
"""How long a token's last use is kept: the API welcomes a key used within the last day."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at INTEGER,
    revoked_by TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name)
    WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    status INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS key_uses (
    token_sha256 TEXT PRIMARY KEY,
    used_at INTEGER NOT NULL
);
"""


class Role(StrEnum):
    VIEWER = "viewer"
    DISPATCHER = "dispatcher"
    ADMIN = "admin"

    def allows(self, required: Role) -> bool:
        """Roles are ordered: an admin may do what a dispatcher may, who may do what a viewer
        may."""
        return _RANK[self] >= _RANK[required]


_RANK: Final = {Role.VIEWER: 0, Role.DISPATCHER: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A key as listed; never carries the token or its hash."""

    id: str
    name: str
    role: Role
    created_at: int
    created_by: str
    revoked_at: int | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    id: int
    at: int
    actor: str
    action: str
    target: str
    status: int
    detail: str


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def bootstrap_key_problem(token: str) -> str | None:
    """Why ``token`` cannot be a bootstrap key (too short, too guessable), or ``None``.

    >>> bootstrap_key_problem("letmein") is not None
    True
    """
    if len(token) > MAX_TOKEN_LENGTH:
        return f"the bootstrap API key has more than {MAX_TOKEN_LENGTH} characters"
    bits = estimated_entropy_bits(token)
    if len(token) >= MIN_BOOTSTRAP_LENGTH and bits >= MIN_BOOTSTRAP_BITS:
        return None
    why = weak_reading(token, MIN_BOOTSTRAP_BITS)
    return (f"the bootstrap API key must be a random secret of at least "
            f"{MIN_BOOTSTRAP_LENGTH} characters and {MIN_BOOTSTRAP_BITS} bits of estimated "
            f"entropy (this one: {len(token)} characters, about {bits:.0f} bits"
            f"{'; ' + why if why else ''}); make one with: {GENERATE_COMMAND}")


def new_token() -> tuple[str, str]:
    """A fresh ``(id, token)``."""
    key_id = secrets.token_hex(6)
    return key_id, f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


class KeyStore:
    """Thread-safe; every method is a short blocking SQLite call (run off the event loop)."""

    def __init__(self, path: str | Path, *, bootstrap_token: str | None = None) -> None:
        if bootstrap_token is not None:
            problem = bootstrap_key_problem(bootstrap_token)
            if problem is not None:
                raise ValueError(problem)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if str(path) != ":memory:" and not self.path.exists():
            # Key hashes and the audit log: private from the first write (SQLite gives its WAL
            # files the main file's mode), also when `homecare keys create` makes it.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        self._bootstrap = _digest(bootstrap_token) if bootstrap_token else None
        self._lock = threading.Lock()
        self._use_written: dict[str, int] = {}  # digest -> when its use was last written
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    # --- keys -------------------------------------------------------------------------------

    def create(self, name: str, role: Role | str, *, actor: str,
               now_ms: int | None = None) -> tuple[ApiKey, str]:
        """A new key and its token (shown once; only the hash is kept)."""
        if not _NAME.fullmatch(name) or name.lower() in RESERVED_NAMES:
            raise InvalidKeyName(name, RESERVED_NAMES)
        role = Role(role)
        at = _now_ms() if now_ms is None else now_ms
        key_id, token = new_token()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO api_keys (id, name, role, token_sha256, created_at, created_by)"
                    " VALUES (?, ?, ?, ?, ?, ?)", (key_id, name, role.value, _digest(token), at,
                                                   actor))
            except sqlite3.IntegrityError:
                raise KeyExists(name) from None
        return ApiKey(id=key_id, name=name, role=role, created_at=at, created_by=actor), token

    def revoke(self, name: str, *, actor: str, now_ms: int | None = None) -> ApiKey:
        """Revoke the active key called ``name``; it stops working at once."""
        at = _now_ms() if now_ms is None else now_ms
        with self._lock:
            row = self._db.execute(
                "UPDATE api_keys SET revoked_at = ?, revoked_by = ?"
                " WHERE name = ? AND revoked_at IS NULL"
                " RETURNING id, name, role, created_at, created_by, revoked_at, revoked_by",
                (at, actor, name)).fetchone()
        if row is None:
            raise KeyNotFound(name)
        return _key(row)

    def list_keys(self, *, include_revoked: bool = True) -> list[ApiKey]:
        query = ("SELECT id, name, role, created_at, created_by, revoked_at, revoked_by"
                 " FROM api_keys")
        if not include_revoked:
            query += " WHERE revoked_at IS NULL"
        with self._lock:
            # rowid: creation order, also for keys made in the same millisecond
            rows = self._db.execute(query + " ORDER BY created_at, rowid").fetchall()
        return [_key(row) for row in rows]

    def get(self, name: str) -> ApiKey | None:
        """The active key called ``name``."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, role, created_at, created_by, revoked_at, revoked_by"
                " FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone()
        return _key(row) if row else None

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key behind ``token``, or ``None``. Comparison is constant-time."""
        return self.verify(token)[0]

    def verify(self, token: str) -> tuple[ApiKey | None, Literal["ok", "unknown", "revoked"]]:
        """The active key behind ``token`` and ``"ok"``; else ``None`` and why: ``"revoked"``
        (the token was a key, since revoked) or ``"unknown"``. Comparison is constant-time."""
        if len(token) > MAX_TOKEN_LENGTH:
            return None, "unknown"
        digest = _digest(token)
        if self._bootstrap is not None and hmac.compare_digest(digest, self._bootstrap):
            return _bootstrap_key(), "ok"
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None, "unknown"
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, role, created_at, created_by, revoked_at, revoked_by,"
                " token_sha256 FROM api_keys WHERE id = ?", (match.group(1),)).fetchone()
        if row is None or not hmac.compare_digest(digest, row[7]):
            return None, "unknown"
        if row[5] is not None:
            return None, "revoked"
        return _key(row[:7]), "ok"

    def is_active(self, key_id: str) -> bool:
        """Whether the key with this id (as authenticated earlier) still works: re-checked by
        requests that outlive their authentication, such as event streams."""
        if key_id == BOOTSTRAP_ID:
            return self._bootstrap is not None
        with self._lock:
            row = self._db.execute("SELECT revoked_at FROM api_keys WHERE id = ?",
                                   (key_id,)).fetchone()
        return row is not None and row[0] is None

    def note_use(self, token: str, *, now_ms: int | None = None) -> None:
        """Remember that ``token`` (just verified) authenticated now, by its SHA-256: written
        at most every :data:`KEY_USE_WRITE_MS` per token, older uses dropped."""
        at = _now_ms() if now_ms is None else now_ms
        digest = _digest(token)
        with self._lock:
            last = self._use_written.get(digest)
            if last is not None and 0 <= at - last < KEY_USE_WRITE_MS:
                return
            self._use_written[digest] = at  # before writing: a failing disk is tried again later
            self._db.execute(
                "INSERT INTO key_uses (token_sha256, used_at) VALUES (?, ?) ON CONFLICT"
                " (token_sha256) DO UPDATE SET used_at = max(used_at, excluded.used_at)",
                (digest, at))
            self._db.execute("DELETE FROM key_uses WHERE used_at < ?", (at - KEY_USE_KEPT_MS,))

    def recent_uses(self, *, since_ms: int) -> list[tuple[bytes, int]]:
        """The SHA-256 of each token that authenticated at ``since_ms`` or later, and when it
        last did (as written by :meth:`note_use`)."""
        with self._lock:
            rows = self._db.execute("SELECT token_sha256, used_at FROM key_uses"
                                    " WHERE used_at >= ?", (since_ms,)).fetchall()
        return [(bytes.fromhex(str(digest)), int(at)) for digest, at in rows]

    # --- audit ------------------------------------------------------------------------------

    def audit(self, *, actor: str, action: str, target: str, status: int, detail: str = "",
              now_ms: int | None = None) -> None:
        """Record one write made through the API (append-only)."""
        at = _now_ms() if now_ms is None else now_ms
        with self._lock:
            self._db.execute(
                "INSERT INTO audit (at, actor, action, target, status, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (at, actor[:128], action[:64], target[:512], status, detail[:1000]))

    def audit_log(self, *, limit: int = 100, actor: str | None = None) -> list[AuditEntry]:
        """Most recent first."""
        query = "SELECT id, at, actor, action, target, status, detail FROM audit"
        args: tuple[object, ...] = ()
        if actor is not None:
            query += " WHERE actor = ?"
            args = (actor,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id DESC LIMIT ?",
                                    (*args, limit)).fetchall()
        return [AuditEntry(id=r[0], at=r[1], actor=r[2], action=r[3], target=r[4],
                           status=r[5], detail=r[6]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


BOOTSTRAP_ID: Final = "bootstrap"
"""The id of the bootstrap key (stored ids are 12 hex digits, so never this)."""


def _bootstrap_key() -> ApiKey:
    return ApiKey(id=BOOTSTRAP_ID, name=BOOTSTRAP_NAME, role=Role.ADMIN, created_at=0,
                  created_by="environment")


def _key(row: Any) -> ApiKey:
    key_id, name, role, created_at, created_by, revoked_at, revoked_by = row
    return ApiKey(id=str(key_id), name=str(name), role=Role(str(role)),
                  created_at=int(created_at), created_by=str(created_by),
                  revoked_at=None if revoked_at is None else int(revoked_at),
                  revoked_by=None if revoked_by is None else str(revoked_by))
