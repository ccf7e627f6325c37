"""The per-source rate budget of the dead-letter store: a token bucket of bytes per source.

A source is where a dead letter came from, as far as the gateway can tell (MQTT does not pass
the publisher's client id on): for a topic of the device contract its site, bed and device
(``homecare/v1/{site}/{bed}/{kind}/{device}/{channel}`` gives ``site/bed/device``), for any
other topic its first three levels. Each source may store ``bytes_per_s`` on average and
``burst_bytes`` at once; past that its dead letters are shed (counted by the store, not
stored), so one flooding device cannot push every other source's evidence out of the store.
A publisher that varies the ids in its topics (possible only behind a broker without the ACL
``homecare acl`` writes) is as many sources: the store's total budget alone bounds it.

Time is the letters' receipt time, not the clock of the moment: a replay decides as the live
run did, and tests need no clock of their own. Deciding and charging are two steps
(:meth:`SourceBudget.plan`, :meth:`SourceBudget.apply`), so a write that failed and is retried
with the same letters is decided the same way and charged once.

>>> budget = SourceBudget(bytes_per_s=100, burst_bytes=300)
>>> plan = budget.plan([("s/b/d", 200, 0), ("s/b/d", 200, 0), ("s/b/e", 200, 0),
...                     ("s/b/d", 200, 2_000)])
>>> plan.admitted
[True, False, True, True]
>>> budget.apply(plan)
>>> budget.plan([("s/b/d", 200, 2_000)]).admitted
[False]
>>> budget.plan([("s/b/d", 200, 1_000), ("s/b/d", 200, 3_000)]).admitted  # clock set back 1 s
[False, True]
>>> source_of("homecare/v1/site-01/bed-0007/button/btn-0007/event")
'site-01/bed-0007/btn-0007'
>>> source_of("tsdb:vitals")
'tsdb:vitals'
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

MAX_SOURCES: Final = 10_000
"""Sources whose bucket is remembered (least recently seen forgotten first): a flood of
made-up ids costs bounded memory. A forgotten source starts again with a full bucket, so such
a flood is bounded by the store's byte budget, not by this."""

_MAX_SOURCE_CHARS: Final = 200


def source_of(topic: str) -> str:
    """The source a dead letter's topic names (see the module docstring), at most 200
    characters, whatever the topic."""
    levels = topic.split("/", 7)
    if len(levels) >= 6 and levels[0] == "homecare":
        source = "/".join(level[:64] for level in (levels[2], levels[3], levels[5]))
    else:
        source = "/".join(levels[:3])
    return source[:_MAX_SOURCE_CHARS]


@dataclass(slots=True)
class Bucket:
    """A token bucket: ``tokens`` left as of ``at_ms``."""

    tokens: float
    at_ms: int


def refill(bucket: Bucket, now_ms: int, per_ms: float, burst: float) -> None:
    """Refill ``bucket`` in place at ``per_ms`` tokens a millisecond up to ``now_ms``, never
    past ``burst``. A clock set back refills nothing, and refilling resumes from the new time
    (not after the old time comes round again).

    >>> bucket = Bucket(0.0, 1_000)
    >>> refill(bucket, 3_000, 0.5, 600)
    >>> bucket
    Bucket(tokens=600.0, at_ms=3000)
    >>> refill(bucket, 2_000, 0.5, 600)
    >>> bucket
    Bucket(tokens=600.0, at_ms=2000)
    """
    if now_ms > bucket.at_ms:
        bucket.tokens = min(float(burst), bucket.tokens + (now_ms - bucket.at_ms) * per_ms)
    bucket.at_ms = now_ms


def refilled(known: Bucket | None, now_ms: int, per_ms: float, burst: float) -> Bucket:
    """A copy of ``known`` (a full bucket when None), refilled by :func:`refill`; ``known``
    itself is left as it is (a plan decides before it charges).

    >>> refilled(Bucket(10.0, 5_000), 4_000, 0.5, 600)
    Bucket(tokens=10.0, at_ms=4000)
    """
    if known is None:
        return Bucket(float(burst), now_ms)
    bucket = Bucket(known.tokens, known.at_ms)
    refill(bucket, now_ms, per_ms, burst)
    return bucket


@dataclass(slots=True)
class Plan:
    """What :meth:`SourceBudget.plan` decided: one flag per letter, and the buckets as they
    are once the admitted letters are charged (applied only by :meth:`SourceBudget.apply`)."""

    admitted: list[bool] = field(default_factory=list)
    buckets: dict[str, Bucket] = field(default_factory=dict)


class SourceBudget:
    """Token buckets of bytes, one per source. ``bytes_per_s`` 0: no limit (every letter
    admitted). A letter costing more than ``burst_bytes`` is admitted when its source's bucket
    is full, and empties it (the debt is paid back at ``bytes_per_s``)."""

    def __init__(self, *, bytes_per_s: float, burst_bytes: int,
                 max_sources: int = MAX_SOURCES) -> None:
        if bytes_per_s < 0 or burst_bytes <= 0 or max_sources <= 0:
            raise ValueError("bytes_per_s must be >= 0, burst_bytes and max_sources > 0")
        self.bytes_per_s = float(bytes_per_s)
        self.burst_bytes = burst_bytes
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def plan(self, letters: Iterable[tuple[str, int, int]]) -> Plan:
        """Decide ``(source, cost in bytes, receipt time in ms)`` letters in order, without
        changing the buckets."""
        plan = Plan()
        if not self.bytes_per_s:
            plan.admitted = [True for _ in letters]
            return plan
        for source, cost, at_ms in letters:
            bucket = plan.buckets[source] = refilled(
                plan.buckets.get(source) or self._buckets.get(source), at_ms,
                self.bytes_per_s / 1000, self.burst_bytes)
            admitted = bucket.tokens >= min(cost, self.burst_bytes)
            if admitted:
                bucket.tokens -= cost
            plan.admitted.append(admitted)
        return plan

    def charge(self, source: str, cost: int, at_ms: int) -> bool:
        """Decide and charge one item at once (where nothing is retried, as at intake: the
        :class:`~gateway.ingest.pipeline.Pipeline`'s device budget); the same rule as
        :meth:`plan`, without its copies.

        >>> budget = SourceBudget(bytes_per_s=100, burst_bytes=300)
        >>> [budget.charge("d", 200, t) for t in (0, 0, 1_000, 1_000, 5_000)]
        [True, False, True, False, True]
        """
        if not self.bytes_per_s:
            return True
        buckets = self._buckets
        bucket = buckets.get(source)
        if bucket is None:  # a new source: a full bucket
            bucket = buckets[source] = Bucket(float(self.burst_bytes), at_ms)
            if len(buckets) > self.max_sources:
                buckets.popitem(last=False)
        else:  # refilled in place: nothing allocated per message on the intake path
            buckets.move_to_end(source)
            refill(bucket, at_ms, self.bytes_per_s / 1000, self.burst_bytes)
        if bucket.tokens >= min(cost, self.burst_bytes):
            bucket.tokens -= cost
            return True
        return False

    def apply(self, plan: Plan) -> None:
        """Charge what ``plan`` admitted (once its letters are stored)."""
        for source, bucket in plan.buckets.items():
            self._buckets[source] = bucket
            self._buckets.move_to_end(source)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
