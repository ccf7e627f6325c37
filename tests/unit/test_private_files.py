"""The gateway's data files are readable by its own user only (issue #13): the notification
outbox (every live acknowledge URL, and profile data on allowed channels), the acknowledge
links, the keys, the alerts, the upstream outbox and the others, with SQLite's -wal and -shm,
are created 0600 under the common umask 022 and tightened at a restart when found looser."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.registry import Registry
from gateway.config import Settings
from gateway.runtime import Gateway


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(data_dir: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in data_dir.iterdir()
            if ".sqlite3" in p.name}


def _gateway(data_dir: Path) -> Gateway:
    registry = Registry.from_mapping({"sites": {"s1": {"beds": {"bed-0001": {}}}}})
    return Gateway(Settings(data_dir=data_dir, upstream_url="http://127.0.0.1:1/up",
                            upstream_secret="s" * 20,
                            notify_webhook_url="http://127.0.0.1:1/hook",
                            notify_webhook_secret="w" * 32,
                            notify_profile_channels=("webhook",)),
                   registry=registry, serve_http=False)


def test_every_data_file_is_private_under_umask_022_and_tightened_when_loosened(
        tmp_path: Path, loose_umask: None) -> None:
    gateway = _gateway(tmp_path)
    assert gateway.notifier is not None
    gateway.notifier.outbox.enqueue("alerts", 1, [
        ("webhook:anna", "k1", "webhook", b'{"acknowledge_url": "http://127.0.0.1/ack/T"}')], 1)
    modes = _modes(tmp_path)
    for name in ("notify.sqlite3", "notify.sqlite3-wal", "notify.sqlite3-shm",
                 "acklinks.sqlite3", "keys.sqlite3", "alerts.sqlite3", "outbox.sqlite3",
                 "residents.sqlite3", "servicelog.sqlite3", "deadletters.sqlite3",
                 "plans.sqlite3"):
        assert name in modes, name
    assert {name: oct(mode) for name, mode in modes.items() if mode != 0o600} == {}
    other = tmp_path / "other"
    other.write_text("")
    assert stat.S_IMODE(other.stat().st_mode) == 0o644  # the umask makes files world-readable

    for name in modes:  # an older gateway, or a copy, left them readable by everyone
        os.chmod(tmp_path / name, 0o644)
    _gateway(tmp_path)
    assert {name: oct(mode) for name, mode in _modes(tmp_path).items() if mode != 0o600} == {}
