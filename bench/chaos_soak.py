"""``make soak``: the gateway at a steady load for 30 minutes, watched for growth.

The same set-up as the chaos run (:mod:`bench.chaos`: mosquitto, VictoriaMetrics, the gateway
process, the reference upstream receiver, a dispatcher handling alerts through the API) and
the same simulated traffic (:mod:`bench.chaos_traffic`, with incidents, visits and faults),
at a steady ``rate``, and no fault schedule. Besides, this process presses a listed button
every ``press_every_s`` (turning over ``probe_beds`` beds of a site ``probe``) and times each
press from its PUBLISH to its change (``opened``, or ``repeated`` on an alert still open) on
the API's event stream: the first showing (unstored, before the alert store's commit); a press
whose change never comes stored is lost.

Every ``sample_every_s`` it records the gateway's RSS (``/proc``), its queue depths (inbox,
spool, upstream outbox), open alerts, intake rate, and the presses' latency in that interval;
the series go to ``bench/results/chaos-soak.json`` and a plot, ``chaos-soak.svg``.

The verdict: the RSS at the end (median of the last minute) at most ``growth_limit`` (10 %)
above the RSS at minute ``from_minute`` (median of the minute around it), and no press lost.

It starts warm: first ``warmup_days`` simulated days (one) are published at ``warmup_rate``
and taken in, so that what the gateway keeps per bed by design for a day (each bed's 24 hours
of readings on the bed page, the detectors' windows) is full before the measured minutes
begin; measured from a cold start the first soak (100 beds, 600 msg/s, no warm-up) grew 12.5 %
from minute 5 to 30, nearly all of it before minute 15, when its first simulated day was full,
and 1.3 % after. Defaults: 50 beds at 600 msg/s (about 190 times faster than life).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx

from bench import chaos, report
from bench.chaos_traffic import MESSAGES_PER_BED_MINUTE, TrafficPlan, publisher_main, sim_start
from bench.svgplot import Panel, Series, chart
from devices import BrokerUrl
from simulators import Publisher, registry_toml

PROBE_SITE = "probe"


@dataclass(frozen=True, kw_only=True)
class SoakOptions:
    minutes: float = 30.0
    rate: float = 600.0
    beds: int = 50
    sites: int = 2
    warmup_days: float = 1.0
    """Simulated days published first, at ``warmup_rate``, before the measured minutes."""
    warmup_rate: float = 2_500.0
    seed: int = 30
    incidents_per_bed_day: float = 1.0
    press_every_s: float = 2.0
    probe_beds: int = 30
    sample_every_s: float = 10.0
    from_minute: float = 5.0
    growth_limit: float = 0.10
    dispatcher_every_s: float = 10.0
    keep: bool = False


def probe_registry(beds: int) -> str:
    lines = [f"[sites.{PROBE_SITE}]", 'timezone = "UTC"', ""]
    for n in range(beds):
        lines += [f"[sites.{PROBE_SITE}.beds.p-{n:04d}.devices.pb-{n:04d}]", 'kind = "button"',
                  "heartbeat_s = 86400", ""]
    return "\n".join(lines)


class _Presses:
    """Presses on the probe beds, and their changes read from the event stream."""

    def __init__(self, gateway_url: str, key: str) -> None:
        self.url = gateway_url
        self.key = key
        self.sent: dict[tuple[str, int], float] = {}
        self.seen: dict[tuple[str, int], float] = {}
        """When each press's change was first on the stream (an emergency call's comes first
        unstored, before the alert store's commit)."""
        self.stored: set[tuple[str, int]] = set()
        """Presses whose change came stored (with its id): the ones not lost."""
        self.connected = asyncio.Event()

    async def read_stream(self) -> None:
        last_id: str | None = None
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client:
            while True:
                headers = {"Authorization": f"Bearer {self.key}",
                           "Accept": "text/event-stream"}
                if last_id is not None:
                    headers["Last-Event-ID"] = last_id
                with contextlib.suppress(httpx.HTTPError):
                    async with client.stream("GET", f"{self.url}/api/v1/alerts/stream",
                                             headers=headers) as response:
                        response.raise_for_status()
                        self.connected.set()
                        event = ""
                        async for line in response.aiter_lines():
                            if line.startswith("id:"):
                                last_id = line[3:].strip()
                            elif line.startswith("event:"):
                                event = line[6:].strip()
                            elif line.startswith("data:") and event in ("opened", "repeated"):
                                self._change(json.loads(line[5:]), time.perf_counter())
                            elif not line:
                                event = ""
                await asyncio.sleep(0.2)

    def _change(self, change: dict[str, Any], now: float) -> None:
        alert = change.get("alert") or {}
        if alert.get("site") != PROBE_SITE:
            return
        evidence = alert.get("evidence") or {}
        key = (str(evidence.get("device")), int(evidence.get("seq") or 0))
        if key in self.sent:
            self.seen.setdefault(key, now)
            if change.get("unstored") is not True:
                self.stored.add(key)

    async def press(self, mqtt_url: str, every_s: float, beds: int, until: float) -> None:
        client = Publisher(BrokerUrl.parse(mqtt_url), client_id="soak-presses", reconnect=True)
        await client.connect()
        n = 0
        try:
            while time.monotonic() < until:
                bed = n % beds
                device, seq = f"pb-{bed:04d}", n // beds + 1
                payload = json.dumps({"ts": time.time_ns() // 1_000_000, "seq": seq,
                                      "event": "press"}).encode()
                self.sent[(device, seq)] = time.perf_counter()
                client.publish_nowait(
                    f"homecare/v1/{PROBE_SITE}/p-{bed:04d}/button/{device}/event", payload)
                n += 1
                await asyncio.sleep(every_s)
        finally:
            await client.disconnect()
            await client.close()

    def latencies_ms(self, since: float, until: float) -> list[float]:
        return [(self.seen[k] - t) * 1000 for k, t in self.sent.items()
                if since <= t < until and k in self.seen]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def _watch(stack: chaos.Stack, options: SoakOptions, presses: _Presses,
                 rows: list[dict[str, Any]]) -> None:
    started = time.perf_counter()
    until = time.monotonic() + options.minutes * 60
    pressing = asyncio.create_task(
        presses.press(stack.mq.url, options.press_every_s, options.probe_beds, until))
    last_received: float | None = None
    last_at = started
    try:
        while time.monotonic() < until:
            await asyncio.sleep(options.sample_every_s)
            now = time.perf_counter()
            row = await asyncio.to_thread(chaos.sample, stack.gateway)
            received = row.get("received")
            if received is not None and last_received is not None:
                row["msgs_per_s"] = round((received - last_received) / (now - last_at))
            last_received, last_at = received, now
            window = presses.latencies_ms(now - options.sample_every_s - 5, now - 5)
            row.update({"t_min": round((now - started) / 60, 2),
                        "press_p50_ms": _median(window),
                        "press_max_ms": round(max(window), 1) if window else None,
                        "presses": len(window)})
            rows.append(row)
            print(f"soak: {row['t_min']:5.1f} min rss {row.get('rss_mb')} MB inbox "
                  f"{row.get('inbox')} spool {row.get('spool_points')} upstream "
                  f"{row.get('upstream_pending')} press p50 {row['press_p50_ms']} ms",
                  file=sys.stderr, flush=True)
    finally:
        await pressing


