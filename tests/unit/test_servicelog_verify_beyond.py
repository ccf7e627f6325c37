"""A kept head beyond the service log's end, asked of the API and of ``homecare verify-log``
(issue #14, D-E of a fresh tester): the platform kept the head of record 100, the log holds 78.
The API answered ``records: 0, head_seq: 0`` and nothing else of the log, as if it were empty;
both now say, alike, how many records were recomputed, where the log ends, that the kept head
is beyond it, and the verdict (not sound; which records may be bad; none known sound unless a
kept head vouches for some)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alerts.servicelog import ServiceLog
from tests.unit.test_api_app import Harness, build
from tests.unit.test_servicelog import event, tamper

KEPT = 100
LEFT = 78


def cut(path: Path, log: ServiceLog) -> dict[int, str]:
    """100 records delivered upstream (their heads kept), then records 79 to 100 removed and
    the stored head set to record 78, the checkpoint dropped: the log's own links are
    sound. Returns the kept heads by record."""
    log.append([event(i) for i in range(KEPT)], now_ms=1)
    kept = {r.seq: r.hash for r in log.query(newest_first=False, limit=1000)}
    tamper(path, f"DELETE FROM service_log WHERE seq > {LEFT}",
           f"UPDATE chain_head SET seq = {LEFT}, hash = '{kept[LEFT]}'",
           "DELETE FROM verify_checkpoint")
    assert log.verify(full=True).ok, "its own links and the stored head agree"
    return kept


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = build(tmp_path)
    try:
        yield harness
    finally:
        await harness.client.aclose()


async def _verify(api: Harness, *heads: str, full: bool) -> Any:
    answer = await api.client.get("/api/v1/service-logs/verify",
                                  params={"head": list(heads), "full": str(full).lower()},
                                  headers=api.auth("viewer"))
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("full", [True, False], ids=["full", "incremental"])
async def test_the_api_says_where_the_log_ends_before_a_kept_head_beyond_it(
        api: Harness, tmp_path: Path, full: bool) -> None:
    kept = cut(tmp_path / "servicelog.sqlite3", api.ctx.service_log)
    answer = await _verify(api, f"{KEPT}:{kept[KEPT]}", full=full)
    assert answer["ok"] is False
    assert (answer["log_last_seq"], answer["kept_beyond_seq"]) == (LEFT, KEPT), answer
    assert (answer["records"], answer["head_seq"], answer["first_bad_seq"]) == (0, 0, None)
    assert (answer["suspect_from"], answer["suspect_to"]) == (1, LEFT + 1)
    # Incremental: from the checkpoint the background audit (its own links) left at 78.
    assert (answer["checked"], answer["from_seq"]) == ((LEFT, 1) if full else (0, LEFT + 1))
    recomputed = f"records 1 to {LEFT} recomputed now" if full else "no record recomputed now"
    assert answer["scope"].startswith(
        f"{recomputed}; the log ends at record {LEFT}; a kept head is for record {KEPT}, "
        f"beyond its end; no record is known sound"), answer["scope"]
    # With the head of its last record kept too: records after 78 were removed, 1-78 sound.
    vouched = await _verify(api, f"{LEFT}:{kept[LEFT]}", f"{KEPT}:{kept[KEPT]}", full=full)
    assert (vouched["ok"], vouched["records"], vouched["head_seq"], vouched["first_bad_seq"],
            vouched["log_last_seq"], vouched["kept_beyond_seq"]) == (
        False, LEFT, LEFT, LEFT + 1, LEFT, KEPT), vouched
    assert f"; sound up to record {LEFT}" in vouched["scope"]
    # Heads within the log: sound, and it says where the log ends all the same.
    within = await _verify(api, f"{LEFT}:{kept[LEFT]}", full=full)
    assert (within["ok"], within["records"], within["log_last_seq"],
            within["kept_beyond_seq"]) == (True, LEFT, LEFT, None)


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "homecare.cli", "verify-log", "--data-dir",
                           str(data_dir), *args], capture_output=True, text=True, timeout=120,
                          check=False)


async def test_verify_log_and_the_api_answer_a_head_beyond_the_log_alike(
        api: Harness, tmp_path: Path) -> None:
    kept = cut(tmp_path / "servicelog.sqlite3", api.ctx.service_log)
    head = f"{KEPT}:{kept[KEPT]}"
    answer = await _verify(api, head, full=True)
    printed = _cli(tmp_path, "--head", head, "--json")
    assert printed.returncode == 1, printed.stderr
    cli = json.loads(printed.stdout)
    for key in ("ok", "records", "head_seq", "checked", "from_seq", "first_bad_seq",
                "suspect_from", "suspect_to", "log_last_seq", "kept_beyond_seq", "error"):
        assert cli[key] == answer[key], key
    text = _cli(tmp_path, "--head", head)
    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert f"the log ends at record {LEFT}; a kept head is for record {KEPT}, beyond its end "\
           f"({LEFT} recomputed from record 1)" in lines, lines
    assert "no record is known sound" in lines
