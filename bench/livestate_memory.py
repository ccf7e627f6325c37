"""What the live state costs in memory: one bed, and a flood of made-up beds (tracemalloc).

``python -m bench.livestate_memory [--beds 100000] [--budget-mib N] [--registered 500]``
prints, as JSON: the bytes one bed with one device and one sample costs (a fall sensor's
sample, three readings, the costliest single message; and a button press, no reading), and
the peak traced memory while ``--beds`` made-up site/bed/device ids send one such message each
into one :class:`~alerts.livestate.LiveState` after ``--registered`` registered beds (whose
state is checked afterwards). Memory is a figure, never asserted here; the unit tests assert
the bound (``tests/unit/test_livestate_budget.py``).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import resource
import time
import tracemalloc
from typing import Any

from alerts.livestate import LiveState
from devices.codec import Codec, Message

T0 = 1_763_884_800_000
codec = Codec()


def vitals(site: str, bed: str, device: str, t: int, decoder: Codec = codec) -> Message:
    m = decoder.decode(f"homecare/v1/{site}/{bed}/fall/{device}/telemetry",
                     (f'{{"ts":{t},"seq":1,"in_bed":true,"heart_rate":68,'
                      f'"breathing_rate":15.5}}').encode())
    assert isinstance(m, Message), m
    return m


def press(site: str, bed: str, device: str, t: int) -> Message:
    m = codec.decode(f"homecare/v1/{site}/{bed}/button/{device}/event",
                     f'{{"ts":{t},"seq":1,"event":"press"}}'.encode())
    assert isinstance(m, Message), m
    return m


def _state(**kwargs: Any) -> LiveState:
    accepted = inspect.signature(LiveState).parameters
    return LiveState(**{k: v for k, v in kwargs.items() if k in accepted})


def bytes_per_bed(make: Any, n: int = 2_000) -> float:
    """Traced bytes per bed for ``n`` beds of one message each (the state's own structures:
    the decoded messages are built before tracing starts)."""
    messages = [make("site-m", f"bed-{i}", f"dev-{i}", T0 + i) for i in range(n)]
    state = _state(max_beds=10 * n)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, message in enumerate(messages):
        state.accept([message], [T0 + i])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def flood(beds: int, budget_bytes: int | None, registered: int, *,
          trace: bool = True) -> dict[str, Any]:
    """The flood, traced (peak of what it allocates) or not (the process's peak RSS growth,
    and the time it takes)."""
    registered_keys = {("site-r", f"bed-{i}") for i in range(registered)}
    state = _state(max_bytes=budget_bytes,
                   registered=lambda site, bed: (site, bed) in registered_keys)
    decoder = Codec(topic_cache_size=1)  # the codec's memo (bounded by itself) not counted
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if trace:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = T0
    for site, bed in sorted(registered_keys):
        t += 1
        state.accept([vitals(site, bed, f"fs-{bed}", t, decoder)], [t])
    started = time.perf_counter()
    for i in range(beds):
        t += 1
        state.accept([vitals(f"x{i % 97}", f"b{i}", f"d{i}", t, decoder)], [t])
    seconds = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = sum(1 for site, bed in registered_keys if state.bed(site, bed) is not None)
    out: dict[str, Any] = {
        "beds": beds, "budget_bytes": budget_bytes, "state_nbytes": getattr(state, "nbytes", None),
        "beds_kept": len(state), "registered_kept": kept, "registered": registered}
    if trace:
        out |= {"peak_traced_bytes": peak - base, "end_traced_bytes": current - base}
    else:
        out |= {"peak_rss_growth_bytes":
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before,
                "flood_us_per_message": round(seconds / beds * 1e6, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beds", type=int, default=100_000)
    parser.add_argument("--budget-mib", type=float, default=None)
    parser.add_argument("--registered", type=int, default=500)
    parser.add_argument("--no-trace", action="store_true",
                        help="measure the peak RSS growth and the time instead (run it in a "
                        "process of its own)")
    args = parser.parse_args()
    budget = None if args.budget_mib is None else int(args.budget_mib * 2**20)
    print(json.dumps({
        "bytes_per_bed_vitals_sample": round(bytes_per_bed(vitals)),
        "bytes_per_bed_button_press": round(bytes_per_bed(press)),
        "flood": flood(args.beds, budget, args.registered, trace=not args.no_trace),
    }, indent=1))


if __name__ == "__main__":
    main()
