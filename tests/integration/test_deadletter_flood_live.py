"""A dead-letter flood through a real mosquitto and the gateway stays inside its byte budget
(issue #17, part 3): one device flooding 60 KiB bad payloads is shed past its per-source
budget (counted in ``homecare_dead_letters_shed_total``) while its neighbour's dead letters
are all recorded; a flood from hundreds of devices rotates the oldest letters out
(``homecare_dead_letters_evicted_total``) and the files never outgrow the budget; an emergency
call still opens its alert afterwards.

Before: every letter was stored with 64 KiB of payload, 1.2 GB for 20,000 of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.runtime import Gateway
from tests.inprocess import press, publisher, running, until
from tests.servers import Mosquitto, free_port

pytestmark = [pytest.mark.integration]

SITE = "site-dlflood"
BUDGET = 1024 * 1024
JUNK = b"{" + b"x" * 60 * 1024  # 60 KiB of malformed JSON


def _topic(bed: str) -> str:
    return f"homecare/v1/{SITE}/{bed}/fall/fs-{bed}/telemetry"


def _disk(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("deadletters.sqlite3*"))


def _stored(gateway: Gateway, bed: str) -> int:
    return sum(1 for d in gateway.deadletters.recent(100_000) if d.topic == _topic(bed))


def _shed(gateway: Gateway) -> float:
    """``homecare_dead_letters_shed_total``, every reason."""
    return sum(sample.value for family in gateway.metrics.registry.collect()
               if family.name == "homecare_dead_letters_shed" for sample in family.samples
               if sample.name.endswith("_total"))


def _accounted(gateway: Gateway) -> int:
    """Dead letters stored, evicted since or shed."""
    letters = gateway.deadletters
    return letters.count() + letters.evicted + letters.shed.total()


async def test_a_dead_letter_flood_stays_inside_its_byte_budget_and_spares_the_neighbours(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    data_dir = tmp_path / "data"
    gateway = Gateway(Settings(mqtt_url=mosquitto.url, data_dir=data_dir,
                               mqtt_client_id=f"gw-dlflood-{tmp_path.name}"[:60],
                               api_addr=f"127.0.0.1:{free_port()}",
                               dead_letter_max_bytes=BUDGET), serve_http=False)
    registry = gateway.metrics.registry
    peak = 0

    async def watch_disk(stop: asyncio.Event) -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _disk(data_dir))
            await asyncio.sleep(0.005)

    stop = asyncio.Event()
    async with running(gateway), publisher(mosquitto.url, "dlflood-devices") as devices:
        watcher = asyncio.create_task(watch_disk(stop))
        # One device floods; its neighbour's bad messages come in between.
        for n in range(1_000):
            devices.publish_nowait(_topic("bed-flood"), JUNK)
            if n % 50 == 0:
                devices.publish_nowait(_topic("bed-quiet"), b'{"ts": %d, oops' % n)
            if n % 100 == 99:
                await devices.drain()
        await devices.drain()
        await until(lambda: _accounted(gateway) >= 1_020, "the flood is handled")
        await until(lambda: _stored(gateway, "bed-quiet") == 20,
                    "every one of the neighbour's dead letters is recorded")
        flood_stored = _stored(gateway, "bed-flood")
        shed = _shed(gateway)
        assert 0 < flood_stored < 1_000
        assert shed == 1_000 - flood_stored, "every letter stored or counted as shed"

        # Then hundreds of devices, each within its own budget: the oldest letters go.
        for n in range(1_000):
            devices.publish_nowait(_topic(f"bed-{n % 250:03d}"), JUNK)
            if n % 100 == 99:
                await devices.drain()
        await devices.drain()
        await until(lambda: _accounted(gateway) >= 2_020, "the second flood is handled")
        devices.publish_nowait(*press(SITE, "bed-call"))
        await until(lambda: gateway.alert_store.list_alerts(bed="bed-call",
                                                            type="emergency_button")[0],
                    "an emergency call opens its alert after the flood")
        stop.set()
        await watcher
        evicted = registry.get_sample_value("homecare_dead_letters_evicted_total")
        assert evicted is not None
        assert evicted > 0
        assert _shed(gateway) == shed, "each of the hundreds within its own budget"
        kept = {d.topic for d in gateway.deadletters.recent(100_000)}
        assert {_topic(f"bed-{n:03d}") for n in range(250)} <= kept, "the newest are kept"
        assert gateway.deadletters.count() + evicted + shed == 2_020
        peak = max(peak, _disk(data_dir))
    assert peak <= BUDGET, f"{peak:,} bytes on disk, budget {BUDGET:,}"
