"""Time-series back ends behind one tiny interface: ``write(body)``, ``ping()``, ``close()``.

* ``v1``: the InfluxDB 1.x ``/write`` API (also spoken by VictoriaMetrics), over httpx.
* ``v2``: the InfluxDB 2.x ``/api/v2/write`` API through ``influxdb-client``'s synchronous write
  call. Its batching ``WriteApi`` is deliberately not used: it has lost data on close and drops
  a batch after its retries run out; batching, retry and spooling are ours.

Errors become :class:`RetryableWriteError` (keep the data, retry later),
:class:`RejectedWriteError` (the database refuses these points; HTTP 400/413) or
:class:`CredentialsRefused` (HTTP 401/403: the token or user is wrong; a configuration error,
said at once, retried slowly) at this boundary. Blocking client calls (v2) run on a thread of
the writer's own, never the default pool.
"""

from __future__ import annotations

import asyncio
import gzip
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import httpx

from gateway.config import Settings
from gateway.errors import CredentialsRefused, RejectedWriteError, RetryableWriteError


class TimeSeriesWriter(Protocol):
    name: str

    async def write(self, body: bytes) -> None:
        """Write line protocol with millisecond timestamps."""

    async def ping(self) -> bool:
        """Whether the database answers."""

    async def close(self) -> None: ...


def _classify(status: int, text: str, retry_after: str | None = None) -> Exception:
    message = f"HTTP {status}: {text[:300]}"
    if status in (400, 413, 422):
        return RejectedWriteError(message, status=status)
    if status in (401, 403):
        return CredentialsRefused(f"{message} (the database refused the gateway's credentials: "
                                  "check HOMECARE_INFLUX_TOKEN, or _USERNAME/_PASSWORD for v1, "
                                  "and its rights on the bucket/db)", status=status)
    delay = None
    if retry_after is not None:
        try:
            delay = float(retry_after)
        except ValueError:
            delay = None
    return RetryableWriteError(message, status=status, retry_after=delay)


class InfluxV1Writer:
    """InfluxDB 1.x ``/write`` (db, retention policy, user/password)."""

    name = "influxdb-v1"

    def __init__(self, *, url: str, db: str, rp: str | None = None, username: str | None = None,
                 password: str | None = None, timeout_s: float = 10.0, gzip_body: bool = True
                 ) -> None:
        self._params = {"db": db, "precision": "ms"}
        if rp:
            self._params["rp"] = rp
        self._gzip = gzip_body
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.AsyncClient(base_url=url, timeout=timeout_s, auth=auth)

    async def write(self, body: bytes) -> None:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self._gzip:
            body = await asyncio.to_thread(gzip.compress, body, 1)
            headers["Content-Encoding"] = "gzip"
        try:
            response = await self._client.post("/write", params=self._params, content=body,
                                                headers=headers)
        except httpx.HTTPError as exc:
            raise RetryableWriteError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise _classify(response.status_code, response.text,
                            response.headers.get("Retry-After"))

    async def ping(self) -> bool:
        try:
            response = await self._client.get("/ping", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code < 300

    async def close(self) -> None:
        await self._client.aclose()


class InfluxV2Writer:
    """InfluxDB 2.x ``/api/v2/write`` (org, bucket, token) via ``influxdb-client``."""

    name = "influxdb-v2"

    def __init__(self, *, url: str, org: str, bucket: str, token: str | None,
                 timeout_s: float = 10.0, gzip_body: bool = True) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._org = org
        self._bucket = bucket
        self._client = InfluxDBClient(url=url, token=token or "", org=org,
                                      timeout=int(timeout_s * 1000), enable_gzip=gzip_body,
                                      retries=False)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._url = url
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tsdb-write")

    def _write_blocking(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._write_api.write(bucket=self._bucket, org=self._org, record=body,
                                  write_precision=WritePrecision.MS)  # type: ignore[arg-type]
        except ApiException as exc:
            headers: dict[str, str] = dict(exc.headers or {})
            raise _classify(int(exc.status or 0), str(exc.body or exc.reason),
                            headers.get("Retry-After")) from exc
        except (Urllib3Error, OSError) as exc:
            raise RetryableWriteError(f"{type(exc).__name__}: {exc}") from exc

    async def write(self, body: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._write_blocking,
                                                         body)

    async def ping(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"{self._url}/ping")
        except httpx.HTTPError:
            return False
        return response.status_code < 300

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._client.close)
        self._thread.shutdown(wait=False)


def writer_from_settings(settings: Settings) -> TimeSeriesWriter | None:
    """The configured back end, or ``None`` when no database is configured."""
    if settings.influx_url is None:
        return None
    if settings.influx_api == "v1":
        return InfluxV1Writer(
            url=settings.influx_url, db=settings.influx_db, rp=settings.influx_rp,
            username=settings.influx_username, password=settings.secret("influx_password"),
            timeout_s=settings.influx_timeout_s, gzip_body=settings.influx_gzip_enabled)
    return InfluxV2Writer(
        url=settings.influx_url, org=settings.influx_org, bucket=settings.influx_bucket,
        token=settings.secret("influx_token"), timeout_s=settings.influx_timeout_s,
        gzip_body=settings.influx_gzip_enabled)
