// The dispatcher console: sign-in, routing, the live connection and what makes a critical
// alert impossible to miss (banner, tab title, repeating alarm sound).

import { Api, ApiError, AuthError } from "./api.js";
import { bedView, bedsView } from "./bed.js";
import { detailView } from "./detail.js";
import { fmtAgo, h } from "./dom.js";
import { outcomeLabel } from "./handling.js";
import { HealthBanner } from "./health.js";
import { fmtClock, label, language, setLanguage, setTimeZone, t, timeZone, translatePage } from "./i18n.js";
import { LiveConnection } from "./live.js";
import { oncallView } from "./oncall.js";
import { alertTitle, queueView } from "./queue.js";
import { reportView } from "./report.js";
import { Alarm } from "./sound.js";
import { Session } from "./session.js";
import { AlertStore, typeLabel } from "./store.js";

const $ = (id) => document.getElementById(id);

const session = new Session();
const health = new HealthBanner($("health-banner"));

const ctx = {
  signedIn: false,
  api: null,
  store: null,
  live: null,
  alarm: new Alarm(),
  synced: false,
  canHandle: true,
  me: null,
  plan: null,
  view: null,
};

// --- sign-in ---------------------------------------------------------------------------------

function showLogin(message = "") {
  ctx.signedIn = false;
  showOffline(true);
  ctx.live?.stop();
  ctx.live = null;
  ctx.alarm.setActive(false);
  health.stop();
  ctx.view?.dispose?.();
  ctx.view = null;
  $("main").replaceChildren(); // nothing of this session (a half-written comment) stays behind
  route.shown = null;
  document.title = t("app.name");
  $("shell").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("login-key").value = "";
  $("login-key").focus();
}

async function verify(key) {
  const api = new Api(key);
  await api.get("/alerts", { limit: 1 });
  return api;
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  ctx.alarm.unlock(); // a user gesture: the browser now lets the alarm sound
  const key = $("login-key").value.trim();
  const button = event.submitter || $("login-form").querySelector("button");
  if (!key) {
    $("login-error").textContent = t("login.empty");
    return;
  }
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const api = await verify(key);
    session.signedIn(key);
    start(api);
  } catch (err) {
    $("login-error").textContent = err instanceof AuthError ? t("login.refused")
      : t("login.unreachable", { error: err.message });
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", () => {
  session.signOut();
  showLogin();
});

// Another tab of this browser signed in (or answered late): a tab at its sign-in form follows.
let booting = true;
session.addEventListener("key", async (event) => {
  if (booting || ctx.signedIn) return;
  const { key } = event.detail;
  try {
    const api = await verify(key);
    if (ctx.signedIn) return;
    session.keep(key);
    start(api);
  } catch { /* refused or unreachable: stay at the sign-in form */ }
});

session.addEventListener("signedout", () => {
  if (ctx.signedIn) showLogin(t("login.signed_out_elsewhere"));
});

// --- the shell -------------------------------------------------------------------------------

function flash(message, { error = false } = {}) {
  const el = $("flash");
  el.textContent = message;
  el.classList.toggle("flash-error", error);
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, error ? 8000 : 4000);
}

const OFFLINE_WARNING_MS = 5000;
let offlineSince = null;
let offlineTimer = null;

/** After a few seconds without the live stream, say plainly that new alerts may be missing. */
function showOffline(live) {
  const banner = $("offline-banner");
  if (live) {
    offlineSince = null;
    clearTimeout(offlineTimer);
    offlineTimer = null;
    banner.hidden = true;
    return;
  }
  if (offlineSince === null) offlineSince = new Date();
  if (offlineTimer !== null) return;
  offlineTimer = setTimeout(() => {
    banner.hidden = false;
    renderOffline();
  }, OFFLINE_WARNING_MS);
}

function renderOffline() {
  if (offlineSince) $("offline-banner").textContent = t("conn.lost", { time: fmtClock(offlineSince.getTime()) });
}

let connection = { state: "connecting" };

function setConnection({ state, retryInMs, auth }) {
  if (auth) {
    session.forget();
    showLogin(t("login.expired"));
    return;
  }
  connection = { state, retryInMs };
  showOffline(state === "live");
  renderConnection();
}

