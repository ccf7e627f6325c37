"""Each upstream destination is delivered by a task of its own (against real HTTP servers on
loopback, tests/upstream_receiver.py): a slow family webhook with a backlog holds up nothing
for the platform, and a stop with a slow platform neither waits for its backlog nor loses it.

No timed assertions: what is asserted is the order of things (the platform got the press while
the family's backlog was still pending; the stop returned while the platform's backlog was
still queued). The times are printed (``pytest -s``) for the README, and a deadline only keeps
a failing test from hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.model import Alert, AlertChange, AlertStatus, AlertType, Severity
from alerts.servicelog import ServiceLog
from alerts.store import AlertStore
from gateway.upstream import Outbox, Upstream, family_secret
from tests.upstream_receiver import Receiver

SECRET = b"a-test-secret-of-some-length"
SLOW_S = 4.0
"""A slow receiver's answer time (the family webhook of the issue: 4 s per answer)."""
BACKLOG = 30


def _press(n: int, bed: str) -> Alert:
    return Alert(id=f"id-{n:04d}", incident=f"s1/{bed}/emergency_button/#{n}",
                 type=AlertType.EMERGENCY_BUTTON, severity=Severity.CRITICAL, site="s1",
                 bed=bed, opened_at=1_000 + n, updated_at=1_000 + n, status=AlertStatus.OPEN)


def _opened(store: AlertStore, *alerts: Alert) -> list[int]:
    seq = store.last_seq()
    changes = [AlertChange(seq=seq + i + 1, at=a.updated_at, action="opened", alert=a)
               for i, a in enumerate(alerts)]
    store.write(changes)
    return [c.seq for c in changes]


@pytest.fixture
def platform() -> Iterator[Receiver]:
    receiver = Receiver(SECRET)
    receiver.start()
    yield receiver
    receiver.stop()


def _upstream(tmp_path: Path, platform: Receiver, alerts: AlertStore,
              families: dict[tuple[str, str], str] | None = None) -> Upstream:
    return Upstream(Outbox(tmp_path / "outbox.sqlite3"), url=platform.url, secret=SECRET,
                    source="gw-1", alert_store=alerts,
                    service_log=ServiceLog(tmp_path / "servicelog.sqlite3"),
                    families=families, timeout_s=10.0)


async def test_a_slow_family_webhook_with_a_backlog_holds_up_no_press_for_the_platform(
        tmp_path: Path, platform: Receiver) -> None:
    family = Receiver(family_secret(SECRET, "s1", "bed-0001"), delay_s=SLOW_S)
    family.start()
    alerts = AlertStore(tmp_path / "alerts.sqlite3")
    _opened(alerts, *(_press(n, "bed-0001") for n in range(1, BACKLOG + 1)))
    upstream = _upstream(tmp_path, platform, alerts, {("s1", "bed-0001"): family.url})
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(stop))
    try:
        assert await asyncio.to_thread(platform.wait_for, BACKLOG, 30.0), platform.keys()
        # The family's webhook now takes 4 s per entry for the 30 queued for it.
        pressed = time.monotonic()
        [seq] = _opened(alerts, _press(BACKLOG + 1, "bed-0002"))
        upstream.wake()  # what the gateway does after every alert commit
        assert await asyncio.to_thread(platform.wait_for, BACKLOG + 1, 60.0), \
            "the press never reached the platform"
        reached_s = time.monotonic() - pressed
        family_done = len(family.keys())
        assert platform.keys()[-1] == f"gw-1/alert/{seq}"
        assert family_done < BACKLOG, "the platform got the press while the family's " \
            "backlog was still pending"
        print(f"\npress to the platform's receiver: {reached_s:.3f} s, the family's webhook "
              f"({SLOW_S:g} s per answer) at {family_done} of {BACKLOG}")
    finally:
        stop.set()
        await task
        family.stop()


async def test_a_stop_with_a_slow_platform_returns_and_the_rest_goes_after_a_restart(
        tmp_path: Path, platform: Receiver) -> None:
    platform.delay_s = SLOW_S
    alerts = AlertStore(tmp_path / "alerts.sqlite3")
    seqs = _opened(alerts, *(_press(n, f"bed-{n:04d}") for n in range(1, BACKLOG + 1)))
    upstream = _upstream(tmp_path, platform, alerts)
    stop = asyncio.Event()
    task = asyncio.create_task(upstream.run(stop))
    assert await asyncio.to_thread(platform.wait_for, 1, 30.0)
    assert await asyncio.to_thread(platform.wait_arrivals, 2, 30.0)  # the next in flight
    stopping = time.monotonic()
    stop.set()
    # A generous bound, only so that the old behaviour (the whole backlog first: ~2 min)
    # fails instead of hanging.
    await asyncio.wait_for(task, 30.0)
    stopped_s = time.monotonic() - stopping
    assert len(platform.keys()) < BACKLOG, "it returned with the platform's backlog queued"
    pending = upstream.outbox.counts()["pending"]
    assert pending > 0
    print(f"\nstop with a platform answering in {SLOW_S:g} s: {stopped_s:.3f} s, "
          f"{pending} entries left queued")
    upstream.outbox.close()

    platform.delay_s = 0.0
    restarted = _upstream(tmp_path, platform, alerts)  # the same files
    stop = asyncio.Event()
    task = asyncio.create_task(restarted.run(stop))
    try:
        assert await asyncio.to_thread(platform.wait_for, BACKLOG, 30.0), platform.keys()
    finally:
        stop.set()
        await task
    assert platform.keys() == [f"gw-1/alert/{seq}" for seq in seqs], "each once, in order"
    assert platform.duplicates <= 1, "at most the request in flight at the stop, again"
    assert restarted.outbox.counts()["pending"] == 0
