"""The business calendar settings (工作日历): office hours, the city's own holidays and working days."""

from __future__ import annotations

from datetime import date, time

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CalendarFile(BaseModel):
    """calendar.yaml: on top of chinese-calendar's national holidays and 调休 working weekends."""

    model_config = ConfigDict(extra="forbid")

    timezone: str = "Asia/Shanghai"
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

    @model_validator(mode="after")
    def _hours(self) -> CalendarFile:
        prev = time(0, 0)
        for start, end in self.office_hours:
            if not prev <= start < end:
                raise ValueError("office_hours must be ordered, non-overlapping (start, end) pairs")
            prev = end
        return self

    def day_hours(self) -> float:
        """Working hours in one working day."""
        if self.workday_hours:
            return self.workday_hours
        return sum(
            (e.hour * 60 + e.minute - s.hour * 60 - s.minute) / 60 for s, e in self.office_hours
        )
