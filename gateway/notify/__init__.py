"""On-call notification: each escalation step's notifications, queued durably and delivered.

:mod:`~gateway.notify.notifier` turns the steps the alert engine takes (its change log) into
notifications for the people on duty (:func:`alerts.plan_step`), records them in the alert's
history, queues them in an outbox of their own and delivers them, retrying, over the channels of
:mod:`~gateway.notify.channels`: a signed webhook, email (SMTP), an MQTT page. The console is
told by the alert's change on the stream.
"""

from gateway.notify.channels import (
    Channel,
    EmailChannel,
    Outcome,
    PagingChannel,
    SmtpServer,
    WebhookChannel,
    message_id,
)
from gateway.notify.notifier import Notifier
from gateway.notify.setup import (
    LINKS_FILE,
    ROSTER_FILE,
    channels_from_settings,
    link_secret,
    notifier_from_settings,
    read_oncall_file,
)

__all__ = [
    "LINKS_FILE",
    "ROSTER_FILE",
    "Channel",
    "EmailChannel",
    "Notifier",
    "Outcome",
    "PagingChannel",
    "SmtpServer",
    "WebhookChannel",
    "channels_from_settings",
    "link_secret",
    "message_id",
    "notifier_from_settings",
    "read_oncall_file",
]
