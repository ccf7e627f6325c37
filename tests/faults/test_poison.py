"""Poison messages, live: no single message, however malformed, stops intake.

A poison message (bytes that broke the decoder: field case F1 and its class) is one dead letter
with its reason; the emergency call published right behind it from another bed still opens its
alert within a second, and the gateway never exits. Then 100,000 fuzzed payloads (valid ones
of every kind/channel with bytes corrupted inside keys, string values and numbers, random
bytes, junk JSON, stray topics): 0 exits, and every message is accounted for from the
gateway's own metrics and dead-letter store.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devices import REASONS
from devices.broker import BrokerUrl
from gateway.ingest.pipeline import INTERNAL_ERROR
from simulators.load import pregenerate
from simulators.mqtt import Publisher
from tests.corruption import BOM, corrupt
from tests.ingest import publish
from tests.servers import GatewayProcess, Mosquitto, sqlite_rows, wait_for

pytestmark = [pytest.mark.integration]

SITE = "site-px"
STATUS = f"homecare/v1/{SITE}/bed-0001/fall/fs-1/status"
BADGE = f"homecare/v1/{SITE}/bed-0001/badge/bg-1/event"
POISON = {
    "invalid_utf8-in-fw": (STATUS, b'{"ts":1,"seq":1,"state":"online","fw":"2.1\xff"}',
                           "invalid_utf8"),
    "invalid_utf8-in-caregiver": (
        BADGE, b'{"ts":1,"seq":1,"event":"check_in","caregiver":"c-\xe9","visit":"v-1"}',
        "invalid_utf8"),
    "invalid_utf8-in-a-key": (STATUS, b'{"ts":1,"seq":1,"st\xc0\xafate":"online"}',
                              "invalid_utf8"),
    "bom": (STATUS, BOM + b'{"ts":1,"seq":1,"state":"online"}', "bom"),
    "huge-number": (STATUS, b'{"ts":1' + b"0" * 400 + b',"seq":1,"state":"online"}',
                    "invalid_payload"),
}


def _alerts(db: Path, bed: str) -> list[dict[str, Any]]:
    rows = sqlite_rows(db, "SELECT alert FROM alerts")
    return [a for a in (json.loads(r[0]) for r in rows) if a["bed"] == bed]


def _publish_in_order(url: str, messages: list[tuple[str, bytes]]) -> float:
    """Publish on one connection (the broker keeps their order); returns the time, epoch ms,
    just before the last one was sent."""
    async def run() -> float:
        async with asyncio.timeout(20):
            publisher = Publisher(BrokerUrl.parse(url), client_id="poison-then-press",
                                  reconnect=False)
            async with publisher:
                for topic, payload in messages[:-1]:
                    await publisher.publish(topic, payload, qos=1)
                sent_ms = time.time() * 1000
                await publisher.publish(*messages[-1], qos=1)
                await publisher.drain()
                return sent_ms

    return asyncio.run(run())


@pytest.mark.parametrize("poison", list(POISON))
def test_a_poison_message_then_a_press_from_another_bed_opens_its_alert_within_a_second(
        mosquitto: Mosquitto, tmp_path: Path, poison: str) -> None:
    topic, payload, reason = POISON[poison]
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url)
    db = gateway.data_dir / "alerts.sqlite3"
    gateway.start()
    try:
        gateway.wait_connected()
        press = (f"homecare/v1/{SITE}/bed-0002/button/btn-2/event",
                 json.dumps({"ts": int(time.time() * 1000), "seq": 1,
                             "event": "press"}).encode())
        sent_ms = _publish_in_order(mosquitto.url, [(topic, payload), press])
        [call] = wait_for(lambda: _alerts(db, "bed-0002") or None, "the press opened a call",
                          timeout=10)
        letters = wait_for(lambda: sqlite_rows(
            gateway.data_dir / "deadletters.sqlite3",
            "SELECT topic, payload, reason, detail FROM dead_letters"), "the dead letter")
        assert gateway.running, "the gateway never exits"
    finally:
        gateway.stop()
    assert gateway.returncode == 0
    assert (call["type"], call["severity"]) == ("emergency_button", "critical")
    assert call["opened_at"] - sent_ms <= 1000, "open within a second of the publish"
    assert [(t, p, r) for t, p, r, _ in letters] == [(topic, payload, reason)]
    assert letters[0][3]


# --- 100,000 fuzzed payloads ---------------------------------------------------------------------

FUZZ_MESSAGES = 100_000


def _events(rng: random.Random, n: int, now_ms: int) -> list[tuple[str, bytes]]:
    """Valid event payloads of every kind with an event channel, each device's seq rising."""
    out = []
    for i in range(n):
        bed = f"bed-{rng.randrange(200):04d}"
        seq = 1_000_000 + i
        base: dict[str, Any] = {"ts": now_ms - rng.randrange(60_000), "seq": seq}
        kind = rng.choice(("button", "fall", "badge", "infrared", "audio"))
        if kind == "button":
            base["event"] = rng.choice(("press", "long_press", "cancel"))
        elif kind == "fall":
            base.update(event=rng.choice(("fall_detected", "fall_cleared")),
                        confidence=round(rng.random(), 3),
                        posture=rng.choice(("lying", "sitting", "standing")))
        elif kind == "badge":
            base.update(event=rng.choice(("check_in", "check_out")), caregiver=f"c-{i % 50}",
                        visit=f"v-{i}", method=rng.choice(("qr", "nfc", "app")))
            if base["event"] == "check_out":
                base["services"] = ["bath", "meds"]
        else:
            base.update(event="recording_stopped", clip=f"clip-{i}", duration_s=612.5,
                        sha256=f"{rng.getrandbits(256):064x}")
        device = f"{kind[:2]}-{bed[-4:]}"
        out.append((f"homecare/v1/{SITE}/{bed}/{kind}/{device}/event",
                    json.dumps(base, separators=(",", ":")).encode()))
    return out


