"""The demo's traffic view counts what a subscriber sees."""

from __future__ import annotations

from rich.console import Console

from simulators.monitor import TrafficMonitor

STATUS = "homecare/v1/site-01/bed-0001/button/btn-0001/status"


def test_rates_per_kind_over_the_window() -> None:
    monitor = TrafficMonitor(window_s=2.0)
    for i in range(10):
        monitor.observe("homecare/v1/site-01/bed-0001/fall/fs-0001/telemetry",
                        b'{"ts":1,"seq":1,"in_bed":true}', now=100.0 + i * 0.1)
    monitor.observe("not/a/device/topic", b"{}", now=100.5)
    rates = monitor.rates(now=101.0)
    assert rates["fall"] == 5.0
    assert rates["button"] == 0.0
    assert monitor.invalid == 1
    assert monitor.rates(now=110.0)["fall"] == 0.0


def test_events_and_devices_going_offline_are_listed() -> None:
    monitor = TrafficMonitor()
    monitor.observe(STATUS, b'{"ts":1,"seq":1,"state":"online"}', now=1.0)
    assert monitor.online == 1
    monitor.observe("homecare/v1/site-01/bed-0001/button/btn-0001/event",
                    b'{"ts":2,"seq":2,"event":"press"}', now=2.0)
    monitor.observe(STATUS, b'{"ts":1,"seq":0,"state":"offline"}', now=3.0)
    assert monitor.online == 0
    assert [(s.bed, s.kind, s.what) for s in monitor.recent] == [
        ("bed-0001", "button", "press"), ("bed-0001", "button", "offline")]
    console = Console(width=120, record=True)
    console.print(monitor)
    assert "press" in console.export_text()


def test_malformed_payloads_are_counted_not_fatal() -> None:
    monitor = TrafficMonitor()
    monitor.observe(STATUS, b"\xff{", now=1.0)
    monitor.observe(STATUS, b"[1,2]", now=1.0)
    assert monitor.total == 2
