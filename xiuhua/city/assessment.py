"""How units and merchants are assessed (考核办法), as city data: `assessment.yaml`.

The default (cities/demo/assessment.yaml) is modelled on Jinhua's urban-district rules (按期结案率 50 points,
结案率 20, urgent cases 10, per-rework deductions) plus a satisfaction term; merchants follow the 门前五包
points system of the 门前五包 rules (monthly points, A/B/C grades, first failure a warning, repeated failure enforced).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

# The integer counters kept per unit and period (services/scoring/units.py says how each is counted).
UNIT_COUNTERS: tuple[str, ...] = (
    "dispatched",
    "acknowledged",
    "acknowledged_in_time",
    "returned",
    "extensions",
    "reworked",
    "rework_repeat",
    "overdue",
    "escalated",
    "reopened",
    "due",
    "deferred",
    "deferred_resolved_on_time",
    "resolved",
    "resolved_on_time",
    "closed",
    "closed_on_time",
    "reworked_cases",
    "rated",
    "satisfied",
    "basic",
    "unsatisfied",
    "supervisor_found",
    "urgent_due",
    "urgent_closed",
    "urgent_closed_on_time",
)

RATES = (
    "on_time_rate",
    "on_time_closure_rate",
    "closure_rate",
    "rework_rate",
    "response_rate",
    "satisfaction_rate",
    "urgent_closure_rate",
    "urgent_on_time_rate",
)


class Term(BaseModel):
    """A scored term: `points` when `rate` ≥ `full_at`, minus `per_point` for each percentage point below."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = ""
    rate: Literal[RATES]  # type: ignore[valid-type]
    points: float = Field(ge=0)
    full_at: float = Field(ge=0, le=1, description="Share at or above which the term scores full points")
    per_point: float = Field(default=1.0, ge=0, description="Points lost per percentage point below full_at")
    also: list[tuple[str, float]] = Field(
        default_factory=list,
        description="Further (rate, full_at) pairs whose shortfall also costs per_point (urgent: closure and on time)",
    )


