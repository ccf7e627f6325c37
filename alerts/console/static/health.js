// The gateway's own health, shown at once: a banner while the gateway has lost its broker
// (no call from a home reaches it), cannot write to its database (readings wait in its spool)
// or to one of its stores. Read from /readyz (no key needed), every few seconds; the gateway
// also raises a gateway_health alert once a failure lasts (gateway_health_alert_after_s).

import { fmtClock, t } from "./i18n.js";

const POLL_MS = 5000;

/** What a failing check means for a dispatcher: the text's key and its parameters. */
function problem(check) {
  if (check === "mqtt_connected") return ["health.mqtt", {}];
  if (check === "tsdb_writable") return ["health.tsdb", {}];
  return ["health.store", { store: check.replace(/_writable$/, "") }];
}

export class HealthBanner {
  constructor(element) {
    this.el = element;
    this.since = new Map(); // failing check -> when this console first saw it failing
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.poll();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.since.clear();
    this.render();
  }

  async poll() {
    clearTimeout(this.timer);
    try {
      const res = await fetch("/readyz", { cache: "no-store" });
      const body = await res.json();
      const failing = Object.entries(body.checks || {}).filter(([, ok]) => !ok).map(([name]) => name);
      const now = Date.now();
      for (const name of failing) if (!this.since.has(name)) this.since.set(name, now);
      for (const name of [...this.since.keys()]) if (!failing.includes(name)) this.since.delete(name);
    } catch {
      // The gateway itself is unreachable: the live connection's banner says so.
    }
    if (this.stopped) return;
    this.render();
    this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  /** The banner in the current language (also after a language switch). */
  render() {
    const lines = [...this.since].map(([check, since]) => {
      const [key, params] = problem(check);
      return t("health.line", { what: t(key, params), time: fmtClock(since) });
    });
    this.el.hidden = lines.length === 0;
    const text = lines.join(" · ");
    if (this.el.textContent !== text) this.el.textContent = text;
  }
}
