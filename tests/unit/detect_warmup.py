"""A detector test's warm-up shared with the other tests of its file that begin the same way.

Many detector tests simulate days of the same routine before their scenario. :func:`shared_run`
is :func:`tests.unit.test_detect_support.run` on a new detector, except that it resumes from
the furthest checkpoint (a deep copy of the detector and the findings so far, taken every few
hours of message time) an earlier run of this process left for the same detector (``key``),
clock grid (``start``, ``step``) and the very same messages fed by then. What the test sees is
what it would have seen from the start: the same messages in the same batches, the same
evaluations, the same findings. ``DETECT_WARMUP_SHARED=0`` runs everything from the start;
``DETECT_WARMUP_SHARED=check`` runs both ways and fails if their findings differ.

A test that patches the detectors' code or settings (monkeypatch) must use ``run`` itself: the
checkpoints were taken with the code as it was, under the same ``key``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import threading
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import msgspec

from alerts.model import Finding
from devices import Message
from gateway.detect._base import DetectorBase
from tests.unit.test_detect_support import run

CHECKPOINT_EVERY_MS = 3 * 3_600_000
_encoder = msgspec.msgpack.Encoder()
_LOCK = type(threading.Lock())


@dataclass(frozen=True)
class _Checkpoint:
    tick: int
    """The last evaluation's time."""
    fed: int
    """How many of the sorted messages were fed by then."""
    digest: bytes
    """Of those messages (:func:`_fingerprint`)."""
    detector: DetectorBase
    findings: tuple[Finding, ...]


_checkpoints: dict[Hashable, list[_Checkpoint]] = {}


def _fingerprint(received: int, message: Message) -> bytes:
    """What the detectors can see of a message. The sequence number is a process-wide counter
    in the builders; the detectors read only whether it is above 0 (a status's goodbye)."""
    payload = message.payload
    if hasattr(payload, "seq"):
        payload = msgspec.structs.replace(payload, seq=int(payload.seq > 0))
    return _encoder.encode((received, message.address, payload))


def _copied(detector: DetectorBase) -> DetectorBase:
    """A deep copy of ``detector`` with locks of its own (a lock cannot be copied; these are
    free between two calls of a single-threaded test)."""
    memo: dict[int, object] = {}
    for part in vars(detector.fleet).values():
        for value in vars(part).values() if hasattr(part, "__dict__") else ():
            if isinstance(value, _LOCK):
                memo[id(value)] = threading.Lock()
    return copy.deepcopy(detector, memo)


def shared_run(key: Hashable, make: Callable[[], DetectorBase],
               traffic: Iterable[tuple[int, Message]], *, start: int, end: int,
               step: int = 10_000) -> list[Finding]:
    """``run(make(), traffic, start=start, end=end, step=step)``; ``key`` names what ``make``
    builds (two calls of ``make`` with the same key build detectors in the same state)."""
    pending = sorted(traffic, key=lambda pair: pair[0])
    mode = os.environ.get("DETECT_WARMUP_SHARED", "1")
    if mode == "0":
        key = object()  # nothing shared
    findings = _resumed(key, make, pending, start=start, end=end, step=step)
    if mode == "check":
        assert findings == run(make(), pending, start=start, end=end, step=step)
    return findings


def _resumed(key: Hashable, make: Callable[[], DetectorBase],
             pending: list[tuple[int, Message]], *, start: int, end: int,
             step: int) -> list[Finding]:
    grid = (key, start, step)
    saved = _checkpoints.setdefault(grid, [])
    hasher = hashlib.sha256()
    detector: DetectorBase | None = None
    findings: list[Finding] = []
    i, now = 0, start
    # The furthest checkpoint whose fed messages are this traffic's first ones, and after which
    # the next message came no earlier than that evaluation (so it was not fed by then here).
    digests: dict[int, bytes] = {}
    wanted = {cp.fed for cp in saved if cp.tick <= end}
    running = hashlib.sha256()
    for n in range(max(wanted, default=0) + 1):
        if n in wanted:
            digests[n] = running.digest()
        if n < len(pending):
            running.update(_fingerprint(*pending[n]))
    for cp in sorted(saved, key=lambda c: c.tick, reverse=True):
        if cp.tick > end or cp.fed > len(pending) or digests.get(cp.fed) != cp.digest:
            continue
        if cp.fed < len(pending) and pending[cp.fed][0] < cp.tick:
            continue
        detector = _copied(cp.detector)
        findings = list(copy.deepcopy(cp.findings))
        i, now = cp.fed, cp.tick + step
        for pair in pending[:i]:
            hasher.update(_fingerprint(*pair))
        break
    if detector is None:
        detector = make()
    known = {(cp.tick, cp.fed, cp.digest) for cp in saved}
    while now <= end:
        batch = []
        while i < len(pending) and pending[i][0] < now:
            batch.append(pending[i])
            hasher.update(_fingerprint(*pending[i]))
            i += 1
        if batch:
            detector.update([m for _, m in batch], [r for r, _ in batch])
        findings.extend(detector.evaluate(now))
        if (now - start) % CHECKPOINT_EVERY_MS < step and now < end:
            digest = hasher.digest()
            if (now, i, digest) not in known:
                saved.append(_Checkpoint(now, i, digest, _copied(detector),
                                         tuple(copy.deepcopy(findings))))
        now += step
    return findings
