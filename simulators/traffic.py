"""One bed's devices turned into MQTT traffic: topics, payload bytes, receipt times.

Each device keeps the promises of the contract: ``seq`` increases by one per message across
its channels, a status at least every ``heartbeat_s`` it declares (except while an incident
silences it), telemetry at its own rate and phase, device clocks a few hundred ms off, and
network latency between the device's ``ts`` and the receipt time ``t``. Payloads are made
with :class:`devices.Codec`, so they are the contract by construction.

A device replaced on its bed (profile ``device_replacement``) says ``offline`` (retained) and
falls silent; about half an hour later its successor, a new device id of the same kind on the
same bed, connects and counts from seq 1 (:mod:`simulators.household`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from devices import (
    Codec,
    Kind,
    Sample,
    Status,
    Telemetry,
    format_topic,
)
from devices.labels import Label
from simulators.clock import HOUR_MS, MINUTE_MS, LocalDay, local_date
from simulators.config import BedSpec, SimConfig
from simulators.events import (
    BATTERY_ROLES,
    SENSOR_ROLES,
    DeviceEffect,
    Event,
    Role,
    heartbeat_s,
)
from simulators.household import Replacement, replacements
from simulators.person import Person
from simulators.plan import BedPlanner, DayPlan, Deck
from simulators.render import Frame, render
from simulators.sensors import sensor_samples

LOW_BATTERY_PCT = 15.0
REPLACE_BATTERY_PCT = 20.0
"""Batteries are swapped at this level in normal operation, so only incidents go below 15 %."""

_CODEC = Codec()
_KINDS: dict[Role, Kind] = {"button": Kind.BUTTON, "infrared": Kind.INFRARED,
                            "audio": Kind.AUDIO, "fall": Kind.FALL, "badge": Kind.BADGE}


class Action(IntEnum):
    """What a live publisher does with an emission (offline, every emission is a line)."""

    PUBLISH = 0
    RETAIN = 1
    """A status: published retained."""
    WILL = 2
    """The device is lost: live, its connection is dropped so the broker publishes the will;
    offline, the line is the will as the broker would publish it."""
    CONNECT = 3
    """The device (re)connects, then publishes this online status retained."""
    RETIRE = 4
    """The device is taken away: it publishes this offline status retained, then disconnects
    cleanly (no will)."""


_STATUS_ACTIONS = {0: Action.RETAIN, 3: Action.CONNECT, 4: Action.RETIRE}
"""Status category (see ``BedTraffic._device_chunk``) to the action that publishes it."""


class Emission(NamedTuple):
    """One message as received: ordered by ``(t, bed, n)``."""

    t: int
    bed: int
    n: int
    device: str
    topic: str
    payload: bytes
    action: int


@dataclass(slots=True)
class Device:
    role: Role
    id: str
    status_topic: str
    data_topic: str | None
    event_topic: str | None
    heartbeat_s: float
    status_period_ms: int
    status_phase_ms: int
    period_ms: int
    batch: int
    phase_ms: int
    clock_ms: int
    fw: str
    seq: int
    battery: float | None
    battery_ref_ms: int
    drain_per_ms: float
    connect_ms: int = 0
    drift_phase: float = 0.0
    received_ms: int = 0
    """Receipt time of the device's latest message (receipt order follows send order)."""
    active_from_ms: int | None = None
    """A replacement: installed (connects, seq 1) at this moment; None: from the start."""
    retire_ms: int | None = None
    """Replaced: says offline at this moment and is silent after it; None: never."""

    def serves(self, moment: int) -> bool:
        """Whether the device is installed at ``moment``."""
        return ((self.active_from_ms is None or moment >= self.active_from_ms)
                and (self.retire_ms is None or moment < self.retire_ms))

    def will(self) -> bytes:
        """The last will this device registers when it connects: composed at connect time, so
        its ``ts`` is the connect time and its ``seq`` 0 (a will cannot know later counters)."""
        return _CODEC.encode_payload(Status(ts=max(0, self.connect_ms + self.clock_ms), seq=0,
                                            state="offline"))


