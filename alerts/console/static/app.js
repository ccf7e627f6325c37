// The dispatcher console: sign-in, routing, the live connection and what makes a critical
// alert impossible to miss (banner, tab title, repeating alarm sound).

import { Api, ApiError, AuthError } from "./api.js";
import { bedView, bedsView } from "./bed.js";
import { detailView } from "./detail.js";
import { fmtAgo } from "./dom.js";
import { LiveConnection } from "./live.js";
import { alertTitle, queueView } from "./queue.js";
import { Alarm } from "./sound.js";
import { AlertStore, typeLabel } from "./store.js";

const KEY_STORAGE = "homecare.console.key";
const TITLE = "Homecare";

const $ = (id) => document.getElementById(id);

const ctx = {
  api: null,
  store: null,
  live: null,
  alarm: new Alarm(),
  synced: false,
  canHandle: true,
  view: null,
};

// --- sign-in ---------------------------------------------------------------------------------

function showLogin(message = "") {
  showOffline(true);
  ctx.live?.stop();
  ctx.live = null;
  ctx.alarm.setActive(false);
  ctx.view?.dispose?.();
  ctx.view = null;
  document.title = TITLE;
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
    $("login-error").textContent = "Enter your API key.";
    return;
  }
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const api = await verify(key);
    sessionStorage.setItem(KEY_STORAGE, key);
    start(api);
  } catch (err) {
    $("login-error").textContent = err instanceof AuthError ? "The API key was refused."
      : `Cannot reach the gateway (${err.message}).`;
  } finally {
    button.disabled = false;
  }
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  showLogin();
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
    const since = offlineSince ? offlineSince.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    banner.textContent = `Connection to the gateway lost at ${since}. Retrying — new alerts appear once it is back.`;
    banner.hidden = false;
  }, OFFLINE_WARNING_MS);
}

function setConnection({ state, retryInMs, auth }) {
  if (auth) {
    sessionStorage.removeItem(KEY_STORAGE);
    showLogin("Your API key is no longer accepted. Sign in again.");
    return;
  }
  showOffline(state === "live");
  const el = $("conn");
  el.className = `conn conn-${state}`;
  $("conn-text").textContent = state === "live" ? "Live"
    : state === "reconnecting" ? `Reconnecting${retryInMs ? ` in ${Math.ceil(retryInMs / 1000)} s` : "…"}`
      : state === "connecting" ? "Connecting…" : "Offline";
  el.title = state === "live" ? "Receiving alert changes as they happen"
    : "Not receiving live changes; the queue may be out of date";
}

function refreshAttention() {
  const critical = ctx.store.openCritical;
  const open = ctx.store.open;
  document.title = critical.length ? `(${critical.length}) ${TITLE}` : TITLE;
  const count = $("nav-open-count");
  count.hidden = open.length === 0;
  count.textContent = String(open.length);
  count.setAttribute("aria-label", `${open.length} open alerts`);
  const banner = $("critical-banner");
  banner.classList.toggle("calm", critical.length === 0);
  const text = !critical.length ? "No open critical alerts"
    : critical.length === 1 ? `CRITICAL: ${alertTitle(critical[0])} (${critical[0].site})`
      : `${critical.length} CRITICAL alerts need acknowledgement — oldest: ${alertTitle(critical[0])}`;
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
  toggle.querySelector(".sound-label").textContent = ctx.alarm.muted ? "Sound off" : "Sound on";
  toggle.title = ctx.alarm.muted ? "Alarm sound is muted: click to turn it on" : "Mute the alarm sound";
  $("sound-blocked").hidden = !ctx.alarm.blocked;
}

$("sound-toggle").addEventListener("click", () => ctx.alarm.setMuted(!ctx.alarm.muted));
$("sound-enable").addEventListener("click", () => ctx.alarm.unlock());
ctx.alarm.addEventListener("state", refreshSoundControls);
// Any interaction unlocks audio after a reload (sessionStorage kept the key, no sign-in click).
for (const type of ["pointerdown", "keydown"]) {
  document.addEventListener(type, () => { if (ctx.alarm.blocked) ctx.alarm.unlock(); }, { capture: true });
}

// --- actions ---------------------------------------------------------------------------------

function applyAlert(alert) {
  if (alert && alert.id) ctx.store.applyChange({ alert });
}

