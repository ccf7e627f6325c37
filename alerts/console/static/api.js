// The alert API as the console uses it: JSON calls with the Bearer key, and the alert change
// stream read with fetch() so that the Authorization header can be sent (EventSource cannot).

import { t } from "./i18n.js";

export const API = "/api/v1";

export class AuthError extends Error {
  constructor(status, message) {
    super(message || t(status === 403 ? "api.forbidden" : "login.refused"));
    this.status = status;
  }
}

export class ApiError extends Error {
  /** `problems`: each problem the API listed (a validation error per entry), if it did. */
  constructor(status, message, problems = []) {
    super(message);
    this.status = status;
    this.problems = problems;
  }
}

/** A 422's entry ({loc, msg}) as "duty.0.site: msg"; a plain string as it is. */
function problemText(d) {
  if (typeof d === "string") return d;
  if (d && d.msg) {
    const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
    return where ? `${where}: ${d.msg}` : d.msg;
  }
  return JSON.stringify(d);
}

async function errorBody(res) {
  try {
    const body = await res.json();
    const detail = body && (body.detail ?? body.error ?? body.message);
    if (typeof detail === "string") return { message: detail, problems: [] };
    if (Array.isArray(detail)) {
      const problems = detail.map(problemText);
      return { message: problems.join("; "), problems };
    }
    if (detail) return { message: JSON.stringify(detail), problems: [] };
  } catch { /* not JSON */ }
  return { message: `HTTP ${res.status}`, problems: [] };
}

async function errorMessage(res) {
  return (await errorBody(res)).message;
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, Accept: "application/json", ...extra };
  }

  async request(method, path, { query, body, signal } = {}) {
    const url = new URL(API + path, location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      if (value === undefined || value === null || value === "") continue;
      for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(name, v);
    }
    const init = { method, headers: this.headers(), signal, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(url, init);
    if (res.status === 401 || res.status === 403) throw new AuthError(res.status, await errorMessage(res));
    if (!res.ok) {
      const { message, problems } = await errorBody(res);
      throw new ApiError(res.status, message, problems);
    }
    if (res.status === 204) return null;
    return res.json();
  }

  get(path, query, signal) { return this.request("GET", path, { query, signal }); }
  post(path, body) { return this.request("POST", path, { body }); }
  put(path, body) { return this.request("PUT", path, { body }); }
}

/** The items of a list answer, whatever the envelope ({items}, {alerts}, {data} or a bare list). */
export function itemsOf(body, ...names) {
  if (Array.isArray(body)) return body;
  for (const name of [...names, "items", "data", "results"]) {
    if (body && Array.isArray(body[name])) return body[name];
  }
  return [];
}

/**
 * Read a Server-Sent Events stream with fetch(). Resolves when the server ends the stream,
 * rejects on network errors, on `idleMs` without a byte (not even a keep-alive comment), or
 * with AuthError on 401/403. `onOpen(response)` runs once the response headers are in,
 * `onEvent({id, event, data})` for every dispatched event, `onRetry(ms)` when the server
 * sets its reconnection delay.
 */
export async function readEventStream(url, { headers, signal, idleMs, onOpen, onEvent, onRetry }) {
  const abort = new AbortController();
  const stopOnOuter = () => abort.abort(signal.reason);
  signal?.addEventListener("abort", stopOnOuter, { once: true });
  let idleTimer = null;
  const touch = () => {
    clearTimeout(idleTimer);
    if (idleMs) idleTimer = setTimeout(() => abort.abort(new Error("stream idle")), idleMs);
  };
  try {
    touch();
    const res = await fetch(url, { headers, signal: abort.signal, cache: "no-store" });
    if (res.status === 401 || res.status === 403) throw new AuthError(res.status, await errorMessage(res));
    if (!res.ok || !res.body) throw new ApiError(res.status, `stream: HTTP ${res.status}`);
    touch();
    onOpen?.(res);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let afterCR = false;
    let event = { id: null, event: "", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      touch();
      // Lines end with CRLF, LF or CR (the SSE grammar); a CRLF may be split across chunks.
      let chunk = value;
      if (afterCR && chunk.startsWith("\n")) chunk = chunk.slice(1);
      afterCR = chunk.endsWith("\r");
      buffer += chunk;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (event.data.length) {
            onEvent({ id: event.id, event: event.event || "message", data: event.data.join("\n") });
          }
          event = { id: event.id, event: "", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") event.data.push(text);
        else if (field === "event") event.event = text;
        else if (field === "id" && !text.includes("\0")) event.id = text;
        else if (field === "retry" && /^\d+$/.test(text)) onRetry?.(Number(text));
      }
    }
  } finally {
    clearTimeout(idleTimer);
    signal?.removeEventListener("abort", stopOnOuter);
    abort.abort();
  }
}
