"""The topic filters a persistent MQTT session holds at the broker, remembered across restarts.

A broker keeps a persistent session's subscriptions with the session: a gateway restarted
with fewer filters in ``mqtt_topic`` (a site moved to another gateway) would go on receiving
the filters it dropped, since subscribing to the new ones adds and never removes (checked on
mosquitto 2.0). The broker does not say which filters a session holds, so each session writes
them down here (``data_dir/mqtt-session-<client id>.json``) and, on finding its session again,
unsubscribes those no longer configured (:class:`~gateway.ingest.connection.MqttSource`).

The record is written before subscribing (the old filters and the new) and again once the
broker has confirmed, so a crash in between leaves every filter that may be held listed. A
record that cannot be read or written is logged and never stops intake: the worst outcome is
the old behaviour (a dropped filter still held).

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     record = SessionFilters(Path(tmp), "homecare-gateway")
...     before = record.held()
...     record.record(["homecare/v1/site-01/#", "homecare/v1/site-03/#"])
...     print(before, record.held(), record.path.name)
() ('homecare/v1/site-01/#', 'homecare/v1/site-03/#') mqtt-session-homecare-gateway.json
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger("homecare.mqtt")


class SessionFilters:
    """The record of one session (client id) in ``data_dir``."""

    def __init__(self, data_dir: Path, client_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", client_id)
        self.path = Path(data_dir) / f"mqtt-session-{safe}.json"
        self._failed = False

    def held(self) -> tuple[str, ...]:
        """The filters recorded (that the session may hold); empty when there is no record."""
        try:
            filters = json.loads(self.path.read_text(encoding="utf-8"))["filters"]
        except FileNotFoundError:
            return ()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("mqtt.session_filters_unreadable path=%s error=%s: %s; filters dropped "
                        "from mqtt_topic earlier may still be subscribed", self.path,
                        type(exc).__name__, exc)
            return ()
        if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
            return ()
        return tuple(filters)

    def record(self, filters: Iterable[str]) -> None:
        """Write the filters down (atomically); a failure is logged once, never raised."""
        data = json.dumps({"filters": list(dict.fromkeys(filters))}, indent=1)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            if not self._failed:
                log.warning("mqtt.session_filters_unwritable path=%s error=%s: %s", self.path,
                            type(exc).__name__, exc)
            self._failed = True
            return
        self._failed = False
