"""Service records and the supervision report in the real gateway process (issue #14, 3-4): a
visit checked in and out through the app, judged by the detectors, is settled into its service
record in the chain (flagged, with the detector's reasons) and counted in the month's report
served by the gateway; the chain verifies against the head it reached."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_api_alerts import ADMIN_KEY, now_ms, publish
from tests.integration.test_service_supervision_live import INFRARED, api, samples
from tests.servers import GatewayProcess, Mosquitto, running_gateway, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    env = {"HOMECARE_API_KEY": ADMIN_KEY, "HOMECARE_DETECTOR_EVALUATE_INTERVAL_S": "1",
           "HOMECARE_TIMEZONE": "UTC", "HOMECARE_SERVICE_RECORD_SETTLE_S": "90",
           "HOMECARE_SERVICE_INSTITUTIONS": "site-v=care-north"}
    with running_gateway(tmp_path / "gateway", mosquitto.url, env) as process:
        yield process


def test_a_finished_app_visit_becomes_its_service_record_and_is_in_the_months_report(
        mosquitto: Mosquitto, gateway: GatewayProcess) -> None:
    publish(mosquitto, [(INFRARED, samples(now_ms(), 1, 1))])
    wait_for(lambda: api(gateway, "GET", "/beds/site-v/bed-0001").status_code == 200,
             "the bed is heard", timeout=20)
    visit = {"site": "site-v", "bed": "bed-0001", "caregiver": "c-2", "visit": "v-rec-1"}
    checked_in = api(gateway, "POST", "/visits/check-in", visit)
    assert checked_in.status_code == 201
    t_in = checked_in.json()["at"]
    publish(mosquitto, [(INFRARED, samples(t_in + 10, 1, 6))])  # the resident alone
    # By the samples' own time: ``last_seen`` is the receipt time, which can be within 10 ms of
    # the check-in (a failure in CI).
    wait_for(lambda: api(gateway, "GET", "/beds/site-v/bed-0001").json()["latest"]
             .get("presence", {}).get("t", 0) >= t_in + 10, "the samples are in", timeout=20)
    out = api(gateway, "POST", "/visits/check-out", {**visit, "services": ["cleaning"]})
    assert out.status_code == 201

    def settled() -> dict[str, Any] | None:
        items = api(gateway, "GET", "/service-logs", event="service").json()["items"]
        return items[0] if items else None

    record = wait_for(settled, "the visit settled (90 s after its check-out)", timeout=240)
    assert (record["visit"], record["event"], record["source"]) == ("v-rec-1", "service",
                                                                    "gateway")
    detail = record["detail"]
    assert detail["verdict"] == "flagged"
    assert detail["reasons"][:1] == ["nobody_sensed"]
    assert detail["evidence"]["check_out"] == {"seq": out.json()["seq"],
                                               "hash": out.json()["hash"]}
    [alert] = api(gateway, "GET", "/alerts", type="service_anomaly").json()["items"]
    assert detail["evidence"]["alerts"] == [alert["id"]]
    check = api(gateway, "GET", "/service-logs/verify",
                head=f"{record['seq']}:{record['hash']}").json()
    assert (check["ok"], check["head_seq"]) == (True, record["seq"])

    month = dt.datetime.fromtimestamp(t_in / 1000, dt.UTC).strftime("%Y-%m")
    report = api(gateway, "GET", "/reports/supervision", month=month).json()
    [caregiver] = report["caregivers"]
    assert (caregiver["institution"], caregiver["caregiver"], caregiver["performed"],
            caregiver["flagged"], caregiver["billable_minutes"]) == ("care-north", "c-2", 1, 1,
                                                                      0.0)
    assert caregiver["held_minutes"] == 25.0
    page = api(gateway, "GET", "/reports/supervision", month=month, format="html")
    assert page.headers["content-type"].startswith("text/html")
    assert "v-rec-1" in page.text
