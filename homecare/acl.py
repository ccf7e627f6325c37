"""Broker credentials and ACL from the registry (``homecare acl``): a device may publish only on
its own site, bed and kind.

Mosquitto's ``pattern`` rules substitute whole topic levels (``%u``, ``%c``), so a pattern can
bind a device to its id but not to its bed: with ``pattern write homecare/v1/+/+/+/%u/+`` a
button could raise calls for any bed under its own id. The registry knows each device's place
(:class:`devices.Placement`), so this writes one ``user`` block per listed device instead::

    user btn-0007
    topic write homecare/v1/site-01/bed-0007/button/btn-0007/telemetry
    topic write homecare/v1/site-01/bed-0007/button/btn-0007/event
    topic write homecare/v1/site-01/bed-0007/button/btn-0007/status

(a badge's place is its site and kind: ``homecare/v1/site-01/+/badge/<id>/<channel>``; it
travels with its caregiver). Only the contract's three channels: a device cannot fill the
broker with retained messages on channel names of its own making.

The gateway user reads ``homecare/v1/#``; its urgent session has a user of its own,
``<gateway user>-urgent``, that reads only button and fall events (what that session
subscribes to, :func:`gateway.ingest.urgentsession.urgent_filters`); nobody else reads
anything, and a device the registry does not list has no password and no rule.

Two users for the gateway because the shipped broker makes every client's user name its client
id (``use_username_as_clientid true``): a device can then no longer connect under the
gateway's client id and take over (and, with a clean start, discard) the gateway's persistent
sessions, which it could with its own valid password before (issue #17), and so each session
needs a user of its own. Several gateways on one broker: one ``--gateway-user`` each (every one
gets its urgent user).

Files written into one directory, all of them again on every run (nothing is appended):

* ``acl``: the rules above (mode 0644; no secret in it).
* ``passwd``: the mosquitto password file, one ``user:$7$...`` line per user (PBKDF2-SHA512,
  the format ``mosquitto_passwd`` of Mosquitto 2 writes and the broker checks: iterations,
  base64 salt, base64 64-byte hash), mode 0600. A user already in it keeps its line as it is:
  re-running changes no password. Users no longer in the registry are dropped.
* ``credentials/<user>.json``: for a user new to the password file, a password from
  :mod:`secrets` (256 bits) with the user name and its rule, mode 0600, written once (never
  overwritten, never printed or logged), for provisioning the device; delete it once the
  device holds it. If the password file was lost, the passwords still in ``credentials/`` are
  hashed again instead of new ones being made.

For example, the rule of a button and the hash the broker checks:

>>> from devices import Kind, Placement
>>> print(device_rule("btn-0007", Placement("site-01", "bed-0007", Kind.BUTTON)))
topic write homecare/v1/site-01/bed-0007/button/btn-0007/telemetry
topic write homecare/v1/site-01/bed-0007/button/btn-0007/event
topic write homecare/v1/site-01/bed-0007/button/btn-0007/status
>>> hashed = hash_password("secret", salt=bytes(12))
>>> hashed[:24], check_password("secret", hashed), check_password("guess", hashed)
('$7$101$AAAAAAAAAAAAAAAA$', True, False)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devices import URGENT_KINDS, Channel, Kind, Placement, Registry
from devices.errors import ConfigError

GATEWAY_USER: Final = "gateway"
GATEWAY_RULE: Final = "topic read homecare/v1/#"
URGENT_USER_SUFFIX: Final = "-urgent"
"""``<gateway user>-urgent``: the user of a gateway's urgent session
(``mqtt_urgent_username``)."""
URGENT_RULE: Final = "\n".join(
    f"topic read homecare/v1/+/+/{kind.value}/+/{Channel.EVENT.value}"
    for kind in sorted(URGENT_KINDS))
"""The urgent session reads emergency button and fall events, nothing else."""
PBKDF2_ITERATIONS: Final = 101
"""What ``mosquitto_passwd`` 2.0 writes (the broker reads the count from each line). The
passwords made here carry 256 random bits, so the iteration count adds nothing against
guessing."""
SALT_BYTES: Final = 12
PASSWORD_BYTES: Final = 32
ACL_FILE: Final = "acl"
PASSWORD_FILE: Final = "passwd"
CREDENTIALS_DIR: Final = "credentials"

_HEADER = """\
# Mosquitto ACL for the home-care gateway, written by `homecare acl` from the registry
# (devices/registry.py): run it again after every registry change instead of editing this file.
#
# Nothing is allowed unless a rule below allows it. Device topics are
#   homecare/v1/{site}/{bed}/{kind}/{device}/{channel}
# A device's MQTT user name is its device id, and it may write only the topics of its own site,
# bed and kind (a badge: any bed of its site, it travels with its caregiver): its telemetry,
# events and (retained) status, its last will included. Devices read nothing. A device the
# registry does not list has no rule here: the broker refuses whatever it publishes. The
# broker makes every user name the client id (use_username_as_clientid in mosquitto.conf), so
# no device can connect under the gateway's client ids.
"""


def device_rule(device: str, place: Placement) -> str:
    """The ACL rules of a listed device, one line per channel of the contract: write its own
    topics' ``telemetry``, ``event`` and ``status``, nothing else. With one ``.../+`` rule a
    device could publish under any channel name of its own: a fresh tester, with one button's
    credentials, left 5,000 retained 20 KB messages on made-up channels (the broker's memory
    17 -> 119 MB, its persistence file 102 MB, rewritten every autosave)."""
    bed = "+" if place.kind is Kind.BADGE else place.bed
    return "\n".join(f"topic write homecare/v1/{place.site}/{bed}/{place.kind}/{device}/{channel}"
                     for channel in Channel)


def urgent_user(gateway_user: str) -> str:
    """The user of a gateway's urgent session.

    >>> urgent_user("gateway")
    'gateway-urgent'
    """
    return gateway_user + URGENT_USER_SUFFIX


def gateway_rules(gateway_users: Sequence[str]) -> dict[str, str]:
    """``{user: rules}`` of the gateways' users: each gateway's main and urgent user."""
    rules: dict[str, str] = {}
    for user in gateway_users:
        rules[user] = GATEWAY_RULE
        rules[urgent_user(user)] = URGENT_RULE
    return rules


def render_acl(registry: Registry, *,
               gateway_user: str | Sequence[str] = GATEWAY_USER) -> str:
    """The mosquitto ACL file for ``registry``: the gateway users' read rules (each gateway's
    main and urgent user), then one block per listed device, grouped under a comment per
    bed, in the registry's order."""
    users = _gateway_users(gateway_user, registry)
    lines = [_HEADER.rstrip("\n")]
    for user in users:
        lines += ["", "# The gateway: reads every device topic of contract v1 and nothing else.",
                  f"user {user}", GATEWAY_RULE, "",
                  "# Its urgent session (mqtt_urgent_username, a user of its own: the broker "
                  "makes the",
                  "# user name the client id): button and fall events only.",
                  f"user {urgent_user(user)}", URGENT_RULE]
    bed = None
    for device, place in registry.placements():
        where = f"{place.site} / {place.bed}"
        if where != bed:
            bed = where
            lines += ["", f"# {where}"]
        lines += [f"user {device}", device_rule(device, place)]
    return "\n".join(lines) + "\n"


