// The sign-in, kept for the browser session rather than per tab. The key lives in this tab's
// sessionStorage (a reload keeps it) and in memory; a new tab asks the console's other tabs
// for it over a BroadcastChannel, which reaches only pages of the same origin in the same
// browser session (not another profile or a private window). Signing in or out in one tab
// does the same in every tab. Nothing holding the key goes to localStorage or a cookie, so
// closing the browser forgets it.

const KEY_STORAGE = "homecare.console.key";
const CHANNEL = "homecare.console.session";
const ASK_MS = 400; // how long a new tab waits for a signed-in tab to answer

function stored() {
  try { return sessionStorage.getItem(KEY_STORAGE); } catch { return null; }
}

function store(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch { /* storage refused: the key stays in memory only */ }
}

/**
 * Events: "key" ({detail: {key}}) when another tab signed in or answered a request;
 * "signedout" when another tab signed out (this tab's key is already forgotten).
 */
export class Session extends EventTarget {
  constructor() {
    super();
    this.key = null;
    this.channel = typeof BroadcastChannel === "function" ? new BroadcastChannel(CHANNEL) : null;
    this.channel?.addEventListener("message", (event) => this.onMessage(event.data || {}));
  }

  onMessage({ type, key }) {
    if (type === "ask") {
      if (this.key) this.channel.postMessage({ type: "key", key: this.key });
    } else if (type === "key" && typeof key === "string" && key) {
      this.dispatchEvent(new CustomEvent("key", { detail: { key } }));
    } else if (type === "signed-out") {
      this.key = null;
      store(null);
      this.dispatchEvent(new CustomEvent("signedout"));
    }
  }

  /** This tab's key after a reload, else one a signed-in tab hands over; null if none. */
  find() {
    const saved = stored();
    if (saved || !this.channel) return Promise.resolve(saved);
    return new Promise((resolve) => {
      const done = (key) => {
        clearTimeout(timer);
        this.removeEventListener("key", onKey);
        resolve(key);
      };
      const onKey = (event) => done(event.detail.key);
      const timer = setTimeout(() => done(null), ASK_MS);
      this.addEventListener("key", onKey);
      this.channel.postMessage({ type: "ask" });
    });
  }

  /** Keep a key that works, and answer other tabs with it. */
  keep(key) {
    this.key = key;
    store(key);
  }

  /** Signed in here with the form: the other tabs at their sign-in form follow. */
  signedIn(key) {
    this.keep(key);
    this.channel?.postMessage({ type: "key", key });
  }

  /** Signed out here: every tab forgets the key. */
  signOut() {
    this.forget();
    this.channel?.postMessage({ type: "signed-out" });
  }

  /** The key no longer works (revoked, expired): forgotten in this tab only. */
  forget() {
    this.key = null;
    store(null);
  }
}
