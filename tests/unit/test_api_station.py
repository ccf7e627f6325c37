"""``/api/v1/station``: the care station's time zone, which the console shows times in."""

from __future__ import annotations

from pathlib import Path

from devices.registry import Registry
from tests.unit.test_api_app import build


async def test_station_zone_is_the_registry_default_else_the_gateway_setting(
        tmp_path: Path) -> None:
    registry = Registry.from_mapping({"defaults": {"timezone": "Asia/Shanghai"}, "sites": {}})
    api = build(tmp_path / "a", registry=registry, timezone="Europe/Berlin")
    response = await api.client.get("/api/v1/station", headers=api.auth("viewer"))
    assert response.status_code == 200, response.text
    assert response.json() == {"timezone": "Asia/Shanghai"}
    await api.client.aclose()

    api = build(tmp_path / "b", timezone="Asia/Shanghai")
    body = (await api.client.get("/api/v1/station", headers=api.auth("viewer"))).json()
    assert body == {"timezone": "Asia/Shanghai"}
    await api.client.aclose()

    api = build(tmp_path / "c")
    body = (await api.client.get("/api/v1/station", headers=api.auth("viewer"))).json()
    assert body == {"timezone": None}
    assert (await api.client.get("/api/v1/station")).status_code == 401
    await api.client.aclose()
