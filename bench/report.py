"""Benchmark results on disk: ``bench/results/latest.json``, a dated copy and a Markdown table.

The JSON has a ``machine`` block, the time of the last run (``when``) and one section per
benchmark (``"decode": {...}``). Writing a section merges it into ``latest.json`` when that
file was made on the same machine; otherwise the old sections are dropped, so figures from
different machines never sit side by side. A figure not measured is absent, never invented.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "usable_cores": usable,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
    }


def _same_machine(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("cpu", "cores", "python", "implementation"))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load(results: Path = RESULTS) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((results / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def write(section: str, figures: dict[str, Any], *, results: Path = RESULTS,
          now: dt.datetime | None = None) -> dict[str, Any]:
    """Merge ``figures`` as ``section`` into latest.json; write the dated copy and latest.md."""
    if section in ("machine", "when"):
        raise ValueError(f"{section!r} is reserved")
    now = now or dt.datetime.now(dt.UTC)
    here = machine()
    data = load(results)
    if not _same_machine(data.get("machine", {}), here):
        data = {}
    data["machine"] = here
    data["when"] = now.isoformat(timespec="seconds")
    data[section] = figures
    head = {"machine": data.pop("machine"), "when": data.pop("when")}
    ordered = {**head, **dict(sorted(data.items()))}
    results.mkdir(parents=True, exist_ok=True)
    text = json.dumps(ordered, indent=2) + "\n"
    _write_atomic(results / "latest.json", text)
    _write_atomic(results / f"{now.date().isoformat()}.json", text)
    _write_atomic(results / "latest.md", markdown(ordered))
    return ordered


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    lines = [
        "# Benchmark results",
        "",
        f"Measured {data.get('when', '?')} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), "
        f"{m.get('implementation', 'Python')} {m.get('python', '?')}. "
        "Written by `make bench`; see bench/.",
    ]
    for section, figures in data.items():
        if section in ("machine", "when") or not isinstance(figures, dict):
            continue
        lines += ["", f"## {section}", "", "| figure | value |", "|---|---:|"]
        for name, value in figures.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    lines.append(f"| {name}.{sub} | {_fmt(v)} |")
            else:
                lines.append(f"| {name} | {_fmt(value)} |")
    return "\n".join(lines) + "\n"
