"""Structured logging: one event name and key=value fields per line, or JSON lines.

Values in a line may come from outside (a request path, a topic, an exception's message): in
text lines every control character (NUL, CR, LF, ESC, ...) is written as an escape (``\\x00``,
``\\n``, and the bidirectional overrides such as U+202E as ``\\u202e``), so no input can
forge a log line, hide or reorder text on a terminal or put raw bytes in the file (values that
may hold spaces, such as request paths, are logged quoted); a traceback keeps its own line
breaks. JSON lines are escaped by JSON itself.

>>> escape("GET /a\\x00b\\r\\nforged")
'GET /a\\\\x00b\\\\r\\\\nforged'

JSON lines (``log_format = "json"``, for journald and log shippers) carry the fields as keys.
Every log call in the gateway follows one convention, ``log.info("event.name key=%s key=%d;
free text", ...)``: :func:`fields` reads the event name and the keys from the format string and
takes each value from its argument, typed (``%d`` an integer, ``%.1f`` a number, ``%s`` of a
bool or number that bool or number), so a value holding spaces (an exception's message) stays
whole; the text after the fields goes to ``detail``, and ``msg`` keeps the whole line. Lines of
other libraries carry ``msg`` only; ``extra={...}`` fields of a call become keys too.

>>> fields("tsdb.outage backend=%s error=%s; spooling to disk", ("v2", OSError("refused by peer")))
{'event': 'tsdb.outage', 'backend': 'v2', 'error': 'refused by peer', 'detail': 'spooling to disk'}

A line that outside input can repeat at will (a malformed HTTP request, each one a warning of
uvicorn's) is bounded by :class:`RepeatLimit`: at most :data:`REPEATS_PER_MINUTE` lines a
minute of each kind, the rest counted and reported in one line afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100
                                else f"\\u{ord(char):04x}")


def escape(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with its control characters escaped (line breaks kept if asked)."""
    return (_CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL).sub(_escaped, text)


class _TextFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def formatException(self, ei: object) -> str:
        return escape(super().formatException(ei), keep_newlines=True)  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:
        return escape(super().formatStack(stack_info), keep_newlines=True)


_EVENT = re.compile(r"(?P<event>[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)(?P<end>[;:]?)(?=\s|$)")
_FIELD = re.compile(r"\s+(?P<key>[a-z_][a-z0-9_]*)=(?P<value>\S*)")
_CONVERSION = re.compile(
    r"%(?P<name>\([^)]*\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?"
    r"(?P<type>[diouxXeEfFgGcrsa%])")
