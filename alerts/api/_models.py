"""The API's JSON shapes (pydantic), mirroring :mod:`alerts.model`, the live state, the
service log and the resident profiles. Response models are what the OpenAPI document promises;
request models are strict (unknown fields refused, strings bounded).

(A module over 400 lines: it is the API's vocabulary, one small class per shape; kept in one
place so that the document's components are read and changed together.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, create_model
from pydantic_core import PydanticCustomError

from alerts.handling import COMMENT_MAX, ITEM_PATTERN
from alerts.keys import NAME_PATTERN, Role
from alerts.model import AlertStatus, AlertType, Severity
from alerts.residents import (
    ADDRESS_MAX,
    LINE_PATTERN,
    MAX_CONTACTS,
    NAME_MAX,
    NOTES_MAX,
    PERSON_NAME_PATTERN,
    PHONE_PATTERN,
    RELATION_MAX,
    TEXT_PATTERN,
)
from devices import PERSON_ID_PATTERN as DEVICE_PERSON_ID_PATTERN
from devices import person_id, person_id_problem

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Site, bed and device ids (the device contract)."""
PERSON_ID_PATTERN = DEVICE_PERSON_ID_PATTERN
"""Caregiver and visit ids: the one rule of badges, plans and the app
(:func:`devices.person_id_problem`: printable text in any script, no spaces, ``/`` or ``\\``,
at most 128 characters)."""
ALERT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
EPOCH_MS_MAX = 2**53

SiteId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


PERSON_ID_ERROR = "person_id"
"""The validation error type of an id that fits the OpenAPI document's pattern but breaks the
rule: answered 400 (:mod:`alerts.api._errors`), not 422."""


def _person_id(value: str) -> str:
    value = person_id(value)
    if (problem := person_id_problem(value)) is not None:
        raise PydanticCustomError(PERSON_ID_ERROR, problem)
    return value


PersonId = Annotated[str, StringConstraints(pattern=PERSON_ID_PATTERN), AfterValidator(_person_id)]
"""A caregiver or visit id, body or query parameter: the pattern (for the OpenAPI document,
what every regex dialect reads alike) and then the rule itself
(:func:`devices.person_id_problem`; what breaks it is answered 400)."""
ServiceCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Note = Annotated[str, StringConstraints(max_length=2000)]
Metric = Literal["heart_rate", "breathing_rate", "in_bed", "presence", "motion", "level_db"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorBody(_Out):
    """Every error answer: a short machine-readable code and a human-readable detail."""

    error: str = Field(examples=["unauthorized"])
    detail: Any = Field(default=None, examples=["missing or invalid API key"])


# --- alerts -----------------------------------------------------------------------------------


class ContactCallOut(_Out):
    """A call made while handling an alert (``alerts.model.ContactCall``)."""

    contact: int
    """0: the resident's own phone; 1..: the emergency contacts in the profile's order."""
    result: Literal["answered", "no_answer"]
    at: int
    by: str
    """Who called (API key name)."""


class AlertOut(_Out):
    """An alert (``alerts.model.Alert``). Times are epoch milliseconds."""

    id: str
    incident: str
    type: AlertType
    severity: Severity
    site: str
    bed: str
    opened_at: int
    updated_at: int
    status: AlertStatus
    summary: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    occurrences: int = 1
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    resolved_by: str | None = None
    resolved_at: int | None = None
    note: str | None = None
    escalation_level: int = 0
    next_escalation_at: int | None = None
    cleared_at: int | None = None
    repeats: int = 0
    """New calls after the alert opened (another press or fall, no movement after a fall);
    one on an acknowledged alert put it back to ``open`` (change ``repeated``)."""
    assigned_to: str | None = None
    """The dispatcher handling it (API key name)."""
    assigned_at: int | None = None
    checklist: list[str] = Field(default_factory=list)
    """Items of its type's response checklist done, in the order they were checked."""
    contact_calls: list[ContactCallOut] = Field(default_factory=list)
    """Calls made while handling it, oldest first (contacts by position only)."""
    outcome: str | None = None
    """How it ended: the code a dispatcher resolved it with (see ``GET /handling``)."""
    unstored: bool = False
    """Changed but not written yet: the alert store cannot write (its disk full); shown so
    that a call reaches the dispatchers meanwhile, stored once it can be."""


class AlertChangeOut(_Out):
    """One transition (``alerts.model.AlertChange``): the ``data`` of a stream event."""

    seq: int | None
    """The change's number; null on an unstored event (``unstored``: shown before the alert
    store could write it, sent again with its number once written)."""
    unstored: bool = False
    at: int
    action: str
    """opened, updated, repeated, escalated, downgraded, acknowledged, resolved,
    auto_resolved, cleared; while handling: assigned, unassigned, commented,
    checklist_checked, checklist_unchecked, contact_called"""
    actor: str | None = None
    note: str | None = None
    """A comment's text, the checklist item, the assignee; the dispatcher's note when
    acknowledged or resolved; the gateway's own words otherwise."""
    alert: AlertOut


class HistoryEntry(_Out):
    """One transition of an alert, without the full snapshot."""

    seq: int
    at: int
    action: str
    actor: str | None = None
    note: str | None = None
    status: AlertStatus
    severity: Severity
    escalation_level: int = 0
    assigned_to: str | None = None
    """Who the alert was assigned to after this change."""
    outcome: str | None = None
    """The outcome code (on ``resolved``)."""
    contact_call: ContactCallOut | None = None
    """The call recorded (on ``contact_called``)."""


class AlertDetail(AlertOut):
    history: list[HistoryEntry]
    """Every transition, oldest first (who did what when, with notes)."""


class StreamReset(_Out):
    """``data`` of a stream ``reset`` event: the client missed changes it cannot get back one
    by one; it reloads the alerts and reads on from ``head``."""

    reason: Literal["store_restored", "ahead_of_store", "invalid_last_event_id"]
    """``store_restored``: Last-Event-ID is in a range of seqs skipped after the alert store
    was restored from a backup (changes the store lost); ``ahead_of_store``: it is above the
    newest change (the store was replaced); ``invalid_last_event_id``: it is not a change
    seq."""
    head: int
    """The newest change seq (also the event's ``id:``); the stream goes on after it."""
    detail: str


class AlertPage(_Out):
    items: list[AlertOut]
    next_cursor: str | None = None
    """Pass as ``cursor`` for the next page; ``null`` on the last page."""


class AcknowledgeBody(_In):
    note: Note | None = None


RequiredNote = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"\S")]


