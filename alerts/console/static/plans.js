// A bed's planned visits (issue #14): the care institution's plans for this bed from two days
// ago to a week ahead, each with its window, caregiver and service items, the items that must
// be recorded marked, called-off ones struck through. The gateway checks every visit against
// them; the flags come as service_anomaly alerts. One panel, filled by its own requests, so the
// bed page only places it (bed.js).

import { itemsOf } from "./api.js";
import { fmtTime, h } from "./dom.js";
import { fmtClock, t } from "./i18n.js";

const DAY_MS = 86_400_000;
const AHEAD_MS = 7 * DAY_MS;
const BEHIND_MS = 2 * DAY_MS;

/** The items of one plan as text, those the catalogue wants recorded marked. */
export function serviceList(services, catalogue) {
  const recorded = new Set(catalogue.filter((i) => i.recording).map((i) => i.code));
  return services.map((code) => (recorded.has(code) ? t("plans.recorded", { item: code }) : code))
    .join(", ");
}

/** One plan as a list item. */
export function planItem(plan, catalogue, now = Date.now()) {
  const past = plan.end_ms < now;
  const classes = past || plan.cancelled ? ["plan", "muted"] : ["plan"];
  return h("li", { class: classes.join(" "), dataset: { plan: plan.plan } },
  h("strong", {}, t("plans.window", { start: fmtTime(plan.start_ms, now), end: fmtClock(plan.end_ms) })),
  t("plans.caregiver", { caregiver: plan.caregiver }),
  plan.cancelled ? h("span", { class: "status status-resolved" }, " ", t("plans.cancelled")) : null,
  h("div", { class: "muted" }, t("plans.services", { list: serviceList(plan.services || [], catalogue) })),
  h("div", { class: "mono" }, t("plans.plan", { plan: plan.plan })));
}

/** The panel for ``site``/``bed``; it loads the plans and the catalogue itself. */
export function plansPanel(ctx, site, bed, now = Date.now()) {
  const body = h("p", { class: "muted" }, t("loading"));
  const root = h("section", { class: "panel", id: "plans", "aria-labelledby": "b-plans" },
    h("h2", { id: "b-plans" }, t("plans.title")), body);
  Promise.all([
    ctx.api.get("/plans", { site, bed, since: now - BEHIND_MS, until: now + AHEAD_MS, limit: 100 }),
    ctx.api.get("/plans/catalogue").catch(() => ({ items: [] })),
  ]).then(([plans, catalogue]) => {
    const items = itemsOf(plans);
    const known = itemsOf(catalogue);
    body.replaceWith(items.length
      ? h("div", {}, h("ul", { class: "timeline" }, items.map((p) => planItem(p, known, now))),
        known.some((i) => i.recording) ? h("p", { class: "muted" }, t("plans.recorded_hint")) : null)
      : h("p", { class: "muted" }, t("plans.none")));
  }).catch((err) => {
    body.className = "muted";
    body.textContent = err && err.status === 503 ? t("plans.unavailable")
      : t("plans.load_failed", { error: err && err.message });
  });
  return root;
}
