"""Scoring's queries, `score.query.v1.<query>`: core NATS request/reply, not JetStream (docs/services/scoring.md).

An outside system (a dashboard, the 12345 platform, a unit's case system, `xiuhua scoring show`) sends a request
with a reply inbox; one scoring instance of queue group `scoring-query` answers with the query's reply or with a
`QueryErrorReply`. Nothing is stored: the subjects sit outside `score.v1.>` on purpose, since the `XH_SCORES`
stream captures that namespace and would answer a request with its own acknowledgement.

Each query has a request model and a reply model (`QUERIES`); every failure of every query is a
`QueryErrorReply` with a code from `ERROR_CODES`. The replies carry what scoring's store holds (考核 figures
of a unit and period, a merchant's 门前N包 month and class, a period's ranking), in the stored shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contracts.envelope import Exampled
from contracts.scores import RankingRow, UnassessedRow

QUERY = "score.query.v1.{query}"
QUERY_ALL = "score.query.v1.*"
QUERY_UNIT = QUERY.format(query="unit")
QUERY_MERCHANT = QUERY.format(query="merchant")
QUERY_RANKING = QUERY.format(query="ranking")
QUEUE_GROUP = "scoring-query"

# code → the only message a caller ever sees for it (a closed set: a new code is a new contract version).
ERROR_CODES: dict[str, str] = {
    "bad_request": "bad request",
    "unknown_unit": "unknown unit",
    "unknown_merchant": "unknown merchant",
    "bad_period": "bad period",
    "unknown_query": "unknown query",
    "internal": "internal error",
}
ErrorCode = Literal["bad_request", "unknown_unit", "unknown_merchant", "bad_period", "unknown_query", "internal"]
Grade = Literal["A", "B", "C"]
PeriodKind = Literal["week", "month", "quarter", "year"]
PERIOD_KINDS: tuple[str, ...] = ("week", "month", "quarter", "year")

# 2026-W48 (ISO week 01–53), 2026-11 (month), 2026-Q4 (quarter), 2026 (year); the schema carries the same rule.
_PERIOD = r"\d{4}(-W(0[1-9]|[1-4][0-9]|5[0-3])|-(0[1-9]|1[0-2])|-Q[1-4])?"
PERIOD_PATTERN = f"^{_PERIOD}$"
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
ID_MAX = 128
_CORRELATION = r"^q-[0-9a-f]{16}$"


def period_kind(period: str) -> str | None:
    """week / month / quarter / year for a well-formed period, None otherwise."""
    if not re.fullmatch(_PERIOD, period):
        return None
    if "-W" in period:
        return "week"
    if "-Q" in period:
        return "quarter"
    return "month" if "-" in period else "year"


def _blank_is_none(v: Any) -> Any:
    """An empty period means "not given" (callers build requests from optional form fields)."""
    return None if v == "" else v


class QueryRequest(Exampled, BaseModel):
    """Fields of every query request; unknown fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class QueryReply(Exampled, BaseModel):
    """A successful reply."""

    model_config = ConfigDict(frozen=True, extra="ignore")


# ---- unit figures -----------------------------------------------------------------------------------------


class UnitFiguresQuery(QueryRequest):
    """A unit's assessment figures (考核): one period, or the four current ones (week, month, quarter, year)."""

    example_fields: ClassVar[dict[str, Any]] = {"unit_id": "CD-SAN", "period": "2026-11"}

    unit_id: str = Field(min_length=1, max_length=ID_MAX, description="A unit of the city's units.yaml")
    period: str | None = Field(
        default=None,
        pattern=PERIOD_PATTERN,
        description="2026-W48, 2026-11, 2026-Q4 or 2026; absent: the current week, month, quarter and year",
    )

    _blank = field_validator("period", mode="before")(_blank_is_none)


