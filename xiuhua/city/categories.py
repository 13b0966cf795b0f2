"""The problem catalogue (部件 components / 事件 events, 大类 / 小类), as city data."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from contracts.values import UnitRole, Urgency

LIMIT_RE = re.compile(r"^\d+(\.\d+)?(h|d|nh)$")


class Category(BaseModel):
    """A 小类: one kind of problem and how it is handled by default."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9A-Za-z]{2,12}$")
    name_zh: str
    name_en: str
    kind: Literal["component", "event"] = "event"
    urgency: Urgency = Urgency.normal
    time_limit: str = Field(default="2d", description="Working hours (h), working days (d), natural hours (nh)")
    lead_role: UnitRole
    cooperating_roles: list[UnitRole] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list, description="Phrases of free-text classification")
    negative_keywords: list[str] = Field(
        default_factory=list, description="A text containing one of these is never this item"
    )
    service_code: str | None = Field(default=None, description="Open311 service_code")
    severity: Literal["minor", "normal", "serious"] = "normal"

    @model_validator(mode="after")
    def _limit(self) -> Category:
        if not LIMIT_RE.match(self.time_limit):
            raise ValueError(f"time_limit {self.time_limit!r} is not like 4h, 2d or 4nh")
        return self


class CategoryGroup(BaseModel):
    """A 大类."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9A-Za-z]{1,6}$")
    name_zh: str
    name_en: str
    kind: Literal["component", "event"] = "event"
    items: list[Category] = Field(min_length=1)

    @model_validator(mode="after")
    def _prefix(self) -> CategoryGroup:
        for item in self.items:
            if not item.code.startswith(self.code):
                raise ValueError(f"item {item.code} does not start with its group code {self.code}")
        return self


class Catalogue(BaseModel):
    """categories.yaml"""

    model_config = ConfigDict(extra="forbid")

    groups: list[CategoryGroup] = Field(min_length=1)
    _by_code: dict[str, Category] = PrivateAttr(default_factory=dict)
    _by_service_code: dict[str, Category] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        seen: dict[str, Category] = {}
        services: dict[str, Category] = {}
        for item in self.items():
            if item.code in seen:
                raise ValueError(f"duplicate category code {item.code}")
            seen[item.code] = item
            if item.service_code:
                if item.service_code in services:
                    raise ValueError(f"duplicate service_code {item.service_code} ({item.code})")
                services[item.service_code] = item
        self._by_code = seen
        self._by_service_code = services
        return self

    def items(self) -> list[Category]:
        """Every 小类."""
        return [i for g in self.groups for i in g.items]

    def get(self, code: str) -> Category | None:
        """The item with a code."""
        return self._by_code.get(code)

    def by_service_code(self, service_code: str) -> Category | None:
        """The item an Open311 service_code answers to."""
        return self._by_service_code.get(service_code)

    def group_of(self, code: str) -> CategoryGroup | None:
        """The 大类 of an item code."""
        return next((g for g in self.groups if any(i.code == code for i in g.items)), None)
