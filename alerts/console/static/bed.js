// Beds: the list, and one bed's page (devices, 24 h of key metrics, alerts, service visits).

import { itemsOf } from "./api.js";
import { chartPanel } from "./chart.js";
import { fmtAgo, fmtTime, h } from "./dom.js";
import { label, t } from "./i18n.js";
import { queueOrder, typeLabel } from "./store.js";

const DAY_MS = 24 * 3_600_000;

const CHARTS = [
  { metric: "heart_rate", unit: "chart.per_min" },
  { metric: "breathing_rate", unit: "chart.per_min" },
  { metric: "in_bed", kind: "step", min: 0, max: 1, format: (v) => t(v ? "value.yes" : "value.no") },
  { metric: "motion", unit: "chart.moves", kind: "bars" },
  { metric: "level_db", unit: "chart.db" },
];

const bedHref = (site, bed) => `#/beds/${encodeURIComponent(site)}/${encodeURIComponent(bed)}`;

function stateCell(device) {
  const state = device.state || "unknown";
  return h("span", { class: `state-${state}` }, label("state", state));
}

function batteryCell(device) {
  if (typeof device.battery !== "number") return "–";
  return h("span", { class: device.battery <= 20 ? "battery-low" : "" }, t("bed.battery", { n: Math.round(device.battery) }));
}

/** How far a device's clock is from the gateway's ("wrong" when its points are stored at
 * receipt time, the device time kept beside them). */
export function clockText(device) {
  const offset = device.clock_offset_s;
  if (typeof offset !== "number") return "–";
  const size = Math.abs(offset);
  const units = [[365.25 * 86_400, "unit.y"], [86_400, "unit.d"], [3_600, "unit.h"], [60, "unit.min"], [1, "unit.s"]];
  const [scale, unit] = units.find(([s]) => size >= s) || [1, "unit.s"];
  const amount = t("clock.amount", { sign: offset < 0 ? "−" : "+", n: Math.round(size / scale), unit: t(unit) });
  if (device.clock_wrong) return t("clock.wrong", { amount });
  return size >= 60 ? amount : t("clock.ok");
}

function clockCell(device) {
  return h("span", { class: device.clock_wrong ? "clock-wrong" : "" }, clockText(device));
}

function deviceSummary(bed) {
  const devices = bed.devices || [];
  const offline = devices.filter((d) => d.state === "offline").length;
  return offline ? h("span", { class: "state-offline" }, t("beds.devices_offline", { offline, total: devices.length }))
    : h("span", { class: "state-online" }, t("beds.devices_online", { n: devices.length }));
}

export function bedsView(ctx) {
  const root = h("div", {}, h("h1", {}, t("beds.title")), h("p", { class: "muted" }, t("loading")));
  let stopped = false;
  const load = async () => {
    const beds = [];
    try {
      let cursor = null;
      for (let page = 0; page < 50; page += 1) {
        const body = await ctx.api.get("/beds", { limit: 500, cursor });
        beds.push(...itemsOf(body, "beds"));
        cursor = body && body.next_cursor;
        if (!cursor) break;
      }
    } catch (err) {
      root.replaceChildren(h("h1", {}, t("beds.title")), h("p", { class: "form-error" }, t("beds.load_failed", { error: err.message })));
      return;
    }
    if (stopped) return;
    beds.sort((a, b) => (b.open_alerts || 0) - (a.open_alerts || 0) || `${a.site}/${a.bed}`.localeCompare(`${b.site}/${b.bed}`));
    root.replaceChildren(
      h("h1", {}, t("beds.title_count", { n: beds.length })),
      beds.length ? h("ul", { class: "bed-list" }, beds.map((bed) => h("li", {},
        h("a", { class: "bed-card", href: bedHref(bed.site, bed.bed) },
          h("div", { class: "bed-name" }, `${bed.bed}`, h("span", { class: "muted" }, ` · ${bed.site}`)),
          h("div", {}, deviceSummary(bed)),
          h("div", { class: "muted" }, bed.open_alerts ? t("beds.open_alerts", { n: bed.open_alerts }) : t("beds.no_open_alerts"),
            bed.last_seen ? t("beds.seen", { ago: fmtAgo(bed.last_seen) }) : "",
            bed.away_since ? t("beds.away", { time: fmtTime(bed.away_since) }) : ""),
        ))))
        : h("p", { class: "muted" }, t("beds.none")),
    );
  };
  load();
  const timer = setInterval(load, 30_000);
  return { root, title: t("beds.title"), update: () => {}, dispose: () => { stopped = true; clearInterval(timer); } };
}

function points(series) {
  const raw = itemsOf(series, "points");
  return raw
    .map((p) => (Array.isArray(p) ? [p[0], p[1]] : [p.t ?? p.time, p.value ?? p.v]))
    .filter(([t, v]) => typeof t === "number" && typeof v === "number")
    .sort((a, b) => a[0] - b[0]);
}

