"""The tools' exceptions. Configuration errors are :class:`~devices.errors.ConfigError`
(shared by every tool); :class:`EmbeddedBrokerError` is the demo's in-process broker failing
to start (a port in use, say): permanent for that run."""

from __future__ import annotations


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not start (port taken, bad address)."""
