// Beds: the list, and one bed's page (devices, 24 h of key metrics, alerts, service visits).

import { itemsOf } from "./api.js";
import { chartPanel } from "./chart.js";
import { fmtAgo, fmtTime, h } from "./dom.js";
import { profilePanel } from "./handling.js";
import { fmtCount, label, t } from "./i18n.js";
import { plansPanel } from "./plans.js";
import { SEVERITY_RANK, queueOrder, typeLabel } from "./store.js";

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

const bedKey = (site, bed) => `${site}/${bed}`;
const ids = new Intl.Collator("en", { numeric: true });

/** Per bed ("site/bed"): how many unresolved alerts, the most severe one's severity and how
 * many have it. Site-level alerts (no bed) and resolved ones do not count. */
export function bedAttention(alerts) {
  const beds = new Map();
  for (const a of alerts) {
    if (!a.bed || a.status === "resolved") continue;
    const key = bedKey(a.site, a.bed);
    const seen = beds.get(key) || { open: 0, worst: null, worstCount: 0 };
    seen.open += 1;
    const rank = SEVERITY_RANK[a.severity] ?? 9;
    const worst = seen.worst === null ? 99 : SEVERITY_RANK[seen.worst] ?? 9;
    if (rank < worst) { seen.worst = a.severity; seen.worstCount = 1; } else if (rank === worst) seen.worstCount += 1;
    beds.set(key, seen);
  }
  return beds;
}

const CALM = Object.freeze({ open: 0, worst: null, worstCount: 0, summaries: 0 });

/** A bed's attention with the summaries that list it (`bed.summaries` from the API: alert
 * storms and unregistered devices, one site-level alert per site and type, and a dark site's
 * `site_offline`) counted as its
 * alerts, each as the alert store has it now: one resolved, or not in the store (resolved
 * before it was read), no longer counts. */
function withSummaries(attention, bed, byId) {
  let seen = null;
  for (const ref of bed.summaries || []) {
    const a = byId.get(ref.id);
    if (!a || a.status === "resolved") continue;
    seen ??= { ...attention, summaries: 0 };
    seen.open += 1;
    seen.summaries += 1;
    const rank = SEVERITY_RANK[a.severity] ?? 9;
    const worst = seen.worst === null ? 99 : SEVERITY_RANK[seen.worst] ?? 9;
    if (rank < worst) { seen.worst = a.severity; seen.worstCount = 1; } else if (rank === worst) seen.worstCount += 1;
  }
  return seen || attention;
}

/** Beds with unresolved critical alerts first, then high, medium, low, then the others; each
 * group by site and bed id (natural order: bed-9 before bed-10), so a bed moves only when its
 * alerts change. The summaries that list a bed count as its alerts. Returns [{bed, attention}]. */
export function orderBeds(beds, alerts) {
  const attention = bedAttention(alerts);
  const byId = new Map(alerts.map((a) => [a.id, a]));
  const rank = (a) => (a.worst === null ? 99 : SEVERITY_RANK[a.worst] ?? 9);
  return beds
    .map((bed) => ({ bed, attention: withSummaries(attention.get(bedKey(bed.site, bed.bed)) || CALM, bed, byId) }))
    .sort((a, b) => rank(a.attention) - rank(b.attention)
      || ids.compare(a.bed.site, b.bed.site) || ids.compare(a.bed.bed, b.bed.bed));
}

function bedCard(bed, attention, live) {
  // bed.open_alerts counts the summaries that list the bed too (the API's, as of the list).
  const open = live ? attention.open : bed.open_alerts || 0;
  const inSummaries = live ? attention.summaries || 0 : (bed.summaries || []).length;
  return [
    h("div", { class: "bed-name" }, `${bed.bed}`, h("span", { class: "muted" }, ` · ${bed.site}`),
      attention.worst ? h("span", { class: `sev sev-${attention.worst}` }, label("severity", attention.worst)) : null),
    h("div", {}, deviceSummary(bed)),
    attention.worst ? h("div", { class: `bed-worst sev-text-${attention.worst}` },
      t("beds.severity_count", { n: attention.worstCount, severity: label("severity", attention.worst) })) : null,
    h("div", { class: "muted" }, open ? t("beds.open_alerts", { n: open }) : t("beds.no_open_alerts"),
      inSummaries ? h("span", { class: "in-summaries" }, t("beds.in_summaries", { n: inSummaries })) : "",
      bed.last_seen ? t("beds.seen", { ago: fmtAgo(bed.last_seen) }) : "",
      bed.away_since ? t("beds.away", { time: fmtTime(bed.away_since) }) : ""),
  ];
}

