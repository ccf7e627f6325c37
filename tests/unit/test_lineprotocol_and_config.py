from __future__ import annotations

from pathlib import Path

import pytest

from devices import Codec, Message
from gateway.config import load
from gateway.errors import ConfigError
from gateway.tsdb import lineprotocol
from gateway.tsdb.lineprotocol import LineEncoder

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
    # Caregiver and visit ids take no backslash or newline (devices.person_id_problem): a
    # quote, a comma and an equals sign they may carry; the status's firmware carries the rest.
    (line,) = _lines("homecare/v1/s/b/badge/bg-1/event",
                     b'{"ts":5,"seq":1,"event":"check_out","caregiver":"c\\"1","visit":"v=1,2",'
                     b'"services":["A1","B2"]}')
    assert 'caregiver="c\\"1"' in line
    assert 'visit="v=1,2"' in line
    assert 'services="A1,B2"' in line
    assert line.endswith(" 5")
    (line,) = _lines("homecare/v1/s/b/infrared/ir-1/status",
                     b'{"ts":7,"seq":3,"state":"online","fw":"2.1\\\\x\\n\\"q"}')
    assert 'fw="2.1\\\\x \\"q"' in line


def test_status_carries_kind_tag_and_integer_seq() -> None:
    (line,) = _lines("homecare/v1/s/b/infrared/ir-1/status",
                     b'{"ts":7,"seq":3,"state":"online","battery":80}')
    assert line == ('device_status,bed=b,device=ir-1,kind=infrared,site=s '
                    'state="online",seq=3i,battery=80.0 7')


NOW = 1_796_000_000_000
"""Receipt time of the clock tests (2026-11-30)."""


def _at(topic: str, payload: str, received: int = NOW, encoder: LineEncoder | None = None
        ) -> list[tuple[str, int]]:
    """``(point without its time, time)`` of a message received at ``received``."""
    message = codec.decode(topic, payload.encode())
    assert isinstance(message, Message)
    out: list[str] = []
    (encoder or LineEncoder()).lines(message, out, received)
    return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in out]


AUDIO = "homecare/v1/s/b/audio/au-1/telemetry"
VITALS = "homecare/v1/s/b/fall/fs-1/telemetry"


def test_device_times_inside_the_clock_window_are_stored_as_sent() -> None:
    backlog = NOW - 2 * 86_400_000  # two days queued in the broker: still as measured
    assert _at(AUDIO, f'{{"ts":{backlog},"seq":1,"level_db":40}}') == [
        ("audio,bed=b,device=au-1,site=s level_db=40.0", backlog)]
    ahead = NOW + 60_000
    assert _at(AUDIO, f'{{"ts":{ahead},"seq":1,"level_db":40}}')[0][1] == ahead


@pytest.mark.parametrize("ts", [NOW // 1000, NOW * 1000, 946_684_800_000, NOW + 86_400_000,
                                NOW - 8 * 86_400_000])
def test_a_device_time_outside_the_window_is_stored_at_receipt_time_and_kept(ts: int) -> None:
    encoder = LineEncoder()
    assert _at(AUDIO, f'{{"ts":{ts},"seq":1,"level_db":40}}', encoder=encoder) == [
        (f"audio,bed=b,device=au-1,site=s level_db=40.0,device_ts={ts}i", NOW)]
    assert encoder.retimed == 1
    (line,) = _lines("homecare/v1/s/b/button/btn-1/event", f'{{"ts":{ts},"seq":2,'
                     '"event":"press"}'.encode())
    assert line.endswith(f" {ts}"), "without a receipt time nothing is checked"


