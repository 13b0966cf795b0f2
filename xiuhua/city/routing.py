"""Routing rules (派遣规则): which unit leads a case and who cooperates, as city data."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.values import ReportSource, UnitRole, Urgency


class Match(BaseModel):
    """Conditions; every one given must hold. Empty lists match anything."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=list, description="Exact codes or prefixes ending in *")
    areas: list[str] = Field(default_factory=list, description="District, street, community or grid codes")
    sources: list[ReportSource] = Field(default_factory=list)
    urgency: Urgency | None = None
    hours: str | None = Field(default=None, description="Local time window like 22:00-06:00")


class Assignee(BaseModel):
    """A unit by role (resolved to the unit responsible for the place, 属地) or by id."""

    model_config = ConfigDict(extra="forbid")

    role: UnitRole | None = None
    unit: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Assignee:
        if (self.role is None) == (self.unit is None):
            raise ValueError("give exactly one of role or unit")
        return self


class Rule(BaseModel):
    """One routing rule; the most specific matching rule wins, then the higher priority."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    match: Match = Field(default_factory=Match)
    lead: Assignee | None = Field(default=None, description="None: the category's default lead role")
    cooperating: list[Assignee] | None = Field(default=None, description="None: the category's defaults")
    priority: int = 0


class RoutingFile(BaseModel):
    """routing.yaml"""

    model_config = ConfigDict(extra="forbid")

    max_returns: int = Field(default=2, ge=0, description="Returns (退单) before the command centre assigns")
    rules: list[Rule] = Field(min_length=1)
