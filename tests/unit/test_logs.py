"""Logs: JSON lines carry the event and each field as a key (typed), text lines stay as they
were, and every log call of the product follows the ``event key=value`` convention that the
JSON keys are read from."""

from __future__ import annotations

import ast
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import logs

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("devices", "alerts", "gateway", "homecare")


@contextlib.contextmanager
def _logging(fmt: str) -> Iterator[None]:
    """The gateway's logging set up (to the captured stderr of the test), then put back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.setup("debug", fmt)
    try:
        yield
    finally:
        root.handlers[:], root.level = handlers, level


def _read(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_json_lines_carry_each_field_as_a_typed_key(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("homecare.test")
    with _logging("json"):
        log.info("mqtt.connected host=%s port=%s protocol=%s session_present=%s", "127.0.0.1",
                 1883, "5", True)
        log.warning("tsdb.resumed backend=%s after_s=%.1f failed_attempts=%d "
                    "replaying_points=%d%s", "influx-v2", 42.04, 7, 41200,
                    " cause=credentials_refused")
    [connected, resumed] = _read(capsys)
    assert {k: connected[k] for k in ("level", "logger", "event", "host", "port", "protocol",
                                      "session_present")} == {
        "level": "info", "logger": "homecare.test", "event": "mqtt.connected",
        "host": "127.0.0.1", "port": 1883, "protocol": "5", "session_present": True}
    assert connected["msg"] == ("mqtt.connected host=127.0.0.1 port=1883 protocol=5 "
                                "session_present=True")
    assert str(connected["ts"]).endswith("Z")
    assert {k: resumed[k] for k in ("event", "backend", "after_s", "failed_attempts",
                                    "replaying_points", "cause")} == {
        "event": "tsdb.resumed", "backend": "influx-v2", "after_s": 42.0, "failed_attempts": 7,
        "replaying_points": 41200, "cause": "credentials_refused"}
    assert resumed["level"] == "warning"


def test_a_value_with_spaces_stays_whole_and_the_free_text_is_its_own_key(
        capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("homecare.test")
    with _logging("json"):
        log.error("tsdb.outage backend=%s error=%s; spooling to disk and retrying", "influx-v1",
                  ConnectionRefusedError(111, "Connection refused by peer"))
        log.error("detect.snapshot_failed path=%s error=%s: %s; the previous snapshot is kept",
                  Path("/var/lib/homecare/detectors.snapshot"), "OSError",
                  "[Errno 28] No space")
        log.warning("http.bad_request reason=%s client=%s path=%r suppressed=%d", "bad_path",
                    "10.0.0.7", "/api/v1/a b key=forged", 0)
    outage, snapshot, bad = _read(capsys)
    assert outage["error"] == "[Errno 111] Connection refused by peer"
    assert outage["detail"] == "spooling to disk and retrying"
    assert snapshot["path"] == "/var/lib/homecare/detectors.snapshot"
    assert snapshot["error"] == "OSError"
    assert snapshot["detail"] == "[Errno 28] No space; the previous snapshot is kept"
    assert bad["path"] == "/api/v1/a b key=forged"
    assert "key" not in bad, "a value cannot forge a field"


def test_lines_outside_the_convention_keep_their_message(
        capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("homecare.test")
    with _logging("json"):
        logging.getLogger("thirdparty.lib").info("Started server process [%d]", 4242)
        log.info("gateway.stopped")
        log.info("alerts.x site=%s", "s1", extra={"bed": "bed-7"})
        try:
            raise RuntimeError("boom\u202e")
        except RuntimeError:
            log.exception("upstream.failed; retrying")
    raw = capsys.readouterr().err
    assert "\u202e" not in raw, "JSON escapes what a terminal would act on"
    third_party, stopped, extra, failed = (json.loads(line) for line in raw.splitlines())
    assert third_party["msg"] == "Started server process [4242]"
    assert "event" not in third_party
    assert stopped["event"] == "gateway.stopped"
    assert (extra["site"], extra["bed"]) == ("s1", "bed-7")
    assert failed["detail"] == "retrying"
    assert "RuntimeError: boom" in str(failed["exc"])


def test_text_lines_are_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    with _logging("text"):
        logging.getLogger("homecare.test").info("mqtt.connected host=%s port=%d", "h", 1883)
    line = capsys.readouterr().err.strip()
    assert line.endswith(" INFO homecare.test mqtt.connected host=h port=1883"), line


def _log_calls() -> Iterator[tuple[str, ast.Call]]:
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in ("debug", "info", "warning", "error",
                                               "exception", "critical")
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id in ("log", "logger")):
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", node


def test_every_log_call_of_the_product_follows_the_event_key_value_convention() -> None:
    calls = list(_log_calls())
    assert len(calls) > 40
    wrong = []
    for where, call in calls:
        first = call.args[0] if call.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            wrong.append(f"{where}: the message is not a literal format string")
            continue
        args = tuple(0 for _ in call.args[1:])  # 0 formats under every conversion
        if any(isinstance(a, ast.Starred) for a in call.args) or not logs.fields(
                first.value, args):
            wrong.append(f"{where}: {first.value[:60]!r} is not 'event.name key=%s ...' with "
                         "one argument per conversion")
    assert not wrong, "\n".join(wrong)


def test_repeated_lines_are_limited_per_kind_and_the_rest_reported_once() -> None:
    now, reports = [0.0], []
    limit = logs.RepeatLimit(report=lambda *r: reports.append(r), per_minute=3,
                             clock=lambda: now[0])

    def line(name: str, msg: object, level: int = logging.WARNING) -> bool:
        return limit.filter(logging.LogRecord(name, level, "", 0, msg, (), None))

    assert [line("uvicorn.error", "Invalid HTTP request received.") for _ in range(10)] == (
        [True] * 3 + [False] * 7)
    assert [line("uvicorn.error", "Exception in ASGI application\n", logging.ERROR)
            for _ in range(4)] == [True] * 3 + [False], "each kind has its own budget"
    now[0] = 61.0
    assert line("uvicorn.error", "Invalid HTTP request received.")
    assert reports == [("uvicorn.error", "Invalid HTTP request received.", 7, logging.WARNING)]
    limit.flush(final=True)
    assert reports[1:] == [("uvicorn.error", "Exception in ASGI application\n", 1, logging.ERROR)]
    passed = [line("homecare.api", f"made up {n}") for n in range(logs.MAX_KINDS + 10)]
    assert sum(passed) == logs.MAX_KINDS + 3, "kinds past the cap share one budget"
    limit.flush(final=True)
    assert reports[-1] == ("homecare.api", logs.OTHER_KINDS, 7, logging.WARNING)
