"""Decode throughput of device messages: our msgspec codec beside pydantic, stdlib json, orjson.

A realistic mix (per bed: vitals, infrared and audio telemetry, single and batched; statuses;
button, fall, recording and badge events) is built with ``devices.Codec().encode_payload`` on
the typed structs, then decoded, topic included, by:

(a) ``devices.Codec.decode`` (msgspec, typed and validated) - what the gateway runs;
(b) an equivalent pydantic v2 model set, ``model_validate_json`` in strict mode (same fields,
    same constraints, same normalisation of telemetry to samples);
(c) ``json.loads`` plus hand-written validation: the naive baseline;
(d) ``orjson.loads`` alone: parsing without any validation or typing, a ceiling.

Every decoder must accept every message and reject the same invalid ones before it is timed.
Figures are messages per second, best of several repeats, all in the same run.
"""

from __future__ import annotations

import gc
import importlib.metadata
import json
import random
import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices import (
    CHANNELS_BY_KIND,
    AudioSample,
    BadgeEvent,
    ButtonEvent,
    Channel,
    Codec,
    FallEvent,
    InfraredSample,
    Kind,
    Payload,
    RecordingEvent,
    Rejected,
    Status,
    Telemetry,
    VitalsSample,
    format_topic,
)
from devices.errors import TopicError
from devices.topics import TopicCache

Decoder = Callable[[str, bytes], object]

# --- the traffic -----------------------------------------------------------------------------

START_MS = 1_763_884_800_000
# (kind, channel, weight): roughly one bed's second, events far rarer than telemetry.
MIX: tuple[tuple[Kind, Channel, float], ...] = (
    (Kind.FALL, Channel.TELEMETRY, 0.28),
    (Kind.INFRARED, Channel.TELEMETRY, 0.28),
    (Kind.AUDIO, Channel.TELEMETRY, 0.28),
    (Kind.FALL, Channel.STATUS, 0.02),
    (Kind.INFRARED, Channel.STATUS, 0.02),
    (Kind.AUDIO, Channel.STATUS, 0.02),
    (Kind.BUTTON, Channel.STATUS, 0.01),
    (Kind.BADGE, Channel.STATUS, 0.01),
    (Kind.BUTTON, Channel.EVENT, 0.01),
    (Kind.FALL, Channel.EVENT, 0.01),
    (Kind.INFRARED, Channel.EVENT, 0.015),
    (Kind.AUDIO, Channel.EVENT, 0.015),
    (Kind.BADGE, Channel.EVENT, 0.03),
)
PREFIX = {Kind.BUTTON: "btn", Kind.INFRARED: "ir", Kind.AUDIO: "mic", Kind.FALL: "fs",
          Kind.BADGE: "badge"}


def _sample(kind: Kind, t: int, rng: random.Random) -> InfraredSample | AudioSample | VitalsSample:
    if kind is Kind.FALL:
        if rng.random() < 0.15:
            return VitalsSample(t=t, in_bed=False)
        return VitalsSample(t=t, in_bed=True, breathing_rate=round(rng.gauss(15, 2), 1),
                            heart_rate=round(rng.gauss(68, 7), 1))
    if kind is Kind.INFRARED:
        present = rng.random() < 0.8
        return InfraredSample(t=t, presence=present, motion=rng.randrange(12) if present else 0,
                              people=rng.choice((1, 1, 1, 2)) if present else 0,
                              zone=rng.choice(("bed", "room", "bathroom", "door")))
    return AudioSample(t=t, level_db=round(rng.uniform(28, 72), 1), voice=rng.random() < 0.2)


