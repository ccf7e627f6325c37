// Small SVG time-series charts: a line (rates, levels), a step band (in bed yes/no) or bars
// (movement counts), over hours (the bed page) or days (the response report). Drawn at the element's real width and redrawn when it changes, so text
// stays legible on a phone. The margins around the plot are measured from the labels as the
// browser draws them (their language, font and digits), so no axis label is cut off. Pointing
// at a chart, or focusing it and using the arrow keys, shows the nearest value with its time
// in the station's zone.

import { h, svg } from "./dom.js";
import { fmtClock, fmtDay, fmtTime, t, zoneHourMinute } from "./i18n.js";

const HEIGHT = 140;
const EDGE = 2;     // labels keep this far from the picture's edges
const GAP = 4;      // between a value label and the plot
const TICK = 4;     // an hour tick below the axis
const MIN_PAD = 8;
const TIP_PAD = 6;  // inside the tooltip's box
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

/** Local midnights in the station's zone, every `step` days so that their labels fit. */
function dayTicks(t0, t1, width) {
  const midnights = [];
  for (let at = Math.ceil(t0 / 3_600_000) * 3_600_000; at <= t1; at += 3_600_000) {
    const [hour, minute] = zoneHourMinute(at);
    if (hour === 0 && minute === 0) midnights.push(at);
  }
  const wanted = Math.max(2, Math.floor(width / 70));
  const step = Math.max(1, Math.ceil(midnights.length / wanted));
  return midnights.filter((_, i) => i % step === 0);
}

/** The axis and tooltip texts of a time: a clock time over hours, a date over days. */
const tickText = (spec, at) => (spec.axis === "days" ? fmtDay(at) : fmtClock(at));
const tipText = (spec, at) => (spec.axis === "days" ? fmtDay(at) : fmtTime(at));

/** A value as the chart's heading and its tooltip write it ("66.1 /min", "yes"). */
function valueText(v, { unit, format }) {
  if (format) return format(v);
  const value = +v.toFixed(1);
  return unit ? t("chart.value", { value, unit }) : String(value);
}

function valueRange(points, { kind, min, max }) {
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
  return [lo, hi];
}

/** The size of a text of class `cls` as drawn in `root`: {width, height, ascent}. */
function measurer(root) {
  const sizes = new Map();
  return (text, cls = "tick") => {
    const id = `${cls}\u0000${text}`;
    let size = sizes.get(id);
    if (!size) {
      const el = svg("text", { class: cls, x: 0, y: 0 }, text);
      root.append(el);
      const box = el.getBBox();
      el.remove();
      size = { width: box.width, height: box.height, ascent: -box.y };
      sizes.set(id, size);
    }
    return size;
  };
}

