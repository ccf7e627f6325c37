"""``gateway_health``: the gateway's own broker connection, database and stores as alerts.

The checks behind ``/readyz`` (``mqtt_connected``, ``tsdb_writable``, ``alerts_writable``,
``spool_writable``, ...; :meth:`gateway.runtime.Gateway.readiness`) are observed every second.
A check failing for ``after_ms`` (the ``gateway_health_alert_after_s`` setting) opens one
alert for it: site :data:`~alerts.model.GATEWAY_SITE`, bed empty, episode the check's name,
its reason in the evidence. The check passing again clears it (the engine resolves it after
its grace, as any non-critical alert). Shorter failures (a broker restart, a database blip)
raise nothing; the console shows every failure at once, as a banner, from ``/readyz``.

Severity: ``high`` for the broker connection and the stores a message needs before it is
acknowledged (without them no call reaches the alert engine, or intake stops); ``medium`` for
the time-series database (points wait in the spool, nothing is lost).

After a restart, :meth:`GatewayHealthWatch.resume` takes back the open alerts, so a check
that passes by then clears the alert raised before.

>>> watch = GatewayHealthWatch(after_ms=60_000)
>>> why = {"mqtt_connected": "not connected to the broker (reconnecting)"}
>>> watch.observe({"mqtt_connected": False}, why, 0)
[]
>>> [finding] = watch.observe({"mqtt_connected": False}, why, 60_000)
>>> print(finding.type, finding.severity, finding.episode, finding.summary)
gateway_health high mqtt_connected broker connection lost for 60 s: not connected to the broker (reconnecting)
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from alerts.model import GATEWAY_SITE, Alert, AlertStatus, AlertType, Finding, Severity

WHAT: Final[Mapping[str, str]] = {
    "mqtt_connected": "broker connection lost",
    "tsdb_writable": "time-series database not writable",
}
"""How a summary names a failing check; others: ``<store> store not writable``."""
LESS_URGENT: Final = frozenset({"tsdb_writable"})
"""Checks whose failure loses nothing (points wait in the spool): ``medium``, not ``high``."""


class GatewayHealthWatch:
    """Failing readiness checks into ``gateway_health`` findings; see the module docstring."""

    def __init__(self, *, after_ms: int) -> None:
        if after_ms < 0:
            raise ValueError("after_ms must not be negative")
        self.after_ms = after_ms
        self._failing_since: dict[str, int] = {}
        self._raised: set[str] = set()

    def resume(self, alerts: Iterable[Alert]) -> None:
        """Take back the open ``gateway_health`` alerts (after a restart)."""
        for alert in alerts:
            if (alert.type is AlertType.GATEWAY_HEALTH and alert.status
                    is not AlertStatus.RESOLVED and alert.site == GATEWAY_SITE):
                self._raised.add(alert.incident.rpartition("#")[0].rsplit("/", 1)[-1])

    def observe(self, checks: Mapping[str, bool], reasons: Mapping[str, str], now_ms: int
                ) -> list[Finding]:
        """Findings for the checks that have failed for ``after_ms`` (once each) and for the
        raised ones that pass again (or are no longer checked)."""
        findings: list[Finding] = []
        for name, ok in checks.items():
            if ok:
                self._failing_since.pop(name, None)
                continue
            since = self._failing_since.setdefault(name, now_ms)
            if name not in self._raised and now_ms - since >= self.after_ms:
                self._raised.add(name)
                findings.append(self._finding(name, now_ms, since, reasons.get(name, "")))
        for name in sorted(self._raised):
            if checks.get(name, True):
                self._raised.discard(name)
                findings.append(Finding(
                    type=AlertType.GATEWAY_HEALTH, site=GATEWAY_SITE, bed="", at=now_ms,
                    severity=_severity(name), episode=name, active=False,
                    summary=f"{_what(name)}: passing again", evidence={"check": name}))
        return findings

    def _finding(self, name: str, now_ms: int, since: int, reason: str) -> Finding:
        seconds = max(0, now_ms - since) / 1000
        lasted = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
        summary = f"{_what(name)} for {lasted}" + (f": {reason}" if reason else "")
        return Finding(
            type=AlertType.GATEWAY_HEALTH, site=GATEWAY_SITE, bed="", at=now_ms,
            severity=_severity(name), episode=name, started_at=since, summary=summary,
            evidence={"check": name, "reason": reason, "failing_since": since})


def _what(check: str) -> str:
    return WHAT.get(check) or f"{check.removesuffix('_writable')} store not writable"


def _severity(check: str) -> Severity:
    return Severity.MEDIUM if check in LESS_URGENT else Severity.HIGH
