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
restart: :meth:`Schedule.due_levels` moves an overdue alert through every step whose time has
passed, on the original timeline (timers honoured, not reset), one step at a time, so that the
engine records (and the notifier tells) each. The one reset: a new call on an
acknowledged alert (a repeat, see :mod:`alerts.engine`) reopens it at level 0, the first step
due ``steps_ms[0]`` after the repeat.

>>> policy = EscalationPolicy()
>>> policy.first_at(Severity.CRITICAL, opened_at=0)
60000
>>> policy.critical.advance(level=0, due=60_000, now=250_000)  # steps at 60 s and 240 s
(2, 540000, 2)

Escalation chains (issue #13) say who is told at each step, on which channels. A
:class:`Chain` is a list of steps (:class:`Step`) for some severities and alert types: step 1 when
the alert opens (escalation level 0), each further step ``wait_s`` of the previous one later
(escalation level 1, 2...), and after the last one that step again every ``wait_s`` of the
last step (none when it has no wait). A step names its recipients (:data:`RECIPIENTS`: the
dispatchers on duty, the duty nurse, the station manager, the resident's first family contact)
and channels (:data:`CHANNELS`: the console, a signed webhook, email, an MQTT page). A chain's
waits are its alerts' escalation timeline: the engine's timers follow the chain that matches
the alert (the first in the policy's order), so escalation level ``n`` is step ``n + 1``.

Without a chain for an alert, its severity's :class:`Schedule` (the ``alert_escalation_*``
settings, as before) is the timeline of a default chain (:meth:`EscalationPolicy.chain`): step
1 the dispatchers on duty, step 2 also the duty nurse, step 3 and every repeat also the station
manager; critical and high alerts on every channel, medium and low ones on the console only.
With no roster, nobody is on duty and the default chain is what escalation always was: the
alert on the console, rung again at every step.

>>> chain = Chain(name="calls", severities=frozenset({Severity.CRITICAL}), steps=(
...     Step(recipients=("dispatchers_on_duty",), channels=("console", "email"), wait_s=30),
...     Step(recipients=("duty_nurse",), wait_s=120)))
>>> policy = EscalationPolicy(chains=(chain,))
>>> policy.first_at(Severity.CRITICAL, opened_at=0, type="fall")
30000
>>> policy.chain(Severity.CRITICAL, "fall").step(3)  # level 3: step 2, repeated twice
(2, 2)
>>> policy.chain(Severity.HIGH, "fall").name
'default-high'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from alerts.model import AlertType, Severity

RECIPIENTS: Final = ("dispatchers_on_duty", "duty_nurse", "station_manager", "family_contact")
"""Whom a step tells: the dispatchers on duty at the alert's site, the duty nurse, the station
manager (all from the on-call roster, :mod:`alerts.roster`), the resident's first emergency
contact (from the resident profile: only on a channel allowed to carry profile data)."""
CHANNELS: Final = ("console", "webhook", "email", "mqtt")
"""How a step tells them: the console (always: the alert's change on the stream), a signed
HTTP webhook (the bridge to SMS, voice and paging systems), email, an MQTT page."""
NAME_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
_NAME = re.compile(NAME_PATTERN)


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

    def due_levels(self, *, level: int, due: int, now: int) -> tuple[list[int], int | None]:
        """Each step due by ``now`` (the first due at ``due``) as the level it brings the alert
        to, in order, and the next due time (or None): one level per step, so that each step's
        recipients are told after a downtime; the periods of the repeating tail (the last step
        again and again) missed are one level: its people are told once.

        >>> Schedule(steps_ms=(10, 10), repeat_ms=100).due_levels(level=0, due=10, now=450)
        ([1, 6], 520)
        """
        levels: list[int] = []
        next_due: int | None = due
        while next_due is not None and next_due <= now:
            level += 1
            delay = self.delay(level)
            if delay is None:
                levels.append(level)
                return levels, None
            if level >= len(self.steps_ms):
                skipped = (now - next_due) // delay
                levels.append(level + skipped)
                return levels, next_due + (skipped + 1) * delay
            levels.append(level)
            next_due += delay
        return levels, next_due


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """One step of a chain: whom to tell, how, and how long to wait for an acknowledgement
    before the next step (on the last step: before it is taken again; ``None``: never)."""

    recipients: tuple[str, ...]
    channels: tuple[str, ...] = CHANNELS
    wait_s: float | None = None

    def __post_init__(self) -> None:
        unknown = [r for r in self.recipients if r not in RECIPIENTS]
        if unknown or not self.recipients or len(set(self.recipients)) != len(self.recipients):
            raise ValueError(f"recipients: one or more of {', '.join(RECIPIENTS)}, each once")
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown or not self.channels or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels: one or more of {', '.join(CHANNELS)}, each once")
        if self.wait_s is not None and not 0 < self.wait_s <= 7 * 86_400:
            raise ValueError("wait_s: positive seconds, at most a week")


@dataclass(frozen=True, kw_only=True, slots=True)
class Chain:
    """Who is told at each step of an unacknowledged alert of some severities and types (see
    the module docstring); ``types`` empty: every type."""

    name: str
    steps: tuple[Step, ...]
    severities: frozenset[Severity] = frozenset(Severity)
    types: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"chain name {self.name[:80]!r}: letters, digits, _ and -, at "
                             "most 64")
        if not self.steps:
            raise ValueError(f"chain {self.name}: at least one step")
        if any(step.wait_s is None for step in self.steps[:-1]):
            raise ValueError(f"chain {self.name}: every step but the last needs wait_s")
        if not self.severities:
            raise ValueError(f"chain {self.name}: at least one severity")
        known = {str(t) for t in AlertType}
        unknown = sorted(t for t in self.types if t not in known)
        if unknown:
            raise ValueError(f"chain {self.name}: unknown alert type {unknown[0]!r}")

    def matches(self, severity: Severity, alert_type: str | None) -> bool:
        return severity in self.severities and (
            not self.types or (alert_type is not None and alert_type in self.types))

    def schedule(self) -> Schedule:
        """The escalation timeline of this chain's alerts."""
        return Schedule.seconds([s.wait_s or 0 for s in self.steps[:-1]], self.steps[-1].wait_s)

    def step(self, level: int) -> tuple[int, int]:
        """``(step number, repeat)`` at escalation ``level``: step ``level + 1``, or the last
        step and how many times it was taken again."""
        number = min(level + 1, len(self.steps))
        return number, level + 1 - number

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Chain:
        """A chain as written in the on-call file (``[[chains]]``); raises ``ValueError``.

        >>> Chain.from_mapping({"name": "falls", "types": ["fall"], "steps": [
        ...     {"recipients": ["dispatchers_on_duty"], "wait_s": 60},
        ...     {"recipients": ["duty_nurse", "station_manager"], "channels": ["email"]}]}
        ...     ).schedule()
        Schedule(steps_ms=(60000,), repeat_ms=None)
        """
        extra = set(raw) - {"name", "severities", "types", "steps"}
        if extra:
            raise ValueError(f"chain: unknown key {sorted(extra)[0]!r}")
        steps = []
        for i, step in enumerate(_list(raw.get("steps"), "steps"), 1):
            if not isinstance(step, Mapping):
                raise ValueError(f"step {i}: a table")
            extra = set(step) - {"recipients", "channels", "wait_s"}
            if extra:
                raise ValueError(f"step {i}: unknown key {sorted(extra)[0]!r}")
            try:
                wait = step.get("wait_s")
                if wait is not None and (isinstance(wait, bool)
                                         or not isinstance(wait, int | float)):
                    raise ValueError("wait_s: seconds")
                steps.append(Step(
                    recipients=tuple(_list(step.get("recipients"), "recipients")),
                    channels=tuple(_list(step.get("channels", list(CHANNELS)), "channels")),
                    wait_s=None if wait is None else float(wait)))
            except ValueError as exc:
                raise ValueError(f"step {i}: {exc}") from None
        severities = _list(raw.get("severities", [str(s) for s in Severity]), "severities")
        try:
            parsed = frozenset(Severity(s) for s in severities)
        except ValueError:
            raise ValueError("severities: some of critical, high, medium, low") from None
        name = raw.get("name")
        if not isinstance(name, str):
            raise ValueError("chain: a name")
        return cls(name=name, steps=tuple(steps), severities=parsed,
                   types=frozenset(str(t) for t in _list(raw.get("types", []), "types")))

    def to_mapping(self) -> dict[str, Any]:
        """As written in the on-call file (and served by the API)."""
        return {"name": self.name,
                "severities": sorted((str(s) for s in self.severities),
                                     key=lambda s: Severity(s).rank),
                "types": sorted(self.types),
                "steps": [{"recipients": list(s.recipients), "channels": list(s.channels),
                           "wait_s": s.wait_s} for s in self.steps]}


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str | Mapping)
                                                      for v in value):
        raise ValueError(f"{what}: a list")
    return list(value)


