"""Merchant duty events (门前三包 / 五包 / 六包), `score.v1.merchant_<event>` (docs/services/scoring.md)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts import subjects
from contracts.envelope import Event


class MerchantEscalated(Event):
    """A merchant failed its front-of-door duty again: scoring asks for an enforcement case (first a warning,
    then escalation to 综合执法). Dispatch turns it into `case.v1.opened` (source `merchant_check`) and a dispatch
    to the enforcement unit of the merchant's street."""

    event_type: ClassVar[str] = "score.merchant_escalated"
    subject_prefix: ClassVar[str] = subjects.SCORE.format(event="merchant_escalated")
    example_fields: ClassVar[dict[str, object]] = {
        "merchant_id": "M-CD-0007",
        "merchant_name": "东园小吃店",
        "street_code": "CD",
        "community_code": "CD01",
        "period": "2026-11",
        "violations": 3,
        "reason": "门前三包 repeated failure: 出店经营, 垃圾未清",
    }

    merchant_id: str
    merchant_name: str = ""
    street_code: str | None = None
    community_code: str | None = None
    period: str = Field(description="The scoring period of the failures, e.g. 2026-11 or 2026-W48")
    violations: int = Field(default=1, ge=1, description="Failed checks in the period")
    reason: str = ""

    def subject_for(self) -> str:
        return self.subject_prefix
