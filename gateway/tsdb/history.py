"""Bed metric history read from the time-series database, for the API's charts.

* v1: InfluxQL through ``/query`` over httpx (InfluxDB 1.x; the ``db``/``rp`` the gateway
  writes to);
* v2: Flux through ``influxdb-client``'s query API (InfluxDB 2.x; org, bucket, token).

Long ranges are downsampled in the database to at most ``max_points`` windows (mean of the
numbers; last value of the booleans). Failures become :class:`HistoryUnavailable` (the database
cannot be reached: 503) or :class:`HistoryFailed` (it answered with an error: 502; 401/403 say
that the credentials are refused) here, at the boundary.

Bounded and timed out (:class:`BoundedHistory`, what :func:`reader_from_settings` returns): at
most ``history_max_concurrent`` queries run at once, on threads of their own (v2), never the
default pool that the rest of the API uses; ``history_max_waiting`` more may wait, any further
one is refused at once (:class:`HistoryBusy`, 503 with ``Retry-After``); a query not answered
within ``history_timeout_s`` is abandoned (:class:`HistoryTimeout`, 504). A slow database then
costs a chart, never an emergency call (the gateway's alert and ingest commits have threads of
their own, see :mod:`gateway.runtime`).
"""


from __future__ import annotations

import asyncio
import datetime as dt
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import httpx
from prometheus_client import CollectorRegistry

from alerts.errors import HistoryFailed, HistoryUnavailable
from alerts.history import BoundedHistory, HistoryReader
from gateway.config import Settings

FIELDS: Final = {
    "heart_rate": ("vitals", False), "breathing_rate": ("vitals", False),
    "in_bed": ("vitals", True), "presence": ("infrared", True),
    "motion": ("infrared", False), "level_db": ("audio", False),
}
"""metric -> (measurement, is boolean): see ``gateway/tsdb/lineprotocol.py``."""

MIN_WINDOW_MS: Final = 1000


def window_ms(since: int, until: int, max_points: int) -> int:
    return max(MIN_WINDOW_MS, math.ceil(max(until - since, 1) / max(max_points, 1)))


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql(site: str, bed: str, metric: str, *, since: int, until: int, max_points: int,
             rp: str | None = None) -> str:
    measurement, boolean = FIELDS[metric]
    source = f"{_ident(rp)}.{_ident(measurement)}" if rp else _ident(measurement)
    fn = "last" if boolean else "mean"
    return (f"SELECT {fn}({_ident(metric)}) FROM {source}"
            f" WHERE \"site\" = {_literal(site)} AND \"bed\" = {_literal(bed)}"
            f" AND time >= {since}ms AND time < {until}ms"
            f" GROUP BY time({window_ms(since, until, max_points)}ms) fill(none)")


