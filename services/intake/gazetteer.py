"""The gazetteer (地名库): place names in an address → an area of the city. Pure.

Names come from the city's areas (streets, communities and their aliases) and from intake.yaml's gazetteer
(roads, estates, markets, schools, landmarks). The most specific area wins (grid, then community, then street,
then district), then the longest name; a finer match that lies outside a street or a community the text also
names is dropped (for a community: a road or estate word), so 金桥街道 解放路 does not land in 城东 because 解放路 is
a 城东 road, and 新塘社区 东园路 stays in 新塘社区 although 东园路 is a road of 东园社区. A community or street named
in the report's text counts the same way against a road or estate word of its address.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.values import Place
from services.intake.classifier import normalise
from xiuhua.city import City

_RANK = {"grid": 3, "community": 2, "street": 1, "district": 0}
WEAK_KINDS = frozenset({"road", "estate"})


@dataclass(frozen=True)
class Hit:
    """A name found in an address and the area it stands for."""

    name: str
    area_code: str
    level: str
    kind: str
    lng: float | None = None
    lat: float | None = None


class Gazetteer:
    """Name lookup for one city."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.names: list[tuple[str, Hit]] = []
        for area in city.areas.by_code.values():
            if area.level in ("street", "community", "district"):
                for name in (area.name, *area.aliases):
                    if len(name) >= 2:
                        self.names.append((normalise(name), Hit(name, area.code, area.level, area.level)))
        for p in city.intake.gazetteer:
            level = city.areas.by_code[p.area].level
            for name in (p.name, *p.aliases):
                self.names.append((normalise(name), Hit(name, p.area, level, p.kind, p.lng, p.lat)))
        self.names.sort(key=lambda x: -len(x[0]))

    def hits(self, text: str) -> list[Hit]:
        """Every name found in the text (a name inside a longer found name is not counted)."""
        norm = normalise(text)
        found: list[tuple[str, Hit]] = []
        for key, hit in self.names:
            if key and key in norm and not any(key in longer for longer, _ in found if longer != key):
                found.append((key, hit))
        return [h for _, h in found]

    def lookup(self, text: str | None, context: str | None = None) -> Hit | None:
        """The best area for a text, or None; the streets and communities `context` names count as if the text
        named them (a hotline's description around its address)."""
        hits = self.hits(text) if text else []
        if context and hits:
            hits += [h for h in self.hits(context) if h.kind in ("street", "community") and h not in hits]
        if not hits:
            return None
        streets = {h.area_code for h in hits if h.kind == "street"}
        if streets:
            consistent = [h for h in hits if self._within(h.area_code, "street") in streets or h.level == "district"]
            hits = consistent or hits
        communities = {h.area_code for h in hits if h.kind == "community"}
        if communities:
            # A road or estate word is weaker than the community the text names: a road crosses communities and
            # people name the estate they mean loosely. A landmark with a point (a park, a school) still wins.
            hits = [
                h for h in hits if h.kind not in WEAK_KINDS or self._within(h.area_code, "community") in communities
            ] or hits
        return max(hits, key=lambda h: (_RANK[h.level], h.lng is not None, len(h.name)))

    def _within(self, code: str, level: str) -> str | None:
        area = self.city.areas.chain(code).get(level)
        return area.code if area else None

    def place(self, text: str | None, address: str | None, context: str | None = None) -> Place | None:
        """A Place for the best hit in `text` (the address kept as given), or None."""
        hit = self.lookup(text, context)
        if hit is None:
            return None
        if hit.lng is not None and hit.lat is not None:
            at_point = self.city.areas.place_of_point(hit.lng, hit.lat, address)
            if at_point is not None:
                return at_point
        return self.city.areas.place_of_area(hit.area_code, address=address)