_RENDERED_FIELD = re.compile(r"([a-z_][a-z0-9_]*)=(\S+)")
_RESERVED: Final = frozenset({"ts", "level", "logger", "event", "msg", "detail", "exc", "stack"})
_RECORD_ATTRIBUTES: Final = frozenset(logging.LogRecord(
    "", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}

_Field = tuple[str, str, tuple[str, ...]]
"""A key, its value's format, and that format's conversions (``%%`` left out)."""


@functools.lru_cache(maxsize=1024)
def _template(text: str) -> tuple[str, tuple[_Field, ...], str, int] | None:
    """The event, the fields and the free text of a format string, and how many arguments
    it takes; None when it does not follow the ``event key=value`` convention or takes its
    arguments by name or width."""
    if any(m.group("name") or m.group("width") == "*" for m in _CONVERSION.finditer(text)):
        return None
    event = _EVENT.match(text)
    if event is None:
        return None
    pos = event.end()
    found: list[_Field] = []
    if not event.group("end"):
        while (field := _FIELD.match(text, pos)) is not None:
            value, pos = field.group("value"), field.end()
            stop = value[-1:] in (";", ":", ",")
            if stop:
                value = value[:-1]
            kinds = tuple(c.group("type") for c in _CONVERSION.finditer(value)
                          if c.group("type") != "%")
            found.append((field.group("key"), value, kinds))
            if stop:
                break
    rest = text[pos:]
    count = sum(1 for c in _CONVERSION.finditer(text) if c.group("type") != "%")
    return event.group("event"), tuple(found), rest, count


def _typed(kind: str, spec: str, arg: object) -> object:
    """A value for JSON: the argument itself when it is a plain bool, number or string (``%d``
    an int, ``%.1f`` a float rounded as in the text), else the text."""
    if kind in "diu" and isinstance(arg, int | float):
        return arg if isinstance(arg, bool) else int(arg)
    if kind in "fFeEgG" and isinstance(arg, int | float):
        number = float(spec % arg)
        return number if math.isfinite(number) else spec % arg
    if kind in "sra" and (arg is None or isinstance(arg, bool | int | str)):
        return arg
    if kind in "sra" and isinstance(arg, float):
        return arg if math.isfinite(arg) else str(arg)
    return spec % (arg,)


def _literal(value: str) -> object:
    try:
        return int(value)
    except ValueError:
        return value


def fields(text: str, args: tuple[object, ...] | object) -> dict[str, object]:
    """The event, fields and free text (``detail``) of one log call, typed (see the module
    docstring); empty when the call does not follow the convention."""
    parsed = _template(text) if isinstance(args, tuple) else None
    if parsed is None or not isinstance(args, tuple):
        return {}
    event, found, rest, count = parsed
    if count != len(args):
        return {}
    out: dict[str, object] = {"event": event}
    used = 0
    suffix = ""
    for key, spec, kinds in found:
        taken = args[used:used + len(kinds)]
        used += len(kinds)
        name = f"{key}_" if key in _RESERVED else key
        if not kinds:
            out[name] = _literal(spec)
        elif len(kinds) == 1 and _CONVERSION.fullmatch(spec):
            out[name] = _typed(kinds[0], spec, taken[0])
        elif len(kinds) == 2 and spec.endswith("%s") and _CONVERSION.fullmatch(spec[:-2]):
            # "count=%d%s": a value, then an optional tail such as " cause=credentials_refused"
            out[name] = _typed(kinds[0], spec[:-2], taken[0])
            tail = str(taken[1])
            extra = dict(_RENDERED_FIELD.findall(tail))
            if extra and _RENDERED_FIELD.sub("", tail).strip() == "":
                out.update({k if k not in _RESERVED else f"{k}_": _literal(v)
                            for k, v in extra.items()})
            else:
                suffix = tail
        else:
            out[name] = spec % taken
    detail = (suffix + (rest % args[used:])).strip().lstrip(";:,").strip()
    if detail:
        out["detail"] = detail
    return out


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, str):
            # A call outside the convention after all keeps its message only.
            with contextlib.suppress(TypeError, ValueError):
                entry.update(fields(record.msg, record.args))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry.setdefault(key, value)
        entry["msg"] = message
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def setup(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "urllib3", "influxdb_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


REPEATS_PER_MINUTE: Final = 20
"""Lines of one kind (one logger, one message template) a :class:`RepeatLimit` lets through
in a minute; as many as the API writes about refused requests."""
MAX_KINDS: Final = 256
"""Kinds a :class:`RepeatLimit` tells apart; past it, a logger's further kinds share one
(messages built without a template, such as an exception's text, are each a kind)."""
OTHER_KINDS: Final = "(other messages)"

Report = Callable[[str, str, int, int], None]
"""Told of lines left out: ``(logger, message template, count, highest level)``."""


@dataclass(slots=True)
class _Window:
    start: float
    written: int = 0
    left_out: int = 0
    level: int = logging.NOTSET


class RepeatLimit(logging.Filter):
    """A filter (for a logger) letting through at most ``per_minute`` lines of each kind in a
    minute (from a kind's first line, then from its first line after that minute); the others
    are dropped, each told to ``dropped`` (a metric's counter), and ``report`` hears how many
    a kind lost in one call, once its minute is over: at its next line, at :meth:`flush` (call
    it every few seconds) or at ``flush(final=True)`` (at shutdown, for every kind).

    >>> now, reports = [0.0], []
    >>> limit = RepeatLimit(report=lambda *r: reports.append(r), per_minute=2,
    ...                     clock=lambda: now[0])
    >>> line = lambda: logging.LogRecord("uvicorn.error", 30, "", 0, "Invalid.", (), None)
    >>> [limit.filter(line()) for _ in range(5)]
    [True, True, False, False, False]
    >>> limit.flush(), reports
    (None, [])
    >>> now[0] = 60.0
    >>> limit.flush(), reports
    (None, [('uvicorn.error', 'Invalid.', 3, 30)])
    """

    def __init__(self, *, report: Report, dropped: Callable[[str], None] | None = None,
                 per_minute: int = REPEATS_PER_MINUTE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.report = report
        self.dropped = dropped
        self.per_minute = per_minute
        self.clock = clock
        self._kinds: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
        key = (record.name, template)
        ended: tuple[tuple[str, str], _Window] | None = None
        with self._lock:
            now = self.clock()
            window = self._kinds.get(key)
            if window is None and len(self._kinds) >= MAX_KINDS:
                key = (record.name, OTHER_KINDS)
                window = self._kinds.get(key)
            if window is None or now - window.start >= 60.0:
                if window is not None and window.left_out:
                    ended = key, window
                window = self._kinds[key] = _Window(now)
            passes = window.written < self.per_minute
            if passes:
                window.written += 1
            else:
                window.left_out += 1
                window.level = max(window.level, record.levelno)
        if ended is not None:
            self._tell([ended])
        if not passes and self.dropped is not None:
            self.dropped(record.name)
        return passes

    def flush(self, *, final: bool = False) -> None:
        """Report the kinds whose minute is over (every kind when ``final``) and forget them."""
        with self._lock:
            now = self.clock()
            over = [(key, window) for key, window in self._kinds.items()
                    if final or now - window.start >= 60.0]
            for key, _ in over:
                del self._kinds[key]
        self._tell([(key, window) for key, window in over if window.left_out])

    def _tell(self, ended: list[tuple[tuple[str, str], _Window]]) -> None:
        for (name, template), window in ended:
            self.report(name, template, window.left_out, window.level)
