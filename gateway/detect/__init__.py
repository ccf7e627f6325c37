"""Rolling-window detectors: device messages in, :class:`~alerts.model.Finding` values out.

Every detector has the same small API (``update`` a batch, ``evaluate`` at a moment, ``state``
and ``restore`` across restarts), so the alerting stage treats them alike and a new rule is one
new class. :func:`build_detectors` returns the full set for a registry.

One module per alert type (``inactivity``, ``night_bed_exit``, ``abnormal_sound``,
``vital_signs``, ``device_offline``, ``low_battery``, ``sensor_fault``, ``service_anomaly``),
each a :class:`DetectorBase` subclass whose docstring shows one input producing one finding.
What they share lives in private modules, one job each:

* ``_base``: :class:`DetectorBase`, the protocol over per-bed and per-device tables,
  save/restore, findings;
* ``_fleet``: :class:`Fleet`, the one object a set of detectors shares, composed of
  ``_numbering`` (ids to dense bed and device numbers), ``_bed_settings`` (registry thresholds
  as arrays), ``_localtime`` (local time per site zone, DST, night windows), ``_rounds`` (the
  round buffer) and ``_presence`` (presence across a bed's infrared sensors);
* ``_batch`` (a batch of messages as columns), ``_table`` (per-bed arrays), ``_ring`` (per-bed
  sample rings and slot baselines).

``snapshot`` writes every detector's state to one durable file and restores it at start
(:func:`save_snapshot`, :func:`restore_snapshot`).

``alerting`` is the pipeline stage that runs the immediate rules and these detectors and feeds
their findings to the alert engine (:class:`AlertingStage`). :func:`extract` turns messages
into the columns of a :class:`Batch` that :meth:`Fleet.add_columns` takes (as the benchmark
does, to time the detectors without the extraction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from alerts.model import Finding
from devices.codec import Message
from devices.devicetime import ClockWindow
from devices.registry import Registry
from gateway.detect._base import DetectorBase
from gateway.detect._batch import Batch, extract
from gateway.detect._fleet import Fleet
from gateway.detect._quarantine import MAX_UNREGISTERED_BEDS, MAX_UNREGISTERED_DEVICES
from gateway.detect._rounds import EVALUATE_INTERVAL_MS
from gateway.detect.abnormal_sound import AbnormalSoundDetector
from gateway.detect.alerting import AlertingStage, engine_from_settings, load_detectors
from gateway.detect.device_offline import REPLACEMENT_WINDOW_MS, DeviceOfflineDetector
from gateway.detect.inactivity import InactivityDetector
from gateway.detect.low_battery import LowBatteryDetector
from gateway.detect.night_bed_exit import NightBedExitDetector
from gateway.detect.sensor_fault import SensorFaultDetector
from gateway.detect.service_anomaly import ServiceAnomalyDetector, ServiceChecks, service_checks
from gateway.detect.snapshot import SNAPSHOT_FILE, Restored, restore_snapshot, save_snapshot
from gateway.detect.vital_signs import VitalSignsDetector


@runtime_checkable
class Detector(Protocol):
    """A rolling-window detector over every bed's streams.

    ``update`` takes a batch of accepted messages in arrival order with their receipt times
    (epoch ms; the simulated clock in replay); it only buffers. ``evaluate(now_ms)`` folds in
    what was buffered and returns the findings due at ``now_ms``: a condition that began
    (``active=True``, ``started_at`` when it began) or cleared (``active=False``), once each.
    Between evaluation rounds (every minute of message-clock time, on a grid all detectors
    share) it returns nothing and costs nothing, so it can be called every second.
    ``state``/``restore`` round-trip everything learned, keyed by site, bed and device ids.
    ``update`` may run on the event loop while ``evaluate`` runs in one worker thread.
    """

    name: str

    def update(self, messages: Sequence[Message], received_ms: Sequence[int]) -> None: ...

    def evaluate(self, now_ms: int) -> list[Finding]: ...

    def state(self) -> bytes: ...

    def restore(self, blob: bytes) -> None: ...


def build_detectors(registry: Registry, *, timezone: str | None,
                    clock_window: ClockWindow | None = None,
                    evaluate_interval_ms: int = EVALUATE_INTERVAL_MS,
                    device_replacement_window_ms: int = REPLACEMENT_WINDOW_MS,
                    max_unregistered_beds: int = MAX_UNREGISTERED_BEDS,
                    max_unregistered_devices: int = MAX_UNREGISTERED_DEVICES) -> list[Detector]:
    """Every detector, configured from ``registry`` (per-bed settings, site time zones).

    ``timezone`` is the gateway's fallback IANA zone for sites without their own (``None``:
    the machine's zone). ``clock_window`` is the gateway's (the ``clock_window_s`` setting,
    the same the line encoder stores by): a device time outside it is a wrong clock. The
    detectors share one :class:`Fleet` (bed and device numbering) and so extract each batch's
    columns once. ``evaluate_interval_ms`` and the caps on unregistered beds and devices are
    the gateway's settings (``detector_evaluate_interval_s``, ``unregistered_watched_*``), as
    is ``device_replacement_window_ms`` (``device_replacement_window_s``).
    """
    fleet = Fleet(registry, timezone=timezone, clock_window=clock_window,
                  evaluate_interval_ms=evaluate_interval_ms,
                  max_unregistered_beds=max_unregistered_beds,
                  max_unregistered_devices=max_unregistered_devices)
    detectors: list[Detector] = [cls(fleet=fleet) for cls in DETECTORS]
    for detector in detectors:
        if isinstance(detector, DeviceOfflineDetector):
            detector.replacement_window_ms = device_replacement_window_ms
    return detectors


DETECTORS: tuple[type[DetectorBase], ...] = (
    InactivityDetector,
    NightBedExitDetector,
    AbnormalSoundDetector,
    VitalSignsDetector,
    DeviceOfflineDetector,
    LowBatteryDetector,
    SensorFaultDetector,
    ServiceAnomalyDetector,
)
"""Every detector class, in the order :func:`build_detectors` returns them."""

__all__ = [
    "DETECTORS",
    "SNAPSHOT_FILE",
    "AbnormalSoundDetector",
    "AlertingStage",
    "Batch",
    "Detector",
    "DetectorBase",
    "DeviceOfflineDetector",
    "Fleet",
    "InactivityDetector",
    "LowBatteryDetector",
    "NightBedExitDetector",
    "Restored",
    "SensorFaultDetector",
    "ServiceAnomalyDetector",
    "ServiceChecks",
    "VitalSignsDetector",
    "build_detectors",
    "engine_from_settings",
    "extract",
    "load_detectors",
    "restore_snapshot",
    "save_snapshot",
    "service_checks",
]
