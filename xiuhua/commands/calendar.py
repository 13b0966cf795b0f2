"""`xiuhua calendar due --start ISO --limit 4h|2d|4nh`: a deadline on the city's business calendar."""

from __future__ import annotations

import argparse
from datetime import datetime
from zoneinfo import ZoneInfo

from xiuhua.city import load_city
from xiuhua.commands import emit
from xiuhua.settings import get_settings


def register(sub: argparse._SubParsersAction) -> None:
    """Add the command."""
    p = sub.add_parser("calendar", help="business-calendar arithmetic")
    csub = p.add_subparsers(dest="calendar_command", required=True)
    due = csub.add_parser("due", help="the deadline for a start time and a limit")
    due.add_argument("--start", required=True, help="ISO time; without an offset it is city time")
    due.add_argument("--limit", required=True, help="4h working hours, 2d working days, 4nh natural hours")
    due.add_argument("--json", action="store_true")
    due.set_defaults(func=_due)


def _due(args: argparse.Namespace) -> int:
    from xiuhua.city.business_calendar import BusinessCalendar

    city = load_city(get_settings().city_dir)
    cal = BusinessCalendar(city.calendar)
    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(city.calendar.timezone))
    due = cal.due(start, args.limit).astimezone(cal.tz)
    human = f"start {start.astimezone(cal.tz).isoformat()}  limit {args.limit}  →  due {due.isoformat()}"
    emit(args, human, {"start": start.isoformat(), "limit": args.limit, "due": due.isoformat()})
    return 0
