// The live queue: open alerts (most severe, then longest waiting, first) and those being
// handled. Cards are kept per alert id and updated in place, so focus and a dispatcher's place
// in the list survive the stream's updates.

import { fmtAgo, fmtTime, h } from "./dom.js";
import { label, t, tNodes } from "./i18n.js";
import { typeLabel } from "./store.js";

export function alertTitle(alert) {
  // A site-level alert (a site gone dark, the gateway's health) has no bed: named by its site.
  if (!alert.bed) return t("alert.title_site", { type: typeLabel(alert.type), site: alert.site });
  return t("alert.title", { type: typeLabel(alert.type), bed: alert.bed });
}

function card(ctx, alert) {
  const li = h("li", { class: "alert-card", "data-alert-id": alert.id });
  li._render = (a) => {
    li.className = `alert-card sev-${a.severity} status-${a.status}`;
    li.setAttribute("aria-label", t("queue.card_label", { severity: label("severity", a.severity),
      type: typeLabel(a.type), site: a.site, bed: a.bed, status: label("status", a.status) }));
    const actions = h("div", { class: "alert-actions" });
    if (ctx.canHandle && a.status === "open") {
      actions.append(h("button", {
        type: "button", class: a.severity === "critical" ? "btn btn-danger" : "btn btn-primary",
        "data-action": "acknowledge", onclick: () => ctx.acknowledge(a.id),
      }, t("action.acknowledge")));
    }
    if (ctx.canHandle && a.status !== "resolved") {
      actions.append(h("button", {
        type: "button", class: "btn", "data-action": "resolve", onclick: () => ctx.openResolve(a.id),
      }, t("action.resolve")));
    }
    const extra = [];
    if (a.occurrences > 1) extra.push(h("span", {}, t("queue.occurrences", { n: a.occurrences })));
    if (a.repeats > 0) {
      extra.push(h("span", { class: "repeats" }, t("queue.called_again", { n: a.repeats })));
    }
    if (a.escalation_level > 0) extra.push(h("span", {}, t("queue.escalated", { n: a.escalation_level })));
    if (a.cleared_at) extra.push(h("span", {}, t("queue.cleared")));
    if (a.evidence && a.evidence.cancelled_at) extra.push(h("span", {}, t("queue.cancelled")));
    if (a.assigned_to) extra.push(h("span", { class: "assignee" }, t("queue.assigned", { who: a.assigned_to })));
    if (a.status === "acknowledged" && a.acknowledged_by) {
      extra.push(h("span", {}, t("queue.ack_by", { who: a.acknowledged_by, time: fmtTime(a.acknowledged_at) })));
    }
    const main = h("div", { class: "alert-main" },
      h("div", { class: "alert-title" },
        h("span", { class: "sev" }, label("severity", a.severity)),
        h("a", { href: `#/alerts/${encodeURIComponent(a.id)}` }, typeLabel(a.type)),
        a.bed ? h("a", { href: `#/beds/${encodeURIComponent(a.site)}/${encodeURIComponent(a.bed)}` }, `${a.bed}`) : null,
      ),
      // The gateway's rules write the summary in English: shown as given, marked so.
      a.summary ? h("p", { class: "alert-summary", lang: "en" }, a.summary) : null,
      h("div", { class: "alert-meta" },
        h("span", {}, a.site),
        h("span", {}, tNodes("queue.opened", {
          ago: h("time", { "data-age": a.opened_at, datetime: new Date(a.opened_at).toISOString() },
            fmtAgo(a.opened_at)),
          time: fmtTime(a.opened_at),
        })),
        extra,
      ),
    );
    // Keep the focused button if the same action is still offered.
    const focused = li.contains(document.activeElement) ? document.activeElement.dataset.action : null;
    li.replaceChildren(main, actions);
    if (focused) actions.querySelector(`[data-action="${focused}"]`)?.focus();
    li._alert = a;
  };
  li._render(alert);
  return li;
}

function reconcile(ctx, list, alerts, emptyText) {
  const byId = new Map([...list.children].filter((c) => c._alert).map((c) => [c.dataset.alertId, c]));
  const wanted = [];
  for (const alert of alerts) {
    let el = byId.get(alert.id);
    if (!el) el = card(ctx, alert);
    else if (el._alert !== alert) el._render(alert);
    byId.delete(alert.id);
    wanted.push(el);
  }
  for (const el of byId.values()) el.remove();
  list.querySelector(".empty")?.remove();
  wanted.forEach((el, i) => {
    if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
  });
  if (!wanted.length) list.append(h("li", { class: "empty" }, emptyText));
}

export function queueView(ctx) {
  const openList = h("ul", { class: "alert-list", id: "open-alerts", "aria-live": "polite" });
  const ackList = h("ul", { class: "alert-list", id: "acknowledged-alerts" });
  const openCount = h("span", { class: "muted" });
  const ackCount = h("span", { class: "muted" });
  const root = h("div", { class: "queue" },
    h("section", { class: "queue-section", "aria-labelledby": "q-open" },
      h("h2", { id: "q-open" }, t("queue.open"), openCount), openList),
    h("section", { class: "queue-section", "aria-labelledby": "q-ack" },
      h("h2", { id: "q-ack" }, t("queue.acknowledged"), ackCount), ackList),
  );
  const update = () => {
    const open = ctx.store.open;
    const acked = ctx.store.acknowledged;
    openCount.textContent = String(open.length);
    ackCount.textContent = String(acked.length);
    reconcile(ctx, openList, open, t(ctx.synced ? "queue.no_open" : "loading"));
    reconcile(ctx, ackList, acked, t(ctx.synced ? "queue.none_in_progress" : "loading"));
  };
  update();
  return { root, update, title: t("queue.title") };
}