def _rfc3339(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _flux_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def flux(bucket: str, site: str, bed: str, metric: str, *, since: int, until: int,
         max_points: int) -> str:
    measurement, boolean = FIELDS[metric]
    fn = "last" if boolean else "mean"
    every = window_ms(since, until, max_points)
    return (f"from(bucket: {_flux_string(bucket)})\n"
            f"  |> range(start: {_rfc3339(since)}, stop: {_rfc3339(until)})\n"
            f"  |> filter(fn: (r) => r._measurement == {_flux_string(measurement)}"
            f" and r._field == {_flux_string(metric)}"
            f" and r.site == {_flux_string(site)} and r.bed == {_flux_string(bed)})\n"
            f"  |> aggregateWindow(every: {every}ms, fn: {fn}, createEmpty: false,"
            f" timeSrc: \"_start\")\n"
            f"  |> keep(columns: [\"_time\", \"_value\"])")


def _merge(points: list[tuple[int, float]], max_points: int) -> list[tuple[int, float]]:
    points.sort()
    return points[:max_points]


class InfluxV1History:
    name = "influxdb-v1"

    def __init__(self, *, url: str, db: str, rp: str | None = None,
                 username: str | None = None, password: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.db = db
        self.rp = rp
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout_s, auth=auth)

    async def series(self, site: str, bed: str, metric: str, *, since: int, until: int,
                     max_points: int) -> list[tuple[int, float]]:
        query = influxql(site, bed, metric, since=since, until=until, max_points=max_points,
                         rp=self.rp)
        try:
            response = await self._client.get(
                "/query", params={"db": self.db, "q": query, "epoch": "ms"})
        except httpx.HTTPError as exc:
            raise HistoryUnavailable(f"time-series database unreachable: "
                                     f"{type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise HistoryFailed(_answered(response.status_code, response.text))
        try:
            body = response.json()
        except ValueError as exc:
            raise HistoryFailed("time-series database answered with invalid JSON") from exc
        points: list[tuple[int, float]] = []
        for result in body.get("results", []) if isinstance(body, dict) else []:
            if "error" in result:
                raise HistoryFailed(f"time-series database: {str(result['error'])[:200]}")
            for series in result.get("series", []):
                for row in series.get("values", []):
                    value = _number(row[1]) if len(row) > 1 else None
                    if value is not None and isinstance(row[0], int):
                        points.append((row[0], value))
        return _merge(points, max_points)

    async def close(self) -> None:
        await self._client.aclose()


class InfluxV2History:
    name = "influxdb-v2"

    def __init__(self, *, url: str, org: str, bucket: str, token: str | None,
                 timeout_s: float = 10.0, max_threads: int = 4) -> None:
        """``max_threads``: the blocking client's own threads (the default pool is never
        used); :class:`BoundedHistory` keeps the number of queries within it."""
        from influxdb_client.client.influxdb_client import InfluxDBClient

        self.org = org
        self.bucket = bucket
        self._client = InfluxDBClient(url=url, token=token or "", org=org,
                                      timeout=int(timeout_s * 1000), retries=False)
        self._threads = ThreadPoolExecutor(max_threads, thread_name_prefix="history")

    def _query(self, query: str) -> list[tuple[int, float]]:
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            tables = self._client.query_api().query(query, org=self.org)
        except ApiException as exc:
            raise HistoryFailed(_answered(int(exc.status or 0), str(exc.body or exc.reason))
                                ) from exc
        except (Urllib3Error, OSError) as exc:
            raise HistoryUnavailable(f"time-series database unreachable: "
                                     f"{type(exc).__name__}") from exc
        points: list[tuple[int, float]] = []
        for table in tables:
            for record in table.records:
                moment = record.values.get("_time")
                value = _number(record.values.get("_value"))
                if isinstance(moment, dt.datetime) and value is not None:
                    points.append((int(moment.timestamp() * 1000), value))
        return points

    async def series(self, site: str, bed: str, metric: str, *, since: int, until: int,
                     max_points: int) -> list[tuple[int, float]]:
        query = flux(self.bucket, site, bed, metric, since=since, until=until,
                     max_points=max_points)
        loop = asyncio.get_running_loop()
        return _merge(await loop.run_in_executor(self._threads, self._query, query), max_points)

    async def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._client.close)


def _answered(status: int, text: str) -> str:
    if status in (401, 403):
        return (f"time-series database refused the gateway's credentials (HTTP {status}): "
                "check HOMECARE_INFLUX_TOKEN (v1: _USERNAME/_PASSWORD) and its read rights")
    return f"time-series database answered HTTP {status}: {text[:200]}"


def reader_from_settings(settings: Settings, *, metrics: CollectorRegistry | None = None
                         ) -> BoundedHistory | None:
    """The configured database's reader, bounded and timed out as the ``history_*`` settings
    say, or ``None`` when no database is configured. ``metrics``: register its metrics
    there."""
    if settings.influx_url is None:
        return None
    # The client's own time-out matches, so a thread whose query was abandoned frees itself.
    timeout_s = settings.history_timeout_s
    reader: HistoryReader
    if settings.influx_api == "v1":
        reader = InfluxV1History(url=settings.influx_url, db=settings.influx_db,
                                 rp=settings.influx_rp, username=settings.influx_username,
                                 password=settings.secret("influx_password"),
                                 timeout_s=timeout_s)
    else:
        reader = InfluxV2History(url=settings.influx_url, org=settings.influx_org,
                                 bucket=settings.influx_bucket,
                                 token=settings.secret("influx_token"), timeout_s=timeout_s,
                                 max_threads=settings.history_max_concurrent)
    return BoundedHistory(reader, max_concurrent=settings.history_max_concurrent,
                          max_waiting=settings.history_max_waiting, timeout_s=timeout_s,
                          metrics=metrics)
