"""Shared steps of the urgent-session tests: a backlog for the main session, a press, and what
the gateway's spool and alert store hold (read from their files, so a frozen or killed gateway
can be looked at too)."""

from __future__ import annotations

import json
import signal
import struct
import time
from collections import Counter
from pathlib import Path

from tests.ingest import publish
from tests.servers import GatewayProcess, sqlite_rows

_RECORD = struct.Struct("<III")  # length, crc32, points: gateway/storage/spool.py


def sessions_connected(metrics: dict[str, float]) -> bool:
    """A gateway's metrics say it is connected, and so is its urgent session if it has one."""
    return (metrics.get("homecare_mqtt_connected") == 1
            and metrics.get("homecare_mqtt_urgent_connected", 1) == 1)


def backlog(site: str, n: int) -> list[tuple[str, bytes]]:
    """``n`` infrared samples of one device, one point each, device times in the last hour."""
    start = int(time.time() * 1000) - 3_600_000
    topic = f"homecare/v1/{site}/bed-backlog/infrared/ir-backlog/telemetry"
    return [(topic, json.dumps({"ts": start + i, "seq": i + 1, "presence": True, "motion": 1,
                                "people": 1, "zone": "room"}).encode()) for i in range(n)]


def press(site: str, bed: str, seq: int = 1) -> tuple[str, bytes]:
    topic = f"homecare/v1/{site}/{bed}/button/btn-{bed}/event"
    return topic, json.dumps({"ts": time.time_ns() // 1_000_000, "seq": seq,
                              "event": "press"}).encode()


def spooled_lines(spool_dir: Path) -> list[str]:
    """Every line-protocol line in the spool's segment files, in order (a torn record at the
    end of a segment, as a kill may leave, is left out)."""
    lines: list[str] = []
    for segment in sorted(spool_dir.glob("*.seg")):
        data = segment.read_bytes()
        offset = 0
        while offset + _RECORD.size <= len(data):
            length, _, _ = _RECORD.unpack_from(data, offset)
            body = data[offset + _RECORD.size:offset + _RECORD.size + length]
            if len(body) < length:
                break
            lines.extend(body.decode().split("\n"))
            offset += _RECORD.size + length
    return lines


def stored(spool_dir: Path) -> Counter[str]:
    """Points in the spool by ``measurement/device``."""
    counts: Counter[str] = Counter()
    for line in spooled_lines(spool_dir):
        series = line.split(" ", 1)[0]
        measurement, _, tags = series.partition(",")
        device = next((t[7:] for t in tags.split(",") if t.startswith("device=")), "")
        counts[f"{measurement}/{device}"] += 1
    return counts


def alerts_of(db_path: Path, site: str, bed: str) -> list[dict[str, object]]:
    """The alerts of one bed in the alert store."""
    rows = sqlite_rows(db_path, "SELECT alert FROM alerts")
    found = [json.loads(r[0]) for r in rows]
    return [a for a in found if a["site"] == site and a["bed"] == bed]


def press_behind_backlog(gateway: GatewayProcess, url: str, site: str, bed: str,
                         n: int) -> None:
    """With the gateway frozen (it reads nothing), publish ``n`` telemetry messages and then a
    press on ``bed``: the broker queues the backlog and the press for the main session, the
    press alone for the urgent one. The gateway runs again afterwards."""
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGSTOP)
    try:
        publish(url, backlog(site, n))
        publish(url, [press(site, bed)])
    finally:
        gateway.proc.send_signal(signal.SIGCONT)
