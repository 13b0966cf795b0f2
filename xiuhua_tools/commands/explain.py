"""`xiuhua explain --category CODE (--lng X --lat Y | --street CODE)`: which routing rule wins and why."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from contracts.values import Place
from xiuhua.city import load_city
from xiuhua.settings import get_settings
from xiuhua_tools.commands import emit


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("explain", help="which routing rule wins for a category and place, and why")
    p.add_argument("--category", required=True)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--street", help="a street, community or grid code")
    where.add_argument("--lng", type=float)
    p.add_argument("--lat", type=float)
    p.add_argument("--source", default="grid")
    p.add_argument("--urgency", default=None)
    p.add_argument("--at", help="ISO time (default now; without an offset it is city time)")
    p.add_argument("--confidence", type=float, default=1.0, help="classification confidence (default 1.0)")
    p.add_argument("--exclude", nargs="*", metavar="UNIT", help="units that returned the case (退单)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from services.dispatch.routing import CaseFacts, ranked, route, time_limit_for
    from xiuhua.city.business_calendar import BusinessCalendar

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
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(city.calendar.timezone))
    urgency = args.urgency or category.urgency
    facts = CaseFacts(category.code, place, args.source, urgency, at, args.confidence)
    exclude = set(args.exclude or [])
    d = route(facts, city, exclude=exclude)
    checks = ranked(facts, city)
    limit = time_limit_for(category, urgency, city)
    due = BusinessCalendar(city.calendar).due(at, limit)
    table = [
        {
            "rule": c.rule.id,
            "matches": c.matches,
            "specificity": list(c.specificity) if c.specificity else None,
            "description": c.rule.description,
            "why": c.reasons,
        }
        for c in checks
    ]
    lines = [
        f"category {category.code} {category.name_zh} ({urgency}, source {args.source}) at {_where(place)}"
        f"  {at.astimezone(ZoneInfo(city.calendar.timezone)).isoformat()}",
        "rules (* wins, + matches, - does not):",
    ]
    for c in checks:
        mark = "*" if c.rule.id == d.rule_id else ("+" if c.matches else "-")
        score = ",".join(map(str, c.specificity)) if c.specificity else "no match"
        lines.append(f"  {mark} {c.rule.id:34s} [{score}] {c.rule.description}")
        lines.append(f"      {'; '.join(c.reasons)}")
    lines.append(
        f"winner: {d.rule_id} → lead {d.lead.name} {d.lead.unit_id} ({d.lead.role}); cooperating: "
        + (", ".join(f"{u.name} {u.unit_id} ({u.role})" for u in d.cooperating) or "none")
    )
    lines += [f"why: {r}" for r in d.reasons]
    lines.append(f"time limit {limit} → due {due.astimezone(ZoneInfo(city.calendar.timezone)).isoformat()}")
    emit(
        args,
        "\n".join(lines),
        {
            "category": category.code,
            "urgency": str(urgency),
            "source": args.source,
            "at": at.isoformat(),
            "place": place.model_dump(),
            "rules": table,
            "rule_id": d.rule_id,
            "lead": d.lead.model_dump(mode="json"),
            "cooperating": [u.model_dump(mode="json") for u in d.cooperating],
            "reasons": d.reasons,
            "time_limit": limit,
            "due_at": due.isoformat(),
        },
    )
    return 0


def _where(place: Place) -> str:
    return " / ".join(x for x in (place.street_name, place.community_name, place.grid_code) if x) or "unplaced"