def _fuzzed(n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    valid = pregenerate(beds=200, n_messages=n // 2, seed=seed, start_ms=now_ms)
    valid += _events(rng, n // 10, now_ms)
    rng.shuffle(valid)
    kept, damaged = valid[: n // 10], valid[n // 10:]
    messages = kept + [(topic, corrupt(payload, rng)) for topic, payload in damaged]
    stray = ("homecare/v1/s/b/toaster/t/event", "homecare/v1/s/b/button/b/telemetry",
             "homecare/v1/s 1/b/fall/f/status", "homecare/v1/s/b/fall/f/status/extra",
             "homecare/v1/s/b/fall/f/", "homecare/v1/s/" + "b" * 65 + "/fall/f/status")
    # (all under the gateway's subscription homecare/v1/#: it never sees anything else)
    while len(messages) < n:
        roll = rng.random()
        topic, payload = rng.choice(valid)
        if roll < 0.4:
            messages.append((topic, rng.randbytes(rng.randint(0, 300))))
        elif roll < 0.7:
            junk = rng.choice([[], {}, None, 1e308, "x", {"ts": "now"}, [1, {"seq": -1}],
                               {"ts": 1, "seq": 1, "samples": []}])
            messages.append((topic, json.dumps(junk).encode()))
        else:
            messages.append((rng.choice(stray), payload))
    rng.shuffle(messages)
    return messages


@pytest.mark.slow
def test_100k_fuzzed_payloads_live_no_exit_and_each_accepted_or_dead_lettered(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    messages = _fuzzed(FUZZ_MESSAGES, seed=20)
    assert len(messages) == FUZZ_MESSAGES
    # Every rejected message is to be found stored, with its reason: no per-source shedding
    # (a few stray topics carry thousands of the fuzzed messages each).
    gateway = GatewayProcess(tmp_path / "gateway", mqtt_url=mosquitto.url,
                             env={"HOMECARE_DEAD_LETTER_SOURCE_BYTES_PER_SECOND": "0"})
    dead_letters = gateway.data_dir / "deadletters.sqlite3"
    gateway.start()
    started = time.monotonic()
    try:
        gateway.wait_connected()
        publish(mosquitto.url, messages, timeout=120)

        def settled() -> dict[str, float] | None:
            assert gateway.running, f"the gateway exited\n{gateway.log_tail()}"
            m = gateway.metrics()
            rejected = sum(v for k, v in m.items()
                           if k.startswith("homecare_messages_rejected_total"))
            stored = sqlite_rows(dead_letters, "SELECT count(*) FROM dead_letters")
            done = (m.get("homecare_messages_received_total") == FUZZ_MESSAGES
                    and m.get("homecare_inbox_depth") == 0
                    and stored and stored[0][0] == rejected)
            return m if done else None

        metrics = wait_for(settled, "every fuzzed message handled", timeout=120)
        assert gateway.running
    finally:
        gateway.stop()
    elapsed = time.monotonic() - started
    assert gateway.returncode == 0
    assert "Traceback" not in gateway.log_tail(400)

    rows = sqlite_rows(dead_letters, "SELECT reason, detail FROM dead_letters")
    reasons = Counter(reason for reason, _ in rows)
    accepted = metrics["homecare_messages_accepted_total"]
    duplicates = metrics.get("homecare_messages_duplicate_total", 0)
    # A corruption can undo itself (the same bit flipped twice): the same bytes as a message
    # already taken, dropped as a duplicate. Anything else is accepted or a dead letter.
    assert duplicates <= FUZZ_MESSAGES // 1000
    assert accepted + len(rows) + duplicates == FUZZ_MESSAGES, (accepted, reasons, duplicates)
    assert all(reason and detail for reason, detail in rows)
    assert set(reasons) <= set(REASONS) | {INTERNAL_ERROR}
    assert reasons[INTERNAL_ERROR] == 0, "a bug met by fuzzed input (dead-lettered, logged)"
    assert reasons["undecodable"] == 0, "a bug in the codec met by fuzzed input"
    assert {"invalid_utf8", "malformed_json", "invalid_payload", "bad_topic",
            "unknown_kind"} <= set(reasons)
    assert accepted >= FUZZ_MESSAGES // 10, "the valid ones, and corruptions that stay valid"
    assert elapsed < 240
