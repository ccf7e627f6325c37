// The response report: how fast alerts were answered and how they ended, by day, shift, site
// and dispatcher (GET /api/v1/reports/response), with charts by day and its tables as CSV.
// The days listed are the station's; each alert's own day and shift are in its site's zone and
// the roster's shifts; the figures are the gateway's, computed as alerts/reports.py says (the
// first answer by a person, critical at any time).

import { API } from "./api.js";
import { chartPanel } from "./chart.js";
import { h } from "./dom.js";
import { outcomeLabel } from "./handling.js";
import { fmtDay, label, t, zoneHourMinute } from "./i18n.js";
import { typeLabel } from "./store.js";

const DAY_MS = 86_400_000;
const PERIODS = [7, 30, 90];
const CSV_TABLES = ["alerts", "days", "shifts", "sites", "dispatchers", "outcomes"];

/** "97.5 %" (a share of 1), "–" when there is nothing to share. */
export function percent(share) {
  return share === null || share === undefined ? "–" : t("report.percent", { n: +(share * 100).toFixed(1) });
}

/** "45 s", "2.5 min", "1.2 h": a response time. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 120) return t("report.seconds", { n: Math.round(seconds) });
  if (seconds < 7200) return t("report.minutes", { n: +(seconds / 60).toFixed(1) });
  return t("report.hours", { n: +(seconds / 3600).toFixed(1) });
}

/** The station's last midnight at or before `ms` (the zone's hour and minute then). */
function midnight(ms) {
  const [hour, minute] = zoneHourMinute(ms);
  return ms - (hour * 60 + minute) * 60_000 - (ms % 60_000);
}

function tiles(body) {
  const totals = body.totals;
  const falseAlarms = body.outcomes.reduce((n, o) => n + o.false_alarms, 0);
  const byPerson = body.outcomes.reduce((n, o) => n + o.resolved_by_person, 0);
  const tile = (id, title, value, note) => h("div", { class: "tile", id },
    h("dt", {}, title), h("dd", {}, h("strong", {}, value), note ? h("span", { class: "muted" }, note) : null));
  return h("dl", { class: "tiles" },
    tile("tile-within", t("report.tile_within", { s: body.ack_target_s }),
      percent(totals.critical_within_target_share),
      t("report.tile_within_note", { within: totals.critical_within_target, n: totals.critical_decided })),
    tile("tile-ack", t("report.tile_ack"), duration(totals.ack_median_s),
      t("report.tile_p90", { value: duration(totals.ack_p90_s) })),
    tile("tile-resolve", t("report.tile_resolve"), duration(totals.resolve_median_s),
      t("report.tile_p90", { value: duration(totals.resolve_p90_s) })),
    tile("tile-alerts", t("report.tile_alerts"), String(totals.alerts),
      t("report.tile_answered", { n: totals.answered })),
    tile("tile-false", t("report.tile_false"), String(falseAlarms),
      byPerson ? t("report.tile_false_note", { share: percent(falseAlarms / byPerson) }) : null));
}

function charts(body) {
  const days = body.by_day.filter((d) => typeof d.start === "number");
  const span = { t0: body.since, t1: body.until, axis: "days", gapMs: 1.5 * DAY_MS };
  // A line's point at the day's noon; a bar covers its day from midnight.
  const point = (d, value) => [d.start + DAY_MS / 2, value];
  const bar = (d, value) => [d.start, value];
  return h("div", { class: "grid-charts", id: "report-charts" },
    chartPanel({ ...span, title: t("report.chart_within", { s: body.ack_target_s }), kind: "line",
      min: 0, max: 100, format: (v) => percent(v / 100), noData: t("report.no_critical"),
      points: days.filter((d) => d.critical_within_target_share !== null)
        .map((d) => point(d, d.critical_within_target_share * 100)) }),
    chartPanel({ ...span, title: t("report.chart_ack"), kind: "bars", barMs: DAY_MS, min: 0,
      format: duration, noData: t("report.no_answers"),
      points: days.filter((d) => d.ack_median_s !== null).map((d) => bar(d, d.ack_median_s)) }),
    chartPanel({ ...span, title: t("report.chart_alerts"), kind: "bars", barMs: DAY_MS, min: 0,
      format: (v) => String(Math.round(v)), noData: t("report.no_alerts"),
      points: days.filter((d) => d.alerts > 0).map((d) => bar(d, d.alerts)) }));
}

const COLUMNS = ["alerts", "answered", "within", "ack_median", "ack_p90", "resolve_median"];

function groupTable(id, caption, groups, name, nameColumn) {
  return h("section", { class: "panel", "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, caption),
    h("div", { class: "table-wrap" }, h("table", { id },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, nameColumn),
        COLUMNS.map((c) => h("th", { scope: "col" }, t(`report.col_${c}`))))),
      h("tbody", {}, groups.map((g) => h("tr", {},
        h("th", { scope: "row" }, name(g)),
        h("td", {}, String(g.alerts)), h("td", {}, String(g.answered)),
        h("td", {}, g.critical_decided ? t("report.within_cell", {
          share: percent(g.critical_within_target_share), within: g.critical_within_target,
          n: g.critical_decided }) : "–"),
        h("td", {}, duration(g.ack_median_s)), h("td", {}, duration(g.ack_p90_s)),
        h("td", {}, duration(g.resolve_median_s))))))));
}

