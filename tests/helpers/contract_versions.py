"""A second version of case.opened, and events of both, for the tests of versioned contracts."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from contracts.cases import CaseEvent, CaseOpened


class CaseOpenedV2(CaseEvent):
    """立案, second version: `source_ref` renamed `reference`, urgency narrowed to two values, place flattened."""

    event_type: ClassVar[str] = "case.opened"
    subject_version: ClassVar[int] = 2
    example_fields: ClassVar[dict[str, object]] = {
        "case_id": "C-01935d1e7a4b",
        "street_code": "CD",
        "source": "grid",
        "reference": "R-20261123-001",
        "category_code": "0201",
        "description": "解放路口垃圾箱满溢",
        "address": "城东街道 解放路 18 号",
        "urgency": "normal",
        "reported_at": "2026-11-23T01:58:00Z",
    }

    schema_version: int = Field(default=2, ge=1)
    source: str
    reference: str
    category_code: str
    description: str
    address: str
    urgency: Literal["normal", "urgent"] = "normal"
    reported_at: datetime


def v1_event(case_id: str = "C-1") -> CaseOpened:
    return CaseOpened.model_validate({**CaseOpened.example(), "case_id": case_id, "event_id": f"e1-{case_id}"})


def v2_event(case_id: str = "C-1") -> CaseOpenedV2:
    return CaseOpenedV2.model_validate({**CaseOpenedV2.example(), "case_id": case_id, "event_id": f"e2-{case_id}"})
