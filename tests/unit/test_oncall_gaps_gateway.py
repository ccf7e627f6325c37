"""A gateway whose on-call roster leaves a site without a dispatcher says so at start: one
``oncall.gap`` log line per gap of the week (site in its zone) and the gauge
``homecare_oncall_sites_uncovered`` of sites with no dispatcher now (issue #13: such a roster
was accepted silently, and calls there reached nobody off-console)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.roster import Roster
from devices.registry import Registry
from gateway.config import Settings
from gateway.runtime import Gateway

ROSTER = (
    '[[staff]]\nid = "anna"\nname = "Anna (synthetic)"\nrole = "dispatcher"\n'
    '[[staff]]\nid = "li"\nname = "Li (synthetic)"\nrole = "nurse"\n'
    '[[shifts]]\nname = "day"\nstart = "08:00"\n'
    '[[duty]]\nsite = "*"\nshift = "day"\nnurse = "li"\n')


def _gateway(data_dir: Path, oncall: Path | None) -> Gateway:
    registry = Registry.from_mapping({"sites": {"site-sh": {"timezone": "Asia/Shanghai",
                                                            "beds": {"bed-0001": {}}}}})
    return Gateway(Settings(data_dir=data_dir, oncall_file=oncall), registry=registry,
                   serve_http=False)


def _uncovered(gateway: Gateway) -> float | None:
    return gateway.metrics.registry.get_sample_value("homecare_oncall_sites_uncovered")


def test_a_site_without_a_dispatcher_is_logged_at_start_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    oncall = tmp_path / "oncall.toml"
    oncall.write_text(ROSTER)
    caplog.set_level("WARNING", logger="homecare.alerts.oncall")
    gateway = _gateway(tmp_path / "data", oncall)
    gaps = [r.getMessage() for r in caplog.records if r.getMessage().startswith("oncall.gap ")]
    # One shift all day with a nurse only: the whole week is one gap at the registry's site.
    assert len(gaps) == 1, gaps
    assert gaps[0].startswith("oncall.gap site=site-sh from="), gaps
    assert "+08:00 to=" in gaps[0], gaps
    assert "zone=Asia/Shanghai" in gaps[0], gaps
    assert _uncovered(gateway) == 1

    caplog.clear()
    covered = Roster.from_mapping({"staff": [{"id": "anna", "name": "Anna", "role": "dispatcher"}],
                                   "shifts": [{"name": "day", "start": "08:00"}],
                                   "duty": [{"site": "*", "shift": "day",
                                             "dispatchers": ["anna"]}]})
    gateway.roster.replace(covered, actor="admin", now_ms=0)
    assert _uncovered(gateway) == 0


def test_without_an_oncall_file_nobody_is_meant_to_be_on_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="homecare.alerts.oncall")
    gateway = _gateway(tmp_path / "data", None)
    assert _uncovered(gateway) == 0
    assert not [r for r in caplog.records if r.getMessage().startswith("oncall.gap")]