function outcomesTable(body) {
  return h("section", { class: "panel", "aria-labelledby": "report-outcomes-title" },
    h("h2", { id: "report-outcomes-title" }, t("report.outcomes")),
    body.outcomes.length ? h("div", { class: "table-wrap" }, h("table", { id: "report-outcomes" },
      h("thead", {}, h("tr", {}, ["type", "resolved", "false", "codes", "system"]
        .map((c) => h("th", { scope: "col" }, t(`report.col_out_${c}`))))),
      h("tbody", {}, body.outcomes.map((o) => h("tr", {},
        h("th", { scope: "row" }, typeLabel(o.type)), h("td", {}, String(o.resolved_by_person)),
        h("td", {}, o.resolved_by_person ? t("report.false_cell", { n: o.false_alarms,
          share: percent(o.false_alarm_share) }) : "–"),
        h("td", {}, Object.entries(o.outcomes).map(([code, n]) =>
          t("report.code_count", { code: outcomeLabel(code), n })).join(t("report.list_sep"))),
        h("td", {}, String(o.resolved_by_system)))))))
      : h("p", { class: "muted" }, t("report.no_outcomes")));
}

async function download(ctx, query, table) {
  const url = new URL(`${API}/reports/response`, location.origin);
  for (const [name, value] of Object.entries({ ...query, format: "csv", table })) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const res = await fetch(url, { headers: ctx.api.headers({ Accept: "text/csv" }), cache: "no-store" });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const link = h("a", { href: URL.createObjectURL(await res.blob()), download: `response-${table}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

export function reportView(ctx) {
  const state = { days: PERIODS[0], site: "" };
  const sites = new Set();
  const period = h("select", { id: "report-period" },
    PERIODS.map((n) => h("option", { value: String(n) }, t("report.last_days", { n }))));
  const siteSelect = h("select", { id: "report-site" });
  const csvSelect = h("select", { id: "report-csv-table" },
    CSV_TABLES.map((name) => h("option", { value: name }, t(`report.csv_${name}`))));
  const csvButton = h("button", { type: "button", class: "btn", id: "report-csv" }, t("report.csv"));
  const status = h("p", { class: "muted", role: "status" }, t("loading"));
  const content = h("div", { class: "report-content" });
  const root = h("div", { class: "report" },
    h("div", { class: "page-head" }, h("h1", {}, t("report.title")),
      h("div", { class: "report-controls" },
        h("label", {}, t("report.period"), " ", period),
        h("label", {}, t("report.site"), " ", siteSelect),
        h("label", {}, t("report.csv_table"), " ", csvSelect), csvButton)),
    h("p", { class: "muted" }, t("report.explain")), status, content);
  let stopped = false;
  let query = null;

  const fillSites = () => {
    const options = [h("option", { value: "" }, t("report.all_sites")),
      ...[...sites].sort().map((site) => h("option", { value: site }, site))];
    siteSelect.replaceChildren(...options);
    siteSelect.value = state.site;
  };

  const load = async () => {
    const until = Date.now();
    query = { since: midnight(until) - (state.days - 1) * DAY_MS, until, site: state.site || undefined };
    let body;
    try {
      body = await ctx.api.get("/reports/response", { ...query, limit: 0 });
    } catch (err) {
      if (stopped) return;
      status.className = "form-error";
      status.textContent = t("report.load_failed", { error: err.message });
      return;
    }
    if (stopped) return;
    for (const group of body.by_site) sites.add(group.key);
    fillSites();
    status.className = "muted";
    status.textContent = t("report.period_text", { from: fmtDay(body.since), to: fmtDay(body.until - 1),
      zone: body.timezone || t("report.browser_zone") });
    const shiftName = (g) => {
      const shift = body.shifts.find((s) => s.name === g.key);
      return t("report.shift_name", { name: label("shift", g.key), start: shift ? shift.start : "" });
    };
    content.replaceChildren(tiles(body), charts(body),
      h("div", { class: "grid-2" },
        groupTable("report-shifts", t("report.by_shift"), body.by_shift, shiftName,
          t("report.col_shift")),
        groupTable("report-dispatchers", t("report.by_dispatcher"), body.by_dispatcher,
          (g) => g.key ?? t("report.nobody"), t("report.col_dispatcher"))),
      h("div", { class: "grid-2" },
        groupTable("report-sites", t("report.by_site"), body.by_site, (g) => g.key,
          t("report.col_site")),
        outcomesTable(body)),
      groupTable("report-days", t("report.by_day"), body.by_day,
        (g) => fmtDay(g.start ?? body.since), t("report.col_day")));
  };

  period.addEventListener("change", () => { state.days = Number(period.value); load(); });
  siteSelect.addEventListener("change", () => { state.site = siteSelect.value; load(); });
  csvButton.addEventListener("click", async () => {
    csvButton.disabled = true;
    try {
      await download(ctx, query || {}, csvSelect.value);
    } catch (err) {
      ctx.handleError?.(err, "report");
    } finally {
      csvButton.disabled = false;
    }
  });
  fillSites();
  load();
  const timer = setInterval(load, 60_000);
  return { root, title: t("report.title"), update: () => {}, dispose: () => { stopped = true; clearInterval(timer); } };
}
