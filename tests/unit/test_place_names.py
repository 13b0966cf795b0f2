"""Places by name: what alerts and the bulletin say instead of codes and coordinates, and which area a text that
names a community lands in."""

from __future__ import annotations

from contracts.values import Place
from services.intake.cases import domain_of, place_report
from services.notify.bulletin.content import UNPLACED, hot_spots
from xiuhua.city.place_names import NEAR_M, describe, map_link, nearest_landmark


def test_a_point_is_named_by_street_community_grid_and_the_nearest_landmark(city) -> None:
    place = city.areas.place_of_point(120.161, 30.2655)
    assert describe(place, city) == "城东街道 东园社区 东园社区第3网格，东园菜市场附近（约 110 米）"
    assert map_link(place) == (
        "https://www.openstreetmap.org/?mlat=30.265500&mlon=120.161000#map=18/30.265500/120.161000"
    )


def test_a_landmark_counts_only_within_its_distance(city) -> None:
    # 东园菜市场 is at (120.16, 30.265); one degree of latitude is about 111 km.
    inside = nearest_landmark(city, 120.16, 30.265 + (NEAR_M - 5) / 111_195)
    outside = nearest_landmark(city, 120.16, 30.265 + (NEAR_M + 5) / 111_195)
    assert inside is not None and inside[0] == "东园菜市场"
    assert outside is None or outside[0] != "东园菜市场"


def test_an_area_or_an_address_alone_and_nothing_at_all(city) -> None:
    assert describe(city.areas.place_of_area("CD02", address="新塘路 5 号"), city) == "城东街道 新塘社区（新塘路 5 号）"
    assert describe(Place(address="解放路 18 号"), city) == "解放路 18 号"
    assert describe(Place(), city) == UNPLACED and describe(None, city) == UNPLACED
    assert map_link(Place(street_code="CD")) is None


def test_a_community_named_in_the_text_outranks_a_road_word_of_another_community(city) -> None:
    g = domain_of(city).gazetteer
    for text in ("新塘社区东园路", "东园路新塘社区"):
        assert g.lookup(text).area_code == "CD02", text
    assert g.lookup("东园路").area_code == "CD01"  # the road alone still places the case
    assert g.lookup("东园路", context="新塘社区居民反映垃圾").area_code == "CD02"  # the hotline's text names it
    assert g.lookup("东园路", context="居民反映垃圾").area_code == "CD01"
    # An estate word too; a landmark with a point still wins (the finest place named).
    assert g.lookup("新塘社区东园小区").area_code == "CD02"
    assert g.lookup("城东街道东园社区望江公园旁").area_code == "CD03-01"


def test_a_hotline_report_with_a_road_address_lands_in_the_community_its_text_names(city) -> None:
    from contracts.reports import HotlineOrder

    example = HotlineOrder.example()
    ticket = HotlineOrder.model_validate({**example, "address": "东园路", "location": None})
    placed = place_report(ticket, city, text="新塘社区东园路口垃圾堆了三天")
    assert isinstance(placed, Place) and placed.community_code == "CD02" and placed.address == "东园路"


def test_cases_without_a_place_are_their_own_row_never_the_top_hot_spot() -> None:
    this = [
        {"key": "-", "count": 91},
        {"key": "CD01-03", "label": "CD01-03", "count": 5},
        {"key": "CD02-01", "label": "CD02-01", "count": 7},
    ]
    names = {"CD01-03": "东园社区第3网格", "CD02-01": "新塘社区第1网格"}
    rows = hot_spots(this, [{"key": "-", "count": 40}], names, with_code=True)
    assert [(r.label, r.value, r.previous) for r in rows] == [
        ("新塘社区第1网格（CD02-01）", 7, 0),
        ("东园社区第3网格（CD01-03）", 5, 0),
        (UNPLACED, 91, 40),
    ]
