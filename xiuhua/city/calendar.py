"""The business calendar settings (工作日历): the official holiday schedule per year, the country whose rule-based
holidays stand in for a year not entered yet, office hours, the city's own holidays and working days."""

from __future__ import annotations

from datetime import date, time
from functools import cache

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class HolidaySpan(BaseModel):
    """One holiday of the official schedule, e.g. 春节 2026-02-15 to 2026-02-23 (放假调休, inclusive)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, description="e.g. 春节 Spring Festival")
    first: date = Field(alias="from", description="First day off")
    last: date = Field(alias="to", description="Last day off (inclusive)")

    @model_validator(mode="after")
    def _order(self) -> HolidaySpan:
        if self.last < self.first:
            raise ValueError(f"'to' ({self.last}) is before 'from' ({self.first})")
        if (self.last - self.first).days > 31:
            raise ValueError("a holiday longer than a month: check the dates")
        return self

    def days(self) -> list[date]:
        """Every day off of the span."""
        return [date.fromordinal(d) for d in range(self.first.toordinal(), self.last.toordinal() + 1)]


class YearSchedule(BaseModel):
    """One year's official schedule (部分节假日安排): the days off and the adjusted working days (调休上班)."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, description="The notice the schedule comes from")
    holidays: list[HolidaySpan] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list, description="Weekend days worked instead (调休)")

    @model_validator(mode="after")
    def _disjoint(self) -> YearSchedule:
        off = {d for h in self.holidays for d in h.days()}
        both = sorted(off & set(self.workdays))
        if both:
            raise ValueError(f"{both[0]} is both a holiday and an adjusted working day")
        return self


@cache
def _countries() -> dict[str, list[str]]:
    import holidays

    return {code: list(subdivs) for code, subdivs in holidays.list_supported_countries().items()}


class CalendarFile(BaseModel):
    """calendar.yaml: the official schedule per year, else the country's rule-based holidays (estimated)."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
    country: str = Field(default="CN", description="ISO 3166 code whose holidays stand in for a year not entered")
    subdivision: str | None = Field(default=None, description="Region (province, state) of the country, if any")
    years: dict[int, YearSchedule] = Field(
        default_factory=dict, description="Year → the official schedule (State Council notice for China)"
    )
    office_hours: list[tuple[time, time]] = Field(
        default=[(time(8, 30), time(12, 0)), (time(13, 30), time(17, 30))],
        description="Working periods of a working day, local time",
    )
    workday_hours: float | None = Field(default=None, description="Hours in a working day 'd' (default: sum)")
    extra_holidays: list[date] = Field(default_factory=list, description="Days off the city adds")
    extra_workdays: list[date] = Field(default_factory=list, description="Working days the city adds (调休)")
    warn_at: float = Field(default=0.8, gt=0, lt=1, description="Share of the limit at which to warn")
    escalate_after: list[float] = Field(
        default=[0.0, 0.5, 1.0],
        description="Escalation levels: share of the limit past the deadline (unit head, street, 挂牌督办)",
    )
    timer_interval_s: float = Field(default=5.0, gt=0, description="How often dispatch scans for due timers")

    @field_validator("country")
    @classmethod
    def _known_country(cls, v: str) -> str:
        if v not in _countries():
            raise ValueError(f"{v!r} is not a country the holidays library knows (ISO 3166 alpha-2, e.g. CN)")
        return v

    @model_validator(mode="after")
    def _checks(self) -> CalendarFile:
        prev = time(0, 0)
        for start, end in self.office_hours:
            if not prev <= start < end:
                raise ValueError("office_hours must be ordered, non-overlapping (start, end) pairs")
            prev = end
        subdivs = _countries()[self.country]
        if self.subdivision is not None and self.subdivision not in subdivs:
            raise ValueError(f"subdivision {self.subdivision!r} is not one of {self.country}'s: {', '.join(subdivs)}")
        for year, schedule in self.years.items():
            days = [d for h in schedule.holidays for d in h.days()] + schedule.workdays
            # A notice may reach into the neighbouring years (元旦 from 30 December), never further.
            stray = [d for d in days if abs(d.year - year) > 1]
            if stray:
                raise ValueError(f"years.{year}: {stray[0]} is not in or next to {year}")
        return self

    def day_hours(self) -> float:
        """Working hours in one working day."""
        if self.workday_hours:
            return self.workday_hours
        return sum((e.hour * 60 + e.minute - s.hour * 60 - s.minute) / 60 for s, e in self.office_hours)