function renderConnection() {
  const { state, retryInMs } = connection;
  const el = $("conn");
  el.className = `conn conn-${state}`;
  $("conn-text").textContent = state === "live" ? t("conn.live")
    : state === "reconnecting" ? (retryInMs ? t("conn.reconnecting_in", { s: Math.ceil(retryInMs / 1000) }) : t("conn.reconnecting"))
      : state === "connecting" ? t("conn.connecting") : t("conn.offline");
  el.title = t(state === "live" ? "conn.live_title" : "conn.stale_title");
}

function refreshAttention() {
  const critical = ctx.store.openCritical;
  const open = ctx.store.open;
  document.title = critical.length ? t("app.title_count", { n: critical.length }) : t("app.name");
  const count = $("nav-open-count");
  count.hidden = open.length === 0;
  count.textContent = String(open.length);
  count.setAttribute("aria-label", t("nav.open_count", { n: open.length }));
  const banner = $("critical-banner");
  banner.classList.toggle("calm", critical.length === 0);
  const text = !critical.length ? t("banner.calm")
    : critical.length === 1 ? t("banner.one", { title: alertTitle(critical[0]), site: critical[0].site })
      : t("banner.many", { n: critical.length, title: alertTitle(critical[0]) });
  // Written only when it changes: it is a live region, read out by screen readers.
  if ($("critical-text").textContent !== text) $("critical-text").textContent = text;
  $("critical-first").hidden = critical.length === 0;
  if (critical.length) $("critical-first").href = `#/alerts/${encodeURIComponent(critical[0].id)}`;
  ctx.alarm.setActive(critical.length > 0);
  refreshSoundControls();
}

function refreshSoundControls() {
  const toggle = $("sound-toggle");
  toggle.setAttribute("aria-pressed", String(!ctx.alarm.muted));
  toggle.querySelector(".sound-label").textContent = t(ctx.alarm.muted ? "sound.off" : "sound.on");
  toggle.title = t(ctx.alarm.muted ? "sound.muted_title" : "sound.mute_title");
  $("sound-blocked").hidden = !ctx.alarm.blocked;
}

$("sound-toggle").addEventListener("click", () => ctx.alarm.setMuted(!ctx.alarm.muted));
$("sound-enable").addEventListener("click", () => ctx.alarm.unlock());
ctx.alarm.addEventListener("state", refreshSoundControls);
// Any interaction unlocks audio after a reload or in a tab signed in by another (no click).
for (const type of ["pointerdown", "keydown"]) {
  document.addEventListener(type, () => { if (ctx.alarm.blocked) ctx.alarm.unlock(); }, { capture: true });
}

// --- actions ---------------------------------------------------------------------------------

function applyAlert(alert) {
  if (alert && alert.id) ctx.store.applyChange({ alert });
}

async function handleActionError(err, what) {
  if (err instanceof AuthError && err.status === 403) {
    flash(t(`error.forbidden_${what}`), { error: true });
  } else if (err instanceof AuthError) {
    setConnection({ auth: err });
  } else if (err instanceof ApiError && err.status === 409) {
    flash(t("error.conflict", { error: err.message }), { error: true });
    ctx.live?.resync();
  } else {
    flash(t(`error.${what}`, { error: err.message }), { error: true });
  }
}

ctx.handleError = handleActionError;

ctx.acknowledge = async (id) => {
  const buttons = document.querySelectorAll(`[data-alert-id="${CSS.escape(id)}"] [data-action="acknowledge"]`);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const alert = await ctx.api.post(`/alerts/${encodeURIComponent(id)}/acknowledge`, {});
    applyAlert(alert);
    flash(t("flash.acknowledged", { title: alert ? alertTitle(alert) : id }));
  } catch (err) {
    await handleActionError(err, "acknowledge");
  } finally {
    buttons.forEach((b) => { if (b.isConnected) b.disabled = false; });
  }
};

let resolving = null;