def test_a_batch_with_seconds_keeps_its_samples_distinct_and_in_order() -> None:
    samples = ",".join(f'{{"t":{NOW // 1000 - 20 + 10 * i},"heart_rate":{60 + i}}}'
                       for i in range(3))
    # Sample times in seconds, message time right: one millisecond apart before ts.
    points = _at(VITALS, f'{{"ts":{NOW - 300},"seq":1,"samples":[{samples}]}}')
    assert [t for _, t in points] == [NOW - 302, NOW - 301, NOW - 300]
    assert [p for p, _ in points] == [
        f"vitals,bed=b,device=fs-1,site=s heart_rate={60.0 + i},"
        f"device_ts={NOW // 1000 - 20 + 10 * i}i" for i in range(3)]
    # Every time in seconds: the samples keep their offsets from ts (in the device's unit).
    points = _at(VITALS, f'{{"ts":{NOW // 1000},"seq":2,"samples":[{samples}]}}')
    assert [t for _, t in points] == [NOW - 20, NOW - 10, NOW]


def test_retimed_points_of_one_series_never_share_a_timestamp() -> None:
    encoder = LineEncoder()
    times: list[int] = []
    for seq in range(5):  # a backlog burst from a microsecond clock, received in one ms
        body = ",".join(f'{{"t":{(NOW - 9_000 + 3_000 * i) * 1000},"heart_rate":60}}'
                        for i in range(3))
        times += [t for _, t in _at(VITALS, f'{{"ts":{NOW * 1000},"seq":{seq},'
                                            f'"samples":[{body}]}}', encoder=encoder)]
    assert times == sorted(set(times))
    assert len(times) == 15
    assert encoder.retimed == 15


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
    assert settings.clock_window_s == 7 * 86_400
    monkeypatch.setenv("HOMECARE_CLOCK_WINDOW_S", "3600")
    assert load(path).clock_window_s == 3600


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


def test_max_payload_bytes_bounds_what_the_gateway_and_replay_accept(tmp_path: Path) -> None:
    from devices.codec import Rejected
    from gateway.config import Settings
    from gateway.runtime import Gateway
    from homecare.replay import Replayer

    topic = "homecare/v1/s1/b1/button/btn-1/event"
    small = b'{"ts":1,"seq":1,"event":"press"}'
    large = small[:-1] + b',"note":"' + b"x" * 400 + b'"}'
    settings = Settings(data_dir=tmp_path, max_payload_bytes=300)
    gateway = Gateway(settings, serve_http=False)
    for codec in (gateway.pipeline.codec, Replayer(settings=settings).pipeline.codec):
        assert not isinstance(codec.decode(topic, small), Rejected)
        rejected = codec.decode(topic, large)
        assert isinstance(rejected, Rejected)
        assert rejected.reason == "oversize"
    default = Gateway(Settings(data_dir=tmp_path / "default"), serve_http=False)
    assert not isinstance(default.pipeline.codec.decode(topic, large), Rejected)  # 64 KiB


def test_series_keys_are_kept_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """The encoder's series keys (formatted tags) and latest retimed times were kept for up to
    500,000 series (about 400 bytes each with 64-character ids) and the retimed ones never
    forgotten one by one (issue 17): now at most SERIES_KEYS_MAX each, the oldest first."""
    monkeypatch.setattr(lineprotocol, "SERIES_KEYS_MAX", 5)
    encoder = LineEncoder()
    for n in range(20):
        _at(f"homecare/v1/s/b/audio/au-{n}/telemetry", f'{{"ts":{NOW},"seq":1,"level_db":40}}',
            encoder=encoder)
        _at(f"homecare/v1/s/b/audio/au-{n}/telemetry", f'{{"ts":{NOW * 1000},"seq":2,'
            '"level_db":40}', encoder=encoder)
        assert len(encoder._keys) <= 5
        assert len(encoder._last_retimed) <= 5
    assert encoder.retimed == 20
    points = _at("homecare/v1/s/b/audio/au-19/telemetry", f'{{"ts":{NOW * 1000},"seq":3,'
                 '"level_db":41}', encoder=encoder)
    assert points == [(f"audio,bed=b,device=au-19,site=s level_db=41.0,device_ts={NOW * 1000}i",
                       NOW + 1)]  # the newest series still kept its latest retimed time
