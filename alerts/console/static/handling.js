// What a dispatcher needs to act on an alert: the resident's profile, whom to call (with a log
// of the calls made, answered or not), the response checklist of the alert's type and the
// comments made while handling it. Only for dispatcher and admin keys: a viewer's console never
// asks for the profile. Every action is recorded by the API as a change of the alert.

import { fmtTime, h } from "./dom.js";
import { hasLabel, label, t } from "./i18n.js";

const RESULTS = ["answered", "no_answer"];

/** An outcome code in the dispatcher's language (a station's own code as written). */
export const outcomeLabel = (code) => (hasLabel("outcome", code) ? t(`outcome.${code}`) : String(code));

/** A checklist item: the catalogue's text for the shipped codes, else the station's words. */
export const itemLabel = (item) => (hasLabel("checklist", item) ? t(`checklist.${item}`) : String(item));

const resultLabel = (result) => t(result === "answered" ? "contacts.answered" : "contacts.no_answer");

/** Whom a call went to: the resident (0) or the n-th emergency contact, by name when known. */
export function contactName(profile, n) {
  if (n === 0) return profile?.display_name || t("contacts.resident");
  return profile?.contacts?.[n - 1]?.name || t("contacts.contact_n", { n });
}

/** The people to call, in order: the resident's own phone first (if any), then the contacts. */
export function callList(profile) {
  if (!profile) return [];
  const people = [];
  if (profile.phone) people.push({ n: 0, name: profile.display_name, relation: t("contacts.self"), phone: profile.phone });
  (profile.contacts || []).forEach((c, i) => people.push({ n: i + 1, name: c.name, relation: c.relation, phone: c.phone }));
  return people;
}

function multiline(text) {
  return h("span", { class: "multiline" }, text);
}

/** The profile; with `contacts`, the emergency contacts too (the bed page, where no call is
 * being handled). */
