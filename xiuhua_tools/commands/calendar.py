"""`xiuhua calendar due --start ISO --limit 4h|2d|4nh` (a deadline on the city's business calendar) and
`xiuhua calendar check` (the years whose official holiday schedule the city's calendar lists)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from xiuhua.city import load_city
from xiuhua.settings import get_settings
from xiuhua_tools.commands import emit

if TYPE_CHECKING:
    from xiuhua.city.business_calendar import BusinessCalendar


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("calendar", help="business-calendar arithmetic and the years it knows")
    csub = p.add_subparsers(dest="calendar_command", required=True)
    due = csub.add_parser("due", help="the deadline for a start time and a limit")
    due.add_argument("--start", required=True, help="ISO time; without an offset it is city time")
    due.add_argument("--limit", required=True, help="4h working hours, 2d working days, 4nh natural hours")
    due.add_argument("--json", action="store_true")
    due.set_defaults(func=_due)
    check = csub.add_parser("check", help="the years whose official schedule calendar.yaml lists, and the fallback")
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=_check)


def _due(args: argparse.Namespace) -> int:
    from xiuhua.city.business_calendar import BusinessCalendar

    city = load_city(get_settings().city_dir)
    cal = BusinessCalendar(city.calendar)
    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(city.calendar.timezone))
    due = cal.due(start, args.limit).astimezone(cal.tz)
    estimated = cal.estimated(start, due, args.limit)
    human = f"start {start.astimezone(cal.tz).isoformat()}  limit {args.limit}  →  due {due.isoformat()}"
    if estimated:
        human += (
            f"  (estimated: no official schedule for {_unlisted(cal, start, due)} in calendar.yaml; "
            f"{city.calendar.country}'s rule-based holidays, no 调休)"
        )
    # `due` is the older name of `due_at`, kept for scripts that read it.
    emit(
        args,
        human,
        {
            "start": start.isoformat(),
            "limit": args.limit,
            "due": due.isoformat(),
            "due_at": due.isoformat(),
            "estimated": estimated,
        },
    )
    return 0


def _unlisted(cal: BusinessCalendar, start: datetime, due: datetime) -> str:
    years = range(start.astimezone(cal.tz).year, due.astimezone(cal.tz).year + 1)
    return ", ".join(str(y) for y in years if y not in cal.known_years())


def _check(args: argparse.Namespace) -> int:
    from xiuhua.city.business_calendar import BusinessCalendar
    from xiuhua.clock import SystemClock

    cfg = load_city(get_settings().city_dir).calendar
    cal = BusinessCalendar(cfg)
    years = [
        {"year": y, "source": s.source, "holidays": sum(len(h.days()) for h in s.holidays), "workdays": len(s.workdays)}
        for y, s in sorted(cfg.years.items())
    ]
    warning = cal.missing_next_year(SystemClock().now())
    lines = [f"official schedules: {', '.join(str(y['year']) for y in years) or 'none'}"]
    lines += [
        f"  {y['year']}: {y['holidays']} days off, {y['workdays']} adjusted working days — {y['source']}" for y in years
    ]
    region = f"-{cfg.subdivision}" if cfg.subdivision else ""
    lines.append(f"other years: estimated from {cfg.country}{region}'s rule-based public holidays (no 调休)")
    if warning:
        lines.append(f"WARNING: {warning}")
    emit(
        args,
        "\n".join(lines),
        {"years": years, "country": cfg.country, "subdivision": cfg.subdivision, "warning": warning},
    )
    return 0
