"""``device_offline``: a device silent for longer than it promised, or announced offline.

Every device promises a status at least every ``heartbeat_s`` (from its latest status, else
the registry). Silent for ``heartbeat_s x offline_factor`` (registry ``defaults``), or an
explicit ``state: offline`` status (the MQTT last will, whose ``ts`` is the connect time and
``seq`` 0, so neither is trusted) raises the condition; a sign of life after it clears it. The
order of a will and a sign of life is the one rule of :mod:`devices.devicetime`, which the bed
page and the API follow too: a will counts at receipt, a message at the time it was sent (its
``ts``, when the device clock agrees with the receipt time), so a message held up in the
network and delivered after the will does not cancel it. One episode per device. Badges
travel with the caregiver and publish events only: they are never reported offline. A device
must have been heard once to go offline: one listed in the registry that never spoke is a
commissioning matter (shown with the bed's devices), not an outage.

A device replaced on its bed (the old one says ``offline`` or falls silent, and a device of the
same kind on the same bed that was never heard before starts speaking after it) is a planned
swap, not an outage: the old device's condition clears when the new one speaks (evidence
``replaced_by``), and is never raised once the new one has spoken. An ``offline`` the device
says itself (``seq`` above 0: switched off, not a lost connection) is raised only after
:data:`GOODBYE_GRACE_MS`, so a swap whose successor speaks within it raises nothing; a last
will (``seq`` 0) is raised at once. A second device of that kind
that was already there (two infrared sensors in two rooms) is no replacement: the failure of
one is still reported.

A whole site going quiet at once (at least :data:`DARK_SITE_SHARE` of its devices silent for
half their limit or more, on at least :data:`DARK_SITE_MIN_BEDS` beds; devices already
reported offline do not vote) is an outage of the
site's link or of the gateway's own intake: it does not become one alert per device. Half the
limit, so that the vote holds when the first device crosses its limit: the devices of a site
that went dark all at once fall silent within a minute or so of each other, and counting only
those past their full limit let the first one or two through as alerts. Dark sites are
logged (``detect.site_dark``) and counted in ``homecare_sites_dark``
(:attr:`DeviceOfflineDetector.dark_sites`). Explicit last wills are still reported one by one.
On a site with devices the registry lists, only those vote (and only its listed beds count):
devices nobody registered falling silent in any number (a flood of made-up ids) never make a
site dark and so never hide the failure of a listed one. On a site without listed devices,
every device votes.

For example, a call button's last will (the broker publishes it when the connection
drops):

>>> import json
>>> from devices import decode
>>> from gateway.detect.device_offline import DeviceOfflineDetector
>>> def message(topic, **payload):  # a device message, decoded as the gateway decodes it
...     return decode(f"homecare/v1/s1/b1/{topic}", json.dumps(payload).encode())
>>> detector = DeviceOfflineDetector(timezone="UTC")
>>> now = 1_793_606_400_000  # 2026-11-02 08:00 UTC
>>> will = message("button/btn-1/status", ts=now - 3_600_000, seq=0, state="offline")
>>> detector.update([will], [now])
>>> [finding] = detector.evaluate(now)
>>> print(finding.type, finding.severity, finding.summary)
device_offline high button btn-1 announced offline
>>> finding.evidence["reason"]
'last_will'
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np

from alerts.model import AlertType, Finding, Severity
from devices.devicetime import announced_offline_array, sent_ms_array
from devices.topics import Kind
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch
from gateway.detect._numbering import KIND_CODES, KINDS_BY_CODE
from gateway.detect._table import NONE

GOODBYE_GRACE_MS: Final = 45 * 60_000
"""A device that announced ``offline`` itself is reported this much later (its last will, a
connection lost, at once): a planned replacement's successor speaks within it (about half an
hour), and the swap then raises nothing."""
DARK_SITE_SHARE: Final = 0.5
DARK_SITE_MIN_BEDS: Final = 3
DARK_VOTE: Final = 0.5
"""A device counts as quiet, for the dark-site vote, once silent for this share of its limit."""
log = logging.getLogger("homecare.detect")
_BADGE: Final = KIND_CODES[Kind.BADGE]
_BUTTON: Final = KIND_CODES[Kind.BUTTON]


class DeviceOfflineDetector(DetectorBase):
    name = "device_offline"
    alert_type = AlertType.DEVICE_OFFLINE
    severity = Severity.MEDIUM

    def _declare(self) -> None:
        d = self.devices
        d.column("last_heard", np.int64, NONE)
        """Latest sign of life (send time, see the module docstring)."""
        d.column("first_heard", np.int64, NONE)
        """First sign of life (send time): tells a replacement from a device already there."""
        d.column("heartbeat_ms", np.float64, np.nan)
        d.column("will_at", np.int64, NONE)
        """Receipt time of the latest last will."""
        d.column("goodbye", np.bool_, False)
        """The latest ``offline`` was said by the device itself (``seq`` above 0)."""
        d.column("active", np.bool_, False)
        d.column("active_since", np.int64, NONE)

    def _update(self, batch: Batch) -> None:
        d = self.devices
        device, received, will = batch.device, batch.received, batch.is_will
        sent = sent_ms_array(batch.ts, received)
        np.maximum.at(d["last_heard"], device[~will], sent[~will])
        first = d["first_heard"]
        heard, heard_at = device[~will], sent[~will]
        new = first[heard] == NONE
        # Reversed, so that a device's first message in the batch is the one that stays.
        first[heard[new][::-1]] = heard_at[new][::-1]
        np.maximum.at(d["will_at"], device[will], received[will])
        st = batch.statuses
        d["goodbye"][st.device[st.offline]] = st.goodbye[st.offline]
        promised = ~np.isnan(st.heartbeat_s)
        d["heartbeat_ms"][st.device[promised]] = st.heartbeat_s[promised] * 1000.0

    dark_sites: tuple[str, ...] = ()
    """Sites dark as a whole at the latest evaluation."""

    def _dark_sites(self, tracked: np.ndarray, quiet: np.ndarray) -> np.ndarray:
        """Per device: whether its site has gone dark as a whole."""
        fleet = self.fleet
        n = len(tracked)
        site = fleet.bed_site[fleet.device_bed[:n]]
        sites = fleet.n_sites
        listed = fleet.device_registered[:n]
        # Sites with listed devices: only those vote, and only listed beds count.
        vetted = np.bincount(site[listed], minlength=sites) > 0
        tracked = tracked & (listed | ~vetted[site])
        devices = np.bincount(site[tracked], minlength=sites)
        silent = np.bincount(site[quiet & tracked], minlength=sites)
        bed_site = fleet.bed_site[: fleet.n_beds]
        counted = fleet.bed_registered[: fleet.n_beds] | ~vetted[bed_site]
        beds = np.bincount(bed_site[counted], minlength=sites)
        dark = (beds >= DARK_SITE_MIN_BEDS) & (silent >= DARK_SITE_SHARE * np.maximum(devices, 1))
        names = tuple(sorted(name for name, i in fleet.site_ids.items() if dark[i]))
        if names != self.dark_sites:
            gone, back = set(names) - set(self.dark_sites), set(self.dark_sites) - set(names)
            for name in sorted(gone):
                log.warning("detect.site_dark site=%s devices=%d silent=%d", name,
                            devices[fleet.site_ids[name]], silent[fleet.site_ids[name]])
            for name in sorted(back):
                log.info("detect.site_back site=%s", name)
            self.dark_sites = names
        result: np.ndarray = dark[site]
        return result

    def _evaluate(self, now_ms: int) -> list[Finding]:
        fleet = self.fleet
        n = fleet.n_devices
        if not n:
            return []
        d = self.devices
        own = d["heartbeat_ms"][:n]
        heartbeat = np.where(np.isnan(own), fleet.device_heartbeat_ms[:n], own)
        last = d["last_heard"][:n]
        limit = heartbeat * fleet.offline_factor
        silent = now_ms - last > limit
        quiet = now_ms - last > DARK_VOTE * limit
        will = announced_offline_array(d["will_at"][:n], last)
        # A will means the device had connected, even if nothing else of it arrived.
        tracked = (fleet.device_kind[:n] != _BADGE) & ((last != NONE) | will)
        active = d["active"][:n]
        replaced = self._replaced(last, tracked & (silent | will | active), n)
        tracked &= ~replaced
        silent &= tracked
        # Devices already reported offline (dead for days, say) have no vote: otherwise a site
        # with a few dead devices would count as dark and hide the next one to fail.
        voters = tracked & ~active
        silent[silent & ~active] &= ~self._dark_sites(voters, quiet)[silent & ~active]
        # A device that said goodbye itself (switched off for a swap, not a lost connection)
        # gets GOODBYE_GRACE_MS for its successor to speak before it counts as offline.
        held = will & d["goodbye"][:n] & (now_ms - d["will_at"][:n] < GOODBYE_GRACE_MS)
        desired = tracked & (silent | will) & ~(held & ~active)
        on, off = transitions(active, desired)
        findings: list[Finding] = []
        last = np.where(last == NONE, d["will_at"][:n], last)
        for i in on.tolist():
            d["active_since"][i] = last[i]
            _, _, device = fleet.device_keys[i]
            kind = KINDS_BY_CODE[fleet.device_kind[i]]
            reason = "last_will" if will[i] else "silent"
            silent_s = (now_ms - int(last[i])) / 1000
            findings.append(self._finding(
                fleet.device_bed_list[i], at=now_ms, active=True, started_at=int(last[i]),
                episode=device,
                severity=Severity.HIGH if kind == Kind.BUTTON else Severity.MEDIUM,
                summary=(f"{kind.value} {device} announced offline" if will[i] else
                         f"{kind.value} {device} silent for {silent_s / 60:.0f} min "
                         f"(heartbeat {heartbeat[i] / 1000:.0f} s)"),
                evidence={"device": device, "kind": kind.value, "reason": reason,
                          "last_heard_ms": int(last[i]), "silent_s": rounded(silent_s),
                          "heartbeat_s": rounded(heartbeat[i] / 1000),
                          "offline_factor": fleet.offline_factor}))
        for i in off.tolist():
            _, _, device = fleet.device_keys[i]
            kind = KINDS_BY_CODE[fleet.device_kind[i]]
            evidence: dict[str, object] = {"device": device, "kind": kind.value,
                                           "heard_ms": int(last[i])}
            summary = f"{kind.value} {device} heard again"
            if replaced[i]:
                j = self._successor(i, n)
                successor = fleet.device_keys[j][2]
                evidence = {"device": device, "kind": kind.value, "replaced_by": successor,
                            "replacement_heard_ms": int(d["first_heard"][j])}
                summary = f"{kind.value} {device} replaced by {successor}"
            findings.append(self._finding(
                fleet.device_bed_list[i], at=now_ms, active=False,
                started_at=int(d["active_since"][i]), episode=device,
                severity=Severity.HIGH if kind == Kind.BUTTON else Severity.MEDIUM,
                summary=summary, evidence=evidence))
            d["active_since"][i] = NONE
        return findings

    def _groups(self, n: int) -> np.ndarray:
        """Per device: a number shared by the devices of the same bed and kind."""
        fleet = self.fleet
        groups: np.ndarray = (fleet.device_bed[:n].astype(np.int64) * len(KINDS_BY_CODE)
                              + fleet.device_kind[:n])
        return groups

    def _replaced(self, last: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
        """Per device: whether a device of its bed and kind first spoke after it went (its
        last sign of life or its last will, whichever is later). Only ``candidates`` (devices
        offline or about to be) are looked at: most ticks there are none."""
        replaced = np.zeros(n, dtype=np.bool_)
        if not candidates.any():
            return replaced
        d = self.devices
        groups = self._groups(n)
        mates = np.isin(groups, groups[candidates])
        newest_first = np.full(int(groups.max()) + 1, NONE, dtype=np.int64)
        np.maximum.at(newest_first, groups[mates], d["first_heard"][:n][mates])
        gone = np.maximum(last, d["will_at"][:n])
        replaced[candidates] = ((gone[candidates] != NONE)
                                & (newest_first[groups[candidates]] > gone[candidates]))
        return replaced

    def _successor(self, i: int, n: int) -> int:
        """The device that replaced device ``i`` (the first of them to speak)."""
        d = self.devices
        groups = self._groups(n)
        gone = max(int(d["last_heard"][i]), int(d["will_at"][i]))
        first = d["first_heard"][:n]
        later = np.flatnonzero((groups == groups[i]) & (first > gone))
        return int(later[np.argmin(first[later])])
