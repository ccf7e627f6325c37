"""How many messages the ingest task processes before it lets the event loop run again.

The loop is shared: the sockets (the urgent session's among them), the urgent lane, the alert
commits and the API wait while a step of the pipeline runs. A fixed number of messages per
step is the wrong measure, because messages differ by an order of magnitude in cost: a sample
from a known bed is a few microseconds of work, the first message of a device nobody listed
registers it, opens its live state and its detector slots (about ten times as much; measured
with py-spy during the unknown-device flood of ``python -m bench unknown_device_flood``, where
steps of 500 such messages held the loop for ~70 ms and an emergency call read from the socket
waited behind them). :class:`StepPacer` therefore sizes each step from the time the last ones
took, so a step costs about :data:`STEP_BUDGET_S` whatever the messages are; and since that
is only an estimate (the same messages cost several times more from one step to the next), a
step is handed to the pipeline :data:`STEP_SLICE` messages at a time and ends at the first
slice done past the budget, the rest going back to the inbox's front
(:meth:`Gateway._process_within <gateway.runtime.Gateway._process_within>`).

>>> pacer = StepPacer(budget_s=0.005, largest=500, smallest=16)
>>> pacer.size
500
>>> pacer.took(500, 0.070)  # 140 us a message: new devices
>>> pacer.size
35
>>> pacer.took(35, 0.0007)  # 20 us a message again: the step grows back (at most doubling)
>>> pacer.size
70
"""

from __future__ import annotations

from typing import Final

STEP_BUDGET_S: Final = 0.0005
"""About this much pipeline work per step: an emergency call read from the socket during a
flood waits for the loop at most about this long (plus the socket read itself). 1 ms rather
than 5: once a call no longer waited for the alert store's fsync, the step was most of a
press's time during the 100,000-id flood's intake (presses then: p50 9.3 ms at 5 ms, 4.1 at 2,
2.6 at 1 with 16 KiB reads, quiet 1.3; the intake took 5.7 s in each, the broker's pace:
flood benchmark, 2026-12-02). 0.5 ms with slices of 8 rather than 1 ms with slices of 16 (one
slice of 16 first sights, ~1.4 ms, was every step): publish -> receipt p50 of the intake's
presses 0.96-1.22 ms against 1.6-2.1, the intake no slower (7.3-10.6 s against 8.0-9.1;
flood benchmark, 2026-12-03). A loop turn costs some tens of microseconds."""
LARGEST_STEP: Final = 500
"""At most this many messages a step (cheap messages: fewer loop turns for the same work)."""
SMALLEST_STEP: Final = 8
"""At least this many (a step's fixed cost, a loop turn and the inbox hand-off, stays small)."""
STEP_SLICE: Final = 8
"""A step is handed to the pipeline this many messages at a time, and ends at the first slice
that finishes past :data:`STEP_BUDGET_S` (the rest goes back to the inbox's front). The size
from the last steps is only an estimate: during the 100,000-id flood the same number of first
sights cost 60 to 440 us each from one step to the next (the interpreter taken by a thread,
the process not scheduled, the live state's evictions), and steps sized for 5 ms held the loop
p99 16 ms, up to 45 ms (flood benchmark, 2026-12-02)."""


class StepPacer:
    """Messages per step, from how long the recent steps took per message."""

    __slots__ = ("budget_s", "largest", "size", "smallest")

    def __init__(self, *, budget_s: float = STEP_BUDGET_S, largest: int = LARGEST_STEP,
                 smallest: int = SMALLEST_STEP) -> None:
        self.budget_s = budget_s
        self.largest = largest
        self.smallest = smallest
        self.size = largest

    def took(self, messages: int, seconds: float) -> None:
        """A step of ``messages`` took ``seconds``: size the next one. It shrinks at once to
        what fits the budget (a flood of costly messages must not hold the loop for several
        steps), and grows back at most twice as large per step (one cheap step, or one timed
        while the process was not scheduled, does not let a long step through)."""
        if messages <= 0:
            return
        if seconds <= 0:
            fits = self.largest
        else:
            fits = int(self.budget_s * messages / seconds)
        self.size = max(self.smallest, min(self.largest, fits, 2 * self.size))
