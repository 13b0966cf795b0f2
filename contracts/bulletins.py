"""The weekly bulletin (工作周报), `bulletin.v1.published` (docs/services/notify-bulletin.md)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.envelope import Event


class BulletinFile(BaseModel):
    """One file of a bulletin edition."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    language: str = Field(description="zh (the edition of record) or en")
    format: str = Field(description="html (self-contained, charts embedded), md, pdf")
    path: str = Field(description="Path on the notify instance that built it, e.g. var/bulletins/2026-W47/...")
    url: str | None = Field(default=None, description="Where readers fetch it, when the city serves var/bulletins")


class BulletinPublished(Event):
    """One week's bulletin was built and archived; published once per week whatever the number of instances."""

    event_type: ClassVar[str] = "bulletin.published"
    subject_prefix: ClassVar[str] = subjects.BULLETIN_PUBLISHED

    week: str = Field(description="ISO week in city time (Asia/Shanghai), e.g. 2026-W47")
    period_start: str = Field(description="Monday of the week, ISO date")
    period_end: str = Field(description="Sunday of the week, ISO date")
    languages: list[str] = Field(default_factory=lambda: ["zh", "en"])
    files: list[BulletinFile] = Field(default_factory=list)
    directory: str = Field(description="The week's archive folder")
    index: str = Field(description="The archive's index file listing every bulletin")
    pdf: bool = Field(default=False, description="Whether PDF editions were rendered")
    pdf_skipped_reason: str | None = Field(default=None, description="Why there is no PDF (e.g. no chromium)")
    headline: dict[str, float | int | None] = Field(
        default_factory=dict,
        description="Headline figures: opened, closed, overdue, escalated, on_time_rate, closure_rate, "
        "rework_rate, satisfaction_rate (rates 0..1, None when nothing to divide by)",
    )
    gaps: list[str] = Field(default_factory=list, description="Sections with no source of data yet, by name")

    example_fields: ClassVar[dict[str, object]] = {
        "correlation_id": "bulletin:2026-W47",
        "week": "2026-W47",
        "period_start": "2026-11-16",
        "period_end": "2026-11-22",
        "languages": ["zh", "en"],
        "files": [
            {"language": "zh", "format": "html", "path": "var/bulletins/2026-W47/bulletin.zh.html", "url": None},
            {"language": "zh", "format": "md", "path": "var/bulletins/2026-W47/bulletin.zh.md", "url": None},
        ],
        "directory": "var/bulletins/2026-W47",
        "index": "var/bulletins/index.md",
        "pdf": False,
        "pdf_skipped_reason": "no chromium at /usr/bin/chromium",
        "headline": {
            "opened": 412,
            "closed": 398,
            "overdue": 6,
            "escalated": 2,
            "on_time_rate": 0.968,
            "closure_rate": 0.94,
            "rework_rate": 0.012,
            "satisfaction_rate": 0.91,
        },
        "gaps": [],
    }
