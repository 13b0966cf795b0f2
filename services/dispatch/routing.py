"""Choosing the lead and cooperating units for a case from the city's rule table (派遣规则). Pure.

The most specific matching rule wins: an exact category code beats a longer prefix beats a shorter prefix beats
no category condition; then the most specific place (grid > community > street > district); then a source, an
urgency and a time-of-day condition; then `priority`. A rule whose lead cannot be resolved for the place (no
unit of that role there, or the unit returned the case) gives way to the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo

from contracts.values import Place, UnitRef, Urgency
from xiuhua.city import City, CityDataError
from xiuhua.city.categories import Category
from xiuhua.city.loading import line_of
from xiuhua.city.routing import Assignee, Rule

MANUAL_TRIAGE = "manual-triage"
LOW_CONFIDENCE = "low-confidence"
MAX_RETURNS = "max-returns"
MANUAL = "manual"  # 人工派遣: the command centre named the unit (cmd.v1.case.assign)


@dataclass(frozen=True)
class CaseFacts:
    """What routing looks at."""

    category_code: str
    place: Place
    source: str
    urgency: str
    at: datetime
    confidence: float = 1.0


@dataclass
class Decision:
    """The chosen units and why."""

    rule_id: str
    lead: UnitRef
    cooperating: list[UnitRef]
    reasons: list[str] = field(default_factory=list)


@dataclass
class RuleCheck:
    """One rule against one case: whether it matches, how specifically, and why (for `xiuhua explain`)."""

    rule: Rule
    specificity: tuple[int, ...] | None
    reasons: list[str]

    @property
    def matches(self) -> bool:
        """True when every condition of the rule holds."""
        return self.specificity is not None


class NoUnit(LookupError):
    """No unit of the needed role is responsible for the place."""


def _in_hours(window: str, at: datetime, tz: ZoneInfo) -> bool:
    start_s, end_s = window.split("-")
    start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
    now = at.astimezone(tz).time()
    return start <= now < end if start < end else (now >= start or now < end)


def _place_codes(place: Place) -> list[str]:
    return [c for c in (place.grid_code, place.community_code, place.street_code, place.district_code) if c]


def category_matches(patterns: list[str], code: str) -> int:
    """How well `code` matches code/prefix patterns: 100 exact, 10 + prefix length for `08*`, -1 none."""
    if code in patterns:
        return 100
    prefix = max((len(p) - 1 for p in patterns if p.endswith("*") and code.startswith(p[:-1])), default=-1)
    return 10 + prefix if prefix >= 0 else -1


def check(rule: Rule, facts: CaseFacts, tz: ZoneInfo) -> RuleCheck:
    """Evaluate every condition of a rule and say why it holds or not."""
    m = rule.match
    reasons: list[str] = []
    ok = True
    cat = 0
    if m.categories:
        cat = category_matches(m.categories, facts.category_code)
        if cat < 0:
            ok = False
            reasons.append(f"category {facts.category_code} not in {m.categories}")
            cat = 0
        else:
            kind = "exactly" if cat == 100 else "by prefix"
            reasons.append(f"category {facts.category_code} matches {kind}")
    area = 0
    if m.areas:
        codes = _place_codes(facts.place)
        hit = [4 - codes.index(a) for a in m.areas if a in codes]
        if hit:
            area = max(hit)
            reasons.append(f"place {'/'.join(codes)} is in {[a for a in m.areas if a in codes]}")
        else:
            ok = False
            reasons.append(f"place {'/'.join(codes) or 'unplaced'} not in {m.areas}")
    if m.sources:
        if facts.source in m.sources:
            reasons.append(f"source {facts.source} listed")
        else:
            ok = False
            reasons.append(f"source {facts.source} not in {[str(s) for s in m.sources]}")
    if m.urgency:
        if facts.urgency == m.urgency:
            reasons.append(f"urgency {facts.urgency}")
        else:
            ok = False
            reasons.append(f"urgency {facts.urgency} is not {m.urgency}")
    if m.hours:
        local = facts.at.astimezone(tz).strftime("%H:%M")
        if _in_hours(m.hours, facts.at, tz):
            reasons.append(f"local time {local} within {m.hours}")
        else:
            ok = False
            reasons.append(f"local time {local} outside {m.hours}")
    if not reasons:
        reasons.append("no conditions: matches every case")
    score = (cat, area, int(bool(m.sources)), int(bool(m.urgency)), int(bool(m.hours)), rule.priority)
    return RuleCheck(rule, score if ok else None, reasons)


def specificity(rule: Rule, facts: CaseFacts, tz: ZoneInfo) -> tuple[int, ...] | None:
    """How specifically a rule matches (higher wins), or None if it does not."""
    return check(rule, facts, tz).specificity


def resolve(a: Assignee, place: Place, city: City, exclude: set[str]) -> UnitRef:
    """A unit for an assignee: the named unit, or the unit of that role responsible for the place (属地)."""
    if a.unit:
        unit = city.units.get(a.unit)
        if unit is None or unit.id in exclude:
            raise NoUnit(f"unit {a.unit} {'returned the case' if unit else 'unknown'}")
        return unit.ref()
    codes = _place_codes(place)
    candidates = [u for u in city.units_with_role(a.role or "") if u.id not in exclude]
    for code in codes:  # most specific area first: grid, community, street, district
        for unit in candidates:
            if code in unit.areas:
                return unit.ref()
    raise NoUnit(f"no {a.role} unit for {codes or 'an unplaced case'}")


def command_centre(city: City) -> UnitRef:
    """The command centre (指挥中心): manual triage and assignment."""
    centre = next(iter(city.units_with_role("command_centre")), None)
    if centre is None:
        raise NoUnit("the city has no command_centre unit")
    return centre.ref()


def ranked(facts: CaseFacts, city: City) -> list[RuleCheck]:
    """Every rule checked, matching ones first, most specific first (stable for equal scores)."""
    tz = ZoneInfo(city.calendar.timezone)
    checks = [check(r, facts, tz) for r in city.routing.rules]
    return sorted(checks, key=lambda c: c.specificity or (), reverse=True)


def _matching(facts: CaseFacts, city: City) -> list[RuleCheck]:
    """The matching rules of `ranked`, in its order. A rule whose categories leave the case out never matches, and
    most rules name categories: they are passed over before their conditions and reasons are worked out, which
    route does for every case (`ranked` explains them all)."""
    tz = ZoneInfo(city.calendar.timezone)
    code = facts.category_code
    checks = [
        check(r, facts, tz)
        for r in city.routing.rules
        if not r.match.categories or category_matches(r.match.categories, code) >= 0
    ]
    return sorted((c for c in checks if c.matches), key=lambda c: c.specificity or (), reverse=True)


def _cooperating(
    rule: Rule, category: Category | None, place: Place, city: City, lead: UnitRef, exclude: set[str]
) -> list[UnitRef]:
    assignees = (
        rule.cooperating
        if rule.cooperating is not None
        else [Assignee(role=r) for r in (category.cooperating_roles if category else [])]
    )
    out: list[UnitRef] = []
    for a in assignees:
        try:
            u = resolve(a, place, city, exclude)
        except NoUnit:
            continue
        if u.unit_id != lead.unit_id and u not in out:
            out.append(u)
    return out


def category_cooperating(category: Category | None, place: Place, city: City, lead: UnitRef) -> list[UnitRef]:
    """The category's cooperating roles resolved at the place (属地), without the lead: a manual assignment's
    cooperating units when the command centre names none."""
    return _cooperating(Rule(id=MANUAL), category, place, city, lead, set())


def route(facts: CaseFacts, city: City, *, exclude: set[str] | None = None) -> Decision:
    """The winning rule's lead and cooperating units; the command centre when nobody fits.

    `exclude` holds the units that returned the case (退单): the winning rule's `fallback` (or the file's
    `return_fallback`) then leads instead, and a rule that still finds nobody gives way to the next one.
    """
    exclude = exclude or set()
    threshold = city.routing.low_confidence_threshold
    if facts.confidence < threshold:
        return Decision(
            LOW_CONFIDENCE,
            command_centre(city),
            [],
            [f"classification confidence {facts.confidence:.2f} < {threshold:.2f}: the command centre triages by hand"],
        )
    category: Category | None = city.category(facts.category_code)
    reasons: list[str] = []
    for c in _matching(facts, city):
        rule = c.rule
        lead_a = rule.lead or (Assignee(role=category.lead_role) if category else None)
        if lead_a is None:
            reasons.append(f"rule {rule.id}: no lead (unknown category {facts.category_code})")
            continue
        candidates = [lead_a]
        if exclude:
            candidates += rule.fallback if rule.fallback is not None else city.routing.return_fallback
        for i, a in enumerate(candidates):
            try:
                lead = resolve(a, facts.place, city, exclude)
            except NoUnit as exc:
                reasons.append(f"rule {rule.id}: {exc}")
                continue
            why = "; ".join(c.reasons)
            step = "" if i == 0 else f" (fallback {i}: the lead returned it)"
            return Decision(
                rule.id,
                lead,
                _cooperating(rule, category, facts.place, city, lead, exclude),
                [*reasons, f"rule {rule.id} wins with specificity {c.specificity}: {why}{step}"],
            )
    return Decision(
        MANUAL_TRIAGE, command_centre(city), [], [*reasons, "no rule fits: the command centre assigns by hand"]
    )


def time_limit_for(category: Category | None, urgency: str, city: City) -> str:
    """The case's limit: the first `time_limits` entry that fits, else the catalogue's limit; urgent cases count
    natural hours (the catalogue's limit if it is in `nh`, else the file's `urgent_limit`)."""
    code = category.code if category else ""
    for tl in city.routing.time_limits:
        if tl.urgency and tl.urgency != urgency:
            continue
        if tl.categories and category_matches(tl.categories, code) < 0:
            continue
        return tl.limit
    own = category.time_limit if category else "2d"
    if urgency == Urgency.urgent and not own.endswith("nh"):
        return city.routing.urgent_limit
    return own


def acknowledge_limit(urgency: str, city: City) -> str:
    """How long a unit has to sign for a case (签收)."""
    r = city.routing
    return r.acknowledge_within_urgent if urgency == Urgency.urgent else r.acknowledge_within


def validate(city: City) -> None:
    """Cross-check the routing file against the city at start-up: named units exist, the merchant category and
    the command centre exist; raises CityDataError naming file and line."""
    path = city.folder / "routing.yaml"
    r = city.routing
    problems: list[tuple[tuple[object, ...], str]] = []
    for i, rule in enumerate(r.rules):
        for j, a in enumerate(rule.fallback or []):
            if a.unit and a.unit not in city.units:
                problems.append((("rules", i, "fallback", j), f"rule {rule.id} names unknown unit {a.unit}"))
    for j, a in enumerate(r.return_fallback):
        if a.unit and a.unit not in city.units:
            problems.append((("return_fallback", j), f"unknown unit {a.unit}"))
    if city.category(r.merchant_category) is None:
        problems.append((("merchant_category",), f"unknown category {r.merchant_category}"))
    if not city.units_with_role("command_centre"):
        problems.append((("rules",), "the city has no command_centre unit for manual triage"))
    if problems:
        loc, msg = problems[0]
        raise CityDataError(f"{line_of(path, loc)}: {msg}")
