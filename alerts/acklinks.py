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

A link is bound to the call it was sent for: the alert's change that took the step (its seq,
``q`` in the token; a token minted before this field carries it in the notification key,
``<source>/notify/<alert>/<seq>/...``, and is bound the same way). A new call after an
acknowledgement reopens the alert (:mod:`alerts.engine`): from then on, the links sent before it
are refused (:func:`call_started`, :meth:`Claim.stale`), so a link sent for the first press
never silences the second. A token with no seq at all (none this gateway minted) counts as sent
for the alert's first call: refused once a second call came.

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
>>> links.read(links.mint(key="gw/notify/A1/7/email/anna", alert_id="A1", recipient="anna",
...     step=1, channel="email", now_ms=0), now_ms=1).seq  # from the key
7
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from alerts.model import AlertChange, AlertStatus

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
    seq: int | None = None
    """The alert change the notification was sent for (None: a token that does not say)."""

    def stale(self, call: int | None) -> bool:
        """Whether this link was sent before the alert's current call (started by change
        ``call``, :func:`call_started`; None: its first call): a newer call came after it.
        A link that names no change counts as sent for the first call."""
        return call is not None and (self.seq is None or self.seq < call)


def call_started(history: Sequence[AlertChange]) -> int | None:
    """The seq of the change that started the alert's current call: the last that put it back
    to ``open`` from ``acknowledged`` (a new call after an acknowledgement); None while it is
    in its first call. Every link sent before it is stale (:meth:`Claim.stale`).

    >>> from alerts.model import Alert
    >>> def c(seq, status):
    ...     return AlertChange(seq=seq, at=0, action="x", alert=Alert(
    ...         id="A", incident="i", type="fall", severity="high", site="s", bed="b",
    ...         opened_at=0, updated_at=0, status=AlertStatus(status)))
    >>> call_started([c(3, "open"), c(4, "acknowledged"), c(9, "open"), c(12, "open")])
    9
    >>> call_started([c(3, "open"), c(5, "acknowledged")]) is None
    True
    """
    for before, change in zip(reversed(history[:-1]), reversed(history[1:]), strict=True):
        if change.alert.status is AlertStatus.OPEN \
                and before.alert.status is AlertStatus.ACKNOWLEDGED:
            return change.seq
    return None


_KEY_SEQ = re.compile(r"/notify/([^/]+)/([0-9]{1,18})/")


def _seq_of(key: str, alert_id: str) -> int | None:
    """The change seq in a notification key (:mod:`alerts.notify`), if it has one."""
    match = _KEY_SEQ.search(key)
    return int(match.group(2)) if match and match.group(1) == alert_id else None


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
             now_ms: int, seq: int | None = None) -> str:
        """The token of a notification queued at ``now_ms``, sent for the alert's change
        ``seq`` (by default the seq in ``key``, see the module docstring)."""
        if seq is None:
            seq = _seq_of(key, alert_id)
        fields: dict[str, object] = {"k": key, "a": alert_id, "r": recipient, "s": step,
                                     "c": channel, "e": now_ms + self.ttl_ms}
        if seq is not None:
            fields["q"] = seq
        payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def read(self, token: str, *, now_ms: int) -> Claim | Problem:
        """What ``token`` says, or why it cannot be used (``invalid``: not ours, altered or
        malformed; ``expired``)."""
        claim = self.inspect(token)
        if claim is None:
            return "invalid"
        return "expired" if now_ms >= claim.expires_at else claim

    def inspect(self, token: str) -> Claim | None:
        """What a token of ours says, expired or not (None: not ours, altered or malformed)."""
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return None
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            fields = json.loads(_unb64(payload))
            key, alert_id = str(fields["k"]), str(fields["a"])
            seq = fields.get("q")
            return Claim(key=key, alert_id=alert_id, recipient=str(fields["r"]),
                         step=int(fields["s"]), channel=str(fields["c"]),
                         expires_at=int(fields["e"]),
                         seq=int(seq) if seq is not None else _seq_of(key, alert_id))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            return None

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
