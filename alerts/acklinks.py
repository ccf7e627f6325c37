"""One-time acknowledge links: every notification carries one, signed, expiring, usable once.

A link's token names the notification (its key), the alert, the recipient it was sent to, the
step and channel, and when it expires, and is signed with the station's link secret
(HMAC-SHA256, truncated to 128 bits), so nobody can make one or change what it says.
:meth:`AckLinks.read` checks a token (signature, expiry) without using it;
:meth:`AckLinks.use` spends it: the first use of a notification's link is recorded in
``data_dir/acklinks.sqlite3`` with who it was sent to, when, from which address and with what
result, in one statement that only one caller can win, so a link works once, even when two
requests race. The acknowledgement itself is the alert engine's (by ``oncall:<recipient>``),
and the HTTP side (:mod:`alerts.api._acklink`) audits every use in the key store's audit log.

>>> links = AckLinks(":memory:", secret=b"s" * 32, ttl_ms=60_000)
>>> token = links.mint(key="N1", alert_id="A1", recipient="anna", step=1, channel="email",
...                    now_ms=0)
>>> claim = links.read(token, now_ms=1_000)
>>> (claim.alert_id, claim.recipient, claim.step, claim.channel)
('A1', 'anna', 1, 'email')
>>> links.use(claim, client="127.0.0.1", result="acknowledged", now_ms=2_000) is None
True
>>> links.use(claim, client="127.0.0.1", result="acknowledged", now_ms=3_000).used_at
2000
>>> links.read(token, now_ms=61_000)
'expired'
>>> links.read(token[:-2] + "xx", now_ms=1_000)
'invalid'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

DEFAULT_TTL_MS: Final = 3_600_000
"""A link expires this long after its notification was queued (``notify_link_ttl_s``)."""
MAX_TOKEN_CHARS: Final = 1024

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS used_links (
    key TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    step INTEGER NOT NULL,
    channel TEXT NOT NULL,
    used_at INTEGER NOT NULL,
    client TEXT NOT NULL,
    result TEXT NOT NULL
);
"""

Problem = Literal["invalid", "expired"]


@dataclass(frozen=True, slots=True)
class Claim:
    """What a valid token says."""

    key: str
    """The notification's key (its idempotency key at the channel)."""
    alert_id: str
    recipient: str
    """The roster's staff id (or ``family_contact:<n>``) the notification was sent to."""
    step: int
    channel: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Use:
    """The first use of a link."""

    used_at: int
    recipient: str
    client: str
    result: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AckLinks:
    """Minting, checking and spending acknowledge links (see the module docstring)."""

    def __init__(self, path: str | Path, *, secret: bytes, ttl_ms: int = DEFAULT_TTL_MS
                 ) -> None:
        if len(secret) < 16:
            raise ValueError("the link secret needs at least 16 bytes")
        if ttl_ms <= 0:
            raise ValueError("ttl_ms must be positive")
        self._secret = secret
        self.ttl_ms = ttl_ms
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                   timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:16])

    def mint(self, *, key: str, alert_id: str, recipient: str, step: int, channel: str,
             now_ms: int) -> str:
        """The token of a notification queued at ``now_ms``."""
        payload = _b64(json.dumps({"k": key, "a": alert_id, "r": recipient, "s": step,
                                   "c": channel, "e": now_ms + self.ttl_ms},
                                  separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def read(self, token: str, *, now_ms: int) -> Claim | Problem:
        """What ``token`` says, or why it cannot be used (``invalid``: not ours, altered or
        malformed; ``expired``)."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return "invalid"
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return "invalid"
        try:
            fields = json.loads(_unb64(payload))
            claim = Claim(key=str(fields["k"]), alert_id=str(fields["a"]),
                          recipient=str(fields["r"]), step=int(fields["s"]),
                          channel=str(fields["c"]), expires_at=int(fields["e"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            return "invalid"
        return "expired" if now_ms >= claim.expires_at else claim

    def use(self, claim: Claim, *, client: str, result: str, now_ms: int) -> Use | None:
        """Spend the link of ``claim``: None when this was its first use (recorded with
        ``client`` and ``result``), else the use that spent it."""
        with self._lock:
            added = self._db.execute(
                "INSERT OR IGNORE INTO used_links (key, alert_id, recipient, step, channel,"
                " used_at, client, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (claim.key, claim.alert_id, claim.recipient, claim.step, claim.channel, now_ms,
                 client[:200], result[:200])).rowcount
        return None if added else self.used(claim.key)

    def used(self, key: str) -> Use | None:
        """The use that spent the link of notification ``key``, if any."""
        with self._lock:
            row = self._db.execute("SELECT used_at, recipient, client, result FROM used_links"
                                   " WHERE key = ?", (key,)).fetchone()
        return None if row is None else Use(int(row[0]), str(row[1]), str(row[2]), str(row[3]))

    def settle(self, claim: Claim, result: str) -> None:
        """Record how the use of ``claim``'s link ended (``acknowledged``, ``already
        acknowledged by ...``)."""
        with self._lock:
            self._db.execute("UPDATE used_links SET result = ? WHERE key = ?",
                             (result[:200], claim.key))

    def uses(self, alert_id: str) -> list[tuple[str, Use]]:
        """``(notification key, use)`` of every link of ``alert_id`` used, in order."""
        with self._lock:
            rows = self._db.execute("SELECT key, used_at, recipient, client, result FROM"
                                    " used_links WHERE alert_id = ? ORDER BY used_at",
                                    (alert_id,)).fetchall()
        return [(str(r[0]), Use(int(r[1]), str(r[2]), str(r[3]), str(r[4]))) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
