"""Person profiles of the simulators: ordinary lives that stay within the device contract,
carry no label, and leave the default population exactly as it was."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tomllib
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from devices import (
    AudioSample,
    BedProfile,
    ButtonEvent,
    Codec,
    FallEvent,
    InfraredSample,
    Message,
    Registry,
    Rejected,
    Sample,
    Status,
    VitalsSample,
    read_bed_profiles,
)
from devices.errors import ConfigError
from devices.labels import ALERT_TYPES, Label, read_labels
from devices.traffic import decode_line
from simulators.clock import LocalDay
from simulators.config import DEFAULT_START, SimConfig, bed_profiles, bed_specs
from simulators.household import away_windows, replacements
from simulators.offline import write
from simulators.profiles import PROFILES, parse_profiles
from simulators.registry_toml import registry_toml
from simulators.stream import offline

ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
DIVERSE = parse_profiles("diverse")
MINUTE = 60_000


@dataclass
class Run:
    config: SimConfig
    data: bytes
    labels: list[Label]
    messages: list[tuple[int, Message]]
    """(receipt time, decoded message) in receipt order."""
    rejected: list[tuple[str, Rejected]]
    end_ms: int
    by_bed: dict[str, dict[str, list[tuple[int, Sample]]]] = field(default_factory=dict)


def simulate(config: SimConfig, *, days: float) -> Run:
    out, labels_out = io.BytesIO(), io.BytesIO()
    write(offline(config, start=DEFAULT_START, days=days), out, labels_out=labels_out)
    codec = Codec()
    messages, rejected = [], []
    for raw in out.getvalue().splitlines():
        line = decode_line(raw)
        decoded = codec.decode(line.topic, line.payload)
        if isinstance(decoded, Rejected):
            rejected.append((line.topic, decoded))
        else:
            messages.append((line.t, decoded))
    start = LocalDay.of(DEFAULT_START, "Asia/Shanghai", 0)
    return Run(config, out.getvalue(), read_labels(labels_out.getvalue()), messages, rejected,
               start.start_ms + round(days * 86_400_000))


@pytest.fixture(scope="module")
def diverse() -> Run:
    """Every profile on one bed, six days, incidents at 0.6 per bed-day."""
    return simulate(SimConfig(beds=len(DIVERSE), seed=4, profiles=DIVERSE,
                              incidents_per_bed_day=0.6), days=6)


def samples(run: Run, bed: str) -> dict[str, list[tuple[int, Sample]]]:
    """The bed's samples by kind, with their device times, in time order."""
    if not run.by_bed:
        for _, m in run.messages:
            kinds = run.by_bed.setdefault(m.address.bed, defaultdict(list))
            for sample in getattr(m.payload, "samples", None) or ():
                kinds[m.address.kind.value].append((sample.t, sample))
        for kinds in run.by_bed.values():
            for rows in kinds.values():
                rows.sort(key=lambda r: r[0])
    return run.by_bed[bed]


def bed_of(profile: str) -> str:
    return f"bed-{DIVERSE.index(profile) + 1:04d}"


def local(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, ZONE)


def inside(labels: list[Label], bed: str, t: int, slack: int = 30 * MINUTE) -> bool:
    return any(lb.bed == bed and lb.start - slack <= t <= lb.end + slack for lb in labels)


# --- the default population is exactly as before -------------------------------------------


def test_the_default_population_is_byte_identical_to_before_profiles() -> None:
    """Digests of a run made before profiles existed: existing tests, benchmarks and recorded
    figures keep their meaning."""
    for config in (SimConfig(beds=4, seed=12, incidents_per_bed_day=1.5),
                   SimConfig(beds=4, seed=12, incidents_per_bed_day=1.5,
                             profiles=("standard",))):
        out, labels = io.BytesIO(), io.BytesIO()
        write(offline(config, start=DEFAULT_START, days=2), out, labels_out=labels)
        assert hashlib.sha256(labels.getvalue()).hexdigest() == (
            "a1563b0899b1c57fbeba61ae26ac5a53a46c243c4b26e13100823b514bd0cda5")
        assert hashlib.sha256(out.getvalue()).hexdigest() == (
            "8931e7af9be4b78eef30cdcdab36bb13f59285254a49c2058fd4bf6c7a5228f3")
        assert hashlib.sha256(registry_toml(config).encode()).hexdigest() == (
            "f68c7ff2fa1514af6b9489d88eaddf7571c34a40a75a203d3870f4747dd5c2ab")


def test_profiles_are_deterministic_per_seed() -> None:
    config = SimConfig(beds=len(DIVERSE), seed=9, profiles=DIVERSE, faults=True)
    first, second = simulate(config, days=1), simulate(config, days=1)
    assert first.data == second.data
    assert first.labels == second.labels
    other = simulate(SimConfig(beds=len(DIVERSE), seed=10, profiles=DIVERSE, faults=True),
                     days=1)
    assert other.data != first.data


