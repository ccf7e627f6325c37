"""Whether anyone is home: one room's "nobody here" is not the home's.

:class:`PresenceReconciler`: on a bed with more than one infrared sensor (a room each),
"nobody here" from one sensor says nothing of the person seen by another: such a sample's
presence becomes unknown (NaN, and no zone) when the bed's latest presence came from another
sensor within :data:`PRESENCE_MEMORY_MS`. Otherwise the bathroom sensor's "empty" would end
every still run in the bedroom (no inactivity alert) and put an IR-only bed's person out of
bed. Applied to each round once, as it is sealed, before any detector sees it.

:class:`HomeWatch`: nobody home is decided from the whole evidence, not from the infrared's
"nobody" alone (which is also what it says of a person out of its view, or one lying still
under a sensor that sees presence by movement): left through the door, or unseen and unheard
for long, with no sign of life from any sensor since. A room that sounds emptier than usual is
not enough: a person motionless out of view (collapsed in the bathroom) sounds the same.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from devices.topics import Kind
from gateway.detect._batch import ZONE_CODES, Batch, Infrared, groups
from gateway.detect._numbering import KIND_CODES, Numbering
from gateway.detect._table import NONE, Table

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

PRESENCE_MEMORY_MS: Final = 5 * 60_000
"""On a bed with several infrared sensors, a sensor that sees nobody is overruled by another
that saw the person within this long."""
_INFRARED: Final = KIND_CODES[Kind.INFRARED]


class PresenceReconciler:
    """Per bed with several infrared sensors: the latest presence seen, and by which."""

    def __init__(self, numbering: Numbering) -> None:
        self._numbering = numbering
        self._presence_t: dict[int, int] = {}
        self._presence_device: dict[int, int] = {}

    def reconcile(self, ir: Infrared) -> None:
        """Overrule the "nobody here" samples of ``ir`` that another sensor of the same bed
        contradicts (see the module docstring). ``ir`` is ordered by bed and time; changed in
        place."""
        if not len(ir.bed):
            return
        numbering = self._numbering
        n_devices = numbering.n_devices
        infrared = numbering.device_kind[:n_devices] == _INFRARED
        sensors = np.bincount(numbering.device_bed[:n_devices][infrared],
                              minlength=numbering.n_beds)
        shared = sensors[ir.bed] > 1
        if not shared.any():
            return
        last_t, last_device = self._presence_t, self._presence_device
        for i in np.flatnonzero(shared).tolist():
            bed, t, device = int(ir.bed[i]), int(ir.t[i]), int(ir.device[i])
            if ir.presence[i] == 1:
                if t >= last_t.get(bed, NONE):
                    last_t[bed], last_device[bed] = t, device
            elif ir.presence[i] == 0 and last_device.get(bed, device) != device \
                    and t - last_t[bed] <= PRESENCE_MEMORY_MS:
                ir.presence[i] = np.nan
                ir.zone[i] = 0


# --- nobody home, from the whole evidence --------------------------------------------------

SEEN_RECENTLY_MS: Final = 10 * 60_000
"""The room's quiet level is learnt from sound heard at most this long after someone was seen."""
SIGN_HOLD_MS: Final = 20 * 60_000
"""After someone left through the door, a sign of life while the infrared sees nobody (a voice,
a sound, the bed) means someone is home; away again after this long without one."""
UNSEEN_MS: Final = 3 * 60 * 60_000
"""Without the door: nobody seen or heard (nor in bed) for this long means nobody is home.
Longer than the inactivity threshold of a bed with nothing learnt (2 hours), so a still person
out of the infrared's view is reported first."""
SOUND_SIGN_DB: Final = 6.0
"""Sound this far above the room's usual level (TV, talk, cooking) is a sign of life."""
EMPTY_BELOW_DB: Final = 3.0
EMPTY_SOUND_MS: Final = 20 * 60_000
EMPTY_SAMPLES: Final = 10
"""Once, the recorder's mean since the infrared began to see nobody this far below the room's
usual level, over this long and this many samples, made a bed "away" without the door. No
longer: a still person out of view is as quiet as an empty home, so a departure the infrared
did not see at the door may raise an inactivity alert (the safe side). The room's levels are
still learnt (``home.room_db``, ``home.run_db``: kept in snapshots) for the sound evidence."""
PLAUSIBLE_DB: Final = 140.0
ROOM_STEP_DB: Final = 0.1
"""The room's usual level follows the median of what the recorder hears while someone is seen,
this much per sample towards each sample."""
_DOOR: Final = ZONE_CODES["door"]
_SIGN_EVENTS: Final = frozenset({"press", "long_press", "fall_detected"})
_NEVER: Final = np.iinfo(np.int64).max