export function bedView(ctx, site, bedId) {
  const root = h("div", {}, h("p", {}, h("a", { href: "#/beds" }, t("bed.back"))), h("h1", {}, `${bedId}`),
    h("p", { class: "muted" }, t("loading")));
  let stopped = false;

  const load = async () => {
    const base = `/beds/${encodeURIComponent(site)}/${encodeURIComponent(bedId)}`;
    let bed;
    try {
      bed = await ctx.api.get(base);
    } catch (err) {
      root.replaceChildren(h("p", {}, h("a", { href: "#/beds" }, t("bed.back"))), h("h1", {}, bedId),
        h("p", { class: "form-error" }, err.status === 404 ? t("bed.not_found") : t("bed.load_failed", { error: err.message })));
      return;
    }
    // The window ends at the newest reading or now, whichever is later: simulated beds may
    // run on a clock ahead of the wall clock.
    const latestT = Math.max(0, ...Object.values(bed.latest || {}).map((r) => r.t || 0));
    const until = Math.max(Date.now(), latestT) + 60_000;
    const since = until - DAY_MS;
    const [series, alerts, visits] = await Promise.all([
      Promise.all(CHARTS.map((c) => ctx.api.get(`${base}/series`, { metric: c.metric, since, until })
        .then(points).catch(() => []))),
      ctx.api.get("/alerts", { site, bed: bedId, limit: 20 }).then((b) => itemsOf(b, "alerts")).catch(() => []),
      ctx.api.get("/service-logs", { site, bed: bedId, limit: 20 }).then((b) => itemsOf(b, "records")).catch(() => null),
    ]);
    if (stopped) return;
    const open = (bed.alerts || []).slice().sort(queueOrder);
    const devices = bed.devices || [];
    root.replaceChildren(
      h("p", {}, h("a", { href: "#/beds" }, t("bed.back"))),
      h("div", { class: "page-head" },
        h("div", {}, h("h1", {}, `${bed.bed || bedId}`, h("span", { class: "muted" }, ` · ${bed.site || site}`)),
          h("p", { class: "muted" }, bed.person ? t("bed.person", { person: bed.person }) : "",
            bed.last_seen ? t("bed.last_heard", { ago: fmtAgo(bed.last_seen), time: fmtTime(bed.last_seen) }) : t("bed.never_heard"),
            bed.away_since ? h("span", { class: "away", id: "away-since" },
              t("bed.away", { time: fmtTime(bed.away_since), ago: fmtAgo(bed.away_since) })) : null)),
        open.length ? h("a", { class: "btn btn-danger", href: `#/alerts/${encodeURIComponent(open[0].id)}` },
          t("beds.open_alerts", { n: open.length })) : null),
      h("section", { class: "panel", "aria-labelledby": "b-devices" },
        h("h2", { id: "b-devices" }, t("bed.devices")),
        devices.length ? h("div", { class: "table-wrap" }, h("table", { id: "devices" },
          h("thead", {}, h("tr", {}, ["device", "kind", "state", "battery", "clock", "seen"].map((c) => h("th", { scope: "col" }, t(`bed.col_${c}`))))),
          h("tbody", {}, devices.map((d) => h("tr", {},
            h("td", { class: "mono" }, d.device), h("td", {}, label("kind", d.kind)), h("td", {}, stateCell(d)),
            h("td", {}, batteryCell(d)), h("td", {}, clockCell(d)),
            h("td", {}, d.last_seen ? fmtAgo(d.last_seen) : t("bed.never"))))),
        )) : h("p", { class: "muted" }, t("bed.no_devices"))),
      h("section", { "aria-labelledby": "b-charts", class: "panel" },
        h("h2", { id: "b-charts" }, t("bed.charts")),
        h("div", { class: "grid-charts" }, CHARTS.map((c, i) => chartPanel({ ...c, title: t(`chart.${c.metric}`), unit: c.unit ? t(c.unit) : "", points: series[i], t0: since, t1: until })))),
      h("div", { class: "grid-2" },
        h("section", { class: "panel", "aria-labelledby": "b-alerts" },
          h("h2", { id: "b-alerts" }, t("bed.alerts")),
          alerts.length ? h("ul", { class: "timeline" }, alerts.map((a) => h("li", {},
            h("span", { class: `sev sev-${a.severity}` }, label("severity", a.severity)), " ",
            h("a", { href: `#/alerts/${encodeURIComponent(a.id)}` }, typeLabel(a.type)), " ",
            h("span", { class: `status status-${a.status}` }, label("status", a.status)), " ",
            h("span", { class: "muted" }, fmtTime(a.opened_at)))))
            : h("p", { class: "muted" }, t("bed.no_alerts"))),
        h("section", { class: "panel", "aria-labelledby": "b-visits" },
          h("h2", { id: "b-visits" }, t("bed.visits")),
          visits === null ? h("p", { class: "muted" }, t("bed.visits_unavailable"))
            : visits.length ? h("ul", { class: "timeline" }, visits.map((v) => h("li", {},
              h("strong", {}, label("visit", v.event || "")), " ", fmtTime(v.at),
              t("bed.visit", { caregiver: v.caregiver, visit: v.visit }),
              v.services && v.services.length ? h("div", { class: "muted" }, t("bed.services", { list: v.services.join(", ") })) : null,
              v.method ? h("div", { class: "muted" }, t("bed.method", { method: v.method })) : null)))
              : h("p", { class: "muted" }, t("bed.no_visits"))),
      ),
    );
  };
  load();
  const timer = setInterval(load, 60_000);
  return { root, title: bedId, update: () => {}, dispose: () => { stopped = true; clearInterval(timer); } };
}
