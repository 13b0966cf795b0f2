"""Merging duplicates: grid-cell keys find every open case within the distance; the window and state hold."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from contracts.values import Place
from services.intake import duplicates
from services.intake.geo import distance_m
from xiuhua.city.intake import Duplicates

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
S = Duplicates(distance_m=50, window="24h", exclude_categories=["9901", "13*"])


def _doc(case_id, lng, lat, opened=NOW, open_=True, reporters=1):
    return {
        "_id": case_id,
        "lng": lng,
        "lat": lat,
        "opened_at": opened,
        "open": open_,
        "reporters": reporters,
        "street_code": "CD",
    }


NEAR = (st.floats(120.1, 120.2), st.floats(30.25, 30.31), st.floats(0, 2 * math.pi), st.floats(0, 49.9))


def _near(lng: float, lat: float, angle: float, dist: float) -> tuple[float, float] | None:
    """The point `dist` metres from (lng, lat) in direction `angle`; None across a whole-degree band (documented
    as a missed merge: such reports never merge, so there is nothing to find or to serialise)."""
    dlat = dist * math.sin(angle) / 111_320
    dlng = dist * math.cos(angle) / (111_320 * math.cos(math.radians(lat)))
    other = (lng + dlng, lat + dlat)
    return None if math.floor(other[1]) != math.floor(lat) else other


@given(*NEAR)
def test_every_point_within_the_distance_is_in_the_nine_cells(lng, lat, angle, dist) -> None:
    if (other := _near(lng, lat, angle, dist)) is None:
        return
    stored = duplicates.point_key("0201", *other, S.distance_m)
    assert stored in duplicates.neighbour_keys("0201", lng, lat, S.distance_m)


@given(*NEAR)
def test_two_reports_that_could_merge_always_write_a_common_lock(lng, lat, angle, dist) -> None:
    # On MongoDB, two instances placing such reports at once must conflict (one retries, sees the other's case).
    if (other := _near(lng, lat, angle, dist)) is None:
        return
    mine = duplicates.lock_keys("0201", Place(lng=lng, lat=lat), S)
    theirs = duplicates.lock_keys("0201", Place(lng=other[0], lat=other[1]), S)
    assert len(mine) == len(theirs) == 4
    assert set(mine) & set(theirs)
    assert not set(mine) & set(duplicates.lock_keys("0202", Place(lng=other[0], lat=other[1]), S))


def test_far_reports_share_no_lock() -> None:
    # 300 m apart: neither can merge into a case of the other, so neither waits for the other.
    here = duplicates.lock_keys("0201", Place(lng=120.155, lat=30.255), S)
    there = duplicates.lock_keys(
        "0201", Place(lng=120.155 + 300 / (111_320 * math.cos(math.radians(30.255))), lat=30.255), S
    )
    assert not set(here) & set(there)


def test_pick_takes_the_nearest_open_case_in_distance_and_window() -> None:
    here = Place(lng=120.16, lat=30.255)
    near = _doc("C-near", 120.16025, 30.255)  # about 24 m east
    nearer_but_closed = _doc("C-closed", 120.16005, 30.255, open_=False)
    too_old = _doc("C-old", 120.16001, 30.255, opened=NOW - timedelta(hours=25))
    too_far = _doc("C-far", 120.161, 30.255)  # about 96 m
    m = duplicates.pick([too_far, too_old, nearer_but_closed, near], here, NOW, S)
    assert m is not None and m.case_id == "C-near" and 20 < m.distance_m < 30
    assert duplicates.pick([too_far, too_old], here, NOW, S) is None
    assert distance_m(120.16, 30.255, 120.161, 30.255) > 50


def test_address_keys_for_places_without_points() -> None:
    p = Place(address="解放路 18 号", street_code="CD", community_code="CD01")
    key, lookup = duplicates.keys_of("0201", p, S)
    assert key == "0201:a:CD01:解放路18号" and lookup == [key]
    assert duplicates.lock_keys("0201", p, S) == [key]
    assert duplicates.keys_of("0201", Place(), S) == (None, [])
    assert duplicates.lock_keys("0201", Place(), S) == []
    assert duplicates.pick([{"_id": "C-1", "open": True, "opened_at": NOW}], p, NOW, S).distance_m is None


def test_excluded_categories_never_merge() -> None:
    assert not duplicates.mergeable("9901", S) and not duplicates.mergeable("1301", S)
    assert duplicates.mergeable("0201", S) and duplicates.mergeable("0130", S)
