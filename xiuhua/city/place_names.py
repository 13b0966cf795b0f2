"""Places as people say them (地点描述): street, community, grid cell name, the nearest landmark, the address, and a
map link in addition to — never instead of — the names. Pure.

Alerts and bulletin lines read these instead of codes or bare coordinates: a manhole-tilt alarm placed by its
point alone says 城东街道 东园社区 东园社区第3网格, 东园菜市场附近 (about 40 m), not (120.16, 30.265).
"""

from __future__ import annotations

import math

from contracts.values import Place
from xiuhua.city import City

NEAR_M = 500.0  # a landmark further than this does not describe a point
UNPLACED = "未定位 unplaced"


def _metres(lng1: float, lat1: float, lng2: float, lat2: float) -> float:
    """Distance on the sphere (haversine), metres."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def nearest_landmark(city: City, lng: float, lat: float) -> tuple[str, float] | None:
    """The gazetteer entry with a point nearest to (lng, lat) within NEAR_M: (name, metres), or None."""
    best: tuple[str, float] | None = None
    for p in city.intake.gazetteer:
        if p.lng is None or p.lat is None:
            continue
        d = _metres(lng, lat, p.lng, p.lat)
        if d <= NEAR_M and (best is None or d < best[1]):
            best = (p.name, d)
    return best


def area_name(city: City, code: str | None) -> str:
    """An area's name (a grid cell's too), or the code when the city has no such area; '' for none."""
    if not code:
        return ""
    area = city.areas.by_code.get(code)
    return area.name if area else code


def describe(place: Place | None, city: City) -> str:
    """The place in words: street, community, grid cell name, nearest landmark, address; UNPLACED for nothing."""
    if place is None:
        return UNPLACED
    parts = [
        place.street_name or area_name(city, place.street_code),
        place.community_name or area_name(city, place.community_code),
    ]
    parts.append(area_name(city, place.grid_code))
    words = " ".join(p for p in parts if p)
    if place.lng is not None and place.lat is not None:
        near = nearest_landmark(city, place.lng, place.lat)
        if near is not None:
            words += f"，{near[0]}附近（约 {round(near[1] / 10) * 10:.0f} 米）"
    if place.address and place.address not in words:
        words = f"{words}（{place.address}）" if words else place.address
    return words or UNPLACED


def map_link(place: Place | None) -> str | None:
    """A map link for a place with a point (WGS84, OpenStreetMap), else None."""
    if place is None or place.lng is None or place.lat is None:
        return None
    return f"https://www.openstreetmap.org/?mlat={place.lat:.6f}&mlon={place.lng:.6f}#map=18/{place.lat:.6f}/{place.lng:.6f}"
