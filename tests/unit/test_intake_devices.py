"""Registered devices and places as city data: checked at start-up with file:line; metric names through a model's
aliases; what (0, 0) means; manual placement."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.reports import RejectionReason, SensorReading
from contracts.values import Location
from services.intake.cases import device_place, place_report
from services.intake.parsing import parse_inbound
from services.intake.sensors import known_values
from tests.helpers.city_files import copy_city, replace_line
from xiuhua.city import CityDataError, load_city

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_a_gazetteer_point_outside_its_area_fails_start_up_naming_the_line(tmp_path: Path) -> None:
    folder = copy_city(tmp_path)
    # 东园菜市场 (CD01-03) moved to a point in 金桥 (JQ): a case placed by its name would land in the wrong street
    line = replace_line(
        folder / "intake.yaml",
        "area: CD01-03, aliases: [东园农贸市场], lng: 120.16, lat: 30.265",
        "area: CD01-03, aliases: [东园农贸市场], lng: 120.11, lat: 30.255",
    )
    with pytest.raises(
        CityDataError,
        match=rf"intake.yaml:{line}: gazetteer\.\d+\.lng: the point \(120.11, 30.255\) "
        r"of 东园菜市场 lies outside its area CD01-03",
    ):
        load_city(folder)


def test_a_gazetteer_point_on_its_area_boundary_is_inside(city, tmp_path: Path) -> None:
    area = city.areas.by_code["CD01-03"]
    minx, miny, _, _ = area.geometry.bounds
    assert city.areas.covers("CD01-03", minx, miny + 0.001) is True  # on the western edge
    assert city.areas.covers("CD01-03", minx - 1e-9, miny + 0.001) is False


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("model: YC-3000, mn", "model: NOPE, mn", "devices.0.model", "unknown model NOPE"),
        (
            'mn: "33010020260002"',
            'mn: "33010020260001"',
            "devices.1.mn",
            "MN 33010020260001 is also device DUST-JQ-0203",
        ),
        ("lng: 120.11, lat: 30.285", "lng: 116.39, lat: 39.9", "devices.0.lng", "outside the city's areas"),
        ('password: "654321", ', "", "devices.1.password", "needs its access password"),
        ("{id: SDS-CD-0101,", "{id: DUST-JQ-0203,", "devices.3.id", "duplicate device id DUST-JQ-0203"),
    ],
)
def test_devices_yaml_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, message: str
) -> None:
    folder = copy_city(tmp_path)
    line = replace_line(folder / "devices.yaml", old, new)
    with pytest.raises(CityDataError) as info:
        load_city(folder)
    assert str(info.value).startswith(f"{folder / 'devices.yaml'}:{line}: {field}: ")
    assert message in str(info.value)


def test_unknown_metric_names_are_refused_with_every_name_unless_a_model_maps_them(city) -> None:
    dust = city.intake.sensors["dust"]
    refused = known_values(dust, "dust", {"P1": 1999.9, "P2": 327.5}, {})
    assert isinstance(refused, RejectionReason) and refused.code == "unknown_metric"
    assert refused.field == "values.P1" and "do not have P1, P2" in refused.message
    sds = city.devices.models["SDS011"]
    assert known_values(dust, "dust", {"P1": 1999.9, "P2": 327.5}, sds.aliases) == {"pm10": 1999.9, "pm25": 327.5}
    half = known_values(dust, "dust", {"P1": 10.0, "rssi": -70}, sds.aliases)
    assert isinstance(half, RejectionReason) and half.field == "values.rssi" and "P1" not in half.message
    assert known_values(dust, "dust", {"pm10": 1.0, "temperature": 3.0, "status": "ok"}, {}) == {
        "pm10": 1.0,
        "temperature": 3.0,
        "status": "ok",
    }
    empty = known_values(dust, "dust", {}, {})
    assert isinstance(empty, RejectionReason) and (empty.code, empty.field) == ("no_metric", "values")


def _reading(**over) -> SensorReading:
    body = {
        "device_id": "DUST-JQ-0203",
        "device_type": "dust",
        "measured_at": "2026-11-23T09:58:00+08:00",
        "values": {"pm10": 1.0},
    }
    body.update(over)
    out = parse_inbound("sensor", json.dumps(body, ensure_ascii=False).encode(), NOW)
    assert isinstance(out, SensorReading), out
    return out


def test_a_reading_without_a_point_is_placed_by_its_device_then_its_site_then_by_hand(city) -> None:
    registered = device_place(_reading(), city)
    assert (registered.placed_by, registered.grid_code, registered.lng) == ("device", "JQ02-03", 120.11)
    site = device_place(_reading(device_id="DUST-X", site_id="桥西工地"), city)
    assert (site.placed_by, site.grid_code) == ("gazetteer", "JQ02-03")
    nowhere = device_place(_reading(device_id="DUST-X", site_id="某工地"), city)
    assert (nowhere.placed_by, nowhere.street_code, nowhere.address) == ("manual", None, "某工地")


def test_zero_zero_is_no_point_on_every_source(city) -> None:
    assert not Location(lng=0, lat=0).given and Location(lng=0, lat=0.000001).given
    body = {
        "order_no": "H-1",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "反映",
        "content": "路灯不亮",
        "address": "东园菜市场门口",
        "location": {"lng": 0, "lat": 0},
    }
    hotline = parse_inbound("hotline", json.dumps(body, ensure_ascii=False).encode(), NOW)
    placed = place_report(hotline, city)
    assert (placed.placed_by, placed.grid_code) == ("gazetteer", "CD01-03")  # the address, not the Gulf of Guinea
    body["location"] = {"lng": 0.0001, "lat": 0}
    refused = place_report(parse_inbound("hotline", json.dumps(body, ensure_ascii=False).encode(), NOW), city)
    assert isinstance(refused, RejectionReason) and refused.code == "out_of_city"