ctx.openResolve = (id) => {
  const alert = ctx.store.alerts.get(id);
  resolving = id;
  $("resolve-what").textContent = alert ? t("alert.what", { title: alertTitle(alert), site: alert.site }) : id;
  // The outcome codes are the station's (an older gateway has none to ask for).
  const outcomes = ctx.plan?.outcomes || [];
  $("resolve-outcome").replaceChildren(h("option", { value: "" }, t("resolve.outcome_choose")),
    ...outcomes.map((code) => h("option", { value: code }, outcomeLabel(code))));
  $("resolve-outcome").hidden = !outcomes.length;
  $("resolve-outcome").previousElementSibling.hidden = !outcomes.length;
  $("resolve-note").value = "";
  $("resolve-error").textContent = "";
  $("resolve-dialog").showModal();
  (outcomes.length ? $("resolve-outcome") : $("resolve-note")).focus();
};

$("resolve-cancel").addEventListener("click", () => $("resolve-dialog").close());

$("resolve-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const note = $("resolve-note").value.trim();
  const outcome = $("resolve-outcome").value;
  if (!$("resolve-outcome").hidden && !outcome) {
    $("resolve-error").textContent = t("resolve.outcome_required");
    $("resolve-outcome").focus();
    return;
  }
  if (!note) {
    $("resolve-error").textContent = t("resolve.required");
    $("resolve-note").focus();
    return;
  }
  const submit = $("resolve-submit");
  submit.disabled = true;
  try {
    const alert = await ctx.api.post(`/alerts/${encodeURIComponent(resolving)}/resolve`,
      outcome ? { note, outcome } : { note });
    applyAlert(alert);
    $("resolve-dialog").close();
    flash(t("flash.resolved", { title: alert ? alertTitle(alert) : resolving }));
  } catch (err) {
    if (err instanceof ApiError && err.status !== 409) {
      $("resolve-error").textContent = t("resolve.failed", { error: err.message });
    } else {
      $("resolve-dialog").close();
      await handleActionError(err, "resolve");
    }
  } finally {
    submit.disabled = false;
  }
});

// --- routing ---------------------------------------------------------------------------------

/** What is being typed on the page (its text fields by id, and which one has the caret), so a
 * redraw of the same page (the station's zone or the key's role arriving, a language switch)
 * never loses a dispatcher's half-written comment. */
function typedInput(main) {
  return [...main.querySelectorAll("textarea[id]")].map((area) => ({
    id: area.id, value: area.value, focused: document.activeElement === area,
    start: area.selectionStart, end: area.selectionEnd,
  }));
}

function restoreInput(main, typed) {
  for (const was of typed) {
    const area = main.querySelector(`#${CSS.escape(was.id)}`);
    if (!area || area.tagName !== "TEXTAREA" || area.value === was.value) continue;
    area.value = was.value;
    area.dispatchEvent(new Event("input")); // the view's own draft and dirty flags
    if (was.focused) {
      area.focus({ preventScroll: true });
      area.setSelectionRange(was.start, was.end);
    }
  }
}

