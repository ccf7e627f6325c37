"""Ground-truth labels: what the simulator made happen, for scoring a detector.

A label uses the alert types of DESIGN.md, so a detector's alerts and the labels can be joined
on ``(site, bed, type)`` and overlapping time windows. ``start`` is when the condition began
(the press, the fall, leaving bed, the first silent moment); ``end`` is when it ended, or a
short window after it for conditions that end on their own.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

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

ALERT_TYPES: Final[tuple[AlertType, ...]] = (
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
)


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
