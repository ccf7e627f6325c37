// One alert: what happened (evidence), what was done (history), and the actions.

import { itemsOf } from "./api.js";
import { fmtAgo, fmtTime, fmtValue, h, humanize } from "./dom.js";
import { isNewer, typeLabel } from "./store.js";

const TIME_KEYS = /(_at|_since|_ts)$/;

function facts(entries) {
  return h("dl", { class: "facts" }, entries.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

function evidenceValue(name, value) {
  if (typeof value === "number" && TIME_KEYS.test(name) && value > 1e12) return fmtTime(value);
  return fmtValue(value);
}

export function detailView(ctx, alertId) {
  const body = h("div", { "data-alert-id": alertId }, h("p", { class: "muted" }, "Loading…"));
  let history = [];
  let alert = ctx.store.alerts.get(alertId) || null;
  let failed = null;

  const render = () => {
    if (failed) {
      body.replaceChildren(h("p", { class: "form-error" }, failed), h("a", { href: "#/" }, "Back to the queue"));
      return;
    }
    if (!alert) return;
    const a = alert;
    const actions = h("div", { class: "alert-actions" });
    if (ctx.canHandle && a.status === "open") {
      actions.append(h("button", { type: "button", class: a.severity === "critical" ? "btn btn-danger" : "btn btn-primary",
        "data-action": "acknowledge", onclick: () => ctx.acknowledge(a.id) }, "Acknowledge"));
    }
    if (ctx.canHandle && a.status !== "resolved") {
      actions.append(h("button", { type: "button", class: "btn", "data-action": "resolve",
        onclick: () => ctx.openResolve(a.id) }, "Resolve…"));
    }
    const evidence = Object.entries(a.evidence || {});
    body.replaceChildren(
      h("div", { class: "page-head" },
        h("div", {},
          h("p", {}, h("a", { href: "#/" }, "← Queue")),
          h("h1", { class: `sev-${a.severity}` }, h("span", { class: "sev" }, a.severity), " ", typeLabel(a.type),
            " — ", a.bed),
          h("p", {}, h("span", { class: `status status-${a.status}`, id: "alert-status" }, a.status), " ",
            a.summary || ""),
        ),
        actions,
      ),
      h("div", { class: "grid-2" },
        h("section", { class: "panel", "aria-labelledby": "d-facts" },
          h("h2", { id: "d-facts" }, "Alert"),
          facts([
            ["Bed", h("a", { href: `#/beds/${encodeURIComponent(a.site)}/${encodeURIComponent(a.bed)}` }, `${a.site} / ${a.bed}`)],
            ["Opened", `${fmtTime(a.opened_at)} (${fmtAgo(a.opened_at)})`],
            ["Last update", fmtTime(a.updated_at)],
            ["Occurrences", String(a.occurrences ?? 1)],
            ...(a.repeats ? [["Called again", `${a.repeats}×`]] : []),
            ["Escalation level", String(a.escalation_level ?? 0)],
            ...(a.next_escalation_at ? [["Next escalation", fmtTime(a.next_escalation_at)]] : []),
            ...(a.cleared_at ? [["Condition cleared", fmtTime(a.cleared_at)]] : []),
            ...(a.acknowledged_by ? [["Acknowledged", `${a.acknowledged_by}, ${fmtTime(a.acknowledged_at)}`]] : []),
            ...(a.resolved_by ? [["Resolved", `${a.resolved_by}, ${fmtTime(a.resolved_at)}`]] : []),
            ...(a.note ? [["Note", a.note]] : []),
            ["Incident", h("span", { class: "mono" }, a.incident || "–")],
            ["Alert id", h("span", { class: "mono" }, a.id)],
          ])),
        h("section", { class: "panel", "aria-labelledby": "d-evidence" },
          h("h2", { id: "d-evidence" }, "Evidence"),
          evidence.length ? facts(evidence.map(([k, v]) => [humanize(k), evidenceValue(k, v)]))
            : h("p", { class: "muted" }, "No evidence recorded.")),
      ),
      h("section", { class: "panel", "aria-labelledby": "d-history" },
        h("h2", { id: "d-history" }, "History"),
        history.length
          ? h("ol", { class: "timeline", id: "alert-history" }, history.map((c) => h("li", {},
            h("strong", {}, humanize(c.action)), " ", fmtTime(c.at),
            c.actor ? ` by ${c.actor}` : "",
            c.note ? h("div", { class: "muted" }, c.note) : null)))
          : h("p", { class: "muted" }, "No history yet.")),
    );
  };

  const load = async () => {
    try {
      const data = await ctx.api.get(`/alerts/${encodeURIComponent(alertId)}`);
      const fetched = data && data.alert ? data.alert : data;
      history = itemsOf(data && data.history ? data.history : fetched && fetched.history, "changes");
      if (fetched && isNewer(alert, fetched)) alert = fetched;
      failed = null;
    } catch (err) {
      if (!alert) failed = err.status === 404 ? "No such alert." : `Could not load the alert: ${err.message}`;
    }
    render();
  };

  const onChange = (event) => {
    const changed = event.detail && event.detail.alert;
    if (changed && changed.id === alertId) { alert = changed; load(); }
  };
  ctx.store.addEventListener("change", onChange);
  render();
  load();
  return {
    root: body,
    title: alert ? typeLabel(alert.type) : "Alert",
    update: () => {},
    dispose: () => ctx.store.removeEventListener("change", onChange),
  };
}