_WIDENING: Final = (("dispatchers_on_duty",), ("dispatchers_on_duty", "duty_nurse"),
                    ("dispatchers_on_duty", "duty_nurse", "station_manager"))
"""The default chain's recipients at steps 1, 2 and 3 (and every repeat)."""


def default_chain(severity: Severity, schedule: Schedule) -> Chain:
    """The chain of an alert no configured chain matches: ``schedule``'s timeline, a wider
    circle each step (see the module docstring)."""
    waits = [ms / 1000 for ms in schedule.steps_ms]
    repeat = schedule.repeat_ms / 1000 if schedule.repeat_ms else None
    channels = CHANNELS if severity in (Severity.CRITICAL, Severity.HIGH) else ("console",)
    steps = tuple(Step(recipients=_WIDENING[min(i, len(_WIDENING) - 1)], channels=channels,
                       wait_s=wait)
                  for i, wait in enumerate([*waits, repeat]))
    return Chain(name=f"default-{severity}", steps=steps, severities=frozenset({severity}))


@dataclass(frozen=True, kw_only=True, slots=True)
class EscalationPolicy:
    """One :class:`Schedule` per severity, and the configured chains (:class:`Chain`), the first
    matching one winning over its severity's schedule."""

    critical: Schedule = Schedule(steps_ms=(60_000, 180_000), repeat_ms=300_000)
    high: Schedule = Schedule(steps_ms=(300_000,), repeat_ms=600_000)
    medium: Schedule = Schedule(steps_ms=(1_800_000,))
    low: Schedule = Schedule()
    chains: tuple[Chain, ...] = ()
    _defaults: dict[Severity, Chain] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.chains]
        if len(set(names)) != len(names):
            raise ValueError("two chains have the same name")
        object.__setattr__(self, "_defaults", {
            severity: default_chain(severity, self.severity_schedule(severity))
            for severity in Severity})

    def severity_schedule(self, severity: Severity) -> Schedule:
        """The ``alert_escalation_<severity>_s`` timeline (the default chain's)."""
        if severity is Severity.CRITICAL:
            return self.critical
        if severity is Severity.HIGH:
            return self.high
        if severity is Severity.MEDIUM:
            return self.medium
        return self.low

    def default(self, severity: Severity) -> Chain:
        """The chain of ``severity``'s alerts that no configured chain matches."""
        return self._defaults[severity]

    def chain(self, severity: Severity, alert_type: str | None = None) -> Chain:
        """The chain an alert of ``severity`` and ``alert_type`` follows."""
        for chain in self.chains:
            if chain.matches(severity, alert_type):
                return chain
        return self._defaults[severity]

    def schedule(self, severity: Severity, alert_type: str | None = None) -> Schedule:
        for chain in self.chains:
            if chain.matches(severity, alert_type):
                return chain.schedule()
        return self.severity_schedule(severity)

    def first_at(self, severity: Severity, *, opened_at: int,
                 type: str | None = None) -> int | None:
        """When a new alert of ``severity`` (and ``type``) opened at ``opened_at`` is first
        escalated."""
        return self.next_at(severity, level=0, since=opened_at, type=type)

    def next_at(self, severity: Severity, *, level: int, since: int,
                type: str | None = None) -> int | None:
        """The next step after step ``level`` taken at ``since``, or None."""
        delay = self.schedule(severity, type).delay(level)
        return None if delay is None else since + delay
