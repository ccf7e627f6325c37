"""systemd's service notifications (``sd_notify``): ready, status, stopping, and the watchdog.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, a unix datagram socket, and waits for
``READY=1`` before it counts the service as started; with ``WatchdogSec=`` it also passes
``$WATCHDOG_USEC`` and kills (then, with ``Restart=``, restarts) a service that does not send
``WATCHDOG=1`` within that time. The protocol is newline-separated ``KEY=value`` lines in one
datagram, so this is a few lines on the standard library's socket, not a dependency.

The watchdog is fed by a task on the gateway's event loop (:meth:`Notifier.feed_watchdog`),
never by a thread: a loop that hangs (a blocking call, a livelock) stops feeding it, and
systemd restarts the gateway. Notifications never raise: outside systemd there is no notifier
(:meth:`Notifier.from_environ` returns None), and a socket that cannot be written to is logged
once.

>>> Notifier.from_environ({}) is None
True
>>> Notifier.from_environ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000"}).watchdog_s
30.0
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from typing import Final

log = logging.getLogger("homecare.sdnotify")

FEEDS_PER_PERIOD: Final = 3
"""``WATCHDOG=1`` is sent this many times per watchdog period (systemd's advice: at least
twice), so one late wake-up of a busy loop does not get the gateway killed."""


class Notifier:
    """Sends notifications to systemd's socket at ``address`` (a path, or ``@name`` for the
    abstract namespace)."""

    def __init__(self, address: str, *, watchdog_s: float | None = None) -> None:
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_s
        """The watchdog period systemd enforces, or None when it watches nothing."""
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier | None:
        """The notifier systemd asks for in ``environ`` (default: the process environment),
        or None when the process was not started by systemd with ``Type=notify``."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return None
        watchdog_s = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog_s = int(usec) / 1_000_000
        return cls(address, watchdog_s=watchdog_s)

    def send(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False (logged once) when it fails."""
        data = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(data, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("sdnotify.failed socket=%s error=%s: %s; systemd does not hear "
                            "from the gateway (readiness, watchdog)", self.address.lstrip("\0"),
                            type(exc).__name__, exc)
            return False
        if self._failed:
            self._failed = False
            log.info("sdnotify.resumed socket=%s", self.address.lstrip("\0"))
        return True

    def ready(self, status: str | None = None) -> bool:
        """The service is up: systemd starts what waits for it."""
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """A line for ``systemctl status``."""
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        """The service is shutting down (on its own or asked to)."""
        return self.send("STOPPING=1")

    async def feed_watchdog(self) -> None:
        """Send ``WATCHDOG=1`` from the running event loop, :data:`FEEDS_PER_PERIOD` times per
        period, until cancelled; returns at once when systemd watches nothing."""
        if self.watchdog_s is None:
            return
        interval = self.watchdog_s / FEEDS_PER_PERIOD
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
