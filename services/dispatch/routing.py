"""Choosing the lead and cooperating units for a case from the city's rule table. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from contracts.values import Place, UnitRef
from xiuhua.city import City
from xiuhua.city.categories import Category
from xiuhua.city.routing import Assignee, Rule


@dataclass(frozen=True)
class CaseFacts:
    """What routing looks at."""

    category_code: str
    place: Place
    source: str
    urgency: str
    at: datetime


@dataclass
class Decision:
    """The chosen units and why."""

    rule_id: str
    lead: UnitRef
    cooperating: list[UnitRef]
    reasons: list[str] = field(default_factory=list)


class NoUnit(LookupError):
    """No unit of the needed role is responsible for the place."""


def _in_hours(window: str, at: datetime, tz: ZoneInfo) -> bool:
    start_s, end_s = window.split("-")
    start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
    now = at.astimezone(tz).time()
    return start <= now < end if start < end else (now >= start or now < end)


def _place_codes(place: Place) -> list[str]:
    return [c for c in (place.grid_code, place.community_code, place.street_code, place.district_code) if c]


def specificity(rule: Rule, facts: CaseFacts, tz: ZoneInfo) -> tuple[int, ...] | None:
    """How specifically a rule matches (higher wins), or None if it does not."""
    m = rule.match
    cat = 0
    if m.categories:
        exact = facts.category_code in m.categories
        prefix = max(
            (len(p) - 1 for p in m.categories if p.endswith("*") and facts.category_code.startswith(p[:-1])),
            default=-1,
        )
        if not exact and prefix < 0:
            return None
        cat = 100 if exact else 10 + prefix
    area = 0
    if m.areas:
        codes = _place_codes(facts.place)
        hit = [4 - codes.index(a) for a in m.areas if a in codes]
        if not hit:
            return None
        area = max(hit)
    if m.sources and facts.source not in m.sources:
        return None
    if m.urgency and facts.urgency != m.urgency:
        return None
    if m.hours and not _in_hours(m.hours, facts.at, tz):
        return None
    return (cat, area, int(bool(m.sources)), int(bool(m.urgency)), int(bool(m.hours)), rule.priority)


def resolve(a: Assignee, place: Place, city: City, exclude: set[str]) -> UnitRef:
    """A unit for an assignee: the named unit, or the unit of that role responsible for the place (属地)."""
    if a.unit:
        return city.units[a.unit].ref()
    codes = _place_codes(place)
    candidates = [u for u in city.units_with_role(a.role or "") if u.id not in exclude]
    for code in codes:  # most specific area first: grid, community, street, district
        for unit in candidates:
            if code in unit.areas:
                return unit.ref()
    raise NoUnit(f"no {a.role} unit for {codes or 'an unplaced case'}")


def route(facts: CaseFacts, city: City, *, exclude: set[str] | None = None) -> Decision:
    """The winning rule's lead and cooperating units; the command centre when nobody fits."""
    exclude = exclude or set()
    tz = ZoneInfo(city.calendar.timezone)
    category: Category | None = city.category(facts.category_code)
    scored = [(s, r) for r in city.routing.rules if (s := specificity(r, facts, tz)) is not None]
    scored.sort(key=lambda x: x[0], reverse=True)
    for score, rule in scored:
        lead_a = rule.lead or (Assignee(role=category.lead_role) if category else None)
        if lead_a is None:
            continue
        try:
            lead = resolve(lead_a, facts.place, city, exclude)
        except NoUnit:
            continue
        coop_as = rule.cooperating if rule.cooperating is not None else [
            Assignee(role=r) for r in (category.cooperating_roles if category else [])
        ]
        coop = []
        for a in coop_as:
            try:
                u = resolve(a, facts.place, city, set())
            except NoUnit:
                continue
            if u.unit_id != lead.unit_id and u not in coop:
                coop.append(u)
        return Decision(rule.id, lead, coop, [f"rule {rule.id} matched with specificity {score}"])
    centre = next(iter(city.units_with_role("command_centre")), None)
    if centre is None:
        raise NoUnit("no rule fits and the city has no command_centre unit")
    return Decision("manual-triage", centre.ref(), [], ["no rule fits: the command centre assigns by hand"])
