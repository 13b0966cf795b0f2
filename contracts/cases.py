"""Case lifecycle events, `case.v1.<event>.<street_code>` (docs/services/dispatch.md)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts import subjects
from contracts.envelope import Event
from contracts.values import Place, Reporter, ReportSource, UnitRef, Urgency

_PLACE_EXAMPLE = {
    "lng": 120.1552,
    "lat": 30.2741,
    "address": "城东街道 解放路 18 号",
    "district_code": "330102",
    "street_code": "CD",
    "street_name": "城东街道",
    "community_code": "CD01",
    "community_name": "东园社区",
    "grid_code": "CD01-03",
}


_UNIT_EXAMPLE: dict[str, object] = {
    "case_id": "C-01935d1e7a4b",
    "street_code": "CD",
    "unit_id": "CD-SAN",
    "version": 3,
    "actor": {"unit_id": "CD-SAN", "role": "sanitation", "name": "王强"},
    "command_id": "cmd-1",
}


class CaseEvent(Event):
    """Base of every case event: carries the case id and the place used in the subject."""

    # A breaking change of an event is a new model with subject_version 2, published side by side with v1.
    subject_version: ClassVar[int] = 1

    case_id: str
    street_code: str | None = Field(default=None, description="街道 code, also the last subject token")

    def subject_for(self) -> str:
        return subjects.case_subject(self.event_type.split(".", 1)[1], self.street_code, self.subject_version)

    @classmethod
    def subject_pattern(cls) -> str:
        return f"case.v{cls.subject_version}.{cls.event_type.split('.', 1)[1]}.{{street_code}}"


class CaseOpened(CaseEvent):
    """A report became a registered case (立案)."""

    event_type: ClassVar[str] = "case.opened"

    source: ReportSource
    source_ref: str = Field(description="The source system's reference (report_id, order_no ...)")
    category_code: str
    category_name: str = ""
    category_confidence: float = Field(default=1.0, ge=0, le=1)
    description: str
    place: Place
    urgency: Urgency = Urgency.normal
    reported_at: datetime
    reporter: Reporter | None = None
    photo_urls: list[str] = Field(default_factory=list)
    merchant_id: str | None = None
    supervisor_found: bool = Field(
        default=False, description="Found by supervisors (督查/暗访), counted against the unit"
    )
    handled_on_site: bool = False
    # Added in v1 (optional, so old consumers and producers are unaffected): where manual assignment starts from.
    suggested_category_code: str | None = Field(
        default=None,
        description="Manual triage (人工分拣, category_code 9901): the classifier's best catalogue item, for the "
        "command centre's assignment to start from; None when the text gave no hint or the case was not triaged",
    )
    suggested_category_confidence: float | None = Field(
        default=None, ge=0, le=1, description="The classifier's probability for suggested_category_code"
    )
    classifier_version: str | None = Field(
        default=None,
        description="The text classifier in use when intake opened the case (the city's learnt model's version, "
        "or keywords-ngrams/N), whether or not the source named the category; None from older producers",
    )

    example_fields: ClassVar[dict[str, object]] = {
        "case_id": "C-01935d1e7a4b",
        "street_code": "CD",
        "source": "grid",
        "source_ref": "R-20261123-001",
        "category_code": "0201",
        "category_name": "垃圾箱满溢",
        "category_confidence": 1.0,
        "description": "解放路口垃圾箱满溢",
        "place": _PLACE_EXAMPLE,
        "urgency": "normal",
        "reported_at": "2026-11-23T01:58:00Z",
        "reporter": {"kind": "inspector", "key": "k-5f2c", "display": "G-017"},
        "photo_urls": [],
        "merchant_id": None,
        "supervisor_found": False,
        "handled_on_site": False,
    }


class CaseDispatched(CaseEvent):
    """The case was sent to a lead unit (派遣), with cooperating units, the rule that chose them and a deadline."""

    event_type: ClassVar[str] = "case.dispatched"

    category_code: str
    lead_unit: UnitRef
    cooperating_units: list[UnitRef] = Field(default_factory=list)
    rule_id: str
    due_at: datetime
    urgency: Urgency = Urgency.normal
    time_limit: str = Field(description="The limit as configured, e.g. 2d, 4h, 4nh")
    place: Place | None = Field(
        default=None, description="Where the case is (as in case.v1.opened), so a reader can name the place"
    )
    due_at_estimated: bool = Field(
        default=False,
        description="The deadline counted days of a year whose official holiday schedule the city has not entered "
        "(rule-based holidays, no 调休): it may move when the schedule is published",
    )
    dispatch_round: int = Field(default=1, ge=1, description="1, then +1 each time a return re-routes it")
    source: ReportSource | None = Field(default=None, description="Where the case came from")
    supervisor_found: bool = Field(
        default=False, description="Found by supervisors (督查/暗访): counted against the unit that missed it"
    )
    returned_by: list[str] = Field(default_factory=list, description="Units that returned it before (excluded)")
    actor: dict[str, str] | None = Field(
        default=None, description="Who dispatched it by hand (人工派遣, rule_id manual): {unit_id, role, name}"
    )
    command_id: str | None = Field(default=None, description="The command that caused this dispatch (return, assign)")
    reason: str | None = Field(default=None, description="Why the command centre chose this unit (manual dispatch)")

    example_fields: ClassVar[dict[str, object]] = {
        "case_id": "C-01935d1e7a4b",
        "street_code": "CD",
        "category_code": "0201",
        "lead_unit": {"unit_id": "CD-SAN", "name": "城东环卫所", "role": "sanitation"},
        "cooperating_units": [{"unit_id": "CD01", "name": "东园社区", "role": "community"}],
        "rule_id": "bins-sanitation",
        "due_at": "2026-11-23T06:00:00Z",
        "urgency": "normal",
        "time_limit": "4h",
        "dispatch_round": 1,
    }


class CaseMerged(CaseEvent):
    """A new report was a duplicate of an open case (same category, near in place and time): merged into it.

    `case_id` is the open case that gained a reporter; no new case exists.
    """

    event_type: ClassVar[str] = "case.merged"
    example_fields: ClassVar[dict[str, object]] = {
        "case_id": "C-01935d1e7a4b",
        "street_code": "CD",
        "source": "hotline",
        "source_ref": "12345-20261123-0042",
        "reporter": {"kind": "caller", "key": "p-1f2e3d", "display": "张* 138****5678"},
        "distance_m": 35.0,
        "reporters_count": 2,
    }

    source: ReportSource
    source_ref: str
    reporter: Reporter | None = None
    distance_m: float | None = Field(default=None, ge=0)
    reporters_count: int = Field(default=2, ge=2, description="Reports now attached to the case")


class CaseTransferred(CaseEvent):
    """Outside city-management scope (wages, schooling, medical care ...): sent to an outside department (转办)."""

    event_type: ClassVar[str] = "case.transferred"
    example_fields: ClassVar[dict[str, object]] = {
        "case_id": "C-01935d1e7a4c",
        "street_code": "CD",
        "source": "hotline",
        "source_ref": "12345-20261123-0043",
        "department": "人社局",
        "matter": "欠薪 wage arrears",
        "description": "工地拖欠工资三个月",
    }

    source: ReportSource
    source_ref: str
    department: str = Field(description="The outside department, e.g. 人社局 (human resources and social security)")
    matter: str = Field(description="What the matter is, e.g. wage arrears 欠薪")
    description: str
    reporter: Reporter | None = None


class CaseTransferCorrected(CaseEvent):
    """A transfer (转办) corrected by the command centre or the hotline (`cmd.v1.case.correct_transfer`): the case
    should have gone to another outside department, or was a city-management matter after all, in which case
    intake opened a new case for it (`opened_case_id`, announced by its own `case.v1.opened`). Published by
    intake; the corrected label is what the classifier learns (`xiuhua classify learn`)."""

    event_type: ClassVar[str] = "case.transfer_corrected"
    example_fields: ClassVar[dict[str, object]] = {
        "case_id": "C-01935d1e7a4c",
        "street_code": "CD",
        "source": "hotline",
        "source_ref": "12345-20261123-0043",
        "transferred_to": "区人社局劳动保障监察大队",
        "transfer_id": "consumer",
        "department": "区市场监管局",
        "matter": "消费纠纷 consumer dispute",
        "actor": {"unit_id": "XH-CC", "role": "command_centre", "name": "李敏"},
        "command_id": "cmd-7",
        "reason": "是商家售后纠纷，应转市场监管局",
    }

    source: ReportSource
    source_ref: str
    transferred_to: str = Field(description="The outside department it had been transferred to")
    transfer_id: str | None = Field(default=None, description="The outside matter it belongs to (intake.yaml)")
    department: str | None = Field(default=None, description="That matter's department")
    matter: str | None = Field(default=None, description="That matter, e.g. 消费纠纷 consumer dispute")
    category_code: str | None = Field(default=None, description="The catalogue item it belongs to (a city matter)")
    opened_case_id: str | None = Field(default=None, description="The case intake opened for it (category_code)")
    actor: dict[str, str] = Field(description="Who corrected it: {unit_id, role, name}")
    command_id: str
    reason: str = ""


class UnitCaseEvent(CaseEvent):
    """A lifecycle event done by or to a unit; `unit_id` is the case's lead unit at the time."""

    unit_id: str
    actor: dict[str, str] | None = Field(default=None, description="Who did it: {unit_id, role, name}")
    command_id: str | None = Field(default=None, description="The command that caused it, if any")
    version: int = Field(default=1, ge=1, description="The case's version after this event")
    supervisor_found: bool = Field(
        default=False, description="Found by supervisors (督查/暗访): counted against the unit that missed it"
    )


