// The live connection: the alert change stream, reconnected forever with Last-Event-ID, plus
// snapshots of the open alerts (at every (re)connection and every minute), so that whatever
// happened while the connection was down is on screen once it is back.

import { API, AuthError, itemsOf, readEventStream } from "./api.js";

const IDLE_MS = 45_000;        // no byte (not even a keep-alive) for this long: reconnect
const RESYNC_MS = 60_000;      // full snapshot this often, as a safety net
const MAX_BACKOFF_MS = 5_000;
const SNAPSHOT_PAGE = 500;
const SNAPSHOT_PAGES = 40;

export class LiveConnection extends EventTarget {
  constructor({ api, store }) {
    super();
    this.api = api;
    this.store = store;
    this.state = "connecting";
    this.stopped = false;
    this.abort = null;
    this.retryMs = 1000;
    this.attempt = 0;
    this.resyncTimer = null;
    this.syncing = null;
    this.wake = null;
  }

  setState(state, detail = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  start() {
    this.loop();
    this.resyncTimer = setInterval(() => { if (this.state === "live") this.resync(); }, RESYNC_MS);
    this.onVisible = () => { if (document.visibilityState === "visible") this.reconnectNow(); };
    this.onOnline = () => this.reconnectNow();
    document.addEventListener("visibilitychange", this.onVisible);
    window.addEventListener("online", this.onOnline);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    document.removeEventListener("visibilitychange", this.onVisible);
    window.removeEventListener("online", this.onOnline);
    this.abort?.abort();
    this.wake?.();
  }

  /** Cut a waiting backoff short (the network came back, the tab became visible). */
  reconnectNow() {
    if (this.state !== "live") this.wake?.();
  }

  async loop() {
    while (!this.stopped) {
      this.abort = new AbortController();
      const url = new URL(`${API}/alerts/stream`, location.origin);
      const headers = { Authorization: `Bearer ${this.api.key}`, Accept: "text/event-stream" };
      if (this.store.lastSeq !== null) {
        headers["Last-Event-ID"] = String(this.store.lastSeq);
        url.searchParams.set("last_event_id", String(this.store.lastSeq));
      }
      try {
        await readEventStream(url, {
          headers,
          signal: this.abort.signal,
          idleMs: IDLE_MS,
          onOpen: () => {
            this.attempt = 0;
            this.setState("live");
            this.resync();
          },
          onRetry: (ms) => { this.retryMs = Math.min(Math.max(ms, 250), MAX_BACKOFF_MS); },
          onEvent: (event) => this.onEvent(event),
        });
      } catch (err) {
        if (err instanceof AuthError) {
          this.setState("offline", { auth: err });
          return;
        }
      }
      if (this.stopped) return;
      this.attempt += 1;
      const backoff = Math.min(MAX_BACKOFF_MS, this.retryMs * 2 ** Math.min(this.attempt - 1, 4));
      const wait = Math.round(backoff * (0.75 + Math.random() * 0.5));
      this.setState("reconnecting", { retryInMs: wait, attempt: this.attempt });
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
  }

  onEvent({ id, event, data }) {
    let change;
    try {
      change = JSON.parse(data);
    } catch {
      return;
    }
    if (change && typeof change === "object" && change.seq === undefined && id && /^\d+$/.test(id)) {
      change.seq = Number(id);
    }
    if (event === "reset" || event === "resync") {
      // The server cannot replay what this console missed (its Last-Event-ID was above the
      // store's newest change, say after a restore, or not a change seq): reload the list and
      // resume from the head it names, not from the stale id.
      const head = change && Number.isSafeInteger(change.head) ? change.head
        : (id && /^\d+$/.test(id) ? Number(id) : null);
      if (event === "reset" && head !== null) this.store.lastSeq = head;
      this.resync();
      return;
    }
    if (change && change.alert) this.store.applyChange(change);
  }

  /** Fetch every unresolved alert and merge it with what the stream delivered meanwhile. */
  resync() {
    if (this.syncing) return this.syncing;
    this.syncing = (async () => {
      this.store.beginSnapshot();
      try {
        const alerts = [];
        for (const status of ["open", "acknowledged"]) {
          let cursor = null;
          for (let page = 0; page < SNAPSHOT_PAGES; page += 1) {
            const body = await this.api.get("/alerts", { status, limit: SNAPSHOT_PAGE, cursor });
            alerts.push(...itemsOf(body, "alerts"));
            cursor = body && body.next_cursor;
            if (!cursor) break;
          }
        }
        this.store.finishSnapshot(alerts);
        this.dispatchEvent(new CustomEvent("synced"));
      } catch (err) {
        this.store.abortSnapshot();
        if (err instanceof AuthError) {
          this.setState("offline", { auth: err });
          this.stop();
        }
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }
}
