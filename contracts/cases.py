"""Case lifecycle events, `case.v1.<event>.<street_code>` (DESIGN.md §5 Lifecycle, §8)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import ConfigDict, Field

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


class CaseEvent(Event):
    """Base of every case event: carries the case id and the place used in the subject."""

    case_id: str
    street_code: str | None = Field(default=None, description="街道 code, also the last subject token")

    def subject_for(self) -> str:
        return subjects.case_subject(self.event_type.split(".", 1)[1], self.street_code)


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

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "01935d1e-7a4b-7c3d-8e9f-0123456789ab",
                    "occurred_at": "2026-11-23T02:00:00Z",
                    "schema_version": 1,
                    "correlation_id": "grid:R-20261123-001",
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
            ]
        }
    )


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
    dispatch_round: int = Field(default=1, ge=1, description="1, then +1 each time a return re-routes it")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "event_id": "01935d1e-7a4c-7c3d-8e9f-0123456789ab",
                    "occurred_at": "2026-11-23T02:00:01Z",
                    "schema_version": 1,
                    "correlation_id": "grid:R-20261123-001",
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
            ]
        }
    )
