"""The fleet: what a set of detectors shares about the beds, put together from single-job parts.

Detectors keep their state in numpy arrays indexed by bed (or device) number and hold one
:class:`Fleet` between them (one per alerting stage), which composes:

* :class:`~gateway.detect._numbering.Numbering`: site, bed and device ids as dense numbers;
* :class:`~gateway.detect._bed_settings.BedSettingArrays`: each bed's registry thresholds
  (and each device's heartbeat) as arrays by number;
* :class:`~gateway.detect._localtime.LocalClock`: each bed's local time (site zone, DST) and
  night window;
* :class:`~gateway.detect._rounds.RoundBuffer`: the batches handed to the detectors, extracted
  once and sealed into one round per evaluation;
* :class:`~gateway.detect._presence.PresenceReconciler`: presence across a bed's several
  infrared sensors, settled once per round;
* :class:`~gateway.detect._quarantine.Quarantine`: which beds and devices the registry lists
  (:attr:`Fleet.bed_registered`, :attr:`Fleet.device_registered`), and at most
  ``max_unregistered_beds``/``_devices`` of the others watched: the messages of any further
  one are left out of the rounds, so made-up ids cannot grow the detectors' arrays without end.

It also knows whether the gateway's intake is up (:meth:`Fleet.intake_changed`: the broker
connection, told by the gateway): while it is down no device can be heard, so silence says
nothing about them, and once it is back they are judged from its return.

The fleet wires them (a bed numbered for the first time gets its settings and zone at once;
a sealed round is reconciled before any detector takes it) and answers for them, so a
detector asks ``self.fleet`` and need not know which part holds what. ``update`` may be called
(event loop) while one other thread evaluates (a worker thread), not more.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from devices.codec import Message
from devices.devicetime import ClockWindow
from devices.registry import Registry
from devices.topics import Address, Kind
from gateway.detect._batch import Batch, Chunk, Infrared, extract
from gateway.detect._bed_settings import BedSettingArrays
from gateway.detect._localtime import LocalClock
from gateway.detect._numbering import Numbering
from gateway.detect._presence import PresenceReconciler
from gateway.detect._quarantine import (
    MAX_UNREGISTERED_BEDS,
    MAX_UNREGISTERED_DEVICES,
    Quarantine,
)
from gateway.detect._rounds import EVALUATE_INTERVAL_MS, MAX_PENDING_MESSAGES, RoundBuffer
from gateway.detect._table import NONE, grow

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


class Fleet:
    """Bed and device numbering, settings, local time and rounds shared by a set of detectors."""

    def __init__(self, registry: Registry | None = None, *, timezone: str | None = None,
                 round_messages: int = MAX_PENDING_MESSAGES,
                 clock_window: ClockWindow | None = None,
                 max_unregistered_beds: int = MAX_UNREGISTERED_BEDS,
                 max_unregistered_devices: int = MAX_UNREGISTERED_DEVICES,
                 evaluate_interval_ms: int = EVALUATE_INTERVAL_MS) -> None:
        if evaluate_interval_ms < 1:
            raise ValueError("evaluate_interval_ms must be positive")
        self.evaluate_interval_ms = evaluate_interval_ms
        """How often (message time) the detectors sharing this fleet evaluate."""
        self.rounds = RoundBuffer(extract=self._extract, prepare=self._prepare,
                                  round_messages=round_messages)
        self.registry = registry if registry is not None else Registry()
        self.clock_window = clock_window or ClockWindow()
        """The gateway's clock window (the ``clock_window_s`` setting): a device time outside
        it is stored at receipt time and is a wrong clock (``sensor_fault``)."""
        self.local_time = LocalClock(fallback=timezone)
        self.settings = BedSettingArrays(self.registry)
        self.quarantine = Quarantine(self.registry, max_beds=max_unregistered_beds,
                                     max_devices=max_unregistered_devices)
        self.bed_registered: Bool = np.zeros(0, np.bool_)
        """Per bed number: listed in the registry (not registered on first sight)."""
        self.device_registered: Bool = np.zeros(0, np.bool_)
        """Per device number: listed in the registry on its bed."""
        self.intake_up = True
        """False while the gateway's intake (its broker connection) is down; replay and tests
        never say otherwise."""
        self.intake_since_ms = int(NONE)
        """When the intake last came up (:data:`~gateway.detect._table.NONE`: never said)."""
        self.numbering = Numbering(on_new_bed=self._new_bed, on_new_device=self._new_device)
        self.presence = PresenceReconciler(self.numbering)
        for bed in self.registry.beds():
            self.bed_index(bed.site, bed.id)
            for device in bed.devices.values():
                self.device_index(bed.site, bed.id, device.id, device.kind)

    def intake_changed(self, *, up: bool, now_ms: int) -> None:
        """The gateway's intake went down or came up at ``now_ms`` (any thread: two plain
        attributes the detectors read at their next evaluation)."""
        if up and not self.intake_up:
            self.intake_since_ms = int(now_ms)
        self.intake_up = up

    def _new_bed(self, index: int, site: str, bed: str) -> None:
        settings = self.settings.add_bed(index, site, bed)
        self.local_time.add_bed(index, zone=self.registry.timezone(site),
                                night_start=settings.night_start, night_end=settings.night_end)
        self.bed_registered = grow(self.bed_registered, index + 1, False)
        self.bed_registered[index] = self.quarantine.note_bed(site, bed)

    def _new_device(self, index: int, site: str, bed: str, device: str) -> None:
        self.settings.add_device(index, site, bed, device)
        self.device_registered = grow(self.device_registered, index + 1, False)
        self.device_registered[index] = self.quarantine.note_device(site, bed, device)

    def _extract(self, chunks: Sequence[Chunk]) -> Batch:
        return extract(self.numbering, self.quarantine.admit(self.numbering, chunks))

    @property
    def unwatched_messages(self) -> int:
        """Messages of devices outside the registry left out of the detectors (beyond the
        caps; see :mod:`~gateway.detect._quarantine`)."""
        return self.quarantine.unwatched_messages

    def _prepare(self, batch: Batch) -> None:
        self.presence.reconcile(batch.infrared)

    # --- rounds (RoundBuffer) -----------------------------------------------------------------

    @property
    def round_messages(self) -> int:
        return self.rounds.round_messages

    def register(self) -> int:
        """A new consumer of rounds (one per detector); returns its id."""
        return self.rounds.register()

    def feed(self, consumer: int, messages: Sequence[Message],
             received_ms: Sequence[int]) -> None:
        """Buffer a batch (:meth:`~gateway.detect._rounds.RoundBuffer.feed`)."""
        self.rounds.feed(consumer, messages, received_ms)

    def extract_pending(self) -> None:
        self.rounds.extract_pending()

    def add_columns(self, batch: Batch) -> None:
        """Add messages already extracted into columns (:func:`~gateway.detect._batch.extract`
        with this fleet) to the next round, after what was fed before."""
        self.rounds.add_columns(batch)

    def cut(self) -> None:
        """Seal everything buffered into the next round."""
        self.rounds.cut()

    def rounds_for(self, consumer: int) -> list[Batch]:
        """The rounds ``consumer`` has not seen yet, oldest first."""
        return self.rounds.rounds_for(consumer)

    def reconcile_presence(self, ir: Infrared) -> None:
        """See :class:`~gateway.detect._presence.PresenceReconciler`."""
        self.presence.reconcile(ir)

    # --- numbering (Numbering) ----------------------------------------------------------------

    @property
    def n_beds(self) -> int:
        return self.numbering.n_beds

    @property
    def n_devices(self) -> int:
        return self.numbering.n_devices

    @property
    def n_sites(self) -> int:
        return self.numbering.n_sites

    @property
    def site_ids(self) -> dict[str, int]:
        """Site name to site number (``bed_site``)."""
        return self.numbering.site_ids

    @property
    def bed_keys(self) -> list[tuple[str, str]]:
        return self.numbering.bed_keys

    @property
    def bed_site(self) -> I64:
        return self.numbering.bed_site

    @property
    def device_keys(self) -> list[tuple[str, str, str]]:
        return self.numbering.device_keys

    @property
    def device_bed(self) -> I64:
        return self.numbering.device_bed

    @property
    def device_bed_list(self) -> list[int]:
        return self.numbering.device_bed_list

    @property
    def device_kind(self) -> npt.NDArray[np.int8]:
        return self.numbering.device_kind

    @property
    def device_kind_list(self) -> list[int]:
        return self.numbering.device_kind_list

    @property
    def address_cache(self) -> dict[int, int]:
        return self.numbering.address_cache

    def bed_index(self, site: str, bed: str) -> int:
        return self.numbering.bed_index(site, bed)

    def device_index(self, site: str, bed: str, device: str, kind: Kind) -> int:
        return self.numbering.device_index(site, bed, device, kind)

    def message_device(self, message: Message) -> int:
        return self.numbering.message_device(message)

    def address_code(self, a: Address) -> int:
        return self.numbering.address_code(a)

    # --- bed settings (BedSettingArrays) ------------------------------------------------------

    def setting(self, name: str) -> F64:
        """One BedSettings field for beds ``0..n_beds`` (a view)."""
        return self.settings[name][: self.n_beds]

    @property
    def device_heartbeat_ms(self) -> F64:
        return self.settings.device_heartbeat_ms

    @property
    def offline_factor(self) -> float:
        return self.settings.offline_factor

    # --- local time (LocalClock) --------------------------------------------------------------

    @property
    def zones(self) -> list[zoneinfo.ZoneInfo]:
        return self.local_time.zones

    @property
    def bed_zone(self) -> I64:
        return self.local_time.bed_zone

    @property
    def night_start_min(self) -> F64:
        return self.local_time.night_start_min

    @property
    def night_end_min(self) -> F64:
        return self.local_time.night_end_min

    def local_ms(self, beds: I64, times: I64) -> I64:
        """``times[i]`` as local wall-clock epoch ms in the zone of bed ``beds[i]``."""
        return self.local_time.local_ms(beds, times)

    def local_minutes(self, beds: I64, times: I64) -> F64:
        """Minutes after local midnight (0..1440) of ``times[i]`` at bed ``beds[i]``."""
        return self.local_time.local_minutes(beds, times)

    def local_ms_now(self, now_ms: int) -> I64:
        return self.local_time.local_ms_now(now_ms)

    def local_minutes_now(self, now_ms: int) -> F64:
        return self.local_time.local_minutes_now(now_ms)

    def is_night(self, beds: I64, minutes: F64) -> npt.NDArray[np.bool_]:
        """Whether local ``minutes`` fall in each bed's night window."""
        return self.local_time.is_night(beds, minutes)
