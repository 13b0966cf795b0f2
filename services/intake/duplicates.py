"""Duplicate reports (重复上报): which open case a new report of the same category belongs to. Pure.

Open cases are indexed by a key of category and grid cell: the plane is cut into square cells as wide as the
merge distance, so every case within that distance of a point lies in the point's cell or one of its eight
neighbours; a lookup reads the nine keys' documents in the merge directory (`open_keys`, by `_id`), then the open
cases they list. (Cells are computed in bands of one degree of
latitude; a pair straddling a whole-degree parallel is not merged — a missed merge, never a wrong one.)
Reports without coordinates merge only with an open case of the same category, area and written address.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contracts.values import Place
from services.intake.classifier import normalise
from services.intake.geo import distance_m
from xiuhua.city.intake import Duplicates, parse_duration

M_PER_DEG = 111_320.0


def mergeable(category_code: str, settings: Duplicates) -> bool:
    """Whether reports of this category may merge (the triage code and device faults usually not)."""
    for pattern in settings.exclude_categories:
        if (pattern.endswith("*") and category_code.startswith(pattern[:-1])) or category_code == pattern:
            return False
    return True


def cell(lng: float, lat: float, size_m: float) -> tuple[int, int]:
    """The cell of a WGS84 point."""
    band = math.floor(lat) + 0.5
    x = math.floor(lng * M_PER_DEG * math.cos(math.radians(band)) / size_m)
    y = math.floor(lat * M_PER_DEG / size_m)
    return x, y


def point_key(category: str, lng: float, lat: float, size_m: float) -> str:
    """The index key of an open case with a point."""
    x, y = cell(lng, lat, size_m)
    return f"{category}:{math.floor(lat)}:{x}:{y}"


def neighbour_keys(category: str, lng: float, lat: float, size_m: float) -> list[str]:
    """The keys of the point's cell and its eight neighbours."""
    x, y = cell(lng, lat, size_m)
    band = math.floor(lat)
    return [f"{category}:{band}:{x + dx}:{y + dy}" for dx in (-1, 0, 1) for dy in (-1, 0, 1)]


def lock_keys(category: str, place: Place, settings: Duplicates) -> list[str]:
    """The merge locks a lookup writes so that two instances placing near reports of one category at once conflict
    (`merge_locks`): for a point, the four blocks of 2 × 2 cells that hold its cell. Two reports can meet only in
    neighbouring cells, and any two neighbouring cells lie in one common block, so their transactions always write
    one lock in common: four writes per report where locking the nine looked-up cells took nine. Without a point,
    the address key itself.

    (Instances of an earlier version lock cells, not blocks: while both run during an upgrade, two near reports
    handled at the same moment by one of each may open two cases — a missed merge, never a wrong one.)"""
    if place.lng is not None and place.lat is not None:
        x, y = cell(place.lng, place.lat, settings.distance_m)
        band = math.floor(place.lat)
        return [f"{category}:{band}:b:{x + dx}:{y + dy}" for dx in (-1, 0) for dy in (-1, 0)]
    key = address_key(category, place)
    return [key] if key else []


def address_key(category: str, place: Place) -> str | None:
    """The index key of an open case without coordinates: category, finest area and the address as written."""
    area = place.grid_code or place.community_code or place.street_code
    if not place.address or not area:
        return None
    return f"{category}:a:{area}:{normalise(place.address)}"


def keys_of(category: str, place: Place, settings: Duplicates) -> tuple[str | None, list[str]]:
    """(the key to store a new case under, the keys to look up) for a place."""
    if place.lng is not None and place.lat is not None:
        return (
            point_key(category, place.lng, place.lat, settings.distance_m),
            neighbour_keys(category, place.lng, place.lat, settings.distance_m),
        )
    key = address_key(category, place)
    return key, [key] if key else []


@dataclass(frozen=True)
class MergeKeys:
    """A draft's merge keys, computed once: the key a new case is stored under, the keys its lookup reads, the
    locks the lookup writes; `mergeable` False for categories that never merge."""

    key: str | None
    lookup: list[str]
    locks: list[str]
    mergeable: bool


def merge_keys(category: str, place: Place, settings: Duplicates) -> MergeKeys:
    """The merge keys of a report of `category` at `place`."""
    key, lookup = keys_of(category, place, settings)
    ok = mergeable(category, settings)
    return MergeKeys(key, lookup, lock_keys(category, place, settings) if ok else [], ok)


@dataclass(frozen=True)
class Match:
    """The open case a report merges into."""

    case_id: str
    street_code: str | None
    distance_m: float | None
    reporters: int


def pick(candidates: Iterable[dict[str, Any]], place: Place, now: datetime, settings: Duplicates) -> Match | None:
    """The nearest open case within the distance that was opened within the window, if any."""
    window: timedelta = parse_duration(settings.window)
    best: Match | None = None
    for doc in candidates:
        if not doc.get("open", True):
            continue
        opened = doc.get("opened_at")
        if isinstance(opened, str):
            opened = datetime.fromisoformat(opened)
        if isinstance(opened, datetime):
            if opened.tzinfo is None:
                opened = opened.replace(tzinfo=now.tzinfo)
            if now - opened > window:
                continue
        d: float | None = None
        if place.lng is not None and place.lat is not None and doc.get("lng") is not None:
            d = distance_m(place.lng, place.lat, doc["lng"], doc["lat"])
            if d > settings.distance_m:
                continue
        if best is None or (d is not None and (best.distance_m is None or d < best.distance_m)):
            best = Match(
                doc["_id"], doc.get("street_code"), None if d is None else round(d, 1), int(doc.get("reporters", 1))
            )
    return best
