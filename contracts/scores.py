"""Assessment results, `score.v1.<event>` (DESIGN.md §5 Assessment)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import ConfigDict, Field

from contracts import subjects
from contracts.envelope import Event


class UnitScoreUpdated(Event):
    """A unit's counters for one period changed."""

    event_type: ClassVar[str] = "score.unit_updated"
    subject_prefix: ClassVar[str] = subjects.SCORE.format(event="unit_updated")

    unit_id: str
    period: str = Field(description="e.g. 2026-W48, 2026-11, 2026-Q4, 2026")
    counters: dict[str, int] = Field(description="dispatched, closed, overdue ... so far in the period")
    case_id: str | None = Field(default=None, description="The case whose event caused the change")

    def subject_for(self) -> str:
        return self.subject_prefix

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "01935d1e-7a4d-7c3d-8e9f-0123456789ab",
                    "occurred_at": "2026-11-23T02:00:02Z",
                    "schema_version": 1,
                    "correlation_id": "grid:R-20261123-001",
                    "unit_id": "CD-SAN",
                    "period": "2026-W48",
                    "counters": {"dispatched": 12},
                    "case_id": "C-01935d1e7a4b",
                }
            ]
        }
    )