class ResolveBody(_In):
    note: RequiredNote
    """Required: what was done."""
    outcome: str
    """Required: how it ended, one of the station's outcome codes (``GET /handling``)."""


def resolve_body(outcomes: Sequence[str]) -> type[ResolveBody]:
    """:class:`ResolveBody` with ``outcome`` one of ``outcomes`` (the station's codes, so the
    OpenAPI document lists them and anything else is refused with them named)."""
    code: Any = Literal[tuple(outcomes)]
    model: type[ResolveBody] = create_model(
        "ResolveBody", __base__=ResolveBody, __doc__="What was done, and how it ended.",
        outcome=(code, Field(description="How it ended (required): one of the station's "
                                         "outcome codes.")))
    return model


class CommentBody(_In):
    text: Annotated[str, StringConstraints(min_length=1, max_length=COMMENT_MAX,
                                           pattern=r"\S")]
    """The comment, in the dispatcher's words."""


class AssignBody(_In):
    to: Annotated[str, StringConstraints(pattern=NAME_PATTERN)] | None = None
    """The dispatcher (API key name) to assign it to; absent: the caller."""


class ChecklistBody(_In):
    item: Annotated[str, StringConstraints(pattern=ITEM_PATTERN)]
    """An item of the alert type's checklist (``GET /handling``)."""
    done: bool = True
    """False: uncheck it."""


class ContactCallBody(_In):
    contact: Annotated[int, Field(ge=0, le=MAX_CONTACTS)]
    """0: the resident's own phone; 1..: the emergency contacts in the profile's order."""
    result: Literal["answered", "no_answer"]


class HandlingOut(_Out):
    """How alerts are handled at this station."""

    outcomes: list[str]
    """The outcome codes an alert is resolved with (one is required)."""
    checklists: dict[str, list[str]]
    """The response checklist of each alert type (types without one are absent)."""


class MeOut(_Out):
    """The key a request is made with."""

    name: str
    role: Role


# --- beds -------------------------------------------------------------------------------------


class Reading(_Out):
    t: int
    """Device time, epoch ms."""
    value: float
    """Booleans (``in_bed``, ``presence``) are 0 or 1."""


class DeviceOut(_Out):
    device: str
    kind: str
    state: Literal["online", "offline", "unknown"]
    """``offline`` when the device said so or has been silent for longer than its heartbeat
    times the registry's ``offline_factor``; ``unknown`` before its first message."""
    reported_state: Literal["online", "offline"] | None = None
    battery: float | None = None
    fw: str | None = None
    heartbeat_s: float
    """The heartbeat the device promised in its status, else the registry's."""
    last_seen: int | None = None
    """Gateway receipt time of its latest message, epoch ms."""
    status_at: int | None = None
    registered: bool
    """Listed in the registry (including auto-registration on first sight)."""
    auto_registered: bool
    clock_offset_s: float | None = None
    """Device time minus receipt time of its latest message, in seconds (last wills, which
    carry their connect time, excepted)."""
    clock_wrong: bool = False
    """Its latest message had a time outside the gateway's clock window: its points are
    stored at receipt time, the device time kept as ``device_ts``."""


