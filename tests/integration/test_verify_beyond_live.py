"""A kept head beyond the service log's end, asked of the real gateway's API (real mosquitto,
the gateway process, its uvicorn) and of ``homecare verify-log`` on its data directory (issue
#14, D-E of a fresh tester): 78 badge records, a head for record 100. The API answered
``records: 0, head_seq: 0`` and nothing of the 78 records; both now say, alike, the records
recomputed, where the log ends, that the kept head is beyond it, and that it is not sound."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_api_alerts import ADMIN, ADMIN_KEY, now_ms, publish
from tests.servers import GatewayProcess, Mosquitto, running_gateway, wait_for

pytestmark = pytest.mark.integration

BADGE = "homecare/v1/site-v/bed-0001/badge/bd-0001/event"
RECORDS = 78
HEAD = f"100:{'ab' * 32}"


@pytest.fixture
def gateway(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[GatewayProcess]:
    with running_gateway(tmp_path / "gateway", mosquitto.url,
                         {"HOMECARE_API_KEY": ADMIN_KEY}) as process:
        yield process


def get(gateway: GatewayProcess, path: str, **params: Any) -> Any:
    response = httpx.get(f"{gateway.url}/api/v1{path}", headers=ADMIN, params=params,
                         timeout=30)
    response.raise_for_status()
    return response.json()


def test_a_head_beyond_the_log_is_answered_with_where_the_log_ends(
        mosquitto: Mosquitto, gateway: GatewayProcess) -> None:
    t = now_ms()
    messages = []
    for n in range(RECORDS // 2):
        for k, event in enumerate(("check_in", "check_out")):
            body = {"ts": t + 2 * n + k, "seq": 2 * n + k + 1, "event": event,
                    "caregiver": "c-1", "visit": f"v-{n}", "method": "nfc"}
            messages.append((BADGE, body | ({"services": ["meds"]} if k else {})))
    publish(mosquitto, messages)
    wait_for(lambda: (get(gateway, "/service-logs", limit=1)["items"] or [{"seq": 0}])[0][
        "seq"] == RECORDS, f"{RECORDS} badge records chained", timeout=30)

    answer = get(gateway, "/service-logs/verify", head=HEAD, full="true")
    assert answer["ok"] is False
    assert (answer["log_last_seq"], answer["kept_beyond_seq"]) == (RECORDS, 100), answer
    assert (answer["checked"], answer["from_seq"], answer["records"]) == (RECORDS, 1, 0)
    assert (answer["suspect_from"], answer["suspect_to"]) == (1, RECORDS + 1)
    assert answer["scope"] == (f"records 1 to {RECORDS} recomputed now; the log ends at record "
                               f"{RECORDS}; a kept head is for record 100, beyond its end; no "
                               "record is known sound")

    printed = subprocess.run(
        [sys.executable, "-m", "homecare.cli", "verify-log", "--data-dir",
         str(gateway.data_dir), "--head", HEAD, "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert printed.returncode == 1, printed.stderr
    cli = json.loads(printed.stdout)
    for key in ("ok", "records", "head_seq", "checked", "from_seq", "first_bad_seq",
                "suspect_from", "suspect_to", "log_last_seq", "kept_beyond_seq", "error"):
        assert cli[key] == answer[key], key