class CaseAcknowledged(UnitCaseEvent):
    """The lead unit signed for the case (签收)."""

    event_type: ClassVar[str] = "case.acknowledged"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "in_time": True}

    in_time: bool = Field(description="Acknowledged before the acknowledgement limit")


class CaseReturned(UnitCaseEvent):
    """The lead unit returned a wrong assignment (退单); dispatch re-routes it or hands it to the command centre."""

    event_type: ClassVar[str] = "case.returned"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "reason": "不属于本单位职责", "returns": 1}

    reason: str
    returns: int = Field(ge=1, description="How many times this case has been returned")


class CaseExtensionRequested(UnitCaseEvent):
    """The lead unit asked for more time (延期申请)."""

    event_type: ClassVar[str] = "case.extension_requested"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "hours": 16, "reason": "需协调产权单位"}

    hours: float = Field(gt=0)
    reason: str


class CaseExtensionApproved(UnitCaseEvent):
    """The command centre approved more time; the deadline moves (延期批准)."""

    event_type: ClassVar[str] = "case.extension_approved"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "hours": 16, "due_at": "2026-11-25T09:30:00Z"}

    hours: float = Field(gt=0)
    due_at: datetime = Field(description="The new deadline")


class CaseResolved(UnitCaseEvent):
    """The lead unit reports the problem fixed, with photos (处置反馈)."""

    event_type: ClassVar[str] = "case.resolved"
    example_fields: ClassVar[dict[str, object]] = {
        **_UNIT_EXAMPLE,
        "note": "已清运",
        "photo_urls": ["https://img.example/after.jpg"],
        "on_time": True,
    }

    note: str = ""
    photo_urls: list[str] = Field(default_factory=list)
    on_time: bool = Field(description="Resolved before the (possibly extended) deadline")


