// The on-call page: who is on duty now at each site (the shift, the dispatchers, the duty nurse
// and the station manager, with how to reach them), the roster's coverage gaps, and for an
// admin key the roster's editor (its JSON, put back whole: the API checks it and lists every
// problem). Dispatcher and admin keys only: the roster carries the staff's phone numbers.

import { ApiError, AuthError, itemsOf } from "./api.js";
import { h } from "./dom.js";
import { fmtClock, fmtDay, fmtTime, label, t } from "./i18n.js";

const ids = new Intl.Collator("en", { numeric: true });
const when = (ms) => `${fmtDay(ms)} ${fmtClock(ms)}`;

/** Every site the console knows: the beds' (the registry's and those heard from) and the
 * roster's own (its duty and its gaps), `*` left out. */
async function knownSites(ctx, roster) {
  const sites = new Set();
  let cursor;
  for (let page = 0; page < 20; page += 1) {
    const body = await ctx.api.get("/beds", { limit: 500, cursor });
    for (const bed of itemsOf(body, "beds")) if (bed.site) sites.add(bed.site);
    cursor = body && body.next_cursor;
    if (!cursor) break;
  }
  for (const duty of roster.duty) if (duty.site !== "*") sites.add(duty.site);
  for (const gap of roster.warnings) if (gap.site !== "*") sites.add(gap.site);
  return [...sites].sort(ids.compare);
}

function contact(person) {
  return h("span", { class: "oncall-contact muted" },
    person.phone ? h("a", { href: `tel:${person.phone.replace(/[^0-9+]/g, "")}` },
      t("oncall.phone", { phone: person.phone })) : null,
    person.pager ? h("span", {}, t("oncall.pager", { pager: person.pager })) : null,
    person.email ? h("span", {}, t("oncall.email", { email: person.email })) : null);
}

function personItem(person) {
  return h("li", { class: "oncall-person", dataset: { staff: person.id } },
    h("strong", {}, person.name), contact(person));
}

function roleRow(role, people) {
  return [h("dt", {}, t(`oncall.role_${role}`)),
    h("dd", {}, people.length ? h("ul", { class: "oncall-people" }, people.map(personItem))
      : h("span", { class: role === "dispatchers" ? "oncall-none" : "muted" }, t("oncall.nobody")))];
}

function siteCard(site, duty) {
  return h("section", { class: "panel oncall-site", "aria-labelledby": `oncall-site-${site}`,
    dataset: { site } },
  h("h2", { id: `oncall-site-${site}` }, site),
  h("p", { class: "muted oncall-shift" }, duty.shift
    ? t("oncall.shift", { shift: label("shift", duty.shift), date: duty.date || "" })
    : t("oncall.no_shift")),
  h("dl", { class: "oncall-duty" },
    roleRow("dispatchers", duty.dispatchers),
    roleRow("nurse", duty.nurse ? [duty.nurse] : []),
    roleRow("manager", duty.manager ? [duty.manager] : [])));
}

function gapsPanel(warnings) {
  if (!warnings.length) return h("p", { id: "oncall-gaps", class: "oncall-covered" }, t("oncall.no_gaps"));
  return h("div", { id: "oncall-gaps", class: "oncall-gaps", role: "alert" },
    h("strong", {}, t("oncall.gaps", { n: warnings.length })),
    h("ul", {}, warnings.map((gap) => h("li", { dataset: { site: gap.site } },
      t("oncall.gap", { site: gap.site === "*" ? t("oncall.every_site") : gap.site,
        from: when(gap.start), to: when(gap.end) })))));
}

/** The roster as PUT takes it: staff, shifts and duty (not the chains, the source, the gaps). */
function editable(roster) {
  return JSON.stringify({ staff: roster.staff, shifts: roster.shifts, duty: roster.duty }, null, 2);
}

