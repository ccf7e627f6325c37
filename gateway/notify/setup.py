"""On-call notification from the settings: the on-call file, the link secret, the channels.

:func:`read_oncall_file` reads ``oncall_file`` (TOML: the roster's ``[[staff]]``, ``[[shifts]]``
and ``[[duty]]``, and the escalation ``[[chains]]``) and fails the start with a
:class:`~gateway.errors.ConfigError` naming the file and every problem. :func:`link_secret` is
``notify_link_secret`` or a random secret kept in ``data_dir/notify-link.key`` (0600), so links
stay valid across restarts. :func:`notifier_from_settings` builds the :class:`Notifier` with
the channels that are configured (the webhook, email, MQTT pages; the console needs nothing).
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from alerts import (
    AckLinks,
    AlertEngine,
    AlertStore,
    Chain,
    NotifyChannels,
    ResidentStore,
    Roster,
    RosterError,
    RosterStore,
)
from devices.broker import BrokerUrl
from devices.registry import Registry
from gateway.config import Settings
from gateway.errors import ConfigError
from gateway.notify.channels import (
    Channel,
    EmailChannel,
    PagingChannel,
    SmtpServer,
    WebhookChannel,
)
from gateway.notify.notifier import Notifier
from gateway.storage import keep_private
from gateway.upstream import Outbox

LINK_KEY_FILE = "notify-link.key"
OUTBOX_FILE = "notify.sqlite3"
LINKS_FILE = "acklinks.sqlite3"
ROSTER_FILE = "oncall.json"


def read_oncall_file(path: Path | None, settings: Settings) -> tuple[Roster, tuple[Chain, ...]]:
    """The roster and the chains of the on-call file (none: an empty roster, no chains)."""
    shifts = settings.report_settings().shifts
    if path is None:
        return Roster(shifts=shifts), ()
    where = f"oncall_file (HOMECARE_ONCALL_FILE) {path}"
    try:
        raw: dict[str, Any] = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    try:
        roster = Roster.from_mapping(raw, default_shifts=shifts)
    except RosterError as exc:
        raise ConfigError(f"{where}: " + "; ".join(exc.problems[:20])) from None
    chains = []
    value = raw.get("chains", [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}: chains: a list of tables ([[chains]])")
    for i, item in enumerate(value):
        try:
            if not isinstance(item, dict):
                raise ValueError("a table")
            chains.append(Chain.from_mapping(item))
        except ValueError as exc:
            raise ConfigError(f"{where}: chains[{i}]: {exc}") from None
    if len({c.name for c in chains}) != len(chains):
        raise ConfigError(f"{where}: two chains have the same name")
    return roster, tuple(chains)


def link_secret(settings: Settings, data_dir: Path) -> bytes:
    """The acknowledge links' secret (see the module docstring)."""
    given = settings.secret("notify_link_secret")
    if given:
        return given.encode()
    path = data_dir / LINK_KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(secret + b"\n")
        file.flush()
        os.fsync(file.fileno())
    return secret


def channels_from_settings(settings: Settings) -> tuple[dict[str, Channel], NotifyChannels]:
    """The configured channels, and what :func:`alerts.plan_step` needs to know of them."""
    s = settings
    channels: dict[str, Channel] = {}
    if s.notify_webhook_url:
        secret = s.secret("notify_webhook_secret") or ""
        channels["webhook"] = WebhookChannel(s.notify_webhook_url, secret=secret.encode())
    if s.notify_smtp_host:
        channels["email"] = EmailChannel(SmtpServer(
            host=s.notify_smtp_host, port=s.notify_smtp_port, security=s.notify_smtp_security,
            username=s.notify_smtp_username, password=s.secret("notify_smtp_password"),
            ca_file=s.notify_smtp_ca_file, sender=s.notify_email_from))
    if s.notify_mqtt_url:
        channels["mqtt"] = PagingChannel(BrokerUrl.parse(s.notify_mqtt_url),
                                         client_id=f"{s.mqtt_client_id}-paging",
                                         ca_file=s.mqtt_tls_ca_file)
    return channels, NotifyChannels(
        webhook="webhook" in channels, email="email" in channels, mqtt="mqtt" in channels,
        paging_topic=s.notify_mqtt_topic,
        profile_channels=frozenset(s.notify_profile_channels),
        family_profile_fields=frozenset(s.notify_profile_to_family))


def notifier_from_settings(settings: Settings, *, data_dir: Path, engine: AlertEngine,
                           store: AlertStore, roster: RosterStore,
                           residents: ResidentStore | None, registry: Registry,
                           links: AckLinks, metrics: CollectorRegistry | None) -> Notifier:
    """The notifier of this gateway (its outbox in ``data_dir/notify.sqlite3``)."""
    path = data_dir / OUTBOX_FILE
    fresh = not path.exists()
    keep_private(path)  # every live acknowledge URL, and profile data on allowed channels
    channels, config = channels_from_settings(settings)
    public_url = settings.notify_public_url or f"http://{settings.api_addr}"

    def zone_of(site: str) -> ZoneInfo | None:
        name = registry.timezone(site, settings.timezone)
        return ZoneInfo(name) if name else None

    return Notifier(Outbox(path), engine=engine, store=store, roster=roster,
                    residents=residents, zone_of=zone_of, links=links, public_url=public_url,
                    channels=channels, config=config, source=settings.upstream_source,
                    retry_max_s=settings.notify_retry_max_s, fresh=fresh, metrics=metrics)
