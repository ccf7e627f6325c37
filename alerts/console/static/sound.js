// Alarm sounds made with WebAudio (no audio files). While an unacknowledged critical alert is
// open, a two-tone alarm repeats; a new high-severity alert chimes once. Muting is remembered
// in localStorage (a dispatcher's preference, not a secret).

const MUTE_KEY = "homecare.console.muted";
const REPEAT_MS = 4000;

export class Alarm extends EventTarget {
  constructor() {
    super();
    this.muted = localStorage.getItem(MUTE_KEY) === "1";
    this.ctx = null;
    this.timer = null;
    this.active = false;
  }

  /** The browser lets audio start only after a user gesture; call from one. */
  unlock() {
    try {
      if (!this.ctx) {
        const Ctx = window.AudioContext || window.webkitAudioContext;
        if (!Ctx) return;
        this.ctx = new Ctx();
        this.ctx.addEventListener("statechange", () => this.dispatchEvent(new Event("state")));
      }
      if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    } catch { /* no audio device: the visual alarm remains */ }
    this.dispatchEvent(new Event("state"));
  }

  /** True when sound is wanted but the browser holds it back. */
  get blocked() {
    return !this.muted && (!this.ctx || this.ctx.state !== "running");
  }

  setMuted(muted) {
    this.muted = muted;
    localStorage.setItem(MUTE_KEY, muted ? "1" : "0");
    if (!muted) this.unlock();
    this._schedule();
    this.dispatchEvent(new Event("state"));
  }

  /** Keep the repeating alarm on while `active` (open critical alerts exist). */
  setActive(active) {
    if (active === this.active) return;
    this.active = active;
    if (active) this._ring();
    this._schedule();
  }

  /** Ring at once (a new or escalated critical alert), then keep the usual rhythm. */
  ringNow() {
    if (!this.active) return;
    this._ring();
    this._schedule();
  }

  chime() {
    if (!this.muted) this._tones([[880, 0, 0.18], [1320, 0.2, 0.25]], 0.18);
  }

  _schedule() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.active && !this.muted) this.timer = setInterval(() => this._ring(), REPEAT_MS);
  }

  _ring() {
    if (this.muted || !this.active) return;
    const pattern = [];
    for (let i = 0; i < 3; i += 1) {
      pattern.push([988, i * 0.5, 0.22], [740, i * 0.5 + 0.24, 0.22]);
    }
    this._tones(pattern, 0.3);
  }

  _tones(tones, volume) {
    const ctx = this.ctx;
    if (!ctx || ctx.state !== "running") return;
    const start = ctx.currentTime + 0.02;
    for (const [freq, at, length] of tones) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "square";
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, start + at);
      gain.gain.exponentialRampToValueAtTime(volume, start + at + 0.02);
      gain.gain.setValueAtTime(volume, start + at + length - 0.04);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + at + length);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start + at);
      osc.stop(start + at + length + 0.01);
    }
  }
}
