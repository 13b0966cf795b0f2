"""Commands to dispatch, `cmd.v1.case.<action>` (DESIGN.md §8): imperative, from units and the command centre."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.values import UnitRole


class Actor(BaseModel):
    """Who sends a command; trusted because NATS permissions decide who may publish which command subject."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    unit_id: str
    role: UnitRole
    name: str = ""


class CaseCommand(BaseModel):
    """Fields every command carries."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    action: ClassVar[str] = ""

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
    reason: str = Field(min_length=1, max_length=1000)


class RequestExtension(CaseCommand):
    """延期申请."""

    action: ClassVar[str] = "request_extension"
    hours: float = Field(gt=0, le=24 * 90)
    reason: str = Field(min_length=1, max_length=1000)


class ApproveExtension(CaseCommand):
    """延期批准 (command centre)."""

    action: ClassVar[str] = "approve_extension"


class Resolve(CaseCommand):
    """处置反馈: fixed, with a note and photos."""

    action: ClassVar[str] = "resolve"
    note: str = Field(default="", max_length=4000)
    photo_urls: list[str] = Field(default_factory=list, max_length=20)


class Verify(CaseCommand):
    """核查: passed closes the case, failed sends it back for rework."""

    action: ClassVar[str] = "verify"
    passed: bool
    note: str = Field(default="", max_length=4000)
    photo_urls: list[str] = Field(default_factory=list, max_length=20)


class Close(CaseCommand):
    """结案 by the command centre."""

    action: ClassVar[str] = "close"


class Reopen(CaseCommand):
    """重新打开."""

    action: ClassVar[str] = "reopen"
    reason: str = Field(min_length=1, max_length=1000)


class Rate(CaseCommand):
    """回访 satisfaction (hotline or command centre)."""

    action: ClassVar[str] = "rate"
    satisfaction: Literal["satisfied", "basic", "unsatisfied"]


class Cancel(CaseCommand):
    """作废 (command centre)."""

    action: ClassVar[str] = "cancel"
    reason: str = Field(min_length=1, max_length=1000)


class Assign(CaseCommand):
    """人工派遣 (command centre): a case routing could not place — manual triage (待人工分拣), low classifier
    confidence, returned too many times — goes to the unit the centre names, with a deadline from its category."""

    action: ClassVar[str] = "assign"
    unit_id: str = Field(min_length=1, max_length=64, description="The lead unit (牵头单位) the case goes to")
    cooperating_unit_ids: list[str] | None = Field(
        default=None, max_length=20,
        description="配合单位. Omitted: the category's cooperating roles at the case's place (属地); [] for none",
    )
    category_code: str | None = Field(
        default=None, min_length=1, max_length=16,
        description="The case's category as the centre judges it (改类); omitted: unchanged. Sets the time limit",
    )
    reason: str = Field(default="", max_length=1000, description="Why this unit (kept on the dispatch)")


COMMANDS: dict[str, type[CaseCommand]] = {
    c.action: c
    for c in (
        Acknowledge, Return, RequestExtension, ApproveExtension, Resolve, Verify, Close, Reopen, Rate, Cancel, Assign,
    )
}

_ = datetime  # re-exported type for annotations in integrators' code
