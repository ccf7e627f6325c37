"""The broker URL every device and the gateway are given: one parser for both sides.

``mqtt://[user:pass@]host[:port]`` (port 1883) or ``mqtts://`` for TLS (port 8883); ``tcp://``
and ``ssl://`` are accepted as their aliases. User name and password are percent-decoded.

>>> BrokerUrl.parse("mqtts://gw%40site:s3cret@hub.local")
BrokerUrl(host='hub.local', port=8883, tls=True, username='gw@site', password='s3cret')
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS: Final = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """The parts of a broker URL (see the module docstring)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Raises :class:`ValueError` saying what is wrong with ``url``."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"scheme must be mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        return cls(host=parts.hostname, port=port, tls=parts.scheme in ("mqtts", "ssl"),
                   username=unquote(parts.username) if parts.username is not None else None,
                   password=unquote(parts.password) if parts.password is not None else None)

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context verifying the broker with the system's CAs, or ``None`` without TLS."""
        return ssl.create_default_context() if self.tls else None
