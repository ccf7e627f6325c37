// One alert: what happened (evidence), what was done (history), and the actions.

import { itemsOf } from "./api.js";
import { fmtAgo, fmtTime, fmtValue, h } from "./dom.js";
import { hasLabel, label, t } from "./i18n.js";
import { isNewer, typeLabel } from "./store.js";

const TIME_KEYS = /(_at|_since|_ts)$/;
const GATEWAY_ACTORS = new Set(["system", "person"]); // the engine's own transitions

function facts(entries) {
  return h("dl", { class: "facts" }, entries.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
}

/** A detector's evidence field: named by the catalogue, else by its API name (English). */
function evidenceName(key) {
  return hasLabel("evidence", key) ? label("evidence", key) : h("span", { lang: "en" }, label("evidence", key));
}

function evidenceValue(name, value) {
  if (typeof value === "number" && TIME_KEYS.test(name) && value > 1e12) return fmtTime(value);
  return fmtValue(value);
}

export function detailView(ctx, alertId) {
  const body = h("div", { "data-alert-id": alertId }, h("p", { class: "muted" }, t("loading")));
  let history = [];
  let alert = ctx.store.alerts.get(alertId) || null;
  let failed = null;

  const render = () => {
    if (failed) {
      body.replaceChildren(h("p", { class: "form-error" }, failed), h("a", { href: "#/" }, t("detail.back")));
      return;
    }
    if (!alert) return;
    const a = alert;
    const actions = h("div", { class: "alert-actions" });
    if (ctx.canHandle && a.status === "open") {
      actions.append(h("button", { type: "button", class: a.severity === "critical" ? "btn btn-danger" : "btn btn-primary",
        "data-action": "acknowledge", onclick: () => ctx.acknowledge(a.id) }, t("action.acknowledge")));
    }
    if (ctx.canHandle && a.status !== "resolved") {
      actions.append(h("button", { type: "button", class: "btn", "data-action": "resolve",
        onclick: () => ctx.openResolve(a.id) }, t("action.resolve")));
    }
    const evidence = Object.entries(a.evidence || {});
    body.replaceChildren(
      h("div", { class: "page-head" },
        h("div", {},
          h("p", {}, h("a", { href: "#/" }, t("detail.to_queue"))),
          h("h1", { class: `sev-${a.severity}` }, h("span", { class: "sev" }, label("severity", a.severity)), " ",
            t("alert.title", { type: typeLabel(a.type), bed: a.bed })),
          h("p", {}, h("span", { class: `status status-${a.status}`, id: "alert-status" }, label("status", a.status)), " ",
            a.summary ? h("span", { lang: "en" }, a.summary) : ""),
        ),
        actions,
      ),
      h("div", { class: "grid-2" },
        h("section", { class: "panel", "aria-labelledby": "d-facts" },
          h("h2", { id: "d-facts" }, t("detail.facts")),
          facts([
            [t("detail.bed"), h("a", { href: `#/beds/${encodeURIComponent(a.site)}/${encodeURIComponent(a.bed)}` }, `${a.site} / ${a.bed}`)],
            [t("detail.opened"), t("detail.time_ago", { time: fmtTime(a.opened_at), ago: fmtAgo(a.opened_at) })],
            [t("detail.updated"), fmtTime(a.updated_at)],
            [t("detail.occurrences"), String(a.occurrences ?? 1)],
            ...(a.repeats ? [[t("detail.called_again"), t("detail.times", { n: a.repeats })]] : []),
            [t("detail.escalation"), String(a.escalation_level ?? 0)],
            ...(a.next_escalation_at ? [[t("detail.next_escalation"), fmtTime(a.next_escalation_at)]] : []),
            ...(a.cleared_at ? [[t("detail.cleared"), fmtTime(a.cleared_at)]] : []),
            ...(a.acknowledged_by ? [[t("detail.acknowledged"), t("detail.who_when", { who: a.acknowledged_by, time: fmtTime(a.acknowledged_at) })]] : []),
            ...(a.resolved_by ? [[t("detail.resolved"), t("detail.who_when", { who: a.resolved_by, time: fmtTime(a.resolved_at) })]] : []),
            ...(a.note ? [[t("detail.note"), a.note]] : []),
            [t("detail.incident"), h("span", { class: "mono" }, a.incident || "–")],
            [t("detail.alert_id"), h("span", { class: "mono" }, a.id)],
          ])),
        h("section", { class: "panel", "aria-labelledby": "d-evidence" },
          h("h2", { id: "d-evidence" }, t("detail.evidence")),
          evidence.length ? facts(evidence.map(([k, v]) => [evidenceName(k), evidenceValue(k, v)]))
            : h("p", { class: "muted" }, t("detail.no_evidence"))),
      ),
      h("section", { class: "panel", "aria-labelledby": "d-history" },
        h("h2", { id: "d-history" }, t("detail.history")),
        history.length
          ? h("ol", { class: "timeline", id: "alert-history" }, history.map((c) => h("li", {},
            h("strong", {}, label("history", c.action)), " ", fmtTime(c.at),
            c.actor ? t("detail.by", { actor: GATEWAY_ACTORS.has(c.actor) ? label("actor", c.actor) : c.actor }) : "",
            // A dispatcher's note is in their words; the gateway's own notes are English.
            c.note ? h("div", { class: "muted", lang: GATEWAY_ACTORS.has(c.actor || "system") ? "en" : null }, c.note) : null)))
          : h("p", { class: "muted" }, t("detail.no_history"))),
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
      if (!alert) failed = err.status === 404 ? t("detail.not_found") : t("detail.load_failed", { error: err.message });
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
    title: alert ? typeLabel(alert.type) : t("detail.title"),
    update: () => {},
    dispose: () => ctx.store.removeEventListener("change", onChange),
  };
}
