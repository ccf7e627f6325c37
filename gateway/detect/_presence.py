"""Presence on beds with several infrared sensors: one room's "nobody here" is not the home's.

On a bed with more than one infrared sensor (a room each), "nobody here" from one sensor says
nothing of the person seen by another: such a sample's presence becomes unknown (NaN, and no
zone) when the bed's latest presence came from another sensor within
:data:`PRESENCE_MEMORY_MS`. Otherwise the bathroom sensor's "empty" would end every still run
in the bedroom (no inactivity alert) and put an IR-only bed's person out of bed. Applied to
each round once, as it is sealed, before any detector sees it.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from devices.topics import Kind
from gateway.detect._batch import Infrared
from gateway.detect._numbering import KIND_CODES, Numbering
from gateway.detect._table import NONE

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