class HomeWatch:
    """Whether anyone is home, per bed, as columns of a detector's table (so they are saved and
    restored with it). Nobody is home when the infrared sees nobody (``presence`` false) and

    * the last time anyone was seen, it was at the door (``zone`` door), with no sign of life
      since, or :data:`SIGN_HOLD_MS` without one after a sign; or
    * without the door, nothing at all was seen or heard for :data:`UNSEEN_MS` (a room that
      merely sounds emptier than usual does not count: a motionless person sounds the same);

    where a sign of life is any of: the infrared sees someone (presence, movement, a people
    count of one or more, even beside a "nobody"); the bed sensor says in bed or reports a
    heart or breathing rate; the recorder hears a voice or sound :data:`SOUND_SIGN_DB` above
    the room's usual level; a button press or a fall. A person out of the infrared sensor's
    view, motionless or not, is therefore not "away" for three hours (unless they were last seen at
    the door), and inactivity keeps counting.
    """

    __slots__ = ("table",)

    def __init__(self, table: Table) -> None:
        self.table = table
        table.column("home.seen_t", np.int64, NONE)
        """Latest infrared sample that saw someone."""
        table.column("home.nobody_since", np.int64, NONE)
        """First "nobody" after it, if the latest infrared reading is "nobody" (else NONE)."""
        table.column("home.door_t", np.int64, NONE)
        table.column("home.sign_t", np.int64, NONE)
        """Latest other sign of life (bed, voice, sound, button, fall)."""
        table.column("home.room_db", np.float32, np.nan)
        """The room's usual level while someone is seen (a running median)."""
        table.column("home.run_db", np.float64, 0.0)
        table.column("home.run_n", np.int64, 0)
        """Sum and count of the levels heard since the infrared began to see nobody."""

    def update(self, batch: Batch) -> None:
        """Fold in a round (its samples ordered by bed and time)."""
        ir, b = batch.infrared, self.table
        if len(ir.bed):
            someone = (ir.presence == 1) | (ir.people >= 1) | ((ir.motion > 0)
                                                               & (ir.presence != 0))
            nobody = (ir.presence == 0) & ~someone
            _latest(b["home.seen_t"], ir.bed, ir.t, someone)
            door = ir.zone == _DOOR
            _latest(b["home.door_t"], ir.bed, ir.t, door)
            said = someone | nobody
            bed, t, empty = ir.bed[said], ir.t[said], nobody[said]
            beds, _, last, _ = groups(bed)
            seen = b["home.seen_t"]
            # A run of "nobody" that began before this round goes on; else it begins at the
            # first "nobody" after the latest "somebody".
            since = np.full(len(beds), NONE, np.int64)
            fresh = empty & (t > seen[bed])
            if fresh.any():
                heads, starts, _, _ = groups(bed[fresh])
                since[np.searchsorted(beds, heads)] = t[fresh][starts]
            carried = b["home.nobody_since"][beds]
            since = np.where(carried > seen[beds], carried, since)
            since = np.where(empty[last], since, NONE)
            restart = beds[since != carried]
            b["home.run_db"][restart], b["home.run_n"][restart] = 0.0, 0
            b["home.nobody_since"][beds] = since
        vi = batch.vitals
        in_bed = (vi.in_bed == 1) | ~np.isnan(vi.heart) | ~np.isnan(vi.breathing)
        _latest(b["home.sign_t"], vi.bed, vi.t, in_bed)
        au = batch.audio
        heard = (au.level >= 0) & (au.level <= PLAUSIBLE_DB)  # else a faulty recorder
        if heard.any():
            bed, t, level = au.bed[heard], au.t[heard], au.level[heard]
            room = b["home.room_db"]
            usual = room[bed]
            sign = (au.voice[heard] == 1) | (level >= usual + SOUND_SIGN_DB)
            _latest(b["home.sign_t"], bed, t, sign)
            # The room's usual level, learnt while someone is seen (not the empty home's).
            seen = b["home.seen_t"][bed] >= t - SEEN_RECENTLY_MS
            new = seen & np.isnan(usual)
            if new.any():
                rows, starts, _, _ = groups(bed[new])
                room[rows] = level[new][starts]
            step = np.sign(level - room[bed]) * ROOM_STEP_DB
            size = len(room)
            room += np.bincount(bed[seen], step[seen], size).astype(np.float32)
            # What the room sounds like since the infrared began to see nobody.
            since = b["home.nobody_since"][bed]
            run = (since != NONE) & (t >= since)
            run_db, run_n = b["home.run_db"], b["home.run_n"]
            run_db += np.bincount(bed[run], level[run], size)
            run_n += np.bincount(bed[run], minlength=size)
        for record in batch.events:
            if getattr(record.event, "event", None) in _SIGN_EVENTS:
                signs = b["home.sign_t"]
                signs[record.bed] = max(int(signs[record.bed]), record.t)

    def away_since(self, beds: I64, now: I64, *, unseen: Bool | bool = True) -> I64:
        """Since when nobody has been home at ``now`` (per bed), NONE where someone is;
        ``unseen`` False (per bed or for all): only a departure through the door counts, not
        :data:`UNSEEN_MS` without a sign of life."""
        b = self.table
        since, sign = b["home.nobody_since"][beds], b["home.sign_t"][beds]
        door = b["home.door_t"][beds]
        left = (door != NONE) & (door >= b["home.seen_t"][beds])  # last seen at the door
        quiet_from = np.maximum(since, sign + 1)
        hold = np.where(left, np.where(sign < since, 0, SIGN_HOLD_MS),
                        np.where(unseen, UNSEEN_MS, _NEVER))
        away = (since != NONE) & (now - quiet_from >= hold)
        result: I64 = np.where(away, np.where(left & (sign < since), since, quiet_from), NONE)
        return result


def _latest(column: npt.NDArray[np.int64], beds: I64, t: I64, where: Bool) -> None:
    """``column[bed] = max(column[bed], t)`` over the samples ``where`` is true (ordered by
    bed and time: each bed's last is its latest)."""
    if not where.all():
        beds, t = beds[where], t[where]
    if len(beds):
        rows, _, last, _ = groups(beds)
        column[rows] = np.maximum(column[rows], t[last])
