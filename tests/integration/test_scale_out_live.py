"""More than one gateway on one broker, the way the README advises: each gateway subscribes to
its own sites' topics (several filters in ``mqtt_topic``), with its own client id, data and
database. Real mosquitto, two gateway processes, two VictoriaMetrics (which keep exact
duplicates, so a point stored twice would show).

Every message is processed exactly once, by the gateway of its site: each store holds exactly
the points of its gateway's sites, once each, and no bed's messages (a press and its cancel
included) are split between the gateways."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest

from devices import Codec, Rejected
from simulators.clock import local_ms
from simulators.config import DEFAULT_START, SimConfig
from simulators.stream import live
from simulators.traffic import Action
from tests.ingest import describe_difference, publish, start_gateway, wait_ingested, wait_stored
from tests.oracle import PointKey, expected_points
from tests.servers import GatewayProcess, Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration

N_MESSAGES = 12_000
SITES = {"a": ("site-01", "site-03"), "b": ("site-02", "site-04")}
"""Which gateway serves which sites: two topic filters each."""


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, VictoriaMetrics]]:
    servers = {name: VictoriaMetrics(tmp_path / f"vm-{name}") for name in SITES}
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def traffic() -> list[tuple[str, bytes]]:
    """Simulated beds on four sites, and a press and its cancel on every bed."""
    timezone = "Asia/Shanghai"
    start_ms = local_ms(DEFAULT_START, 0.0, timezone)
    sim = live(SimConfig(beds=40, sites=4, seed=11, timezones=(timezone,)), start_ms=start_ms,
               chunk_ms=15 * 60_000)
    messages = list(islice(((e.topic, e.payload) for e in sim.messages()
                            if e.action != Action.WILL), N_MESSAGES))
    beds = sorted({tuple(topic.split("/")[2:4]) for topic, _ in messages})
    for i, (site, bed) in enumerate(beds):
        topic = f"homecare/v1/{site}/{bed}/button/btn-x{i:03d}/event"
        for seq, event in ((1, "press"), (2, "cancel")):
            payload = {"ts": start_ms + 3_600_000 + seq * 10_000, "seq": seq, "event": event}
            messages.append((topic, json.dumps(payload).encode()))
    return messages


def site_of(topic: str) -> str:
    return topic.split("/")[2]


def beds_in(points: Counter[PointKey]) -> set[tuple[str, str]]:
    out = set()
    for _, tags, _ in points:
        labels = dict(tags)
        out.add((labels["site"], labels["bed"]))
    return out


def test_two_gateways_split_the_sites_and_process_every_message_once(
        mosquitto: Mosquitto, stores: dict[str, VictoriaMetrics], tmp_path: Path) -> None:
    messages = traffic()
    by_gateway = {name: [m for m in messages if site_of(m[0]) in sites]
                  for name, sites in SITES.items()}
    assert {site_of(t) for t, _ in messages} == {s for sites in SITES.values() for s in sites}
    codec = Codec()
    assert not any(isinstance(codec.decode(t, p), Rejected) for t, p in messages)
    gateways: dict[str, GatewayProcess] = {}
    try:
        for name, sites in SITES.items():
            gateways[name] = start_gateway(
                tmp_path / f"gw-{name}", mosquitto.url, stores[name],
                HOMECARE_MQTT_CLIENT_ID=f"homecare-gateway-{name}",
                HOMECARE_MQTT_TOPIC=",".join(f"homecare/v1/{site}/#" for site in sites))
        publish(mosquitto.url, messages)
        for name, gateway in gateways.items():
            wait_ingested(gateway, len(by_gateway[name]))
        stored = {}
        for name, store in stores.items():
            expected = expected_points(by_gateway[name])
            stored[name] = wait_stored(store, expected)
            assert stored[name] == expected, f"gateway {name}: " + describe_difference(
                expected, stored[name])
        for name, gateway in gateways.items():
            m = gateway.metrics()
            assert m["homecare_messages_received_total"] == len(by_gateway[name]), name
            assert m.get("homecare_messages_duplicate_total", 0) == 0, name
        # No bed on both gateways, and every bed on one.
        assert not beds_in(stored["a"]) & beds_in(stored["b"])
        assert beds_in(stored["a"]) | beds_in(stored["b"]) == {
            tuple(t.split("/")[2:4]) for t, _ in messages}
        for name, points in stored.items():
            cancels = {(dict(tags)["site"], dict(tags)["bed"]) for metric, tags, _ in points
                       if metric == "button_event_seq"}
            assert {site for site, _ in cancels} == set(SITES[name]), name
    finally:
        for gateway in gateways.values():
            gateway.stop()
    for name, gateway in gateways.items():
        assert gateway.returncode == 0, f"{name}: {gateway.log_tail()}"


def test_a_site_moved_to_another_gateway_reaches_only_that_gateway(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The broker keeps a persistent session's subscriptions: a gateway restarted without a
    site's filter unsubscribes it (both sessions), so the site's messages go only to the
    gateway that took it over."""
    def gateway(name: str, sites: tuple[str, ...]) -> GatewayProcess:
        return start_gateway(tmp_path / f"gw-{name}", mosquitto.url, None,
                             HOMECARE_MQTT_CLIENT_ID=f"homecare-gateway-{name}",
                             HOMECARE_MQTT_TOPIC=",".join(f"homecare/v1/{s}/#" for s in sites))

    first = gateway("a", ("site-01", "site-03"))
    first.stop()
    assert first.returncode == 0, first.log_tail()
    a = gateway("a", ("site-01",))
    b = gateway("b", ("site-03",))
    try:
        now = time.time_ns() // 1_000_000
        moved = press_message("site-03", "bed-0003", now)
        kept = press_message("site-01", "bed-0001", now)
        # In this order: the broker queues the moved site's press (if it still went to the
        # first gateway) ahead of the kept one, so once the kept one is in, it would be too.
        publish(mosquitto.url, [moved])
        publish(mosquitto.url, [kept])
        deadline = time.monotonic() + 30
        while not all(gw.metric(OPEN_CALLS) >= 1
                      and gw.metric("homecare_messages_received_total") >= 1 for gw in (a, b)):
            assert time.monotonic() < deadline, a.log_tail() + b.log_tail()
            time.sleep(0.1)
        for gw in (a, b):
            m = gw.metrics()
            assert m["homecare_messages_received_total"] == 1, gw.log_tail()
            assert m[OPEN_CALLS] == 1, "one call each: the moved site's press opened nothing " \
                "on the gateway that gave the site up"
            first_copies = sum(v for k, v in m.items()
                               if k.startswith("homecare_urgent_calls_first_total"))
            assert first_copies == 1
    finally:
        a.stop()
        b.stop()
    assert a.returncode == 0, a.log_tail()
    assert b.returncode == 0, b.log_tail()


OPEN_CALLS = 'homecare_alerts_open{severity="critical",status="open",type="emergency_button"}'


def press_message(site: str, bed: str, now_ms: int) -> tuple[str, bytes]:
    topic = f"homecare/v1/{site}/{bed}/button/btn-{site}-{bed}/event"
    return topic, json.dumps({"ts": now_ms, "seq": 1, "event": "press"}).encode()