def _payload(kind: Kind, channel: Channel, ts: int, seq: int, rng: random.Random) -> Payload:
    if channel is Channel.TELEMETRY:
        if rng.random() < 0.5:
            return Telemetry(ts, seq, (_sample(kind, ts, rng),))
        n = rng.randint(2, 10)
        return Telemetry(ts, seq, tuple(_sample(kind, ts - 1000 * (n - i), rng)
                                        for i in range(n)))
    if channel is Channel.STATUS:
        return Status(ts=ts, seq=seq, state="online", battery=float(rng.randint(20, 100)),
                      fw="2.3.1", heartbeat_s=300.0)
    if kind is Kind.BUTTON:
        return ButtonEvent(ts=ts, seq=seq, event=rng.choice(("press", "press", "cancel")))
    if kind is Kind.FALL:
        return FallEvent(ts=ts, seq=seq, event="fall_detected",
                         confidence=round(rng.uniform(0.5, 1), 2), posture="lying")
    if kind is Kind.BADGE:
        if rng.random() < 0.5:
            return BadgeEvent(ts=ts, seq=seq, event="check_in", caregiver="cg-0042",
                              visit=f"v-{seq:08d}", method="nfc")
        return BadgeEvent(ts=ts, seq=seq, event="check_out", caregiver="cg-0042",
                          visit=f"v-{seq:08d}", method="nfc",
                          services=tuple(rng.sample(["S01", "S02", "S07", "S12", "S15"], 3)))
    if rng.random() < 0.5:
        return RecordingEvent(ts=ts, seq=seq, event="recording_started", clip=f"clip-{seq}")
    return RecordingEvent(ts=ts, seq=seq, event="recording_stopped", clip=f"clip-{seq}",
                          duration_s=round(rng.uniform(60, 3600), 1),
                          sha256=f"{rng.getrandbits(256):064x}")


def traffic(n: int, *, beds: int = 500, seed: int = 20251123) -> list[tuple[str, bytes]]:
    """``n`` (topic, payload) pairs as devices of ``beds`` beds would publish them."""
    rng = random.Random(seed)
    codec = Codec()
    kinds, weights = [(k, c) for k, c, _ in MIX], [w for _, _, w in MIX]
    seqs: dict[str, int] = {}
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        kind, channel = rng.choices(kinds, weights)[0]
        bed = rng.randrange(beds)
        site, bed_id = f"site-{bed // 100:02d}", f"bed-{bed:04d}"
        device = f"{PREFIX[kind]}-{bed:04d}"
        topic = format_topic(site, bed_id, kind, device, channel)
        seqs[topic] = seq = seqs.get(topic, 0) + 1
        ts = START_MS + i * 10
        out.append((topic, codec.encode_payload(_payload(kind, channel, ts, seq, rng))))
    return out


INVALID: tuple[tuple[str, bytes], ...] = (
    ("homecare/v1/s/b/button/d/event", b'{"ts":1,"seq":1,"event":"hold"}'),
    ("homecare/v1/s/b/button/d/event", b'{"ts":1,"seq":1,"event":"press"'),
    ("homecare/v1/s/b/button/d/event", b'{"ts":"1","seq":1,"event":"press"}'),
    ("homecare/v1/s/b/fall/d/telemetry", b'{"ts":1,"seq":1}'),
    ("homecare/v1/s/b/fall/d/telemetry", b'{"ts":1,"seq":1,"samples":[]}'),
    ("homecare/v1/s/b/fall/d/telemetry", b'{"ts":1,"seq":1,"samples":[{"t":1}]}'),
    ("homecare/v1/s/b/fall/d/telemetry", b'{"ts":1,"seq":1,"in_bed":1}'),
    ("homecare/v1/s/b/infrared/d/telemetry", b'{"ts":1,"seq":1,"motion":-1}'),
    ("homecare/v1/s/b/fall/d/event", b'{"ts":1,"seq":1,"event":"fall_detected",'
                                     b'"confidence":2}'),
    ("homecare/v1/s/b/fall/d/status", b'{"ts":1,"seq":1,"state":"online","battery":101}'),
    ("homecare/v1/s/b/audio/d/event", b'{"ts":1,"seq":1,"event":"recording_stopped",'
                                      b'"clip":"c","sha256":"XYZ"}'),
    ("homecare/v1/s/b/badge/d/event", b'{"ts":1,"seq":1,"event":"check_in","caregiver":""'
                                      b',"visit":"v"}'),
    ("homecare/v1/s/b/camera/d/event", b"{}"),
    ("homecare/v1/s/b/button/d/event", b"[]"),
)

# --- (b) pydantic v2 models: the same contract --------------------------------------------------

