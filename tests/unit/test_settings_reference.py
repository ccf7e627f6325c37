"""The settings reference: documented on the model, and the sample and README generated from it."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from gateway.config import Settings, load
from gateway.settings_reference import (
    COMMENTED_EXAMPLES,
    EXAMPLE_PATH,
    EXAMPLES,
    README_PATH,
    REGENERATE,
    main,
    readme_block,
    render_example_toml,
    render_readme_table,
    replace_readme_block,
    settings,
)

ROOT = Path(__file__).resolve().parents[2]
SECRETS_DIR = "/etc/homecare/secrets"


@pytest.fixture(autouse=True)
def _no_homecare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMECARE_"):
            monkeypatch.delenv(key)


def test_example_config_is_what_the_settings_model_renders() -> None:
    text = (ROOT / EXAMPLE_PATH).read_text(encoding="utf-8")
    assert text == render_example_toml(), (
        f"{EXAMPLE_PATH} differs from the settings model in gateway/config.py; "
        f"regenerate it with `{REGENERATE}`")


def test_readme_settings_table_is_what_the_settings_model_renders() -> None:
    text = (ROOT / README_PATH).read_text(encoding="utf-8")
    assert readme_block(text) == render_readme_table(), (
        f"the settings table in {README_PATH} differs from the settings model in "
        f"gateway/config.py; regenerate it with `{REGENERATE}`")


def test_every_setting_has_a_description_and_a_unit_its_name_promises() -> None:
    every = settings()
    assert len(every) == len(Settings.model_fields)
    for setting in every:
        assert setting.description, f"{setting.name} has no description in gateway/config.py"
        for suffix, unit in (("_s", "s"), ("_ms", "ms"), ("_bytes", "bytes")):
            if setting.name.endswith(suffix):
                assert setting.unit == unit, f"{setting.name}: unit {setting.unit!r}, not {unit}"


def test_every_setting_is_in_the_readme_table_and_the_example() -> None:
    table = render_readme_table()
    example = render_example_toml()
    for setting in settings():
        assert f"| `{setting.name}` | `{setting.env}` |" in table
        assert f"Environment: {setting.env}." in example


def test_example_config_loads_without_secrets_and_sets_only_its_examples(tmp_path: Path) -> None:
    text = (ROOT / EXAMPLE_PATH).read_text(encoding="utf-8")
    written = _flat(tomllib.loads(text))
    secrets = {s.name for s in settings() if s.secret}
    assert secrets == {"mqtt_password", "mqtt_urgent_password", "influx_token",
                       "influx_password", "api_key", "upstream_secret", "notify_link_secret",
                       "notify_webhook_secret", "notify_smtp_password"}
    assert not secrets & written.keys(), "a secret has a value in the example config"
    assert written.keys() == EXAMPLES.keys(), "only the example overrides are set"
    _assert_loads_as(text, {**EXAMPLES}, tmp_path)


def test_example_config_with_every_line_uncommented_loads_as_documented(tmp_path: Path) -> None:
    text = (ROOT / EXAMPLE_PATH).read_text(encoding="utf-8")
    uncommented = re.sub(r"^# (?=[a-z][a-z0-9_]* = )", "", text, flags=re.MULTILINE)
    _assert_loads_as(uncommented, {**COMMENTED_EXAMPLES, **EXAMPLES}, tmp_path)


def _assert_loads_as(text: str, examples: dict[str, object], tmp_path: Path) -> None:
    """``text`` loads, every setting in ``examples`` as given there, all others as defaults.
    Secret files under /etc/homecare/secrets are made in ``tmp_path`` instead."""
    for path in re.findall(rf'"{SECRETS_DIR}/([^"]+)"', text):
        (tmp_path / path).write_text("0123456789abcdef-secret\n")
    config = tmp_path / "gateway.toml"
    config.write_text(text.replace(SECRETS_DIR, str(tmp_path)), encoding="utf-8")
    loaded = load(config)
    for setting in settings():
        expected = examples.get(setting.name, setting.default)
        if isinstance(expected, str | Path):
            expected = str(expected).replace(SECRETS_DIR, str(tmp_path))
        actual = getattr(loaded, setting.name)
        assert (str(actual) if isinstance(actual, Path) else actual) == expected, setting.name


def test_readme_block_is_replaced_and_nothing_else() -> None:
    readme = "# Title\n\nprose\n<!-- settings:begin -->\nold\n<!-- settings:end -->\nafter\n"
    assert (replace_readme_block(readme, "new\n")
            == "# Title\n\nprose\n<!-- settings:begin -->\nnew\n<!-- settings:end -->\nafter\n")
    with pytest.raises(ValueError, match="settings:begin"):
        replace_readme_block("no markers\n", "new\n")


def test_check_command_reports_drift_and_write_fixes_it(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / EXAMPLE_PATH).write_text("stale\n")
    (tmp_path / README_PATH).write_text("intro\n<!-- settings:begin -->\n<!-- settings:end -->\n")
    assert main(["--root", str(tmp_path)]) == 1
    assert REGENERATE in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "--write"]) == 0
    assert main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / README_PATH).read_text().startswith("intro\n<!-- settings:begin -->\n")


def _flat(raw: dict[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
