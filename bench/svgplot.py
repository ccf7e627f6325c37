"""Line charts as a standalone SVG file, with no plotting library: panels stacked vertically,
sharing the x axis (minutes), each with its own y axis, series, and optional marks (a
vertical line with a label, e.g. a fault) and spans (a shaded interval, e.g. an outage).

>>> svg = chart([Panel("RSS", "MB", [Series("gateway", [0, 1, 2], [100, 110, 105])])],
...             title="soak")
>>> svg.startswith("<svg") and "polyline" in svg and "RSS (MB)" in svg
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
WIDTH = 900
PANEL_HEIGHT = 170
LEFT, RIGHT, TOP, GAP = 70, 20, 40, 45


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    """``None``: no value there (a gap in the line)."""


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    unit: str
    series: Sequence[Series]
    log: bool = False
    """A logarithmic y axis (values <= 0 are left out)."""


@dataclass(frozen=True, slots=True)
class Marks:
    lines: Sequence[tuple[float, str]] = ()
    spans: Sequence[tuple[float, float, str]] = ()


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10 * power


class _Scale:
    """A panel's y axis: linear from 0 to a round maximum, or logarithmic by decades."""

    def __init__(self, values: Sequence[float], log: bool, top: int, bottom: int) -> None:
        self.log, self.top, self.bottom = log, top, bottom
        if log:
            self.lo = math.floor(math.log10(min(values, default=1.0)))
            self.hi = max(self.lo + 1, math.ceil(math.log10(max(values, default=10.0))))
            self.max = 0.0
        else:
            self.lo = self.hi = 0
            self.max = _nice_max(max(values, default=1.0))

    def y(self, value: float) -> float:
        span = self.bottom - self.top
        if self.log:
            return self.bottom - span * (math.log10(value) - self.lo) / (self.hi - self.lo)
        return self.bottom - span * value / self.max

    def ticks(self) -> list[float]:
        if self.log:
            return [10.0 ** e for e in range(self.lo, self.hi + 1)]
        return [self.max * i / 4 for i in range(5)]


def chart(panels: Sequence[Panel], *, title: str, x_label: str = "minutes",
          marks: Marks | None = None) -> str:
    """The SVG document."""
    marks = marks or Marks()
    xs_all = [x for p in panels for s in p.series for x in s.xs]
    x_max = max(xs_all, default=1.0) or 1.0
    height = TOP + len(panels) * (PANEL_HEIGHT + GAP) + 10
    plot_w = WIDTH - LEFT - RIGHT
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{escape(title)}</text>']

    def sx(x: float) -> float:
        return LEFT + plot_w * x / x_max

    for n, panel in enumerate(panels):
        top = TOP + n * (PANEL_HEIGHT + GAP)
        bottom = top + PANEL_HEIGHT
        values = [y for s in panel.series for y in s.ys
                  if y is not None and (not panel.log or y > 0)]
        scale = _Scale(values, panel.log, top, bottom)
        sy = scale.y

        for start, end, label in marks.spans:
            out.append(f'<rect x="{sx(start):.1f}" y="{top}" width="{sx(end) - sx(start):.1f}" '
                       f'height="{PANEL_HEIGHT}" fill="#f2d7d5" opacity="0.6">'
                       f'<title>{escape(label)}</title></rect>')
        out.append(f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" '
                   'fill="none" stroke="#999"/>')
        out.append(f'<text x="{LEFT}" y="{top - 6}" font-weight="bold">'
                   f'{escape(panel.title)} ({escape(panel.unit)})</text>')
        for tick in scale.ticks():
            y = sy(tick)
            out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                       'stroke="#eee"/>')
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                       f'{tick:g}</text>')
        for x, label in marks.lines:
            out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{top}" y2="{bottom}" '
                       f'stroke="#c0392b" stroke-dasharray="3,3"><title>{escape(label)}'
                       '</title></line>')
        for i, series in enumerate(panel.series):
            colour = COLOURS[i % len(COLOURS)]
            runs: list[list[str]] = [[]]
            for x, value in zip(series.xs, series.ys, strict=True):
                if value is None or (panel.log and value <= 0):
                    runs.append([])
                    continue
                runs[-1].append(f"{sx(x):.1f},{sy(value):.1f}")
            for run in runs:
                if len(run) == 1:
                    cx, cy = run[0].split(",")
                    out.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="{colour}"/>')
                elif run:
                    out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.3" '
                               f'points="{" ".join(run)}"/>')
            lx = LEFT + 10 + 150 * i
            out.append(f'<rect x="{lx}" y="{top + 6}" width="10" height="3" fill="{colour}"/>')
            out.append(f'<text x="{lx + 14}" y="{top + 11}">{escape(series.name)}</text>')
        step = _nice_max(x_max / 6)
        for i in range(int(x_max / step) + 1):
            x = step * i
            out.append(f'<text x="{sx(x):.1f}" y="{bottom + 14}" text-anchor="middle">'
                       f'{x:g}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{height - 4}" text-anchor="middle">'
               f'{escape(x_label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["Marks", "Panel", "Series", "chart"]