class BedSummaryOut(_Out):
    """An unresolved site-level alert that lists the bed: one alert per site and type for an
    alert storm or devices outside the registry (evidence ``summary: true``), with a member on
    the bed (one of its devices, or one of its conditions); or its site's ``site_offline``
    (the site gone dark) naming the bed, or naming only the first 50 of its beds. Open it with
    ``GET /alerts/{id}``."""

    id: str
    type: AlertType
    severity: Severity
    status: AlertStatus
    site: str
    """The summary's site: the bed's, or ``_unregistered`` (the sites the registry does not
    list share one summary per type)."""
    opened_at: int
    summary: str = ""
    """The gateway's words ("Alert storm on site site-01: device offline on 40 devices")."""


class BedOut(_Out):
    site: str
    bed: str
    person: str | None = None
    """Pseudonymous person id from the registry."""
    auto_registered: bool
    last_seen: int | None = None
    devices: list[DeviceOut]
    """Sorted by id: every device the registry file lists or live state holds, and at most 32
    registered on first sight that live state does not hold (a flood of made-up ids on one
    bed is counted in ``devices_not_shown``, not listed)."""
    devices_not_shown: int = 0
    """The bed's devices registered on first sight that are not listed in ``devices``."""
    latest: dict[str, Reading]
    """The newest value of each metric seen."""
    open_alerts: int
    """Unresolved alerts of the bed, the unresolved summaries that list it (``summaries``)
    included: a device offline inside an alert storm's summary, or on a dark site, counts
    here."""
    summaries: list[BedSummaryOut] = Field(default_factory=list)
    """The unresolved summary alerts that list the bed (site-level alerts, ``bed`` empty, so
    not among the bed's own alerts), most severe first, then oldest first."""
    away_since: int | None = None
    """Nobody home since then (epoch ms): the infrared has seen nobody for 30 minutes or more
    (the detectors' presence rules are suspended meanwhile); None: someone is home or it is
    not known."""


class StationOut(_Out):
    timezone: str | None = None
    """IANA zone of the care station (dates and times on the console); None: not configured."""


class BedDetail(BedOut):
    recent: dict[str, list[Reading]]
    """Each metric over the last ``recent_minutes`` (from memory; one value per slot)."""
    alerts: list[AlertOut]
    """Unresolved alerts of the bed, most severe first (the summaries that list it are in
    ``summaries``; ``open_alerts`` counts both)."""


class BedPage(_Out):
    items: list[BedOut]
    next_cursor: str | None = None


class Series(_Out):
    site: str
    bed: str
    metric: Metric
    since: int
    until: int
    source: Literal["memory", "influxdb"]
    """``memory``: the gateway's 24 h rings; ``influxdb``: the time-series database."""
    complete: bool
    """False when memory does not reach back to ``since`` and no database is configured."""
    points: list[Reading]


# --- service log ------------------------------------------------------------------------------


class ServiceLogRecordOut(_Out):
    seq: int
    at: int
    """When it happened: device time for badges, gateway time for the app."""
    recorded_at: int
    site: str
    bed: str
    caregiver: str
    visit: str
    event: Literal["check_in", "check_out", "service"]
    """``service``: the visit's service record, settled after its check-out (``detail``)."""
    method: str | None = None
    services: list[str] | None = None
    source: Literal["badge", "api", "gateway"]
    device: str | None = None
    actor: str | None = None
    """API key name for check-ins/outs made through the API."""
    prev_hash: str
    hash: str
    """sha256(prev_hash + canonical JSON of the other fields)."""
    detail: dict[str, Any] | None = None
    """A service record's content: verdict (verified, unverifiable: the infrared could not count
    the people, ``unverifiable`` says why; flagged) and reasons, plan, claimed and
    sensed times, recording coverage and recordings, evidence references (the check-in and
    check-out records, the alerts). Hashed with the record."""


class ServiceLogPage(_Out):
    items: list[ServiceLogRecordOut]
    next_cursor: str | None = None


class RefusedVisitOut(_Out):
    """A badge check-in/out set aside, never chained: it contradicts its visit's records."""

    origin: str
    at: int
    recorded_at: int
    site: str
    bed: str
    caregiver: str
    visit: str
    event: Literal["check_in", "check_out"]
    method: str | None = None
    services: list[str] | None = None
    device: str | None = None
    reason: Literal["no_check_in", "already_checked_in", "already_checked_out", "other_bed",
                    "other_caregiver", "visit_id_reused"]
    detail: str


