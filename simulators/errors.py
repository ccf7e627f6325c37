"""The simulators' exceptions. :class:`ConfigError` (bad options: permanent, the message names
the option) is the one of :mod:`devices.errors`, shared with the gateway; :class:`MqttError`
(the broker refused a device or the connection failed) is retried by a device that
reconnects, and ends a run that does not."""

from __future__ import annotations

from devices.errors import ConfigError

__all__ = ["ConfigError", "MqttError"]


class MqttError(Exception):
    """The broker refused us or the connection failed."""
