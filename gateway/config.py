"""Gateway settings: a TOML file (``--config``) overridden by ``HOMECARE_*`` environment variables.

Every setting has a flat name (``mqtt_url``) that is also its environment variable
(``HOMECARE_MQTT_URL``). In the TOML file a setting may be written flat (``mqtt_url = ...``)
or in a section (``[mqtt]`` then ``url = ...``). Secrets (``influx_token``, ``mqtt_password``)
may instead be read from a file with the ``*_file`` setting, so they never sit in the config.
Bad configuration fails at start with a message naming the setting.

The reference of every setting is :class:`Settings` below: each field carries its default, a
``description`` and, where it has one, its unit (``json_schema_extra={"unit": ...}``; ``s``,
``ms``, ``bytes`` or what is counted). The commented sample ``deploy/gateway.example.toml`` and
the settings table in README.md are generated from them by :mod:`gateway.settings_reference`
(``python -m gateway.settings_reference --write``); a test fails when they drift. This
module is over 400 lines: that documentation is most of it, and this is its one place.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from alerts import (
    DEFAULT_CATALOGUE,
    DEFAULT_CHECKLISTS,
    DEFAULT_OUTCOMES,
    DEFAULT_PAGING_TOPIC,
    DEFAULT_SHIFTS,
    AlertType,
    Catalogue,
    ReportSettings,
    ResponsePlan,
    bootstrap_key_problem,
    institution_of,
)
from devices.broker import BrokerUrl
from devices.topics import SUBSCRIPTION
from gateway.errors import ConfigError

ENV_PREFIX = "HOMECARE_"
UPSTREAM_FAMILY_ALERT_TYPES: Final = (
    "emergency_button", "fall", "inactivity", "night_bed_exit", "abnormal_sound", "vital_signs",
    "device_offline", "low_battery")
"""The alert types a family webhook receives unless ``upstream_family_alert_types`` says
otherwise."""
CHECKLIST_SETTINGS: Final[Mapping[str, str]] = {
    str(alert_type): f"alert_checklist_{alert_type}" for alert_type in DEFAULT_CHECKLISTS}
"""The setting that holds each alert type's response checklist (types without one have
none)."""


def topic_filter_problem(topic: str) -> str | None:
    """What makes ``topic`` no valid MQTT topic filter, or None.

    >>> topic_filter_problem("homecare/v1/site-01/#") is None
    True
    >>> topic_filter_problem("homecare/v1/site-#")
    "a '#' or '+' must be a whole level, '#' the last"
    """
    if not topic or len(topic.encode()) > 65_535 or "\0" in topic:
        return "empty, too long, or with a NUL character"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or (
                "+" in level and level != "+"):
            return "a '#' or '+' must be a whole level, '#' the last"
    return None


class Settings(BaseSettings):
    """Every gateway setting, with its default, description and unit. Environment:
    ``HOMECARE_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # --- MQTT ingest --------------------------------------------------------------------------
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="Broker URL: `mqtt://[user:pass@]host[:port]`; `mqtts://` for TLS (default "
        "port 8883). Prefer `mqtt_username` and a password from the environment or a file to "
        "credentials in the URL.")
    mqtt_client_id: str = Field(
        default="homecare-gateway",
        description="Fixed client id: the broker keeps this id's persistent session (and queues "
        "QoS 1 messages for it) while the gateway is away. Give each gateway its own id.")
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description="MQTT protocol version, `5` or `3.1.1`. With `3.1.1` there is no session "
        "expiry: how long the broker keeps the session is up to its own configuration.")
    mqtt_session_expiry_s: int = Field(
        default=7 * 86_400, ge=60, json_schema_extra={"unit": "s"},
        description="MQTT 5 session expiry: how long the broker keeps the session, and queues "
        "messages for it, while the gateway is down.")
    mqtt_keepalive_s: int = Field(
        default=30, ge=5, le=3600, json_schema_extra={"unit": "s"},
        description="MQTT keep-alive: the gateway pings the broker every half of this, and takes "
        "a broker silent for 1.5 times this long (while reading is not paused) as lost and "
        "reconnects.")
    mqtt_topic: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(SUBSCRIPTION,),
        description="Topic filters subscribed (QoS 1): one, or several (a TOML array, or "
        "comma-separated in the environment), e.g. `homecare/v1/site-01/#,homecare/v1/site-02/#`"
        " for a gateway that serves those two sites. Several gateways on one broker split the "
        "sites between them, each with its own `mqtt_client_id` (README, \"More than one "
        "gateway\"); never with `$share/...`, which hands one bed's messages to different "
        "gateways.")
    mqtt_username: str | None = Field(
        default=None,
        description="User name for the broker; unset: the one in `mqtt_url`, if any.")
    mqtt_password: str | None = Field(
        default=None,
        description="Password for the broker; unset: `mqtt_password_file`, else the one in "
        "`mqtt_url`, if any. A secret: give it in the environment or as a file, never in the "
        "config file.")
    mqtt_password_file: Path | None = Field(
        default=None,
        description="File holding `mqtt_password` (surrounding white space stripped), read when "
        "that is unset; it must exist at start.")
    mqtt_tls_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) that verify the broker with `mqtts://`; unset: the "
        "system's trust store.")
    mqtt_tls_cert_file: Path | None = Field(
        default=None,
        description="Client certificate (PEM), for a broker that authenticates clients by "
        "certificate (`mqtts://`).")
    mqtt_tls_key_file: Path | None = Field(
        default=None,
        description="Private key (PEM) of `mqtt_tls_cert_file`; unset: the key is in that file.")
    mqtt_tls_insecure: bool = Field(
        default=False,
        description="Verify neither the broker's certificate nor its host name (tests only).")
    mqtt_reconnect_max_s: float = Field(
        default=30.0, gt=0, json_schema_extra={"unit": "s"},
        description="Longest wait between reconnection attempts: the wait starts at 0.5 s and "
        "doubles after each failure up to this, with +/-50% jitter.")
    mqtt_urgent_session: bool = Field(
        default=True,
        description="A second MQTT session (client id `<mqtt_client_id>-urgent`, persistent, "
        "QoS 1) subscribed only to the button and fall events of `mqtt_topic`, so the broker "
        "delivers an emergency call at once even while the main session works through a "
        "backlog. Each call still opens one alert and is stored once (the main session's copy "
        "is the one stored). Not used with a shared subscription (`$share/...`), whose broker "
        "could hand a call's two copies to two gateways.")
    mqtt_urgent_username: str | None = Field(
        default=None,
        description="User name of the urgent session; unset: the main session's (`mqtt_username`"
        ", else the one in `mqtt_url`). Set it (e.g. `gateway-urgent`, which `homecare acl` "
        "writes) on a broker that makes the user name the client id (`use_username_as_clientid`"
        ", as deploy/mosquitto/mosquitto.conf does): there the two sessions under one user would "
        "take over each other.")
    mqtt_urgent_password: str | None = Field(
        default=None,
        description="Password of `mqtt_urgent_username`; unset: `mqtt_urgent_password_file`, "
        "else the main session's password. A secret: give it in the environment or as a file, "
        "never in the config file.")
    mqtt_urgent_password_file: Path | None = Field(
        default=None,
        description="File holding `mqtt_urgent_password` (surrounding white space stripped), "
        "read when that is unset; it must exist at start.")

    # --- time-series database -----------------------------------------------------------------
    influx_url: str | None = Field(
        default=None,
        description="InfluxDB (or compatible, e.g. VictoriaMetrics) base URL, "
        "`http(s)://host:port`; unset keeps points only in the local spool.")
    influx_api: Literal["v1", "v2"] = Field(
        default="v2",
        description="`v2`: InfluxDB 2.x (`influx_org`, `influx_bucket`, `influx_token`); `v1`: "
        "InfluxDB 1.x or VictoriaMetrics (`influx_db`, `influx_rp`, `influx_username`, "
        "`influx_password`).")
    influx_token: str | None = Field(
        default=None,
        description="API token for `v2`; unset: `influx_token_file`, else none. A secret: give "
        "it in the environment or as a file, never in the config file.")
    influx_token_file: Path | None = Field(
        default=None,
        description="File holding `influx_token` (surrounding white space stripped), read when "
        "that is unset; it must exist at start.")
    influx_org: str = Field(default="homecare", description="Organization (`v2`).")
    influx_bucket: str = Field(default="homecare", description="Bucket points go to (`v2`).")
    influx_db: str = Field(default="homecare", description="Database points go to (`v1`).")
    influx_rp: str | None = Field(
        default=None, description="Retention policy (`v1`); unset: the database's default.")
    influx_username: str | None = Field(
        default=None, description="User name (`v1`); unset: no authentication.")
    influx_password: str | None = Field(
        default=None,
        description="Password (`v1`); unset: `influx_password_file`, else none. A secret: give "
        "it in the environment or as a file, never in the config file.")
    influx_password_file: Path | None = Field(
        default=None,
        description="File holding `influx_password` (surrounding white space stripped), read "
        "when that is unset; it must exist at start.")
    influx_timeout_s: float = Field(
        default=10.0, gt=0, json_schema_extra={"unit": "s"},
        description="Time-out of one write request to the database; a write that times out is "
        "retried with backoff, and the spool keeps the points meanwhile.")
    influx_auth_retry_s: float = Field(
        default=60.0, gt=0, le=3600, json_schema_extra={"unit": "s"},
        description="When the database refuses the credentials (HTTP 401/403, a configuration "
        "error, said at once in the log, on `/readyz` and in "
        "`homecare_db_credentials_refused`), retry writing only this often; the spool keeps "
        "the points meanwhile.")
    history_max_concurrent: int = Field(
        default=4, ge=1, le=64, json_schema_extra={"unit": "queries"},
        description="Bed history queries to the database (charts beyond the 24 h kept in "
        "memory) run at most this many at a time, on threads of their own: a slow database "
        "never holds up the emergency path, the ingest or the rest of the API.")
    history_max_waiting: int = Field(
        default=8, ge=0, le=1000, json_schema_extra={"unit": "queries"},
        description="History queries allowed to wait for one of those; more are refused at "
        "once (HTTP 503, `history_busy`, with `Retry-After`).")
    history_timeout_s: float = Field(
        default=10.0, gt=0, le=300, json_schema_extra={"unit": "s"},
        description="A history query not answered within this time (waiting included) is "
        "abandoned (HTTP 504, `history_timeout`).")
    influx_gzip: bool | None = Field(
        default=None,
        description="Compress write bodies. Unset: on for a remote database, off on loopback, "
        "where it only costs CPU (influxdb-client compresses at level 9: ~20% of the gateway's "
        "CPU in the bench).")

    # --- pipeline, batching, spool ------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Where the spool, dead letters, alerts and their audit log, the service "
        "log, API keys and the upstream outbox live. Put it on a disk that survives a reboot: "
        "everything acknowledged to the broker is here first.")
    batch_max_points: int = Field(
        default=5000, ge=1, json_schema_extra={"unit": "points"},
        description="Flush a batch to the spool once it holds this many points, or once "
        "`batch_max_age_ms` has passed, whichever comes first.")
    batch_max_age_ms: int = Field(
        default=100, ge=1, le=60_000, json_schema_extra={"unit": "ms"},
        description="Flush a batch to the spool once its oldest message waited this long, or "
        "once it holds `batch_max_points`, whichever comes first.")
    write_max_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, json_schema_extra={"unit": "bytes"},
        description="Largest uncompressed line-protocol body per database request; the spool "
        "is drained in requests up to this size.")
    spool_max_bytes: int = Field(
        default=2 * 1024**3, ge=1024 * 1024, json_schema_extra={"unit": "bytes"},
        description="Bound on the on-disk spool of points not yet in the database.")
    spool_overflow: Literal["drop_oldest", "block"] = Field(
        default="drop_oldest",
        description="When the spool is full: `drop_oldest` drops the oldest spooled points "
        "(counted, logged) so intake and alerts go on; `block` stops intake (the broker then "
        "queues, up to its own limits).")
    spool_segment_bytes: int = Field(
        default=16 * 1024 * 1024, ge=4096, json_schema_extra={"unit": "bytes"},
        description="Size of one spool segment file (at most `spool_max_bytes`); a segment is "
        "deleted once the database has taken all of it.")
    spool_fsync: bool = Field(
        default=True,
        description="fsync the spool before acknowledging to the broker; off only trades "
        "durability for speed.")
    dedup_window: int = Field(
        default=64, ge=1, le=65_536, json_schema_extra={"unit": "sequence numbers"},
        description="How many recent sequence numbers per device are remembered to drop "
        "duplicates.")
    detector_snapshot_interval_s: float = Field(
        default=300.0, ge=0, le=86_400, json_schema_extra={"unit": "s"},
        description="How often the detectors' learnt routines and running episodes are "
        "snapshotted to `data_dir/detectors.snapshot` (also at a clean shutdown, and when the "
        "detector journal has grown by 4 MiB) and restored at "
        "start, followed by the journal's input since: a crash loses no detector input, never "
        "an alert. 0: never snapshot, no journal, and every start learns from scratch.")
    detector_journal_max_bytes: int = Field(
        default=256 * 1024**2, ge=0, json_schema_extra={"unit": "bytes"},
        description="Bound on the detector journal (`data_dir/detectors.journal/`): every "
        "batch handed to the detectors since their last snapshot, written before it is "
        "acknowledged (not fsynced: a killed process loses nothing of it, a power loss its "
        "last seconds) and handed to them again at start, so a "
        "crash loses no detector input. A snapshot, taken whenever it grew by 4 MiB (about "
        "27,000 messages), empties it; should it fill anyway (snapshots failing), batches are "
        "not journaled until the next snapshot (logged). 0: no journal, a crash loses the "
        "detector input since the last snapshot.")
    detector_evaluate_interval_s: float = Field(
        default=60.0, ge=1, le=3_600, json_schema_extra={"unit": "s"},
        description="How often the detectors judge what they have taken in (silence, "
        "inactivity, night exits, sound, vital signs, batteries, visits), in message time. "
        "Button presses and falls never wait for it (immediate rules). Shorter finds a "
        "silent device or a still person up to this much sooner at the cost of CPU.")
    device_replacement_window_s: float = Field(
        default=7_200.0, ge=0, le=7 * 86_400, json_schema_extra={"unit": "s"},
        description="A device that announces `offline` (its own status or its last will) is "
        "a replacement under way for this long: one low `device_offline` note, resolved when a "
        "new device of the same kind on the bed speaks, raised to its usual severity if none "
        "has when it ends (a call button's last will stays high at once). A new device that "
        "arrived up to this long before the old one went counts as its replacement too.")
    unregistered_watched_beds: int = Field(
        default=1_000, ge=0, le=1_000_000, json_schema_extra={"unit": "beds"},
        description="Beds outside the registry the detectors watch at most (about 10 KB each), "
        "first come first watched; further ones are stored and their calls alerted, but not "
        "watched for silence or inactivity until the registry lists them.")
    unregistered_watched_devices: int = Field(
        default=4_000, ge=0, le=1_000_000, json_schema_extra={"unit": "devices"},
        description="Devices outside the registry the detectors watch at most (under 1 KB "
        "each), with the same rule.")
    first_sight_max_devices: int = Field(
        default=50_000, ge=1, le=10_000_000, json_schema_extra={"unit": "devices"},
        description="Devices registered on first sight (not in the registry file) remembered "
        "at most (about 1 KB each with 64-character site, bed and device ids, 50 MB at most; "
        "0.45 KB with short ids); past it the least recently seen is forgotten (counted in "
        "`homecare_devices_first_sight_evicted_total`), never a device the registry file "
        "lists. A forgotten device is registered again when it is seen again; its data is "
        "stored and its calls alerted all the same. A gateway without a registry file and "
        "more devices than this should list them (or raise it).")
    alert_storm_threshold: int = Field(
        default=10, ge=1, le=1_000_000, json_schema_extra={"unit": "alerts"},
        description="More non-emergency alerts of one type on one site than this within "
        "`alert_storm_window_s` are folded into one storm alert naming the beds (a site losing "
        "power, a fleet with wrong clocks). Button presses and falls are never folded.")
    alert_storm_window_s: float = Field(
        default=300.0, ge=1, le=86_400, json_schema_extra={"unit": "s"},
        description="The window of `alert_storm_threshold`.")
    clock_window_s: int = Field(
        default=7 * 86_400, ge=60, le=10 * 366 * 86_400, json_schema_extra={"unit": "s"},
        description="How far behind receipt time a device time (message `ts`, sample `t`) is "
        "stored as sent; up to 15 min ahead is too. Outside, a point is stored at receipt time "
        "with the device time in a `device_ts` field, and its device is flagged as having a "
        "wrong clock. Default 7 days: as long as the broker queues messages for an absent "
        "gateway (a backlog is stored as measured), well inside VictoriaMetrics' default "
        "1-month retention, whose older points it discards silently. Keep it below the "
        "database's retention.")
    inbox_max_messages: int = Field(
        default=50_000, ge=100, json_schema_extra={"unit": "messages"},
        description="Messages received but not yet processed; when full, the gateway stops "
        "reading (pushback: the broker keeps the rest).")
    inbox_max_bytes: int = Field(
        default=64 * 1024**2, ge=1024**2, json_schema_extra={"unit": "bytes"},
        description="Payload bytes received but not yet processed; past it the gateway stops "
        "reading the main session as when `inbox_max_messages` is reached (50,000 messages "
        "of 64 KiB would be 3.2 GB). Emergency calls still come on the urgent session.")
    live_state_max_bytes: int = Field(
        default=128 * 1024**2, ge=1024**2, json_schema_extra={"unit": "bytes"},
        description="Memory the live state behind the bed pages may take (each bed's devices "
        "and last 24 h of readings: about 106 KiB for a bed sending every reading all day, "
        "2.6 KiB for one heard once). Past it the least recently heard beds are forgotten, "
        "beds not in the registry first; a registered bed is never pushed out by an "
        "unregistered one. A forgotten bed shows its devices as `unknown` until it is heard "
        "again, and its charts come from the database. The default holds about 1,240 fully "
        "equipped beds (or 48,000 heard once) and costs up to 142 MB of RSS (measured: 1.11 "
        "times the setting), inside the gateway's 500 MB bound with room for the rest; a hub "
        "with more fully equipped beds should raise it, and its memory limit with it.")
    max_payload_bytes: int = Field(
        default=64 * 1024, ge=256, json_schema_extra={"unit": "bytes"},
        description="Largest payload accepted; larger ones are dead-lettered as `oversize` "
        "without being parsed.")
    device_bytes_per_second: float = Field(
        default=16 * 1024, ge=0, json_schema_extra={"unit": "bytes/s"},
        description="Payload bytes one device (its site, bed, kind and id) may send a second "
        "on average, after `device_burst_bytes`; beyond it its messages are dead-lettered as "
        "`device_over_budget` before they are decoded (counted, a log line a minute), so one "
        "device sending valid but enormous batches cannot fill the spool, the memory or the "
        "intake. Emergency button and fall events are never held to it. The simulated devices "
        "send under 10 bytes/s; a vital-signs sensor sending every second about 100. "
        "0: no limit.")
    device_burst_bytes: int = Field(
        default=64 * 1024**2, ge=64 * 1024, json_schema_extra={"unit": "bytes"},
        description="Payload bytes one device may send at once before "
        "`device_bytes_per_second` applies: a device's backlog after an outage (a day of a "
        "sample a second is about 9 MB) is taken whole.")
    dead_letter_max_bytes: int = Field(
        default=256 * 1024**2, ge=1024**2, json_schema_extra={"unit": "bytes"},
        description="Disk the dead-letter store may take, `data_dir/deadletters.sqlite3` with "
        "its `-wal` and `-shm` files together; past it the oldest dead letters are deleted "
        "(counted in `homecare_dead_letters_evicted_total`) and their space reused. A file "
        "over it at start (an older gateway's) is rebuilt to three quarters of it.")
    dead_letter_head_bytes: int = Field(
        default=1024, ge=0, le=64 * 1024, json_schema_extra={"unit": "bytes"},
        description="Bytes of a dead letter's payload kept; the whole payload's size and "
        "SHA-256 are always kept. `internal_error` and `undecodable` (a bug of ours) keep up "
        "to 64 KiB, to reproduce it.")
    dead_letter_source_bytes_per_second: float = Field(
        default=4096, ge=0, json_schema_extra={"unit": "bytes/s"},
        description="Dead letters one source (site/bed/device of the topic) may store per "
        "second on average (head, topic and detail); beyond it and "
        "`dead_letter_source_burst_bytes` they are counted "
        "(`homecare_dead_letters_shed_total`, a log line a minute) but not stored, so one "
        "flooding device cannot push the others' out. A publisher varying the ids in its "
        "topics (possible only behind a broker without the ACL of `homecare acl`) is a new "
        "source each time: bounded by `dead_letter_max_bytes` alone, it rotates older letters "
        "out. 0: no per-source limit.")
    dead_letter_source_burst_bytes: int = Field(
        default=256 * 1024, ge=1024, json_schema_extra={"unit": "bytes"},
        description="Dead letters one source may store at once before "
        "`dead_letter_source_bytes_per_second` applies.")

    # --- housekeeping (gateway/storage/housekeeping.py; README "Disk use and housekeeping") --
    housekeeping_interval_s: float = Field(
        default=3600.0, ge=0, le=7 * 86_400, json_schema_extra={"unit": "s"},
        description="How often the data directory is tidied (first a minute after start, at "
        "most): SQLite WAL files checkpointed, dead letters and used acknowledge links past "
        "their age deleted, old alert changes and key audit archived, free pages reclaimed; "
        "one `housekeeping.done` log line per run. 0: never.")
    housekeeping_dead_letter_max_age_s: float = Field(
        default=30 * 86_400.0, ge=0, json_schema_extra={"unit": "s"},
        description="Dead letters older than this are deleted (on top of "
        "`dead_letter_max_bytes`). 0: no age limit.")
    housekeeping_alert_changes_live_months: int = Field(
        default=13, ge=0, le=1200,
        description="Whole months of alert changes kept in `alerts.sqlite3` besides the "
        "current one; older months are archived to `data_dir/archive/alert-changes-YYYY-MM"
        ".jsonl.gz` (verifiable, kept) and their resolved alerts leave the live API. 0: never "
        "archived.")
    housekeeping_audit_live_months: int = Field(
        default=13, ge=0, le=1200,
        description="Whole months of the API key audit kept in `keys.sqlite3` besides the "
        "current one; older months are archived to `data_dir/archive/key-audit-YYYY-MM.jsonl"
        ".gz`. 0: never archived.")
    housekeeping_plans_live_months: int = Field(
        default=13, ge=0, le=1200,
        description="Whole months of planned visits (by their end) and of the service log's "
        "side tables (visits judged from the sensors, app check-ins refused) kept besides the "
        "current one; older months are archived to `data_dir/archive/plans-YYYY-MM.jsonl.gz`, "
        "`judged-visits-...` and `refused-visits-...`, then deleted (the supervision report of "
        "an archived month no longer sees its plans). 0: never archived.")
    housekeeping_ack_link_max_age_s: float = Field(
        default=90 * 86_400.0, ge=0, json_schema_extra={"unit": "s"},
        description="Records of used one-time acknowledge links older than this are deleted "
        "(never before the link itself expired, `notify_link_ttl_s`); the acknowledgement "
        "itself stays in the alert changes.")
    housekeeping_vacuum_free_share: float = Field(
        default=0.25, gt=0, le=1,
        description="A SQLite file off the emergency path whose free pages are at least this "
        "share of it is VACUUMed (given back to the file system) if no larger than "
        "`housekeeping_vacuum_max_bytes`; otherwise its free pages are reused by new rows.")
    housekeeping_vacuum_max_bytes: int = Field(
        default=64 * 1024**2, ge=0, json_schema_extra={"unit": "bytes"},
        description="The largest SQLite file VACUUMed (a VACUUM locks the file while it "
        "copies it).")

    # --- alerts -------------------------------------------------------------------------------
    # An unacknowledged alert is escalated (re-notified, to a wider circle each step) on a
    # schedule per severity: the first step ``alert_escalation_<severity>_s[0]`` seconds after
    # the alert opened, each further listed step that long after the previous one, then one
    # more every ``alert_repeat_<severity>_s`` (0: no more). Lists are comma-separated seconds in
    # the environment (``HOMECARE_ALERT_ESCALATION_CRITICAL_S=60,180``) or TOML arrays
    # (``[alert] escalation_critical_s = [60, 180]``); empty: never escalated. Acknowledging
    # stops escalation; timers survive restarts (overdue steps are taken at start).
    alert_escalation_critical_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default=(60.0, 180.0), json_schema_extra={"unit": "s"},
        description="Escalation steps of an unacknowledged critical alert (emergency call, "
        "fall): the first this long after the alert opened, each further one that long after "
        "the previous; empty: never escalated. In the environment: comma-separated (`60,180`).")
    alert_repeat_critical_s: float = Field(
        default=300.0, ge=0, json_schema_extra={"unit": "s"},
        description="After the last critical step, escalate again this often until "
        "acknowledged; 0: no more.")
    alert_escalation_high_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default=(300.0,), json_schema_extra={"unit": "s"},
        description="Escalation steps of an unacknowledged high alert (e.g. vital signs, night "
        "bed exit, inactivity, a cancelled call), as for critical.")
    alert_repeat_high_s: float = Field(
        default=600.0, ge=0, json_schema_extra={"unit": "s"},
        description="After the last high step, escalate again this often; 0: no more.")
    alert_escalation_medium_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default=(1800.0,), json_schema_extra={"unit": "s"},
        description="Escalation steps of an unacknowledged medium alert (e.g. device offline, "
        "sensor fault), as for critical.")
    alert_repeat_medium_s: float = Field(
        default=0.0, ge=0, json_schema_extra={"unit": "s"},
        description="After the last medium step, escalate again this often; 0: no more.")
    alert_escalation_low_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default=(), json_schema_extra={"unit": "s"},
        description="Escalation steps of an unacknowledged low alert (e.g. low battery), as for "
        "critical.")
    alert_repeat_low_s: float = Field(
        default=0.0, ge=0, json_schema_extra={"unit": "s"},
        description="After the last low step, escalate again this often; 0: no more.")
    alert_cancel_window_s: float = Field(
        default=60.0, ge=0, le=3600, json_schema_extra={"unit": "s"},
        description="A `cancel` on the emergency button within this time of the press "
        "downgrades the call from critical to high (it stays open until acknowledged); a later "
        "cancel is only recorded.")
    alert_fall_no_motion_s: float = Field(
        default=300.0, gt=0, le=86_400, json_schema_extra={"unit": "s"},
        description="After `fall_detected`, no infrared movement for this long raises urgency "
        "(evidence and one escalation step at once).")
    alert_clear_grace_s: float = Field(
        default=120.0, ge=0, le=86_400, json_schema_extra={"unit": "s"},
        description="A non-critical alert whose condition cleared (device back online, battery "
        "replaced, vital signs in range) is resolved by the system after staying clear this "
        "long. Critical alerts, falls and emergency calls are never resolved by the system.")
    alert_update_interval_s: float = Field(
        default=60.0, ge=0, le=3600, json_schema_extra={"unit": "s"},
        description="A condition that keeps being reported updates its alert in memory at "
        "once, but is written to the audit log at most this often (severity changes are "
        "written at once; a summary of an alert storm or of unregistered devices, whose "
        "members change, every 5 s at most).")
    gateway_health_alert_after_s: float = Field(
        default=120.0, ge=0, le=86_400, json_schema_extra={"unit": "s"},
        description="The gateway's own broker connection, database or a store failing for "
        "this long opens a `gateway_health` alert (one per check of `/readyz`), cleared when "
        "it passes again; the console shows any failure at once as a banner. Shorter ones (a "
        "broker restart) raise nothing. 0: at once.")

    # Handling an alert: the response checklist of each alert type (items a dispatcher ticks
    # off, recorded in the alert's history) and the outcome codes an alert is resolved with.
    # Items are codes the console translates (call_resident, call_first_contact,
    # send_caregiver, consider_ambulance, ask_duty_nurse, call_caregiver, check_visit_record,
    # arrange_device_check, arrange_battery_change) or a station's own words; lists are
    # comma-separated in the environment.
    alert_outcomes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_OUTCOMES,
        description="Outcome codes an alert is resolved with; a dispatcher must pick one "
        "(the console translates these; others are shown as written). Lower-case letters, "
        "digits and `_`. Counted in `homecare_alert_outcomes_total{type,outcome}`.")
    alert_checklist_emergency_button: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.EMERGENCY_BUTTON],
        description="Response checklist shown with an emergency call: the steps a dispatcher "
        "ticks off while handling it, each recorded in the alert's history. An item is a code "
        "the console translates or the station's own words (1 to 80 characters); empty: no "
        "checklist.")
    alert_checklist_fall: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.FALL],
        description="Response checklist of a fall, as for `alert_checklist_emergency_button`.")
    alert_checklist_inactivity: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.INACTIVITY],
        description="Response checklist of an inactivity alert, as above.")
    alert_checklist_night_bed_exit: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.NIGHT_BED_EXIT],
        description="Response checklist of a night bed exit, as above.")
    alert_checklist_abnormal_sound: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.ABNORMAL_SOUND],
        description="Response checklist of an abnormal sound, as above.")
    alert_checklist_vital_signs: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.VITAL_SIGNS],
        description="Response checklist of vital signs out of range, as above.")
    alert_checklist_device_offline: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.DEVICE_OFFLINE],
        description="Response checklist of a device gone offline, as above.")
    alert_checklist_low_battery: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.LOW_BATTERY],
        description="Response checklist of a low battery, as above.")
    alert_checklist_sensor_fault: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.SENSOR_FAULT],
        description="Response checklist of a sensor fault, as above.")
    alert_checklist_service_anomaly: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CHECKLISTS[AlertType.SERVICE_ANOMALY],
        description="Response checklist of a service anomaly (a visit the sensors do not "
        "confirm), as above.")

    # The response report (`GET /api/v1/reports/response`, the console's report page): time to
    # acknowledge and to resolve, and the share of critical alerts answered within the target,
    # per day, shift, site and dispatcher. Until there is a roster, shifts are start times in
    # the station's zone (the registry's, else `timezone`).
    report_shifts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_SHIFTS,
        description="The station's shifts as `name=HH:MM` (a name of lower-case letters, "
        "digits and `_`, and its start in each site's zone); each lasts until the next one "
        "starts, the last past midnight until the first. The on-call roster's shifts, when it "
        "has any, take their place. Comma-separated in the environment "
        "(`day=08:00,night=20:00`).")
    report_ack_target_s: float = Field(
        default=60.0, gt=0, le=3600, json_schema_extra={"unit": "s"},
        description="A critical alert counts as answered in time when a person acknowledged "
        "it (or resolved it) within this long of its opening (the telecare norm: 97.5 % of "
        "alarm calls within 60 s).")

    # Service supervision (issue #14): each caregiver visit cross-checked with the plans and
    # the sensors; flagged visits are `service_anomaly` alerts.
    service_catalogue: Annotated[tuple[str, ...], NoDecode] = Field(
        default=DEFAULT_CATALOGUE,
        description="The service items a visit may bill and a plan may list: `code:minutes` "
        "(the minutes the item is expected to take) or `code:minutes:recorded` (its delivery "
        "must be covered by an audio or infrared recording). Comma-separated in the "
        "environment.")
    service_anomaly_severity: Literal["critical", "high", "medium", "low"] = Field(
        default="medium",
        description="Severity of a `service_anomaly` alert (a visit the plans or the sensors "
        "do not confirm, a planned visit that never happened).")
    service_short_share: float = Field(
        default=0.5, gt=0, lt=1, json_schema_extra={"unit": "share"},
        description="A visit is too short when the caregiver was sensed (more people at home "
        "than the household's usual count) for less than this share of the time claimed (the "
        "stay, or the billed items' minutes when longer), and at least 15 minutes less.")
    service_checkout_grace_s: float = Field(
        default=1200.0, ge=60, le=86_400, json_schema_extra={"unit": "s"},
        description="A visit with no check-out is flagged this long after the caregiver was "
        "last sensed at the home.")
    service_visit_max_s: float = Field(
        default=14_400.0, ge=600, le=86_400, json_schema_extra={"unit": "s"},
        description="A visit with no check-out is flagged at the latest this long after its "
        "check-in (also without sensors).")
    service_window_tolerance_s: float = Field(
        default=900.0, ge=0, le=43_200, json_schema_extra={"unit": "s"},
        description="How far a visit may begin before, or end after, its planned window "
        "before it is flagged as outside it.")
    service_missed_grace_s: float = Field(
        default=3600.0, ge=0, le=86_400, json_schema_extra={"unit": "s"},
        description="A planned visit with no check-in is flagged as never happened this long "
        "after its window ended.")
    service_recording_coverage: float = Field(
        default=0.5, gt=0, le=1, json_schema_extra={"unit": "share"},
        description="A visit billing an item that must be recorded needs recordings (clips "
        "of the home's infrared or audio recorder, started and stopped) covering at least "
        "this share of it.")
    service_open_visits_max: int = Field(
        default=20_000, ge=10, le=10_000_000, json_schema_extra={"unit": "visits"},
        description="Visits the gateway follows at once (checked in and not yet judged); past "
        "it the oldest open one is dropped (logged). An open visit is given up a day after "
        "its check-in.")
    service_record_settle_s: float = Field(
        default=600.0, ge=90, le=86_400, json_schema_extra={"unit": "s"},
        description="A finished visit becomes its service record in the service log (verdict "
        "with the reasons of its `service_anomaly` alerts, plan, claimed and sensed times, "
        "recordings, evidence) this long after its check-out was recorded (and after a "
        "start), once the detectors have judged it: a visit not judged yet waits for its "
        "judgement up to 5 min plus twice `detector_evaluate_interval_s` after its check-out "
        "(7 min by default), or while the detector still holds it (its home's infrared "
        "behind) up to 12 h 22 min, then is settled `unverifiable`, `not_judged`; a finding or "
        "a judgement that comes later revises it.")
    service_institutions: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="The care institution each site's visits are reported under in the "
        "supervision report, as `site=institution` (ids of letters, digits, `_` and `-`); a "
        "site not listed is its own institution. Comma-separated in the environment.")
    service_badge_burst_events: int = Field(
        default=200, ge=1, le=1_000_000, json_schema_extra={"unit": "events"},
        description="Check-ins and check-outs one badge may add to the service log at once "
        "(each is a row kept for good): a day's backlog from a caregiver's app that was "
        "offline is taken whole (a long day is about 30 visits, 60 events). Beyond it and "
        "`service_badge_events_per_day`, its events are dead-lettered as "
        "`badge_rate_exceeded`, counted in `homecare_service_badge_events_over_budget_total`, "
        "logged at most once a minute, and the badge gets a `sensor_fault` alert. A redelivery "
        "of an event the log holds costs nothing.")
    service_badge_events_per_day: float = Field(
        default=200.0, ge=0, le=10_000_000, json_schema_extra={"unit": "events/day"},
        description="Check-ins and check-outs one badge may add to the service log a day on "
        "average, after `service_badge_burst_events`: in any 24 hours a badge adds at most "
        "the two together (400 by default; each visit also gets its service record). 0: no "
        "limit.")
    service_unlisted_badge_burst_events: int = Field(
        default=2000, ge=1, le=10_000_000, json_schema_extra={"unit": "events"},
        description="Check-ins and check-outs that the badges the registry does not list may "
        "add to the service log at once, all of them together (each also keeps to "
        "`service_badge_burst_events`), so made-up badge ids cannot grow it without bound. A "
        "station without a registry file shares it among all its badges: list them.")
    service_unlisted_badge_events_per_day: float = Field(
        default=5000.0, ge=0, le=100_000_000, json_schema_extra={"unit": "events/day"},
        description="Check-ins and check-outs that the badges the registry does not list may "
        "add to the service log a day together, after "
        "`service_unlisted_badge_burst_events`. 0: no shared limit (each badge keeps its own).")

    # --- registry, time, API ------------------------------------------------------------------
    registry_file: Path | None = Field(
        default=None,
        description="Sites, beds, devices and per-bed thresholds (TOML; format in "
        "`devices/registry.py` and `deploy/registry.example.toml`). Unset: an empty registry. "
        "Devices not listed are registered on first sight and flagged.")
    timezone: str | None = Field(
        default=None,
        description="IANA zone for day/night logic (night bed exit, inactivity); sites may "
        "override it in the registry. Unset: the machine's local zone.")
    api_addr: str = Field(
        default="127.0.0.1:8080",
        description="`host:port` of the HTTP server: the alert API (`/api/v1`), the dispatcher "
        "console, `/healthz`, `/readyz`, `/metrics` and `/docs`. Keep it on loopback behind a "
        "reverse proxy with TLS, or on the care station's private network.")
    api_key: str | None = Field(
        default=None,
        description="Bootstrap API key (role admin, acting as `bootstrap`), for a fresh gateway "
        "before any key exists: a random secret of at least 32 characters and 112 bits of "
        "estimated entropy, else the gateway does not start (make one with `python3 -c "
        "\"import secrets; print(secrets.token_urlsafe(32))\"`). Create named keys with "
        "`homecare keys create`. A secret: give it in the environment or as a file, never in "
        "the config file.")
    api_key_file: Path | None = Field(
        default=None,
        description="File holding `api_key` (surrounding white space stripped), read when that "
        "is unset; it must exist at start.")
    api_auth_failures_per_minute: int = Field(
        default=60, ge=1, le=100_000, json_schema_extra={"unit": "failures"},
        description="Failed authentications one client address (IPv6: its /64) may have in "
        "any minute: unknown or revoked API keys, and acknowledge links that are not ours, "
        "expired or already used; past it, requests from that address answer 429 with "
        "`Retry-After` until the oldest failure is a minute old, except with a key accepted "
        "within the last day, also before a restart (a station's dispatchers behind one "
        "address keep working), or an intact acknowledge link. Failures are counted in "
        "`homecare_api_auth_failures_total{reason}` and logged without the key or link.")
    api_streams_per_key: int = Field(
        default=16, ge=1, le=10_000, json_schema_extra={"unit": "streams"},
        description="Event streams (`/api/v1/alerts/stream`) one key may hold open at once; one "
        "more answers 429.")
    api_key_recheck_s: float = Field(
        default=2.0, gt=0, le=300, json_schema_extra={"unit": "s"},
        description="How often an open event stream re-checks its key: the stream of a revoked "
        "key ends within this time.")
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, json_schema_extra={"unit": "s"},
        description="A connection must send a complete request head (request line and headers) "
        "within this time of opening, or of the previous answer on it; otherwise it is closed "
        "(`homecare_http_connections_closed_total{reason=\"header_timeout\"}`), so idle or "
        "half-sent connections cannot pile up.")
    http_body_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, json_schema_extra={"unit": "s"},
        description="A request body (at most 64 KiB; a plan import 4 MiB) must have arrived "
        "within this time of its head; otherwise the connection is closed.")
    http_write_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, json_schema_extra={"unit": "s"},
        description="An answer (an event stream's included) whose client has not read "
        "anything for this long while the gateway's send buffer is full is cut off: a client "
        "that never reads cannot hold a connection.")
    http_max_connections: int = Field(
        default=1024, ge=16, le=1_000_000, json_schema_extra={"unit": "connections"},
        description="Open HTTP connections at most. A new connection past it closes one of the "
        "address holding the most connections: its oldest one still waiting for a request head "
        "(idle or half-sent), else its longest-stalled one (see "
        "`http_evict_stalled_after_s`); when none is either, the new one is closed at once. "
        "Requests being answered and event streams whose clients keep up are never cut for "
        "room. Kept below the process's open-files limit (raised to its hard limit at start), less "
        "room for the stores and the broker.")
    http_evict_stalled_after_s: float = Field(
        default=2.0, gt=0, le=300, json_schema_extra={"unit": "s"},
        description="A connection being answered whose client has taken nothing for this long "
        "(the gateway's send buffer full) or whose request body is still incomplete this long "
        "after its head is *stalled*: at a connection cap it may be closed to make room "
        "(`homecare_http_connections_closed_total{reason=\"evicted_stalled\"}`), so clients "
        "that ask for large answers and read them slowly or never cannot hold every "
        "connection.")
    http_max_connections_per_client: int = Field(
        default=256, ge=1, le=1_000_000, json_schema_extra={"unit": "connections"},
        description="Open HTTP connections one client address (IPv6: its /64) may hold, with "
        "the same rule (its own oldest waiting connection, else its longest-stalled one, makes "
        "room). Behind a reverse proxy "
        "every connection comes from the proxy: set it to `http_max_connections`.")
    http_trusted_proxies: str = Field(
        default="",
        description="Comma-separated addresses or networks of reverse proxies whose "
        "`X-Forwarded-For` and `X-Forwarded-Proto` name the real client (for the per-client "
        "limits, the wrong-key throttle and the logs), e.g. `127.0.0.1` for a proxy on this "
        "host. Empty (the default): the header is ignored from everyone, so no local process "
        "can pose as another client.")

    # --- upstream delivery (gateway/upstream/) ----------------------------------------------
    upstream_url: str | None = Field(
        default=None,
        description="The city platform's endpoint for alert changes and service-log records "
        "(POST, JSON, signed); unset: nothing goes upstream.")
    upstream_secret: str | None = Field(
        default=None, min_length=16, max_length=512,
        description="Shared secret that signs every upstream request (HMAC-SHA256), at least "
        "16 characters; needed with `upstream_url` or with family webhooks in the registry. A "
        "secret: give it in the environment or as a file, never in the config file.")
    upstream_secret_file: Path | None = Field(
        default=None,
        description="File holding `upstream_secret` (surrounding white space stripped), read "
        "when that is unset; it must exist at start.")
    upstream_source: str = Field(
        default="homecare-gateway", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="This gateway's name in upstream idempotency keys (unique per gateway of a "
        "city; letters, digits, `_.-`, at most 64).")
    upstream_timeout_s: float = Field(
        default=10.0, gt=0, le=300, json_schema_extra={"unit": "s"},
        description="Time-out of one upstream request; a request that times out is retried "
        "later (the outbox keeps it).")
    upstream_park_after_s: float = Field(
        default=3600.0, ge=1, json_schema_extra={"unit": "s"},
        description="Retry horizon: an entry still failing this long after its first failure "
        "is parked (set aside, kept, shown by `homecare upstream status`, the station's API and "
        "`homecare_upstream_parked`) as soon as the entry behind it goes through, so it no longer "
        "blocks its destination's queue; put back with `homecare upstream requeue`. A "
        "destination that fails everything parks nothing.")
    upstream_institution_url: str | None = Field(
        default=None,
        description="The care institution's endpoint: the alert changes and service records of "
        "every bed of this gateway, as `upstream_institution_detail` and "
        "`upstream_institution_alert_types` say (POST, JSON, signed with a secret of its own "
        "derived from `upstream_secret`: `homecare upstream institution-secret`); unset: "
        "nothing goes to an institution.")
    upstream_platform_detail: Literal["full", "no_staff"] = Field(
        default="full",
        description="What the platform receives of each alert change and record: `full` (as "
        "stored) or `no_staff` (without staff key names, notes and comments).")
    upstream_platform_alert_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("*",),
        description="Alert types whose changes go to the platform; `*`: every type. It "
        "receives every service record (the hash chain is whole only so). Comma-separated in "
        "the environment.")
    upstream_institution_detail: Literal["full", "no_staff"] = Field(
        default="no_staff", description="As `upstream_platform_detail`, for the institution.")
    upstream_institution_alert_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("*",),
        description="Alert types whose changes go to the institution; `*`: every type. It "
        "receives every service record.")
    upstream_family_alert_types: Annotated[tuple[str, ...], NoDecode] = Field(
        default=UPSTREAM_FAMILY_ALERT_TYPES,
        description="Alert types whose changes go to a bed's family webhook (the registry's "
        "`family_webhook`); `*`: every type. A family gets its own bed's alerts only, when one "
        "opens, is called again or off, clears, is acknowledged or resolved: the state, times "
        "and summary, never who handled it, notes, comments, assignee, calls, outcome, evidence "
        "or profile data (until this setting, families got every change of every type in "
        "full).")
    upstream_family_visits: bool = Field(
        default=True,
        description="Whether a family webhook receives its bed's visit records (check-in and "
        "check-out: visit, caregiver code, times, services, the record's hash; not who entered "
        "it through the app).")

    # --- on-call notification (gateway/notify/, issue #13) -------------------------------------
    # Who is on duty (the roster) and the escalation chains are in the on-call file; each
    # step's notifications go out through an outbox of their own (data_dir/notify.sqlite3),
    # recorded in the alert's history. The console is always told; the channels below are
    # used once configured.
    oncall_file: Path | None = Field(
        default=None,
        description="The on-call file (TOML): `[[staff]]` (id, name, role `dispatcher`, "
        "`nurse` or `manager`, email, phone, pager), `[[shifts]]` (name, start `HH:MM`; none: "
        "`report_shifts`), `[[duty]]` (site or `*`, shift, optional date or weekdays, "
        "dispatchers, nurse, manager) and `[[chains]]` (name, severities, types, steps with "
        "recipients, channels and `wait_s`); format in README (On-call notification) and "
        "`deploy/oncall.example.toml`. An admin may replace the roster through the API "
        "(kept in `data_dir/oncall.json` until this file's roster changes). Unset: nobody "
        "on call, and the default chains (the `alert_escalation_*` timelines) notify the "
        "console only.")
    notify_public_url: str | None = Field(
        default=None,
        description="The gateway's address as the people notified reach it, for the one-time "
        "acknowledge links (`<url>/ack/<token>`), e.g. the reverse proxy's "
        "`https://<host>`; unset: `http://<api_addr>`.")
    notify_link_ttl_s: float = Field(
        default=3600.0, ge=60, le=7 * 86_400, json_schema_extra={"unit": "s"},
        description="An acknowledge link expires this long after its notification was "
        "queued; it works once.")
    notify_link_secret: str | None = Field(
        default=None, min_length=16, max_length=512,
        description="Secret that signs acknowledge links (HMAC-SHA256), at least 16 "
        "characters; unset: `notify_link_secret_file`, else a random one kept in "
        "`data_dir/notify-link.key` (0600). A secret: give it in the environment or as a "
        "file, never in the config file.")
    notify_link_secret_file: Path | None = Field(
        default=None,
        description="File holding `notify_link_secret`, read when that is unset; it must "
        "exist at start.")
    notify_webhook_url: str | None = Field(
        default=None,
        description="The notification webhook (POST, JSON as "
        "`docs/schemas/notification-webhook.schema.json`, signed with "
        "`notify_webhook_secret`): the bridge to an SMS or voice-call gateway or a paging "
        "system; unset: no webhook channel.")
    notify_webhook_secret: str | None = Field(
        default=None, min_length=16, max_length=512,
        description="Secret that signs each notification webhook request (HMAC-SHA256, the "
        "`X-Homecare-Signature` scheme of upstream delivery); needed with "
        "`notify_webhook_url`. A secret: environment or file only.")
    notify_webhook_secret_file: Path | None = Field(
        default=None,
        description="File holding `notify_webhook_secret`, read when that is unset.")
    notify_smtp_host: str | None = Field(
        default=None,
        description="SMTP server for notification email; unset: no email channel.")
    notify_smtp_port: int = Field(
        default=587, ge=1, le=65_535,
        description="SMTP port (587 submission with STARTTLS; 465 with `tls`).")
    notify_smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="`starttls`: STARTTLS required before anything else is sent (a server "
        "that does not offer it gets no mail, retried); `tls`: TLS from the start "
        "(`smtps`, port 465); `none`: plain text (a relay on this host only).")
    notify_smtp_username: str | None = Field(
        default=None, description="SMTP user (AUTH after STARTTLS); unset: no AUTH.")
    notify_smtp_password: str | None = Field(
        default=None,
        description="SMTP password; unset: `notify_smtp_password_file`. A secret: "
        "environment or file only.")
    notify_smtp_password_file: Path | None = Field(
        default=None,
        description="File holding `notify_smtp_password`, read when that is unset.")
    notify_smtp_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) that verify the SMTP server; unset: the system's.")
    notify_email_from: str = Field(
        default="homecare-gateway@localhost", pattern=r"^[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,190}$",
        description="The sender address of notification email.")
    notify_mqtt_url: str | None = Field(
        default=None,
        description="Broker for MQTT pages (`mqtt://[user:pass@]host[:port]`, `mqtts://`), "
        "which may be the devices' broker; its user must be allowed to write "
        "`notify_mqtt_topic` (a page the broker refuses is recorded as refused). Unset: no "
        "MQTT pages.")
    notify_mqtt_topic: str = Field(
        default=DEFAULT_PAGING_TOPIC,
        description="Topic of an MQTT page, with `{site}` and `{pager}` (the recipient's "
        "pager id in the roster): a pager subscribes to its own, a wall display or a siren "
        "to `homecare/paging/<site>/+`. QoS 1, not retained.")
    notify_profile_channels: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Channels allowed to carry the resident profile (name, address, phone, "
        "medical and access notes) to the staff on call, and to reach the family contact: "
        "some of `webhook`, `email`, `mqtt`. Empty (the default): no notification carries any "
        "of it, and the family contact is not notified. Comma-separated in the environment.")
    notify_profile_to_family: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="What of the resident profile the family contact's notification carries "
        "(on a channel of `notify_profile_channels`): some of `display_name`, `address`, "
        "`phone`, `medical_notes`, `access_notes`. Empty (the default): none of it; the "
        "medical notes only when named here. Comma-separated in the environment.")
    notify_retry_max_s: float = Field(
        default=30.0, ge=1, le=3600, json_schema_extra={"unit": "s"},
        description="A notification that failed is tried again after 1 s, doubling up to "
        "this, until it is delivered, refused, or its alert is acknowledged or resolved.")

    # --- logging ------------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level of the log lines written (to stderr).")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text`, or `json`: one JSON object per line, for journald or log "
        "shippers.")

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

    @field_validator("alert_outcomes", *CHECKLIST_SETTINGS.values(), mode="before")
    @classmethod
    def _text_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("service_institutions", mode="before")
    @classmethod
    def _institution_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("service_institutions")
    @classmethod
    def _institutions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        institution_of(value)
        return value

    @field_validator("report_shifts", mode="before")
    @classmethod
    def _shift_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("report_shifts")
    @classmethod
    def _shifts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        ReportSettings(shifts=ReportSettings.parse_shifts(value))
        return value

    @field_validator("alert_outcomes")
    @classmethod
    def _outcomes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        ResponsePlan(outcomes=value, checklists={})
        return value

    @field_validator(*CHECKLIST_SETTINGS.values())
    @classmethod
    def _checklist(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        ResponsePlan(checklists={str(info.field_name).removeprefix("alert_checklist_"): value})
        return value

    @field_validator("mqtt_topic", mode="before")
    @classmethod
    def _topic_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("mqtt_topic")
    @classmethod
    def _topic_filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one topic filter")
        for topic in value:
            problem = topic_filter_problem(topic)
            if problem is not None:
                raise ValueError(f"{topic!r}: {problem}")
        if len(set(value)) != len(value):
            raise ValueError("a topic filter is given twice")
        return value

    @field_validator("service_catalogue", mode="before")
    @classmethod
    def _catalogue_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("service_catalogue")
    @classmethod
    def _catalogue(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        Catalogue.parse(value)
        return value

    @field_validator("http_trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for item in (part.strip() for part in value.split(",")):
            if item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"not an address or network: {item!r}") from None
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

    @field_validator("upstream_platform_alert_types", "upstream_institution_alert_types",
                     "upstream_family_alert_types", mode="before")
    @classmethod
    def _alert_type_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("upstream_platform_alert_types", "upstream_institution_alert_types",
                     "upstream_family_alert_types")
    @classmethod
    def _alert_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {str(t) for t in AlertType}
        unknown = [name for name in value if name != "*" and name not in known]
        if unknown:
            raise ValueError(f"unknown alert type {unknown[0]!r}; `*` or some of "
                             f"{', '.join(sorted(known))}")
        return value

    @field_validator("upstream_url", "upstream_institution_url")
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
        for name in ("upstream_url", "upstream_institution_url"):
            if getattr(self, name) and not (self.upstream_secret or self.upstream_secret_file):
                raise ValueError(f"{name} needs upstream_secret or upstream_secret_file "
                                 "(HOMECARE_UPSTREAM_SECRET/_FILE) to sign requests")
        return self

    @field_validator("notify_profile_channels", "notify_profile_to_family", mode="before")
    @classmethod
    def _channel_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("notify_profile_channels")
    @classmethod
    def _profile_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in ("webhook", "email", "mqtt")]
        if unknown:
            raise ValueError(f"unknown channel {unknown[0]!r}; some of webhook, email, mqtt")
        return value

    @field_validator("notify_profile_to_family")
    @classmethod
    def _family_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        fields = ("display_name", "address", "phone", "medical_notes", "access_notes")
        unknown = [name for name in value if name not in fields]
        if unknown:
            raise ValueError(f"unknown profile field {unknown[0]!r}; some of "
                             + ", ".join(fields))
        return value

    @field_validator("notify_webhook_url", "notify_public_url")
    @classmethod
    def _notify_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("notify_mqtt_url")
    @classmethod
    def _notify_mqtt_url(cls, value: str | None) -> str | None:
        if value is not None:
            BrokerUrl.parse(value)
        return value

    @field_validator("notify_mqtt_topic")
    @classmethod
    def _paging_topic(cls, value: str) -> str:
        try:
            sample = value.format(site="site-01", pager="pager-01")
        except (KeyError, IndexError, ValueError):
            raise ValueError("only {site} and {pager} may be filled in") from None
        if "+" in sample or "#" in sample or topic_filter_problem(sample) is not None:
            raise ValueError("a topic name: no wildcards, no empty or NUL")
        return value

    @model_validator(mode="after")
    def _notify_secrets(self) -> Settings:
        if self.notify_webhook_url and not (self.notify_webhook_secret
                                            or self.notify_webhook_secret_file):
            raise ValueError("notify_webhook_url needs notify_webhook_secret or "
                             "notify_webhook_secret_file (HOMECARE_NOTIFY_WEBHOOK_SECRET/_FILE) "
                             "to sign requests")
        return self

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, value: str | None) -> str | None:
        if value is not None:
            problem = bootstrap_key_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("api_addr")
    @classmethod
    def _api_addr(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080")
        return value

    @model_validator(mode="after")
    def _secret_files(self) -> Settings:
        for name in ("mqtt_password_file", "mqtt_urgent_password_file", "influx_token_file",
                     "influx_password_file", "api_key_file", "upstream_secret_file",
                     "notify_link_secret_file", "notify_webhook_secret_file",
                     "notify_smtp_password_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    # --- derived ------------------------------------------------------------------------------

    def response_plan(self) -> ResponsePlan:
        """The checklists per alert type and the outcome codes, for the alert API."""
        return ResponsePlan(outcomes=self.alert_outcomes, checklists={
            alert_type: getattr(self, name) for alert_type, name in CHECKLIST_SETTINGS.items()})

    def report_settings(self) -> ReportSettings:
        """The shifts and the answer target of the response report."""
        return ReportSettings(shifts=ReportSettings.parse_shifts(self.report_shifts),
                              ack_target_s=self.report_ack_target_s)

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
    """``[mqtt] url`` as ``mqtt_url``; a setting written both ways is an error (one of the two
    would be dropped without a word)."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        inner = _flatten(value, f"{name}_") if isinstance(value, dict) else {name: value}
        for flat_name, flat_value in inner.items():
            if flat_name in flat:
                raise ConfigError(f"{flat_name} is written twice in the config file (as "
                                  f"{flat_name} and in a section, e.g. [mqtt] url for "
                                  "mqtt_url): keep one")
            flat[flat_name] = flat_value
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


OTHER_VARIABLES: Final[Mapping[str, str]] = {
    "HOMECARE_REGISTRY": "docker-compose.yml: the registry file on the host, mounted into the "
    "gateway's container (deploy/compose.env.example)",
}
"""``HOMECARE_*`` variables the project uses outside the settings, with where: not errors.
Every other ``HOMECARE_*`` variable must name a setting (:func:`unknown_variables`)."""


def unknown_variables(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """Each ``HOMECARE_*`` variable of ``environ`` that names no setting (and is not one of
    :data:`OTHER_VARIABLES`), with the closest known variable, if any is close: a misspelt
    variable would otherwise be ignored silently. Names are compared ignoring case, as the
    settings read them.

    >>> unknown_variables({"HOMECARE_MQTT_URLL": "x", "HOMECARE_DATA_DIR": "/d", "HOME": "/"})
    [('HOMECARE_MQTT_URLL', 'HOMECARE_MQTT_URL')]
    """
    known = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    known_set = {*known, *OTHER_VARIABLES}
    out: list[tuple[str, str | None]] = []
    for key in sorted(environ):
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known_set:
            close = difflib.get_close_matches(upper, [*known, *OTHER_VARIABLES], n=1, cutoff=0.75)
            out.append((key, close[0] if close else None))
    return out


def from_environment() -> dict[str, str]:
    """The ``HOMECARE_*`` variables set now (for diagnostics; secrets masked)."""
    shown = {}
    for key, value in os.environ.items():
        if key.startswith(ENV_PREFIX):
            secret = any(s in key for s in ("TOKEN", "PASSWORD", "KEY", "SECRET"))
            shown[key] = "***" if secret else value
    return shown
