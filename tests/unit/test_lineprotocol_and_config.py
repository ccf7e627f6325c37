from __future__ import annotations

from pathlib import Path

import pytest

from devices import Codec, Message
from gateway.config import ConfigError, load
from gateway.lineprotocol import LineEncoder

codec = Codec()


def _lines(topic: str, payload: bytes) -> list[str]:
    message = codec.decode(topic, payload)
    assert isinstance(message, Message)
    out: list[str] = []
    LineEncoder().lines(message, out)
    return out


def test_batched_vitals_become_one_point_per_sample_in_ms() -> None:
    lines = _lines("homecare/v1/site-01/bed-0007/fall/fs-0007/telemetry",
                   b'{"ts":1763884801000,"seq":9,"samples":[{"t":1763884800000,"in_bed":true,'
                   b'"breathing_rate":15.5,"heart_rate":68},{"t":1763884800500,"in_bed":false}]}')
    assert lines == [
        "vitals,bed=bed-0007,device=fs-0007,site=site-01 in_bed=true,breathing_rate=15.5,"
        "heart_rate=68.0 1763884800000",
        "vitals,bed=bed-0007,device=fs-0007,site=site-01 in_bed=false 1763884800500",
    ]


def test_string_fields_are_escaped() -> None:
    (line,) = _lines("homecare/v1/s/b/badge/bg-1/event",
                     b'{"ts":5,"seq":1,"event":"check_out","caregiver":"c\\"1\\\\","visit":"v\\n1",'
                     b'"services":["A1","B2"]}')
    assert 'caregiver="c\\"1\\\\"' in line
    assert 'visit="v 1"' in line
    assert 'services="A1,B2"' in line
    assert line.endswith(" 5")


def test_status_carries_kind_tag_and_integer_seq() -> None:
    (line,) = _lines("homecare/v1/s/b/infrared/ir-1/status",
                     b'{"ts":7,"seq":3,"state":"online","battery":80}')
    assert line == ('device_status,bed=b,device=ir-1,kind=infrared,site=s '
                    'state="online",seq=3i,battery=80.0 7')


def test_settings_from_toml_sections_and_env_override(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[mqtt]\nurl = "mqtts://u:p%40ss@broker:8884"\n[influx]\napi = "v1"\n'
                    'db = "care"\n')
    monkeypatch.setenv("HOMECARE_INFLUX_DB", "other")
    settings = load(path)
    assert settings.mqtt.tls
    assert settings.mqtt.port == 8884
    assert settings.mqtt.password == "p@ss"
    assert settings.influx_api == "v1"
    assert settings.influx_db == "other", "environment beats the file"


@pytest.mark.parametrize(("env", "value", "named"), [
    ("HOMECARE_MQTT_URL", "http://x", "HOMECARE_MQTT_URL"),
    ("HOMECARE_INFLUX_API", "v3", "HOMECARE_INFLUX_API"),
    ("HOMECARE_TIMEZONE", "Mars/Olympus", "HOMECARE_TIMEZONE"),
    ("HOMECARE_API_ADDR", "localhost", "HOMECARE_API_ADDR"),
    ("HOMECARE_INFLUX_TOKEN_FILE", "/nonexistent/token", "influx_token_file"),
    ("HOMECARE_UPSTREAM_URL", "ftp://platform/x", "HOMECARE_UPSTREAM_URL"),
    ("HOMECARE_UPSTREAM_URL", "https://platform/x", "upstream_secret"),
    ("HOMECARE_UPSTREAM_SOURCE", "a b", "HOMECARE_UPSTREAM_SOURCE"),
])
def test_bad_configuration_fails_naming_the_setting(env: str, value: str, named: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=named):
        load()


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('mqtt_ulr = "mqtt://x"\n')
    with pytest.raises(ConfigError, match=r"mqtt_ulr.*unknown setting"):
        load(path)


def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    monkeypatch.setenv("HOMECARE_INFLUX_TOKEN_FILE", str(token))
    assert load().secret("influx_token") == "s3cret"


def test_upstream_secret_is_masked_in_diagnostics(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import from_environment

    monkeypatch.setenv("HOMECARE_UPSTREAM_SECRET", "0123456789abcdef-upstream")
    monkeypatch.setenv("HOMECARE_UPSTREAM_URL", "https://platform/x")
    shown = from_environment()
    assert shown["HOMECARE_UPSTREAM_SECRET"] == "***"
    assert shown["HOMECARE_UPSTREAM_URL"] == "https://platform/x"
    assert load().secret("upstream_secret") == "0123456789abcdef-upstream"