function editor(onSave) {
  const area = h("textarea", { id: "oncall-editor", rows: "20", spellcheck: "false",
    class: "mono oncall-editor", "aria-describedby": "oncall-editor-hint" });
  const problems = h("ul", { id: "oncall-errors", class: "form-error oncall-errors", role: "alert" });
  const save = h("button", { type: "button", class: "btn btn-primary", id: "oncall-save" }, t("oncall.save"));
  const saved = h("p", { id: "oncall-saved", class: "muted", role: "status" });
  const section = h("section", { class: "panel", "aria-labelledby": "oncall-edit-title" },
    h("h2", { id: "oncall-edit-title" }, t("oncall.edit_title")),
    h("p", { id: "oncall-editor-hint", class: "muted" }, t("oncall.edit_hint")),
    h("label", { for: "oncall-editor", class: "sr-only" }, t("oncall.edit_label")),
    area, problems, h("div", { class: "dialog-actions" }, save), saved);
  const state = { dirty: false };
  area.addEventListener("input", () => { state.dirty = true; });
  const show = (lines) => problems.replaceChildren(...lines.map((line) => h("li", {}, line)));
  save.addEventListener("click", async () => {
    show([]);
    saved.textContent = "";
    let body;
    try {
      body = JSON.parse(area.value);
    } catch (err) {
      show([t("oncall.not_json", { error: err.message })]);  // the browser's words
      area.focus();
      return;
    }
    save.disabled = true;
    try {
      await onSave(body);
      state.dirty = false;
      saved.textContent = t("oncall.saved");
    } catch (err) {
      if (err instanceof ApiError && err.problems.length) {
        show([t("oncall.refused", { n: err.problems.length }),
          ...err.problems.map((problem) => h("span", { lang: "en" }, problem))]);
      } else {
        show([t("oncall.save_failed", { error: err.message })]);
      }
      area.focus();
    } finally {
      save.disabled = false;
    }
  });
  return {
    section,
    fill(roster) { if (!state.dirty) area.value = editable(roster); },
  };
}

export function oncallView(ctx) {
  const status = h("p", { class: "muted", role: "status" }, t("loading"));
  const source = h("p", { class: "muted", id: "oncall-source" });
  const gaps = h("div");
  const sites = h("div", { class: "oncall-sites", id: "oncall-sites" });
  const admin = ctx.me?.role === "admin";
  let stopped = false;
  let loading = null;

  const render = async (roster) => {
    const known = await knownSites(ctx, roster);
    const duties = await Promise.all(known.map((site) => ctx.api.get("/oncall/now", { site })));
    if (stopped) return;
    source.textContent = roster.source === "api"
      ? t("oncall.source_api", { who: roster.updated_by || "?", time: fmtTime(roster.updated_at) })
      : t("oncall.source_file");
    gaps.replaceChildren(gapsPanel(roster.warnings));
    sites.replaceChildren(...(known.length ? known.map((site, i) => siteCard(site, duties[i]))
      : [h("p", { class: "muted" }, t("oncall.no_sites"))]));
    status.textContent = t("oncall.now", { time: fmtClock(Date.now()) });
    status.className = "muted";
  };

  const edit = admin ? editor(async (body) => {
    const roster = await ctx.api.put("/oncall", body);
    edit.fill(roster);
    await render(roster);
  }) : null;

  const load = () => {
    loading ??= (async () => {
      try {
        const roster = await ctx.api.get("/oncall");
        if (stopped) return;
        edit?.fill(roster);
        await render(roster);
      } catch (err) {
        if (stopped) return;
        status.className = "form-error";
        status.textContent = err instanceof AuthError && err.status === 403
          ? t("oncall.forbidden") : t("oncall.load_failed", { error: err.message });
        if (err instanceof AuthError && err.status === 401) ctx.handleError?.(err, "oncall");
      } finally {
        loading = null;
      }
    })();
    return loading;
  };

  const root = h("div", { class: "oncall" },
    h("div", { class: "page-head" }, h("h1", {}, t("oncall.title"))),
    h("p", { class: "muted" }, t("oncall.explain")), status, source, gaps, sites,
    edit ? edit.section : null);
  load();
  const timer = setInterval(load, 60_000);
  return { root, title: t("oncall.title"), update: () => {},
    dispose: () => { stopped = true; clearInterval(timer); } };
}