async function handleActionError(err, what) {
  if (err instanceof AuthError && err.status === 403) {
    flash(`Your key may not ${what} alerts (viewer role).`, { error: true });
  } else if (err instanceof AuthError) {
    setConnection({ auth: err });
  } else if (err instanceof ApiError && err.status === 409) {
    flash(`Already handled by someone else: ${err.message}`, { error: true });
    ctx.live?.resync();
  } else {
    flash(`Could not ${what} the alert: ${err.message}. Try again.`, { error: true });
  }
}

ctx.acknowledge = async (id) => {
  const buttons = document.querySelectorAll(`[data-alert-id="${CSS.escape(id)}"] [data-action="acknowledge"]`);
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const alert = await ctx.api.post(`/alerts/${encodeURIComponent(id)}/acknowledge`, {});
    applyAlert(alert);
    flash(`Acknowledged: ${alert ? alertTitle(alert) : id}`);
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
  $("resolve-what").textContent = alert ? `${alertTitle(alert)} · ${alert.site}` : id;
  $("resolve-note").value = "";
  $("resolve-error").textContent = "";
  $("resolve-dialog").showModal();
  $("resolve-note").focus();
};

$("resolve-cancel").addEventListener("click", () => $("resolve-dialog").close());

$("resolve-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const note = $("resolve-note").value.trim();
  if (!note) {
    $("resolve-error").textContent = "A note is required: say what happened and what was done.";
    $("resolve-note").focus();
    return;
  }
  const submit = $("resolve-submit");
  submit.disabled = true;
  try {
    const alert = await ctx.api.post(`/alerts/${encodeURIComponent(resolving)}/resolve`, { note });
    applyAlert(alert);
    $("resolve-dialog").close();
    flash(`Resolved: ${alert ? alertTitle(alert) : resolving}`);
  } catch (err) {
    if (err instanceof ApiError && err.status !== 409) {
      $("resolve-error").textContent = `Could not resolve: ${err.message}`;
    } else {
      $("resolve-dialog").close();
      await handleActionError(err, "resolve");
    }
  } finally {
    submit.disabled = false;
  }
});

// --- routing ---------------------------------------------------------------------------------

function route() {
  if (!ctx.store) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
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
  route.moved = true;
  window.scrollTo(0, 0);
}
window.addEventListener("hashchange", route);

// --- start -----------------------------------------------------------------------------------

function start(api) {
  ctx.api = api;
  ctx.store = new AlertStore();
  ctx.synced = false;
  $("login").hidden = true;
  $("shell").hidden = false;
  ctx.store.addEventListener("change", (event) => {
    const { alert, previous, action } = event.detail;
    if (!previous && alert.status === "open" && ctx.synced) {
      if (alert.severity === "critical") ctx.alarm.ringNow();
      else if (alert.severity === "high") ctx.alarm.chime();
      if (alert.severity === "critical" || alert.severity === "high") {
        flash(`New ${alert.severity} alert: ${typeLabel(alert.type)} — ${alert.bed}`);
      }
    } else if (action === "escalated" && alert.status === "open") {
      ctx.alarm.ringNow();
    } else if (action === "repeated" && alert.status === "open" && ctx.synced) {
      // A new call on an alert (even one already acknowledged): ring again, as for a new one.
      if (alert.severity === "critical") ctx.alarm.ringNow();
      else ctx.alarm.chime();
      flash(`Called again: ${typeLabel(alert.type)} — ${alert.bed} needs acknowledgement`);
    }
    refreshAttention();
    ctx.view?.update();
  });
  ctx.store.addEventListener("reset", () => { refreshAttention(); ctx.view?.update(); });
  ctx.live = new LiveConnection({ api, store: ctx.store });
  ctx.live.addEventListener("state", (event) => setConnection(event.detail));
  ctx.live.addEventListener("synced", () => {
    if (!ctx.synced) { ctx.synced = true; ctx.view?.update(); }
  });
  setConnection({ state: "connecting" });
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

const saved = sessionStorage.getItem(KEY_STORAGE);
if (saved) {
  verify(saved).then(start).catch((err) => {
    if (err instanceof AuthError) {
      sessionStorage.removeItem(KEY_STORAGE);
      showLogin("Your API key is no longer accepted. Sign in again.");
    } else {
      // The gateway is unreachable right now: start anyway, the connection keeps retrying.
      start(new Api(saved));
    }
  });
} else {
  showLogin();
}
