"""The supervision and settlement report (:mod:`alerts.supervision`) as CSV and as a printable
HTML page with charts.

The page is one self-contained document: styles inline, charts as inline SVG, no script and
nothing fetched (it is served under the API's content security policy and opened from a file
alike), every value escaped. It prints on A4 landscape, one section per page where it fits.

>>> from alerts.supervision import SupervisionReport, Tally
>>> empty = SupervisionReport(month="2026-11", generated_at=0, institution=None, caregivers=[],
...                           institutions=[], total=Tally("*", "*"), visits=[], missed=[],
...                           catalogue={})
>>> supervision_csv(empty, "caregivers").splitlines()[0].split(",")[:4]
['institution', 'caregiver', 'planned', 'performed']
>>> "<svg" in supervision_html(empty)
True
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
from collections.abc import Sequence
from html import escape
from typing import Any, Final

from alerts.plans import UNKNOWN_SERVICE_MINUTES
from alerts.supervision import STATUSES, SupervisionReport, Tally

SUPERVISION_TABLES: Final = ("caregivers", "visits", "missed")
"""The CSV tables of a report."""
COUNTS: Final = ("planned", "performed", "verified", "unverifiable", "flagged", "pending",
                 "unfinished", "missed", "unplanned")
MINUTES: Final = ("claimed_minutes", "sensed_minutes", "services_minutes", "billable_minutes",
                  "unverifiable_minutes", "held_minutes")
COUNTERS: Final = ("reasons", "items", "billable_items")
VISIT_COLUMNS: Final = ("institution", "site", "bed", "caregiver", "visit", "day",
                        "check_in_at", "check_out_at", "status", "reasons", "plan", "services",
                        "services_minutes", "claimed_minutes", "sensed_minutes",
                        "billable_minutes", "record_seq", "record_hash")
MISSED_COLUMNS: Final = ("institution", "site", "bed", "plan", "caregiver", "window",
                         "services")
COLOURS: Final = {"verified": "#2e7d32", "unverifiable": "#f9a825", "flagged": "#c62828",
                  "pending": "#9e9e9e",
                  "unfinished": "#6a1b9a", "missed": "#ef6c00", "billable": "#2e7d32",
                  "held": "#c62828", "claimed": "#1565c0"}


def _counter(counts: dict[str, int] | Any) -> str:
    return ";".join(f"{k}:{v}" for k, v in sorted(dict(counts).items()))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ";".join(str(v) for v in value)
    return value


def supervision_csv(report: SupervisionReport, table: str) -> str:
    """One table: ``caregivers`` (a row per caregiver, then per institution with caregiver
    ``*``, then the total ``*``/``*``; counters as ``code:n;code:n``), ``visits`` (a row per
    visit, with the service record it was read from) or ``missed`` (the plans missed)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if table == "caregivers":
        writer.writerow(["institution", "caregiver", *COUNTS, *MINUTES, *COUNTERS])
        for t in [*report.caregivers, *report.institutions, report.total]:
            figures = t.to_json()
            writer.writerow([t.institution, t.caregiver, *(figures[n] for n in COUNTS),
                             *(figures[n] for n in MINUTES),
                             *(_counter(figures[n]) for n in COUNTERS)])
    elif table == "visits":
        writer.writerow(VISIT_COLUMNS)
        for line in report.visits:
            writer.writerow([_cell(getattr(line, n)) for n in VISIT_COLUMNS])
    elif table == "missed":
        writer.writerow(MISSED_COLUMNS)
        for plan in report.missed:
            writer.writerow([_cell(getattr(plan, n)) for n in MISSED_COLUMNS])
    else:
        raise ValueError(f"no table {table!r}: one of {', '.join(SUPERVISION_TABLES)}")
    return out.getvalue()


# --- the page ----------------------------------------------------------------------------------

_STYLE = """
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK SC",sans-serif;
color:#1b1b1b;margin:24px;max-width:1180px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #ccc}
.meta{color:#555;margin-bottom:16px}
.chain{border:1px solid #9c9;background:#f3fbf3;border-radius:6px;padding:6px 10px;margin:8px 0}
.chain.bad{border:3px solid #c00;background:#fee;color:#900;font-size:16px;font-weight:bold}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#555}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-size:12px}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:right}
th:first-child,td:first-child,th.l,td.l{text-align:left}
thead th{background:#f3f3f3}tr.sum td{font-weight:600;background:#fafafa}
.legend span{display:inline-block;margin-right:14px}
.charts{display:flex;flex-wrap:wrap;gap:24px}
.note{color:#555;font-size:12px}
@page{size:A4 landscape;margin:12mm}
@media print{body{margin:0;max-width:none}section{break-inside:avoid}h2{break-after:avoid}}
"""

PAGE_POLICY: Final = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
    + "'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
