"""The settings of service records and the supervision report: from the file or the
environment, a bad one named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import Settings


def test_institutions_and_the_settle_time_come_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMECARE_SERVICE_INSTITUTIONS", "site-01=care-north, site-02=care-north")
    monkeypatch.setenv("HOMECARE_SERVICE_RECORD_SETTLE_S", "900")
    settings = Settings()
    assert settings.service_institutions == ("site-01=care-north", "site-02=care-north")
    assert settings.service_record_settle_s == 900.0


@pytest.mark.parametrize(("values", "named"), [
    ({"service_institutions": ("site-01",)}, "site=institution"),
    ({"service_institutions": ("a=b", "a=c")}, "given twice"),
    ({"service_record_settle_s": 10}, "service_record_settle_s"),
])
def test_a_bad_value_is_named(values: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(**values)  # type: ignore[arg-type]