class RefusedVisitList(_Out):
    items: list[RefusedVisitOut]


class ChainCheck(_Out):
    ok: bool
    records: int
    """Records known good: up to the last one verified, or to the one before the first bad."""
    head_seq: int
    head_hash: str
    """The last record known good."""
    checked: int = 0
    """Records recomputed by this verification (the others were verified before it)."""
    from_seq: int = 1
    """The first record recomputed."""
    kept_heads: int = 0
    """Heads kept elsewhere it was checked against (``head``)."""
    first_bad_seq: int | None = None
    error: str | None = None


class CheckInBody(_In):
    site: SiteId
    bed: SiteId
    caregiver: PersonId
    visit: PersonId


class CheckOutBody(CheckInBody):
    services: Annotated[list[ServiceCode], Field(max_length=100)] = Field(default_factory=list)
    """Service item codes delivered during the visit."""


# --- residents --------------------------------------------------------------------------------

Phone = Annotated[str, StringConstraints(pattern=PHONE_PATTERN)]


class ContactIn(_In):
    name: Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX,
                                           pattern=PERSON_NAME_PATTERN)]
    relation: Annotated[str, StringConstraints(max_length=RELATION_MAX,
                                               pattern=LINE_PATTERN)] = ""
    """How they relate to the resident (daughter, neighbour)."""
    phone: Phone


class ContactOut(_Out):
    name: str
    relation: str = ""
    phone: str


class ResidentIn(_In):
    """A bed's resident profile (replaces the stored one). Kept at the hub only."""

    display_name: Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX,
                                                   pattern=PERSON_NAME_PATTERN)]
    """How to address the person."""
    address: Annotated[str, StringConstraints(max_length=ADDRESS_MAX,
                                              pattern=TEXT_PATTERN)] = ""
    phone: Phone | Literal[""] = ""
    """The resident's own phone; empty: none."""
    contacts: Annotated[list[ContactIn], Field(max_length=MAX_CONTACTS)] = Field(
        default_factory=list)
    """Emergency contacts in the order they are to be called."""
    medical_notes: Annotated[str, StringConstraints(max_length=NOTES_MAX,
                                                    pattern=TEXT_PATTERN)] = ""
    access_notes: Annotated[str, StringConstraints(max_length=NOTES_MAX,
                                                   pattern=TEXT_PATTERN)] = ""
    """How to get in: key safe, a neighbour with a key."""


class ResidentOut(_Out):
    """A bed's resident profile: for dispatcher and admin keys only."""

    site: str
    bed: str
    display_name: str
    address: str = ""
    phone: str = ""
    contacts: list[ContactOut]
    medical_notes: str = ""
    access_notes: str = ""
    updated_at: int
    updated_by: str


class ResidentPage(_Out):
    items: list[ResidentOut]
    next_cursor: str | None = None


class ResidentImportBody(_In):
    csv: Annotated[str, StringConstraints(min_length=1, max_length=60_000)]
    """The CSV file's text (UTF-8; header row; columns as for ``homecare residents import``).
    Larger files: the command line."""
    dry_run: bool = False
    """Say what would change, change nothing."""


class ResidentImportRow(_Out):
    row: int
    """As a spreadsheet counts (the header is row 1)."""
    site: str
    bed: str
    result: Literal["created", "updated", "unchanged"]


class ResidentImportOut(_Out):
    dry_run: bool
    created: int
    updated: int
    unchanged: int
    rows: list[ResidentImportRow]


class RowProblemOut(_Out):
    """What is wrong with one row of a CSV file (never its value)."""

    row: int
    column: str
    """Empty: the whole row."""
    msg: str


class ImportRefused(_Out):
    """A CSV file refused: nothing was imported."""

    error: str
    """``invalid_csv``"""
    detail: list[RowProblemOut] | Any = None
    """Every problem (the first 200), by row and column."""


# --- keys -------------------------------------------------------------------------------------


class KeyOut(_Out):
    name: str
    role: Role
    created_at: int
    created_by: str
    revoked_at: int | None = None
    revoked_by: str | None = None


class KeyCreated(KeyOut):
    token: str
    """The bearer token; shown once, only its hash is kept."""


class KeyList(_Out):
    items: list[KeyOut]


class KeyCreateBody(_In):
    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
    role: Role


class AuditEntryOut(_Out):
    id: int
    at: int
    actor: str
    action: str
    target: str
    status: int


class AuditList(_Out):
    items: list[AuditEntryOut]
