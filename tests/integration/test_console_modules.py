"""The console's own logic, run in headless Chromium (the only JavaScript engine the tests
rely on): the event-stream reader and the alert store's merging, which decide whether a
dispatcher sees every change exactly as the server has it. Also the static routes."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from alerts.console import router
from tests.servers import free_port

pytestmark = pytest.mark.integration

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


@pytest.fixture(scope="module")
def console_url() -> Iterator[str]:
    """Only the console's static routes, served by uvicorn in a thread."""
    app = FastAPI()
    app.include_router(router)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def page(console_url: str) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("system chromium is not installed (make test installs it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page()
            tab.goto(console_url + "/")
            yield tab
        finally:
            browser.close()


def test_static_routes_serve_the_console_with_a_strict_policy(console_url: str) -> None:
    page = httpx.get(console_url + "/", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    script = httpx.get(console_url + "/console/app.js", timeout=5)
    assert script.headers["content-type"].startswith("text/javascript")
    for path in ("/console/missing.js", "/console/..%2F__init__.py", "/console/__init__.py"):
        assert httpx.get(console_url + path, timeout=5).status_code == 404, path


def test_every_asset_the_page_references_is_local(console_url: str) -> None:
    html = httpx.get(console_url + "/", timeout=5).text
    assert "http://" not in html.replace("http://www.w3.org", "")
    assert "https://" not in html
    static = Path(__file__).resolve().parents[2] / "alerts" / "console" / "static"
    for asset in static.iterdir():
        text = asset.read_text(encoding="utf-8")
        assert "https://" not in text, f"{asset.name} loads something from the internet"


STREAM_READER = """async (chunks) => {
  const { readEventStream } = await import("/console/api.js");
  const encoder = new TextEncoder();
  const realFetch = window.fetch;
  let sent = null;
  window.fetch = async (url, init) => {
    sent = init.headers;
    return new Response(new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
        controller.close();
      },
    }), { status: 200, headers: { "Content-Type": "text/event-stream" } });
  };
  try {
    const events = [];
    let retry = null;
    let opened = false;
    await readEventStream("/api/v1/alerts/stream", {
      headers: { Authorization: "Bearer k", "Last-Event-ID": "6" },
      onOpen: () => { opened = true; },
      onEvent: (e) => events.push(e),
      onRetry: (ms) => { retry = ms; },
    });
    return { events, retry, opened, sent };
  } finally {
    window.fetch = realFetch;
  }
}"""


def test_stream_reader_parses_events_split_anywhere_with_any_line_ending(page: Any) -> None:
    chunks = ["retry: 2000\r", "\n\r\nid: 7\r\nevent: opened\r\ndata: {\"a\":", "1}\r\n",
              "\r\n: keep-alive\n\nid: 8\nevent: acknowledged\ndata: x\ndata: y\n",
              "\nid: 9\revent: resolved\rdata:z\r\r", "data: incomplete, never dispatched"]
    result = page.evaluate(STREAM_READER, chunks)
    assert result["opened"] is True
    assert result["retry"] == 2000
    assert result["sent"]["Last-Event-ID"] == "6"
    assert result["events"] == [
        {"id": "7", "event": "opened", "data": '{"a":1}'},
        {"id": "8", "event": "acknowledged", "data": "x\ny"},
        {"id": "9", "event": "resolved", "data": "z"},
    ]


STORE = """async (steps) => {
  const { AlertStore } = await import("/console/store.js");
  const store = new AlertStore();
  const seen = [];
  store.addEventListener("change", (e) => seen.push([e.detail.alert.id, e.detail.alert.status]));
  for (const [kind, arg] of steps) {
    if (kind === "change") store.applyChange(arg);
    else if (kind === "begin") store.beginSnapshot();
    else if (kind === "finish") store.finishSnapshot(arg);
  }
  return {
    open: store.open.map((a) => a.id),
    acknowledged: store.acknowledged.map((a) => a.id),
    critical: store.openCritical.length,
    lastSeq: store.lastSeq,
    status: Object.fromEntries([...store.alerts.values()].map((a) => [a.id, a.status])),
    seen,
  };
}"""


def _alert(id_: str, *, status: str = "open", severity: str = "critical", opened: int = 1000,
           updated: int | None = None, occurrences: int = 1) -> dict[str, Any]:
    return {"id": id_, "type": "fall", "severity": severity, "site": "s", "bed": f"b-{id_}",
            "status": status, "opened_at": opened, "updated_at": updated or opened,
            "occurrences": occurrences, "evidence": {}}


def test_store_keeps_the_newest_version_whatever_the_arrival_order(page: Any) -> None:
    opened = _alert("a", opened=1000)
    acked = _alert("a", status="acknowledged", updated=2000)
    resolved = _alert("a", status="resolved", updated=3000)
    result = page.evaluate(STORE, [
        ["change", {"seq": 3, "action": "resolved", "alert": resolved}],
        ["change", {"seq": 1, "action": "opened", "alert": opened}],  # a replay, older
        ["change", {"seq": 2, "action": "acknowledged", "alert": acked}],
    ])
    assert result["status"] == {"a": "resolved"}
    assert result["seen"] == [["a", "resolved"]]
    assert result["lastSeq"] == 3


def test_store_sorts_the_queue_by_severity_then_longest_waiting(page: Any) -> None:
    result = page.evaluate(STORE, [
        ["change", {"seq": 1, "action": "opened", "alert": _alert("low", severity="low",
                                                                  opened=100)}],
        ["change", {"seq": 2, "action": "opened", "alert": _alert("new", opened=3000)}],
        ["change", {"seq": 3, "action": "opened", "alert": _alert("old", opened=2000)}],
        ["change", {"seq": 4, "action": "opened", "alert": _alert("high", severity="high",
                                                                  opened=50)}],
        ["change", {"seq": 5, "action": "acknowledged",
                    "alert": _alert("new", status="acknowledged", opened=3000,
                                    updated=3500)}],
    ])
    assert result["open"] == ["old", "high", "low"]
    assert result["acknowledged"] == ["new"]
    assert result["critical"] == 1


def test_snapshot_merges_with_changes_that_arrived_while_it_was_taken(page: Any) -> None:
    result = page.evaluate(STORE, [
        ["change", {"seq": 1, "action": "opened", "alert": _alert("gone")}],
        ["change", {"seq": 2, "action": "opened", "alert": _alert("kept")}],
        ["begin", None],
        # While the snapshot was read: "kept" was acknowledged, "new" opened.
        ["change", {"seq": 3, "action": "acknowledged",
                    "alert": _alert("kept", status="acknowledged", updated=5000)}],
        ["change", {"seq": 4, "action": "opened", "alert": _alert("new", opened=6000)}],
        # The snapshot was read before those two; "gone" was resolved while we were away.
        ["finish", [_alert("kept")]],
    ])
    assert result["open"] == ["new"]
    assert result["acknowledged"] == ["kept"]
    assert "gone" not in result["status"]


LIVE_RESET = """async ([stale, fresh]) => {
  const { LiveConnection } = await import("/console/live.js");
  const { AlertStore } = await import("/console/store.js");
  const store = new AlertStore();
  store.applyChange({ seq: 40, action: "opened", alert: stale });
  const asked = [];
  const api = {
    key: "k",
    get: async (path, params) => {
      asked.push([path, params.status]);
      return { items: params.status === "open" ? [fresh] : [], next_cursor: null };
    },
  };
  const live = new LiveConnection({ api, store });
  const synced = new Promise((resolve) => live.addEventListener("synced", resolve, { once: true }));
  live.onEvent({ id: "2", event: "reset",
                 data: JSON.stringify({ reason: "ahead_of_store", head: 2, detail: "reload" }) });
  await synced;
  return { lastSeq: store.lastSeq, asked, open: store.open.map((a) => a.id) };
}"""


def test_a_stream_reset_reloads_the_alert_list_and_resumes_from_the_head(page: Any) -> None:
    # The console had seen change 40 of a store since restored to change 2.
    result = page.evaluate(LIVE_RESET, [_alert("stale"), _alert("fresh", opened=2000)])
    assert result["asked"] == [["/alerts", "open"], ["/alerts", "acknowledged"]]
    assert result["open"] == ["fresh"]
    assert result["lastSeq"] == 2, "the next reconnection sends Last-Event-ID 2, not 40"


def test_store_takes_a_repeat_after_an_acknowledgement_whatever_the_arrival_order(
        page: Any) -> None:
    acked = _alert("a", status="acknowledged", updated=2000)
    repeated = {**_alert("a", updated=3000), "repeats": 1}  # open again: a new call
    resolved = {**_alert("a", status="resolved", updated=4000), "repeats": 1}
    in_order = page.evaluate(STORE, [
        ["change", {"seq": 2, "action": "acknowledged", "alert": acked}],
        ["change", {"seq": 3, "action": "repeated", "alert": repeated}],
    ])
    assert (in_order["open"], in_order["critical"]) == (["a"], 1)
    late_ack = page.evaluate(STORE, [
        ["change", {"seq": 3, "action": "repeated", "alert": repeated}],
        ["change", {"seq": 2, "action": "acknowledged", "alert": acked}],  # a replay
    ])
    assert late_ack["status"] == {"a": "open"}
    final = page.evaluate(STORE, [
        ["change", {"seq": 4, "action": "resolved", "alert": resolved}],
        ["change", {"seq": 3, "action": "repeated", "alert": repeated}],
    ])
    assert final["status"] == {"a": "resolved"}


CONFIRMED = """async (steps) => {
  const { AlertStore } = await import("/console/store.js");
  const store = new AlertStore();
  const seen = [];
  store.addEventListener("change", (e) => seen.push(
    [e.detail.alert.id, e.detail.action, e.detail.unstored, e.detail.confirmed]));
  for (const change of steps) store.applyChange(change);
  return seen;
}"""


def test_a_stored_change_after_its_unstored_showing_confirms_it_and_rings_nothing_new(
        page: Any) -> None:
    """An emergency call is shown before it is stored, then again once stored: the second is
    the same change confirmed (the console rings on neither a second opening nor a second
    repeat); a later repeat of the same alert is a new call again."""
    opened = _alert("a")
    repeated = {**_alert("a", updated=2000), "repeats": 1}
    again = {**_alert("a", updated=3000), "repeats": 2}
    seen = page.evaluate(CONFIRMED, [
        {"seq": None, "unstored": True, "action": "opened", "alert": opened},
        {"seq": 1, "action": "opened", "alert": opened},
        {"seq": None, "unstored": True, "action": "repeated", "alert": repeated},
        {"seq": 2, "action": "repeated", "alert": repeated},
        {"seq": 3, "action": "repeated", "alert": again},  # stored only (a disk never slow)
    ])
    assert seen == [["a", "opened", True, False], ["a", "opened", False, True],
                    ["a", "repeated", True, False], ["a", "repeated", False, True],
                    ["a", "repeated", False, False]]


def test_a_bed_page_names_each_device_clock_and_marks_a_wrong_one(page: Any) -> None:
    devices = [{"clock_offset_s": -0.2, "clock_wrong": False},
               {"clock_offset_s": -5400.0, "clock_wrong": False},
               {"clock_offset_s": -1.794e9, "clock_wrong": True},
               {"clock_offset_s": 1.794e12, "clock_wrong": True},
               {"clock_offset_s": None, "clock_wrong": False}]
    texts = page.evaluate("""async (devices) => {
  const { clockText } = await import("/console/bed.js");
  return devices.map(clockText);
}""", devices)
    minus, dash = "\N{MINUS SIGN}", "\N{EN DASH}"
    assert texts == ["ok", f"{minus}2 h", f"wrong ({minus}57 y)", "wrong (+56848 y)", dash]


# --- languages ------------------------------------------------------------------------------

STATIC = Path(__file__).resolve().parents[2] / "alerts" / "console" / "static"

CATALOGUE_CHECK = r"""async () => {
  const { CATALOGUES } = await import("/console/i18n.js");
  const holes = (v) => [...new Set((typeof v === "object" ? Object.values(v) : [v])
    .flatMap((s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1])))].sort();
  const out = {};
  for (const [lang, cat] of Object.entries(CATALOGUES)) {
    out[lang] = Object.fromEntries(Object.entries(cat).map(([k, v]) => [k, holes(v)]));
  }
  return out;
}"""


def test_both_catalogues_have_the_same_texts_with_the_same_placeholders(page: Any) -> None:
    catalogues = page.evaluate(CATALOGUE_CHECK)
    assert set(catalogues) == {"en", "zh-CN"}
    en, zh = catalogues["en"], catalogues["zh-CN"]
    assert sorted(set(en) ^ set(zh)) == []
    assert {k: (en[k], zh[k]) for k in en if en[k] != zh[k]} == {}
    assert len(en) > 150


CODE_WORDS = {"Bearer", "Authorization", "Accept", "Content", "Type", "Last", "Event",
              "Error", "Home", "End", "Escape"}
"""Capitalised words that are HTTP or keyboard key names (``KeyboardEvent.key``), not text for
a person."""
NOT_SHOWN = {"stream idle"}
"""English that never reaches the screen (an abort reason the connection loop swallows)."""


def _literals(code: str) -> list[str]:
    """String and template literals of ``code`` (``${...}`` parts blanked), comments skipped."""
    out: list[str] = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            end = code.find("\n", i)
            i = n if end < 0 else end
        elif code.startswith("/*", i):
            i = code.index("*/", i) + 2
        elif c in "\"'`":
            j, text = i + 1, []
            while j < n and code[j] != c:
                if code[j] == "\\":
                    text.append(code[j:j + 2])
                    j += 2
                elif c == "`" and code.startswith("${", j):
                    depth, j = 1, j + 2
                    while depth:
                        depth += {"{": 1, "}": -1}.get(code[j], 0)
                        j += 1
                    text.append(" ")
                else:
                    text.append(code[j])
                    j += 1
            out.append("".join(text))
            i = j + 1
        else:
            i += 1
    return out


def _english(literal: str) -> bool:
    if literal in NOT_SHOWN:
        return False
    capitalised = set(re.findall(r"\b[A-Z][a-z]+\b", literal)) - CODE_WORDS
    phrase = r"\b[a-z]{2,}(?:[,;:!?]? )+[a-z]{2,}\b"
    lower_phrase = "-" not in literal and re.search(phrase, literal)
    return bool(capitalised or lower_phrase)


def test_no_text_for_a_person_is_written_outside_the_catalogue() -> None:
    """A heuristic: the modules' literals hold no English words or phrases (only keys, class
    names, HTTP), no Chinese; index.html's elements are empty, filled from data-i18n."""
    found: dict[str, list[str]] = {}
    for path in sorted(STATIC.glob("*.js")):
        if path.name == "i18n.js":
            continue
        literals = _literals(path.read_text(encoding="utf-8"))
        bad = [s for s in literals if _english(s) or re.search(r"[\u3000-\u9fff\uff00-\uffef]", s)]
        if bad:
            found[path.name] = bad
    assert found == {}

    class Texts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.texts: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.texts += [f"{tag}[{name}]={value}" for name, value in attrs
                           if name in {"aria-label", "title", "alt", "placeholder"} and value]

        def handle_data(self, data: str) -> None:
            if data.strip():
                self.texts.append(data.strip())

    parser = Texts()
    parser.feed((STATIC / "index.html").read_text(encoding="utf-8"))
    assert parser.texts == []


FORMATS = """async ([ms, now]) => {
  const i18n = await import("/console/i18n.js");
  try {
    const out = { choose: [
      i18n.chooseLanguage(null, ["zh-TW", "en"]), i18n.chooseLanguage(null, ["fr", "en-GB"]),
      i18n.chooseLanguage(null, ["de"]), i18n.chooseLanguage("en", ["zh-CN"]),
      i18n.chooseLanguage("xx", ["zh"])] };
    i18n.setTimeZone("Asia/Shanghai");
    for (const lang of ["en", "zh-CN"]) {
      i18n.setLanguage(lang, { save: false });
      out[lang] = [i18n.fmtTime(ms, now), i18n.fmtTime(ms, now + 86_400_000), i18n.fmtClock(ms),
                   i18n.fmtAgo(ms, ms + 2 * 60_000), i18n.fmtAgo(ms, ms + 3 * 3_600_000),
                   i18n.t("beds.open_alerts", { n: 1 }), i18n.t("beds.open_alerts", { n: 3 }),
                   i18n.label("type", "fall"), i18n.label("severity", "critical"),
                   i18n.label("type", "new_kind_of_alert")];
    }
    return out;
  } finally {
    i18n.setLanguage("en", { save: false });
    i18n.setTimeZone(null);
  }
}"""


def test_times_are_the_stations_in_the_languages_format(page: Any) -> None:
    # 2026-12-03 06:02:11 UTC is 14:02:11 in Shanghai, whatever the browser's zone.
    ms = 1_796_277_731_000
    result = page.evaluate(FORMATS, [ms, ms + 60_000])
    assert result["choose"] == ["zh-CN", "en", "en", "en", "zh-CN"]
    assert result["en"] == ["14:02:11", "Dec 3 14:02:11", "14:02", "2 min ago", "3 h 0 min ago",
                            "1 open alert", "3 open alerts", "Fall", "critical",
                            "New kind of alert"]
    assert result["zh-CN"] == ["14:02:11", "12月3日 14:02:11", "14:02", "2 分钟前",
                               "3 小时 0 分钟前", "1 条未处理告警", "3 条未处理告警", "跌倒",
                               "紧急", "New kind of alert"]


# --- beds page order --------------------------------------------------------------------------

BED_ORDER = """async ([beds, alerts]) => {
  const { orderBeds } = await import("/console/bed.js");
  return orderBeds(beds, alerts).map(({ bed, attention }) =>
    [bed.bed, attention.worst, attention.worstCount, attention.open]);
}"""


def test_beds_with_open_critical_alerts_come_first_then_by_severity_then_by_bed(
        page: Any) -> None:
    beds = [{"site": "s", "bed": f"b-{n}"} for n in (1, 2, 3, 4, 5, 6, 9, 10)]

    def alert(id_: str, bed: str | None, severity: str, status: str = "open") -> dict[str, Any]:
        return {**_alert(id_, severity=severity, status=status), "bed": bed}

    alerts = [
        alert("a1", "b-5", "critical", "acknowledged"),  # being handled: still critical
        alert("a2", "b-3", "critical"), alert("a3", "b-3", "low"), alert("a4", "b-3", "critical"),
        alert("a5", "b-2", "high"), alert("a6", "b-6", "medium"), alert("a7", "b-1", "low"),
        alert("a8", "b-4", "critical", "resolved"),  # over: no longer counts
        alert("a9", None, "critical"),  # a site-level alert has no bed
    ]
    assert page.evaluate(BED_ORDER, [beds, alerts]) == [
        ["b-3", "critical", 2, 3], ["b-5", "critical", 1, 1], ["b-2", "high", 1, 1],
        ["b-6", "medium", 1, 1], ["b-1", "low", 1, 1],
        # No open alert: by bed id, in natural order (b-9 before b-10).
        ["b-4", None, 0, 0], ["b-9", None, 0, 0], ["b-10", None, 0, 0]]


def test_a_bed_listed_in_an_unresolved_summary_counts_it_as_the_store_has_it(
        page: Any) -> None:
    """A device offline inside an alert storm's summary (a site-level alert, no bed) makes its
    bed one with an open alert, at the summary's severity, until the summary is resolved."""
    beds = [{"site": "s", "bed": "b-1", "summaries": [{"id": "storm"}]},
            {"site": "s", "bed": "b-2", "summaries": [{"id": "storm"}, {"id": "over"}]},
            {"site": "s", "bed": "b-3", "summaries": [{"id": "unknown"}]}]
    storm = {**_alert("storm", severity="medium"), "bed": ""}
    over = {**_alert("over", severity="high", status="resolved"), "bed": ""}
    own = {**_alert("own", severity="low"), "bed": "b-1"}
    assert page.evaluate(BED_ORDER, [beds, [storm, over, own]]) == [
        ["b-1", "medium", 1, 2], ["b-2", "medium", 1, 1], ["b-3", None, 0, 0]]
    resolved = {**storm, "status": "resolved"}
    assert page.evaluate(BED_ORDER, [beds, [resolved, over, own]]) == [
        ["b-1", "low", 1, 1], ["b-2", None, 0, 0], ["b-3", None, 0, 0]]


BED_VIEWS = """async ([lang, beds, alerts, synced]) => {
  const i18n = await import("/console/i18n.js");
  const { bedsView, bedView } = await import("/console/bed.js");
  i18n.setLanguage(lang, { save: false });
  const until = async (ready) => {
    const deadline = Date.now() + 5000;
    while (!ready()) {
      if (Date.now() > deadline) throw new Error("not drawn");
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const bed = beds[0];
  const api = { get: async (path) => (path === "/beds" ? { items: beds }
    : path === `/beds/${bed.site}/${bed.bed}`
      ? { ...bed, devices: [], latest: {}, recent: {}, alerts: [] } : { items: [] }) };
  const ctx = { synced, api, me: null, canHandle: false,
                store: { alerts: new Map(alerts.map((a) => [a.id, a])) } };
  const list = bedsView(ctx);
  const one = bedView(ctx, bed.site, bed.bed);
  document.body.append(list.root, one.root);
  try {
    await until(() => list.root.querySelectorAll(".bed-card").length === beds.length
      && one.root.querySelector("#b-devices"));
    const section = one.root.querySelector("#bed-summaries");
    const button = one.root.querySelector(".page-head a.btn");
    return { cards: [...list.root.querySelectorAll(".bed-card")].map((c) => c.innerText),
             summaries: section ? section.textContent : null,
             links: section
               ? [...section.querySelectorAll("a")].map((a) => a.getAttribute("href")) : [],
             button: button ? [button.innerText, button.getAttribute("href")] : null };
  } finally {
    list.dispose(); one.dispose(); list.root.remove(); one.root.remove();
    i18n.setLanguage("en", { save: false });
  }
}"""

SUMMARY_TEXT = "Alert storm on site s: device offline on 2 devices"


@pytest.mark.parametrize(("lang", "expected"), [
    ("en", {"open": "1 open alert", "listed": "listed in 1 alert summary", "sev": "medium",
            "heading": "Alert summaries listing this bed", "type": "Device offline",
            "status": "open"}),
    ("zh-CN", {"open": "1 条未处理告警", "listed": "列入 1 条汇总告警", "sev": "一般",
               "heading": "包含本床位的汇总告警", "type": "设备离线", "status": "未确认"}),
])
def test_a_beds_card_and_page_name_the_summaries_that_list_it(
        page: Any, lang: str, expected: dict[str, str]) -> None:
    labels = page.evaluate("""async (lang) => {
      const i18n = await import("/console/i18n.js");
      i18n.setLanguage(lang, { save: false });
      const out = [i18n.label("severity", "medium"), i18n.label("type", "device_offline"),
                   i18n.label("status", "open")];
      i18n.setLanguage("en", { save: false });
      return out;
    }""", lang)
    assert labels == [expected["sev"], expected["type"], expected["status"]]
    ref = {"id": "01STORM", "type": "device_offline", "severity": "medium", "status": "open",
           "site": "s", "opened_at": 1000, "summary": SUMMARY_TEXT}
    beds = [{"site": "s", "bed": "b-1", "open_alerts": 1, "summaries": [ref], "devices": []},
            {"site": "s", "bed": "b-2", "open_alerts": 0, "summaries": [], "devices": []}]
    storm = {**_alert("01STORM", severity="medium"), "type": "device_offline", "bed": "",
             "evidence": {"summary": True}}
    for synced, alerts in ((False, []), (True, [storm])):
        drawn = page.evaluate(BED_VIEWS, [lang, beds, alerts, synced])
        listed, calm = drawn["cards"]
        assert expected["open"] in listed, (synced, listed)
        assert expected["listed"] in listed, (synced, listed)
        assert expected["listed"] not in calm
        assert drawn["button"] == [expected["open"], "#/alerts/01STORM"]
        assert expected["heading"] in drawn["summaries"]
        assert all(expected[k] in drawn["summaries"] for k in ("sev", "type", "status"))
        assert SUMMARY_TEXT in drawn["summaries"]
        assert drawn["links"] == ["#/alerts/01STORM"]
    # Resolved meanwhile (the live store says so): the card no longer counts it.
    drawn = page.evaluate(BED_VIEWS, [lang, beds, [{**storm, "status": "resolved"}], True])
    assert expected["listed"] not in drawn["cards"][0]


# --- charts: labels inside the picture, values on hover and from the keyboard ----------------

CHART = r"""async ([lang, width, spec, keys]) => {
  const i18n = await import("/console/i18n.js");
  const { chartPanel } = await import("/console/chart.js");
  i18n.setLanguage(lang, { save: false });
  i18n.setTimeZone("Asia/Shanghai");
  const holder = document.createElement("div");
  holder.style.width = `${width}px`;
  document.body.append(holder);
  try {
    const format = spec.kind === "step" ? (v) => i18n.t(v ? "value.yes" : "value.no") : undefined;
    holder.append(chartPanel({ ...spec, title: i18n.t(spec.title), format,
                               unit: spec.unit ? i18n.t(spec.unit) : "" }));
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    for (let i = 0; i < 100 && !holder.querySelector("svg"); i += 1) await frame();
    const chart = holder.querySelector("svg");
    const inside = (el) => {
      const box = chart.getBoundingClientRect();
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.left >= box.left - 0.5 && r.right <= box.right + 0.5
        && r.top >= box.top - 0.5 && r.bottom <= box.bottom + 0.5;
    };
    const labels = [...chart.querySelectorAll("text.tick, text.nodata")];
    const out = { labels: labels.map((el) => el.textContent),
                  outside: labels.filter((el) => !inside(el)).map((el) => el.textContent),
                  tips: [] };
    const area = holder.querySelector(".chart-area");
    area.focus();
    for (const key of keys) {
      area.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true }));
      await frame();
      const tip = [...chart.querySelectorAll(".tip-text")];
      out.tips.push({ key, texts: tip.map((el) => el.textContent),
                      inside: tip.every(inside) && inside(chart.querySelector(".tip-box")),
                      said: holder.querySelector("[aria-live]").textContent,
                      shown: chart.querySelector(".cursor").getAttribute("visibility") });
    }
    return out;
  } finally {
    holder.remove();
    i18n.setLanguage("en", { save: false });
    i18n.setTimeZone(null);
  }
}"""

HOUR_MS = 3_600_000
SHANGHAI_MIDNIGHT = 1_796_227_200_000
"""2026-12-03 00:00 in Shanghai (16:00 UTC the day before): a tick on every hour scale."""

CHART_TEXT = {"en": {"unit": "/min", "yes": "yes", "no": "no"},
              "zh-CN": {"unit": "次/分", "yes": "是", "no": "否"}}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
@pytest.mark.parametrize("width", [260, 420, 900])
def test_chart_axis_labels_lie_inside_the_picture(page: Any, lang: str, width: int) -> None:
    # The line's window ends 80 s after a whole hour (a tick at the right edge) and its values
    # need six-digit labels; the step chart's window starts on a whole hour (a tick at the
    # left edge).
    t1 = SHANGHAI_MIDNIGHT + 80_000
    t0 = t1 - 24 * HOUR_MS
    wide = {"t0": t0, "t1": t1, "kind": "line", "title": "chart.level_db", "unit": "chart.db",
            "points": [[t0 + i * 600_000, 100_000 + 1_500 * i] for i in range(144)]}
    step = {"t0": SHANGHAI_MIDNIGHT - 12 * HOUR_MS, "t1": SHANGHAI_MIDNIGHT + 12 * HOUR_MS,
            "kind": "step", "min": 0, "max": 1, "title": "chart.in_bed",
            "points": [[SHANGHAI_MIDNIGHT - 12 * HOUR_MS + i * 60_000, i % 2] for i in range(60)]}
    empty = {"t0": t0, "t1": t1, "kind": "bars", "title": "chart.motion", "unit": "chart.moves",
             "points": []}
    for spec in (wide, step, empty):
        result = page.evaluate(CHART, [lang, width, spec, []])
        assert len(result["labels"]) >= 3, result
        assert result["outside"] == [], (spec["kind"], result)
    step_labels = page.evaluate(CHART, [lang, width, step, []])["labels"]
    assert {CHART_TEXT[lang]["yes"], CHART_TEXT[lang]["no"]} <= set(step_labels)


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_chart_values_can_be_read_from_the_keyboard_in_the_stations_time(
        page: Any, lang: str) -> None:
    t1 = SHANGHAI_MIDNIGHT + 80_000
    first, last = SHANGHAI_MIDNIGHT - 3 * HOUR_MS, SHANGHAI_MIDNIGHT - 60_000
    points = [[first, 61.0], [first + 60_000, 62.25], [last, 66.14]]
    spec = {"t0": t1 - 24 * HOUR_MS, "t1": t1, "kind": "line", "title": "chart.heart_rate",
            "unit": "chart.per_min", "points": points}
    result = page.evaluate(CHART, [lang, 420, spec, ["End", "ArrowLeft", "Home", "Escape"]])
    unit = CHART_TEXT[lang]["unit"]
    end, left, home, escape = result["tips"]
    # 15:59:00 UTC is 23:59:00 in Shanghai; 21:00:00 for the first point.
    assert end["texts"][0].endswith("23:59:00"), end
    assert end["texts"][1] == f"66.1 {unit}"
    assert left["texts"][0].endswith("21:01:00"), left
    assert left["texts"][1] == f"62.3 {unit}", left
    assert home["texts"][0].endswith("21:00:00"), home
    assert home["texts"][1] == f"61 {unit}", home
    for tip in (end, left, home):
        assert tip["shown"] == "visible", tip
        assert tip["inside"], tip
        assert tip["texts"][0] in tip["said"], tip
        assert tip["texts"][1] in tip["said"], tip
    assert escape["shown"] == "hidden"
