"""Turning a valid report into a case draft: category, place, urgency. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.reports import GridReport, HotlineOrder, Inbound, InspectionFinding, RejectionReason
from contracts.values import Place, Urgency
from xiuhua.city import City


@dataclass(frozen=True)
class Draft:
    """What intake knows about a new case before it is opened."""

    category_code: str
    category_name: str
    confidence: float
    description: str
    place: Place
    urgency: Urgency


def classify(text: str, city: City) -> tuple[str, float] | None:
    """The catalogue item whose keywords the text hits most; confidence from the share of hits."""
    best: tuple[int, str] | None = None
    for item in city.catalogue.items():
        hits = sum(1 for k in item.keywords if k and k in text)
        if hits and (best is None or hits > best[0]):
            best = (hits, item.code)
    if best is None:
        return None
    return best[1], min(1.0, 0.5 + 0.25 * best[0])


def place_report(report: Inbound, city: City) -> Place | RejectionReason:
    """Where the report is, against the city's areas; a point outside the city is refused."""
    address = getattr(report, "address", None)
    loc = getattr(report, "location", None)
    if loc is not None:
        place = city.areas.place_of_point(loc.lng, loc.lat, address)
        if place is None:
            return RejectionReason(code="out_of_city", field="location", message="the point is outside the city")
        return place
    grid = getattr(report, "grid_code", None)
    if grid and grid in city.areas.by_code:
        return city.areas.place_of_area(grid, address=address)
    if address:
        for level in ("community", "street"):
            for area in city.areas.of_level(level):
                if any(n and n in address for n in (area.name, *area.aliases)):
                    return city.areas.place_of_area(area.code, address=address)
    return Place(address=address)


def draft_case(report: Inbound, city: City) -> Draft | list[RejectionReason]:
    """Category, place and urgency for a report, or why it cannot be a case."""
    if isinstance(report, HotlineOrder):
        text = f"{report.title} {report.content}"
    else:
        text = getattr(report, "description", "") or ""
    code = getattr(report, "category_code", None)
    confidence = 1.0
    if code is None or city.category(code) is None:
        if code is not None and isinstance(report, GridReport | InspectionFinding):
            return [RejectionReason(code="unknown_category", field="category_code", message=f"no category {code}")]
        found = classify(text, city)
        if found is None:
            return [RejectionReason(code="unclassified", field=None, message="no catalogue item matches the text")]
        code, confidence = found
    category = city.category(code)
    assert category is not None
    place = place_report(report, city)
    if isinstance(place, RejectionReason):
        return [place]
    urgent = category.urgency == Urgency.urgent or bool(getattr(report, "urgent", False))
    return Draft(
        category_code=category.code,
        category_name=category.name_zh,
        confidence=confidence,
        description=text[:2000],
        place=place,
        urgency=Urgency.urgent if urgent else Urgency.normal,
    )