async def _soak(stack: chaos.Stack, options: SoakOptions) -> tuple[list[dict[str, Any]],
                                                                   _Presses]:
    presses = _Presses(stack.gateway.url, stack.key)
    reader = asyncio.create_task(presses.read_stream())
    rows: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(30):
            await presses.connected.wait()
        await _watch(stack, options, presses, rows)
        await asyncio.sleep(5)  # the last presses' changes
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return rows, presses


def run(options: SoakOptions) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    load_before = os.getloadavg()
    warm = int(options.beds * MESSAGES_PER_BED_MINUTE * 1440 * options.warmup_days)
    messages = warm + int(options.rate * options.minutes * 60 * 1.05)
    plan = TrafficPlan(mqtt_url="", out_dir=workdir / "sent", messages=messages,
                       rate=options.rate, beds=options.beds, sites=options.sites,
                       seed=options.seed, incidents_per_bed_day=options.incidents_per_bed_day,
                       sim_start_ms=sim_start(messages, options.beds, int(time.time() * 1000),
                                              spare=0.1),
                       client_prefix="soak-pub", warmup_messages=warm,
                       warmup_rate=options.warmup_rate)
    registry = workdir / "registry.toml"
    registry.write_text(registry_toml(plan.config()) + "\n" + probe_registry(options.probe_beds))
    try:
        stack = chaos.start_stack(workdir, registry)
    except BaseException:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    plan = replace(plan, mqtt_url=stack.mq.url)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    published = ctx.Value("q", 0)
    publisher = ctx.Process(target=publisher_main, args=(plan, published, child),
                            name="soak-publisher")
    dispatcher = chaos.Dispatcher(stack, options.dispatcher_every_s)
    traffic: dict[str, Any] = {}
    try:
        publisher.start()
        if not parent.poll(120) or parent.recv()[0] != "ready":
            raise RuntimeError("the publisher did not connect")
        dispatcher.start()
        parent.send("go")
        warmup = _warm_up(stack, parent, warm, options)
        rows, presses = asyncio.run(_soak(stack, options))
        parent.send("stop")
        if parent.poll(300):
            traffic = parent.recv()[1]
        hwm = _vm_hwm(stack.gateway.proc.pid if stack.gateway.proc else None)
        dispatcher.stopping.set()
        dispatcher.join(30)
        stack.gateway.stop(timeout=60)
        clean_stop = stack.gateway.returncode == 0
    finally:
        dispatcher.stopping.set()
        with contextlib.suppress(Exception):
            parent.send("stop")
        publisher.join(60)
        if publisher.is_alive():
            publisher.kill()
        chaos.stop_stack(stack)
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    traffic.pop("clock", None)
    figures = summarise(options, rows, presses, traffic, clean_stop, hwm, load_before)
    figures["warmup"] = warmup
    return figures


