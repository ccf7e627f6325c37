"""The supervision report's screenshot in docs/ (``make screenshots``; no test writes it).

A seeded November of two care institutions (three sites, six caregivers): planned visits, the
visits done through the app (some short, some without their recording, one at two homes at
once, some at homes whose infrared counts nobody: unverifiable), the service_anomaly alerts
and the judgements the detectors would leave for them, every visit settled into its service
record; then the month's page exactly as ``GET /api/v1/reports/supervision?
format=html`` serves it, opened in the system Chromium (headless, through Playwright, nothing
downloaded) and captured whole.

    python -m tests.report_screenshot [--out docs/supervision-report.png] [--html FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import zoneinfo
from pathlib import Path
from typing import Any

from alerts import (
    DEFAULT_CATALOGUE,
    AlertEngine,
    AlertStore,
    AlertType,
    Catalogue,
    Finding,
    JudgedVisit,
    PlanStore,
    ServiceLog,
    Settlement,
    Severity,
    VisitEvent,
    chain_status,
    make_plan,
    supervision_html,
    supervision_report,
)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
CATALOGUE = Catalogue.parse(DEFAULT_CATALOGUE)
INSTITUTIONS = {"site-01": "care-north", "site-02": "care-north", "site-03": "care-east"}
CAREGIVERS = {"site-01": ["c-101", "c-102"], "site-02": ["c-201", "c-202"],
              "site-03": ["c-301", "c-302"]}
SERVICES = [("bathing", "medication"), ("meal_assist",), ("cleaning", "companionship"),
            ("rehab",), ("vitals_check", "medication")]
MIN = 60_000


def _ms(day: dt.date, minute: int) -> int:
    start = dt.datetime.combine(day, dt.time(), tzinfo=ZONE)
    return int(start.timestamp() * 1000) + minute * MIN


def build(workdir: Path, seed: int = 11) -> str:
    """The seeded month's page (HTML)."""
    rng = random.Random(seed)
    log = ServiceLog(workdir / "servicelog.sqlite3")
    store = AlertStore(workdir / "alerts.sqlite3")
    engine = AlertEngine(store)
    plans = PlanStore(workdir / "plans.sqlite3")
    n = 0
    for day in (dt.date(2026, 11, 1) + dt.timedelta(days=d) for d in range(30)):
        for site, caregivers in CAREGIVERS.items():
            for slot, caregiver in enumerate(caregivers):
                if rng.random() < 0.25:
                    continue
                n += 1
                bed = f"bed-{rng.randint(1, 4):04d}"
                start = 8 * 60 + slot * 180 + rng.choice([0, 30, 60])
                services = rng.choice(SERVICES)
                plan, problems = make_plan(
                    site=site, bed=bed, plan=f"p-{n}", caregiver=caregiver,
                    date=day.isoformat(), start=f"{start // 60:02d}:{start % 60:02d}",
                    end=f"{(start + 90) // 60:02d}:{(start + 90) % 60:02d}",
                    services=list(services), catalogue=CATALOGUE, zone=ZONE)
                assert plan is not None, problems
                plans.put(plan, actor="screenshot", now_ms=0)
                if rng.random() < 0.05:
                    continue  # never came: missed
                _visit(log, engine, rng, site=site, bed=bed, caregiver=caregiver,
                       visit=f"v-{n}", check_in=_ms(day, start + rng.randint(-10, 20)),
                       services=services, plan=plan.plan)
    settlement = Settlement(log, alerts=store, catalogue=CATALOGUE, plans=plans,
                            settle_ms=10 * MIN, started_ms=0)
    now = _ms(dt.date(2026, 12, 1), 9 * 60)
    while settlement.settle(now):
        pass
    chain = chain_status(log.verify(full=True), kept_heads=0, at_ms=now)
    report = supervision_report(log=log, plans=plans, catalogue=CATALOGUE, month="2026-11",
                                zone_of=lambda site: ZONE, institutions=INSTITUTIONS,
                                now_ms=now, chain=chain)
    for closing in (log, store, plans):
        closing.close()
    return supervision_html(report)


def _visit(log: ServiceLog, engine: AlertEngine, rng: random.Random, *, site: str, bed: str,
           caregiver: str, visit: str, check_in: int, services: tuple[str, ...],
           plan: str) -> None:
    common: dict[str, Any] = {"site": site, "bed": bed, "caregiver": caregiver,
                              "visit": visit, "source": "api", "method": "app"}
    minutes = CATALOGUE.minutes(services) + rng.randint(-5, 15)
    reasons: list[str] = []
    roll = rng.random()
    if roll < 0.06:
        minutes, reasons = 6, ["too_short"]
    elif roll < 0.10 and CATALOGUE.recorded(services):
        reasons = ["no_recording"]
    elif roll < 0.12:
        reasons = ["nobody_sensed"]
    elif roll < 0.13:
        reasons = ["overlap"]
    uncounted = rng.random() < 0.06  # a home whose infrared sends no people count
    check_out = check_in + int(minutes * MIN)
    log.append([VisitEvent(origin=f"{visit}/in", at=check_in, event="check_in", **common)],
               now_ms=check_in)
    log.append([VisitEvent(origin=f"{visit}/out", at=check_out, event="check_out",
                           services=services, **common)], now_ms=check_out)
    if reasons:
        engine.apply([Finding(type=AlertType.SERVICE_ANOMALY, site=site, bed=bed,
                              at=check_out + MIN, severity=Severity.MEDIUM,
                              episode=f"{caregiver}/{visit}", summary=f"visit {visit}",
                              evidence={"visit": visit, "caregiver": caregiver,
                                        "reasons": reasons, "plan": plan,
                                        "sensed_minutes": 2.0 if reasons != ["no_recording"]
                                        else float(minutes)})], check_out + MIN)
        engine.commit()
    verdict = "flagged" if reasons else "unverifiable" if uncounted else "verified"
    log.record_judged([JudgedVisit(
        site=site, bed=bed, caregiver=caregiver, visit=visit, judged_at=check_out + MIN,
        measured={"verdict": verdict, "reasons": reasons, "plan": plan,
                  **({"unverifiable": ["not_sensed"], "infrared_samples": 0,
                      "sensed_minutes": None} if verdict == "unverifiable" else {})})])


def capture(html: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1240, "height": 900})
            page.goto(html.as_uri())
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.report_screenshot",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "supervision-report.png")
    parser.add_argument("--html", type=Path, help="also keep the page here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="report-screenshot-") as tmp:
        page = build(Path(tmp))
        html = args.html or Path(tmp) / "supervision.html"
        html.write_text(page, encoding="utf-8")
        capture(html, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