/** Draw the chart into `el`; returns its geometry for the cursor. */
function draw(el, spec) {
  const { points, t0, t1, kind } = spec;
  const width = Math.max(240, Math.round(el.clientWidth || 400));
  const root = svg("svg", { viewBox: `0 0 ${width} ${HEIGHT}`, width, height: HEIGHT, "aria-hidden": "true" });
  el.replaceChildren(root);
  const measure = measurer(root);
  const [lo, hi] = valueRange(points, spec);
  const yTicks = (kind === "step" ? [0, 1] : niceTicks(lo, hi, 3))
    .map((v) => ({ v, text: kind === "step" ? t(v ? "value.yes" : "value.no") : String(v) }))
    .map((tick) => ({ ...tick, size: measure(tick.text) }));
  const lineH = Math.max(measure(tickText(spec, t0)).height, ...yTicks.map((tick) => tick.size.height));

  // Margins from the labels: the widest value label on the left, half a line above the top
  // one, a line of hour labels below; half the widest hour label at each side, so a tick at
  // the window's edge keeps its whole label.
  const pad = {
    top: Math.max(MIN_PAD, Math.ceil(lineH / 2) + EDGE),
    bottom: TICK + 1 + Math.ceil(lineH) + EDGE,
    left: Math.max(MIN_PAD, EDGE + Math.ceil(Math.max(...yTicks.map((tick) => tick.size.width))) + GAP),
    right: MIN_PAD,
  };
  let xTicks = [];
  let x = null;
  for (let round = 0; round < 4; round += 1) {
    const innerW = width - pad.left - pad.right;
    x = (at) => pad.left + ((at - t0) / (t1 - t0)) * innerW;
    xTicks = (spec.axis === "days" ? dayTicks : hourTicks)(t0, t1, innerW)
      .map((at) => ({ at, text: tickText(spec, at), size: measure(tickText(spec, at)) }));
    const half = Math.ceil(Math.max(0, ...xTicks.map((tick) => tick.size.width / 2))) + EDGE;
    const right = Math.max(pad.right, half);
    const left = Math.max(pad.left, half);
    if (right === pad.right && left === pad.left) break;
    pad.right = right;
    pad.left = left;
  }
  // Whatever the rounds left (never seen): a label that does not fit is not drawn.
  xTicks = xTicks.filter((tick) => x(tick.at) - tick.size.width / 2 >= EDGE - 0.5
    && x(tick.at) + tick.size.width / 2 <= width - EDGE + 0.5);
  const innerW = width - pad.left - pad.right;
  const innerH = HEIGHT - pad.top - pad.bottom;
  const bottom = HEIGHT - pad.bottom;
  const y = (v) => pad.top + innerH - ((v - lo) / (hi - lo)) * innerH;

  for (const { v, text, size } of yTicks) {
    root.append(svg("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
    root.append(svg("text", { class: "tick", x: pad.left - GAP, y: y(v) + size.ascent - size.height / 2,
      "text-anchor": "end" }, text));
  }
  for (const { at, text, size } of xTicks) {
    root.append(svg("line", { class: "axis", x1: x(at), x2: x(at), y1: bottom, y2: bottom + TICK }));
    root.append(svg("text", { class: "tick", x: x(at), y: bottom + TICK + 1 + size.ascent, "text-anchor": "middle" }, text));
  }
  root.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: bottom, y2: bottom }));

  if (!points.length) {
    const text = spec.noData || t("chart.no_data");
    const size = measure(text, "nodata");
    const half = size.width / 2;
    const cx = Math.min(Math.max(pad.left + innerW / 2, EDGE + half), width - EDGE - half);
    root.append(svg("text", { class: "nodata", x: cx, y: pad.top + innerH / 2 + size.ascent - size.height / 2,
      "text-anchor": "middle" }, text));
  } else if (kind === "bars") {
    const barW = Math.max(1, innerW / ((t1 - t0) / spec.barMs) * 0.9);
    let d = "";
    for (const [at, v] of points) {
      if (!v) continue;
      d += `M${x(at).toFixed(1)} ${y(0).toFixed(1)}V${y(v).toFixed(1)}h${barW.toFixed(2)}V${y(0).toFixed(1)}z`;
    }
    root.append(svg("path", { class: "bar", d }));
  } else if (kind === "step") {
    let d = "";
    for (let i = 0; i < points.length; i += 1) {
      const [at, v] = points[i];
      const next = points[i + 1];
      const end = next && next[0] - at <= spec.gapMs ? next[0] : Math.min(t1, at + 60_000);
      if (v) d += `M${x(at).toFixed(1)} ${y(0).toFixed(1)}V${y(1).toFixed(1)}H${x(end).toFixed(1)}V${y(0).toFixed(1)}z`;
    }
    root.append(svg("path", { class: "area", d }));
  } else {
    let d = "";
    let prev = null;
    for (const [at, v] of points) {
      d += `${prev === null || at - prev > spec.gapMs ? "M" : "L"}${x(at).toFixed(1)} ${y(v).toFixed(1)}`;
      prev = at;
    }
    root.append(svg("path", { class: "line", d }));
    // A point with no neighbour within the gap draws no line: a dot shows it (one value a day).
    points.forEach(([at, v], i) => {
      const before = i > 0 && at - points[i - 1][0] <= spec.gapMs;
      const after = i < points.length - 1 && points[i + 1][0] - at <= spec.gapMs;
      if (!before && !after) root.append(svg("circle", { class: "point", cx: x(at), cy: y(v), r: 3 }));
    });
  }

  const cursor = svg("g", { class: "cursor", visibility: "hidden" },
    svg("line", { class: "crosshair", y1: pad.top, y2: bottom }),
    svg("circle", { class: "dot", r: 3.5 }),
    svg("rect", { class: "tip-box", rx: 4 }),
    svg("text", { class: "tip-text tip-time" }),
    svg("text", { class: "tip-text tip-value" }));
  root.append(cursor);
  return { root, width, pad, innerW, innerH, x, y, cursor, measure };
}

/** Show point `i` under the cursor: crosshair, dot, and its time and value in a box kept
 * inside the picture. Returns the two texts. */
