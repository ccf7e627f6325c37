"""The console names the notification steps of an alert's history in both languages (the
history entries `notified`, `notification_delivered`, `notification_failed`,
`notification_cancelled` that on-call notification records; their notes, as every note the
gateway writes, are shown as given)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_console_modules import console_url, page  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

ACTIONS = ["notified", "notification_delivered", "notification_failed",
           "notification_cancelled"]
LABELS = """async (actions) => {
  const i18n = await import("/console/i18n.js");
  try {
    const out = {};
    for (const lang of ["en", "zh-CN"]) {
      i18n.setLanguage(lang, { save: false });
      out[lang] = actions.map((a) => [i18n.hasLabel("history", a), i18n.label("history", a)]);
    }
    return out;
  } finally {
    i18n.setLanguage("en", { save: false });
  }
}"""


def test_notification_history_entries_are_named_in_both_languages(page: Any) -> None:  # noqa: F811
    labels = page.evaluate(LABELS, ACTIONS)
    assert [known for known, _ in labels["en"]] == [True] * 4
    assert [text for _, text in labels["en"]] == [
        "Notified", "Notification delivered", "Notification failed", "Notification not sent"]
    assert [text for _, text in labels["zh-CN"]] == ["已通知", "通知已送达", "通知失败",
                                                     "通知未发送"]
