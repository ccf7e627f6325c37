"""Housekeeping in the running gateway (gateway/storage/housekeeping.py): a real gateway
process, started on a data directory holding alert changes of two years ago and dead letters
of two months ago, archives the changes (verifiable), deletes the dead letters, reports bytes
per store and its run in /metrics and one ``housekeeping.done`` log line, keeps running its
alerts on the same store, and stops cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest

from alerts.model import Alert, AlertChange, AlertStatus, AlertType, Severity
from alerts.store import AlertStore
from gateway.storage.deadletters import DeadLetter, DeadLetterStore
from gateway.storage.housekeeping import verify_archive
from tests.servers import Mosquitto, running_gateway, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration]

DAY = 86_400_000


def _old_data(data_dir: Path, now_ms: int) -> None:
    data_dir.mkdir(parents=True)
    store = AlertStore(data_dir / "alerts.sqlite3")
    old = now_ms - 730 * DAY
    alert = Alert(id="old-1", incident="s1/b1/device_offline/#1", type=AlertType.DEVICE_OFFLINE,
                  severity=Severity.HIGH, site="s1", bed="b1", opened_at=old, updated_at=old,
                  status=AlertStatus.OPEN)
    resolved = msgspec.structs.replace(alert, status=AlertStatus.RESOLVED, updated_at=old + 1)
    store.write([AlertChange(seq=1, at=old, action="opened", alert=alert),
                 AlertChange(seq=2, at=old + 1, action="resolved", alert=resolved)])
    recent = msgspec.structs.replace(alert, id="new-1", incident="s1/b1/low_battery/#1",
                                     type=AlertType.LOW_BATTERY, opened_at=now_ms,
                                     updated_at=now_ms)
    store.write([AlertChange(seq=3, at=now_ms, action="opened", alert=recent)])
    store.close()
    letters = DeadLetterStore(data_dir / "deadletters.sqlite3")
    letters.add([DeadLetter(received_ms=now_ms - 60 * DAY, topic=f"old/{i}", payload=b"x" * 500,
                            reason="undecodable", detail="") for i in range(300)])
    letters.close()


def test_the_running_gateway_archives_ages_and_reports(tmp_path: Path,
                                                       mosquitto: Mosquitto) -> None:
    workdir = tmp_path / "gw"
    _old_data(workdir / "data", int(time.time() * 1000))
    env = {"HOMECARE_HOUSEKEEPING_INTERVAL_S": "1"}
    with running_gateway(workdir, mosquitto.url, env) as gateway:
        data_dir = gateway.data_dir
        wait_for(lambda: list((data_dir / "archive").glob("alert-changes-*.jsonl.gz")) or None,
                 "alert changes archived", timeout=60)
        wait_for(lambda: gateway.metric("homecare_housekeeping_last_run_timestamp_seconds") > 0
                 or None, "a housekeeping run in /metrics", timeout=30)
        wait_for(lambda: not sqlite_rows(data_dir / "deadletters.sqlite3",
                                         "SELECT id FROM dead_letters") or None,
                 "old dead letters deleted", timeout=30)
        metrics = gateway.metrics()
        assert metrics['homecare_store_bytes{store="alerts"}'] > 0
        assert metrics['homecare_store_bytes{store="archive"}'] > 0
        assert metrics['homecare_housekeeping_rows_total{action="archived",'
                       'store="alert-changes"}'] == 2
        assert metrics['homecare_housekeeping_rows_total{action="deleted",'
                       'store="deadletters"}'] == 300
        assert "housekeeping.done" in gateway.log_tail(400)
        assert [r[0] for r in sqlite_rows(data_dir / "alerts.sqlite3",
                                          "SELECT seq FROM changes ORDER BY seq")][:1] == [3]
    check = verify_archive(data_dir)
    assert check.ok, check.problems
    assert check.rows == {"alert-changes": 2}


def test_bytes_per_store_are_measured_with_housekeeping_off(tmp_path: Path,
                                                            mosquitto: Mosquitto) -> None:
    workdir = tmp_path / "gw"
    _old_data(workdir / "data", int(time.time() * 1000))
    with running_gateway(workdir, mosquitto.url,
                         {"HOMECARE_HOUSEKEEPING_INTERVAL_S": "0"}) as gateway:
        metrics = wait_for(lambda: (m := gateway.metrics()).get(
            'homecare_store_bytes{store="deadletters"}') and m, "store bytes measured")
        assert metrics['homecare_store_bytes{store="deadletters"}'] > 150_000
        assert metrics['homecare_store_bytes{store="alerts"}'] > 0
        assert metrics.get("homecare_housekeeping_last_run_timestamp_seconds", 0) == 0
        assert sqlite_rows(gateway.data_dir / "deadletters.sqlite3",
                           "SELECT count(*) FROM dead_letters") == [(300,)]
    assert not (gateway.data_dir / "archive").exists()
