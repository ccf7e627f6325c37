"""A gateway whose data directory was lost (wiped, or restored from an older backup) while the
broker kept both of its persistent sessions (issue #17).

The broker then resumes sessions the gateway has no record of
(:class:`~gateway.ingest.subscriptions.SessionFilters`). The urgent session took that for the
main session's, handed to it under one client id, and stopped for good with an ERROR that
blamed ``use_username_as_clientid`` (emergency calls then came only through the main session,
behind any backlog). And both sessions kept, for good, the filters of the lost configuration.

Here, with real mosquitto (persistence on) and the real gateway process: run once with
``homecare/v1/#``, stop, press a button while it is away, wipe its data directory and start it
again for one site only. The urgent session must stay up, the press queued while it was away
must be alerted and stored once, the filters the broker still held for other sites must be
unsubscribed once a message shows them, and the gateway must say what happened.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.ingest import publish
from tests.servers import GatewayProcess, Mosquitto, wait_for
from tests.urgent import alerts_of, press, sessions_connected, stored

pytestmark = [pytest.mark.integration]

SITE = "site-kept"
OTHER = "site-moved"
"""A site of the lost configuration (``homecare/v1/#``), no longer in ``mqtt_topic``."""
TIMEOUT = 20.0


def test_a_lost_data_directory_keeps_the_urgent_session_and_drops_the_stale_filters(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_MQTT_TOPIC": "homecare/v1/#"})
    gateway.start()
    try:
        wait_for(lambda: sessions_connected(gateway.metrics()), "both sessions connected",
                 TIMEOUT)
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()

    # Away: a press is queued for both sessions; then the data directory is lost.
    publish(mosquitto.url, [press(SITE, "bed-away")])
    shutil.rmtree(gateway.data_dir)
    gateway.env["HOMECARE_MQTT_TOPIC"] = f"homecare/v1/{SITE}/#"
    gateway.log_path.write_text("")
    db = gateway.data_dir / "alerts.sqlite3"
    spool = gateway.data_dir / "spool"
    gateway.start()
    try:
        wait_for(lambda: sessions_connected(gateway.metrics()), "both sessions connected "
                 f"again\n{gateway.log_tail()}", TIMEOUT)
        wait_for(lambda: alerts_of(db, SITE, "bed-away"), "the press queued while away is "
                 "alerted", TIMEOUT)
        # A call of the site no longer configured comes through the filters the broker kept
        # (the gateway cannot know them): it shows them, and they are unsubscribed.
        publish(mosquitto.url, [press(OTHER, "bed-stale")])
        wait_for(lambda: gateway.log_path.read_text().count("mqtt.stale_filters ") >= 2,
                 f"the stale filters of both sessions are dropped\n{gateway.log_tail()}",
                 TIMEOUT)
        # Then another: nothing of it may come any more. Published before a call of the kept
        # site, on either session it would be read before that call is (one session delivers
        # in order): once that one is alerted (the first copy) and stored (the main session's
        # copy), the other would have been taken.
        publish(mosquitto.url, [press(OTHER, "bed-after"), press(SITE, "bed-now")])
        wait_for(lambda: alerts_of(db, SITE, "bed-now"), "the kept site's call is alerted",
                 TIMEOUT)
        wait_for(lambda: stored(spool)["button_event/btn-bed-now"], "and stored", TIMEOUT)
        time.sleep(0.5)  # the urgent lane's step that alerted it may still hold the other one
        urgent_up = gateway.metrics().get("homecare_mqtt_urgent_connected")
    finally:
        gateway.stop()
    assert gateway.returncode == 0, gateway.log_tail()
    log = gateway.log_path.read_text(errors="replace")
    assert "mqtt.urgent_session_shared" not in log, log[-3000:]
    assert urgent_up == 1, "the urgent session is still connected"
    unrecorded = re.findall(r"WARNING homecare\.mqtt mqtt\.session_unrecorded session=(\w+)", log)
    assert sorted(unrecorded) == ["main", "urgent"], log[-3000:]
    assert len(alerts_of(db, SITE, "bed-away")) == 1, "the press queued while away: one alert"
    counts = stored(spool)
    assert counts["button_event/btn-bed-away"] == 1, "and stored once"
    assert alerts_of(db, OTHER, "bed-after") == [], "a call after the clean-up came through"
    assert counts["button_event/btn-bed-after"] == 0