class CaseVerified(UnitCaseEvent):
    """Field verification (核查): passed closes the case; failed sends it back to the unit (返工)."""

    event_type: ClassVar[str] = "case.verified"
    example_fields: ClassVar[dict[str, object]] = {
        **_UNIT_EXAMPLE,
        "passed": True,
        "note": "现场核查通过",
        "photo_urls": [],
        "rework_count": 0,
    }

    passed: bool
    note: str = ""
    photo_urls: list[str] = Field(default_factory=list)
    rework_count: int = Field(default=0, ge=0, description="Failed verifications so far")


class CaseClosed(UnitCaseEvent):
    """The case has ended: closed (结案) or, with `outcome` cancelled and `closed_by` cancel, cancelled (作废)."""

    event_type: ClassVar[str] = "case.closed"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "on_time": True, "closed_by": "verification"}

    on_time: bool = Field(description="Resolved before the deadline (always false for a cancelled case)")
    closed_by: str = Field(description="verification, command_centre, cancel")
    outcome: Literal["closed", "cancelled"] = Field(
        default="closed",
        description="closed: 结案, the problem was dealt with; cancelled: 作废, the case ended without being handled "
        "(also published as case.cancelled). Counts of closures and on-time closures leave cancelled cases out",
    )
    reason: str | None = Field(default=None, description="Why the case was cancelled")