class BedTraffic:
    """Generates one bed's traffic chunk by chunk, in time order. Not thread-safe."""

    def __init__(self, spec: BedSpec, config: SimConfig, *, start_ms: int, end_ms: int | None,
                 earliest_ms: int, deck: Deck) -> None:
        self.spec = spec
        self.config = config
        self.start_ms = start_ms
        self.end_ms = end_ms
        layout = np.random.default_rng([config.seed, spec.index, 0])
        self.profile = config.profile(spec.index)
        self.person = self.profile.fit(Person.sample(layout),
                                       np.random.default_rng([config.seed, spec.index, 12]))
        self.rng = np.random.default_rng([config.seed, spec.index, 5])
        self.codec = Codec()
        telemetry = config.telemetry
        batched = bool(layout.random() < 0.5)
        periods: dict[Role, tuple[float, int]] = {
            "button": (0.0, 0),
            "infrared": (telemetry.infrared_period_s, telemetry.infrared_batch if batched else 1),
            "audio": (telemetry.audio_period_s, telemetry.audio_batch if batched else 1),
            "fall": (telemetry.vitals_period_s, telemetry.vitals_samples),
        }
        ids: dict[Role, str] = {"button": spec.button, "infrared": spec.infrared,
                                "audio": spec.audio, "fall": spec.fall}
        self.devices: list[Device] = []
        for role in SENSOR_ROLES:
            period_s, batch = periods[role]
            hb = heartbeat_s(role, telemetry)
            status_period = round(hb * 1000 * float(layout.uniform(0.9, 0.97)))
            has_battery = role in BATTERY_ROLES
            self.devices.append(Device(
                role=role, id=ids[role],
                status_topic=self._topic(role, ids[role], "status"),
                data_topic=self._topic(role, ids[role], "telemetry") if period_s else None,
                event_topic=self._topic(role, ids[role], "event"),
                heartbeat_s=hb, status_period_ms=status_period,
                status_phase_ms=int(layout.integers(0, status_period)),
                period_ms=round(period_s * 1000), batch=batch,
                phase_ms=int(layout.integers(0, max(1, round(period_s * 1000)))),
                clock_ms=int(layout.integers(-400, 401)),
                fw=f"{ids[role].split('-')[0]}-{layout.integers(1, 4)}.{layout.integers(0, 10)}.0",
                seq=int(layout.integers(1, 50_000)),
                battery=float(layout.uniform(45, 100)) if has_battery else None,
                battery_ref_ms=start_ms,
                drain_per_ms=float(layout.uniform(0.3, 1.5)) / 86_400_000,
                connect_ms=start_ms, drift_phase=float(layout.uniform(0, 2 * np.pi)),
            ))
        self.badge_topic = self._topic("badge", spec.badge, "event")
        first_day = local_date(start_ms, spec.timezone)
        blocked = []
        for k, swap in enumerate(replacements(self.profile, config.seed, spec)):
            day = LocalDay.of(first_day + dt.timedelta(days=swap.day), spec.timezone, swap.day)
            removed = day.at(swap.minute)
            installed = removed + round(swap.gap_min * MINUTE_MS)
            self.devices.append(self._successor(swap, k, removed, installed))
            # Incidents and visits keep clear of the swap (no call falls into the gap).
            blocked.append((removed - 15 * MINUTE_MS, installed + 15 * MINUTE_MS))
        self.planner = BedPlanner(spec=spec, person=self.person, config=config, deck=deck,
                                  earliest_ms=earliest_ms, end_ms=end_ms, blocked=tuple(blocked))
        self.labels: list[Label] = []
        """Labels of the days planned so far (grows as chunks are generated)."""
        # From the day before: its routine covers samples just before the start.
        self._next_day = LocalDay.of(local_date(start_ms, spec.timezone), spec.timezone,
                                     0).previous()
        self._plans: list[DayPlan] = []
        self._n = 0
        self._started = False

    def _topic(self, role: Role, device: str, channel: str) -> str:
        return format_topic(self.spec.site, self.spec.bed, _KINDS[role], device, channel)

    def _successor(self, swap: Replacement, k: int, removed_ms: int, installed: int) -> Device:
        """The new device of a replacement; the old one retires at ``removed_ms``."""
        old = next(d for d in self.devices if d.id == swap.old)
        old.retire_ms = removed_ms
        rng = np.random.default_rng([self.config.seed, self.spec.index, 11, k])
        return Device(
            role=swap.role, id=swap.new,
            status_topic=self._topic(swap.role, swap.new, "status"),
            data_topic=(self._topic(swap.role, swap.new, "telemetry") if old.data_topic
                        else None),
            event_topic=self._topic(swap.role, swap.new, "event"),
            heartbeat_s=old.heartbeat_s, status_period_ms=old.status_period_ms,
            status_phase_ms=int(rng.integers(0, old.status_period_ms)),
            period_ms=old.period_ms, batch=old.batch,
            phase_ms=int(rng.integers(0, max(1, old.period_ms))),
            clock_ms=int(rng.integers(-400, 401)),
            fw=f"{swap.old.split('-')[0]}-{rng.integers(4, 6)}.{rng.integers(0, 10)}.0",
            seq=0, battery=100.0 if old.battery is not None else None,
            battery_ref_ms=installed, drain_per_ms=old.drain_per_ms, connect_ms=installed,
            drift_phase=float(rng.uniform(0, 2 * np.pi)), active_from_ms=installed)

    # --- chunks ---------------------------------------------------------------------------------

    def chunk(self, a: int, b: int) -> list[Emission]:
        """Every message whose device-side moment falls in ``[a, b)``; ``t >= a`` for all."""
        while self._next_day.start_ms < b:
            plan = self.planner.plan(self._next_day)
            self._plans.append(plan)
            self.labels.extend(plan.labels)
            self._next_day = self._next_day.next()
        self._plans = [p for p in self._plans if p.last_ms > a - HOUR_MS]
        margin = max(d.period_ms for d in self.devices) + MINUTE_MS
        frame = render(self._plans, a - margin, b, self.person, profile=self.profile)
        effects = [e for p in self._plans for e in p.effects
                   if e.end_ms > a - margin and e.start_ms < b]
        events = [e for p in self._plans for e in p.events if a <= e.ms < b]
        out: list[Emission] = []
        first = not self._started
        self._started = True
        for device in self.devices:
            self._device_chunk(device, a, b, frame,
                               [e for e in effects if e.role == device.role],
                               [e for e in events if e.role == device.role], first, out)
        for event in events:
            if event.role == "badge":
                ts = event.ms
                payload = msgspec.structs.replace(event.payload, ts=ts, seq=ts // 1000)
                self._emit(out, ts, self.spec.badge, self.badge_topic,
                           self.codec.encode_payload(payload), Action.PUBLISH)
        return out

    def _emit(self, out: list[Emission], true_ms: int, device: str, topic: str, payload: bytes,
              action: int) -> None:
        latency = 15 + int(self.rng.exponential(40.0))
        self._n += 1
        out.append(Emission(true_ms + min(latency, 3000), self.spec.index, self._n, device, topic,
                            payload, action))

    def _device_chunk(self, device: Device, a: int, b: int, frame: Frame,
                      effects: list[DeviceEffect], events: list[Event], first: bool,
                      out: list[Emission]) -> None:
        # (moment, category, index): category 0 status, 1 telemetry, 2 event, 3 connect status,
        # 4 offline status when the device is taken away
        replaced = device.active_from_ms is not None or device.retire_ms is not None
        if replaced and ((device.active_from_ms or a) >= b or (device.retire_ms or b) < a):
            return
        plan: list[tuple[int, int, int]] = []
        if first and device.active_from_ms is None:
            plan.append((a + int(self.rng.integers(0, 5000)), 3, 0))
        if device.active_from_ms is not None and a <= device.active_from_ms < b:
            plan.append((device.active_from_ms, 3, 0))
        k0 = -(-(a - device.status_phase_ms) // device.status_period_ms)
        moment = device.status_phase_ms + k0 * device.status_period_ms
        while moment < b:
            plan.append((moment, 0, 0))
            moment += device.status_period_ms
        telemetry_ts: npt.NDArray[np.int64] | None = None
        if device.period_ms:
            k0 = -(-(a - device.phase_ms) // device.period_ms)
            k1 = -(-(b - device.phase_ms) // device.period_ms)
            telemetry_ts = device.phase_ms + np.arange(k0, k1, dtype=np.int64) * device.period_ms
            if replaced:
                telemetry_ts = telemetry_ts[[device.serves(t) for t in telemetry_ts.tolist()]]
            plan.extend((int(ts), 1, i) for i, ts in enumerate(telemetry_ts.tolist()))
        plan.extend((event.ms, 2, i) for i, event in enumerate(events))
        for effect in effects:
            if effect.kind == "low_battery":
                for edge in (effect.start_ms, effect.end_ms):
                    if a <= edge < b:
                        plan.append((edge, 0, 0))
            if effect.kind != "silent":
                continue
            plan = [p for p in plan if not effect.start_ms <= p[0] < effect.end_ms]
            if a <= effect.end_ms < b:
                plan.append((effect.end_ms + int(self.rng.integers(0, 3000)),
                             3 if effect.will else 0, 0))
            if effect.will and a <= effect.start_ms < b and device.serves(effect.start_ms):
                lost = effect.start_ms + round(1500 * self.config.telemetry.keepalive_s)
                self._emit(out, lost, device.id, device.status_topic, device.will(), Action.WILL)
        if replaced:
            plan = [p for p in plan if device.serves(p[0])]
            if device.retire_ms is not None and a <= device.retire_ms < b:
                plan.append((device.retire_ms, 4, 0))
        plan.sort()
        samples = (sensor_samples(
            role=device.role, batch=device.batch, period_ms=device.period_ms,
            clock_ms=device.clock_ms, drift_phase=device.drift_phase, message_ts=telemetry_ts,
            frame=frame, effects=effects, person=self.person, rng=self.rng)
            if telemetry_ts is not None and len(telemetry_ts) else [])
        skews = [e for e in effects if e.kind == "clock_skew"]
        encode = self.codec.encode_payload
        latencies = np.minimum(15 + self.rng.exponential(40.0, len(plan)), 3000).astype(np.int64)
        bed, name, n, append = self.spec.index, device.id, self._n, out.append
        data_topic, event_topic = device.data_topic or "", device.event_topic or ""
        received = device.received_ms
        for (moment, category, index), latency in zip(plan, latencies.tolist(), strict=True):
            # One TCP connection per device: messages arrive in the order they were sent.
            received = max(moment + latency, received + 1)
            device.seq += 1
            skew = (sum(e.offset_ms for e in skews if e.start_ms <= moment < e.end_ms)
                    if skews else 0)
            ts = max(0, moment + device.clock_ms + skew)
            n += 1
            if category == 1:
                payload = encode(Telemetry(ts=ts, seq=device.seq,
                                           samples=_shift(samples[index], skew)))
                append(Emission(received, bed, n, name, data_topic, payload,
                                Action.PUBLISH))
            elif category == 2:
                event = msgspec.structs.replace(events[index].payload, ts=ts, seq=device.seq)
                append(Emission(received, bed, n, name, event_topic, encode(event),
                                Action.PUBLISH))
            else:
                if category == 3:
                    device.connect_ms = moment
                status = Status(ts=ts, seq=device.seq,
                                state="offline" if category == 4 else "online",
                                battery=self._battery(device, moment, effects), fw=device.fw,
                                heartbeat_s=device.heartbeat_s)
                append(Emission(received, bed, n, name, device.status_topic, encode(status),
                                _STATUS_ACTIONS[category]))
        self._n = n
        device.received_ms = received

    def _battery(self, device: Device, moment: int, effects: list[DeviceEffect]) -> float | None:
        if device.battery is None:
            return None
        for effect in effects:
            if effect.kind == "low_battery" and effect.start_ms <= moment < effect.end_ms:
                hours = (moment - effect.start_ms) / HOUR_MS
                return round(max(3.0, LOW_BATTERY_PCT - 0.4 - 0.8 * hours), 1)
            if effect.kind == "low_battery" and moment >= effect.end_ms > device.battery_ref_ms:
                device.battery, device.battery_ref_ms = 100.0, effect.end_ms
        level = device.battery - device.drain_per_ms * (moment - device.battery_ref_ms)
        if level < REPLACE_BATTERY_PCT:
            device.battery, device.battery_ref_ms, level = 100.0, moment, 100.0
        return round(level, 1)

    # --- samples --------------------------------------------------------------------------------


def _shift(samples: tuple[Sample, ...], offset: int) -> tuple[Sample, ...]:
    if not offset:
        return samples
    return tuple(msgspec.structs.replace(s, t=max(0, s.t + offset)) for s in samples)
