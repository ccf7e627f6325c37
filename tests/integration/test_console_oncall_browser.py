"""Issue #13, 1 in the console: the **On call** page, in headless Chromium against the real
gateway (an on-call file given), in English and Simplified Chinese (the helpers of
``test_console_browser``):

* a dispatcher sees who is on duty now at each site (the dispatchers, the duty nurse and the
  station manager with their phone and pager) and the roster's coverage gap as a warning, and
  no editor;
* an admin edits the roster's JSON on the page (adds a dispatcher to a site's duty), saves, and
  the page shows the new person on duty and the gap gone; an invalid edit shows each problem
  the API names, and changes nothing;
* a viewer's key is told it may not see the roster, and gets no editor.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_console_browser import (
    ARTIFACTS,
    DEADLINE_MS,
    LANGUAGES,
    STATION_ZONE,
    assert_no_english,
    bootstrap_key,
    browser,
    console_page,
    dispatcher_key,
    sign_in,
)
from tests.servers import GatewayProcess, Mosquitto

pytestmark = pytest.mark.integration

__all__ = ["bootstrap_key", "browser", "dispatcher_key"]  # fixtures

expect = pytest.importorskip("playwright.sync_api").expect

# site-01 has the same people on both shifts (whatever the time, anna, li and wang are on
# duty); site-02 has a nurse but no dispatcher: a coverage gap all week. site-03 is only the
# registry's (a bed there): nobody on duty, a gap too.
REGISTRY = f"""
[defaults]
timezone = "{STATION_ZONE}"

[sites.site-03.beds.bed-0301.devices.btn-0301]
kind = "button"
heartbeat_s = 600
"""
ONCALL = """
[[staff]]
id = "anna"
name = "Anna Zhou"
role = "dispatcher"
phone = "+86 138 0000 0001"
pager = "pager-01"

[[staff]]
id = "bo"
name = "Bo Liu"
role = "dispatcher"
phone = "+86 138 0000 0002"

[[staff]]
id = "li"
name = "Li Na"
role = "nurse"
phone = "+86 138 0000 0003"
pager = "pager-07"

[[staff]]
id = "wang"
name = "Wang Jun"
role = "manager"
phone = "+86 138 0000 0004"

[[shifts]]
name = "day"
start = "08:00"

[[shifts]]
name = "night"
start = "20:00"

[[duty]]
site = "site-01"
shift = "day"
dispatchers = ["anna"]
nurse = "li"
manager = "wang"

[[duty]]
site = "site-01"
shift = "night"
dispatchers = ["anna"]
nurse = "li"
manager = "wang"

[[duty]]
site = "site-02"
shift = "day"
nurse = "li"

[[duty]]
site = "site-02"
shift = "night"
nurse = "li"
"""

OWN = {
    "en": {"nav": "On call", "title": "On call", "nobody": "Nobody on duty",
           "gap": "no dispatcher on duty", "no_gaps": "Every site has a dispatcher",
           "save": "Save roster", "saved": "Roster saved", "refused": "refused the roster",
           "forbidden": "may not see the on-call roster", "nurse": "Duty nurse",
           "manager": "Station manager", "phone": "Phone", "pager": "Pager"},
    "zh-CN": {"nav": "值班", "title": "值班", "nobody": "无人值班",
              "gap": "没有调度员值班", "no_gaps": "每个站点都有调度员值班",
              "save": "保存值班表", "saved": "值班表已保存", "refused": "网关拒绝了该值班表",
              "forbidden": "无权查看值班表", "nurse": "值班护士", "manager": "站长",
              "phone": "电话", "pager": "寻呼机"},
}


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: Mosquitto, bootstrap_key: str) -> Iterator[GatewayProcess]:
    """The console tests' gateway, with an on-call file."""
    registry = tmp_path / "registry.toml"
    registry.write_text(REGISTRY, encoding="utf-8")
    oncall = tmp_path / "oncall.toml"
    oncall.write_text(ONCALL, encoding="utf-8")
    server = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                            env={"HOMECARE_API_KEY": bootstrap_key,
                                 "HOMECARE_REGISTRY_FILE": str(registry),
                                 "HOMECARE_ONCALL_FILE": str(oncall)})
    server.start()
    try:
        server.wait_connected()
        yield server
    finally:
        server.stop()


