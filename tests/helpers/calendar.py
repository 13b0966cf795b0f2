"""The demo city's business calendar (工作日历) and moments in Shanghai time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from xiuhua.city import load_city
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.settings import DEMO_CITY

SH = ZoneInfo("Asia/Shanghai")
# The official 2025 and 2026 schedules are city data (calendar.yaml), as the demo city ships them.
DEMO = load_city(DEMO_CITY).calendar
CAL = BusinessCalendar(DEMO)


def sh(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=SH)