def test_profiles_are_named_mixed_and_assigned_in_turn() -> None:
    assert tuple(PROFILES) == DIVERSE
    assert DIVERSE[0] == "standard"
    assert len(DIVERSE) == 11
    assert parse_profiles("couple,diverse")[:2] == ("couple", "standard")
    with pytest.raises(ConfigError, match="unknown profile 'sleepwalker'"):
        parse_profiles("couple,sleepwalker")
    with pytest.raises(ConfigError, match="unknown profile"):
        SimConfig(profiles=("nobody",))
    config = SimConfig(beds=3, profiles=("couple", "insomnia"))
    assert bed_profiles(config) == [BedProfile("site-01", "bed-0001", "couple"),
                                    BedProfile("site-01", "bed-0002", "insomnia"),
                                    BedProfile("site-01", "bed-0003", "couple")]
    assert read_bed_profiles(b'{"site":"s","bed":"b","profile":"napper"}\n') == [
        BedProfile("s", "b", "napper")]


# --- within the contract, and labelled as before ------------------------------------------


def test_every_profiles_traffic_is_valid_per_the_codec(diverse: Run) -> None:
    assert diverse.rejected == []
    assert {m.address.bed for _, m in diverse.messages} == {
        spec.bed for spec in bed_specs(diverse.config)}
    last: dict[str, int] = {}
    for _, m in diverse.messages:
        if isinstance(m.payload, Status) and m.seq == 0:
            continue  # a last will
        device = m.address.device
        if m.address.kind.value != "badge":
            assert m.seq > last.get(device, 0), (device, m.seq)
            last[device] = m.seq


def test_normal_life_of_every_profile_carries_no_label() -> None:
    run = simulate(SimConfig(beds=len(DIVERSE), seed=4, profiles=DIVERSE,
                             incidents_per_bed_day=0.0), days=4)
    assert run.labels == []
    assert run.rejected == []


def test_real_incidents_of_every_profile_are_labelled_and_visible(diverse: Run) -> None:
    assert {label.type for label in diverse.labels} == set(ALERT_TYPES)
    beds = {spec.bed for spec in bed_specs(diverse.config)}
    for label in diverse.labels:
        assert label.bed in beds
        assert label.start < label.end <= diverse.end_ms
        kinds = samples(diverse, label.bed)
        events = [m.payload for _, m in diverse.messages if m.address.bed == label.bed
                  and label.start - 1_000 <= m.ts <= label.end + 1_000
                  and m.address.channel.value == "event"]
        if label.type == "emergency_button":
            assert any(isinstance(e, ButtonEvent) and e.event != "cancel" for e in events)
        elif label.type == "fall":
            assert any(isinstance(e, FallEvent) and e.event == "fall_detected" for e in events)
        elif label.type == "inactivity":
            ir = [s for t, s in kinds["infrared"] if label.start <= t <= label.end]
            assert ir, label
            assert all(isinstance(s, InfraredSample) and s.presence and s.motion == 0
                       and s.people == 1 for s in ir), label
        elif label.type == "night_bed_exit":
            vitals = [s for t, s in kinds["fall"]
                      if label.start + MINUTE < t < label.end - MINUTE]
            assert vitals, label
            assert not any(isinstance(s, VitalsSample) and s.in_bed for s in vitals), label
            before = [isinstance(s, VitalsSample) and bool(s.in_bed) for t, s in kinds["fall"]
                      if label.start - 30 * MINUTE < t < label.start]
            assert sum(before) >= 0.5 * len(before), label  # asleep before (a trip or two)


# --- what each profile does ---------------------------------------------------------------