def _warm_up(stack: chaos.Stack, parent: Any, messages: int, options: SoakOptions
             ) -> dict[str, Any]:
    """Until the warm-up is published and taken in (inbox and spool nearly empty)."""
    if not messages:
        return {}
    limit = messages / options.warmup_rate * 4 + 300
    if not parent.poll(limit):
        raise TimeoutError("the warm-up was not published in time")
    kind, warm = parent.recv()
    if kind != "warm":
        raise RuntimeError(f"publisher: {kind} {warm}")
    deadline = time.monotonic() + 300
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        row = chaos.sample(stack.gateway)
        if row.get("inbox") == 0 and (row.get("spool_points") or 0) < 10_000:
            break
        time.sleep(1.0)
    print(f"soak: warm-up of {warm['messages']:,} messages in {warm['seconds']} s; rss "
          f"{row.get('rss_mb')} MB", file=sys.stderr, flush=True)
    return {**warm, "rss_mb_after": row.get("rss_mb")}


def _vm_hwm(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def summarise(options: SoakOptions, rows: list[dict[str, Any]], presses: _Presses,
              traffic: dict[str, Any], clean_stop: bool, hwm: float | None,
              load_before: tuple[float, float, float]) -> dict[str, Any]:
    def rss_near(lo: float, hi: float) -> float | None:
        return _median([r["rss_mb"] for r in rows
                        if lo <= r["t_min"] <= hi and r.get("rss_mb") is not None])

    end = rows[-1]["t_min"] if rows else 0.0
    at_start = rss_near(options.from_minute - 0.5, options.from_minute + 0.5)
    at_end = rss_near(end - 1.0, end)
    growth = (at_end / at_start - 1) if at_start and at_end else None
    all_latencies = [(presses.seen[k] - t) * 1000 for k, t in presses.sent.items()
                     if k in presses.seen]
    lost = sum(1 for k in presses.sent if k not in presses.stored)
    after = [r for r in rows if r["t_min"] >= options.from_minute]
    figures: dict[str, Any] = {
        "options": asdict(options), "traffic": traffic, "minutes": round(end, 1),
        "rss_mb_at_minute": {f"{options.from_minute:g}": at_start, f"{end:.0f}": at_end},
        "rss_growth": None if growth is None else round(growth, 4),
        "rss_max_mb": max((r["rss_mb"] for r in rows if r.get("rss_mb")), default=None),
        "rss_hwm_mb": hwm,
        "inbox_max": max((r.get("inbox") or 0 for r in after), default=None),
        "spool_points_max": max((r.get("spool_points") or 0 for r in after), default=None),
        "upstream_pending_max": max((r.get("upstream_pending") or 0 for r in after),
                                    default=None),
        "alerts_open_max": max((r.get("alerts_open") or 0 for r in after), default=None),
        "msgs_per_s_median": _median([r["msgs_per_s"] for r in rows if "msgs_per_s" in r]),
        "presses": len(presses.sent), "presses_lost": lost,
        "press_to_stream_ms": {"p50": _quantile(all_latencies, 0.5),
                               "p99": _quantile(all_latencies, 0.99),
                               "max": round(max(all_latencies), 1) if all_latencies else None},
        "clean_stop": clean_stop,
        "load_average": {"before": [round(x, 1) for x in load_before],
                         "after": [round(x, 1) for x in os.getloadavg()]},
        "samples": rows}
    figures["verdict"] = [
        {"guarantee": f"RSS growth < {options.growth_limit:.0%} from minute "
                      f"{options.from_minute:g} to the end",
         "held": growth is not None and growth < options.growth_limit,
         "figure": figures["rss_growth"]},
        {"guarantee": "no press lost", "held": lost == 0 and bool(presses.sent),
         "figure": lost},
        {"guarantee": "gateway stopped cleanly", "held": clean_stop, "figure": clean_stop}]
    figures["passed"] = all(v["held"] for v in figures["verdict"])
    return figures


def plot(figures: dict[str, Any]) -> str:
    rows = figures["samples"]
    xs = [r["t_min"] for r in rows]

    def col(name: str) -> list[float | None]:
        return [r.get(name) for r in rows]

    panels = [
        Panel("Gateway RSS", "MB", [Series("RSS", xs, col("rss_mb"))]),
        Panel("Queue depths", "log scale", [Series("inbox (messages)", xs, col("inbox")),
                                            Series("spool (points)", xs, col("spool_points")),
                                            Series("upstream outbox", xs,
                                                   col("upstream_pending")),
                                            Series("alerts open", xs, col("alerts_open"))],
              log=True),
        Panel("Button press -> event stream", "ms, log scale",
              [Series("median", xs, col("press_p50_ms")), Series("max", xs,
                                                                 col("press_max_ms"))],
              log=True),
        Panel("Intake", "messages/s", [Series("received", xs, col("msgs_per_s"))]),
    ]
    title = (f"Soak: {figures['minutes']} min at {figures['options']['rate']:g} msg/s, "
             f"RSS growth {figures['rss_growth']:.1%} from minute "
             f"{figures['options']['from_minute']:g}"
             if figures.get("rss_growth") is not None else "Soak")
    return chart(panels, title=title)


def markdown(figures: dict[str, Any]) -> str:
    lines = ["# Soak", "",
             f"{figures.get('when', '?')}: {figures['minutes']} min; load average before "
             f"{figures['load_average']['before']}, after {figures['load_average']['after']}. "
             "Written by `make soak` (bench/chaos_soak.py); plot: chaos-soak.svg.", "",
             "| guarantee | figure | held |", "|---|---:|---|"]
    lines += [f"| {v['guarantee']} | {v['figure']} | {'yes' if v['held'] else '**NO**'} |"
              for v in figures["verdict"]]
    lines += ["", "| figure | value |", "|---|---:|"]
    for name in ("rss_mb_at_minute", "rss_max_mb", "rss_hwm_mb", "inbox_max",
                 "spool_points_max", "upstream_pending_max", "alerts_open_max",
                 "msgs_per_s_median", "presses", "presses_lost", "press_to_stream_ms"):
        lines.append(f"| {name} | {figures.get(name)} |")
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    options = SoakOptions(keep=args.keep)
    if args.minutes is not None:
        options = replace(options, minutes=args.minutes,
                          from_minute=min(options.from_minute, round(args.minutes / 6, 1)))
    if args.rate is not None:
        options = replace(options, rate=args.rate)
    if args.beds is not None:
        options = replace(options, beds=args.beds)
    try:
        figures = run(options)
    except Exception as exc:
        print(f"soak: the run failed: {exc!r}", file=sys.stderr)
        return 2
    figures["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(markdown(figures))
    if not args.no_write:
        report.RESULTS.mkdir(parents=True, exist_ok=True)
        doc = {"machine": report.machine(), **figures}
        (report.RESULTS / "chaos-soak.json").write_text(json.dumps(doc, indent=1) + "\n")
        (report.RESULTS / "chaos-soak.md").write_text(markdown(figures))
        (report.RESULTS / "chaos-soak.svg").write_text(plot(figures))
        print(f"soak: results in {report.RESULTS}/chaos-soak.*", file=sys.stderr)
    return 0 if figures["passed"] else 1


__all__ = ["SoakOptions", "main", "plot", "run"]
