"""Whole sites gone dark: one ``site_offline`` finding per site, not one per device.

:class:`SiteOutages` keeps, for :class:`~gateway.detect.device_offline.DeviceOfflineDetector`,
which sites it has reported dark and when each came back. The detector decides which sites
are dark and which of them have a device that would otherwise be reported on its own
(:class:`SiteState`); this turns that into edge-triggered findings: ``active=True`` when a
site is first reported (and again when the beds affected change, an update of the same
alert), ``active=False`` when it is no longer dark. A site-level finding has an empty bed and
episode (:data:`~alerts.model.SITE_TYPES`); its evidence names the beds affected (the first
:data:`LISTED`, by bed id), how many devices vote and how many are silent, and how many of them
the broker announced offline (last wills).

Once a reported site is back, its devices still silent are judged from its return
(:meth:`SiteOutages.since`): they get their limit again to be heard, so a site whose devices
reconnect over a minute or two does not become a flood of device alerts at its return.

>>> outages = SiteOutages()
>>> state = SiteState(beds=("b1", "b2", "b3"), devices=6, silent=6, wills=0, started_at=1_000)
>>> [opened] = outages.judge(61_000, {"s1": state}, dark={"s1"})
>>> opened.type.value, opened.site, opened.bed, opened.active, opened.evidence["beds"]
('site_offline', 's1', '', True, ['b1', 'b2', 'b3'])
>>> [closed] = outages.judge(300_000, {}, dark=set())
>>> closed.active, outages.back_ms
(False, {'s1': 300000})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from alerts.model import AlertType, Finding, Severity

LISTED: Final = 50
"""Beds named in a site alert's evidence (the rest are counted in ``beds_count``)."""
BACK_KEPT_MS: Final = 7 * 86_400_000
"""How long a site's return is remembered (much longer than any device's limit)."""


@dataclass(frozen=True, slots=True)
class SiteState:
    """What the detector sees of one dark site at one evaluation."""

    beds: tuple[str, ...]
    """Beds with a silent voting device, sorted."""
    devices: int
    """Devices that vote (heard, not badges, not already reported offline)."""
    silent: int
    """Of them, silent (or announced offline) for half their limit or more."""
    wills: int
    """Of the silent ones, announced offline by the broker (last wills)."""
    started_at: int
    """The earliest last sign of life of the silent ones."""

    def evidence(self) -> dict[str, Any]:
        listed = list(self.beds[:LISTED])
        return {"beds": listed, "beds_count": len(self.beds),
                "beds_omitted": len(self.beds) - len(listed), "devices": self.devices,
                "silent": self.silent, "last_wills": self.wills}


class SiteOutages:
    """The sites reported dark, and when each reported site came back."""

    def __init__(self) -> None:
        self.reported: dict[str, SiteState] = {}
        """Sites with a ``site_offline`` finding raised and not cleared."""
        self.back_ms: dict[str, int] = {}
        """When each site reported dark was last heard again."""

    def since(self, site_ids: Mapping[str, int], n_sites: int, floor: int) -> npt.NDArray[
            np.int64]:
        """Per site number: when its devices are watched from (the later of ``floor``, the
        intake's return, and the site's own return)."""
        watched = np.full(n_sites, floor, dtype=np.int64)
        for name, at in self.back_ms.items():
            i = site_ids.get(name)
            if i is not None and i < n_sites:
                watched[i] = max(int(watched[i]), at)
        return watched

    def judge(self, now_ms: int, states: Mapping[str, SiteState], *, dark: Set[str]
              ) -> list[Finding]:
        """Findings for ``states`` (the dark sites that are due or already reported) and for
        the reported sites no longer ``dark``."""
        findings: list[Finding] = []
        for name in sorted(states):
            state = states[name]
            before = self.reported.get(name)
            if before is not None:
                state = SiteState(beds=state.beds, devices=state.devices, silent=state.silent,
                                  wills=state.wills, started_at=before.started_at)
                if state == before:
                    continue
            self.reported[name] = state
            findings.append(_finding(name, now_ms, state, active=True))
        for name in sorted(set(self.reported) - set(dark)):
            state = self.reported.pop(name)
            self.back_ms[name] = now_ms
            findings.append(_finding(name, now_ms, state, active=False))
        for name in [n for n, at in self.back_ms.items() if now_ms - at > BACK_KEPT_MS]:
            del self.back_ms[name]
        return findings

    def resume(self, held: Sequence[Finding]) -> int:
        """Take back the sites ``held`` reported dark (the open ``site_offline`` alerts, after
        a restart) that the snapshot does not know; returns how many."""
        taken = 0
        for f in held:
            if f.site in self.reported:
                continue
            e = f.evidence
            beds = e.get("beds")
            self.reported[f.site] = SiteState(
                beds=tuple(map(str, beds)) if isinstance(beds, list) else (),
                devices=_int(e.get("devices")), silent=_int(e.get("silent")),
                wills=_int(e.get("last_wills")),
                started_at=f.started_at if f.started_at is not None else f.at)
            taken += 1
        return taken

    def state(self) -> dict[str, Any]:
        return {"reported": {name: [list(s.beds), s.devices, s.silent, s.wills, s.started_at]
                             for name, s in self.reported.items()},
                "back_ms": dict(self.back_ms)}

    def restore(self, saved: Any) -> None:
        """Take back :meth:`state` (``None``: a snapshot from before site alerts)."""
        if not isinstance(saved, dict):
            return
        for name, (beds, devices, silent, wills, started_at) in saved.get("reported",
                                                                            {}).items():
            self.reported[str(name)] = SiteState(
                beds=tuple(str(b) for b in beds), devices=int(devices), silent=int(silent),
                wills=int(wills), started_at=int(started_at))
        self.back_ms.update({str(k): int(v) for k, v in saved.get("back_ms", {}).items()})


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _finding(site: str, now_ms: int, state: SiteState, *, active: bool) -> Finding:
    beds = len(state.beds)
    shown = ", ".join(state.beds[:5]) + (f" and {beds - 5} more" if beds > 5 else "")
    if active:
        summary = (f"site {site} dark: {state.silent} of {state.devices} devices silent on "
                   f"{beds} {'bed' if beds == 1 else 'beds'} ({shown})")
    else:
        summary = f"site {site} heard again"
    evidence = state.evidence()
    if not active:
        evidence["back_ms"] = now_ms
    return Finding(type=AlertType.SITE_OFFLINE, site=site, bed="", at=now_ms,
                   severity=Severity.HIGH, active=active, started_at=state.started_at,
                   summary=summary, evidence=evidence)
