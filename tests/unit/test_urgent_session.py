"""The urgent session: button and fall events come on a second MQTT session as well as on the
main one. Each call reaches the alert rules once, from whichever copy came first, and is
stored once, from the main session's copy; the urgent session's copy is never stored,
deduplicated against the stored traffic or dead-lettered, and its lane is bounded."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from devices import Message, Registry
from gateway.ingest.dedup import FirstCopies
from gateway.ingest.inbox import Inbox, UrgentFeed
from gateway.ingest.message import RawMessage
from gateway.ingest.pipeline import DEVICE_MISPLACED, INTERNAL_ERROR, Pipeline
from gateway.ingest.urgentsession import is_shared, urgent_client_id, urgent_filters
from gateway.monitoring import Metrics

T0 = 1_763_884_800_000
PRESS = "homecare/v1/site-01/bed-0001/button/btn-1/event"
FALL = "homecare/v1/site-01/bed-0002/fall/fs-2/event"
IR = "homecare/v1/site-01/bed-0001/infrared/ir-1/telemetry"
REGISTRY = """
[sites.site-01.beds.bed-0007.devices.btn-0007]
kind = "button"
"""


class Recorder:
    """A stage that remembers what it was handed; ``refuse``: seqs it raises on."""

    def __init__(self, name: str, refuse: set[int] | None = None) -> None:
        self.name = name
        self.refuse = refuse or set()
        self.seen: list[tuple[str, int]] = []

    def accept(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        if any(m.payload.seq in self.refuse for m in messages):
            raise RuntimeError("refused")
        self.seen.extend((m.address.topic, m.payload.seq) for m in messages)

    def commit(self) -> None:
        pass


def raw(topic: str, payload: dict[str, object] | bytes, mid: int, *, urgent: bool = False,
        retain: bool = False) -> RawMessage:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return RawMessage(topic, body, mid, 1, T0 + mid, retain=retain, urgent_session=urgent)


def press(seq: int) -> dict[str, object]:
    return {"ts": T0 + seq, "seq": seq, "event": "press"}


def telemetry(seq: int) -> dict[str, object]:
    return {"ts": T0 + seq, "seq": seq, "presence": True, "motion": 1, "people": 1,
            "zone": "room"}


def copies(topic: str, payload: dict[str, object] | bytes, mid: int
           ) -> tuple[RawMessage, RawMessage]:
    """The same message as the main session and the urgent session deliver it."""
    return raw(topic, payload, mid), raw(topic, payload, mid, urgent=True)


class Parts:
    def __init__(self, *, refuse: set[int] | None = None,
                 registry: Registry | None = None) -> None:
        self.alerts = Recorder("alerts", refuse)
        self.others = Recorder("livestate")
        self.metrics = Metrics()
        self.pipeline = Pipeline(metrics=self.metrics, stages=(self.alerts, self.others),
                                 urgent_stages=(self.alerts,), registry=registry)

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def stored(self) -> tuple[list[str], list[Any], list[RawMessage]]:
        """What the next commit would store: points, dead letters, raws to acknowledge."""
        lines, _, deadletters, raws = self.pipeline.take()
        return lines, deadletters, raws


@pytest.fixture
def parts() -> Parts:
    return Parts()


# --- the subscription -------------------------------------------------------------------------

@pytest.mark.parametrize(("main", "urgent"), [
    ("homecare/v1/#", ["homecare/v1/+/+/button/+/event", "homecare/v1/+/+/fall/+/event"]),
    ("#", ["homecare/v1/+/+/button/+/event", "homecare/v1/+/+/fall/+/event"]),
    ("homecare/+/#", ["homecare/v1/+/+/button/+/event", "homecare/v1/+/+/fall/+/event"]),
    ("homecare/v1/site-01/#", ["homecare/v1/site-01/+/button/+/event",
                               "homecare/v1/site-01/+/fall/+/event"]),
    ("homecare/v1/+/+/+/+/+", ["homecare/v1/+/+/button/+/event",
                               "homecare/v1/+/+/fall/+/event"]),
    ("homecare/v1/+/+/+/+/+/#", ["homecare/v1/+/+/button/+/event",
                                 "homecare/v1/+/+/fall/+/event"]),
    ("homecare/v1/s/b/button/d/event", ["homecare/v1/s/b/button/d/event"]),
    ("homecare/v1/s/b/+/d/+", ["homecare/v1/s/b/button/d/event",
                               "homecare/v1/s/b/fall/d/event"]),
    ("homecare/v1/+/+/fall/#", ["homecare/v1/+/+/fall/+/event"]),
    ("homecare/v1/+/+/button/+/status", []),
    ("homecare/v1/+/+/infrared/#", []),
    ("homecare/v1/s/b/button/d/event/more", []),
    ("homecare/v1/s/b", []),
    ("homecare/v2/#", []),
    ("$SYS/#", []),
    ("$share/gateways/homecare/v1/#", []),
])
def test_the_urgent_filters_match_the_button_and_fall_events_of_the_main_one(
        main: str, urgent: list[str]) -> None:
    assert urgent_filters(main) == urgent


def test_a_shared_subscription_gets_no_urgent_session() -> None:
    # The broker picks a member per message for each filter on its own: the two copies of a
    # call could go to two gateways and open two alerts.
    assert is_shared("$share/gateways/homecare/v1/#")
    assert not is_shared("homecare/v1/#")
    assert urgent_client_id("gw-site-01") == "gw-site-01-urgent"


# --- one alert, one stored point, whichever copy is first ----------------------------------------

def test_the_urgent_copy_first_opens_the_call_and_the_main_copy_is_stored_once(
        parts: Parts) -> None:
    main, urgent = copies(PRESS, press(9), 5)
    assert parts.pipeline.process_urgent([urgent]) == 1
    assert parts.alerts.seen == [(PRESS, 9)]
    lines, deadletters, raws = parts.stored()
    assert (lines, deadletters, raws) == ([], [], []), "the urgent copy is never stored"

    # The main session's copy, in its turn behind telemetry: stored once, handed to the other
    # stages, not to the alert rules again.
    backlog = [raw(IR, telemetry(i), i) for i in range(1, 4)]
    assert parts.pipeline.process_urgent([main]) == 0
    parts.pipeline.process([*backlog, main])
    assert parts.alerts.seen == [(PRESS, 9)] + [(IR, i) for i in range(1, 4)]
    assert parts.others.seen == [(IR, i) for i in range(1, 4)] + [(PRESS, 9)]
    lines, deadletters, raws = parts.stored()
    assert sum(line.startswith("button_event,") for line in lines) == 1
    assert raws == [*backlog, main], "only the main copies are acknowledged with the batch"
    assert deadletters == []
    assert parts.metric("homecare_urgent_calls_first_total", session="urgent") == 1
    assert parts.metric("homecare_urgent_calls_first_total", session="main") == 0
    assert parts.metric("homecare_messages_duplicate_total") == 0


def test_the_main_copy_first_opens_the_call_and_the_urgent_copy_adds_nothing(
        parts: Parts) -> None:
    main, urgent = copies(FALL, {"ts": T0, "seq": 3, "event": "fall_detected",
                                 "confidence": 0.9, "posture": "lying"}, 1)
    assert parts.pipeline.process_urgent([main]) == 1
    parts.pipeline.process([main])
    assert parts.pipeline.process_urgent([urgent]) == 0
    assert parts.alerts.seen == [(FALL, 3)]
    assert parts.others.seen == [(FALL, 3)]
    lines, _, raws = parts.stored()
    assert len(lines) == 1
    assert raws == [main]
    assert parts.metric("homecare_urgent_calls_first_total", session="main") == 1
    assert parts.metric("homecare_urgent_calls_first_total", session="urgent") == 0


def test_both_copies_in_one_lane_reach_the_rules_once(parts: Parts) -> None:
    main, urgent = copies(PRESS, press(2), 1)
    assert parts.pipeline.process_urgent([urgent, main]) == 1
    parts.pipeline.process([main])
    assert parts.alerts.seen == [(PRESS, 2)]
    assert len(parts.stored()[0]) == 1


def test_a_redelivered_urgent_copy_and_a_redelivered_main_copy_add_nothing(
        parts: Parts) -> None:
    main, urgent = copies(PRESS, press(4), 1)
    again_main, again_urgent = copies(PRESS, press(4), 2)  # QoS 1 redeliveries
    parts.pipeline.process_urgent([urgent, again_urgent])
    parts.pipeline.process_urgent([main])
    parts.pipeline.process([main])
    parts.pipeline.process_urgent([again_main])
    parts.pipeline.process([again_main])
    assert parts.alerts.seen == [(PRESS, 4)]
    assert parts.others.seen == [(PRESS, 4)]
    lines, _, raws = parts.stored()
    assert len(lines) == 1
    assert raws == [main, again_main]
    assert parts.metric("homecare_messages_duplicate_total") == 1, "the main redelivery only"


def test_every_call_of_a_device_reaches_the_rules_once_in_order(parts: Parts) -> None:
    pairs = [copies(PRESS, press(seq), seq) for seq in range(1, 6)]
    cancel = copies(PRESS, {"ts": T0 + 6, "seq": 6, "event": "cancel"}, 6)
    # The urgent session brings the first three at once; the main one all of them later.
    parts.pipeline.process_urgent([u for _, u in pairs[:3]])
    mains = [m for m, _ in [*pairs, cancel]]
    parts.pipeline.process_urgent(mains)
    parts.pipeline.process(mains)
    parts.pipeline.process_urgent([u for _, u in [*pairs[3:], cancel]])
    assert parts.alerts.seen == [(PRESS, seq) for seq in range(1, 7)]
    assert len(parts.stored()[0]) == 6


def test_the_same_seq_with_other_content_is_another_call(parts: Parts) -> None:
    # A device that restarted its counter: seq 1 again, later device time.
    first = raw(PRESS, press(1), 1, urgent=True)
    restarted = raw(PRESS, {"ts": T0 + 10_000, "seq": 1, "event": "press"}, 2, urgent=True)
    assert parts.pipeline.process_urgent([first, restarted]) == 2


def test_a_retained_urgent_copy_is_never_a_call(parts: Parts) -> None:
    retained = raw(PRESS, press(1), 1, urgent=True, retain=True)
    assert parts.pipeline.process_urgent([retained]) == 0
    assert parts.alerts.seen == []


# --- rejected copies: the main copy speaks for the message ---------------------------------------

def test_a_malformed_call_is_dead_lettered_once_from_the_main_copy(parts: Parts) -> None:
    main, urgent = copies(PRESS, b'{"ts": "yesterday", "seq": 1, "event": "press"}', 1)
    assert parts.pipeline.process_urgent([urgent]) == 0
    assert parts.pipeline.process_urgent([main]) == 0
    parts.pipeline.process([main])
    _, deadletters, raws = parts.stored()
    assert len(deadletters) == 1
    assert raws == [main]
    assert parts.alerts.seen == []


def test_a_misplaced_device_on_the_urgent_session_raises_nothing_and_is_counted_once() -> None:
    parts = Parts(registry=Registry.from_mapping(tomllib.loads(REGISTRY)))
    topic = "homecare/v1/site-01/bed-0099/button/btn-0007/event"  # registered at bed-0007
    main, urgent = copies(topic, press(1), 1)
    assert parts.pipeline.process_urgent([urgent]) == 0
    assert parts.pipeline.process_urgent([main]) == 0
    parts.pipeline.process([main])
    _, deadletters, _ = parts.stored()
    assert [d.reason for d in deadletters] == [DEVICE_MISPLACED]
    assert parts.alerts.seen == []
    assert parts.others.seen == []
    assert parts.metric("homecare_messages_misplaced_total", differs="bed") == 1


def test_an_unlisted_device_seen_first_on_the_urgent_session_is_registered_once(
        parts: Parts) -> None:
    main, urgent = copies(PRESS, press(1), 1)
    parts.pipeline.process_urgent([urgent])
    parts.pipeline.process_urgent([main])
    parts.pipeline.process([main])
    assert parts.metric("homecare_devices_auto_registered_total") == 1
    assert parts.pipeline.registry.bed("site-01", "bed-0001") is not None


def test_when_the_rules_cannot_take_the_urgent_copy_the_main_copy_goes_in_its_place() -> None:
    parts = Parts(refuse={7})
    main, urgent = copies(PRESS, press(7), 1)
    assert parts.pipeline.process_urgent([urgent]) == 1
    assert parts.stored()[1] == [], "the urgent copy is never a dead letter"
    parts.alerts.refuse.clear()  # the rules take it now
    assert parts.pipeline.process_urgent([main]) == 1
    parts.pipeline.process([main])
    assert parts.alerts.seen == [(PRESS, 7)]
    lines, deadletters, _ = parts.stored()
    assert len(lines) == 1
    assert deadletters == []


def test_a_call_the_rules_never_take_is_one_dead_letter() -> None:
    parts = Parts(refuse={7})
    main, urgent = copies(PRESS, press(7), 1)
    parts.pipeline.process_urgent([urgent])
    parts.pipeline.process_urgent([main])
    parts.pipeline.process([main])
    lines, deadletters, _ = parts.stored()
    assert [d.reason for d in deadletters] == [INTERNAL_ERROR]
    assert len(lines) == 1, "still stored"
    assert parts.others.seen == [(PRESS, 7)]


# --- bounded memories -------------------------------------------------------------------------

def test_first_copies_are_bounded_and_forget_the_oldest() -> None:
    calls = FirstCopies(max_calls=3)
    keys = [("s", "b", "d", seq, 0) for seq in range(5)]
    assert all(calls.first(k) for k in keys)
    assert len(calls) == 3
    assert calls.first(keys[0]), "forgotten: a second copy would be taken again"
    assert not calls.first(keys[4])
    with pytest.raises(ValueError):
        FirstCopies(max_calls=0)


def test_the_urgent_feed_fills_the_urgent_lane_only_and_pushes_back() -> None:
    inbox = Inbox(100)
    feed = UrgentFeed(inbox, maxsize=3)
    resumed: list[bool] = []
    feed.on_space = lambda: resumed.append(True)
    calls = [raw(PRESS, press(seq), seq, urgent=True) for seq in range(1, 5)]
    assert feed.put_many(calls[:2])
    assert inbox.urgent_ready.is_set()
    assert len(inbox) == 0, "never in the inbox proper: the urgent copies are not stored"
    assert not feed.put_many(calls[2:]), "the lane holds maxsize: stop reading"
    assert inbox.take_urgent() == calls
    assert resumed == [True], "emptied: read again"
    # The main session's copies of calls go to the lane as before, beside the inbox.
    inbox.put_many([raw(PRESS, press(9), 9)])
    assert len(inbox) == 1
    assert len(inbox.take_urgent()) == 1


def test_the_urgent_session_connects_as_its_own_user_where_one_is_set(tmp_path: Path) -> None:
    """On a broker that makes the user name the client id (the shipped mosquitto.conf), two
    sessions under one user would take over each other: the urgent one has its own user."""
    from gateway.config import load
    from gateway.ingest.connection import MqttSource

    secret = tmp_path / "urgent-password"
    secret.write_text("urgent-secret\n")

    def credentials(urgent: bool, **settings: Any) -> tuple[str | None, str | None]:
        s = load(None, mqtt_url="mqtt://url-user:url-secret@127.0.0.1:1883",
                 data_dir=tmp_path, **settings)
        return MqttSource(s, Inbox(10), urgent=urgent,
                          client_id=urgent_client_id(s.mqtt_client_id) if urgent else None
                          ).credentials()

    # Unset: both sessions use the main session's credentials, as before.
    assert credentials(False) == credentials(True) == ("url-user", "url-secret")
    main = {"mqtt_username": "gateway", "mqtt_password": "main-secret"}
    assert credentials(True, **main) == ("gateway", "main-secret")
    own = {**main, "mqtt_urgent_username": "gateway-urgent"}
    assert credentials(False, **own) == ("gateway", "main-secret")
    assert credentials(True, **own) == ("gateway-urgent", "main-secret")
    assert credentials(True, **own, mqtt_urgent_password_file=secret) == (
        "gateway-urgent", "urgent-secret")
    assert credentials(True, **own, mqtt_urgent_password="env-secret",
                       mqtt_urgent_password_file=secret) == ("gateway-urgent", "env-secret")
