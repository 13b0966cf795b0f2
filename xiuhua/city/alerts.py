"""Alert rules (告警规则): which event reaches which people of which unit, on which channels."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AlertKind = Literal[
    "new_case", "deadline_warning", "overdue", "escalation", "sensor_emergency", "bottom_ranking",
    "merchant_escalation", "delivery_failed",
]


class AlertRule(BaseModel):
    """One rule: an alert kind to the contacts with a duty of the units in a relation to the case."""

    model_config = ConfigDict(extra="forbid")

    kind: AlertKind
    to: list[Literal["lead_unit", "cooperating_units", "command_centre", "street_office"]] = ["lead_unit"]
    duties: list[str] = Field(default_factory=lambda: ["duty"], description="Which contacts of those units")
    channels: list[str] = Field(default_factory=lambda: ["file"])
    urgent: bool = False
    min_level: int = 0


class AlertsFile(BaseModel):
    """alerts.yaml"""

    model_config = ConfigDict(extra="forbid")

    quiet_hours: str | None = Field(default="22:00-07:30", description="Non-urgent alerts wait, local time")
    rules: list[AlertRule] = Field(min_length=1)