"""The page's Content-Security-Policy: its own style block (by hash), nothing else."""


def _num(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"
    return f"{value:,}"


def _label(t: Tally, many: bool) -> str:
    return f"{t.institution} / {t.caregiver}" if many else t.caregiver


def _bars(title: str, rows: Sequence[tuple[str, Sequence[tuple[str, float]]]],
          *, stacked: bool, width: int = 560) -> str:
    """A horizontal bar chart: each row a label and its (series, value) parts, stacked or
    side by side."""
    label_w, bar_h, gap = 170, 14, 8
    per_row = bar_h if stacked else bar_h * max(1, max((len(p) for _, p in rows), default=1))
    height = 28 + len(rows) * (per_row + gap) + 10
    biggest = max((sum(v for _, v in parts) if stacked else max((v for _, v in parts), default=0)
                   for _, parts in rows), default=0) or 1
    scale = (width - label_w - 60) / biggest
    out = [f'<svg role="img" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" aria-label="{escape(title)}"><title>{escape(title)}</title>'
           f'<text x="0" y="14" font-size="13" font-weight="600">{escape(title)}</text>']
    y = 28
    for label, parts in rows:
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 3}" font-size="11" '
                   f'text-anchor="end">{escape(label[:28])}</text>')
        x = float(label_w)
        for i, (series, value) in enumerate(parts):
            w = value * scale
            top = y if stacked else y + i * bar_h
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{top}" width="{w:.1f}" height="{bar_h - 2}" '
                           f'fill="{COLOURS.get(series, "#555")}"><title>{escape(series)}: '
                           f'{_num(value)}</title></rect>')
            if stacked:
                x += w
            elif value:
                out.append(f'<text x="{x + w + 4:.1f}" y="{top + bar_h - 4}" '
                           f'font-size="10">{_num(value)}</text>')
        if stacked:
            total = sum(v for _, v in parts)
            out.append(f'<text x="{x + 4:.1f}" y="{y + bar_h - 3}" font-size="10">'
                       f'{_num(total)}</text>')
        y += per_row + gap
    if not rows:
        out.append(f'<text x="0" y="{y + 10}" font-size="11" fill="#555">nothing to show'
                   '</text>')
    out.append("</svg>")
    return "".join(out)


def _legend(series: Sequence[str]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
        f'fill="{COLOURS[s]}"/></svg> {escape(s)}</span>' for s in series) + "</div>"


def _row(cells: Sequence[Any], *, left: int = 1, cls: str = "") -> str:
    tds = "".join(f'<td{" class=l" if i < left else ""}>'
                  f'{escape(_num(c) if isinstance(c, int | float) else str(c))}</td>'
                  for i, c in enumerate(cells))
    return f'<tr{f" class={cls}" if cls else ""}>{tds}</tr>'


def _table(head: Sequence[str], rows: Sequence[str], *, left: int = 1) -> str:
    ths = "".join(f'<th{" class=l" if i < left else ""}>{escape(h)}</th>'
                  for i, h in enumerate(head))
    return f"<table><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _chain_banner(report: SupervisionReport) -> str:
    """The service log chain's verification, first on the page (red when it is not sound)."""
    chain = report.chain
    if chain is None:
        return ('<div class="chain bad">Service log chain NOT VERIFIED for this report: its '
                'figures are not vouched for</div>')
    checked = (f" · verified {escape(_when(chain.verified_at))}, {chain.checked} records "
               f"recomputed from record {chain.from_seq}")
    if chain.full_verified_at is not None:
        checked += (f"; last full verification {escape(_when(chain.full_verified_at))}"
                    f" ({'sound' if chain.full_sound else 'NOT SOUND'})")
    cls = "chain" if chain.sound else "chain bad"
    return f'<div class="{cls}">{escape(chain.headline())}{checked}</div>'


