"""Place resolution: converted coordinates, grid codes, the gazetteer on addresses and on text, outside → refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from contracts.reports import RejectionReason
from contracts.values import Place
from services.intake.cases import domain_of, place_report
from services.intake.geo import gcj02_to_bd09, wgs84_to_gcj02
from services.intake.parsing import parse_inbound

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _hotline(**over) -> bytes:
    body = {
        "order_no": "H-1",
        "received_at": "2026-11-23T09:58:00+08:00",
        "channel": "12345",
        "title": "反映问题",
        "content": "路灯不亮",
    }
    body.update(over)
    return json.dumps(body, ensure_ascii=False).encode()


def test_gcj02_and_bd09_points_are_placed_where_the_wgs84_point_is(city) -> None:
    wgs = (120.1749, 30.2598)  # close to the CD01-01 / CD01-02 boundary at 120.175: the shift matters
    gcj = wgs84_to_gcj02(*wgs)
    bd = gcj02_to_bd09(*gcj)
    places = []
    for system, (lng, lat) in (("wgs84", wgs), ("gcj02", gcj), ("bd09", bd)):
        report = parse_inbound("hotline", _hotline(location={"lng": lng, "lat": lat, "coord_system": system}), NOW)
        places.append(place_report(report, city))
    assert {p.grid_code for p in places} == {"CD01-01"}
    assert all(abs(p.lng - wgs[0]) < 1e-5 and abs(p.lat - wgs[1]) < 1e-5 for p in places)
    # Read as WGS84, the GCJ point would land in the neighbouring grid cell.
    assert city.areas.place_of_point(*gcj).grid_code == "CD01-02"


def test_address_only_reports_are_placed_by_the_gazetteer(city) -> None:
    def place(address=None, content="路灯不亮") -> Place:
        return place_report(parse_inbound("hotline", _hotline(address=address, content=content), NOW), city)

    assert place("城东街道 解放路 18 号").community_code == "CD01"
    p = place("新塘农贸市场东门")
    assert (p.grid_code, p.lng, p.lat) == ("CD02-01", 120.16, 30.275)  # a landmark gives a point
    assert place("金桥街道 解放路").street_code == "JQ"  # the street named wins over a road of another street
    assert place("桥西").community_code == "JQ02"
    routed_by_text = place(None, "湖滨公园门口的路灯不亮")
    assert routed_by_text.grid_code == "JQ03-01" and routed_by_text.address is None
    unknown = place("火星路 1 号")
    assert (unknown.street_code, unknown.address) == (None, "火星路 1 号")


def test_a_point_outside_the_city_is_refused_with_the_reason(city) -> None:
    report = parse_inbound("hotline", _hotline(location={"lng": 121.47, "lat": 31.23, "coord_system": "gcj02"}), NOW)
    reason = place_report(report, city)
    assert isinstance(reason, RejectionReason) and (reason.code, reason.field) == ("out_of_city", "location")


def test_gazetteer_hits_prefer_the_finest_area(city) -> None:
    g = domain_of(city).gazetteer
    assert g.lookup("城东街道东园社区望江公园旁").area_code == "CD03-01"  # landmark (grid) beats community
    assert g.lookup("什么地方都不是") is None
    assert g.lookup("") is None