PEpochMs = Annotated[int, Field(ge=0, le=2**53)]
PSeq = Annotated[int, Field(ge=0, le=2**63 - 1)]
PCount = Annotated[int, Field(ge=0, le=2**31)]
PIdentifier = Annotated[str, Field(min_length=1, max_length=128)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class PInfraredSample(_Model):
    t: PEpochMs
    presence: bool | None = None
    motion: PCount | None = None
    people: PCount | None = None
    zone: Literal["bed", "room", "bathroom", "door"] | None = None


class PAudioSample(_Model):
    t: PEpochMs
    level_db: float | None = None
    voice: bool | None = None


class PVitalsSample(_Model):
    t: PEpochMs
    in_bed: bool | None = None
    breathing_rate: float | None = None
    heart_rate: float | None = None


class PInfraredWire(_Model):
    ts: PEpochMs
    seq: PSeq
    samples: Annotated[list[PInfraredSample], Field(min_length=1)] | None = None
    presence: bool | None = None
    motion: PCount | None = None
    people: PCount | None = None
    zone: Literal["bed", "room", "bathroom", "door"] | None = None


class PAudioWire(_Model):
    ts: PEpochMs
    seq: PSeq
    samples: Annotated[list[PAudioSample], Field(min_length=1)] | None = None
    level_db: float | None = None
    voice: bool | None = None


class PVitalsWire(_Model):
    ts: PEpochMs
    seq: PSeq
    samples: Annotated[list[PVitalsSample], Field(min_length=1)] | None = None
    in_bed: bool | None = None
    breathing_rate: float | None = None
    heart_rate: float | None = None


class PTelemetry(_Model):
    ts: PEpochMs
    seq: PSeq
    samples: tuple[PInfraredSample | PAudioSample | PVitalsSample, ...]


class PButtonEvent(_Model):
    ts: PEpochMs
    seq: PSeq
    event: Literal["press", "long_press", "cancel"]


class PRecordingEvent(_Model):
    ts: PEpochMs
    seq: PSeq
    event: Literal["recording_started", "recording_stopped"]
    clip: PIdentifier
    duration_s: Annotated[float, Field(ge=0, le=7 * 86_400)] | None = None
    sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")] | None = None


class PFallEvent(_Model):
    ts: PEpochMs
    seq: PSeq
    event: Literal["fall_detected", "fall_cleared"]
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    posture: Literal["lying", "sitting", "standing"] | None = None


class PBadgeEvent(_Model):
    ts: PEpochMs
    seq: PSeq
    event: Literal["check_in", "check_out"]
    caregiver: PIdentifier
    visit: PIdentifier
    method: Literal["qr", "nfc", "app"] | None = None
    services: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] | None = None


class PStatus(_Model):
    ts: PEpochMs
    seq: PSeq
    state: Literal["online", "offline"]
    battery: Annotated[float, Field(ge=0, le=100)] | None = None
    fw: Annotated[str, Field(max_length=64)] | None = None
    heartbeat_s: Annotated[float, Field(gt=0, le=7 * 86_400)] | None = None


_P_SAMPLES: dict[type[BaseModel], tuple[type[BaseModel], tuple[str, ...]]] = {
    PInfraredWire: (PInfraredSample, ("presence", "motion", "people", "zone")),
    PAudioWire: (PAudioSample, ("level_db", "voice")),
    PVitalsWire: (PVitalsSample, ("in_bed", "breathing_rate", "heart_rate")),
}
_P_TYPES: dict[tuple[Kind, Channel], type[BaseModel]] = {
    (Kind.BUTTON, Channel.EVENT): PButtonEvent,
    (Kind.INFRARED, Channel.TELEMETRY): PInfraredWire,
    (Kind.INFRARED, Channel.EVENT): PRecordingEvent,
    (Kind.AUDIO, Channel.TELEMETRY): PAudioWire,
    (Kind.AUDIO, Channel.EVENT): PRecordingEvent,
    (Kind.FALL, Channel.TELEMETRY): PVitalsWire,
    (Kind.FALL, Channel.EVENT): PFallEvent,
    (Kind.BADGE, Channel.EVENT): PBadgeEvent,
    **{(kind, Channel.STATUS): PStatus for kind in Kind},
}


def pydantic_decoder() -> Decoder:
    topics = TopicCache()

    def decode(topic: str, payload: bytes) -> object:
        if len(payload) > 64 * 1024:
            return Rejected("oversize", "")
        address = topics.parse(topic)
        if isinstance(address, TopicError):
            return Rejected(address.reason, address.detail)
        model = _P_TYPES[(address.kind, address.channel)]
        try:
            wire: Any = model.model_validate_json(payload)
        except ValidationError as exc:
            return Rejected("invalid_payload", str(exc)[:500])
        if model not in _P_SAMPLES:
            return (address, wire)
        sample_type, fields = _P_SAMPLES[model]
        if wire.samples is not None:
            for sample in wire.samples:
                if all(getattr(sample, f) is None for f in fields):
                    return Rejected("empty_sample", "")
            return (address, PTelemetry.model_construct(ts=wire.ts, seq=wire.seq,
                                                         samples=tuple(wire.samples)))
        values = {f: getattr(wire, f) for f in fields}
        if all(v is None for v in values.values()):
            return Rejected("empty_sample", "")
        sample = sample_type.model_construct(t=wire.ts, **values)
        return (address, PTelemetry.model_construct(ts=wire.ts, seq=wire.seq, samples=(sample,)))

    return decode