class UnitPeriodFigures(BaseModel):
    """One unit and period as scoring keeps it: counters, the rates and score the assessment rules derive."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    unit_id: str
    role: str = Field(description="The unit's role; rankings are within a role")
    period: str
    kind: PeriodKind
    # Per-dispatch counters: attributed to the unit named in the event, in the periods of its dispatch.
    dispatched: int = Field(default=0, description="派单: dispatches to the unit")
    acknowledged: int = Field(default=0, description="签收")
    acknowledged_in_time: int = Field(default=0, description="签收 within the response time")
    returned: int = Field(default=0, description="退单")
    extensions: int = Field(default=0, description="延期 approved")
    reworked: int = Field(default=0, description="核查不通过: failed verifications")
    rework_repeat: int = Field(default=0, description="Failed verifications from the third on")
    overdue: int = Field(default=0, description="超期")
    escalated: int = Field(default=0, description="升级")
    reopened: int = Field(default=0, description="重新办理")
    # Case outcomes: attributed to the responsible (lead) unit of the case's last dispatch round.
    due: int = Field(default=0, description="应结案: cases that fell due")
    deferred: int = Field(default=0, description="Due cases with an approved extension")
    deferred_resolved_on_time: int = Field(default=0, description="Deferred cases resolved on time")
    resolved: int = Field(default=0, description="处置")
    resolved_on_time: int = Field(default=0, description="按期处置")
    closed: int = Field(default=0, description="结案")
    closed_on_time: int = Field(default=0, description="按期结案")
    reworked_cases: int = Field(default=0, description="Cases with at least one failed verification")
    rated: int = Field(default=0, description="回访: rated by the caller")
    satisfied: int = Field(default=0, description="满意")
    basic: int = Field(default=0, description="基本满意")
    unsatisfied: int = Field(default=0, description="不满意")
    supervisor_found: int = Field(default=0, description="督查发现: cases found by supervisors")
    urgent_due: int = Field(default=0, description="Urgent cases due")
    urgent_closed: int = Field(default=0, description="Urgent cases closed")
    urgent_closed_on_time: int = Field(default=0, description="Urgent cases closed on time")
    rates: dict[str, float | None] = Field(
        description="on_time_rate, on_time_closure_rate, closure_rate ... (0–1; null when nothing was due)"
    )
    terms: dict[str, float] = Field(default_factory=dict, description="Points of each score term (assessment.yaml)")
    deductions: dict[str, float] = Field(default_factory=dict, description="Points deducted, per deduction rule")
    score: float = Field(description="Composite score of the period")
    flags: list[str] = Field(default_factory=list, description="Targets missed, e.g. on_time_below_target")


class UnitFiguresReply(QueryReply):
    """A unit's figures per asked period; a period without cases is null."""

    example_fields: ClassVar[dict[str, Any]] = {
        "unit_id": "CD-SAN",
        "name": "城东环卫所",
        "periods": {
            "2026-11": {
                "unit_id": "CD-SAN",
                "role": "sanitation",
                "period": "2026-11",
                "kind": "month",
                "dispatched": 12,
                "acknowledged": 12,
                "acknowledged_in_time": 11,
                "returned": 0,
                "extensions": 0,
                "reworked": 1,
                "rework_repeat": 0,
                "overdue": 0,
                "escalated": 0,
                "reopened": 0,
                "due": 10,
                "deferred": 0,
                "deferred_resolved_on_time": 0,
                "resolved": 9,
                "resolved_on_time": 8,
                "closed": 8,
                "closed_on_time": 7,
                "reworked_cases": 1,
                "rated": 6,
                "satisfied": 5,
                "basic": 1,
                "unsatisfied": 0,
                "supervisor_found": 0,
                "urgent_due": 0,
                "urgent_closed": 0,
                "urgent_closed_on_time": 0,
                "rates": {
                    "on_time_rate": 0.8,
                    "on_time_closure_rate": 0.7,
                    "closure_rate": 0.8,
                    "rework_rate": 0.1,
                    "response_rate": 0.916667,
                    "satisfaction_rate": 1.0,
                    "urgent_closure_rate": None,
                    "urgent_on_time_rate": None,
                },
                "terms": {"on_time_closure": 50.0, "closure": 10.0, "urgent": 10.0, "satisfaction": 20.0},
                "deductions": {"rework": 0.2, "rework_repeat": 0.0, "supervisor_found": 0.0},
                "score": 89.8,
                "flags": ["on_time_below_target"],
            }
        },
    }

    unit_id: str
    name: str = Field(description="The unit's name (units.yaml)")
    periods: dict[str, UnitPeriodFigures | None] = Field(description="period → its figures, null: no cases")


# ---- merchant figures -------------------------------------------------------------------------------------


class MerchantFiguresQuery(QueryRequest):
    """A merchant's current class (分类 A/B/C) with its basis, and one month's duty checks (门前N包)."""

    example_fields: ClassVar[dict[str, Any]] = {"merchant_id": "M-CD-0007", "period": "2026-11"}

    merchant_id: str = Field(min_length=1, max_length=ID_MAX, description="A merchant of the city's merchants.yaml")
    period: str | None = Field(default=None, pattern=MONTH_PATTERN, description="A month, 2026-11; absent: this month")

    _blank = field_validator("period", mode="before")(_blank_is_none)


class MerchantMonthFigures(BaseModel):
    """One merchant-month: checks, failures, points and the grade they give."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    merchant_id: str
    period: str = Field(description="Month, e.g. 2026-11")
    street_code: str | None = None
    community_code: str | None = None
    checks: int = Field(description="检查: duty checks in the month")
    passed_checks: int
    failures: int = Field(description="Failed checks and cases found at the shop")
    deducted: float = Field(description="Points deducted")
    bonus: float = Field(description="Points added for a clean month with enough checks")
    points: float
    grade: Grade
    warned: bool = Field(description="批评教育: the first failure of the month")
    warning_at: str | None = Field(default=None, description="The check or case of that first failure")
    escalated: bool = Field(description="Repeated failure: sent to enforcement (移交执法)")
    failed_items: list[str] = Field(default_factory=list, description="Duty items that failed")


class MerchantClassBasis(BaseModel):
    """Why a merchant has its class: the rolling window of months and the rule that decided."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rule: Literal["window_mean", "registered", "escalated"]
    window: list[str] = Field(description="First and last month of the window")
    assessed_months: list[str] = Field(description="Months of the window with figures")
    mean_points: float
    mean_grade: Grade
    registered: Grade = Field(description="The class in merchants.yaml")
    escalated_months: list[str] = Field(default_factory=list)


