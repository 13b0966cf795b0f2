"""Routing rules: which rule wins for a category, place, source, urgency and time, and `xiuhua explain`."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from services.dispatch.routing import CaseFacts, ranked, route, time_limit_for, validate
from xiuhua.city import CityDataError
from xiuhua.city.routing import Assignee, Match, Rule
from xiuhua_tools.cli import main

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
SH = ZoneInfo("Asia/Shanghai")


def _with(city, **routing_changes):
    """A copy of the city with other routing settings."""
    return dataclasses.replace(city, routing=city.routing.model_copy(update=routing_changes))


def test_route_by_default_rule_and_by_named_rule(city) -> None:
    place = city.areas.place_of_area("JQ02-01")
    d = route(CaseFacts("0201", place, "grid", "normal", NOW), city)
    assert (d.rule_id, d.lead.unit_id) == ("default-by-category", "JQ-SAN")
    assert [u.unit_id for u in d.cooperating] == ["JQ02"]
    night = datetime(2026, 11, 23, 23, 0, tzinfo=SH)
    assert route(CaseFacts("0202", place, "grid", "normal", night), city).lead.role == "traffic_police"
    assert route(CaseFacts("0202", place, "grid", "normal", NOW), city).lead.role == "enforcement"
    # Without a fallback for returned cases, a case nobody else can take goes to the command centre.
    no_fallback = _with(city, return_fallback=[])
    returned = route(CaseFacts("0201", place, "grid", "normal", NOW), no_fallback, exclude={"JQ-SAN"})
    assert returned.rule_id == "manual-triage" and returned.lead.role == "command_centre"


# (category, area, source, urgency, local hour) → (rule, lead unit, cooperating units)
CASES = [
    ("0201", "CD01", "grid", "normal", 10, "default-by-category", "CD-SAN", ["CD01"]),
    ("0201", "CD01", "sensor", "normal", 10, "sensor-bins-sanitation", "CD-SAN", []),
    ("0103", "JQ02", "hotline", "urgent", 10, "fire-lane-emergency", "JQ-EM", ["JQ-PROP", "JQ02"]),
    ("0110", "CD", "grid", "normal", 10, "market-overflow-market-supervision", "CD-MS", ["CD-ENF"]),
    ("0101", "CD02", "grid", "normal", 10, "street-order-enforcement", "CD-ENF", ["CD02"]),
    ("0301", "JQ01", "sensor", "urgent", 3, "municipal-construction", "JQ-CON", []),
    ("0309", "JQ01", "grid", "normal", 10, "road-works-enforcement", "JQ-ENF", ["JQ-CON"]),
    ("0401", "CD03", "grid", "normal", 10, "frontage-community", "CD03", ["CD-ENF"]),
    # A duty check's failure goes to the community (批评教育); only the escalated case (0407) to enforcement (处罚).
    ("0402", "CD03", "merchant_check", "normal", 10, "frontage-community", "CD03", ["CD-ENF"]),
    ("0407", "CD03", "merchant_check", "normal", 10, "merchant-escalation-enforcement", "CD-ENF", ["CD03"]),
    ("0701", "JQ", "inspection", "normal", 10, "site-dust-construction", "JQ-CON", ["XH-ECO"]),
    ("0801", "CD02", "hotline", "normal", 10, "vehicles-traffic-police", "CD-TP", []),
    ("0803", "CD02", "grid", "normal", 10, "bikes-sidewalks-enforcement", "CD-ENF", ["CD02"]),
    ("0901", "JQ03", "grid", "normal", 10, "hazards-property", "JQ-PROP", ["JQ03"]),
    ("0202", "JQ02", "grid", "normal", 23, "muck-night-traffic", "JQ-TP", ["JQ-ENF"]),
    ("1201", "JQ03", "grid", "normal", 10, "lakeside-shore-litter", "XH-WATER", ["JQ03", "JQ-SAN"]),
    ("1201", "JQ01", "grid", "normal", 10, "water-bodies", "XH-WATER", ["JQ-SAN"]),
    ("1305", "CD", "sensor", "normal", 10, "iot-device-owner", "XH-ECO", []),
    ("9901", "CD", "hotline", "normal", 10, "manual-sorting-centre", "XH-CC", []),
]


@pytest.mark.parametrize(("code", "area", "source", "urgency", "hour", "rule", "lead", "coop"), CASES)
def test_rule_table_picks_the_most_specific_rule(city, code, area, source, urgency, hour, rule, lead, coop) -> None:
    if city.category(code) is None:
        pytest.skip(f"category {code} not in this catalogue")
    at = datetime(2026, 11, 23, hour, 0, tzinfo=SH)
    d = route(CaseFacts(code, city.areas.place_of_area(area), source, urgency, at), city)
    assert (d.rule_id, d.lead.unit_id, [u.unit_id for u in d.cooperating]) == (rule, lead, coop)


def test_every_catalogue_item_routes_to_a_unit_of_its_place(city) -> None:
    for street in ("CD01", "JQ02"):
        place = city.areas.place_of_area(street)
        for item in city.catalogue.items():
            d = route(CaseFacts(item.code, place, "grid", item.urgency, NOW), city)
            assert d.rule_id not in {"manual-triage", "low-confidence"}, item.code
            unit = city.units[d.lead.unit_id]
            assert set(unit.areas) & {place.community_code, place.street_code, place.district_code}, item.code


def test_specificity_order_exact_then_prefix_then_place_then_priority(city) -> None:
    rules = [
        Rule(id="any"),
        Rule(id="prefix-short", match=Match(categories=["0*"]), lead=Assignee(role="police")),
        Rule(id="prefix-long", match=Match(categories=["08*"]), lead=Assignee(role="traffic_police")),
        Rule(id="exact", match=Match(categories=["0801"]), lead=Assignee(role="enforcement")),
        Rule(id="exact-street", match=Match(categories=["0801"], areas=["CD"]), lead=Assignee(role="community")),
        Rule(
            id="exact-street-hi",
            match=Match(categories=["0801"], areas=["CD"]),
            lead=Assignee(role="sanitation"),
            priority=5,
        ),
    ]
    c = _with(city, rules=rules)
    cd, jq = c.areas.place_of_area("CD01"), c.areas.place_of_area("JQ01")
    assert route(CaseFacts("0801", cd, "grid", "normal", NOW), c).rule_id == "exact-street-hi"
    assert route(CaseFacts("0801", jq, "grid", "normal", NOW), c).rule_id == "exact"
    assert route(CaseFacts("0802", jq, "grid", "normal", NOW), c).rule_id == "prefix-long"
    assert route(CaseFacts("0701", jq, "grid", "normal", NOW), c).rule_id == "prefix-short"
    assert route(CaseFacts("1201", jq, "grid", "normal", NOW), c).rule_id == "any"
    order = [ch.rule.id for ch in ranked(CaseFacts("0801", cd, "grid", "normal", NOW), c) if ch.matches]
    assert order == ["exact-street-hi", "exact-street", "exact", "prefix-long", "prefix-short", "any"]


def test_source_and_urgency_conditions(city) -> None:
    rules = [
        Rule(id="any"),
        Rule(id="urgent-hotline", match=Match(sources=["hotline"], urgency="urgent"), lead=Assignee(unit="XH-CC")),
    ]
    c = _with(city, rules=rules)
    place = c.areas.place_of_area("CD01")
    assert route(CaseFacts("0201", place, "hotline", "urgent", NOW), c).lead.unit_id == "XH-CC"
    assert route(CaseFacts("0201", place, "hotline", "normal", NOW), c).rule_id == "any"
    assert route(CaseFacts("0201", place, "grid", "urgent", NOW), c).rule_id == "any"


def test_low_confidence_goes_to_the_command_centre(city) -> None:
    place = city.areas.place_of_area("CD01")
    low = route(CaseFacts("0201", place, "hotline", "normal", NOW, confidence=0.59), city)
    assert (low.rule_id, low.lead.unit_id) == ("low-confidence", "XH-CC")
    assert "0.59" in low.reasons[0]
    ok = route(CaseFacts("0201", place, "hotline", "normal", NOW, confidence=0.6), city)
    assert ok.lead.unit_id == "CD-SAN"


def test_returned_case_is_rerouted_excluding_the_units_that_returned_it(city) -> None:
    place = city.areas.place_of_area("CD01")
    first = route(CaseFacts("0201", place, "grid", "normal", NOW), city, exclude={"CD-SAN"})
    assert (first.rule_id, first.lead.unit_id) == ("default-by-category", "CD-SO")  # return_fallback: street office
    assert "CD-SAN" not in [u.unit_id for u in first.cooperating]
    again = route(CaseFacts("0201", place, "grid", "normal", NOW), city, exclude={"CD-SAN", "CD-SO"})
    assert (again.rule_id, again.lead.unit_id) == ("manual-triage", "XH-CC")
    # An excluded cooperating unit is dropped, not replaced.
    fire = route(CaseFacts("0103", place, "grid", "urgent", NOW), city, exclude={"CD-PROP"})
    assert fire.lead.unit_id == "CD-EM" and [u.unit_id for u in fire.cooperating] == ["CD01"]


def test_time_limits_by_category_and_urgency(city) -> None:
    assert time_limit_for(city.category("0201"), "normal", city) == "4h"
    assert time_limit_for(city.category("0201"), "urgent", city) == "2nh"  # routing.yaml time_limits
    assert time_limit_for(city.category("0302"), "urgent", city) == "4nh"  # urgent_limit: natural hours
    assert time_limit_for(city.category("0301"), "urgent", city) == "4nh"  # the catalogue's own nh limit
    assert time_limit_for(None, "normal", city) == "2d"


def test_explain_shows_the_winner_and_why(capsys) -> None:
    assert main(["explain", "--category", "0202", "--street", "JQ02", "--at", "2026-11-23T23:30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rule_id"] == "muck-night-traffic" and out["lead"]["unit_id"] == "JQ-TP"
    rows = {r["rule"]: r for r in out["rules"]}
    assert rows["muck-night-traffic"]["matches"] and "23:30 within 22:00-06:00" in " ".join(
        rows["muck-night-traffic"]["why"]
    )
    assert not rows["fire-lane-emergency"]["matches"]
    assert "not in ['0103']" in rows["fire-lane-emergency"]["why"][0]
    assert out["rules"][0]["rule"] == "muck-night-traffic"  # ranked: the winner first
    assert out["time_limit"] == "4h" and out["due_at"].startswith("2026-11-24T")

    assert main(["explain", "--category", "0201", "--street", "CD01", "--exclude", "CD-SAN", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lead"]["unit_id"] == "CD-SO" and "fallback" in out["reasons"][-1]

    assert main(["explain", "--category", "0201", "--street", "CD01", "--confidence", "0.3"]) == 0
    text = capsys.readouterr().out
    assert "winner: low-confidence" in text and "0.30 < 0.60" in text


def test_routing_file_is_cross_checked_at_start_up(city) -> None:
    validate(city)
    bad = _with(city, merchant_category="7777")
    with pytest.raises(CityDataError, match=r"routing.yaml:\d+: unknown category 7777"):
        validate(bad)
    bad = _with(city, return_fallback=[Assignee(unit="NOPE")])
    with pytest.raises(CityDataError, match=r"routing.yaml:\d+: unknown unit NOPE"):
        validate(bad)


def test_route_passes_over_rules_of_other_categories_as_the_full_ranking_would(city) -> None:
    # Route checks only the rules whose categories take the case (and those naming none); the matching rules and
    # their order are the full ranking's, for every category, source, urgency and hour of the demo city.
    from services.dispatch.routing import _matching

    place = city.areas.place_of_area("JQ02-01")
    for category in city.catalogue.items():
        for source in ("grid", "hotline", "sensor"):
            for urgency in ("normal", "urgent"):
                for at in (NOW, datetime(2026, 11, 23, 23, 0, tzinfo=SH)):
                    facts = CaseFacts(category.code, place, source, urgency, at)
                    full = [(c.rule.id, c.specificity) for c in ranked(facts, city) if c.matches]
                    assert [(c.rule.id, c.specificity) for c in _matching(facts, city)] == full, facts
