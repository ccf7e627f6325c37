"""What every detector shares: the fleet, per-bed/per-device tables, save/restore, findings.

A detector subclass declares its columns in ``_declare``, folds a batch into them in
``_update`` (vectorised over the batch) and turns them into findings in ``_evaluate``
(vectorised over beds or devices; findings are built only for the few that changed).

``update`` only buffers (in the shared :class:`~gateway.detect._fleet.Fleet`, which extracts
columns from every 500 messages as they come); ``evaluate`` folds in what was buffered
and evaluates, at most every ``fleet.evaluate_interval_ms`` (default
:data:`~gateway.detect._rounds.EVALUATE_INTERVAL_MS`) of
message-clock time (on a grid shared by all detectors), and returns nothing in between.
``state`` folds in the buffer first. Findings are edge-triggered: one ``active=True`` when a
condition begins, one ``active=False`` when it clears, so the alert engine is never flooded.

Edge-triggered findings need the detector to know which conditions it has raised: after a
restart the snapshot may be older than some of them (a ``kill -9``: raised after the last
snapshot, then the device came back while the gateway was down, and nothing ever cleared
them). :meth:`DetectorBase.resume` takes them back from the alert store (the open alerts, and
the members of the summaries they were folded into): a detector whose conditions are
``active`` columns of its beds or devices marks them so, and its next evaluation clears those
that no longer hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec
import numpy as np
import numpy.typing as npt

from alerts.model import AlertType, Finding, Severity
from devices.codec import Message
from devices.registry import Registry
from devices.topics import Kind
from gateway.detect._batch import Batch
from gateway.detect._fleet import Fleet
from gateway.detect._numbering import KINDS_BY_CODE
from gateway.detect._table import NONE, Table

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

STATE_VERSION = 1


class _State(msgspec.Struct, frozen=True):
    version: int
    detector: str
    beds: list[tuple[str, str]]
    devices: list[tuple[str, str, str, int]]
    bed_columns: dict[str, list[Any]]
    device_columns: dict[str, list[Any]]
    extra: Any = None


class DetectorBase:
    """Base of the rolling-window detectors (see :class:`gateway.detect.Detector`)."""

    name: str
    alert_type: ClassVar[AlertType]
    severity: ClassVar[Severity] = Severity.HIGH

    def __init__(self, registry: Registry | None = None, *, timezone: str | None = None,
                 fleet: Fleet | None = None) -> None:
        self.fleet = fleet if fleet is not None else Fleet(registry, timezone=timezone)
        self.beds = Table()
        self.devices = Table()
        self._declare()
        self._sync()
        self._consumer = self.fleet.register()
        self._next_evaluation = int(NONE)

    # --- for subclasses -----------------------------------------------------------------------

    def _declare(self) -> None:
        """Declare columns of :attr:`beds` and :attr:`devices`."""

    def _update(self, batch: Batch) -> None:
        raise NotImplementedError

    def _evaluate(self, now_ms: int) -> list[Finding]:
        raise NotImplementedError

    def _extra_state(self) -> Any:
        """JSON/msgpack-ready state beyond the tables (e.g. open visits)."""
        return None

    def _restore_extra(self, extra: Any, bed_map: Sequence[int]) -> None:
        """Restore :meth:`_extra_state`; ``bed_map[i]`` is the new number of saved bed ``i``."""

    # --- the Detector protocol ----------------------------------------------------------------

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None:
        if len(messages):
            self.fleet.feed(self._consumer, messages, received_ms)

    def evaluate(self, now_ms: int) -> list[Finding]:
        now_ms = int(now_ms)
        if now_ms < self._next_evaluation:
            return []
        every = self.fleet.evaluate_interval_ms
        self._next_evaluation = (now_ms // every + 1) * every
        self._catch_up()
        return self._evaluate(now_ms)

    def _catch_up(self) -> None:
        self.fleet.cut()
        for batch in self.fleet.rounds_for(self._consumer):
            self._sync()
            self._update(batch)
        self._sync()

    def state(self) -> bytes:
        self._catch_up()
        fleet = self.fleet
        return msgspec.msgpack.encode(_State(
            version=STATE_VERSION, detector=self.name, beds=list(fleet.bed_keys),
            devices=[(*key, int(kind)) for key, kind in zip(fleet.device_keys,
                                                            fleet.device_kind_list, strict=True)],
            bed_columns=self.beds.dump(fleet.n_beds),
            device_columns=self.devices.dump(fleet.n_devices),
            extra=self._extra_state()))

    def restore(self, blob: bytes) -> None:
        saved = msgspec.msgpack.decode(blob, type=_State)
        if saved.version != STATE_VERSION or saved.detector != self.name:
            raise ValueError(f"state of {saved.detector!r} v{saved.version} cannot restore "
                             f"{self.name!r} v{STATE_VERSION}")
        fleet = self.fleet
        bed_map = [fleet.bed_index(site, bed) for site, bed in saved.beds]
        device_map = [fleet.device_index(site, bed, device, KINDS_BY_CODE[kind])
                      for site, bed, device, kind in saved.devices]
        self._catch_up()
        self.beds.load(saved.bed_columns, bed_map)
        self.devices.load(saved.device_columns, device_map)
        self._restore_extra(saved.extra, bed_map)

    def resume(self, held: Sequence[Finding]) -> int:
        """Mark the conditions of ``held`` (one ``active`` finding per condition the alert store
        holds open: every detector is given all of them, and takes those of its
        ``alert_type``) as raised, so that the next evaluation clears those that no longer
        hold; after :meth:`restore`, before the journal is handed back. A device condition
        (its episode the device id) numbers a device not known yet by the ``kind`` its
        evidence names (those without one are left out). Returns how many were marked."""
        table = (self.devices if "active" in self.devices
                 else self.beds if "active" in self.beds else None)
        if table is None:
            return 0  # no such columns (a visit's judgement is once, not a condition)
        fleet = self.fleet
        rows: list[tuple[int, Finding]] = []
        for f in held:
            if f.type is not self.alert_type or not f.active:
                continue
            if table is self.beds:
                rows.append((fleet.bed_index(f.site, f.bed), f))
                continue
            index = fleet.numbering.numbered_device(f.site, f.bed, f.episode)
            if index is None and (kind := _kind(f.evidence.get("kind"))) is not None:
                index = fleet.device_index(f.site, f.bed, f.episode, kind)
            if index is not None:
                rows.append((index, f))
        self._sync()
        for i, f in rows:
            table["active"][i] = True
            if table["active_since"][i] == NONE:
                table["active_since"][i] = f.started_at if f.started_at is not None else f.at
            self._resumed(i, f)
        return len(rows)

    def _resumed(self, row: int, finding: Finding) -> None:
        """Row ``row`` (a bed or a device) was marked raised by :meth:`resume`."""

    # --- helpers ------------------------------------------------------------------------------

    def _sync(self) -> None:
        self.beds.ensure(self.fleet.n_beds)
        self.devices.ensure(self.fleet.n_devices)

    def _finding(self, bed: int, *, at: int, active: bool, started_at: int | None = None,
                 summary: str = "", evidence: dict[str, Any] | None = None,
                 episode: str = "", severity: Severity | None = None) -> Finding:
        site, bed_id = self.fleet.bed_keys[bed]
        return Finding(type=self.alert_type, site=site, bed=bed_id, at=at,
                       severity=severity or self.severity, episode=episode, active=active,
                       started_at=started_at, summary=summary, evidence=evidence or {})


def _kind(value: object) -> Kind | None:
    try:
        return Kind(value) if isinstance(value, str) else None
    except ValueError:
        return None


def transitions(active: Bool, desired: Bool) -> tuple[I64, I64]:
    """Indices that turn on and turn off; ``active`` is updated in place."""
    on = np.flatnonzero(desired & ~active)
    off = np.flatnonzero(active & ~desired)
    active[on] = True
    active[off] = False
    return on, off


def rounded(value: float, digits: int = 1) -> float:
    return round(float(value), digits)
