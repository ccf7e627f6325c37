"""Gateway settings: a TOML file (``--config``) overridden by ``HOMECARE_*`` environment variables.

Every setting has a flat name (``mqtt_url``) that is also its environment variable
(``HOMECARE_MQTT_URL``). In the TOML file a setting may be written flat (``mqtt_url = ...``)
or in a section (``[mqtt]`` then ``url = ...``). Secrets (``influx_token``, ``mqtt_password``)
may instead be read from a file with the ``*_file`` setting, so they never sit in the config.
Bad configuration fails at start with a message naming the setting.

The reference of every setting is :class:`Settings` below; ``deploy/gateway.example.toml`` is
a commented sample.
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from devices.broker import BrokerUrl
from devices.topics import SUBSCRIPTION
from gateway.errors import ConfigError

ENV_PREFIX = "HOMECARE_"


class Settings(BaseSettings):
    """Every gateway setting, with its default. Environment: ``HOMECARE_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # --- MQTT ingest --------------------------------------------------------------------------
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    """Broker URL: ``mqtt://[user:pass@]host[:port]``; ``mqtts://`` for TLS (port 8883)."""
    mqtt_client_id: str = "homecare-gateway"
    """Fixed client id: the broker keeps this id's persistent session while the gateway is away."""
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    mqtt_session_expiry_s: int = Field(default=7 * 86_400, ge=60)
    """MQTT 5 session expiry: how long the broker queues messages while the gateway is down."""
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_topic: str = SUBSCRIPTION
    """Subscription; use ``$share/<group>/homecare/v1/#`` to share load between gateways."""
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_password_file: Path | None = None
    mqtt_tls_ca_file: Path | None = None
    mqtt_tls_cert_file: Path | None = None
    mqtt_tls_key_file: Path | None = None
    mqtt_tls_insecure: bool = False
    """Skip broker certificate host-name checks (tests only)."""
    mqtt_reconnect_max_s: float = Field(default=30.0, gt=0)

    # --- time-series database -----------------------------------------------------------------
    influx_url: str | None = None
    """InfluxDB (or compatible) base URL; unset keeps points only in the local spool."""
    influx_api: Literal["v1", "v2"] = "v2"
    influx_token: str | None = None
    influx_token_file: Path | None = None
    influx_org: str = "homecare"
    influx_bucket: str = "homecare"
    influx_db: str = "homecare"
    influx_rp: str | None = None
    influx_username: str | None = None
    influx_password: str | None = None
    influx_password_file: Path | None = None
    influx_timeout_s: float = Field(default=10.0, gt=0)
    influx_auth_retry_s: float = Field(default=60.0, gt=0, le=3600)
    """When the database refuses the credentials (HTTP 401/403, a configuration error, said at
    once in the log, on ``/readyz`` and in ``homecare_db_credentials_refused``), retry writing
    only this often; the spool keeps the points meanwhile."""
    history_max_concurrent: int = Field(default=4, ge=1, le=64)
    """Bed history queries to the database (charts beyond the 24 h kept in memory) run at most
    this many at a time, on threads of their own: a slow database never holds up the emergency
    path, the ingest or the rest of the API."""
    history_max_waiting: int = Field(default=8, ge=0, le=1000)
    """History queries allowed to wait for one of those; more are refused at once (HTTP 503,
    ``history_busy``, with ``Retry-After``)."""
    history_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """A history query not answered within this time (waiting included) is abandoned (HTTP
    504, ``history_timeout``)."""
    influx_gzip: bool | None = None
    """Compress write bodies. Unset: on for a remote database, off on loopback, where it only
    costs CPU (influxdb-client compresses at level 9: ~20% of the gateway's CPU in the bench)."""

    # --- pipeline, batching, spool ------------------------------------------------------------
    data_dir: Path = Path("data")
    """Spool, dead letters, alerts and service logs live here."""
    batch_max_points: int = Field(default=5000, ge=1)
    """Flush a batch to the spool once it holds this many points..."""
    batch_max_age_ms: int = Field(default=100, ge=1, le=60_000)
    """...or once its oldest message waited this long, whichever comes first."""
    write_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Largest uncompressed line-protocol body per database request."""
    spool_max_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    """Bound on the on-disk spool of points not yet in the database."""
    spool_overflow: Literal["drop_oldest", "block"] = "drop_oldest"
    """When the spool is full: drop the oldest spooled points (counted, logged) so intake and
    alerts go on, or block intake (the broker then queues, up to its own limits)."""
    spool_segment_bytes: int = Field(default=16 * 1024 * 1024, ge=4096)
    spool_fsync: bool = True
    """fsync the spool before acknowledging to the broker; off only trades durability for speed."""
    dedup_window: int = Field(default=64, ge=1, le=65_536)
    """How many recent sequence numbers per device are remembered to drop duplicates."""
    clock_window_s: int = Field(default=7 * 86_400, ge=60, le=10 * 366 * 86_400)
    """How far behind receipt time a device time (message ``ts``, sample ``t``) is stored as
    sent; up to 15 min ahead is too. Outside, a point is stored at receipt time with the
    device time in a ``device_ts`` field, and its device is flagged as having a wrong clock.
    Default 7 days: as long as the broker queues messages for an absent gateway (a backlog
    is stored as measured), well inside VictoriaMetrics' default 1-month retention, whose
    older points it discards silently. Keep it below the database's retention."""
    inbox_max_messages: int = Field(default=50_000, ge=100)
    """Messages received but not yet processed; when full, the gateway stops reading (pushback)."""
    max_payload_bytes: int = Field(default=64 * 1024, ge=256)

    # --- alerts -------------------------------------------------------------------------------
    # An unacknowledged alert is escalated (re-notified, to a wider circle each step) on a
    # schedule per severity: the first step ``alert_escalation_<severity>_s[0]`` seconds after
    # the alert opened, each further listed step that long after the previous one, then one
    # more every ``alert_repeat_<severity>_s`` (0: no more). Lists are comma-separated seconds in
    # the environment (``HOMECARE_ALERT_ESCALATION_CRITICAL_S=60,180``) or TOML arrays
    # (``[alert] escalation_critical_s = [60, 180]``); empty: never escalated. Acknowledging
    # stops escalation; timers survive restarts (overdue steps are taken at start).
    alert_escalation_critical_s: Annotated[tuple[float, ...], NoDecode] = (60.0, 180.0)
    """Critical (emergency call, fall): 60 s, then 180 s later..."""
    alert_repeat_critical_s: float = Field(default=300.0, ge=0)
    """...then every 300 s until acknowledged."""
    alert_escalation_high_s: Annotated[tuple[float, ...], NoDecode] = (300.0,)
    alert_repeat_high_s: float = Field(default=600.0, ge=0)
    alert_escalation_medium_s: Annotated[tuple[float, ...], NoDecode] = (1800.0,)
    alert_repeat_medium_s: float = Field(default=0.0, ge=0)
    alert_escalation_low_s: Annotated[tuple[float, ...], NoDecode] = ()
    alert_repeat_low_s: float = Field(default=0.0, ge=0)
    alert_cancel_window_s: float = Field(default=60.0, ge=0, le=3600)
    """A ``cancel`` on the emergency button within this time of the press downgrades the call
    from critical to high (it stays open until acknowledged); a later cancel is only recorded."""
    alert_fall_no_motion_s: float = Field(default=300.0, gt=0, le=86_400)
    """After ``fall_detected``, no infrared movement for this long raises urgency (evidence and
    one escalation step at once)."""
    alert_clear_grace_s: float = Field(default=120.0, ge=0, le=86_400)
    """A non-critical alert whose condition cleared (device back online, battery replaced,
    vital signs in range) is resolved by the system after staying clear this long. Critical
    alerts, falls and emergency calls are never resolved by the system."""
    alert_update_interval_s: float = Field(default=60.0, ge=0, le=3600)
    """A condition that keeps being reported updates its alert in memory at once, but is
    written to the audit log at most this often (severity changes are written at once)."""

    # --- registry, time, API ------------------------------------------------------------------
    registry_file: Path | None = None
    timezone: str | None = None
    """IANA zone for day/night logic; per-site override in the registry; default: machine's zone."""
    api_addr: str = "127.0.0.1:8080"
    api_key: str | None = Field(default=None, min_length=16, max_length=512)
    """Bootstrap API key (role admin, acting as ``bootstrap``), for a fresh gateway before any
    key exists; at least 16 characters. Create named keys with ``homecare keys create``."""
    api_key_file: Path | None = None
    """...or read it from this file."""
    # --- upstream delivery (gateway/upstream/) ----------------------------------------------
    upstream_url: str | None = None
    """The city platform's endpoint for alert changes and service-log records (POST, JSON,
    signed); none: nothing goes upstream."""
    upstream_secret: str | None = Field(default=None, min_length=16, max_length=512)
    """Shared secret that signs every upstream request (HMAC-SHA256); needed with the URL."""
    upstream_secret_file: Path | None = None
    """...or read it from this file."""
    upstream_source: str = Field(default="homecare-gateway", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """This gateway's name in upstream idempotency keys (unique per gateway of a city)."""
    upstream_timeout_s: float = Field(default=10.0, gt=0, le=300)

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the TOML file (passed as init kwargs by ``load``).
        return (env_settings, init_settings)

    @field_validator("alert_escalation_critical_s", "alert_escalation_high_s",
                     "alert_escalation_medium_s", "alert_escalation_low_s", mode="before")
    @classmethod
    def _seconds_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @field_validator("alert_escalation_critical_s", "alert_escalation_high_s",
                     "alert_escalation_medium_s", "alert_escalation_low_s")
    @classmethod
    def _positive_steps(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(step <= 0 for step in value):
            raise ValueError("every escalation step must be a positive number of seconds")
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        BrokerUrl.parse(value)
        return value

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected http(s)://host:port")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value or None

    @field_validator("upstream_url")
    @classmethod
    def _upstream_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _upstream_secret(self) -> Settings:
        if self.upstream_url and not (self.upstream_secret or self.upstream_secret_file):
            raise ValueError("upstream_url needs upstream_secret or upstream_secret_file "
                             "(HOMECARE_UPSTREAM_SECRET/_FILE) to sign requests")
        return self

    @field_validator("api_addr")
    @classmethod
    def _api_addr(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        return value

    @model_validator(mode="after")
    def _secret_files(self) -> Settings:
        for name in ("mqtt_password_file", "influx_token_file", "influx_password_file",
                     "api_key_file", "upstream_secret_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    # --- derived ------------------------------------------------------------------------------

    @property
    def mqtt(self) -> BrokerUrl:
        return BrokerUrl.parse(self.mqtt_url)

    def secret(self, name: str) -> str | None:
        """A secret from its setting, else from its ``<name>_file`` setting."""
        value: str | None = getattr(self, name)
        path: Path | None = getattr(self, f"{name}_file", None)
        if value is None and path is not None:
            value = Path(path).read_text(encoding="utf-8").strip()
        return value

    @property
    def influx_gzip_enabled(self) -> bool:
        if self.influx_gzip is not None:
            return self.influx_gzip
        host = urlsplit(self.influx_url or "").hostname or ""
        return host not in ("127.0.0.1", "localhost", "::1")

    @property
    def api_host_port(self) -> tuple[str, int]:
        host, _, port = self.api_addr.rpartition(":")
        return host.strip("[]"), int(port)


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = value
    return flat


def load(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``path`` (TOML) and the environment; ``overrides`` win over both."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = _flatten(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    try:
        settings = Settings(**values)
        if overrides:
            settings = settings.model_copy(update=overrides)
            Settings.model_validate(settings.model_dump())
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    return settings


def _explain(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        env = f"{ENV_PREFIX}{name.upper()}" if name != "settings" else ""
        where = f"{name} ({env})" if env else name
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def from_environment() -> dict[str, str]:
    """The ``HOMECARE_*`` variables set now (for diagnostics; secrets masked)."""
    shown = {}
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX):
            secret = any(s in key for s in ("TOKEN", "PASSWORD", "KEY", "SECRET"))
            shown[key] = "***" if secret else value
    return shown
