"""What a report built from the service log can say of the log's hash chain: checked up to
which record, when, against what (its own links, the stored checkpoint, heads kept elsewhere),
and sound or the first bad record.

The supervision report bills from the chain, so it states this on its first lines (the
printable page in a banner, red when the chain is not sound; the JSON as ``chain``; the CLI
warns and exits 3, the API sends ``X-Service-Log-Chain``). A chain re-hashed after an edit
(with its stored head and checkpoint) passes its own links: only heads kept elsewhere find it,
so a report verified without them says so.

>>> from alerts.servicelog import Verification
>>> s = chain_status(Verification(ok=True, records=9, head_seq=9, head_hash="ab" * 32,
...                               checked=9), kept_heads=0, at_ms=0)
>>> s.sound, s.headline()
(True, 'Service log chain: sound up to record 9 (its own links; no head kept elsewhere given)')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from alerts.servicelog import Verification


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainStatus:
    """The chain's verification as a report states it."""

    sound: bool
    verified_at: int
    """When this verification ran (epoch ms)."""
    records: int
    """Records known good (up to the one before the first bad, or the last a head vouched
    for)."""
    checked: int
    """Records recomputed by this verification, from ``from_seq``."""
    from_seq: int
    kept_heads: int
    """Heads kept elsewhere it was checked against (0: its own links only)."""
    first_bad_seq: int | None = None
    suspect_from: int | None = None
    suspect_to: int | None = None
    error: str | None = None
    full_verified_at: int | None = None
    """The last full verification (the records before ``from_seq`` are vouched for as of
    it); None: never."""
    full_sound: bool | None = None

    def headline(self) -> str:
        """One line for the top of a report."""
        against = (f"against {self.kept_heads} heads kept elsewhere" if self.kept_heads
                   else "its own links; no head kept elsewhere given")
        if not self.sound:
            where = (f"first bad record {self.first_bad_seq}" if self.first_bad_seq is not None
                     else f"some record from {self.suspect_from} to {self.suspect_to} was "
                          f"changed")
            return (f"Service log chain NOT SOUND ({where}; {against}): {self.error} — the "
                    f"figures of this report cannot be trusted")
        line = f"Service log chain: sound up to record {self.records} ({against})"
        if self.from_seq > 1:
            line += (f"; records before {self.from_seq} as of the full verification at "
                     f"{self.full_verified_at}" if self.full_verified_at is not None
                     else f"; records before {self.from_seq} never fully re-verified")
        return line

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "headline": self.headline()}


def chain_status(result: Verification, *, kept_heads: int, at_ms: int) -> ChainStatus:
    """:class:`ChainStatus` of a verification (:meth:`alerts.ServiceLog.verify`)."""
    full = result.last_full
    return ChainStatus(
        sound=result.ok, verified_at=at_ms, records=result.records, checked=result.checked,
        from_seq=result.from_seq, kept_heads=kept_heads, first_bad_seq=result.first_bad_seq,
        suspect_from=result.suspect_from, suspect_to=result.suspect_to, error=result.error,
        full_verified_at=None if full is None else full.at,
        full_sound=None if full is None else full.ok)