class MerchantFiguresReply(QueryReply):
    """A merchant's class and the asked month (null when nothing was checked that month)."""

    example_fields: ClassVar[dict[str, Any]] = {
        "merchant_id": "M-CD-0007",
        "name": "东园小吃店",
        "known": True,
        "grade": "B",
        "grade_basis": {
            "rule": "registered",
            "window": ["2026-09", "2026-11"],
            "assessed_months": ["2026-10", "2026-11"],
            "mean_points": 97.5,
            "mean_grade": "A",
            "registered": "B",
            "escalated_months": [],
        },
        "period": "2026-11",
        "month": {
            "merchant_id": "M-CD-0007",
            "period": "2026-11",
            "street_code": "CD",
            "community_code": "CD-01",
            "checks": 2,
            "passed_checks": 1,
            "failures": 1,
            "deducted": 5.0,
            "bonus": 0.0,
            "points": 95.0,
            "grade": "A",
            "warned": True,
            "warning_at": "K-20261105-0007",
            "escalated": False,
            "failed_items": ["hygiene"],
        },
    }

    merchant_id: str
    name: str
    known: bool = Field(default=True, description="Always true: an unknown merchant gets unknown_merchant")
    grade: Grade = Field(description="The current class (分类)")
    grade_basis: MerchantClassBasis | None = Field(description="null: no month assessed yet (registered class)")
    period: str = Field(description="The month of `month`")
    month: MerchantMonthFigures | None


# ---- ranking ----------------------------------------------------------------------------------------------


class RankingQuery(QueryRequest):
    """A period's ranking as it stands now: units within each role, or merchants within each street (monthly)."""

    example_fields: ClassVar[dict[str, Any]] = {"kind": "unit", "period": "2026-W48"}

    kind: Literal["unit", "merchant"] = "unit"
    period_kind: PeriodKind = Field(default="month", description="Without `period`: the current one of this kind")
    period: str | None = Field(
        default=None, pattern=PERIOD_PATTERN, description="2026-W48, 2026-11, 2026-Q4 or 2026 (merchants: a month)"
    )

    _blank = field_validator("period", mode="before")(_blank_is_none)

    @model_validator(mode="after")
    def _merchants_by_month(self) -> RankingQuery:
        if self.kind == "merchant" and self.period is not None and period_kind(self.period) != "month":
            raise PydanticCustomError("bad_period", "merchants are ranked by month (2026-11)")
        return self


class RankingReply(QueryReply):
    """The ranking tables of one period, best first."""

    example_fields: ClassVar[dict[str, Any]] = {
        "kind": "unit",
        "period": "2026-W48",
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
                    "grade": None,
                },
            ]
        },
    }

    kind: Literal["unit", "merchant"]
    period: str
    tables: dict[str, list[RankingRow]] = Field(
        description="role (units) or street code (merchants) → rows, best first"
    )
    unassessed: dict[str, list[UnassessedRow]] = Field(
        default_factory=dict, description="role or street code → units or merchants not ranked: nothing assessed"
    )


# ---- errors -----------------------------------------------------------------------------------------------


class QueryErrorBody(BaseModel):
    """What went wrong: a code, its fixed message, and the id the service's log line carries too."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: ErrorCode
    message: str = Field(description="Fixed per code; never exception text")
    correlation_id: str = Field(pattern=_CORRELATION, description="Quote it to the operator: the log has the cause")


class QueryErrorReply(Exampled, BaseModel):
    """The reply of any query that cannot be answered."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    example_fields: ClassVar[dict[str, Any]] = {
        "error": {"code": "unknown_unit", "message": "unknown unit", "correlation_id": "q-3f9a0c1b2d4e5f60"}
    }

    error: QueryErrorBody

    @classmethod
    def of(cls, code: str, correlation_id: str) -> QueryErrorReply:
        """The reply for a code, with its fixed message."""
        return cls.model_validate(
            {"error": {"code": code, "message": ERROR_CODES[code], "correlation_id": correlation_id}}
        )


@dataclass(frozen=True)
class Query:
    """One query: its subject, request model and reply model."""

    name: str
    subject: str
    request: type[QueryRequest]
    reply: type[QueryReply]


QUERIES: dict[str, Query] = {
    q.name: q
    for q in (
        Query("unit", QUERY_UNIT, UnitFiguresQuery, UnitFiguresReply),
        Query("merchant", QUERY_MERCHANT, MerchantFiguresQuery, MerchantFiguresReply),
        Query("ranking", QUERY_RANKING, RankingQuery, RankingReply),
    )
}