function place(plot, spec, i) {
  const [at, v] = spec.points[i];
  const time = tipText(spec, at);
  const value = valueText(v, spec);
  const { cursor, width, pad, innerH, measure } = plot;
  const px = plot.x(at);
  const py = plot.y(v);
  const [line, dot, box, timeEl, valueEl] = cursor.children;
  for (const name of ["x1", "x2"]) line.setAttribute(name, px);
  dot.setAttribute("cx", px);
  dot.setAttribute("cy", py);
  const a = measure(time, "tip-text tip-time");
  const b = measure(value, "tip-text tip-value");
  const boxW = Math.ceil(Math.max(a.width, b.width)) + 2 * TIP_PAD;
  const boxH = Math.ceil(a.height + b.height) + 2 * TIP_PAD;
  let left = px + 8 + boxW <= width - EDGE ? px + 8 : px - 8 - boxW;
  left = Math.min(Math.max(left, EDGE), width - EDGE - boxW);
  // Above the plot's middle when the point is low, below when it is high: never over it.
  let top = py > pad.top + innerH / 2 ? pad.top : pad.top + innerH - boxH;
  top = Math.min(Math.max(top, EDGE), HEIGHT - EDGE - boxH);
  box.setAttribute("x", left);
  box.setAttribute("y", top);
  box.setAttribute("width", boxW);
  box.setAttribute("height", boxH);
  timeEl.textContent = time;
  timeEl.setAttribute("x", left + TIP_PAD);
  timeEl.setAttribute("y", top + TIP_PAD + a.ascent);
  valueEl.textContent = value;
  valueEl.setAttribute("x", left + TIP_PAD);
  valueEl.setAttribute("y", top + TIP_PAD + a.height + b.ascent);
  cursor.setAttribute("visibility", "visible");
  return { time, value };
}

/** The index of the point nearest to time `at` (points sorted by time). */
function nearest(points, at) {
  let lo = 0;
  let hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid][0] < at) lo = mid + 1;
    else hi = mid;
  }
  return lo > 0 && at - points[lo - 1][0] < points[lo][0] - at ? lo - 1 : lo;
}

const STEPS = { ArrowLeft: -1, ArrowRight: 1, ArrowDown: -1, ArrowUp: 1, PageDown: -10, PageUp: 10 };

/**
 * A chart panel: title, latest value and the SVG. `points` are [t, value] pairs sorted by t;
 * `t0`..`t1` is the window shown. Over days (`axis: "days"`, one point a day) the axis and the
 * tooltip name dates; `gapMs` is the hole that breaks a line, `barMs` a bar's width, `noData`
 * the text of an empty chart.
 */
export function chartPanel({ title, unit = "", points, t0, t1, kind = "line", min, max, format,
  axis = "hours", gapMs = GAP_MS, barMs = 60_000, noData }) {
  const spec = { points, t0, t1, kind, unit, min, max, format, axis, gapMs, barMs, noData };
  const latest = points.length ? points[points.length - 1][1] : null;
  const shown = latest === null ? "–" : valueText(latest, spec);
  const area = h("div", points.length
    ? { class: "chart-area", tabindex: "0", role: "group", "aria-label": t("chart.explore", { title }) }
    : { class: "chart-area" });
  const said = h("p", { class: "sr-only", "aria-live": "polite" });
  const summary = points.length
    ? t("chart.summary", { title, n: points.length, shown })
    : noData ? t("chart.summary_custom", { title, text: noData }) : t("chart.summary_empty", { title });
  const panel = h("figure", { class: "chart", "aria-label": summary },
    h("h3", {}, h("span", {}, title), h("span", { class: "muted" }, shown)),
    area, said);

  let plot = null;
  let selected = null;
  const select = (i) => {
    selected = i;
    if (!plot) return;
    if (i === null) {
      plot.cursor.setAttribute("visibility", "hidden");
      return;
    }
    const { time, value } = place(plot, spec, i);
    said.textContent = t("chart.point", { time, value });
  };

  if (points.length) {
    const pointAt = (event) => {
      if (!plot) return;
      const box = plot.root.getBoundingClientRect();
      const sx = ((event.clientX - box.left) * plot.width) / (box.width || plot.width);
      select(nearest(points, t0 + ((sx - plot.pad.left) / plot.innerW) * (t1 - t0)));
    };
    area.addEventListener("pointermove", pointAt);
    area.addEventListener("pointerdown", pointAt);
    area.addEventListener("pointerleave", () => select(null));
    area.addEventListener("focus", () => { if (selected === null) select(points.length - 1); });
    area.addEventListener("blur", () => select(null));
    area.addEventListener("keydown", (event) => {
      const last = points.length - 1;
      let next;
      if (event.key === "Home") next = 0;
      else if (event.key === "End") next = last;
      else if (event.key in STEPS) next = Math.min(last, Math.max(0, (selected ?? last) + STEPS[event.key]));
      else if (event.key === "Escape") next = null;
      else return;
      event.preventDefault();
      select(next);
    });
  }

  let lastWidth = -1;
  const observer = new ResizeObserver(() => {
    if (!area.isConnected) { observer.disconnect(); return; }
    const w = area.clientWidth;
    if (w && w !== lastWidth) {
      lastWidth = w;
      plot = draw(area, spec);
      if (selected !== null) select(selected);
    }
  });
  observer.observe(area);
  return panel;
}
