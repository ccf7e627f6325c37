"""End-to-end ingest throughput: broker -> gateway -> real time-series server, all verified.

Every contender drains the same kind of pre-queued backlog (a persistent session filled while
the subscriber was away), so the publisher is never the bottleneck:

* **ours**: ``homecare gateway`` as a real process writing to VictoriaMetrics (InfluxDB v2 API);
  the figure counts only once every point is in the database, and the stored points are
  compared with what the messages contain.
* **naive**: aiomqtt with one ``influxdb-client`` write per message (the obvious first version).
* **ceiling**: the C ``mosquitto_sub`` draining the backlog and doing nothing else.
* **mqtt_clients**: receive-only drain rates of the Python MQTT clients we could have used
  (paho-mqtt, aiomqtt, gmqtt) beside ours, each acknowledging as it must for no-loss ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from simulators.load import pregenerate, publish_all
from tests.oracle import expected_points, victoria_points
from tests.servers import GatewayProcess, Mosquitto, VictoriaMetrics

TOPIC = "homecare/v1/#"


def _prepare_session(mq: Mosquitto, client_id: str, *, v5: bool) -> None:
    """Create a persistent session subscribed to the device topics, then leave."""
    done = threading.Event()
    if v5:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.on_subscribe = lambda *a: done.set()
        client.connect(mq.host, mq.port, clean_start=False, properties=props)
    else:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=False)
        client.on_subscribe = lambda *a: done.set()
        client.connect(mq.host, mq.port)
    client.loop_start()
    client.subscribe(TOPIC, qos=1)
    if not done.wait(10):
        raise TimeoutError("subscription not acknowledged")
    client.disconnect()
    client.loop_stop()


def _fill(mq: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    async def run() -> None:
        async with asyncio.timeout(600):
            await publish_all(mq.url, messages)

    asyncio.run(run())


def _ceiling(mq: Mosquitto, messages: list[tuple[str, bytes]]) -> float:
    _prepare_session(mq, "ceiling", v5=False)
    _fill(mq, messages)
    started = time.perf_counter()
    subprocess.run(["mosquitto_sub", "-h", mq.host, "-p", str(mq.port), "-i", "ceiling", "-c",
                    "-q", "1", "-t", TOPIC, "-C", str(len(messages))],
                   stdout=subprocess.DEVNULL, check=True, timeout=600)
    return len(messages) / (time.perf_counter() - started)


def _ours(mq: Mosquitto, vm: VictoriaMetrics, messages: list[tuple[str, bytes]],
          workdir: Path) -> dict[str, Any]:
    env = {"HOMECARE_INFLUX_URL": vm.url, "HOMECARE_INFLUX_API": "v2",
           "HOMECARE_INFLUX_ORG": "bench", "HOMECARE_INFLUX_BUCKET": "homecare",
           "HOMECARE_INFLUX_TOKEN": "bench", "HOMECARE_LOG_LEVEL": "warning",
           "HOMECARE_MQTT_CLIENT_ID": "bench-gateway",
           # The traffic is simulated at a fixed past date: stored as sent, as verified.
           "HOMECARE_CLOCK_WINDOW_S": str(5 * 365 * 86_400)}
    gateway = GatewayProcess(workdir / "gw", mqtt_url=mq.url, env=env)
    gateway.start()
    gateway.wait_connected()
    gateway.stop()  # the session now exists and collects the backlog
    _fill(mq, messages)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    gateway.start()
    deadline = started + 600
    metrics: dict[str, float] = {}
    first: tuple[float, float] | None = None  # (time, messages received) at the first sight
    while time.perf_counter() < deadline:
        with contextlib.suppress(Exception):
            metrics = gateway.metrics()
            received = metrics.get("homecare_messages_received_total", 0)
            if first is None and received > 0:
                first = (time.perf_counter(), received)
            if (received >= len(messages)
                    and metrics.get("homecare_points_written_total", 0)
                    >= metrics.get("homecare_points_spooled_total", 1)):
                break
        time.sleep(0.02)
    finished = time.perf_counter()
    gateway.stop()
    if first is None:
        raise RuntimeError("the gateway never received anything")
    # Sustained rate: from the first observed message to the last point written, so that
    # process start-up (imports, connecting) is reported apart.
    elapsed = finished - first[0]
    drained = len(messages) - first[1]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    expected = expected_points(messages)
    stored = victoria_points(vm.export())
    missing = sum((expected - stored).values())
    extra = sum((stored - expected).values())
    points = metrics.get("homecare_points_written_total", 0)
    return {
        "msgs_per_s": round(drained / elapsed),
        "points_per_s": round(points * drained / len(messages) / elapsed),
        "seconds": round(elapsed, 2),
        "startup_s": round(first[0] - started, 2),
        "cpu_s_per_1k_msgs": round((after.ru_utime + after.ru_stime - before.ru_utime
                                    - before.ru_stime) / len(messages) * 1000, 4),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
        "verified_missing_points": missing,
        "verified_extra_points": extra,
    }


def _naive(mq: Mosquitto, vm: VictoriaMetrics, messages: list[tuple[str, bytes]]) -> float:
    """aiomqtt + json + one synchronous influxdb-client write per message."""
    import aiomqtt
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS
    from influxdb_client.domain.write_precision import WritePrecision

    _prepare_session(mq, "naive", v5=False)
    _fill(mq, messages)
    client = InfluxDBClient(url=vm.url, token="bench", org="bench")
    write_api = client.write_api(write_options=SYNCHRONOUS)

    def to_line(topic: str, payload: bytes) -> str:
        _, _, site, bed, kind, device, _ = topic.split("/")
        data = json.loads(payload)
        samples = data.get("samples") or [dict(data, t=data["ts"])]
        lines = []
        tags = f"site={site},bed={bed},device={device}"
        for s in samples:
            fields = ",".join(f"{k}={json.dumps(v)}" for k, v in s.items()
                              if k != "t" and isinstance(v, int | float)
                              and not isinstance(v, bool))
            if fields:
                lines.append(f"naive_{kind},{tags} {fields} {s['t']}")
        return "\n".join(lines) or f"naive_{kind},site={site} seq={data['seq']} {data['ts']}"

    async def drain() -> float:
        started = time.perf_counter()
        got = 0
        async with aiomqtt.Client(mq.host, mq.port, identifier="naive", clean_session=False) as c:
            await c.subscribe(TOPIC, qos=1)
            async for message in c.messages:
                line = to_line(str(message.topic), bytes(message.payload))
                await asyncio.to_thread(write_api.write, "homecare", "bench", line,
                                        WritePrecision.MS)  # type: ignore[arg-type]
                got += 1
                if got >= len(messages):
                    break
        return len(messages) / (time.perf_counter() - started)

    async def bounded() -> float:
        async with asyncio.timeout(600):
            return await drain()

    try:
        return asyncio.run(bounded())
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _client_drains(mq: Mosquitto, messages: list[tuple[str, bytes]]) -> dict[str, float]:
    """Receive-only drain rate of each Python MQTT client, acknowledging per message."""
    rates: dict[str, float] = {}
    n = len(messages)

    def paho_drain() -> float:
        _prepare_session(mq, "paho-drain", v5=True)
        _fill(mq, messages)
        done = threading.Event()
        count = [0]

        def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
            client.ack(msg.mid, msg.qos)
            count[0] += 1
            if count[0] >= n:
                done.set()

        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho-drain",
                             protocol=paho.MQTTv5, manual_ack=True)
        client.on_message = on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 65535
        started = time.perf_counter()
        client.connect(mq.host, mq.port, clean_start=False, properties=props)
        client.loop_start()
        done.wait(300)
        rate = n / (time.perf_counter() - started)
        client.disconnect()
        client.loop_stop()
        return rate

    def aiomqtt_drain() -> float:
        import aiomqtt

        _prepare_session(mq, "aiomqtt-drain", v5=False)
        _fill(mq, messages)

        async def run() -> float:
            started = time.perf_counter()
            got = 0
            async with aiomqtt.Client(mq.host, mq.port, identifier="aiomqtt-drain",
                                      clean_session=False) as client:
                async for _ in client.messages:
                    got += 1
                    if got >= n:
                        break
            return n / (time.perf_counter() - started)

        return asyncio.run(asyncio.wait_for(run(), 300))

    def gmqtt_drain() -> float:
        import logging

        import gmqtt

        logging.getLogger("gmqtt").setLevel(logging.CRITICAL)
        _prepare_session(mq, "gmqtt-drain", v5=True)
        _fill(mq, messages)

        async def run() -> float:
            done = asyncio.Event()
            count = [0]
            commit = [asyncio.get_running_loop().create_future()]

            async def on_message(*_: object) -> int:
                # Acknowledge only after a (simulated, 10 ms) batch commit, as ingest must.
                count[0] += 1
                if count[0] >= n:
                    done.set()
                await commit[0]
                return 0

            async def committer() -> None:
                while not done.is_set():
                    await asyncio.sleep(0.01)
                    future = commit[0]
                    commit[0] = asyncio.get_running_loop().create_future()
                    future.set_result(None)

            client = gmqtt.Client("gmqtt-drain", clean_session=False,
                                  optimistic_acknowledgement=False,
                                  session_expiry_interval=3600, receive_maximum=65535)
            client.on_message = on_message
            started = time.perf_counter()
            ticker = asyncio.create_task(committer())
            await client.connect(mq.host, mq.port, version=gmqtt.constants.MQTTv50)
            await asyncio.wait_for(done.wait(), 300)
            rate = n / (time.perf_counter() - started)
            await ticker
            with contextlib.suppress(Exception):
                await client.disconnect()
            return rate

        return asyncio.run(run())

    def ours_drain() -> float:
        from gateway.config import load
        from gateway.ingest.connection import MqttSource
        from gateway.ingest.inbox import Inbox

        _prepare_session(mq, "ours-drain", v5=True)
        _fill(mq, messages)

        async def run() -> float:
            settings = load(None, mqtt_url=mq.url, mqtt_client_id="ours-drain")
            inbox = Inbox(50_000)
            source = MqttSource(settings, inbox)
            started = time.perf_counter()
            task = asyncio.create_task(source.run())
            got = 0
            while got < n:
                batch = await inbox.get(5000)
                source.ack(batch)
                got += len(batch)
            rate = n / (time.perf_counter() - started)
            await source.stop()
            await task
            return rate

        return asyncio.run(asyncio.wait_for(run(), 300))

    contenders: dict[str, Callable[[], float]] = {
        "paho_manual_ack": paho_drain, "aiomqtt_acks_on_receipt": aiomqtt_drain,
        "gmqtt_ack_after_commit": gmqtt_drain, "ours_batched_ack": ours_drain,
    }
    for name, drain in contenders.items():
        rates[name] = round(drain())
    return rates


def run(*, quick: bool = False) -> dict[str, Any]:
    n = 20_000 if quick else 200_000
    n_naive = 1_000 if quick else 5_000
    n_clients = 10_000 if quick else 50_000
    messages = pregenerate(beds=1000, n_messages=n, seed=3)
    with tempfile.TemporaryDirectory(prefix="homecare-bench-") as tmp:
        workdir = Path(tmp)
        mq = Mosquitto(workdir / "mq")
        vm = VictoriaMetrics(workdir / "vm")
        mq.start()
        vm.start()
        try:
            ceiling = _ceiling(mq, messages)
            ours = _ours(mq, vm, messages, workdir)
            naive = _naive(mq, vm, messages[:n_naive])
            clients = _client_drains(mq, messages[:n_clients])
        finally:
            vm.stop()
            mq.stop()
    return {
        "messages": n,
        "store": "victoria-metrics (InfluxDB v2 write API)",
        **ours,
        "naive_msgs_per_s": round(naive),
        "ceiling_msgs_per_s": round(ceiling),
        "vs_naive": round(ours["msgs_per_s"] / naive, 1),
        "share_of_ceiling": round(ours["msgs_per_s"] / ceiling, 2),
        "mqtt_clients_drain_msgs_per_s": clients,
    }
