"""Typed payloads of the device contract, one per kind/channel.

Every payload has ``ts`` (device time, epoch ms) and ``seq`` (per-device counter). Telemetry is
normalised to a tuple of samples whether the device sent one sample at the top level or a
``samples`` batch. Ranges that the contract fixes (``confidence`` 0..1, ``battery`` 0..100) are
checked here; physiological plausibility (a heart rate of 400) is *not*: such values are kept so
that the detector can raise a ``sensor_fault`` instead of the data vanishing into dead letters.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Final, Literal, TypeAlias

import msgspec
from msgspec import Meta, Struct

EpochMs = Annotated[int, Meta(ge=0, le=2**53)]
Seq = Annotated[int, Meta(ge=0, le=2**63 - 1)]
Count = Annotated[int, Meta(ge=0, le=2**31)]
Identifier = Annotated[str, Meta(min_length=1, max_length=128)]
Sha256 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
Confidence = Annotated[float, Meta(ge=0.0, le=1.0)]
Battery = Annotated[float, Meta(ge=0.0, le=100.0)]
Interval = Annotated[float, Meta(gt=0.0, le=7 * 86_400)]
Duration = Annotated[float, Meta(ge=0.0, le=7 * 86_400)]

PERSON_ID_MAX: Final = 128
"""The most characters a caregiver or visit id may have."""
PERSON_ID_PATTERN: Final = r"^[^\s/\\=+@-][^\s/\\]{0,127}$"
r"""The part of the caregiver and visit id rule (:func:`person_id_problem`) that every regular
expression dialect reads alike, for the OpenAPI document: no whitespace, ``/`` or ``\``, no
formula start. The rest (control, format, private-use and unassigned characters) is the
rule's own check, answered 400 by the API: Unicode classes such as ``\p{C}`` mean different
things to different engines (a client generating from the document took unassigned and
private-use characters for valid ones)."""
PERSON_ID_RULE: Final = ("printable characters, no spaces, / or \\, not starting with = + - "
                         "@, at most 128")
_FORMULA: Final = ("=", "+", "-", "@")
"""What a spreadsheet reads as the start of a formula (a CSV export's cell)."""


def person_id(value: str) -> str:
    """The one form a caregiver or visit id is kept and compared in: full-width and half-width
    forms mapped to their usual width (a full-width ``C-01`` typed with a Chinese input method
    is ``C-01``), then Unicode NFC (``José`` typed on one keyboard as ``e`` and a combining accent
    is the badge's ``José``); case is kept (PRECIS ``UsernameCasePreserved``). Every place
    that takes an id (the badge codec, plans, the API and the app) keeps it in this form, so
    one caregiver is one key for visits, plans, overlaps and reports; check it with
    :func:`person_id_problem` after.

    >>> person_id("\uff23\uff0d\uff10\uff11"), person_id("Jose\u0301") == "Jos\u00e9"
    ('C-01', True)
    """
    if value.isascii():
        return value
    mapped = "".join(unicodedata.normalize("NFKC", c) if "\uff01" <= c <= "\uffef" else c
                     for c in value)
    return unicodedata.normalize("NFC", mapped)


def person_id_problem(value: str) -> str | None:
    """What is wrong with ``value`` as a caregiver or visit id, or ``None``: the one rule of
    intake, plans (CSV and API), query parameters and the app's check-in and check-out.

    Any printable text in any script (``护工-李``, ``2026-12-02T00:10+08:00``) of 1 to
    :data:`PERSON_ID_MAX` characters, with no control or format characters (bidirectional
    overrides, zero-width joiners), no whitespace (a ``key=value`` log line keeps it whole) and
    no path separator ``/`` or ``\\`` (it is put into URLs), and no ``=``, ``+``, ``-`` or ``@``
    first (a spreadsheet opening a CSV export would run it as a formula). Stored in the form
    :func:`person_id` gives (checked in that form), escaped where it is shown (HTML, CSV
    quoting, log escapes), percent-encoded in URLs.

    >>> [person_id_problem(v) is None for v in ("护工-李", "c-01", "Li Ping", "a/b", "=1+1", "")]
    [True, True, False, False, False, False]
    >>> print(person_id_problem("a\\u202eb"))
    not an id (printable characters, no spaces, / or \\, not starting with = + - @, at most 128)
    """
    if (0 < len(value) <= PERSON_ID_MAX and value.isprintable() and " " not in value
            and "/" not in value and "\\" not in value and not value.startswith(_FORMULA)):
        return None
    return f"not an id ({PERSON_ID_RULE})"

Zone: TypeAlias = Literal["bed", "room", "bathroom", "door"]
Posture: TypeAlias = Literal["lying", "sitting", "standing"]
BadgeMethod: TypeAlias = Literal["qr", "nfc", "app"]
ButtonAction: TypeAlias = Literal["press", "long_press", "cancel"]
RecordingAction: TypeAlias = Literal["recording_started", "recording_stopped"]
FallAction: TypeAlias = Literal["fall_detected", "fall_cleared"]
BadgeAction: TypeAlias = Literal["check_in", "check_out"]
DeviceState: TypeAlias = Literal["online", "offline"]

# --- telemetry samples ------------------------------------------------------------------------


class InfraredSample(Struct, frozen=True, omit_defaults=True, gc=False):
    """Presence and activity in one interval."""

    t: EpochMs
    presence: bool | None = None
    motion: Count | None = None
    people: Count | None = None
    zone: Zone | None = None


class AudioSample(Struct, frozen=True, omit_defaults=True, gc=False):
    """Sound level and voice activity (never the sound itself)."""

    t: EpochMs
    level_db: float | None = None
    voice: bool | None = None


class VitalsSample(Struct, frozen=True, omit_defaults=True, gc=False):
    """Bed occupancy and vital signs from the fall/vital-sign sensor."""

    t: EpochMs
    in_bed: bool | None = None
    breathing_rate: float | None = None
    heart_rate: float | None = None


Sample: TypeAlias = InfraredSample | AudioSample | VitalsSample


class Telemetry(Struct, frozen=True, gc=False):
    """A telemetry message: one or more samples."""

    ts: EpochMs
    seq: Seq
    samples: tuple[Sample, ...]


# --- events and status -------------------------------------------------------------------------


class ButtonEvent(Struct, frozen=True, omit_defaults=True, gc=False):
    ts: EpochMs
    seq: Seq
    event: ButtonAction


class RecordingEvent(Struct, frozen=True, omit_defaults=True, gc=False):
    """Infrared or audio recorder start/stop; the recording itself stays in the home."""

    ts: EpochMs
    seq: Seq
    event: RecordingAction
    clip: Identifier
    duration_s: Duration | None = None
    sha256: Sha256 | None = None


class FallEvent(Struct, frozen=True, omit_defaults=True, gc=False):
    ts: EpochMs
    seq: Seq
    event: FallAction
    confidence: Confidence | None = None
    posture: Posture | None = None


SERVICE_MINUTES: Final[dict[str, float]] = {
    "bathing": 30.0,
    "meal_assist": 20.0,
    "medication": 5.0,
    "cleaning": 25.0,
    "vitals_check": 10.0,
    "rehab": 30.0,
    "companionship": 20.0,
}
"""The default catalogue of service item codes (a badge check-out's ``services``) and the
nominal minutes each takes: what the simulated caregivers do and what ``service_anomaly``
compares a visit's length with. Codes outside it are valid too."""


class BadgeEvent(Struct, frozen=True, omit_defaults=True, gc=False):
    """Caregiver check-in/out; ``services`` lists service item codes on check-out
    (:data:`SERVICE_MINUTES`). ``caregiver`` and ``visit`` follow :func:`person_id_problem`
    (checked by the codec: a badge event that does not is dead-lettered as
    ``invalid_payload``)."""

    ts: EpochMs
    seq: Seq
    event: BadgeAction
    caregiver: Identifier
    visit: Identifier
    method: BadgeMethod | None = None
    services: tuple[Annotated[str, Meta(min_length=1, max_length=64)], ...] | None = None


class Status(Struct, frozen=True, omit_defaults=True, gc=False):
    """Device status, retained; also the MQTT last will (``state="offline"``)."""

    ts: EpochMs
    seq: Seq
    state: DeviceState
    battery: Battery | None = None
    fw: Annotated[str, Meta(max_length=64)] | None = None
    heartbeat_s: Interval | None = None


Payload: TypeAlias = Telemetry | ButtonEvent | RecordingEvent | FallEvent | BadgeEvent | Status

# --- wire forms of telemetry (single sample at the top level, or a batch) -----------------------

class InfraredWire(Struct, omit_defaults=True, gc=False):
    ts: EpochMs
    seq: Seq
    samples: Annotated[list[InfraredSample], Meta(min_length=1)] | None = None
    presence: bool | None = None
    motion: Count | None = None
    people: Count | None = None
    zone: Zone | None = None


class AudioWire(Struct, omit_defaults=True, gc=False):
    ts: EpochMs
    seq: Seq
    samples: Annotated[list[AudioSample], Meta(min_length=1)] | None = None
    level_db: float | None = None
    voice: bool | None = None


class VitalsWire(Struct, omit_defaults=True, gc=False):
    ts: EpochMs
    seq: Seq
    samples: Annotated[list[VitalsSample], Meta(min_length=1)] | None = None
    in_bed: bool | None = None
    breathing_rate: float | None = None
    heart_rate: float | None = None


SAMPLE_FIELDS: dict[type[Struct], tuple[str, ...]] = {
    InfraredSample: ("presence", "motion", "people", "zone"),
    AudioSample: ("level_db", "voice"),
    VitalsSample: ("in_bed", "breathing_rate", "heart_rate"),
}
"""The measured fields of each sample type (everything but ``t``)."""


def sample_fields(sample: Sample) -> dict[str, object]:
    """The fields a sample carries, without ``t`` and without absent ones."""
    return {
        name: value
        for name in SAMPLE_FIELDS[type(sample)]
        if (value := getattr(sample, name)) is not None
    }


def to_builtins(payload: Payload) -> object:
    """The payload as plain JSON-ready Python values (absent fields omitted)."""
    return msgspec.to_builtins(payload)
