"""The tester's flood, live: real mosquitto and the real gateway process. badge-07, listed,
publishes 5,000 check-ins/outs on two beds of its site as fast as the broker takes them; the
service log gains at most its budget of rows (it gained all 5,000, 6.1 MB, before), the rest
is dead-lettered and counted, the dispatchers see one ``sensor_fault`` alert for the badge, and
another caregiver's day of 30 visits, sent as one backlog, is recorded whole meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_alerts import ADMIN_KEY, publish
from tests.integration.test_service_supervision_live import api
from tests.servers import GatewayProcess, Mosquitto, running_gateway, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration]

SITE = "site-b"
REGISTRY = f"""
[sites.{SITE}.beds.bed-0001.devices.badge-07]
kind = "badge"
[sites.{SITE}.beds.bed-0002.devices.badge-08]
kind = "badge"
"""
BURST = 200
"""``service_badge_burst_events`` by default (the budget's refill in the test's seconds: none)."""
FLOOD = 5_000
MINUTE = 60_000


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    registry = tmp_path / "registry.toml"
    registry.write_text(REGISTRY)
    env = {"HOMECARE_API_KEY": ADMIN_KEY, "HOMECARE_TIMEZONE": "UTC",
           "HOMECARE_REGISTRY_FILE": str(registry)}
    with running_gateway(tmp_path / "gateway", mosquitto.url, env) as process:
        yield process


def badge(device: str, bed: str, seq: int, event: str, visit: str, ts: int,
          caregiver: str) -> tuple[str, dict[str, Any]]:
    body: dict[str, Any] = {"ts": ts, "seq": seq, "event": event, "caregiver": caregiver,
                            "visit": visit, "method": "nfc"}
    if event == "check_out":
        body["services"] = ["bathing"]
    return f"homecare/v1/{SITE}/{bed}/badge/{device}/event", body


def log_rows(gateway: GatewayProcess, device: str) -> int:
    """Rows the device's events added to servicelog.sqlite3: chained, or set aside."""
    path = gateway.data_dir / "servicelog.sqlite3"
    return sum(sqlite_rows(path, f"SELECT count(*) FROM {table} WHERE device = ?",
                           (device,))[0][0] for table in ("service_log", "refused_visit"))


def test_a_flooding_badge_adds_at_most_its_budget_to_the_service_log_and_others_still_record(
        mosquitto: Mosquitto, gateway: GatewayProcess) -> None:
    now = int(time.time() * 1000)
    flood = [badge("badge-07", f"bed-000{1 + i % 2}", seq, event, f"f-{i}", now + seq,
                   "c-07")
             for i in range(FLOOD // 2)
             for seq, event in ((2 * i + 1, "check_in"), (2 * i + 2, "check_out"))]
    # The other caregiver's app was offline all day: 30 visits over 10 hours, sent at once.
    day = now - 11 * 3_600_000
    backlog = [badge("badge-08", "bed-0002", 2 * i + j + 1, event, f"v-{i}",
                     day + i * 20 * MINUTE + j * 15 * MINUTE, "c-08")
               for i in range(30) for j, event in enumerate(("check_in", "check_out"))]
    publish(mosquitto, flood)
    publish(mosquitto, backlog)

    def dead_letters(metrics: dict[str, float]) -> tuple[int, float]:
        """Stored, and shed (counted, not stored: past the store's own per-source budget)."""
        stored = sqlite_rows(gateway.data_dir / "deadletters.sqlite3",
                             "SELECT count(*) FROM dead_letters WHERE reason = ?",
                             ("badge_rate_exceeded",))
        return (stored[0][0] if stored else 0,
                metrics.get('homecare_dead_letters_shed_total{reason="badge_rate_exceeded"}',
                            0.0))

    def settled() -> dict[str, float] | None:
        metrics = gateway.metrics()
        over = metrics.get('homecare_service_badge_events_over_budget_total{registry="listed"}')
        return metrics if (over == FLOOD - BURST and log_rows(gateway, "badge-08") == 60
                           and sum(dead_letters(metrics)) == FLOOD - BURST) else None

    metrics = wait_for(settled, "the flood decided and dead-lettered, the backlog recorded",
                       timeout=120)
    assert log_rows(gateway, "badge-07") == BURST  # was 5,000
    assert metrics['homecare_messages_rejected_total{reason="badge_rate_exceeded"}'] == \
        FLOOD - BURST
    assert 0 < dead_letters(metrics)[0] < FLOOD - BURST

    def alert() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = api(gateway, "GET", "/alerts",
                                          type="sensor_fault").json()["items"]
        return items or None

    [opened] = wait_for(alert, "the badge's sensor_fault alert", timeout=60)
    assert (opened["site"], opened["bed"], opened["severity"]) == (SITE, "bed-0001", "medium")
    assert opened["evidence"]["device"] == "badge-07"
    assert opened["evidence"]["reasons"] == ["badge_rate_exceeded"]
    assert api(gateway, "GET", "/service-logs/verify").json()["ok"] is True
