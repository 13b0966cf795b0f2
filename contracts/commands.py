"""Commands to dispatch, `cmd.v1.case.<action>`: imperative, from units and the command centre."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contracts import subjects
from contracts.envelope import Exampled
from contracts.values import UnitRole


class Actor(BaseModel):
    """Who sends a command; trusted because NATS permissions decide who may publish which command subject."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    unit_id: str
    role: UnitRole
    name: str = ""


_CENTRE_EXAMPLE = {"unit_id": "XH-CC", "role": "command_centre", "name": "李敏"}


class CaseCommand(Exampled, BaseModel):
    """Fields every command carries. An action's `example_fields` add to (or change) `example_base`."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    action: ClassVar[str] = ""
    # The service that applies it: dispatch owns the lifecycle of the cases it routes; intake owns a transfer
    # (转办), which never reaches dispatch. Every command arrives on `cmd.v1.case.*`; the other service skips it.
    handled_by: ClassVar[str] = "dispatch"
    example_base: ClassVar[dict[str, Any]] = {
        "command_id": "CD-SAN-20261123-0001",
        "case_id": "C-01935d1e7a4b",
        "actor": {"unit_id": "CD-SAN", "role": "sanitation", "name": "王强"},
        "at": "2026-11-23T03:00:00Z",
    }

    command_id: str = Field(min_length=1, max_length=128)
    case_id: str = Field(min_length=1, max_length=64)
    actor: Actor
    at: AwareDatetime

    def subject(self) -> str:
        """`cmd.v1.case.<action>`."""
        return subjects.COMMAND.format(action=self.action)


class Acknowledge(CaseCommand):
    """签收: the lead unit takes the case."""

    action: ClassVar[str] = "acknowledge"


class Return(CaseCommand):
    """退单: the lead unit says the case is not theirs."""

    action: ClassVar[str] = "return"
    example_fields: ClassVar[dict[str, Any]] = {"reason": "不属于本单位职责，应由市场监管所处理"}
    reason: str = Field(min_length=1, max_length=1000)


class RequestExtension(CaseCommand):
    """延期申请."""

    action: ClassVar[str] = "request_extension"
    example_fields: ClassVar[dict[str, Any]] = {"hours": 16, "reason": "需协调产权单位更换井盖"}
    hours: float = Field(gt=0, le=24 * 90)
    reason: str = Field(min_length=1, max_length=1000)


class ApproveExtension(CaseCommand):
    """延期批准 (command centre)."""

    action: ClassVar[str] = "approve_extension"
    example_fields: ClassVar[dict[str, Any]] = {"actor": _CENTRE_EXAMPLE}


class Resolve(CaseCommand):
    """处置反馈: fixed, with a note and photos."""

    action: ClassVar[str] = "resolve"
    example_fields: ClassVar[dict[str, Any]] = {
        "note": "已清运，周边已冲洗",
        "photo_urls": ["https://img.example/after.jpg"],
    }
    note: str = Field(default="", max_length=4000)
    photo_urls: list[str] = Field(default_factory=list, max_length=20)


class Verify(CaseCommand):
    """核查: passed closes the case, failed sends it back for rework."""

    action: ClassVar[str] = "verify"
    example_fields: ClassVar[dict[str, Any]] = {
        "actor": _CENTRE_EXAMPLE,
        "passed": True,
        "note": "现场核查通过",
        "photo_urls": [],
    }
    passed: bool
    note: str = Field(default="", max_length=4000)
    photo_urls: list[str] = Field(default_factory=list, max_length=20)


class Close(CaseCommand):
    """结案 by the command centre."""

    action: ClassVar[str] = "close"
    example_fields: ClassVar[dict[str, Any]] = {"actor": _CENTRE_EXAMPLE}


class Reopen(CaseCommand):
    """重新打开."""

    action: ClassVar[str] = "reopen"
    example_fields: ClassVar[dict[str, Any]] = {"actor": _CENTRE_EXAMPLE, "reason": "问题复发"}
    reason: str = Field(min_length=1, max_length=1000)


class Rate(CaseCommand):
    """回访 satisfaction (hotline or command centre)."""

    action: ClassVar[str] = "rate"
    example_fields: ClassVar[dict[str, Any]] = {
        "actor": {"unit_id": "HOTLINE", "role": "hotline", "name": "12345 回访"},
        "satisfaction": "satisfied",
    }
    satisfaction: Literal["satisfied", "basic", "unsatisfied"]


class Cancel(CaseCommand):
    """作废 (command centre)."""

    action: ClassVar[str] = "cancel"
    example_fields: ClassVar[dict[str, Any]] = {"actor": _CENTRE_EXAMPLE, "reason": "虚假举报"}
    reason: str = Field(min_length=1, max_length=1000)


class Assign(CaseCommand):
    """人工派遣 (command centre): a case routing could not place — manual triage (待人工分拣), low classifier
    confidence, returned too many times — goes to the unit the centre names, with a deadline from its category."""

    action: ClassVar[str] = "assign"
    example_fields: ClassVar[dict[str, Any]] = {
        "actor": _CENTRE_EXAMPLE,
        "unit_id": "CD-ENF",
        "cooperating_unit_ids": ["CD01"],
        "category_code": "0101",
        "reason": "分拣: 占道经营, 交城东综合执法队",
    }
    unit_id: str = Field(min_length=1, max_length=64, description="The lead unit (牵头单位) the case goes to")
    cooperating_unit_ids: list[str] | None = Field(
        default=None,
        max_length=20,
        description="配合单位. Omitted: the category's cooperating roles at the case's place (属地); [] for none",
    )
    category_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="The case's category as the centre judges it (改类); omitted: unchanged. Sets the time limit",
    )
    reason: str = Field(default="", max_length=1000, description="Why this unit (kept on the dispatch)")


class CorrectTransfer(CaseCommand):
    """转办纠错 (command centre, hotline): a case transferred out of scope (`case.v1.transferred`) should have gone
    elsewhere — to another outside matter (`transfer_id`, as the city's intake.yaml lists it), or to a city-management
    unit (`category_code`: intake opens a new case in that category, and dispatch routes it). Exactly one of the
    two. Applied by intake, answered with `case.v1.transfer_corrected` (or `case.v1.command_rejected`); the
    classifier learns the order's text under its corrected label (`xiuhua classify learn`)."""

    action: ClassVar[str] = "correct_transfer"
    handled_by: ClassVar[str] = "intake"
    example_fields: ClassVar[dict[str, Any]] = {
        "case_id": "C-01935d1e7a4c",
        "actor": _CENTRE_EXAMPLE,
        "transfer_id": "consumer",
        "reason": "是商家售后纠纷，应转市场监管局",
    }
    transfer_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The outside matter it belongs to: a `transfers[].id` of the city's intake.yaml (e.g. consumer)",
    )
    category_code: str | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="The catalogue item it belongs to: a city-management matter after all (a new case is opened)",
    )
    reason: str = Field(default="", max_length=1000, description="Why (kept on the correction)")

    @model_validator(mode="after")
    def _one_target(self) -> CorrectTransfer:
        if (self.transfer_id is None) == (self.category_code is None):
            raise ValueError("name exactly one of transfer_id and category_code")
        return self


COMMANDS: dict[str, type[CaseCommand]] = {
    c.action: c
    for c in (
        Acknowledge,
        Return,
        RequestExtension,
        ApproveExtension,
        Resolve,
        Verify,
        Close,
        Reopen,
        Rate,
        Cancel,
        Assign,
        CorrectTransfer,
    )
}

_ = datetime  # re-exported type for annotations in integrators' code
