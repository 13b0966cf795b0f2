"""`xiuhua explain --category CODE (--lng X --lat Y | --street CODE)`: which routing rule wins and why."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from contracts.values import Place
from xiuhua.city import load_city
from xiuhua.commands import emit
from xiuhua.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the command."""
    p = sub.add_parser("explain", help="which routing rule wins for a category and place, and why")
    p.add_argument("--category", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--street", help="a street, community or grid code")
    where.add_argument("--lng", type=float)
    p.add_argument("--lat", type=float)
    p.add_argument("--source", default="grid")
    p.add_argument("--urgency", default=None)
    p.add_argument("--at", help="ISO time (default now)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from services.dispatch.routing import CaseFacts, route, specificity

    city = load_city(get_settings().city_dir)
    category = city.category(args.category)
    if category is None:
        raise SystemExit(f"unknown category {args.category}")
    if args.street:
        if args.street not in city.areas.by_code:
            raise SystemExit(f"unknown area {args.street}")
        place = city.areas.place_of_area(args.street)
    else:
        if args.lat is None:
            raise SystemExit("--lng needs --lat")
        found = city.areas.place_of_point(args.lng, args.lat)
        if found is None:
            raise SystemExit("that point is outside the city")
        place = found
    at = datetime.fromisoformat(args.at) if args.at else datetime.now(UTC)
    facts = CaseFacts(category.code, place, args.source, args.urgency or category.urgency, at)
    tz = ZoneInfo(city.calendar.timezone)
    table = []
    for rule in city.routing.rules:
        s = specificity(rule, facts, tz)
        table.append({"rule": rule.id, "matches": s is not None, "specificity": s, "description": rule.description})
    d = route(facts, city)
    lines = [f"category {category.code} {category.name_zh} at {_where(place)}", "rules:"]
    for row in sorted(table, key=lambda r: r["specificity"] or (), reverse=True):
        mark = "*" if row["rule"] == d.rule_id else (" " if row["matches"] else "x")
        lines.append(f"  {mark} {row['rule']:28s} {row['specificity'] or 'no match'}  {row['description']}")
    lines.append(f"winner: {d.rule_id} → lead {d.lead.name} ({d.lead.role}); cooperating: "
                 + (", ".join(f"{u.name} ({u.role})" for u in d.cooperating) or "none"))
    emit(args, "\n".join(lines), {"place": place.model_dump(), "rules": table, "rule_id": d.rule_id,
                                  "lead": d.lead.model_dump(), "cooperating": [u.model_dump() for u in d.cooperating],
                                  "reasons": d.reasons})
    return 0


def _where(place: Place) -> str:
    return " / ".join(x for x in (place.street_name, place.community_name, place.grid_code) if x) or "unplaced"
