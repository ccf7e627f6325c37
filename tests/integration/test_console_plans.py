"""The bed page's planned visits (alerts/console/static/plans.js), run in headless Chromium in
both languages: each plan's window, caregiver and items, the items that must be recorded
marked, a called-off plan shown as such, and an unavailable plan store said plainly."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_console_modules import console_url, page

pytestmark = pytest.mark.integration

__all__ = ["console_url", "page"]  # the fixtures, shared with the console's other tests

NOW = 1_794_024_000_000  # 2026-11-07 12:00 Asia/Shanghai
PLANS = [
    {"site": "site-01", "bed": "bed-0001", "plan": "p-7", "caregiver": "c001",
     "date": "2026-11-07", "start": "08:30", "end": "10:35", "start_ms": NOW - 12_600_000,
     "end_ms": NOW - 5_100_000, "services": ["bathing", "cleaning"], "cancelled": False,
     "updated_at": 0, "updated_by": "admin"},
    {"site": "site-01", "bed": "bed-0001", "plan": "p-8", "caregiver": "c002",
     "date": "2026-11-08", "start": "08:30", "end": "10:35", "start_ms": NOW + 73_800_000,
     "end_ms": NOW + 81_300_000, "services": ["medication"], "cancelled": True,
     "updated_at": 0, "updated_by": "admin"},
]
CATALOGUE = [{"code": "bathing", "minutes": 30, "recording": True},
             {"code": "cleaning", "minutes": 25, "recording": False},
             {"code": "medication", "minutes": 5, "recording": True}]

RENDER = """async ([lang, plans, catalogue, now, fail]) => {
  const i18n = await import("/console/i18n.js");
  const { plansPanel } = await import("/console/plans.js");
  i18n.setLanguage(lang, { save: false });
  i18n.setTimeZone("Asia/Shanghai");
  const asked = [];
  const api = { get: async (path, query) => {
    asked.push([path, query || null]);
    if (fail) { const e = new Error("x"); e.status = fail; throw e; }
    return path === "/plans/catalogue" ? { items: catalogue } : { items: plans };
  } };
  try {
    const panel = plansPanel({ api }, "site-01", "bed-0001", now);
    document.body.append(panel);
    for (let i = 0; i < 20 && panel.textContent.includes(i18n.t("loading")); i += 1) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const items = [...panel.querySelectorAll("li")].map((li) => li.textContent);
    const text = panel.textContent;
    panel.remove();
    return { items, text, asked };
  } finally {
    i18n.setLanguage("en", { save: false });
    i18n.setTimeZone(null);
  }
}"""


def render(page: Any, lang: str, plans: list[dict[str, Any]], fail: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(RENDER, [lang, plans, CATALOGUE, NOW, fail])
    return result


def test_the_bed_page_lists_its_plans_with_the_items_to_record(page: Any) -> None:
    shown = render(page, "en", PLANS)
    first, second = shown["items"]
    assert "08:30" in first
    assert "10:35" in first
    assert "caregiver c001" in first
    assert "items: bathing (recorded), cleaning" in first
    assert "called off" in second
    assert "medication (recorded)" in second
    assert "must be covered by an audio or infrared recording" in shown["text"]
    [plans, catalogue] = shown["asked"]
    assert plans[0] == "/plans"
    assert (plans[1]["site"], plans[1]["bed"]) == ("site-01", "bed-0001")
    assert plans[1]["since"] == NOW - 2 * 86_400_000
    assert plans[1]["until"] == NOW + 7 * 86_400_000
    assert catalogue[0] == "/plans/catalogue"


def test_the_plans_speak_chinese_too(page: Any) -> None:
    shown = render(page, "zh-CN", PLANS)
    assert "服务项目\uff1abathing\uff08须录音录像\uff09, cleaning" in shown["items"][0]
    assert "已取消" in shown["items"][1]
    assert "护理员 c002" in shown["items"][1]


@pytest.mark.parametrize(("lang", "fail", "said"), [
    ("en", 0, "No visits planned"), ("zh-CN", 0, "没有计划"),
    ("en", 503, "Service plans unavailable."), ("zh-CN", 503, "服务计划暂不可用"),
    ("en", 500, "Could not load the plans")])
def test_no_plans_or_no_plan_store_is_said_plainly(page: Any, lang: str, fail: int,
                                                    said: str) -> None:
    assert said in render(page, lang, [], fail)["text"]