def _request(gateway: GatewayProcess, key: str, method: str, path: str,
             **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{gateway.url}/api/v1{path}", timeout=10,
                         headers={"Authorization": f"Bearer {key}"}, **kwargs)


def _key(gateway: GatewayProcess, admin: str, role: str) -> str:
    response = _request(gateway, admin, "POST", "/keys",
                        json={"name": f"{role}-{secrets.token_hex(3)}", "role": role})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def _open(page: Any, key: str, lang: str) -> None:
    sign_in(page, key, lang)
    page.get_by_role("link", name=OWN[lang]["nav"], exact=True).click()
    expect(page.get_by_role("heading", name=OWN[lang]["title"], exact=True)).to_be_visible()


def _site(page: Any, site: str) -> Any:
    return page.locator(f'.oncall-site[data-site="{site}"]')


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_dispatcher_sees_who_is_on_duty_at_each_site_and_the_rosters_gap(
        browser: Any, gateway: GatewayProcess, dispatcher_key: str, lang: str) -> None:
    own = OWN[lang]
    with console_page(browser, gateway, width=1366, height=900, lang=lang) as page:
        _open(page, dispatcher_key, lang)
        first = _site(page, "site-01")
        expect(first).to_be_visible(timeout=DEADLINE_MS)
        for text in ("Anna Zhou", f"{own['phone']} +86 138 0000 0001",
                     f"{own['pager']} pager-01", own["nurse"], "Li Na", "pager-07",
                     own["manager"], "Wang Jun", "+86 138 0000 0004"):
            expect(first).to_contain_text(text)
        expect(first).not_to_contain_text(own["nobody"])
        expect(first.locator('a[href="tel:+8613800000001"]')).to_be_visible()
        second = _site(page, "site-02")
        expect(second.locator(".oncall-none")).to_have_text(own["nobody"])  # no dispatcher
        expect(second).to_contain_text("Li Na")
        gaps = page.locator("#oncall-gaps")
        expect(gaps).to_have_attribute("role", "alert")
        expect(gaps.locator('li[data-site="site-02"]')).to_contain_text(own["gap"])
        expect(gaps.locator('li[data-site="site-01"]')).to_have_count(0)
        # The registry's site, with nobody in the roster: every role empty, a gap.
        third = _site(page, "site-03")
        expect(third.locator("dd")).to_have_text([own["nobody"]] * 3)
        expect(gaps.locator('li[data-site="site-03"]')).to_contain_text(own["gap"])
        # The shift running now, as the API says.
        now = _request(gateway, dispatcher_key, "GET", "/oncall/now",
                       params={"site": "site-01"}).json()
        assert [p["id"] for p in now["dispatchers"]] == ["anna"]
        shift = page.evaluate(f"""async () => (await import("/console/i18n.js"))
                                  .label("shift", {json.dumps(now["shift"])})""")
        expect(first.locator(".oncall-shift")).to_contain_text(shift)
        expect(page.locator("#oncall-editor")).to_have_count(0)
        assert_no_english(page, lang)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"console-oncall-{lang}.png"), full_page=True)
    # Nor may it change the roster behind the page's back.
    assert _request(gateway, dispatcher_key, "PUT", "/oncall",
                    json={"staff": [], "duty": []}).status_code == 403