# --- (c) json.loads + hand validation: the naive baseline --------------------------------------


class Invalid(Exception):
    pass


def _int(lo: int, hi: int) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if type(v) is not int or not lo <= v <= hi:
            raise Invalid

    return check


def _float(lo: float, hi: float, *, open_low: bool = False) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if type(v) not in (int, float) or v > hi or v < lo or (open_low and v == lo):
            raise Invalid

    return check


def _any_float(v: Any) -> None:
    if type(v) not in (int, float):
        raise Invalid


def _bool(v: Any) -> None:
    if type(v) is not bool:
        raise Invalid


def _one_of(*values: str) -> Callable[[Any], None]:
    allowed = frozenset(values)

    def check(v: Any) -> None:
        if type(v) is not str or v not in allowed:
            raise Invalid

    return check


def _text(lo: int, hi: int, pattern: str | None = None) -> Callable[[Any], None]:
    regex = re.compile(pattern) if pattern else None

    def check(v: Any) -> None:
        if type(v) is not str or not lo <= len(v) <= hi or (regex and not regex.fullmatch(v)):
            raise Invalid

    return check


def _services(v: Any) -> None:
    if type(v) is not list:
        raise Invalid
    item = _text(1, 64)
    for s in v:
        item(s)


_MS, _SEQ, _COUNT = _int(0, 2**53), _int(0, 2**63 - 1), _int(0, 2**31)
Spec = tuple[dict[str, Callable[[Any], None]], dict[str, Callable[[Any], None]]]
_SAMPLE_SPECS: dict[Kind, dict[str, Callable[[Any], None]]] = {
    Kind.INFRARED: {"presence": _bool, "motion": _COUNT, "people": _COUNT,
                    "zone": _one_of("bed", "room", "bathroom", "door")},
    Kind.AUDIO: {"level_db": _any_float, "voice": _bool},
    Kind.FALL: {"in_bed": _bool, "breathing_rate": _any_float, "heart_rate": _any_float},
}
_EVENT_SPECS: dict[tuple[Kind, Channel], Spec] = {
    (Kind.BUTTON, Channel.EVENT): ({"event": _one_of("press", "long_press", "cancel")}, {}),
    (Kind.FALL, Channel.EVENT): (
        {"event": _one_of("fall_detected", "fall_cleared")},
        {"confidence": _float(0, 1), "posture": _one_of("lying", "sitting", "standing")}),
    (Kind.BADGE, Channel.EVENT): (
        {"event": _one_of("check_in", "check_out"), "caregiver": _text(1, 128),
         "visit": _text(1, 128)},
        {"method": _one_of("qr", "nfc", "app"), "services": _services}),
    **{(kind, Channel.EVENT): (
        {"event": _one_of("recording_started", "recording_stopped"), "clip": _text(1, 128)},
        {"duration_s": _float(0, 7 * 86_400), "sha256": _text(64, 64, "[0-9a-f]{64}")})
       for kind in (Kind.INFRARED, Kind.AUDIO)},
    **{(kind, Channel.STATUS): (
        {"state": _one_of("online", "offline")},
        {"battery": _float(0, 100), "fw": _text(0, 64),
         "heartbeat_s": _float(0, 7 * 86_400, open_low=True)})
       for kind in Kind},
}


def _check_sample(sample: Any, spec: dict[str, Callable[[Any], None]], t: Any) -> dict[str, Any]:
    out = {"t": t}
    for name, check in spec.items():
        value = sample.get(name)
        if value is not None:
            check(value)
            out[name] = value
    if len(out) == 1:
        raise Invalid("empty sample")
    return out


