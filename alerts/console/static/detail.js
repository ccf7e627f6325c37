// One alert: what happened (evidence), who the resident is and whom to call, what was done
// (checklist, calls, comments, history), and the actions.

import { AuthError, itemsOf } from "./api.js";
import { fmtAgo, fmtTime, fmtValue, h } from "./dom.js";
import {
  checklistPanel, commentForm, commentsPanel, contactsPanel, handlingDetail, historyLabel, outcomeLabel,
  profilePanel,
} from "./handling.js";
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

function historyItem(c, profile) {
  const detail = handlingDetail(c, profile);
  const note = detail !== undefined ? detail
    // A dispatcher's note is in their words; the gateway's own notes are English.
    : c.note ? h("span", { lang: GATEWAY_ACTORS.has(c.actor || "system") ? "en" : null }, c.note) : null;
  return h("li", { "data-action": c.action },
    h("strong", {}, historyLabel(c)), " ", fmtTime(c.at),
    c.actor ? t("detail.by", { actor: GATEWAY_ACTORS.has(c.actor) ? label("actor", c.actor) : c.actor }) : "",
    c.outcome && c.action === "resolved" ? h("div", { class: "outcome" }, t("history.outcome", { outcome: outcomeLabel(c.outcome) })) : null,
    note ? h("div", { class: "muted" }, note) : null);
}

export function detailView(ctx, alertId) {
  const body = h("div", { "data-alert-id": alertId }, h("p", { class: "muted" }, t("loading")));
  let history = [];
  let alert = ctx.store.alerts.get(alertId) || null;
  let failed = null;
  // The resident's profile: asked for once, only with a key known to be allowed to see it
  // (a dispatcher's or an admin's: /me has answered).
  const handling = () => Boolean(ctx.me) && ctx.canHandle;
  const resident = { loading: true, profile: null, error: null, asked: false, forbidden: false };

  const record = async (path, payload, control) => {
    if (control) control.disabled = true;
    try {
      const changed = await ctx.api.post(`/alerts/${encodeURIComponent(alertId)}/${path}`, payload);
      if (changed && changed.id) ctx.store.applyChange({ alert: changed });
      if (changed && isNewer(alert, changed)) alert = changed;
      await load();
      return true;
    } catch (err) {
      await ctx.handleError(err, "handle");
      render();
      return false;
    } finally {
      if (control?.isConnected) control.disabled = false;
    }
  };
  const form = commentForm((text) => record("comments", { text }));

  const render = () => {
    if (failed) {
      body.replaceChildren(h("p", { class: "form-error" }, failed), h("a", { href: "#/" }, t("detail.back")));
      return;
    }
    if (!alert) return;
    const a = alert;
    const open = a.status !== "resolved";
    const actions = h("div", { class: "alert-actions" });
    if (ctx.canHandle && a.status === "open") {
      actions.append(h("button", { type: "button", class: a.severity === "critical" ? "btn btn-danger" : "btn btn-primary",
        "data-action": "acknowledge", onclick: () => ctx.acknowledge(a.id) }, t("action.acknowledge")));
    }
    if (ctx.canHandle && open && ctx.me) {
      const mine = a.assigned_to === ctx.me.name;
      actions.append(h("button", { type: "button", class: "btn", "data-action": mine ? "unassign" : "assign",
        onclick: (event) => record(mine ? "unassign" : "assign", mine ? undefined : {}, event.currentTarget) },
      t(mine ? "action.unassign" : "action.assign_me")));
    }
    if (ctx.canHandle && open) {
      actions.append(h("button", { type: "button", class: "btn", "data-action": "resolve",
        onclick: () => ctx.openResolve(a.id) }, t("action.resolve")));
    }
    const focused = body.contains(document.activeElement) ? document.activeElement : null;
    const focusKey = focused && (focused.dataset.item !== undefined ? `[data-item="${CSS.escape(focused.dataset.item)}"]`
      : focused.dataset.action ? `[data-action="${CSS.escape(focused.dataset.action)}"]`
        : focused.id ? `#${CSS.escape(focused.id)}` : null);
    // The comment being typed keeps its caret through a live update (moving it blurs it).
    const caret = focused?.tagName === "TEXTAREA" ? [focused.selectionStart, focused.selectionEnd] : null;
    const evidence = Object.entries(a.evidence || {});
    body.replaceChildren(
      h("div", { class: "page-head" },
        h("div", {},
          h("p", {}, h("a", { href: "#/" }, t("detail.to_queue"))),
          h("h1", { class: `sev-${a.severity}` }, h("span", { class: "sev" }, label("severity", a.severity)), " ",
            t("alert.title", { type: typeLabel(a.type), bed: a.bed })),
          h("p", {}, h("span", { class: `status status-${a.status}`, id: "alert-status" }, label("status", a.status)), " ",
            a.assigned_to ? h("span", { class: "assignee", id: "alert-assignee" }, t("queue.assigned", { who: a.assigned_to })) : null, " ",
            a.summary ? h("span", { lang: "en" }, a.summary) : ""),
        ),
        actions,
      ),
      handling() ? h("div", { class: "grid-2 handling" },
        resident.forbidden ? null : profilePanel(resident),
        resident.forbidden ? null
          : contactsPanel(ctx, a, resident.profile, (n, result, button) => record("calls", { contact: n, result }, button)),
        checklistPanel(ctx, a, (item, done, box) => record("checklist", { item, done }, box)),
        commentsPanel(ctx, a, history, form)) : "", // replaceChildren writes a null as "null"
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
            ...(a.assigned_to ? [[t("detail.assigned"), t("detail.who_when", { who: a.assigned_to, time: fmtTime(a.assigned_at) })]] : []),
            ...(a.acknowledged_by ? [[t("detail.acknowledged"), t("detail.who_when", { who: a.acknowledged_by, time: fmtTime(a.acknowledged_at) })]] : []),
            ...(a.resolved_by ? [[t("detail.resolved"), t("detail.who_when", { who: a.resolved_by, time: fmtTime(a.resolved_at) })]] : []),
            ...(a.outcome ? [[t("detail.outcome"), h("span", { id: "alert-outcome" }, outcomeLabel(a.outcome))]] : []),
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
          ? h("ol", { class: "timeline", id: "alert-history" }, history.map((c) => historyItem(c, resident.profile)))
          : h("p", { class: "muted" }, t("detail.no_history"))),
    );
    const refocus = focusKey ? body.querySelector(focusKey) : null;
    refocus?.focus({ preventScroll: true });
    if (caret && refocus?.tagName === "TEXTAREA") refocus.setSelectionRange(...caret);
  };

  const loadProfile = async (site, bed) => {
    resident.asked = true;
    try {
      // The list, not /residents/{site}/{bed}: a bed without a profile is no error here.
      [resident.profile = null] = itemsOf(await ctx.api.get("/residents", { site, bed }));
    } catch (err) {
      if (err instanceof AuthError) resident.forbidden = true; // not for this key: show nothing
      else resident.error = t("profile.load_failed", { error: err.message });
    }
    resident.loading = false;
    render();
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
    if (alert && handling() && !resident.asked) {
      if (alert.bed) loadProfile(alert.site, alert.bed);
      else resident.loading = false;
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
