"""Issue #13, 4-5 in the console, in headless Chromium against the real gateway, in English and
Simplified Chinese (the fixtures and helpers of ``test_console_browser``):

* the response report page: its figures are the API's report, its three charts by day show a
  day's value on hover with no label cut off, its tables name the dispatcher, the shifts and
  the outcomes in the dispatcher's language, and one of its tables downloads as CSV;
* the gateway's health banner: the broker stopped, the console says at once that calls from
  homes do not arrive; the broker back, the banner goes.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import httpx
import pytest

from tests.integration.test_console_browser import (
    ARTIFACTS,
    DEADLINE_MS,
    LABELS_OUTSIDE,
    LANGUAGES,
    TEXT,
    Devices,
    assert_no_english,
    bootstrap_key,
    browser,
    console_page,
    devices,
    dispatcher_key,
    gateway,
    sign_in,
)
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

__all__ = ["bootstrap_key", "browser", "devices", "dispatcher_key", "gateway"]  # fixtures

REPORT_TEXT = {
    "en": {"nav": "Response", "title": "Response report", "within": "answered within 60 s",
           "false_alarm": "False alarm", "button": "Emergency button", "nobody": "Not answered",
           "download": "Download CSV", "day_shift": "Day shift", "night_shift": "Night shift",
           "broker": "lost its broker"},
    "zh-CN": {"nav": "响应统计", "title": "响应统计", "within": "60 秒内响应的紧急告警",
              "false_alarm": "误报", "button": "紧急呼叫", "nobody": "未响应",
              "download": "下载 CSV", "day_shift": "白班", "night_shift": "夜班",
              "broker": "消息代理的连接已断开"},
}


def _api(gateway: GatewayProcess, key: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{gateway.url}/api/v1{path}", timeout=10,
                             headers={"Authorization": f"Bearer {key}"}, **kwargs)
    response.raise_for_status()
    return response.json()


def _calls_handled(gateway: GatewayProcess, key: str, devices: Devices) -> None:
    """Three calls: one acknowledged and resolved as a false alarm, one acknowledged, one left
    open."""
    for bed in ("bed-0101", "bed-0102", "bed-0103"):
        devices.press(bed)

    def opened() -> list[dict[str, Any]]:
        items = _api(gateway, key, "GET", "/alerts", params={"type": "emergency_button"})
        return [a for a in items["items"] if a["bed"] in ("bed-0101", "bed-0102", "bed-0103")]

    from tests.servers import wait_for

    alerts = wait_for(lambda: (found := opened()) and len(found) == 3 and found, "three calls",
                      timeout=DEADLINE_MS / 1000)
    by_bed = {a["bed"]: a["id"] for a in alerts}
    _api(gateway, key, "POST", f"/alerts/{by_bed['bed-0101']}/acknowledge", json={})
    _api(gateway, key, "POST", f"/alerts/{by_bed['bed-0101']}/resolve",
         json={"note": "pressed by mistake", "outcome": "false_alarm"})
    _api(gateway, key, "POST", f"/alerts/{by_bed['bed-0102']}/acknowledge", json={})


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_response_report_page_shows_the_gateways_figures_in_charts_and_tables(
        browser: Any, gateway: GatewayProcess, dispatcher_key: str, devices: Devices,
        lang: str) -> None:
    text, own = TEXT[lang], REPORT_TEXT[lang]
    _calls_handled(gateway, dispatcher_key, devices)
    with console_page(browser, gateway, width=1366, height=900, lang=lang) as page:
        sign_in(page, dispatcher_key, lang)
        page.get_by_role("link", name=own["nav"]).click()
        expect = pytest.importorskip("playwright.sync_api").expect
        expect(page.get_by_role("heading", name=own["title"], exact=True)).to_be_visible()
        tiles = page.locator("dl.tiles")
        expect(tiles).to_be_visible(timeout=DEADLINE_MS)
        # The API's report of the last 7 days holds the same alerts as the page's.
        body = _api(gateway, dispatcher_key, "GET", "/reports/response", params={"limit": 0})
        totals = body["totals"]
        assert (totals["alerts"], totals["answered"], totals["critical"]) == (3, 2, 3)
        expect(page.locator("#tile-alerts dd strong")).to_have_text("3")
        expect(page.locator("#tile-false dd strong")).to_have_text("1")
        expect(page.locator("#tile-within dt")).to_contain_text(own["within"])
        within = page.locator("#tile-within dd strong")
        expect(within).to_have_text(re.compile(r"^(\d+(\.\d)?) ?%$"))

        charts = page.locator("#report-charts figure.chart")
        expect(charts).to_have_count(3)
        expect(charts.nth(2).locator("svg path.bar")).to_have_count(1)
        expect(charts.nth(0).locator("svg circle.point")).to_have_count(1)  # one day, one dot
        assert page.evaluate(LABELS_OUTSIDE) == []
        bars = charts.nth(2)
        bars.locator(".chart-area").focus()
        page.keyboard.press("End")
        tip = bars.locator(".tip-text")
        expect(bars.locator(".cursor")).to_have_attribute("visibility", "visible")
        expect(tip.nth(1)).to_have_text("3")
        day = page.evaluate("""async () => (await import("/console/i18n.js"))
                               .fmtDay(Date.now())""")
        expect(tip.first).to_have_text(day)

        dispatchers = page.locator("#report-dispatchers")
        expect(dispatchers).to_contain_text("dispatcher-anna")
        expect(dispatchers).to_contain_text(own["nobody"])
        shifts = page.locator("#report-shifts")
        expect(shifts).to_contain_text(own["day_shift"])
        expect(shifts).to_contain_text(own["night_shift"])
        outcomes = page.locator("#report-outcomes")
        expect(outcomes).to_contain_text(own["button"])
        expect(outcomes).to_contain_text(own["false_alarm"])
        assert_no_english(page, lang)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"console-report-{lang}.png"), full_page=True)

        page.locator("#report-csv-table").select_option("alerts")
        with page.expect_download() as download:
            page.get_by_role("button", name=own["download"]).click()
        assert download.value.suggested_filename == "response-alerts.csv"
        rows = list(csv.DictReader(io.StringIO(
            download.value.path().read_text(encoding="utf-8"))))
        assert sorted(r["bed"] for r in rows) == ["bed-0101", "bed-0102", "bed-0103"]
        assert {r["answered_by"] for r in rows} == {"dispatcher-anna", ""}
        assert text  # the shared texts: the page was signed in through them


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_console_says_at_once_when_the_gateway_loses_its_broker(
        browser: Any, gateway: GatewayProcess, mosquitto: Mosquitto, dispatcher_key: str,
        lang: str) -> None:
    own = REPORT_TEXT[lang]
    expect = pytest.importorskip("playwright.sync_api").expect
    with console_page(browser, gateway, width=1366, height=768, lang=lang,
                      expected_errors=("503",)) as page:
        sign_in(page, dispatcher_key, lang)
        banner = page.locator("#health-banner")
        expect(banner).to_be_hidden()
        mosquitto.stop()
        expect(banner).to_be_visible(timeout=DEADLINE_MS)
        expect(banner).to_contain_text(own["broker"])
        assert_no_english(page, lang)
        page.screenshot(path=str(ARTIFACTS / f"console-health-{lang}.png"))
        mosquitto.start()
        expect(banner).to_be_hidden(timeout=30_000)
