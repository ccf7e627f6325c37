"""The exceptions of the device contract: all of them mean "this input breaks the contract".

None is retryable: the same input fails the same way. Each carries what was wrong in its
message (and, for topics, a short machine-readable ``reason`` for dead letters and metrics).

* :class:`TopicError`: a topic outside the scheme ``homecare/v1/{site}/{bed}/{kind}/{device}/
  {channel}``;
* :class:`RegistryError`: a bed/device registry file that cannot be used;
* :class:`ProtocolError`: a broker sent MQTT bytes this client cannot accept;
* :class:`ConfigError`: configuration that cannot work (the gateway's settings, a simulator's
  options): the message names the setting. Shared, so a tool that runs both reports both alike.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """Configuration that cannot work; the message names the setting (and, for the gateway,
    its environment variable)."""


class TopicError(ValueError):
    """A topic outside the contract. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the offending key. One error may
    carry every problem found in the file (:attr:`problems`, each naming its key), so that a
    check reports them all at once."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems else [message]


class ProtocolError(Exception):
    """The broker sent something this client cannot accept."""