def supervision_html(report: SupervisionReport) -> str:
    """The printable page: totals, charts (visits by caregiver, flagged by reason, minutes
    claimed, billable and held), the tables per institution and caregiver, the flagged visits
    with their reasons and service records, the unverifiable ones, the missed plans and what
    is billable per item."""
    total = report.total
    many = len(report.institutions) > 1
    scope = report.institution or "all institutions"
    cards = "".join(f'<div class="card"><b>{_num(value)}</b><span>{escape(name)}</span></div>'
                    for name, value in (
                        ("planned", total.planned), ("performed", total.performed),
                        ("verified", total.verified), ("unverifiable", total.unverifiable),
                        ("flagged", total.flagged),
                        ("pending", total.pending), ("missed", total.missed),
                        ("billable minutes", round(total.billable_minutes, 1)),
                        ("of which unverifiable", round(total.unverifiable_minutes, 1)),
                        ("held minutes", round(total.held_minutes, 1))))
    series = ("verified", "unverifiable", "flagged", "pending", "unfinished", "missed")
    visits_chart = _bars("Visits by caregiver", [
        (_label(t, many), [(s, float(getattr(t, s))) for s in series])
        for t in report.caregivers], stacked=True)
    reasons_chart = _bars("Flagged visits by reason", [
        (reason, [("flagged", float(n))]) for reason, n in total.reasons.most_common()],
        stacked=False, width=420)
    minutes_chart = _bars("Minutes by caregiver", [
        (_label(t, many), [("claimed", round(t.claimed_minutes, 1)),
                           ("billable", round(t.billable_minutes, 1)),
                           ("held", round(t.held_minutes, 1))])
        for t in report.caregivers], stacked=False)
    head = ["institution", "caregiver", *COUNTS, "claimed min", "billable min",
            "unverifiable min", "held min"]

    def figures(t: Tally, cls: str = "") -> str:
        return _row([t.institution, t.caregiver, *(getattr(t, n) for n in COUNTS),
                     round(t.claimed_minutes, 1), round(t.billable_minutes, 1),
                     round(t.unverifiable_minutes, 1), round(t.held_minutes, 1)], left=2,
                    cls=cls)

    tally_rows = [figures(t) for t in report.caregivers]
    tally_rows += [figures(t, "sum") for t in report.institutions]
    tally_rows.append(figures(total, "sum"))
    flagged = [v for v in report.visits if v.status == "flagged"]
    flagged_rows = [_row([v.day, v.institution, v.site, v.bed, v.caregiver, v.visit,
                          ", ".join(v.reasons), ", ".join(v.services), v.plan or "-",
                          f"{v.record_seq} · {(v.record_hash or '')[:12]}"], left=10)
                    for v in flagged]
    unverifiable = [v for v in report.visits if v.status == "unverifiable"]
    unverifiable_rows = [_row([v.day, v.institution, v.site, v.bed, v.caregiver, v.visit,
                               ", ".join(v.reasons), ", ".join(v.services), v.plan or "-",
                               f"{v.record_seq} · {(v.record_hash or '')[:12]}"], left=10)
                         for v in unverifiable]
    missed_rows = [_row([m.window, m.institution, m.site, m.bed, m.caregiver, m.plan,
                         ", ".join(m.services)], left=7) for m in report.missed]
    items = sorted(set(total.items) | set(total.billable_items))
    each = {code: report.catalogue.get(code, UNKNOWN_SERVICE_MINUTES) for code in items}
    item_rows = [_row([code, total.items[code], total.billable_items[code], each[code],
                       round(total.billable_items[code] * each[code], 1)]) for code in items]
    status_counts = ", ".join(f"{s} {sum(1 for v in report.visits if v.status == s)}"
                              for s in STATUSES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Supervision and settlement {escape(report.month)}</title>
<style>{_STYLE}</style></head>
<body>
<header><h1>Supervision and settlement report · {escape(report.month)}</h1>
<div class="meta">{escape(scope)} · generated {escape(_when(report.generated_at))} ·
visits by check-in in the site's zone ({escape(status_counts)})</div>
{_chain_banner(report)}</header>
<section><div class="cards">{cards}</div></section>
<section><h2>Charts</h2>{_legend(series)}<div class="charts">{visits_chart}{reasons_chart}
</div>{_legend(("claimed", "billable", "held"))}<div class="charts">{minutes_chart}</div>
</section>
<section><h2>By institution and caregiver</h2>{_table(head, tally_rows, left=2)}
<p class="note">Performed: checked in and out. Verified visits are billable at the catalogue's
minutes of their items; so are unverifiable ones, contradicted by nothing but confirmed by
nothing either (not_sensed: every other check passed, but the home's infrared could not count
the people; dropped, expired, not_judged: the detector never judged the visit), their minutes
also shown apart; a flagged
visit's minutes are held until reviewed; pending: not settled yet. Missed: a plan whose window
is over and that no visit took.</p></section>
<section><h2>Flagged visits ({len(flagged)})</h2>{_table(
        ["day", "institution", "site", "bed", "caregiver", "visit", "reasons", "items", "plan",
         "service record"], flagged_rows, left=10)}</section>
<section><h2>Unverifiable visits ({len(unverifiable)})</h2>{_table(
        ["day", "institution", "site", "bed", "caregiver", "visit", "why", "items", "plan",
         "service record"], unverifiable_rows, left=10)}</section>
<section><h2>Missed plans ({len(report.missed)})</h2>{_table(
        ["window", "institution", "site", "bed", "caregiver", "plan", "items"], missed_rows,
        left=7)}</section>
<section><h2>Service items</h2>{_table(
        ["item", "delivered", "billable", "minutes each", "billable minutes"], item_rows)}
</section>
</body></html>
"""

