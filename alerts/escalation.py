"""When an unacknowledged alert is escalated: one schedule per severity.

A :class:`Schedule` lists the delays between consecutive escalation steps: the first step comes
``steps_ms[0]`` after the alert opened, the second ``steps_ms[1]`` after the first, and so on;
after the listed steps, one more every ``repeat_ms`` (or none when it is ``None``). The default
policy follows telecare practice (97.5 % of alarm calls answered within 60 s):

=========  =======================================  ==========
severity   steps                                    then every
=========  =======================================  ==========
critical   60 s, then 180 s later                   300 s
high       5 min                                    10 min
medium     30 min                                   --
low        --                                       --
=========  =======================================  ==========

Timers are absolute times kept in the alert (``next_escalation_at``), so they survive a
restart: :meth:`Schedule.advance` moves an overdue alert through every step whose time has
passed, on the original timeline (timers honoured, not reset). The one reset: a new call on an
acknowledged alert (a repeat, see :mod:`alerts.engine`) reopens it at level 0, the first step
due ``steps_ms[0]`` after the repeat.

>>> policy = EscalationPolicy()
>>> policy.first_at(Severity.CRITICAL, opened_at=0)
60000
>>> policy.critical.advance(level=0, due=60_000, now=250_000)  # steps at 60 s and 240 s
(2, 540000, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.model import Severity


@dataclass(frozen=True, kw_only=True, slots=True)
class Schedule:
    """Delays (ms) between escalation steps of one severity; see the module docstring."""

    steps_ms: tuple[int, ...] = ()
    repeat_ms: int | None = None

    def __post_init__(self) -> None:
        if any(not isinstance(s, int) or s <= 0 for s in self.steps_ms):
            raise ValueError("escalation steps must be positive whole milliseconds")
        if self.repeat_ms is not None and (not isinstance(self.repeat_ms, int)
                                           or self.repeat_ms <= 0):
            raise ValueError("escalation repeat must be positive milliseconds or None")

    @classmethod
    def seconds(cls, steps_s: tuple[float, ...] | list[float] = (),
                repeat_s: float | None = None) -> Schedule:
        """A schedule from seconds; a repeat of ``None`` or ``0`` means no repetition."""
        return cls(steps_ms=tuple(round(s * 1000) for s in steps_s),
                   repeat_ms=round(repeat_s * 1000) if repeat_s else None)

    def delay(self, level: int) -> int | None:
        """Delay from step ``level`` (0: the alert opened) to the next step, or None."""
        if level < len(self.steps_ms):
            return self.steps_ms[level]
        return self.repeat_ms

    def advance(self, *, level: int, due: int, now: int) -> tuple[int, int | None, int]:
        """Take every step due by ``now``, starting with the one due at ``due``.

        Returns ``(new level, next due time or None, steps taken)``.
        """
        next_due: int | None = due
        steps = 0
        while next_due is not None and next_due <= now:
            level += 1
            steps += 1
            delay = self.delay(level)
            if delay is None:
                return level, None, steps
            if level >= len(self.steps_ms):
                # The repeating tail: skip whole periods at once after a long downtime.
                skipped = (now - next_due) // delay
                return level + skipped, next_due + (skipped + 1) * delay, steps + skipped
            next_due += delay
        return level, next_due, steps


@dataclass(frozen=True, kw_only=True, slots=True)
class EscalationPolicy:
    """One :class:`Schedule` per severity."""

    critical: Schedule = Schedule(steps_ms=(60_000, 180_000), repeat_ms=300_000)
    high: Schedule = Schedule(steps_ms=(300_000,), repeat_ms=600_000)
    medium: Schedule = Schedule(steps_ms=(1_800_000,))
    low: Schedule = Schedule()

    def schedule(self, severity: Severity) -> Schedule:
        if severity is Severity.CRITICAL:
            return self.critical
        if severity is Severity.HIGH:
            return self.high
        if severity is Severity.MEDIUM:
            return self.medium
        return self.low

    def first_at(self, severity: Severity, *, opened_at: int) -> int | None:
        """When a new alert of ``severity`` opened at ``opened_at`` is first escalated."""
        return self.next_at(severity, level=0, since=opened_at)

    def next_at(self, severity: Severity, *, level: int, since: int) -> int | None:
        """The next step after step ``level`` taken at ``since``, or None."""
        delay = self.schedule(severity).delay(level)
        return None if delay is None else since + delay
