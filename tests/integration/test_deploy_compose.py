"""docker-compose.yml as committed: Compose itself accepts it with the variables of
deploy/compose.env.example filled in, every variable it requires is in that example, the broker
reads the files ``homecare acl`` writes, and the guide has the first-run steps."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from homecare.acl import ACL_FILE, PASSWORD_FILE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
GUIDE = ROOT / "deploy" / "README.md"


def example_env() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_compose_accepts_the_file_with_the_example_variables(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    # make test installs it (scripts/setup-system.sh): missing is a failure, not a skip.
    assert binary is not None, "docker-compose (Debian package docker-compose) is not installed"
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{key}={value or 'placeholder-' + key.lower()}\n"
                                for key, value in example_env().items()))
    done = subprocess.run([binary, "--project-directory", str(ROOT), "--env-file",
                           str(env_file), "-f", str(COMPOSE), "config"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert {"mosquitto", "influxdb", "gateway", "victoriametrics", "grafana"} <= set(
        config["services"])


def test_every_required_variable_is_in_the_example() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{(\w+)(?::?[-?][^}]*)?\}", text))
    example = example_env()
    assert used <= set(example), f"not in compose.env.example: {used - set(example)}"
    for name in re.findall(r"\$\{(\w+):\?", text):
        assert example[name] == "", f"{name} is a secret: the example leaves it empty"


def test_the_broker_reads_what_homecare_acl_writes() -> None:
    mosquitto = yaml.safe_load(COMPOSE.read_text())["services"]["mosquitto"]
    mounts = {volume.split(":")[-2] if volume.endswith((":ro", ":rw")) else
              volume.split(":")[-1]: volume for volume in mosquitto["volumes"]}
    assert f"var/mosquitto/{ACL_FILE}" in mounts["/mosquitto/config/acl"]
    assert f"var/mosquitto/{PASSWORD_FILE}" in mounts["/mosquitto/config/passwd"]
    assert "homecare acl --registry" in COMPOSE.read_text()
    example = example_env()
    assert example["MOSQUITTO_ACL_FILE"] == f"./var/mosquitto/{ACL_FILE}"
    assert example["MOSQUITTO_PASSWORD_FILE"] == f"./var/mosquitto/{PASSWORD_FILE}"


def test_the_guide_has_the_first_run_steps() -> None:
    guide = GUIDE.read_text()
    for step in ("cp deploy/compose.env.example .env",
                 "homecare acl --registry deploy/registry.example.toml --out-dir var/mosquitto",
                 "docker compose up -d --build",
                 "docker compose exec gateway homecare keys create --role admin --name admin"):
        assert step in guide, f"deploy/README.md lacks {step!r}"
