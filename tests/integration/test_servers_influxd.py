"""The ``influxd`` fixture is a real InfluxDB 1.x: line protocol in, InfluxQL out."""

from __future__ import annotations

import httpx

from tests.servers import Influxd


def test_influxd_v1_write_is_read_back_by_query(influxd: Influxd) -> None:
    influxd.create_database("homecare")
    influxd.write(
        "homecare",
        "vitals,site=site-01,bed=bed-0007 heart_rate=68,breathing_rate=15.5,in_bed=true "
        "1763884800000\n"
        "vitals,site=site-01,bed=bed-0007 heart_rate=70,in_bed=true 1763884801000\n",
    )
    rows = influxd.query("homecare", 'SELECT * FROM vitals WHERE bed = \'bed-0007\'')
    assert [(r["time"], r["heart_rate"], r["in_bed"]) for r in rows] == [
        (1763884800000, 68.0, True), (1763884801000, 70.0, True)]
    assert rows[0]["breathing_rate"] == 15.5
    assert rows[1]["breathing_rate"] is None


def test_influxd_overwrites_a_point_with_the_same_series_and_time(influxd: Influxd) -> None:
    influxd.create_database("dups")
    line = "audio,site=s,bed=b level_db=40.5 1763884800000\n"
    influxd.write("dups", line + line)
    influxd.write("dups", "audio,site=s,bed=b level_db=41.0 1763884800000\n")
    rows = influxd.query("dups", "SELECT level_db FROM audio")
    assert [(r["time"], r["level_db"]) for r in rows] == [(1763884800000, 41.0)]


def test_influxd_group_by_tags_are_in_rows(influxd: Influxd) -> None:
    influxd.create_database("tags")
    influxd.write("tags", "motion,bed=a v=1i 1000\nmotion,bed=b v=2i 1000\n")
    rows = influxd.query("tags", "SELECT sum(v) FROM motion GROUP BY bed")
    assert sorted((r["bed"], r["sum"]) for r in rows) == [("a", 1), ("b", 2)]


def test_influxd_listens_only_on_loopback_and_survives_restart(influxd: Influxd) -> None:
    influxd.create_database("keep")
    influxd.write("keep", "button,bed=b press=1i 1763884800000\n")
    influxd.restart()
    rows = influxd.query("keep", "SELECT press FROM button")
    assert [(r["time"], r["press"]) for r in rows] == [(1763884800000, 1)]
    assert httpx.get(f"{influxd.url}/ping", timeout=5).status_code == 204
    assert influxd.rpc_port != influxd.port
