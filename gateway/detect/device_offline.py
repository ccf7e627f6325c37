"""``device_offline``: a device silent for longer than it promised, or announced offline.

Every device promises a status at least every ``heartbeat_s`` (from its latest status, else
the registry). Silent for ``heartbeat_s x offline_factor`` (registry ``defaults``), or an
explicit ``state: offline`` status (the MQTT last will, whose ``ts`` is the connect time and
``seq`` 0, so neither is trusted) raises the condition; a sign of life after it clears it. The
order of a will and a sign of life is the one rule of :mod:`devices.devicetime`, which the bed
page and the API follow too: a will counts at receipt, a message at the time it was sent (its
``ts``, when the device clock agrees with the receipt time), so a message held up in the
network and delivered after the will does not cancel it; in one millisecond, what arrived later
wins (a column beside the times keeps that order across a snapshot). One episode per device. Badges
travel with the caregiver and publish events only: they are never reported offline. A device
must have been heard once to go offline: one listed in the registry that never spoke is a
commissioning matter (shown with the bed's devices), not an outage.

A device replaced on its bed (the old one says ``offline`` or falls silent, and a device of the
same kind on the same bed that was new there speaks) is a planned swap, not an outage: the old
device's condition clears when the new one speaks (evidence ``replaced_by``), and is never
raised once the new one has spoken. The new device may come after the old one went (however
long after: its first message clears an alert still open) or before it, within
:attr:`~DeviceOfflineDetector.replacement_window_ms` (the ``device_replacement_window_s``
setting, 2 h) of its going, if it first spoke well after the old one had (more than the old
one's silence limit later: a device that was there all along would have spoken by then). An
``offline`` announced (the device's own, ``seq`` above 0, or its last will) is a replacement
under way for that window: it is raised as one **low** note (the device's own ``offline`` only
after :data:`GOODBYE_GRACE_MS`, so a swap whose successor speaks within it raises nothing; a
last will at once), resolved when the successor speaks, and raised to the kind's severity
(medium) if none has spoken when the window ends: a real failure is still an alert. A call
button's last will (a lost connection) is not demoted: a resident who cannot call for help is
high at once, swap or not. A repeated ``offline`` (a retained one the broker hands over again
after a reconnect) keeps the time of the first since the device last spoke, so it never dates
the going after its successor's arrival. A second device of that kind that was already there
(two infrared sensors in two rooms) is no replacement: the failure of one is still reported
(unless the other was installed within the window before it, which looks the same). Nor is a
device not alive itself (silent past its own limit, or announced offline): a made-up id heard
once on a listed bed would otherwise hide that bed's real failure for good (a tester,
2026-12-03).

A whole site going quiet at once (at least :data:`DARK_SITE_SHARE` of its voting devices silent
for half their limit or more, or announced offline by a last will, on at least
:data:`DARK_SITE_MIN_BEDS` beds; the voting devices are those heard at least once and not
already reported offline, and beds count only by them, so a bed whose devices never spoke is
no evidence, and one device silent on one bed is its own ``device_offline``) is an outage of
the site's link or power: it does not become one alert per device but one ``site_offline``
finding for the site (:mod:`~gateway.detect._sites`: bed empty, the beds affected named in its
evidence; sites the registry does not list share one summary, :mod:`alerts.storms`), raised
when the first of its devices passes its own limit (or, for last wills, one evaluation round
after they came), and cleared once the site is no longer dark; its devices
still silent then are judged from its return (they get their limit again). Half the limit, so
that the vote holds when the first device crosses its limit: the devices of a site that went
dark all at once fall silent within a minute or so of each other, and counting only those past
their full limit let the first one or two through as alerts. For the same reason a last will
(a lost connection) on a site that could go dark is raised only one evaluation round after it
came: the broker announces a whole site's devices over a few seconds when its link drops. Dark
sites are also logged (``detect.site_dark``; sites none of whose devices are listed, one
``detect.sites_dark_unlisted`` line a round) and counted in ``homecare_sites_dark``
(:attr:`DeviceOfflineDetector.dark_sites`). On a site with devices the registry lists, only
those vote (and so only its listed beds count): devices nobody registered falling silent in any
number (a flood of made-up ids) never make a site dark and so never hide the failure of a
listed one. On a site without listed devices, every device votes.

While the gateway's own intake is down (:meth:`Fleet.intake_changed
<gateway.detect._fleet.Fleet.intake_changed>`: the broker connection lost) nothing is raised or
cleared: no device can be heard, which says nothing about them. Once it is back, every device
is judged from its return, as after a restart, last wills included (for raising only: a device
already reported stays reported until it is heard again; after a restart the detector is told
which ones those are, :meth:`~gateway.detect._base.DetectorBase.resume`): the will of a device not
heard since the return is held until the device's limit from the return has passed (a broker
that restarts announces every device offline as it stops, and hands the wills over when the
gateway reconnects, seconds before the devices reconnect); a device heard since and then
announced offline is raised as ever.

For example, a call button's last will (the broker publishes it when the connection
drops):

The module is over 400 lines: silence, announced offlines, replacements and dark sites are
one device's states, decided together in one pass (apart, each would need the others' state).

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
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from alerts.model import AlertType, Finding, Severity
from devices.devicetime import announced_offline_array, sent_ms_array
from devices.topics import Kind
from gateway.detect._base import DetectorBase, rounded, transitions
from gateway.detect._batch import Batch
from gateway.detect._numbering import KIND_CODES, KINDS_BY_CODE
from gateway.detect._sites import SiteOutages, SiteState
from gateway.detect._table import NONE

GOODBYE_GRACE_MS: Final = 45 * 60_000
"""A device that announced ``offline`` itself is reported this much later (its last will, a
connection lost, at once): a planned replacement's successor speaks within it (about half an
hour), and the swap then raises nothing."""
REPLACEMENT_WINDOW_MS: Final = 2 * 3_600_000
"""Default of :attr:`DeviceOfflineDetector.replacement_window_ms` (the
``device_replacement_window_s`` setting)."""
DARK_SITE_SHARE: Final = 0.5
DARK_SITE_MIN_BEDS: Final = 3
DARK_VOTE: Final = 0.5
"""A device counts as quiet, for the dark-site vote, once silent for this share of its limit."""
log = logging.getLogger("homecare.detect")
_BADGE: Final = KIND_CODES[Kind.BADGE]
_BUTTON: Final = KIND_CODES[Kind.BUTTON]
Bool = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


class DeviceOfflineDetector(DetectorBase):
    name = "device_offline"
    alert_type = AlertType.DEVICE_OFFLINE
    severity = Severity.MEDIUM
    replacement_window_ms: int = REPLACEMENT_WINDOW_MS
    """How long an announced ``offline`` is a replacement under way (a low note), and how long
    before the old device went a new one may have arrived to count as its replacement."""

    def _declare(self) -> None:
        self.outages = SiteOutages()
        """The sites reported dark (:mod:`~gateway.detect._sites`)."""
        d = self.devices
        d.column("last_heard", np.int64, NONE)
        """Latest sign of life (send time, see the module docstring)."""
        d.column("first_heard", np.int64, NONE)
        """First sign of life (send time): tells a replacement from a device already there."""
        d.column("heartbeat_ms", np.float64, np.nan)
        d.column("will_at", np.int64, NONE)
        """Receipt time of the latest last will."""
        d.column("will_later", np.bool_, False)
        """The will at ``will_at`` arrived after the sign of life at ``last_heard``: decides
        their tie in one millisecond (:mod:`devices.devicetime`). A snapshot of an earlier version
        has no such column, and needs none: those versions never took a will received in the
        millisecond of the latest sign of life after it, so every tie they hold is a sign of
        life that arrived later (``False``)."""
        d.column("goodbye", np.bool_, False)
        """The latest ``offline`` was said by the device itself (``seq`` above 0)."""
        d.column("active", np.bool_, False)
        d.column("active_since", np.int64, NONE)
        d.column("noted", np.bool_, False)
        """Raised as a low note (a replacement under way), not yet at the kind's severity."""

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
        # A will and a sign of life in one millisecond: the one that arrived later wins (the
        # batch's messages are in arrival order). Per device, the row of the last arrival of
        # its latest sign of life in this batch (-1: it arrived in an earlier one).
        will_at, last_heard, later = d["will_at"], d["last_heard"], d["will_later"]
        rows = np.arange(len(device), dtype=np.int64)
        heard_row = np.full(len(will_at), -1, dtype=np.int64)
        latest = heard_at == last_heard[heard]
        np.maximum.at(heard_row, heard[latest], rows[~will][latest])
        # The first offline since the device last spoke counts: a repeated one (a retained
        # status handed over again after a reconnect) does not move its going later.
        said, said_at, said_row = device[will], received[will], rows[will]
        fresh = (said_at > last_heard[said]) | (
            (said_at == last_heard[said]) & (said_row > heard_row[said]))
        never = np.iinfo(np.int64).max
        first_will = np.full(len(will_at), never, dtype=np.int64)
        np.minimum.at(first_will, said[fresh], said_at[fresh])
        chosen = fresh & (said_at == first_will[said])
        first_row = np.full(len(will_at), never, dtype=np.int64)
        np.minimum.at(first_row, said[chosen], said_row[chosen])
        spoke = (will_at < last_heard) | ((will_at == last_heard) & ((heard_row >= 0) | ~later))
        renew = (first_will != never) & spoke
        later &= heard_row < 0  # a sign of life at last_heard arrived since the will
        will_at[renew] = first_will[renew]
        later[renew] = first_row[renew] > heard_row[renew]
        st = batch.statuses
        d["goodbye"][st.device[st.offline]] = st.goodbye[st.offline]
        promised = ~np.isnan(st.heartbeat_s)
        d["heartbeat_ms"][st.device[promised]] = st.heartbeat_s[promised] * 1000.0

    dark_sites: tuple[str, ...] = ()
    """Sites dark as a whole at the latest evaluation."""

    def _restore_extra(self, extra: Any, bed_map: Sequence[int]) -> None:
        self.outages.restore(extra)

    def resume(self, held: Sequence[Finding]) -> int:
        """:meth:`DetectorBase.resume <gateway.detect._base.DetectorBase.resume>`, and the
        sites reported dark (``site_offline``)."""
        sites = [f for f in held if f.type is AlertType.SITE_OFFLINE and f.active]
        return super().resume(held) + self.outages.resume(sites)

    def _resumed(self, row: int, finding: Finding) -> None:
        d = self.devices
        if d["last_heard"][row] == NONE:  # not in the snapshot nor the journal: as reported
            heard = finding.evidence.get("last_heard_ms")
            d["last_heard"][row] = (heard if isinstance(heard, int) else finding.started_at
                                    if finding.started_at is not None else finding.at)
            d["first_heard"][row] = d["last_heard"][row]
        d["noted"][row] = finding.severity is Severity.LOW

    def _extra_state(self) -> Any:
        return self.outages.state()

    def _dark_sites(self, tracked: Bool, quiet: Bool) -> tuple[Bool, Bool, Bool]:
        """Per device: whether its site has gone dark as a whole, whether its site could (its
        voting devices are on :data:`DARK_SITE_MIN_BEDS` beds), and whether the device votes.
        Beds count by their voting devices: a bed whose devices were never heard (or are
        already reported offline) is no evidence of a site's outage."""
        fleet = self.fleet
        n = len(tracked)
        site = fleet.bed_site[fleet.device_bed[:n]]
        sites = fleet.n_sites
        listed = fleet.device_registered[:n]
        # Sites with listed devices: only those vote.
        vetted = np.bincount(site[listed], minlength=sites) > 0
        tracked = tracked & (listed | ~vetted[site])
        devices = np.bincount(site[tracked], minlength=sites)
        silent = np.bincount(site[quiet & tracked], minlength=sites)
        possible = self._beds(tracked, sites) >= DARK_SITE_MIN_BEDS
        dark = (possible & (silent >= DARK_SITE_SHARE * np.maximum(devices, 1))
                & (self._beds(quiet & tracked, sites) >= DARK_SITE_MIN_BEDS))
        names = tuple(sorted(name for name, i in fleet.site_ids.items() if dark[i]))
        if names != self.dark_sites:
            gone, back = set(names) - set(self.dark_sites), set(self.dark_sites) - set(names)
            # A site with a listed device gets a line of its own; sites none of whose devices
            # are listed (made-up ids: hundreds may go dark at once) one line a round.
            made_up = [name for name in sorted(gone) if not vetted[fleet.site_ids[name]]]
            for name in sorted(gone):
                if vetted[fleet.site_ids[name]]:
                    log.warning("detect.site_dark site=%s devices=%d silent=%d", name,
                                devices[fleet.site_ids[name]], silent[fleet.site_ids[name]])
            if made_up:
                log.warning("detect.sites_dark_unlisted sites=%d first=%s; sites none of whose "
                            "devices the registry lists", len(made_up), made_up[0])
            for name in sorted(back):
                log.info("detect.site_back site=%s", name)
            self.dark_sites = names
        return dark[site], possible[site], tracked

    def _beds(self, devices: Bool, sites: int) -> I64:
        """Per site number: how many beds have one of ``devices`` (a mask of devices)."""
        fleet = self.fleet
        beds = np.zeros(fleet.n_beds, dtype=np.bool_)
        beds[fleet.device_bed[: len(devices)][devices]] = True
        counted: I64 = np.bincount(fleet.bed_site[: fleet.n_beds][beds], minlength=sites)
        return counted

    def _site_states(self, dark: Bool, due: Bool, voters: Bool, quiet: Bool, will: Bool,
                     last: I64) -> dict[str, SiteState]:
        """The dark sites with a device due (one that would be reported on its own) or
        already reported dark, as the site alert describes them."""
        fleet = self.fleet
        if not dark.any():
            return {}
        n = len(dark)
        site = fleet.bed_site[fleet.device_bed[:n]]
        names = {i: name for name, i in fleet.site_ids.items()}
        due_sites = set(np.unique(site[due & dark]).tolist())
        states: dict[str, SiteState] = {}
        for i in np.unique(site[dark]).tolist():
            name = names[i]
            if i not in due_sites and name not in self.outages.reported:
                continue
            here = (site == i) & voters
            members = np.flatnonzero(here & quiet)
            states[name] = SiteState(
                beds=tuple(sorted({fleet.device_keys[j][1] for j in members.tolist()})),
                devices=int(here.sum()), silent=len(members),
                wills=int(will[members].sum()),
                started_at=int(last[members].min()) if len(members) else 0)
        return states

    def _evaluate(self, now_ms: int) -> list[Finding]:
        fleet = self.fleet
        n = fleet.n_devices
        if not n or not fleet.intake_up:
            return []  # the gateway hears nobody: that says nothing about the devices
        d = self.devices
        own = d["heartbeat_ms"][:n]
        heartbeat = np.where(np.isnan(own), fleet.device_heartbeat_ms[:n], own)
        last = d["last_heard"][:n]
        will_at = d["will_at"][:n]
        limit = heartbeat * fleet.offline_factor
        site = fleet.bed_site[fleet.device_bed[:n]]
        # Watched since: the intake's return (a restart, a broker reconnected) and, for a site
        # reported dark, its return: a device is silent only for longer than that.
        since = self.outages.since(fleet.site_ids, fleet.n_sites, fleet.intake_since_ms)[site]
        silent = now_ms - np.maximum(last, since) > limit
        # A device already reported stays reported until it is heard again (or replaced): the
        # intake's return judges silence afresh for raising only. Before 2026-12-03 a broker
        # reconnect, or a restart, cleared every device still silent as "heard again".
        still_gone = now_ms - last > limit
        quiet = now_ms - last > DARK_VOTE * limit
        will = announced_offline_array(will_at, last, d["will_later"][:n])
        # A will means the device had connected, even if nothing else of it arrived.
        tracked = (fleet.device_kind[:n] != _BADGE) & ((last != NONE) | will)
        active = d["active"][:n]
        # Only a device alive now stands in for one gone: heard within its own limit and not
        # announced offline. One heard once (a made-up id on a listed bed, a sensor tried
        # and put back in the box) that went silent too hid the bed's real failure for good.
        alive = tracked & ~silent & ~will
        replaced = self._replaced(last, tracked & (silent | will | active), limit, n, alive)
        tracked &= ~replaced
        silent &= tracked
        # Devices already reported offline (dead for days, say) have no vote: otherwise a site
        # with a few dead devices would count as dark and hide the next one to fail. A last
        # will votes as silence does: a link that drops makes the broker announce them all.
        dark, possible, voters = self._dark_sites(tracked & ~active, quiet | will)
        # A device that said goodbye itself (switched off for a swap, not a lost connection)
        # gets GOODBYE_GRACE_MS for its successor to speak before it counts as offline. A lost
        # connection on a site that could go dark waits one evaluation round (from the will,
        # or the site's return), so that the wills of a site whose link dropped, arriving over
        # a few seconds, are judged together.
        goodbye = d["goodbye"][:n]
        held = will & ((goodbye & (now_ms - will_at < GOODBYE_GRACE_MS))
                       | (~goodbye & possible & (now_ms - np.maximum(will_at, since)
                                                 < fleet.evaluate_interval_ms)))
        # A will of a device not heard since the intake's return (or the site's) is no better
        # proof than its silence until its limit from then: a broker that restarted announced
        # every device as it stopped, and hands those wills over when the gateway reconnects,
        # seconds before the devices do.
        held |= will & (last < since) & (now_ms - since < limit)
        due = tracked & ~active & (silent | will) & ~held
        gone = np.where(last == NONE, will_at, last)
        sites = self.outages.judge(
            now_ms, self._site_states(dark, due, voters, quiet | will, will, gone),
            dark=set(self.dark_sites))
        returned = [fleet.site_ids[f.site] for f in sites if not f.active]
        if returned:  # watched from now on, as the next evaluations will (SiteOutages.since)
            back = np.isin(site, returned)
            silent &= ~back
            held |= will & ~goodbye & possible & back
        # Devices of a dark site are the site's alert, not alerts of their own.
        desired = tracked & (silent | will) & ~(held & ~active) & ~(dark & ~active)
        desired |= tracked & active & (still_gone | will)
        # An announced offline is a replacement under way for the window: a low note, raised
        # to the kind's severity when the window ends with no successor (a button's lost
        # connection excepted: high at once).
        window = self.replacement_window_ms
        swapping = will & (now_ms - will_at < window) & (
            goodbye | (fleet.device_kind[:n] != _BUTTON))
        on, off = transitions(active, desired)
        noted = d["noted"]
        findings: list[Finding] = []
        last = gone
        for i in on.tolist():
            d["active_since"][i] = last[i]
            noted[i] = swapping[i]
            findings.append(self._raised(i, now_ms, int(last[i]), bool(will[i]),
                                         bool(swapping[i]), float(heartbeat[i]), window))
        for i in np.flatnonzero(active & noted[:n] & ~swapping).tolist():
            noted[i] = False  # the window ended and no successor spoke: a failure after all
            findings.append(self._raised(i, now_ms, int(d["active_since"][i]), bool(will[i]),
                                         False, float(heartbeat[i]), window))
        for i in off.tolist():
            _, _, device = fleet.device_keys[i]
            kind = KINDS_BY_CODE[fleet.device_kind[i]]
            evidence: dict[str, object] = {"device": device, "kind": kind.value,
                                           "heard_ms": int(last[i])}
            summary = f"{kind.value} {device} heard again"
            if replaced[i]:
                j = self._successor(i, limit, n, alive)
                successor = fleet.device_keys[j][2]
                evidence = {"device": device, "kind": kind.value, "replaced_by": successor,
                            "replacement_heard_ms": int(d["first_heard"][j])}
                summary = f"{kind.value} {device} replaced by {successor}"
            findings.append(self._finding(
                fleet.device_bed_list[i], at=now_ms, active=False,
                started_at=int(d["active_since"][i]), episode=device,
                severity=(Severity.LOW if noted[i] else
                          Severity.HIGH if kind == Kind.BUTTON else Severity.MEDIUM),
                summary=summary, evidence=evidence))
            d["active_since"][i] = NONE
            noted[i] = False
        return findings + sites

    def _raised(self, i: int, now_ms: int, since: int, will: bool, note: bool,
                heartbeat_ms: float, window_ms: int) -> Finding:
        """Device ``i`` offline since ``since``: announced (``will``) or silent; ``note``: as
        the low note of a replacement under way."""
        fleet = self.fleet
        _, _, device = fleet.device_keys[i]
        kind = KINDS_BY_CODE[fleet.device_kind[i]]
        silent_s = (now_ms - since) / 1000
        evidence: dict[str, object] = {
            "device": device, "kind": kind.value, "reason": "last_will" if will else "silent",
            "last_heard_ms": since, "silent_s": rounded(silent_s),
            "heartbeat_s": rounded(heartbeat_ms / 1000), "offline_factor": fleet.offline_factor}
        if not will:
            silent = (f"{silent_s:.0f} s" if silent_s < 120  # not "0 min": 2 s heartbeats
                      else f"{silent_s / 60:.0f} min")
            summary = (f"{kind.value} {device} silent for {silent} "
                       f"(heartbeat {heartbeat_ms / 1000:.0f} s)")
        elif note:
            until = int(self.devices["will_at"][i]) + window_ms
            evidence.update(replacement_expected=True, replacement_expected_until_ms=until)
            summary = (f"{kind.value} {device} announced offline; a replacement is expected "
                       f"within {window_ms / 60_000:.0f} min")
        else:
            summary = f"{kind.value} {device} announced offline"
            if self.devices["noted"][i] or now_ms - int(self.devices["will_at"][i]) >= window_ms:
                summary += f" and no replacement spoke within {window_ms / 60_000:.0f} min"
        return self._finding(
            fleet.device_bed_list[i], at=now_ms, active=True, started_at=since, episode=device,
            severity=(Severity.LOW if note else
                      Severity.HIGH if kind == Kind.BUTTON else Severity.MEDIUM),
            summary=summary, evidence=evidence)

    def _groups(self, n: int) -> np.ndarray:
        """Per device: a number shared by the devices of the same bed and kind."""
        fleet = self.fleet
        groups: np.ndarray = (fleet.device_bed[:n].astype(np.int64) * len(KINDS_BY_CODE)
                              + fleet.device_kind[:n])
        return groups

    def _replaced(self, last: np.ndarray, candidates: np.ndarray, limit: np.ndarray,
                  n: int, alive: np.ndarray) -> np.ndarray:
        """Per device: whether a device of its bed and kind new there arrived for it (module
        docstring) and is ``alive`` now: first spoke after it went (its last sign of life or
        its last will, whichever is later), or within the replacement window before, more than
        its ``limit`` after it first spoke. Only ``candidates`` (devices offline or about to
        be) are looked at: most ticks there are none."""
        replaced = np.zeros(n, dtype=np.bool_)
        if not candidates.any():
            return replaced
        d = self.devices
        groups = self._groups(n)
        mates = np.isin(groups, groups[candidates]) & alive
        newest_first = np.full(int(groups.max()) + 1, NONE, dtype=np.int64)
        np.maximum.at(newest_first, groups[mates], d["first_heard"][:n][mates])
        gone = np.maximum(last, d["will_at"][:n])[candidates]
        newest = newest_first[groups[candidates]]
        first = d["first_heard"][:n][candidates]
        replaced[candidates] = (gone != NONE) & (
            (newest > gone)
            | ((newest >= gone - self.replacement_window_ms)
               & (newest > first + limit[candidates])))
        return replaced

    def _successor(self, i: int, limit: np.ndarray, n: int, alive: np.ndarray) -> int:
        """The device that replaced device ``i`` (the first of those alive to speak)."""
        d = self.devices
        groups = self._groups(n)
        gone = max(int(d["last_heard"][i]), int(d["will_at"][i]))
        first = d["first_heard"][:n]
        mine = int(first[i])
        later = np.flatnonzero((groups == groups[i]) & alive & (
            (first > gone) | ((first >= gone - self.replacement_window_ms)
                              & (first > mine + limit[i]))))
        return int(later[np.argmin(first[later])])
