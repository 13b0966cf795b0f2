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
    fallback: list[Assignee] | None = Field(
        default=None, description="Who leads when the lead returned the case (退单); None: the file's return_fallback"
    )
    priority: int = 0


class TimeLimit(BaseModel):
    """A time limit for categories (codes or prefixes) and an urgency; the first matching entry wins."""

    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=list, description="Exact codes or prefixes ending in *; empty: all")
    urgency: Urgency | None = None
    limit: str = Field(pattern=r"^\d+(\.\d+)?(h|d|nh)$", description="4h working hours, 2d working days, 4nh natural")


class RoutingFile(BaseModel):
    """routing.yaml"""

    model_config = ConfigDict(extra="forbid")

    max_returns: int = Field(default=2, ge=0, description="Returns (退单) before the command centre assigns")
    low_confidence_threshold: float = Field(
        default=0.6, ge=0, le=1, description="Classification confidence below this goes to the command centre"
    )
    return_fallback: list[Assignee] = Field(
        default_factory=list, description="Who leads, in order, when a rule's lead returned the case"
    )
    time_limits: list[TimeLimit] = Field(
        default_factory=list, description="Overrides of the catalogue's limits by category and urgency"
    )
    urgent_limit: str = Field(
        default="4nh", pattern=r"^\d+(\.\d+)?nh$", description="Limit of an urgent case whose category gives none"
    )
    acknowledge_within: str = Field(
        default="1h", pattern=r"^\d+(\.\d+)?(h|d|nh)$", description="签收 limit of a normal case"
    )
    acknowledge_within_urgent: str = Field(
        default="0.5nh", pattern=r"^\d+(\.\d+)?(h|d|nh)$", description="签收 limit of an urgent case"
    )
    merchant_category: str = Field(
        default="0401", description="Category of the enforcement case opened for an escalated merchant (门前三包)"
    )
    rules: list[Rule] = Field(min_length=1)