export function profilePanel(state, { contacts = false } = {}) {
  const body = [];
  if (state.error) body.push(h("p", { class: "form-error" }, state.error));
  else if (state.loading) body.push(h("p", { class: "muted" }, t("loading")));
  else if (!state.profile) body.push(h("p", { class: "muted", id: "profile-none" }, t("profile.none")));
  else {
    const p = state.profile;
    const rows = [[t("profile.name"), p.display_name]];
    if (p.address) rows.push([t("profile.address"), multiline(p.address)]);
    if (p.phone) rows.push([t("profile.phone"), h("a", { href: `tel:${p.phone.replace(/[^+\d]/g, "")}` }, p.phone)]);
    if (p.medical_notes) rows.push([t("profile.medical"), multiline(p.medical_notes)]);
    if (p.access_notes) rows.push([t("profile.access"), multiline(p.access_notes)]);
    if (contacts) {
      (p.contacts || []).forEach((c, i) => rows.push([t("contacts.contact_n", { n: i + 1 }), h("span", {},
        c.name, c.relation ? ` ${t("contacts.relation", { relation: c.relation })}` : "", " ",
        h("a", { href: `tel:${c.phone.replace(/[^+\d]/g, "")}` }, c.phone))]));
    }
    body.push(h("dl", { class: "facts", id: "resident-profile" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  }
  return h("section", { class: "panel", "aria-labelledby": "d-profile" },
    h("h2", { id: "d-profile" }, t("profile.title")), body);
}

export function contactsPanel(ctx, alert, profile, onCall) {
  const people = callList(profile);
  const open = ctx.canHandle && alert.status !== "resolved";
  const calls = alert.contact_calls || [];
  const items = people.map((person) => {
    const log = calls.filter((c) => c.contact === person.n);
    // Contacts are numbered as in the profile (1 is called first); the resident's own phone
    // comes before them, unnumbered.
    return h("li", { class: "contact", "data-contact": person.n },
      h("div", { class: "contact-head" },
        h("strong", {}, person.n ? t("contacts.who", { n: person.n, name: person.name }) : person.name),
        person.relation ? h("span", { class: "muted" }, " ", t("contacts.relation", { relation: person.relation })) : null,
        " ", h("a", { href: `tel:${person.phone.replace(/[^+\d]/g, "")}`, class: "phone" }, person.phone)),
      open ? h("div", { class: "contact-actions" }, RESULTS.map((result) => h("button", {
        type: "button", class: "btn", "data-result": result,
        "aria-label": t("contacts.record_label", { name: person.name, result: resultLabel(result) }),
        onclick: (event) => onCall(person.n, result, event.currentTarget),
      }, resultLabel(result)))) : null,
      h("ul", { class: "call-log" }, log.length
        ? log.map((c) => h("li", { class: `call-${c.result}` }, t("contacts.log", { time: fmtTime(c.at), result: resultLabel(c.result), who: c.by })))
        : h("li", { class: "muted" }, t("contacts.not_called"))));
  });
  return h("section", { class: "panel", "aria-labelledby": "d-contacts" },
    h("h2", { id: "d-contacts" }, t("contacts.title")),
    items.length ? h("ul", { class: "contact-list", id: "contact-list" }, items) : h("p", { class: "muted" }, t("contacts.none")));
}

export function checklistPanel(ctx, alert, onCheck) {
  const configured = ctx.plan?.checklists?.[alert.type] || [];
  const done = alert.checklist || [];
  const items = [...configured, ...done.filter((i) => !configured.includes(i))];
  const open = ctx.canHandle && alert.status !== "resolved";
  return h("section", { class: "panel", "aria-labelledby": "d-checklist" },
    h("h2", { id: "d-checklist" }, t("checklist.title")),
    items.length ? h("ul", { class: "checklist", id: "checklist" }, items.map((item) => h("li", {},
      h("label", { class: "check" },
        h("input", { type: "checkbox", "data-item": item, checked: done.includes(item), disabled: !open,
          onchange: (event) => onCheck(item, event.currentTarget.checked, event.currentTarget) }),
        " ", itemLabel(item)))))
      : h("p", { class: "muted" }, t("checklist.none")));
}

/** The comment form is made once per page, so what is being typed survives live updates. */
export function commentForm(onComment) {
  const text = h("textarea", { id: "comment-text", rows: 2, maxlength: 2000 });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "comment-form", novalidate: true },
    h("label", { for: "comment-text" }, t("comments.label")), text, error,
    h("button", { type: "submit", class: "btn btn-primary" }, t("comments.submit")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = text.value.trim();
    if (!value) {
      error.textContent = t("comments.empty");
      text.focus();
      return;
    }
    error.textContent = "";
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      // Cleared once recorded, unless more was typed while it was being sent.
      if (await onComment(value, error) && text.value.trim() === value) text.value = "";
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export function commentsPanel(ctx, alert, history, form) {
  const comments = history.filter((c) => c.action === "commented");
  return h("section", { class: "panel", "aria-labelledby": "d-comments" },
    h("h2", { id: "d-comments" }, t("comments.title")),
    comments.length ? h("ul", { class: "comment-list", id: "comment-list" }, comments.map((c) => h("li", {},
      h("div", { class: "muted" }, t("comments.by", { time: fmtTime(c.at), who: c.actor || "–" })),
      h("div", { class: "multiline" }, c.note))))
      : h("p", { class: "muted" }, t("comments.none")),
    ctx.canHandle && alert.status !== "resolved" ? form : null);
}

/** What a history entry of a handling change says beyond its action, or null. */
export function handlingDetail(entry, profile) {
  switch (entry.action) {
    case "assigned": return null;
    case "checklist_checked":
    case "checklist_unchecked": return entry.note ? itemLabel(entry.note) : null;
    case "contact_called": {
      const call = entry.contact_call;
      if (!call) return null;
      return t("history.call", { contact: contactName(profile, call.contact), result: resultLabel(call.result) });
    }
    default: return undefined;
  }
}

/** The history entry's heading: "Assigned to anna" for an assignment, else the action. */
export function historyLabel(entry) {
  if (entry.action === "assigned" && (entry.assigned_to || entry.note)) {
    return t("history.assigned_to", { who: entry.assigned_to || entry.note });
  }
  return label("history", entry.action);
}
