"""``low_battery``: a device reports its battery under ``low_battery_pct`` (BedSettings).

One episode per device. It clears once the device reports at least ``low_battery_pct`` +
:data:`HYSTERESIS_PCT` (the battery was replaced or recharged), so a level wobbling around
the threshold does not open and close alerts.

Statuses count in the order they were sent, by the rule the bed page's live state follows
(:mod:`alerts.livestate`): their device time when it is inside the gateway's clock window
(never later than receipt), else their receipt time; a status ordered by receipt gives way to
any trusted status received after it. So a status held back for two days and delivered late
(90 %) does not clear an alert a newer one opened (7 %), and the alert and the bed page say
the same level.

For example, a call button reporting 9 % (``medium`` for a button, which must be able to
call; ``low`` for the other devices):

>>> import json
>>> from devices import decode
>>> from gateway.detect.low_battery import LowBatteryDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = LowBatteryDetector(timezone="UTC")
>>> now = 1_793_606_400_000  # 2026-11-02 08:00 UTC
>>> detector.update([message("button/btn-1/status", ts=now, seq=1, state="online",
...                          battery=9)], [now])
>>> [finding] = detector.evaluate(now)
>>> print(finding.type, finding.severity, finding.summary)
low_battery medium button btn-1 battery at 9 %
"""

from __future__ import annotations

from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from devices.topics import Kind
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch
from gateway.detect._numbering import KIND_CODES, KINDS_BY_CODE
from gateway.detect._table import NONE

HYSTERESIS_PCT: Final = 5.0
_BUTTON: Final = KIND_CODES[Kind.BUTTON]


class LowBatteryDetector(DetectorBase):
    name = "low_battery"
    alert_type = AlertType.LOW_BATTERY
    severity = Severity.LOW

    def _declare(self) -> None:
        d = self.devices
        d.column("battery", np.float32, np.nan)
        d.column("low_since", np.int64, NONE)
        d.column("active", np.bool_, False)
        d.column("active_since", np.int64, NONE)
        d.column("status_order", np.int64, NONE)
        d.column("untrusted_at", np.int64, NONE)

    def _update(self, batch: Batch) -> None:
        st = batch.statuses
        reported = np.flatnonzero(~np.isnan(st.battery))
        if not len(reported):
            return
        d = self.devices
        device, level = st.device[reported], st.battery[reported]
        received, ts = st.received[reported], st.ts[reported]
        window = self.fleet.clock_window
        trusted = (ts >= received - window.behind_ms) & (ts <= received + window.ahead_ms)
        order = np.where(trusted, np.minimum(ts, received), received)
        low = level < self.fleet.settings["low_battery_pct"][st.bed[reported]]
        battery, low_since = d["battery"], d["low_since"]
        status_order, untrusted_at = d["status_order"], d["untrusted_at"]
        # A few statuses per device and hour: one by one, in arrival order.
        for i, dev in enumerate(device.tolist()):
            got, ordered, sure = int(received[i]), int(order[i]), bool(trusted[i])
            held = int(untrusted_at[dev])
            if not (ordered >= status_order[dev] or (sure and held != NONE and got >= held)):
                continue  # older than the status that counts (sent earlier, delivered late)
            status_order[dev] = ordered
            untrusted_at[dev] = NONE if sure else got
            battery[dev] = level[i]
            if not low[i]:
                low_since[dev] = NONE
            elif low_since[dev] == NONE:
                low_since[dev] = got

    def _evaluate(self, now_ms: int) -> list[Finding]:
        fleet = self.fleet
        n = fleet.n_devices
        if not n:
            return []
        d = self.devices
        battery = d["battery"][:n]
        limit = fleet.settings["low_battery_pct"][fleet.device_bed[:n]]
        active = d["active"][:n]
        with np.errstate(invalid="ignore"):
            desired = np.where(active, ~(battery >= limit + HYSTERESIS_PCT), battery < limit)
        on, off = transitions(active, desired)
        findings: list[Finding] = []
        for i in on.tolist():
            _, _, device = fleet.device_keys[i]
            kind = KINDS_BY_CODE[fleet.device_kind[i]]
            since = int(d["low_since"][i]) if d["low_since"][i] != NONE else now_ms
            d["active_since"][i] = since
            findings.append(self._finding(
                fleet.device_bed_list[i], at=now_ms, active=True, started_at=since,
                episode=device,
                severity=Severity.MEDIUM if fleet.device_kind[i] == _BUTTON else Severity.LOW,
                summary=f"{kind.value} {device} battery at {battery[i]:.0f} %",
                evidence={"device": device, "kind": kind.value,
                          "battery_pct": rounded(battery[i]),
                          "threshold_pct": rounded(limit[i])}))
        for i in off.tolist():
            _, _, device = fleet.device_keys[i]
            kind = KINDS_BY_CODE[fleet.device_kind[i]]
            findings.append(self._finding(
                fleet.device_bed_list[i], at=now_ms, active=False,
                started_at=int(d["active_since"][i]), episode=device,
                severity=Severity.MEDIUM if fleet.device_kind[i] == _BUTTON else Severity.LOW,
                summary=f"{kind.value} {device} battery back at {battery[i]:.0f} %",
                evidence={"device": device, "kind": kind.value,
                          "battery_pct": rounded(battery[i])}))
            d["active_since"][i] = NONE
        return findings
