"""Run every benchmark and write its figures to bench/results/ (``make bench``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from bench import (
    deadletters,
    decode,
    detector,
    diskuse,
    flood,
    ingest,
    latency,
    replay,
    report,
    servicelog_verify,
)

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "decode": decode.run,
    "ingest": ingest.run,
    "alert_latency_ms": latency.run,
    "detector": detector.run,
    "replay": replay.run,
    "deadletters": deadletters.run,
    "unknown_device_flood": flood.run,
    "unregistered_press_flood": flood.run_presses,
    "servicelog_verify": servicelog_verify.run,
    "diskuse": diskuse.bench,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true",
                        help="fewer messages and repeats: a smoke test, not a measurement")
    parser.add_argument("--no-write", action="store_true",
                        help="print the figures without writing bench/results/")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    for name in args.names or list(BENCHMARKS):
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        figures = BENCHMARKS[name](quick=args.quick)
        print(json.dumps({name: figures}, indent=2))
        if not args.no_write and not args.quick:
            report.write(name, figures)
    if not args.no_write and not args.quick:
        print(f"bench: results in {report.RESULTS}/latest.json and latest.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
