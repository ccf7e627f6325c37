// The console's picture of the alerts: snapshots from the list API merged with the change
// stream. Every change carries the whole alert, so merging keeps whichever version is newer;
// order of arrival (stream vs. snapshot, replays after a reconnect) does not matter.

import { label } from "./i18n.js";

export const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
const STATUS_RANK = { open: 0, acknowledged: 1, resolved: 2 };

/** The alert type in the dispatcher's language (the API value stays English). */
export const typeLabel = (type) => label("type", type || "alert");

/** True when `b` is at least as new as `a`. The lifecycle moves forward, except that a new
 * call (a repeat: `repeats` goes up) puts an acknowledged alert back to open; resolved is final. */
export function isNewer(a, b) {
  if (!a) return true;
  const ra = a.status === "resolved";
  const rb = b.status === "resolved";
  if (ra !== rb) return rb;
  const pa = a.repeats ?? 0;
  const pb = b.repeats ?? 0;
  if (pa !== pb) return pb > pa;
  const sa = STATUS_RANK[a.status] ?? 0;
  const sb = STATUS_RANK[b.status] ?? 0;
  if (sb !== sa) return sb > sa;
  const ua = a.updated_at ?? 0;
  const ub = b.updated_at ?? 0;
  if (ub !== ua) return ub > ua;
  return (b.occurrences ?? 1) >= (a.occurrences ?? 1);
}

/** True when `b` is the version `a` was (the same change of the alert, once stored). */
function sameVersion(a, b) {
  return a.status === b.status && (a.repeats ?? 0) === (b.repeats ?? 0)
    && (a.updated_at ?? 0) === (b.updated_at ?? 0) && (a.occurrences ?? 1) === (b.occurrences ?? 1)
    && (a.escalation_level ?? 0) === (b.escalation_level ?? 0);
}

/** Queue order: most severe first, then oldest first (waiting longest). */
export function queueOrder(a, b) {
  const s = (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9);
  if (s) return s;
  if (a.opened_at !== b.opened_at) return (a.opened_at ?? 0) - (b.opened_at ?? 0);
  return String(a.id).localeCompare(String(b.id));
}

export class AlertStore extends EventTarget {
  constructor() {
    super();
    this.alerts = new Map();
    this.lastSeq = null;
    this._buffer = null;
    this._unstored = new Map(); // alert id -> the version shown before it was stored
  }

  /** Apply one change from the stream (an AlertChange: {seq, action, alert, ...}). */
  applyChange(change) {
    if (change && typeof change.seq === "number") {
      this.lastSeq = this.lastSeq === null ? change.seq : Math.max(this.lastSeq, change.seq);
    }
    const alert = change && (change.alert || change);
    if (!alert || alert.id === undefined) return false;
    this._buffer?.push(alert);
    return this._put(alert, change.action, change.unstored === true);
  }

  /** An unstored change (shown before the gateway wrote it: an emergency call, or a full
   * disk) is followed by the same change stored: that one confirms it (`confirmed` in the
   * event's detail: nothing new happened, so nothing rings again). */
  _put(alert, action, unstored = false) {
    const known = this.alerts.get(alert.id);
    if (!isNewer(known, alert)) return false;
    const shown = this._unstored.get(alert.id);
    const confirmed = !unstored && shown !== undefined && sameVersion(shown, alert);
    if (unstored) this._unstored.set(alert.id, alert);
    else this._unstored.delete(alert.id);
    this.alerts.set(alert.id, alert);
    this.dispatchEvent(new CustomEvent("change", {
      detail: { alert, previous: known, action, unstored, confirmed },
    }));
    return true;
  }

  /** Alerts changed during a snapshot fetch are kept aside and re-applied on top of it. */
  beginSnapshot() { this._buffer = []; }

  /** Replace the open/acknowledged set with a snapshot taken after beginSnapshot(). */
  finishSnapshot(alerts) {
    const buffered = this._buffer || [];
    this._buffer = null;
    const next = new Map();
    for (const alert of alerts) next.set(alert.id, alert);
    for (const alert of buffered) {
      if (isNewer(next.get(alert.id), alert)) next.set(alert.id, alert);
    }
    // Alerts no longer open in the snapshot were resolved while we were not looking; keep
    // the resolved ones we know of (detail pages), drop stale open ones.
    for (const [id, alert] of this.alerts) {
      if (!next.has(id) && alert.status === "resolved") next.set(id, alert);
    }
    for (const id of [...this._unstored.keys()]) if (!next.has(id)) this._unstored.delete(id);
    const before = this.alerts;
    this.alerts = next;
    const fresh = [...next.values()].filter((a) => !before.has(a.id));
    this.dispatchEvent(new CustomEvent("reset", { detail: { fresh } }));
  }

  abortSnapshot() { this._buffer = null; }

  get open() {
    return [...this.alerts.values()].filter((a) => a.status === "open").sort(queueOrder);
  }

  get acknowledged() {
    return [...this.alerts.values()].filter((a) => a.status === "acknowledged").sort(queueOrder);
  }

  get openCritical() {
    return this.open.filter((a) => a.severity === "critical");
  }
}