def json_stdlib_decoder() -> Decoder:
    topics = TopicCache()

    def decode(topic: str, payload: bytes) -> object:
        if len(payload) > 64 * 1024:
            return Rejected("oversize", "")
        address = topics.parse(topic)
        if isinstance(address, TopicError):
            return Rejected(address.reason, address.detail)
        try:
            body = json.loads(payload)
            if type(body) is not dict:
                raise Invalid
            _MS(body.get("ts"))
            _SEQ(body.get("seq"))
            if address.channel is Channel.TELEMETRY:
                spec = _SAMPLE_SPECS[address.kind]
                samples = body.get("samples")
                if samples is None:
                    return (address, {"ts": body["ts"], "seq": body["seq"],
                                      "samples": [_check_sample(body, spec, body["ts"])]})
                if type(samples) is not list or not samples:
                    raise Invalid
                checked = []
                for sample in samples:
                    if type(sample) is not dict:
                        raise Invalid
                    _MS(sample.get("t"))
                    checked.append(_check_sample(sample, spec, sample["t"]))
                return (address, {"ts": body["ts"], "seq": body["seq"], "samples": checked})
            required, optional = _EVENT_SPECS[(address.kind, address.channel)]
            out = {"ts": body["ts"], "seq": body["seq"]}
            for name, check in required.items():
                check(body.get(name))
                out[name] = body[name]
            for name, check in optional.items():
                value = body.get(name)
                if value is not None:
                    check(value)
                    out[name] = value
            return (address, out)
        except (ValueError, Invalid):
            return Rejected("invalid_payload", "")

    return decode


# --- (a) and (d) ---------------------------------------------------------------------------------


def msgspec_decoder() -> Decoder:
    return Codec().decode


def orjson_parse_only() -> Decoder:
    def decode(topic: str, payload: bytes) -> object:
        return orjson.loads(payload)

    return decode


DECODERS: dict[str, Callable[[], Decoder]] = {
    "msgspec": msgspec_decoder,
    "pydantic": pydantic_decoder,
    "json_stdlib": json_stdlib_decoder,
    "orjson_parse_only": orjson_parse_only,
}


def _check_equivalent(messages: list[tuple[str, bytes]]) -> None:
    for name in ("msgspec", "pydantic", "json_stdlib"):
        decode = DECODERS[name]()
        rejected = [(t, p) for t, p in messages if isinstance(decode(t, p), Rejected)]
        if rejected:
            raise AssertionError(f"{name} rejected valid traffic, e.g. {rejected[0]!r}")
        accepted = [(t, p) for t, p in INVALID if not isinstance(decode(t, p), Rejected)]
        if accepted:
            raise AssertionError(f"{name} accepted invalid input, e.g. {accepted[0]!r}")


def _best_seconds(decode: Decoder, messages: list[tuple[str, bytes]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for topic, payload in messages:
            decode(topic, payload)
        best = min(best, time.perf_counter() - start)
    return best


def run(*, quick: bool = False, messages: int = 50_000, repeats: int = 7) -> dict[str, Any]:
    """Decode throughput of each decoder over the same traffic, best of ``repeats``."""
    if quick:
        messages, repeats = 2_000, 2
    traffic_ = traffic(messages)
    _check_equivalent(traffic_)
    rates: dict[str, float] = {}
    for round_ in range(2):  # interleaved rounds: drift of the machine hits every decoder
        for name, make in DECODERS.items():
            decode = make()
            for topic, payload in traffic_[:1000]:  # warm caches (topics, model schemas)
                decode(topic, payload)
            rate = messages / _best_seconds(decode, traffic_, max(1, repeats // 2 + round_))
            rates[name] = max(rates.get(name, 0.0), rate)
    samples = 0
    codec = Codec()
    for topic, payload in traffic_:
        message = codec.decode(topic, payload)
        body = getattr(message, "payload", None)
        samples += len(body.samples) if isinstance(body, Telemetry) else 0
    ms = rates["msgspec"]
    return {
        "messages": messages,
        "telemetry_samples": samples,
        "mean_payload_bytes": round(sum(len(p) for _, p in traffic_) / messages, 1),
        "kind_channel_pairs": sum(len(c) for c in CHANNELS_BY_KIND.values()),
        "msgspec_msgs_per_s": round(ms),
        "pydantic_msgs_per_s": round(rates["pydantic"]),
        "json_stdlib_msgs_per_s": round(rates["json_stdlib"]),
        "orjson_parse_only_msgs_per_s": round(rates["orjson_parse_only"]),
        "msgspec_vs_pydantic": round(ms / rates["pydantic"], 2),
        "msgspec_vs_json_stdlib": round(ms / rates["json_stdlib"], 2),
        "msgspec_share_of_orjson_ceiling": round(ms / rates["orjson_parse_only"], 2),
        "versions": {pkg: importlib.metadata.version(pkg)
                     for pkg in ("msgspec", "pydantic", "orjson")},
    }
