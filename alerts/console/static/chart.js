// Small SVG time-series charts: a line (rates, levels), a step band (in bed yes/no) or bars
// (movement counts). Drawn at the element's real width and redrawn when it changes, so text
// stays legible on a phone.

import { h, svg } from "./dom.js";
import { fmtClock, t, zoneHourMinute } from "./i18n.js";

const HEIGHT = 140;
const PAD = { left: 38, right: 8, top: 8, bottom: 22 };
const GAP_MS = 10 * 60_000; // a hole of this length in the data breaks the line

function niceTicks(min, max, count) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-9; v += step) ticks.push(+v.toFixed(10));
  return ticks;
}

/** Whole hours in the station's zone (some zones are off the hour by 30 or 45 min). */
function hourTicks(t0, t1, width) {
  const span = t1 - t0;
  const wanted = Math.max(2, Math.floor(width / 70));
  const hours = [1, 2, 3, 4, 6, 12, 24].find((hh) => span / (hh * 3_600_000) <= wanted) || 24;
  const step = 15 * 60_000;
  const ticks = [];
  for (let at = Math.ceil(t0 / step) * step; at <= t1; at += step) {
    const [hour, minute] = zoneHourMinute(at);
    if (minute === 0 && hour % hours === 0) ticks.push(at);
  }
  return ticks;
}

function draw(el, { points, t0, t1, kind, unit, min, max }) {
  const width = Math.max(240, Math.round(el.clientWidth || 400));
  const innerW = width - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const values = points.map((p) => p[1]);
  let lo = min ?? Math.min(...values);
  let hi = max ?? Math.max(...values);
  if (!values.length) { lo = min ?? 0; hi = max ?? 1; }
  if (hi === lo) { hi += 1; lo -= kind === "bars" ? 0 : 1; }
  if (kind === "line" && min === undefined && max === undefined) {
    const pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;
  }
  if (kind === "bars") lo = Math.min(0, lo);
  const x = (t) => PAD.left + ((t - t0) / (t1 - t0)) * innerW;
  const y = (v) => PAD.top + innerH - ((v - lo) / (hi - lo)) * innerH;

  const root = svg("svg", { viewBox: `0 0 ${width} ${HEIGHT}`, width, height: HEIGHT, role: "img",
    "aria-hidden": "true" });
  const yTicks = kind === "step" ? [0, 1] : niceTicks(lo, hi, 3);
  for (const v of yTicks) {
    root.append(svg("line", { class: "grid", x1: PAD.left, x2: width - PAD.right, y1: y(v), y2: y(v) }));
    const label = kind === "step" ? t(v ? "value.yes" : "value.no") : String(v);
    root.append(svg("text", { class: "tick", x: PAD.left - 4, y: y(v) + 4, "text-anchor": "end" }, label));
  }
  for (const at of hourTicks(t0, t1, innerW)) {
    root.append(svg("line", { class: "axis", x1: x(at), x2: x(at), y1: HEIGHT - PAD.bottom, y2: HEIGHT - PAD.bottom + 4 }));
    root.append(svg("text", { class: "tick", x: x(at), y: HEIGHT - 6, "text-anchor": "middle" }, fmtClock(at)));
  }
  root.append(svg("line", { class: "axis", x1: PAD.left, x2: width - PAD.right, y1: HEIGHT - PAD.bottom, y2: HEIGHT - PAD.bottom }));

  if (!points.length) {
    root.append(svg("text", { class: "nodata", x: PAD.left + innerW / 2, y: PAD.top + innerH / 2, "text-anchor": "middle" },
      t("chart.no_data")));
  } else if (kind === "bars") {
    const barW = Math.max(1, innerW / ((t1 - t0) / 60_000) * 0.9);
    let d = "";
    for (const [t, v] of points) {
      if (!v) continue;
      d += `M${x(t).toFixed(1)} ${y(0).toFixed(1)}V${y(v).toFixed(1)}h${barW.toFixed(2)}V${y(0).toFixed(1)}z`;
    }
    root.append(svg("path", { class: "bar", d }));
  } else if (kind === "step") {
    let d = "";
    for (let i = 0; i < points.length; i += 1) {
      const [t, v] = points[i];
      const next = points[i + 1];
      const end = next && next[0] - t <= GAP_MS ? next[0] : Math.min(t1, t + 60_000);
      if (v) d += `M${x(t).toFixed(1)} ${y(0).toFixed(1)}V${y(1).toFixed(1)}H${x(end).toFixed(1)}V${y(0).toFixed(1)}z`;
    }
    root.append(svg("path", { class: "area", d }));
  } else {
    let d = "";
    let prev = null;
    for (const [t, v] of points) {
      d += `${prev === null || t - prev > GAP_MS ? "M" : "L"}${x(t).toFixed(1)} ${y(v).toFixed(1)}`;
      prev = t;
    }
    root.append(svg("path", { class: "line", d }));
  }
  el.replaceChildren(root);
}

/**
 * A chart panel: title, latest value and the SVG. `points` are [t, value] pairs sorted by t;
 * `t0`..`t1` is the window shown.
 */
export function chartPanel({ title, unit = "", points, t0, t1, kind = "line", min, max, format }) {
  const latest = points.length ? points[points.length - 1][1] : null;
  const shown = latest === null ? "–" : format ? format(latest)
    : unit ? t("chart.value", { value: +latest.toFixed(1), unit }) : String(+latest.toFixed(1));
  const area = h("div", { class: "chart-area" });
  const summary = points.length
    ? t("chart.summary", { title, n: points.length, shown }) : t("chart.summary_empty", { title });
  const panel = h("figure", { class: "chart", "aria-label": summary },
    h("h3", {}, h("span", {}, title), h("span", { class: "muted" }, shown)),
    area);
  const spec = { points, t0, t1, kind, unit, min, max };
  let lastWidth = -1;
  const observer = new ResizeObserver(() => {
    if (!area.isConnected) { observer.disconnect(); return; }
    const w = area.clientWidth;
    if (w && w !== lastWidth) { lastWidth = w; draw(area, spec); }
  });
  observer.observe(area);
  return panel;
}
