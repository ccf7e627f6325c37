"""On-call notification from the settings: the on-call file read and checked at start (the
example in deploy/ included), the link secret kept privately across restarts, the channels
that are configured and the settings that configure them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from alerts import Severity
from gateway.config import load
from gateway.errors import ConfigError
from gateway.notify import channels_from_settings, link_secret, read_oncall_file

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "oncall.example.toml"


def test_the_example_oncall_file_reads_as_a_roster_and_chains() -> None:
    roster, chains = read_oncall_file(EXAMPLE, load())
    assert [s.id for s in roster.staff] == ["anna", "bo", "li", "wang"]
    assert [c.name for c in chains] == ["calls"]
    assert chains[0].matches(Severity.CRITICAL, "fall")
    assert [s.wait_s for s in chains[0].steps] == [60, 120, 300]


def test_a_bad_oncall_file_fails_the_start_naming_the_file_and_each_problem(
        tmp_path: Path) -> None:
    path = tmp_path / "oncall.toml"
    path.write_text('[[staff]]\nid = "anna"\nname = "A"\nrole = "cook"\n'
                    '[[chains]]\nname = "c"\n[[chains.steps]]\nrecipients = ["anna"]\n')
    with pytest.raises(ConfigError, match=r"oncall_file .*oncall.toml: staff\[0\].role"):
        read_oncall_file(path, load())
    path.write_text('[[chains]]\nname = "c"\n[[chains.steps]]\nrecipients = ["anna"]\n')
    with pytest.raises(ConfigError, match=r"chains\[0\]: step 1: recipients"):
        read_oncall_file(path, load())
    path.write_text("staff = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_oncall_file(path, load())
    with pytest.raises(ConfigError, match="cannot read"):
        read_oncall_file(tmp_path / "missing.toml", load())
    roster, chains = read_oncall_file(None, load(report_shifts=("early=06:00", "late=18:00")))
    assert ([s.name for s in roster.shifts], chains) == (["early", "late"], ())


def test_the_link_secret_is_made_once_kept_private_and_reused(tmp_path: Path) -> None:
    first = link_secret(load(), tmp_path)
    path = tmp_path / "notify-link.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) == 64
    assert link_secret(load(), tmp_path) == first
    given = "a-link-secret-from-the-environment"
    assert link_secret(load(notify_link_secret=given), tmp_path) == given.encode()


def test_only_configured_channels_are_used_and_their_settings_are_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    channels, config = channels_from_settings(load())
    assert (channels, config.webhook, config.email, config.mqtt) == ({}, False, False, False)
    channels, config = channels_from_settings(load(
        notify_webhook_url="http://127.0.0.1:9/hook", notify_webhook_secret="s" * 20,
        notify_smtp_host="127.0.0.1", notify_mqtt_url="mqtt://127.0.0.1:1883",
        notify_profile_channels=("webhook",)))
    assert sorted(channels) == ["email", "mqtt", "webhook"]
    assert config.profile_channels == frozenset({"webhook"})
    assert config.family_profile_fields == frozenset()  # the family is sent none of it
    _, config = channels_from_settings(load(notify_profile_to_family=("access_notes",)))
    assert config.family_profile_fields == frozenset({"access_notes"})
    for bad, setting in [({"notify_webhook_url": "http://127.0.0.1:9/hook"}, "needs"),
                         ({"notify_profile_channels": ("fax",)}, "notify_profile_channels"),
                         ({"notify_profile_to_family": ("notes",)},
                          "notify_profile_to_family"),
                         ({"notify_mqtt_topic": "paging/{room}"}, "notify_mqtt_topic"),
                         ({"notify_mqtt_topic": "paging/+/{site}"}, "notify_mqtt_topic"),
                         ({"notify_mqtt_url": "http://127.0.0.1"}, "notify_mqtt_url")]:
        with pytest.raises(ConfigError, match=setting):
            load(**bad)
    monkeypatch.setenv("HOMECARE_NOTIFY_PROFILE_CHANNELS", "webhook,email")
    assert load().notify_profile_channels == ("webhook", "email")
    monkeypatch.setenv("HOMECARE_NOTIFY_PROFILE_TO_FAMILY", "display_name, medical_notes")
    assert load().notify_profile_to_family == ("display_name", "medical_notes")
