"""The topic scheme ``homecare/v1/{site}/{bed}/{kind}/{device}/{channel}``."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import (
    CHANNELS,
    CHANNELS_BY_KIND,
    KINDS,
    REASONS,
    SUBSCRIPTION,
    Address,
    Channel,
    Kind,
    TopicError,
    format_topic,
    parse_topic,
)
from devices.topics import MAX_TOPIC_CHARS, TopicCache, is_valid_id

PROPERTY = settings(deadline=None, max_examples=200)

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
pairs = st.sampled_from(sorted((k, c) for k, chans in CHANNELS_BY_KIND.items() for c in chans))
bad_ids = st.text(max_size=80).filter(lambda s: not is_valid_id(s) and "/" not in s)


@PROPERTY
@given(site=ids, bed=ids, device=ids, pair=pairs)
def test_format_then_parse_is_identity(site: str, bed: str, device: str,
                                       pair: tuple[Kind, Channel]) -> None:
    kind, channel = pair
    topic = format_topic(site, bed, kind, device, channel)
    address = parse_topic(topic)
    assert address == Address(site, bed, kind, device, channel)
    assert address.topic == topic
    assert topic.startswith("homecare/v1/")


@PROPERTY
@given(topic=st.text() | st.lists(st.text(max_size=12) | ids, max_size=9).map("/".join))
def test_parse_any_text_returns_an_address_or_a_reasoned_topic_error(topic: str) -> None:
    result: Address | TopicError
    try:
        result = parse_topic(topic)
    except TopicError as exc:
        result = exc
    if isinstance(result, TopicError):
        assert result.reason in REASONS
        assert result.detail
    else:
        assert result.topic == topic


@PROPERTY
@given(bad=bad_ids, position=st.sampled_from(["site", "bed", "device"]))
def test_invalid_ids_are_bad_topics(bad: str, position: str) -> None:
    parts = {"site": "site-01", "bed": "bed-0007", "device": "btn-0007"}
    parts[position] = bad
    with pytest.raises(TopicError) as info:
        format_topic(parts["site"], parts["bed"], "button", parts["device"], "event")
    assert info.value.reason == "bad_topic"
    topic = f"homecare/v1/{parts['site']}/{parts['bed']}/button/{parts['device']}/event"
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    assert info.value.reason == "bad_topic"


@pytest.mark.parametrize(("topic", "reason"), [
    ("homecare/v2/s/b/button/d/event", "unknown_version"),
    ("homecare/V1/s/b/button/d/event", "unknown_version"),
    ("homecare/v1/s/b/Button/d/event", "unknown_kind"),
    ("homecare/v1/s/b/camera/d/event", "unknown_kind"),
    ("homecare/v1/s/b/button/d/telemetry", "unknown_channel"),
    ("homecare/v1/s/b/badge/d/telemetry", "unknown_channel"),
    ("homecare/v1/s/b/fall/d/command", "unknown_channel"),
    ("homecare/v1/s/b/fall/d/event/extra", "bad_topic"),
    ("homecare/v1/s/b/fall/d", "bad_topic"),
    ("/homecare/v1/s/b/fall/d/event", "bad_topic"),
    ("homecare/v1/+/b/fall/d/event", "bad_topic"),
    ("homecare/v1/s/#/fall/d/event", "bad_topic"),
    ("homecare/v1/s//fall/d/event", "bad_topic"),
    ("", "bad_topic"),
])
def test_topics_outside_the_contract(topic: str, reason: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    assert info.value.reason == reason


def test_every_kind_has_status_and_the_table_matches_the_design() -> None:
    assert {"button", "infrared", "audio", "fall", "badge"} == KINDS
    assert {"telemetry", "event", "status"} == CHANNELS
    assert all(Channel.STATUS in channels for channels in CHANNELS_BY_KIND.values())
    assert CHANNELS_BY_KIND[Kind.BUTTON] == {Channel.EVENT, Channel.STATUS}
    assert CHANNELS_BY_KIND[Kind.BADGE] == {Channel.EVENT, Channel.STATUS}
    assert SUBSCRIPTION == "homecare/v1/#"


def test_format_rejects_unknown_kind_and_channel() -> None:
    with pytest.raises(TopicError) as info:
        format_topic("s", "b", "camera", "d", "event")
    assert info.value.reason == "unknown_kind"
    with pytest.raises(TopicError) as info:
        format_topic("s", "b", "button", "d", "telemetry")
    assert info.value.reason == "unknown_channel"


@settings(deadline=None, max_examples=50)
@given(topics=st.lists(st.text(max_size=30) | pairs.map(
    lambda p: f"homecare/v1/s/b/{p[0]}/d/{p[1]}"), max_size=40))
def test_topic_cache_is_bounded_and_agrees_with_parse(topics: list[str]) -> None:
    cache = TopicCache(limit=8)
    for topic in topics:
        cached = cache.parse(topic)
        try:
            expected: Address | str = parse_topic(topic)
        except TopicError as exc:
            expected = exc.reason
        assert (cached.reason if isinstance(cached, TopicError) else cached) == expected
        assert len(cache._entries) <= 8


def test_topic_cache_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError):
        TopicCache(limit=0)


def _made_up(i: int) -> str:
    """A topic of the shape a flood uses: a made-up bed id of 65 characters (one too many)."""
    return f"homecare/v1/site-01/b{i:06d}{'x' * 58}/infrared/d{i:06d}/status"


def test_rejected_topics_are_kept_as_short_strings_not_exceptions() -> None:
    """Each kept TopicError held its traceback (frames and all): 2.9 KB per made-up topic, 447
    MB after a flood of 100,000 (issue 17)."""
    cache = TopicCache()
    first = cache.parse(_made_up(1))
    again = cache.parse(_made_up(1))
    for answer in (first, again):
        assert isinstance(answer, TopicError)
        assert (answer.reason, answer.__traceback__) == ("bad_topic", None)
    assert not any(isinstance(value, BaseException) or isinstance(value[0], BaseException)
                   for value in cache._entries.values())
    tracemalloc.start()
    try:
        for i in range(2, 20_002):
            assert isinstance(cache.parse(_made_up(i)), TopicError)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / 20_000 < 700  # bytes per kept rejection: the topic, reason and detail


def test_topic_cache_is_bounded_by_bytes() -> None:
    cache = TopicCache(max_bytes=64 * 1024)
    good = [f"homecare/v1/site-01/b{i:06d}{'y' * 57}/infrared/d{i:06d}{'z' * 57}/status"
            for i in range(2_000)]
    for i, topic in enumerate(good):
        assert isinstance(cache.parse(topic), Address)
        assert isinstance(cache.parse(_made_up(i)), TopicError)
        assert cache.bytes <= 64 * 1024
    assert 0 < len(cache) < 2_000
    assert cache.parse(good[-1]) == parse_topic(good[-1])  # the newest are still there


def test_a_topic_longer_than_any_valid_one_is_not_kept() -> None:
    cache = TopicCache()
    huge = "homecare/v1/" + "s" * 60_000 + "/b/button/d/event"
    assert len(huge) > MAX_TOPIC_CHARS
    assert cache.parse(huge).reason == "bad_topic"  # type: ignore[union-attr]
    assert (len(cache), cache.bytes) == (0, 0)