class Deduction(BaseModel):
    """Points taken off per unit of a counter (e.g. −0.2 per failed verification)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = ""
    counter: Literal[UNIT_COUNTERS]  # type: ignore[valid-type]
    points: float = Field(ge=0)


class Targets(BaseModel):
    """Targets that are flagged when missed (城管执法精细化管理: 限时整改率 ≥ 95 %, 群众满意率 ≥ 85 %)."""

    model_config = ConfigDict(extra="forbid")

    on_time_rate: float = 0.95
    satisfaction_rate: float = 0.85


class DueRules(BaseModel):
    """What counts as due (应结案数) in the on-time and closure rates."""

    model_config = ConfigDict(extra="forbid")

    exclude_deferred: bool = Field(
        default=True, description="Subtract 缓办数: cases with an approved extension that are not closed yet"
    )
    basic_counts_as_satisfied: bool = Field(default=True, description="基本满意 counts towards the satisfaction rate")


class Ranking(BaseModel):
    """Rankings within each unit role and the red/black lists."""

    model_config = ConfigDict(extra="forbid")

    red_list: int = Field(default=5, ge=0, description="Top N of each role (红榜)")
    black_list: int = Field(default=5, ge=0, description="Bottom N of each role (黑榜)")
    bottom_flagged: int = Field(default=3, ge=0, description="Bottom N penalised (末位三名)")
    bottom_periods: list[Literal["week", "month", "quarter", "year"]] = Field(
        default=["quarter"], description="Periods whose ranking flags the bottom N (季度考核)"
    )
    roles_excluded: list[str] = Field(default_factory=lambda: ["command_centre", "hotline"])
    periods: list[Literal["week", "month", "quarter", "year"]] = Field(
        default_factory=lambda: ["week", "month", "quarter", "year"], description="Periods published at close"
    )
    check_every_s: float = Field(default=30.0, gt=0, description="How often the close timer looks")


class MerchantClassing(BaseModel):
    """How a merchant's class (分类 A/B/C) follows its monthly points: 分类动态管理 (门前五包 rules).

    The rules score merchants every month (一月一评) and review them every quarter (一季一查); their classes are
    A 落实较好, B 需巩固加强, C 脏乱差且整治后易反弹. So the class is judged on a rolling window of months, not on
    one month: a downgrade counts at once, an upgrade needs a full window of good months, and a merchant
    escalated to enforcement (多次未整改) is C for as long as that month is in the window.
    """

    model_config = ConfigDict(extra="forbid")

    window_months: int = Field(
        default=3, ge=1, le=12, description="Calendar months judged, ending with the latest assessed month (一季一查)"
    )
    upgrade_min_months: int = Field(
        default=3, ge=1, description="Assessed months in the window before the class may rise above registration"
    )
    escalated_class: Literal["A", "B", "C"] | None = Field(
        default="C", description="At best this class while a month escalated to enforcement is in the window"
    )

    @field_validator("upgrade_min_months")
    @classmethod
    def _within_window(cls, value: int, info: ValidationInfo) -> int:
        window = info.data.get("window_months")
        if window is not None and value > window:
            raise ValueError(f"must not exceed window_months ({window})")
        return value


class MerchantRules(BaseModel):
    """门前N包 points (积分制): a base per month, deductions by severity, a bonus, grades."""

    model_config = ConfigDict(extra="forbid")

    base: float = Field(default=100.0, description="Points each merchant starts a month with")
    severity_points: dict[str, float] = Field(default_factory=lambda: {"minor": 2.0, "normal": 5.0, "serious": 10.0})
    item_severity: dict[str, str] = Field(default_factory=dict, description="duty item → severity")
    default_severity: str = "normal"
    case_severity: str = Field(default="normal", description="Severity of a violation case (urgent → serious)")
    bonus: float = Field(default=5.0, ge=0, description="Exemplary month: enough checks, none failed")
    bonus_min_checks: int = Field(default=4, ge=1)
    grade_a: float = Field(default=90.0, description="A at or above")
    grade_b: float = Field(default=75.0, description="B at or above, C below")
    escalate_from: int = Field(
        default=2,
        ge=2,
        description="The n-th failure of the same duty item within repeat_window_days is escalated to enforcement "
        "(处罚); the first is 批评教育 by the community",
    )
    repeat_window_days: int = Field(
        default=30, ge=1, le=31, description="How far back a failure of the same item counts as a repeat"
    )
    escalate_when_overdue: bool = Field(
        default=True, description="A first-failure case not put right by its deadline is escalated too (逾期未整改)"
    )
    ranking_top: int = Field(default=5, ge=0)
    classing: MerchantClassing = Field(default_factory=MerchantClassing)

    @model_validator(mode="after")
    def _severities_known(self) -> MerchantRules:
        for item, sev in self.item_severity.items():
            if sev not in self.severity_points:
                raise ValueError(f"item_severity.{item}: unknown severity {sev!r}")
        for name in (self.default_severity, self.case_severity):
            if name not in self.severity_points:
                raise ValueError(f"unknown severity {name!r}")
        if self.grade_b > self.grade_a:
            raise ValueError("grade_b must not exceed grade_a")
        return self

    def item_points(self, item: str) -> float:
        """Points lost when one duty item fails."""
        return self.severity_points[self.item_severity.get(item, self.default_severity)]

    def grade(self, points: float) -> str:
        """A/B/C for a month's points."""
        return "A" if points >= self.grade_a else "B" if points >= self.grade_b else "C"


def _default_terms() -> list[Term]:
    return [
        Term(id="on_time_closure", name="按期结案率", rate="on_time_closure_rate", points=50, full_at=0.70),
        Term(id="closure", name="结案率", rate="closure_rate", points=20, full_at=0.90),
        Term(
            id="urgent",
            name="紧急案件",
            rate="urgent_closure_rate",
            points=10,
            full_at=1.0,
            per_point=0.5,
            also=[("urgent_on_time_rate", 0.95)],
        ),
        Term(id="satisfaction", name="满意率", rate="satisfaction_rate", points=20, full_at=0.85),
    ]


class AssessmentFile(BaseModel):
    """assessment.yaml"""

    model_config = ConfigDict(extra="forbid")

    terms: list[Term] = Field(default_factory=_default_terms)
    deductions: list[Deduction] = Field(
        default_factory=lambda: [
            Deduction(id="rework", name="核查不通过返工", counter="reworked", points=0.2),
            Deduction(id="rework_repeat", name="三次及以上核查不通过", counter="rework_repeat", points=0.5),
            Deduction(id="supervisor_found", name="督查发现问题", counter="supervisor_found", points=0.5),
        ]
    )
    targets: Targets = Field(default_factory=Targets)
    due: DueRules = Field(default_factory=DueRules)
    ranking: Ranking = Field(default_factory=Ranking)
    merchants: MerchantRules = Field(default_factory=MerchantRules)
