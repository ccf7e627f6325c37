"""An in-process MQTT broker for the zero-setup demo (``homecare demo``).

Deployments and tests use Eclipse Mosquitto (DESIGN.md, "Real components"); this broker only
exists so that the demo runs on a machine with nothing installed. It is amqtt (MQTT 3.1.1:
QoS 0/1/2, retained messages, last wills) listening on loopback, anonymous, without
persistence: whatever it holds is gone when the context exits.

>>> async def demo() -> None:
...     async with EmbeddedBroker() as broker:
...         print(broker.url)          # mqtt://127.0.0.1:<free port>
"""

from __future__ import annotations

import asyncio
import logging
import socket
from types import TracebackType
from typing import Any, Final

from amqtt.broker import Broker

from homecare.errors import EmbeddedBrokerError

log = logging.getLogger("homecare.demo")

SHUTDOWN_S: Final = 10.0
"""How long the broker's shutdown may take before it is left to the event loop's end."""

_PLUGINS = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
"""Only anonymous auth: amqtt's default packet logger and $SYS publisher cost time per message
and add nothing to a demo."""


class EmbeddedBroker:
    """Async context manager: an amqtt broker on ``host:port`` (``port=0``: a free port).

    ``quiet`` raises amqtt's loggers to ERROR: it logs every connection at INFO and
    harmless shutdown and acknowledgement chatter at WARNING.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, quiet: bool = True) -> None:
        if not 0 <= port <= 65_535:
            raise ValueError("port must be between 0 and 65535")
        self.host = host
        self.port = port
        self.quiet = quiet
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> EmbeddedBroker:
        if self.quiet:
            for name in ("amqtt", "transitions"):
                logging.getLogger(name).setLevel(logging.ERROR)
        if self.port == 0:
            self.port = _free_port(self.host)
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": dict(_PLUGINS),
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps everything in BrokerError; keep the cause
            raise EmbeddedBrokerError(
                f"embedded broker could not listen on {self.host}:{self.port}: {exc}") from exc
        self._broker = broker
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            # Bounded: amqtt's shutdown waits on its client sessions, and one stuck session
            # (seen once in a loaded test run: the worker spun in the broker's client loop
            # for minutes) must not hang the demo's stop or a test.
            try:
                await asyncio.wait_for(broker.shutdown(), timeout=SHUTDOWN_S)
            except TimeoutError:
                log.warning("embedded_broker.shutdown_timeout seconds=%.0f; left to the event "
                            "loop's end", SHUTDOWN_S)


def _free_port(host: str) -> int:
    # A port the OS just handed out; a race with another process is possible but unlikely on
    # loopback, and start-up then fails with a clear EmbeddedBrokerError.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