/** The beds, most urgent first. The list comes from the API (every 30 s); the order and the
 * badges follow the live alert store, and cards are kept per bed and moved, not rebuilt, so
 * keyboard focus and the dispatcher's place survive a reorder. */
export function bedsView(ctx) {
  const heading = h("h1", {}, t("beds.title"));
  const status = h("p", { class: "muted" }, t("loading"));
  const list = h("ul", { class: "bed-list", id: "beds" });
  const root = h("div", {}, heading, h("p", { class: "muted" }, t("beds.order")), status, list);
  const cards = new Map();
  let beds = null;
  let stopped = false;
  let loading = null;

  const render = () => {
    if (beds === null) return;
    heading.textContent = t("beds.title_count", { n: beds.length });
    status.hidden = beds.length > 0;
    status.className = "muted";
    status.textContent = t("beds.none");
    const live = ctx.synced;
    const ordered = orderBeds(beds, live ? [...ctx.store.alerts.values()] : []);
    const wanted = ordered.map(({ bed, attention }) => {
      const key = bedKey(bed.site, bed.bed);
      let item = cards.get(key);
      if (!item) {
        const link = h("a", { class: "bed-card", href: bedHref(bed.site, bed.bed) });
        item = h("li", {}, link);
        cards.set(key, item);
      }
      const drawn = `${attention.worst}|${attention.worstCount}|${attention.open}|${attention.summaries}|${live}`;
      if (item._bed !== bed || item._drawn !== drawn) {
        const link = item.firstChild;
        link.className = attention.worst ? `bed-card bed-sev-${attention.worst}` : "bed-card";
        link.replaceChildren(...bedCard(bed, attention, live).filter(Boolean));
        item._bed = bed;
        item._drawn = drawn;
      }
      return item;
    });
    const keep = new Set(wanted);
    for (const [key, item] of cards) {
      if (!keep.has(item)) { item.remove(); cards.delete(key); }
    }
    wanted.forEach((item, i) => {
      if (list.children[i] !== item) list.insertBefore(item, list.children[i] || null);
    });
  };

  const load = () => {
    loading ??= (async () => {
      const fetched = [];
      try {
        let cursor = null;
        for (let page = 0; page < 50; page += 1) {
          const body = await ctx.api.get("/beds", { limit: 500, cursor });
          fetched.push(...itemsOf(body, "beds"));
          cursor = body && body.next_cursor;
          if (!cursor) break;
        }
        if (stopped) return;
        beds = fetched;
        render();
      } catch (err) {
        if (stopped || beds !== null) return; // a list on screen stays; the next load retries
        status.className = "form-error";
        status.textContent = t("beds.load_failed", { error: err.message });
      } finally {
        loading = null;
      }
    })();
  };

  /** An alert for a bed not on the list yet (first heard just now), or a summary no bed of
   * the list names yet (a storm just began; asked once per summary, as one may list no bed we
   * show): fetch the list again. */
  const asked = new Set();
  const update = () => {
    if (beds === null) return;
    render();
    const listed = new Set(beds.map((b) => bedKey(b.site, b.bed)));
    const named = new Set(beds.flatMap((b) => (b.summaries || []).map((s) => s.id)));
    for (const a of ctx.store.alerts.values()) {
      if (a.status === "resolved") continue;
      if (a.bed && !listed.has(bedKey(a.site, a.bed))) { load(); break; }
      const listsBeds = a.type === "site_offline" || (a.evidence && a.evidence.summary === true);
      if (!a.bed && listsBeds && !named.has(a.id) && !asked.has(a.id)) {
        asked.add(a.id);
        load();
        break;
      }
    }
  };

  load();
  const timer = setInterval(load, 30_000);
  return { root, title: t("beds.title"), update, dispose: () => { stopped = true; clearInterval(timer); } };
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
    // The resident's profile only for a key known to be allowed to see it (never a viewer's).
    const withProfile = Boolean(ctx.me) && ctx.canHandle;
    const [series, alerts, visits, residents] = await Promise.all([
      Promise.all(CHARTS.map((c) => ctx.api.get(`${base}/series`, { metric: c.metric, since, until })
        .then(points).catch(() => []))),
      ctx.api.get("/alerts", { site, bed: bedId, limit: 20 }).then((b) => itemsOf(b, "alerts")).catch(() => []),
      ctx.api.get("/service-logs", { site, bed: bedId, limit: 20 }).then((b) => itemsOf(b, "records")).catch(() => null),
      withProfile ? ctx.api.get("/residents", { site, bed: bedId }).then((b) => ({ profile: itemsOf(b)[0] || null }))
        .catch((err) => ({ error: t("profile.load_failed", { error: err.message }) })) : null,
    ]);
    if (stopped) return;
    const open = (bed.alerts || []).slice().sort(queueOrder);
    // The summaries that list this bed (an alert storm, unregistered devices: site-level
    // alerts, so not among the bed's own) count as its open alerts, as in the list.
    const summaries = (bed.summaries || []).slice().sort(queueOrder);
    const attention = [...open, ...summaries].sort(queueOrder);
    const devices = bed.devices || [];
    root.replaceChildren(
      h("p", {}, h("a", { href: "#/beds" }, t("bed.back"))),
      h("div", { class: "page-head" },
        h("div", {}, h("h1", {}, `${bed.bed || bedId}`, h("span", { class: "muted" }, ` · ${bed.site || site}`)),
          h("p", { class: "muted" }, bed.person ? t("bed.person", { person: bed.person }) : "",
            bed.last_seen ? t("bed.last_heard", { ago: fmtAgo(bed.last_seen), time: fmtTime(bed.last_seen) }) : t("bed.never_heard"),
            bed.away_since ? h("span", { class: "away", id: "away-since" },
              t("bed.away", { time: fmtTime(bed.away_since), ago: fmtAgo(bed.away_since) })) : null)),
        attention.length ? h("a", { class: "btn btn-danger", href: `#/alerts/${encodeURIComponent(attention[0].id)}` },
          t("beds.open_alerts", { n: attention.length })) : null),
      summaries.length ? h("section", { class: "panel", id: "bed-summaries", "aria-labelledby": "b-summaries" },
        h("h2", { id: "b-summaries" }, t("bed.summaries")),
        h("p", { class: "muted" }, t("bed.summaries_hint")),
        h("ul", { class: "timeline" }, summaries.map((s) => h("li", {},
          h("span", { class: `sev sev-${s.severity}` }, label("severity", s.severity)), " ",
          h("a", { href: `#/alerts/${encodeURIComponent(s.id)}` }, typeLabel(s.type)), " ",
          h("span", { class: `status status-${s.status}` }, label("status", s.status)), " ",
          h("span", { class: "muted" }, s.summary || ""))))) : null,
      residents ? profilePanel(residents, { contacts: true }) : null,
      h("section", { class: "panel", "aria-labelledby": "b-devices" },
        h("h2", { id: "b-devices" }, t("bed.devices")),
        devices.length ? h("div", { class: "table-wrap" }, h("table", { id: "devices" },
          h("thead", {}, h("tr", {}, ["device", "kind", "state", "battery", "clock", "seen"].map((c) => h("th", { scope: "col" }, t(`bed.col_${c}`))))),
          h("tbody", {}, devices.map((d) => h("tr", {},
            h("td", { class: "mono" }, d.device), h("td", {}, label("kind", d.kind)), h("td", {}, stateCell(d)),
            h("td", {}, batteryCell(d)), h("td", {}, clockCell(d)),
            h("td", {}, d.last_seen ? fmtAgo(d.last_seen) : t("bed.never"))))),
        )) : h("p", { class: "muted" }, t("bed.no_devices")),
        // The API lists at most 32 devices registered on first sight and not heard lately,
        // and counts the rest (a flood of made-up ids on a bed).
        bed.devices_not_shown ? h("p", { class: "muted", id: "devices-not-shown" },
          t("bed.devices_not_shown", { n: bed.devices_not_shown, count: fmtCount(bed.devices_not_shown) })) : null),
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
      plansPanel(ctx, site, bedId),
    );
  };
  load();
  const timer = setInterval(load, 60_000);
  return { root, title: bedId, update: () => {}, dispose: () => { stopped = true; clearInterval(timer); } };
}
