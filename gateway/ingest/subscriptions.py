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

A session the broker resumes with no record of it here (the data directory lost, wiped or
restored from a backup older than the session) may hold filters nobody knows any more. The
record then says so (``unknown``) until the broker starts that session afresh, and each
message on a topic none of the configured filters match shows such a filter: every filter
that could have matched it (:func:`filters_matching`, never a configured one, which does not
match it) is unsubscribed.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as tmp:
...     record = SessionFilters(Path(tmp), "homecare-gateway")
...     before = record.held()
...     record.record(["homecare/v1/site-01/#", "homecare/v1/site-03/#"])
...     print(before, record.held(), record.path.name, record.unknown())
() ('homecare/v1/site-01/#', 'homecare/v1/site-03/#') mqtt-session-homecare-gateway.json False
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import product
from pathlib import Path
from typing import Final

log = logging.getLogger("homecare.mqtt")

MAX_CANDIDATE_LEVELS: Final = 8
"""Filters of up to this many levels are tried by :func:`filters_matching` (the contract's
topics have 7): 2**(n+1) - 1 ending in ``#`` and 2**n exact ones for a topic of n levels."""


class SessionFilters:
    """The record of one session (client id) in ``data_dir``."""

    def __init__(self, data_dir: Path, client_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", client_id)
        self.path = Path(data_dir) / f"mqtt-session-{safe}.json"
        self._failed = False

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("mqtt.session_filters_unreadable path=%s error=%s: %s; filters dropped "
                        "from mqtt_topic earlier may still be subscribed", self.path,
                        type(exc).__name__, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def held(self) -> tuple[str, ...]:
        """The filters recorded (that the session may hold); empty when there is no record."""
        filters = self._read().get("filters")
        if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
            return ()
        return tuple(filters)

    def unknown(self) -> bool:
        """Whether the session may also hold filters not recorded: the broker resumed it when
        there was no record (:meth:`record` with ``unknown``)."""
        return self._read().get("unknown") is True

    def record(self, filters: Iterable[str], *, unknown: bool = False) -> None:
        """Write the filters down (atomically), and whether the session may hold others
        (``unknown``); a failure is logged once, never raised."""
        content: dict[str, object] = {"filters": list(dict.fromkeys(filters))}
        if unknown:
            content["unknown"] = True
        data = json.dumps(content, indent=1)
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


def matcher(filters: Iterable[str]) -> Callable[[str], bool]:
    """Whether a topic matches any of ``filters`` (MQTT rules: ``+`` one level, a trailing
    ``#`` any number, its parent too; a wildcard first never matches a ``$`` topic).

    >>> match = matcher(["homecare/v1/site-01/#", "homecare/v1/+/+/button/+/event"])
    >>> [match(t) for t in ("homecare/v1/site-01", "homecare/v1/site-02/b/button/d/event",
    ...                     "homecare/v1/site-02/b/button/d/status")]
    [True, True, False]
    """
    prefixes: list[str] = []
    exact: set[str] = set()
    patterns: list[list[str]] = []
    for f in filters:
        if "+" not in f and (f == "#" or f.endswith("/#")):
            prefixes.append(f[:-1])  # "a/b/" (or "" for "#")
            if f != "#":
                exact.add(f[:-2])
        elif "+" not in f and "#" not in f:
            exact.add(f)
        else:
            patterns.append(f.split("/"))
    starts = tuple(prefixes)
    named = tuple(p for p in prefixes if p)  # those that may match a "$" topic

    def match(topic: str) -> bool:
        if topic in exact:
            return True
        if topic.startswith("$"):
            return (bool(named) and topic.startswith(named)) or any(
                p[0] not in ("+", "#") and _matches(p, topic.split("/")) for p in patterns)
        return (bool(starts) and topic.startswith(starts)) or any(
            _matches(p, topic.split("/")) for p in patterns)

    return match


def _matches(pattern: list[str], levels: list[str]) -> bool:
    for i, wanted in enumerate(pattern):
        if wanted == "#":
            return True
        if i >= len(levels) or (wanted != "+" and wanted != levels[i]):
            return False
    return len(levels) == len(pattern)


def filters_matching(topic: str) -> Iterator[str]:
    """Every filter of up to :data:`MAX_CANDIDATE_LEVELS` levels that matches ``topic``: one of
    them is the filter a session holds that delivered it.

    >>> sorted(filters_matching("a/b"))
    ['#', '+/#', '+/+', '+/+/#', '+/b', '+/b/#', 'a/#', 'a/+', 'a/+/#', 'a/b', 'a/b/#']
    """
    if topic.startswith("$"):
        return  # only a filter naming its first level matches it: nothing to guess
    levels = topic.split("/")
    for k in range(min(len(levels), MAX_CANDIDATE_LEVELS) + 1):
        for head in product(*((level, "+") for level in levels[:k])):
            yield "/".join((*head, "#"))
    if len(levels) <= MAX_CANDIDATE_LEVELS:
        for full in product(*((level, "+") for level in levels)):
            yield "/".join(full)
