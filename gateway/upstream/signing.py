"""Signing what goes upstream: one scheme for the platform and every family webhook.

``X-Homecare-Signature: t=<epoch ms>,v1=<hex>``, HMAC-SHA256 over ``"<t>." + body`` with the
shared secret (:func:`signature`, checked by :func:`verify`, which a receiver can copy); for a
family, with the bed's own secret derived from the gateway's (:func:`family_secret`, ``homecare
upstream family-secret``), so no family holds a key that signs for the platform or another bed;
for the institution, with its own derived secret (:func:`institution_secret`, ``homecare
upstream institution-secret``).

>>> header = signature(b"secret", b"{}", 1_000)
>>> verify(b"secret", header, b"{}", now_ms=2_000)
True
>>> verify(family_secret(b"secret", "site-01", "bed-0001"), header, b"{}", now_ms=2_000)
False
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

SIGNATURE_TOLERANCE_MS: Final = 5 * 60_000
PLATFORM: Final = "platform"
"""The platform's destination name; a family's is :func:`family_destination`."""
INSTITUTION: Final = "institution"
"""The care institution's destination name."""


def family_destination(site: str, bed: str) -> str:
    return f"family:{site}/{bed}"


def family_secret(secret: bytes, site: str, bed: str) -> bytes:
    """The signing secret of one bed's family webhook, derived from the gateway's secret."""
    return hmac.new(secret, f"family/{site}/{bed}".encode(), hashlib.sha256).hexdigest().encode()


def institution_secret(secret: bytes) -> bytes:
    """The signing secret of the institution's endpoint, derived from the gateway's secret."""
    return hmac.new(secret, b"institution", hashlib.sha256).hexdigest().encode()


def signature(secret: bytes, body: bytes, t_ms: int) -> str:
    """The ``X-Homecare-Signature`` header value of ``body`` sent at ``t_ms``."""
    digest = hmac.new(secret, b"%d." % t_ms + body, hashlib.sha256).hexdigest()
    return f"t={t_ms},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, *, now_ms: int | None = None,
           tolerance_ms: int = SIGNATURE_TOLERANCE_MS) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, sent within ``tolerance_ms`` of now
    (what a receiving platform checks; replays of old requests fail)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t_ms = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(now - t_ms) > tolerance_ms:
        return False
    expected = signature(secret, body, t_ms).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, given)