function route() {
  if (!ctx.store) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const typed = route.shown === location.hash ? typedInput($("main")) : [];
  ctx.view?.dispose?.();
  let nav = "queue";
  if (parts[0] === "alerts" && parts[1]) {
    ctx.view = detailView(ctx, parts[1]);
  } else if (parts[0] === "beds" && parts[1] && parts[2]) {
    ctx.view = bedView(ctx, parts[1], parts[2]);
    nav = "beds";
  } else if (parts[0] === "beds") {
    ctx.view = bedsView(ctx);
    nav = "beds";
  } else if (parts[0] === "reports") {
    ctx.view = reportView(ctx);
    nav = "reports";
  } else if (parts[0] === "oncall") {
    ctx.view = oncallView(ctx);
    nav = "oncall";
  } else {
    ctx.view = queueView(ctx);
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = $("main");
  const hadFocus = main.contains(document.activeElement);
  main.replaceChildren(ctx.view.root);
  if (hadFocus || route.moved) main.focus({ preventScroll: true });
  restoreInput(main, typed);
  route.shown = location.hash;
  route.moved = true;
  window.scrollTo(0, 0);
}
window.addEventListener("hashchange", route);

// --- language and time zone ------------------------------------------------------------------

/** Put every text on screen in the current language (after a switch). */
function applyLanguage() {
  translatePage();
  $("flash").hidden = true; // a message in the other language is stale
  clearTimeout(flash.timer);
  for (const select of document.querySelectorAll(".lang-select")) select.value = language();
  if (!ctx.store) return;
  renderConnection();
  renderOffline();
  health.render();
  refreshAttention();
  route.moved = false;
  route();
}

for (const select of document.querySelectorAll(".lang-select")) {
  select.addEventListener("change", () => {
    setLanguage(select.value);
    applyLanguage();
  });
}

/** Dates and times are shown in the station's zone (the registry's), not the browser's. */
async function loadStation(api) {
  try {
    const station = await api.get("/station");
    const before = timeZone();
    setTimeZone(station && station.timezone);
    return timeZone() !== before;
  } catch { /* an older gateway: the browser's zone */ }
  return false;
}

/** Who is signed in (a viewer is offered no actions and no resident profiles) and how alerts
 * are handled here (the checklists, the outcome codes). */
async function loadHandling(api) {
  const [me, plan] = await Promise.allSettled([api.get("/me"), api.get("/handling")]);
  if (ctx.api !== api) return false;
  if (me.status === "fulfilled" && me.value) {
    ctx.me = me.value;
    ctx.canHandle = me.value.role !== "viewer";
  }
  if (plan.status === "fulfilled") ctx.plan = plan.value;
  return true;
}

// --- start -----------------------------------------------------------------------------------

function start(api) {
  ctx.signedIn = true;
  ctx.api = api;
  ctx.store = new AlertStore();
  ctx.synced = false;
  $("login").hidden = true;
  $("shell").hidden = false;
  ctx.store.addEventListener("change", (event) => {
    const { alert, previous, action, confirmed } = event.detail;
    if (confirmed) {
      // The change shown a moment ago, before it was stored: it has rung already.
    } else if (!previous && alert.status === "open" && ctx.synced) {
      if (alert.severity === "critical") ctx.alarm.ringNow();
      else if (alert.severity === "high") ctx.alarm.chime();
      if (alert.severity === "critical" || alert.severity === "high") {
        flash(t("flash.new", { severity: label("severity", alert.severity), type: typeLabel(alert.type), bed: alert.bed }));
      }
    } else if (action === "escalated" && alert.status === "open") {
      ctx.alarm.ringNow();
    } else if (action === "repeated" && alert.status === "open" && ctx.synced) {
      // A new call on an alert (even one already acknowledged): ring again, as for a new one.
      if (alert.severity === "critical") ctx.alarm.ringNow();
      else ctx.alarm.chime();
      flash(t("flash.repeated", { type: typeLabel(alert.type), bed: alert.bed }));
    }
    refreshAttention();
    ctx.view?.update();
  });
  ctx.store.addEventListener("reset", () => { refreshAttention(); ctx.view?.update(); });
  loadStation(api).then((changed) => { if (changed && ctx.api === api) { route.moved = false; route(); } });
  ctx.me = null;
  ctx.plan = null;
  ctx.canHandle = true;
  loadHandling(api).then((changed) => { if (changed && ctx.api === api) { route.moved = false; route(); } });
  ctx.live = new LiveConnection({ api, store: ctx.store });
  ctx.live.addEventListener("state", (event) => setConnection(event.detail));
  ctx.live.addEventListener("synced", () => {
    if (!ctx.synced) { ctx.synced = true; ctx.view?.update(); }
  });
  setConnection({ state: "connecting" });
  health.start();
  route.moved = false;
  route();
  refreshAttention();
  ctx.live.start();
}

setInterval(() => {
  if (!ctx.store) return;
  for (const el of document.querySelectorAll("time[data-age]")) {
    el.textContent = fmtAgo(Number(el.dataset.age));
  }
  refreshAttention();
}, 15_000);

applyLanguage();

session.find().then(async (saved) => {
  try {
    if (!saved) {
      showLogin();
      return;
    }
    const api = await verify(saved);
    session.keep(saved);
    start(api);
  } catch (err) {
    if (err instanceof AuthError) {
      session.forget();
      showLogin(t("login.expired"));
    } else {
      // The gateway is unreachable right now: start anyway, the connection keeps retrying.
      session.keep(saved);
      start(new Api(saved));
    }
  } finally {
    booting = false;
  }
});