class CaseReopened(UnitCaseEvent):
    """A closed case is opened again (重新打开) and goes back to its unit."""

    event_type: ClassVar[str] = "case.reopened"
    example_fields: ClassVar[dict[str, object]] = {
        **_UNIT_EXAMPLE,
        "reason": "问题复发",
        "due_at": "2026-11-24T06:00:00Z",
    }

    reason: str
    due_at: datetime | None = Field(default=None, description="The new deadline of the reopened case")


class CaseRated(UnitCaseEvent):
    """The reporter's satisfaction from the call-back (回访)."""

    event_type: ClassVar[str] = "case.rated"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "satisfaction": "satisfied"}

    satisfaction: str = Field(pattern="^(satisfied|basic|unsatisfied)$")


class CaseCancelled(UnitCaseEvent):
    """The command centre cancelled the case (作废), e.g. a false report."""

    event_type: ClassVar[str] = "case.cancelled"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "reason": "虚假举报"}

    reason: str


class CaseDeadlineWarning(UnitCaseEvent):
    """A share of the time limit has passed (预警, default 80 %)."""

    event_type: ClassVar[str] = "case.deadline_warning"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "due_at": "2026-11-23T06:00:00Z", "share": 0.8}

    due_at: datetime
    share: float = Field(gt=0, lt=1)


class CaseOverdue(UnitCaseEvent):
    """The deadline passed without resolution (超期)."""

    event_type: ClassVar[str] = "case.overdue"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "due_at": "2026-11-23T06:00:00Z"}

    due_at: datetime


class CaseEscalated(UnitCaseEvent):
    """An overdue case escalated one level: 1 unit head, 2 street leadership, 3 挂牌督办."""

    event_type: ClassVar[str] = "case.escalated"
    example_fields: ClassVar[dict[str, object]] = {**_UNIT_EXAMPLE, "level": 1, "due_at": "2026-11-23T06:00:00Z"}

    level: int = Field(ge=1)
    due_at: datetime


class CaseCommandRejected(CaseEvent):
    """A command that could not be applied (wrong state, wrong unit, unknown case), with the reason."""

    event_type: ClassVar[str] = "case.command_rejected"
    example_fields: ClassVar[dict[str, object]] = {
        "case_id": "C-01935d1e7a4b",
        "street_code": "CD",
        "command_id": "cmd-2",
        "action": "resolve",
        "reason": "wrong_state",
        "detail": "a closed case cannot be resolved",
        "state": "closed",
    }

    command_id: str
    action: str
    reason: str = Field(
        description="Machine-readable: unknown_case, wrong_state, wrong_unit, wrong_role, conflict, invalid, "
        "unknown_unit, unknown_category (assign, correct_transfer), unknown_transfer (correct_transfer)"
    )
    detail: str = ""
    state: str | None = Field(default=None, description="The case's state when the command arrived")
