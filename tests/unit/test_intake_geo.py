"""Coordinate conversion against published reference values (the coordtransform test vectors, Beijing)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from services.intake import geo

# wgs84togcj02 / gcj02tobd09 / bd09togcj02 (116.404, 39.915), as published with the widely used
# coordtransform implementations (wandergis/coordtransform README).
WGS = (116.404, 39.915)
GCJ_OF_WGS = (116.41024449916938, 39.91640428150164)
BD_OF_GCJ = (116.41036949371029, 39.92133699351021)
GCJ_OF_BD = (116.39762729119315, 39.90865673957631)
BD_OF_WGS = (116.41662724378733, 39.922699552216216)
ONE_STEP_WGS_OF_GCJ = (116.39775550083061, 39.91359571849836)  # the crude inverse other libraries publish


def _close(a: tuple[float, float], b: tuple[float, float], eps: float = 1e-9) -> bool:
    return abs(a[0] - b[0]) < eps and abs(a[1] - b[1]) < eps


def test_forward_transforms_match_the_reference_values() -> None:
    assert _close(geo.wgs84_to_gcj02(*WGS), GCJ_OF_WGS)
    assert _close(geo.gcj02_to_bd09(*WGS), BD_OF_GCJ)
    assert _close(geo.bd09_to_gcj02(*WGS), GCJ_OF_BD)
    assert _close(geo.gcj02_to_bd09(*geo.wgs84_to_gcj02(*WGS)), BD_OF_WGS)


def test_iterative_gcj02_inverse_is_under_a_millimetre_where_one_step_is_metres_off() -> None:
    back = geo.gcj02_to_wgs84(*GCJ_OF_WGS)
    assert geo.distance_m(*back, *WGS) < 0.001
    # The one-step inverse of a GCJ point (what many libraries return) is off by about a metre or more.
    one_step = geo.gcj02_to_wgs84(*WGS)
    assert geo.distance_m(*one_step, *ONE_STEP_WGS_OF_GCJ) < 5.0


def test_bd09_to_wgs84_recovers_the_gps_point() -> None:
    # The published BD-09 inverse is itself approximate (about 0.1 m): still well under a metre.
    assert geo.distance_m(*geo.bd09_to_wgs84(*BD_OF_WGS), *WGS) < 0.5
    assert geo.to_wgs84(*BD_OF_WGS, "bd09") == geo.bd09_to_wgs84(*BD_OF_WGS)
    assert geo.to_wgs84(1.0, 2.0, "wgs84") == (1.0, 2.0)


def test_outside_china_is_not_shifted() -> None:
    assert geo.wgs84_to_gcj02(-0.1276, 51.5072) == (-0.1276, 51.5072)
    assert geo.gcj02_to_wgs84(-0.1276, 51.5072) == (-0.1276, 51.5072)


@given(st.floats(73.0, 135.0), st.floats(18.0, 53.0))
def test_gcj02_round_trip_is_under_one_metre_everywhere_in_china(lng: float, lat: float) -> None:
    back = geo.gcj02_to_wgs84(*geo.wgs84_to_gcj02(lng, lat))
    assert geo.distance_m(*back, lng, lat) < 1.0


def test_the_gcj_shift_near_the_demo_city_is_hundreds_of_metres() -> None:
    shifted = geo.wgs84_to_gcj02(120.16, 30.255)
    assert 300 < geo.distance_m(*shifted, 120.16, 30.255) < 800


def test_distance_is_haversine() -> None:
    assert math.isclose(geo.distance_m(0, 0, 0, 1), 111195, rel_tol=1e-3)
    assert geo.distance_m(120.16, 30.255, 120.16, 30.255) == 0.0