def hash_password(password: str, *, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """``$7$<iterations>$<salt>$<hash>``: PBKDF2-HMAC-SHA512, 64 bytes, base64, as
    ``mosquitto_passwd`` writes it."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def check_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` line's hash (as the broker checks it)."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        computed = hashlib.pbkdf2_hmac("sha512", password.encode(),
                                       base64.b64decode(salt, validate=True), int(iterations),
                                       len(expected))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(computed, expected)


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """What :func:`write_broker_files` did (user names only, never a password)."""

    acl: Path
    passwd: Path
    credentials: Path
    devices: int
    kept: tuple[str, ...]
    """Users whose password-file line was kept as it was."""
    created: tuple[str, ...]
    """Users given a new password (its credentials file written now)."""
    restored: tuple[str, ...]
    """Users missing from the password file whose password was read back from credentials/."""
    removed: tuple[str, ...]
    """Users of the old password file no longer in the registry."""

    def report(self) -> Iterator[str]:
        yield (f"wrote {self.acl} ({self.devices} devices) and {self.passwd} "
               f"({len(self.kept) + len(self.created) + len(self.restored)} users: "
               f"{len(self.kept)} kept, {len(self.created)} new, {len(self.restored)} "
               f"restored from {self.credentials.name}/, {len(self.removed)} removed)")
        if self.created:
            yield (f"new passwords in {self.credentials}/ (mode 0600, shown nowhere else): "
                   f"{', '.join(f'{user}.json' for user in self.created)}; give each to its "
                   "device's installer, then delete it")
        if self.removed:
            yield f"removed (no longer in the registry): {', '.join(self.removed)}"
        yield ("reload the broker to apply (SIGHUP: systemctl reload mosquitto); a running "
               "gateway judges moved devices by the new registry file at once, and applies "
               "the rest of it (new beds, settings) at its next restart")


def write_broker_files(registry: Registry, out_dir: Path, *,
                       gateway_user: str | Sequence[str] = GATEWAY_USER) -> BrokerFiles:
    """Write ``acl``, ``passwd`` and new ``credentials/<user>.json`` into ``out_dir`` for the
    gateway users (each gateway's main and urgent user) and every device ``registry`` lists;
    idempotent (see the module docstring). Raises :class:`~devices.errors.ConfigError` for an
    unreadable or malformed password or credentials file, before anything is written."""
    acl_text = render_acl(registry, gateway_user=gateway_user)
    rules = gateway_rules(_gateway_users(gateway_user, registry))
    gateways = len(rules)
    rules.update((device, device_rule(device, place)) for device, place in
                 registry.placements())
    out_dir.mkdir(parents=True, exist_ok=True)
    passwd_path = out_dir / PASSWORD_FILE
    credentials = out_dir / CREDENTIALS_DIR
    existing = read_password_file(passwd_path)
    kept: list[str] = []
    restored: list[str] = []
    missing: list[str] = []
    lines: dict[str, str] = {}
    for user in rules:
        if user in existing:
            kept.append(user)
            lines[user] = existing[user]
            continue
        password = read_credentials(credentials / f"{user}.json")
        if password is None:
            missing.append(user)
        else:
            restored.append(user)
            lines[user] = hash_password(password)
    if missing:
        credentials.mkdir(mode=0o700, exist_ok=True)
    for user in missing:
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        _write_new(credentials / f"{user}.json", json.dumps(
            {"username": user, "password": password, "acl": rules[user]}, indent=2) + "\n")
        lines[user] = hash_password(password)
    _replace(passwd_path, "".join(f"{user}:{lines[user]}\n" for user in rules), mode=0o600)
    _replace(out_dir / ACL_FILE, acl_text, mode=0o644)
    return BrokerFiles(
        acl=out_dir / ACL_FILE, passwd=passwd_path, credentials=credentials,
        devices=len(rules) - gateways, kept=tuple(kept), created=tuple(missing),
        restored=tuple(restored), removed=tuple(user for user in existing if user not in rules))


def read_password_file(path: Path) -> dict[str, str]:
    """``{user: hash}`` of a mosquitto password file; empty when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read password file {path}: {exc}") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed.startswith("$"):
            raise ConfigError(f"{path}:{number}: not a mosquitto password line (user:$7$...); "
                              "fix or remove the file")
        users[user] = hashed
    return users


def read_credentials(path: Path) -> str | None:
    """The password in a credentials file written earlier; None when there is none."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc}") from exc
    password = raw.get("password") if isinstance(raw, dict) else None
    if not isinstance(password, str) or not password:
        raise ConfigError(f"credentials file {path} has no password; fix or remove it")
    return password


def _gateway_users(gateway_user: str | Sequence[str], registry: Registry) -> tuple[str, ...]:
    users = (gateway_user,) if isinstance(gateway_user, str) else tuple(gateway_user)
    if not users:
        raise ConfigError("no gateway user")
    every = [name for user in users for name in (user, urgent_user(user))]
    for user in every:
        _check_user(user, registry)
    if len(set(every)) != len(every):
        raise ConfigError(f"gateway users {', '.join(users)}: each needs a name of its own, "
                          f"its urgent session's (<user>{URGENT_USER_SUFFIX}) included")
    return users


def _check_user(gateway_user: str, registry: Registry) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", gateway_user):
        raise ConfigError(f"gateway user {gateway_user!r}: expected [A-Za-z0-9_-]{{1,64}}")
    if registry.place(gateway_user) is not None:
        raise ConfigError(f"gateway user {gateway_user!r} is also a device id in the registry")


def _write_new(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never overwriting one), durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def _replace(path: Path, text: str, *, mode: int) -> None:
    """Replace ``path`` atomically with ``text`` at ``mode`` (a reader sees the old file or the
    new one, never half of one)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), mode)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
