"""deploy/systemd/homecare-gateway.service as committed: systemd's own checker accepts it, it
waits for the gateway's READY and watches it, and it runs the gateway from the virtualenv the
step-by-step install in deploy/README.md creates."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "homecare-gateway.service"
STANDBY = ROOT / "deploy" / "systemd" / "homecare-gateway-standby.service"
GUIDE = ROOT / "deploy" / "README.md"
VENV = "/opt/homecare"


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("path", [UNIT, STANDBY], ids=["gateway", "standby"])
def test_systemd_accepts_the_unit(path: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = path.read_text()
    here = str(Path(sys.executable).parent / "homecare")
    assert f"{VENV}/bin/homecare" in text
    unit = tmp_path / path.name
    unit.write_text(text.replace(f"{VENV}/bin/homecare", here))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines()
                  if path.name in line or "Unknown" in line]
    assert done.returncode == 0, done.stdout + done.stderr
    assert not complaints, done.stdout + done.stderr


def test_the_unit_waits_for_ready_and_watches_the_event_loop() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    [watchdog] = unit["WatchdogSec"]
    assert re.fullmatch(r"\d+s", watchdog), watchdog
    assert unit["Restart"] == ["always"]
    assert "AF_UNIX" in unit["RestrictAddressFamilies"][0].split(), "the notify socket"


def test_the_install_steps_create_what_the_unit_runs() -> None:
    unit = directives(UNIT.read_text())
    [exec_start] = unit["ExecStart"]
    binary, *args = exec_start.split()
    assert binary == f"{VENV}/bin/homecare"
    assert args == ["gateway", "--config", "/etc/homecare/gateway.toml", "--standby"]
    guide = GUIDE.read_text()
    for step in (f"python3 -m venv {VENV}", f"{VENV}/bin/pip install",
                 "install -m 0644 deploy/systemd/homecare-gateway.service "
                 "deploy/systemd/homecare-gateway-standby.service /etc/systemd/system/",
                 "systemctl enable --now homecare-gateway homecare-gateway-standby",
                 "/etc/homecare/gateway.toml", "/etc/homecare/secrets/mqtt_password",
                 "/etc/homecare/secrets/influx_token",
                 f"runuser -u homecare -- {VENV}/bin/homecare keys create --role admin"):
        assert step in guide, f"deploy/README.md lacks the step {step!r}"
    for credential in unit["LoadCredential"]:
        assert credential.partition(":")[2] in guide, f"{credential}: no step creates it"


def test_the_standby_unit_is_the_same_unit_but_for_its_description() -> None:
    """Two instances of one service, both ``--standby``: whichever holds the data directory
    serves, the other waits and takes over when it ends (a main unit without ``--standby``
    restarted after a takeover would fail its start every RestartSec, for ever)."""
    main, standby = UNIT.read_text().splitlines(), STANDBY.read_text().splitlines()
    assert len(main) == len(standby)
    differ = [(a, b) for a, b in zip(main, standby, strict=True) if a != b]
    assert [a.partition("=")[0] for a, _ in differ] == ["Description"], differ
    assert "--standby" in directives(STANDBY.read_text())["ExecStart"][0].split()