def test_a_couple_counts_two_people_and_the_spouse_moves_at_night(diverse: Run) -> None:
    bed = bed_of("couple")
    kinds = samples(diverse, bed)
    home = [(t, s) for t, s in kinds["infrared"] if isinstance(s, InfraredSample)
            and s.presence and not inside(diverse.labels, bed, t)]
    assert home
    two = sum(1 for _, s in home if s.people == 2)
    assert two >= 0.8 * len(home)
    assert all((s.people or 0) >= 1 for _, s in home)
    in_bed = {t // MINUTE for t, s in kinds["fall"] if isinstance(s, VitalsSample) and s.in_bed}
    spouse_up = [t for t, s in home if local(t).hour < 5 and s.zone == "room"
                 and (s.motion or 0) > 0 and t // MINUTE in in_bed]
    assert spouse_up, "the spouse walks in the room while the resident lies in bed"


def test_away_days_have_no_presence_nobody_in_bed_then_back(diverse: Run) -> None:
    bed = bed_of("away_days")
    index = DIVERSE.index("away_days")
    day = LocalDay.of(DEFAULT_START, "Asia/Shanghai", 0)
    spells = sorted({w for n in range(6)
                     for w in away_windows(PROFILES["away_days"], 4, index,
                                           LocalDay.of(day.date + dt.timedelta(days=n),
                                                       day.timezone, n))})
    assert spells
    kinds = samples(diverse, bed)
    for leave, back in spells:
        assert back - leave >= 18 * 3_600_000
        ir = [s for t, s in kinds["infrared"] if leave + 5 * MINUTE < t < back - 5 * MINUTE]
        assert ir
        assert all(isinstance(s, InfraredSample) and not s.presence and s.people == 0
                          and s.motion == 0 for s in ir)
        vitals = [s for t, s in kinds["fall"] if leave + 5 * MINUTE < t < back - 5 * MINUTE]
        assert vitals
        assert all(isinstance(s, VitalsSample) and not s.in_bed
                              and s.heart_rate is None for s in vitals)
        audio = [s for t, s in kinds["audio"] if leave + 5 * MINUTE < t < back - 5 * MINUTE]
        assert audio
        assert not any(isinstance(s, AudioSample) and s.voice for s in audio)
        if back + 3 * 3_600_000 < diverse.end_ms:
            after = [s for t, s in kinds["infrared"] if back + 5 * MINUTE < t < back + 3_600_000]
            assert any(isinstance(s, InfraredSample) and s.presence for s in after)
    assert not any(inside([Label("site-01", bed, "x", a, b) for a, b in spells], bed, lb.start,
                          slack=0) for lb in diverse.labels if lb.bed == bed)


def test_replaced_devices_start_at_seq_1_after_the_old_ones_offline_status(diverse: Run) -> None:
    index = DIVERSE.index("device_replacement")
    spec = bed_specs(diverse.config)[index]
    swaps = replacements(PROFILES["device_replacement"], diverse.config.seed, spec)
    assert len(swaps) == 2
    assert len({s.role for s in swaps}) == 2
    registry = Registry.from_mapping(tomllib.loads(registry_toml(diverse.config)))
    listed = registry.bed(spec.site, spec.bed)
    assert listed is not None
    for swap in swaps:
        old = [(t, m) for t, m in diverse.messages if m.address.device == swap.old]
        new = [(t, m) for t, m in diverse.messages if m.address.device == swap.new]
        assert old, swap
        assert new, swap
        last_t, last = old[-1]
        assert isinstance(last.payload, Status)
        assert last.payload.state == "offline"
        assert last.seq > 0  # said by the device itself, not a will
        first_t, first = new[0]
        assert isinstance(first.payload, Status)
        assert first.payload.state == "online"
        assert first.seq == 1
        assert 24 * MINUTE <= first_t - last_t <= 36 * MINUTE
        assert first.address.kind == last.address.kind
        assert first.address.bed == last.address.bed
        assert listed.devices[swap.new].kind == first.address.kind
    bed = spec.bed
    gaps = [(min(t for t, m in diverse.messages if m.address.device == s.old
                 and isinstance(m.payload, Status) and m.payload.state == "offline"),
             min(t for t, m in diverse.messages if m.address.device == s.new)) for s in swaps]
    assert not any(a - 15 * MINUTE <= lb.start <= b + 15 * MINUTE
                   for lb in diverse.labels if lb.bed == bed for a, b in gaps)


def test_sleep_times_follow_the_profile(diverse: Run) -> None:
    def up_at(profile: str) -> list[int]:
        """Each morning, the local minute from which the person stays out of bed for half an
        hour (outside incidents)."""
        bed = bed_of(profile)
        in_bed: dict[int, bool] = defaultdict(bool)
        for t, s in samples(diverse, bed)["fall"]:
            in_bed[t // MINUTE] |= isinstance(s, VitalsSample) and bool(s.in_bed)
        firsts: dict[dt.date, int] = {}
        for minute in sorted(in_bed):
            when = local(minute * MINUTE)
            if when.date() in firsts or not 3 <= when.hour < 12 \
                    or inside(diverse.labels, bed, minute * MINUTE, slack=60 * MINUTE):
                continue
            if not any(in_bed.get(minute + k, False) for k in range(30)):
                firsts[when.date()] = when.hour * 60 + when.minute
        return list(firsts.values())

    early = up_at("early_riser")
    assert early
    assert all(4 * 60 + 40 <= m <= 6 * 60 + 15 for m in early), early
    late = up_at("late_sleeper")
    assert late
    assert all(m >= 8 * 60 for m in late), late
    owl = [s for t, s in samples(diverse, bed_of("night_owl"))["fall"]
           if local(t).hour == 0 and local(t).minute < 5]
    assert owl
    assert not any(isinstance(s, VitalsSample) and s.in_bed for s in owl)


def test_loud_tv_family_visits_and_sleepless_nights_show(diverse: Run) -> None:
    loud = [s.level_db for _, s in samples(diverse, bed_of("hard_of_hearing"))["audio"]
            if isinstance(s, AudioSample) and s.level_db is not None]
    assert max(loud) >= 65
    assert sum(1 for x in loud if x >= 60) > 100
    company = [s for _, s in samples(diverse, bed_of("frequent_visitors"))["infrared"]
               if isinstance(s, InfraredSample) and (s.people or 0) >= 3]
    assert len(company) > 60
    bed = bed_of("insomnia")
    night_up = [t for t, s in samples(diverse, bed)["fall"] if isinstance(s, VitalsSample)
                and not s.in_bed and 1 <= local(t).hour < 5
                and not inside(diverse.labels, bed, t)]
    assert len({local(t).date() for t in night_up}) >= 2
