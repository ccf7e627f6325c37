// The live queue: open alerts (most severe, then longest waiting, first) and those being
// handled. Cards are kept per alert id and updated in place, so focus and a dispatcher's place
// in the list survive the stream's updates.

import { fmtAgo, fmtTime, h } from "./dom.js";
import { typeLabel } from "./store.js";

export function alertTitle(alert) {
  return `${typeLabel(alert.type)} — ${alert.bed}`;
}

function card(ctx, alert) {
  const li = h("li", { class: "alert-card", "data-alert-id": alert.id });
  li._render = (a) => {
    li.className = `alert-card sev-${a.severity} status-${a.status}`;
    li.setAttribute("aria-label", `${a.severity} ${typeLabel(a.type)}, ${a.site} ${a.bed}, ${a.status}`);
    const actions = h("div", { class: "alert-actions" });
    if (ctx.canHandle && a.status === "open") {
      actions.append(h("button", {
        type: "button", class: a.severity === "critical" ? "btn btn-danger" : "btn btn-primary",
        "data-action": "acknowledge", onclick: () => ctx.acknowledge(a.id),
      }, "Acknowledge"));
    }
    if (ctx.canHandle && a.status !== "resolved") {
      actions.append(h("button", {
        type: "button", class: "btn", "data-action": "resolve", onclick: () => ctx.openResolve(a.id),
      }, "Resolve…"));
    }
    const extra = [];
    if (a.occurrences > 1) extra.push(h("span", {}, `${a.occurrences}×`));
    if (a.repeats > 0) {
      extra.push(h("span", { class: "repeats" }, a.repeats === 1 ? "called again" : `called again ${a.repeats}×`));
    }
    if (a.escalation_level > 0) extra.push(h("span", {}, `escalated ${a.escalation_level}×`));
    if (a.cleared_at) extra.push(h("span", {}, "condition cleared"));
    if (a.evidence && a.evidence.cancelled_at) extra.push(h("span", {}, "cancelled by the person"));
    if (a.status === "acknowledged" && a.acknowledged_by) {
      extra.push(h("span", {}, `ack by ${a.acknowledged_by} ${fmtTime(a.acknowledged_at)}`));
    }
    const main = h("div", { class: "alert-main" },
      h("div", { class: "alert-title" },
        h("span", { class: "sev" }, a.severity),
        h("a", { href: `#/alerts/${encodeURIComponent(a.id)}` }, typeLabel(a.type)),
        h("a", { href: `#/beds/${encodeURIComponent(a.site)}/${encodeURIComponent(a.bed)}` }, `${a.bed}`),
      ),
      a.summary ? h("p", { class: "alert-summary" }, a.summary) : null,
      h("div", { class: "alert-meta" },
        h("span", {}, a.site),
        h("span", {}, "opened ", h("time", { "data-age": a.opened_at, datetime: new Date(a.opened_at).toISOString() },
          fmtAgo(a.opened_at)), ` (${fmtTime(a.opened_at)})`),
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
      h("h2", { id: "q-open" }, "Needs acknowledgement", openCount), openList),
    h("section", { class: "queue-section", "aria-labelledby": "q-ack" },
      h("h2", { id: "q-ack" }, "Acknowledged, not resolved", ackCount), ackList),
  );
  const update = () => {
    const open = ctx.store.open;
    const acked = ctx.store.acknowledged;
    openCount.textContent = String(open.length);
    ackCount.textContent = String(acked.length);
    reconcile(ctx, openList, open, ctx.synced ? "No open alerts." : "Loading…");
    reconcile(ctx, ackList, acked, ctx.synced ? "Nothing in progress." : "Loading…");
  };
  update();
  return { root, update, title: "Queue" };
}
