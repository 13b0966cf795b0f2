"""The city's areas (区 district / 街道 street / 社区 community / 单元网格 grid cell) from GeoJSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from shapely import STRtree
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from contracts.values import Place
from xiuhua.city.loading import CityDataError

Level = Literal["district", "street", "community", "grid"]
LEVELS: tuple[Level, ...] = ("district", "street", "community", "grid")


class AreaProps(BaseModel):
    """Properties every area feature carries."""

    model_config = ConfigDict(extra="allow")

    level: Level
    code: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1)
    parent: str | None = None
    aliases: list[str] = Field(default_factory=list, description="Other names for address matching")


@dataclass(frozen=True)
class Area:
    """One area and its boundary."""

    level: Level
    code: str
    name: str
    parent: str | None
    aliases: tuple[str, ...]
    geometry: BaseGeometry


class Areas:
    """Point-in-polygon lookup and the parent chain of every area."""

    def __init__(self, areas: list[Area]) -> None:
        self.by_code = {a.code: a for a in areas}
        self._trees: dict[str, tuple[STRtree, list[Area]]] = {}
        for level in LEVELS:
            items = [a for a in areas if a.level == level]
            if items:
                self._trees[level] = (STRtree([a.geometry for a in items]), items)

    def of_level(self, level: Level) -> list[Area]:
        """All areas of one level."""
        return [a for a in self.by_code.values() if a.level == level]

    def at(self, lng: float, lat: float, level: Level) -> Area | None:
        """The area of `level` containing the point (WGS84), if any."""
        tree = self._trees.get(level)
        if tree is None:
            return None
        idx = tree[0].query(Point(lng, lat), predicate="intersects")
        return tree[1][int(idx[0])] if len(idx) else None

    def covers(self, code: str, lng: float, lat: float) -> bool:
        """Whether a WGS84 point lies in (or on the boundary of) the area `code`."""
        area = self.by_code.get(code)
        return area is not None and bool(area.geometry.covers(Point(lng, lat)))

    def chain(self, code: str) -> dict[str, Area]:
        """The area and its ancestors by level."""
        out: dict[str, Area] = {}
        area = self.by_code.get(code)
        while area is not None and area.level not in out:
            out[area.level] = area
            area = self.by_code.get(area.parent) if area.parent else None
        return out

    def place_of_point(self, lng: float, lat: float, address: str | None = None) -> Place | None:
        """Resolve a WGS84 point to its grid, community, street and district; None outside the city."""
        for level in ("grid", "community", "street", "district"):
            area = self.at(lng, lat, level)
            if area is not None:
                return self.place_of_area(area.code, lng=lng, lat=lat, address=address)
        return None

    def place_of_area(
        self, code: str, *, lng: float | None = None, lat: float | None = None, address: str | None = None
    ) -> Place:
        """A Place for an area code (and everything above it)."""
        chain = self.chain(code)
        get = lambda lvl: chain.get(lvl)  # noqa: E731
        return Place(
            lng=lng,
            lat=lat,
            address=address,
            district_code=(d.code if (d := get("district")) else None),
            street_code=(s.code if (s := get("street")) else None),
            street_name=(s.name if s else None),
            community_code=(c.code if (c := get("community")) else None),
            community_name=(c.name if c else None),
            grid_code=(g.code if (g := get("grid")) else None),
        )


def load_areas(path: Path) -> Areas:
    """Read a GeoJSON FeatureCollection of areas; errors name the file and feature."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CityDataError(f"{path}:{exc.lineno}: {exc.msg}") from exc
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list):
        raise CityDataError(f"{path}: expected a GeoJSON FeatureCollection with 'features'")
    areas: list[Area] = []
    for i, feat in enumerate(features):
        try:
            props = AreaProps.model_validate(feat.get("properties") or {})
            geom = shape(feat["geometry"])
        except (ValidationError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CityDataError(f"{path}: features[{i}]: {exc}") from exc
        if not geom.is_valid:
            raise CityDataError(f"{path}: features[{i}] ({props.code}): invalid geometry")
        areas.append(Area(props.level, props.code, props.name, props.parent, tuple(props.aliases), geom))
    codes = {a.code for a in areas}
    if len(codes) != len(areas):
        raise CityDataError(f"{path}: duplicate area codes")
    for a in areas:
        if a.parent and a.parent not in codes:
            raise CityDataError(f"{path}: area {a.code} names unknown parent {a.parent}")
    return Areas(areas)
