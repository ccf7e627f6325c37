"""Ground-truth labels: what really happened, for scoring the alerts a gateway raised.

The label format is part of the contract (DESIGN.md): simulators write it, ``homecare
evaluate`` reads it, and so can any traffic generator nobody on the team wrote. One JSON object
per line, fields in this order: ``{"site", "bed", "type", "start", "end"}`` (epoch ms).

A label uses the alert types of DESIGN.md, so a detector's alerts and the labels can be joined
on ``(site, bed, type)`` and overlapping time windows. ``start`` is when the condition began
(the press, the fall, leaving bed, the first silent moment); ``end`` is when it ended, or a
short window after it for conditions that end on their own.

Beside the labels, a generator may say what kind of life each bed's person leads, so that the
false alerts can be counted per kind of person (``homecare evaluate --bed-profiles``): a *bed
profiles* file, one JSON object per line, fields in this order: ``{"site", "bed", "profile"}``,
``profile`` a free name (the simulators use ``standard``, ``early_riser``, ``couple``...). One
line per bed; every bed listed counts as observed over the whole run. It is ground truth about
normal life, never an incident: a profile raises no alert and excuses none.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

import msgspec

AlertType: TypeAlias = Literal[
    "emergency_button",
    "fall",
    "inactivity",
    "night_bed_exit",
    "abnormal_sound",
    "vital_signs",
    "device_offline",
    "low_battery",
    "sensor_fault",
    "service_anomaly",
]

ALERT_TYPES: Final[tuple[AlertType, ...]] = get_args(AlertType)
"""Every alert type a bed can have, in DESIGN.md's order."""


class Label(msgspec.Struct, frozen=True, gc=False):
    """One incident as it really happened. Field order is the JSONL field order."""

    site: str
    bed: str
    type: str
    start: int
    end: int


_encoder = msgspec.json.Encoder()


def encode_label(label: Label) -> bytes:
    """One JSONL line (with the newline) for ``label``."""
    return _encoder.encode(label) + b"\n"


def label_sort_key(label: Label) -> tuple[int, str, str, str]:
    return (label.start, label.site, label.bed, label.type)


class BedProfile(msgspec.Struct, frozen=True, gc=False):
    """What kind of life a bed's person leads. Field order is the JSONL field order."""

    site: str
    bed: str
    profile: str


def encode_bed_profile(profile: BedProfile) -> bytes:
    """One JSONL line (with the newline) for ``profile``."""
    return _encoder.encode(profile) + b"\n"


def read_bed_profiles(data: bytes) -> list[BedProfile]:
    """Bed profiles from JSONL bytes (blank lines skipped).

    >>> read_bed_profiles(encode_bed_profile(BedProfile("site-01", "bed-0001", "couple")))
    [BedProfile(site='site-01', bed='bed-0001', profile='couple')]
    """
    decoder = msgspec.json.Decoder(BedProfile)
    return [decoder.decode(line) for line in data.splitlines() if line.strip()]


def read_labels(data: bytes) -> list[Label]:
    """Labels from JSONL bytes (blank lines skipped).

    >>> read_labels(encode_label(Label("site-01", "bed-0001", "fall", 1000, 61000)))
    [Label(site='site-01', bed='bed-0001', type='fall', start=1000, end=61000)]
    """
    decoder = msgspec.json.Decoder(Label)
    return [decoder.decode(line) for line in data.splitlines() if line.strip()]
