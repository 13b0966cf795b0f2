"""Assessment periods (考核周期) in city time: ISO week, month, quarter, year. Pure."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

CITY_TZ = ZoneInfo("Asia/Shanghai")


def periods_of(at: datetime, tz: ZoneInfo = CITY_TZ) -> dict[str, str]:
    """The week, month, quarter and year a moment falls in, e.g. {'week': '2026-W48', ...}."""
    local = at.astimezone(tz)
    iso = local.isocalendar()
    return {
        "week": f"{iso.year}-W{iso.week:02d}",
        "month": f"{local.year}-{local.month:02d}",
        "quarter": f"{local.year}-Q{(local.month - 1) // 3 + 1}",
        "year": f"{local.year}",
    }


def period_begins(period: str, tz: ZoneInfo = CITY_TZ) -> datetime:
    """The first moment of a period named as `periods_of` names it ('2026-W48', '2026-11', '2026-Q4', '2026')."""
    year, _, rest = period.partition("-")
    if not rest:
        return datetime(int(year), 1, 1, tzinfo=tz)
    if rest.startswith("W"):
        return datetime.fromisocalendar(int(year), int(rest[1:]), 1).replace(tzinfo=tz)
    if rest.startswith("Q"):
        return datetime(int(year), (int(rest[1:]) - 1) * 3 + 1, 1, tzinfo=tz)
    return datetime(int(year), int(rest), 1, tzinfo=tz)
