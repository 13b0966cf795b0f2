"""The case as dispatch keeps it (案件): one versioned document per case in the `cases` collection. Pure."""

from __future__ import annotations

from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.values import Place, UnitRef


class State(StrEnum):
    """Where a case stands in the closed loop (docs/services/dispatch.md)."""

    dispatched = "dispatched"  # 已派遣, waiting for the lead unit to sign for it
    acknowledged = "acknowledged"  # 处置中 (signed for; also after a failed verification: 返工)
    extension_requested = "extension_requested"  # 延期申请中, still being handled
    resolved = "resolved"  # 已反馈, waiting for verification (核查)
    closed = "closed"  # 已结案
    cancelled = "cancelled"  # 已作废


OPEN_STATES = frozenset({State.dispatched, State.acknowledged, State.extension_requested, State.resolved})
TIMED_STATES = frozenset({State.dispatched, State.acknowledged, State.extension_requested})
"""States in which the deadline runs (a resolved case waits for verification, not for its unit)."""

RECENT_COMMANDS = 50
TIMER_FIELD = "next_timer_s"  # the next timer in seconds since the epoch: what the timer scan selects on
CLOSED_FIELD = "closed_s"  # when a closed or cancelled case ended, in seconds: what the purge ranges over


class Case(BaseModel):
    """Everything dispatch needs to decide the next step of a case."""

    model_config = ConfigDict(extra="ignore")

    case_id: str
    version: int = 1
    state: State
    correlation_id: str = ""
    street_code: str | None = None
    category_code: str
    place: Place
    source: str
    urgency: str = "normal"
    confidence: float = 1.0
    supervisor_found: bool = False
    merchant_id: str | None = None
    lead_unit: UnitRef
    cooperating_units: list[UnitRef] = Field(default_factory=list)
    rule_id: str
    dispatch_round: int = 1
    returned_by: list[str] = Field(default_factory=list)
    returns: int = 0
    reworks: int = 0
    time_limit: str
    dispatched_at: datetime
    started_at: datetime = Field(description="Start of the current deadline (dispatch, re-dispatch, reopen)")
    due_at: datetime
    ack_due_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    pending_extension_hours: float | None = None
    extensions: int = 0
    rating: str | None = None
    reopens: int = 0
    cycle: int = Field(default=1, description="Deadline cycle: +1 on re-dispatch and reopen (timers are per cycle)")
    timers_fired: list[str] = Field(default_factory=list)
    next_timer_at: datetime | None = None
    command_ids: list[str] = Field(default_factory=list, description="Recent command ids (idempotency)")
    outbox: dict[str, Any] | None = Field(
        default=None,
        description="What its opening published (its dispatch), emitted again by a redelivered opening: the case "
        "is the opening's only record, no ledger entry (xiuhua.consumer.Batch.guarded)",
    )

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Case:
        """Read the stored document."""
        return cls.model_validate({**doc, "case_id": doc["_id"]})

    def to_doc(self) -> dict[str, Any]:
        """The document to store (`_id` = case id; no `next_timer_at` when nothing is pending).

        The next timer is stored twice: `next_timer_at` as a date for people, and `next_timer_s`, the same moment in
        seconds since the epoch, which the timer scan selects on. nx-27017 answers a range on a number from its
        index but reads every document for a range on a date (1.5 against 33 ms at 20,000 cases), and the scan
        runs every few seconds over every case ever kept."""
        d = {k: v for k, v in _plain(self.model_dump(mode="python")).items() if v is not None}
        d["_id"] = d.pop("case_id")
        if self.next_timer_at is not None:
            d[TIMER_FIELD] = self.next_timer_at.timestamp()
        if self.closed_at is not None:  # a reopened case loses it with its closing date
            d[CLOSED_FIELD] = self.closed_at.timestamp()
        return d


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value
