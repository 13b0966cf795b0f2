"""Assessment results, `score.v1.<event>` (docs/services/scoring.md)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    role: str | None = Field(default=None, description="The unit's role; rankings are within a role")
    rates: dict[str, float | None] = Field(default_factory=dict, description="on_time_rate, closure_rate ... (0–1)")
    score: float | None = Field(default=None, description="Composite score of the period (assessment.yaml)")
    periods: list[str] = Field(default_factory=list, description="Every period document the change touched")

    def subject_for(self) -> str:
        return self.subject_prefix

    example_fields: ClassVar[dict[str, object]] = {
        "unit_id": "CD-SAN",
        "period": "2026-W48",
        "counters": {"dispatched": 12},
        "case_id": "C-01935d1e7a4b",
    }


class RankingRow(BaseModel):
    """One line of a ranking table."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rank: int = Field(ge=1)
    id: str = Field(description="unit_id or merchant_id")
    name: str = ""
    score: float
    board: str | None = Field(default=None, description="red (红榜), black (黑榜) or None")
    bottom: bool = Field(default=False, description="Among the bottom N that the rules penalise (末位)")
    figures: dict[str, float | int | None] = Field(default_factory=dict, description="Key counters and rates")
    grade: str | None = Field(default=None, description="A merchant's grade (A/B/C) for the month")
    tied: bool = Field(
        default=False, description="Another row has the same score and rank (并列); lists never separate them"
    )


class UnassessedRow(BaseModel):
    """A unit or merchant with nothing assessed in the period: listed apart, not ranked (本期无案件)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(description="unit_id or merchant_id")
    name: str = ""
    reason: Literal["no_cases"] = Field(default="no_cases", description="no case fell due, no check, no finding")
    figures: dict[str, float | int | None] = Field(default_factory=dict, description="Key counters and rates")


class RankingPublished(Event):
    """A period closed: the whole ranking table, per unit role (units) or per street (merchants, monthly)."""

    event_type: ClassVar[str] = "score.ranking_published"
    subject_prefix: ClassVar[str] = subjects.SCORE.format(event="ranking_published")
    example_fields: ClassVar[dict[str, object]] = {
        "kind": "unit",
        "period": "2026-W47",
        "period_kind": "week",
        "tables": {
            "sanitation": [
                {
                    "rank": 1,
                    "id": "CD-SAN",
                    "name": "城东环卫所",
                    "score": 98.5,
                    "board": "red",
                    "bottom": False,
                    "figures": {"due": 40, "on_time_rate": 0.975},
                },
            ]
        },
    }

    kind: Literal["unit", "merchant"]
    period: str
    period_kind: Literal["week", "month", "quarter", "year"]
    tables: dict[str, list[RankingRow]] = Field(
        description="role (units) or street code (merchants) → rows, best first"
    )
    unassessed: dict[str, list[UnassessedRow]] = Field(
        default_factory=dict, description="role or street code → units or merchants not ranked: nothing assessed"
    )


class MerchantGraded(Event):
    """A merchant's points for a month changed (门前N包 积分), with the grade they give."""

    event_type: ClassVar[str] = "score.merchant_graded"
    subject_prefix: ClassVar[str] = subjects.SCORE.format(event="merchant_graded")
    example_fields: ClassVar[dict[str, object]] = {
        "merchant_id": "M-CD-0007",
        "street_code": "CD",
        "period": "2026-11",
        "points": 95.0,
        "grade": "A",
        "checks": 3,
        "failures": 1,
        "warned": True,
        "escalated": False,
    }

    merchant_id: str
    street_code: str | None = None
    period: str = Field(description="Month, e.g. 2026-11")
    points: float
    grade: Literal["A", "B", "C"]
    checks: int = Field(ge=0)
    failures: int = Field(ge=0)
    warned: bool = Field(default=False, description="The first failure of the month: 批评教育")
    escalated: bool = Field(default=False, description="Repeated failure: sent to enforcement")


class MerchantGradeChanged(Event):
    """A merchant's current grade (A/B/C) moved."""

    event_type: ClassVar[str] = "score.merchant_grade_changed"
    subject_prefix: ClassVar[str] = subjects.SCORE.format(event="merchant_grade_changed")
    example_fields: ClassVar[dict[str, object]] = {
        "merchant_id": "M-CD-0007",
        "merchant_name": "东园小吃店",
        "street_code": "CD",
        "period": "2026-11",
        "previous": "A",
        "grade": "B",
        "points": 82.0,
    }

    merchant_id: str
    merchant_name: str = ""
    street_code: str | None = None
    period: str
    previous: Literal["A", "B", "C"]
    grade: Literal["A", "B", "C"]
    points: float