@pytest.mark.parametrize("lang", LANGUAGES)
def test_an_admin_edits_the_roster_and_the_page_shows_the_new_person_on_duty(
        browser: Any, gateway: GatewayProcess, bootstrap_key: str, lang: str) -> None:
    own = OWN[lang]
    with console_page(browser, gateway, width=1366, height=900, lang=lang,
                      expected_errors=("400",)) as page:
        _open(page, bootstrap_key, lang)
        editor = page.locator("#oncall-editor")
        expect(editor).to_be_visible(timeout=DEADLINE_MS)
        expect(page.locator("#oncall-gaps li[data-site='site-02']")).to_have_count(1)
        roster = json.loads(editor.input_value())
        assert set(roster) == {"staff", "shifts", "duty"}
        assert [d["site"] for d in roster["duty"]] == ["site-01", "site-01", "site-02", "site-02"]

        # An invalid edit: a dispatcher nobody knows. Each of the API's problems is shown.
        broken = json.loads(json.dumps(roster))
        broken["duty"][2]["dispatchers"] = ["zed"]
        broken["duty"][3]["nurse"] = "anna"
        refused = _request(gateway, bootstrap_key, "PUT", "/oncall", json=broken)
        assert refused.status_code == 400, refused.text
        problems = refused.json()["detail"]
        assert len(problems) == 2, problems
        editor.fill(json.dumps(broken, indent=2))
        page.get_by_role("button", name=own["save"]).click()
        errors = page.locator("#oncall-errors")
        expect(errors).to_contain_text(own["refused"])
        for problem in problems:
            expect(errors.locator("li", has_text=problem)).to_have_count(1)
        assert_no_english(page, lang)  # the API's own words are marked as its English
        # Nothing was changed.
        expect(_site(page, "site-02").locator(".oncall-none")).to_have_text(own["nobody"])
        assert _request(gateway, bootstrap_key, "GET", "/oncall").json()["source"] == "file"

        # Not JSON at all: said before anything is sent.
        editor.fill("{ not json")
        page.get_by_role("button", name=own["save"]).click()
        expect(errors).to_contain_text("JSON")

        # A valid edit: bo dispatches at site-02 and site-03 on both shifts.
        fixed = json.loads(json.dumps(roster))
        for duty in fixed["duty"][2:]:
            duty["dispatchers"] = ["bo"]
        fixed["duty"] += [{"site": "site-03", "shift": shift, "dispatchers": ["bo"]}
                          for shift in ("day", "night")]
        editor.fill(json.dumps(fixed, indent=2))
        page.get_by_role("button", name=own["save"]).click()
        expect(page.locator("#oncall-saved")).to_contain_text(own["saved"])
        expect(errors).to_be_empty()
        second = _site(page, "site-02")
        expect(second).to_contain_text("Bo Liu")
        expect(second).to_contain_text("+86 138 0000 0002")
        expect(second.locator(".oncall-none")).to_have_count(0)  # a dispatcher now
        expect(_site(page, "site-03")).to_contain_text("Bo Liu")
        expect(page.locator("#oncall-gaps")).to_contain_text(own["no_gaps"])
        expect(page.locator("#oncall-gaps li")).to_have_count(0)
        expect(page.locator("#oncall-source")).to_contain_text("bootstrap")
        assert_no_english(page, lang)

    body = _request(gateway, bootstrap_key, "GET", "/oncall").json()
    assert (body["source"], body["warnings"]) == ("api", [])
    now = _request(gateway, bootstrap_key, "GET", "/oncall/now",
                   params={"site": "site-02"}).json()
    assert [p["id"] for p in now["dispatchers"]] == ["bo"]


def test_a_viewer_is_told_it_may_not_see_the_roster_and_gets_no_editor(
        browser: Any, gateway: GatewayProcess, bootstrap_key: str) -> None:
    viewer = _key(gateway, bootstrap_key, "viewer")
    own = OWN["en"]
    with console_page(browser, gateway, width=1366, height=768, lang="en",
                      expected_errors=("403",)) as page:
        _open(page, viewer, "en")
        expect(page.locator(".oncall")).to_contain_text(own["forbidden"], timeout=DEADLINE_MS)
        expect(page.locator("#oncall-editor")).to_have_count(0)
        expect(page.locator(".oncall-site")).to_have_count(0)
        expect(page.get_by_text("Anna Zhou")).to_have_count(0)
