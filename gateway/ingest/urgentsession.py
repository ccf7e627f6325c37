"""The urgent session: a second MQTT session that carries only emergency button and fall events.

A broker delivers one session's messages in order, so on the main session a press published
behind a backlog (a flood of devices, a gateway restarting after an outage) is read only after
everything queued before it: seconds in the flood benchmark, whatever the urgent lane does once
it is read. The urgent session (client id ``<mqtt_client_id>-urgent``, persistent like the main
one: clean start off, QoS 1, the same session expiry) subscribes to the button and fall events
of the main subscription only (:func:`urgent_filters`), so the broker queues nothing else for
it and hands it a press at once.

Both sessions deliver every such event. The first copy reaches the alert rules
(:meth:`Pipeline.process_urgent <gateway.ingest.pipeline.Pipeline.process_urgent>`); the main
session's copy is the one stored, once, and acknowledged with its batch
(:mod:`gateway.ingest.checkpoint`); the urgent session's copy is acknowledged once the alert
changes it caused are committed (:class:`gateway.runtime.Gateway`). Either session down, the
other still raises the alert; the main one down, the press is stored when it is back.

With a shared subscription (``$share/<group>/...``) the broker chooses one member of the group
per message for each filter on its own, so the two copies of a call could reach two gateways
and open two alerts: the urgent session is then not used (:func:`urgent_filters` answers
nothing).
"""

from __future__ import annotations

from typing import Final

from devices import SUBSCRIPTION, URGENT_KINDS, Channel

URGENT_SUFFIX: Final = "-urgent"

_LEVELS: Final = 7
"""``homecare/v1/{site}/{bed}/{kind}/{device}/{channel}``"""
_ROOT: Final = SUBSCRIPTION.split("/")[:-1]
"""``homecare``, ``v1``: the contract's levels before the site."""


def urgent_client_id(client_id: str) -> str:
    """The urgent session's client id, derived from the main one's.

    >>> urgent_client_id("homecare-gateway")
    'homecare-gateway-urgent'
    """
    return client_id + URGENT_SUFFIX


def is_shared(subscription: str) -> bool:
    """Whether ``subscription`` is a shared subscription (``$share/<group>/<filter>``)."""
    return subscription.startswith("$share/")


_URGENT_KIND_NAMES: Final = frozenset(kind.value for kind in URGENT_KINDS)


def is_urgent_topic(topic: str | bytes) -> bool:
    """Whether ``topic`` is a button or fall event, the only topics the urgent session
    subscribes to. Anything else reaching it means the broker gave it the main session (a
    broker that makes the user name the client id, both sessions under one user): its
    telemetry must not be taken there, where nothing is stored.

    >>> is_urgent_topic("homecare/v1/s/b/button/btn-1/event")
    True
    >>> is_urgent_topic("homecare/v1/s/b/infrared/ir-1/telemetry")
    False
    >>> is_urgent_topic("homecare/v1/s/b/fall/f-1/status")
    False
    """
    if not isinstance(topic, str):
        return False  # not UTF-8: no filter of the urgent session matches it
    levels = topic.split("/")
    return (len(levels) == _LEVELS and levels[:2] == _ROOT and levels[4] in _URGENT_KIND_NAMES
            and levels[6] == Channel.EVENT.value)


def urgent_filters(subscription: str) -> list[str]:
    """The filters that match exactly the button and fall events ``subscription`` matches;
    empty when it matches none, or is shared (:func:`is_shared`).

    >>> urgent_filters("homecare/v1/#")
    ['homecare/v1/+/+/button/+/event', 'homecare/v1/+/+/fall/+/event']
    >>> urgent_filters("homecare/v1/site-01/#")
    ['homecare/v1/site-01/+/button/+/event', 'homecare/v1/site-01/+/fall/+/event']
    >>> urgent_filters("homecare/v1/+/+/infrared/#")
    []
    >>> urgent_filters("$share/gateways/homecare/v1/#")
    []
    """
    if is_shared(subscription) or subscription.startswith("$"):
        return []
    levels = subscription.split("/")
    out = []
    for kind in sorted(URGENT_KINDS):
        pattern = [*_ROOT, "+", "+", kind.value, "+", Channel.EVENT.value]
        common = _intersect(levels, pattern)
        if common is not None:
            out.append("/".join(common))
    return out


def _intersect(levels: list[str], pattern: list[str]) -> list[str] | None:
    """The filter matching the topics both match (``pattern``: literals and ``+`` only, of
    :data:`_LEVELS` levels), or None when no topic matches both."""
    out: list[str] = []
    for i, wanted in enumerate(pattern):
        if i >= len(levels):
            return None  # the subscription has fewer levels and no '#'
        level = levels[i]
        if level == "#":
            return out + pattern[i:]
        if level == "+":
            out.append(wanted)
        elif wanted in ("+", level):
            out.append(level)
        else:
            return None
    if len(levels) == _LEVELS or (len(levels) == _LEVELS + 1 and levels[-1] == "#"):
        return out  # a trailing '#' also matches its parent level
    return None
