"""Intake's city data (intake.yaml): classifier settings, outside-department transfers, duplicate merging,
the gazetteer of place names, sensor thresholds and merchant duty items."""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xiuhua.city.areas import Areas
from xiuhua.city.loading import CityDataError, line_of

DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`30m`, `2h`, `0s`, `1d` as a timedelta."""
    m = DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"duration {text!r} is not like 30m, 2h, 0s or 1d")
    return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])


class ClassifierSettings(BaseModel):
    """How free text becomes a catalogue item."""

    model_config = ConfigDict(extra="forbid")

    triage_below: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Below this confidence a case goes to manual triage (category `triage_code`, lead command_centre)",
    )
    triage_code: str = Field(default="9901", description="The catalogue item of manual triage")
    transfer_at: float = Field(default=0.5, gt=0, le=1, description="Minimum confidence to transfer out of scope")
    synonyms: dict[str, str] = Field(
        default_factory=dict, description="Colloquial word → the word keywords use (电瓶车 → 电动车), applied first"
    )


class Transfer(BaseModel):
    """A matter outside city management (转办) and the outside department that takes it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    matter: str = Field(description="What it is, Chinese and English, e.g. 欠薪 wage arrears")
    department: str = Field(description="The outside department, e.g. 区人社局劳动保障监察大队")
    keywords: list[str] = Field(min_length=1)
    negative_keywords: list[str] = Field(default_factory=list)


class Duplicates(BaseModel):
    """A new report of the same category this near an open case, this soon, is merged into it."""

    model_config = ConfigDict(extra="forbid")

    distance_m: float = Field(default=50.0, gt=0, le=5000)
    window: str = Field(default="24h", description="How long after opening a case still absorbs reports")
    exclude_categories: list[str] = Field(
        default_factory=list, description="Codes or prefixes ending in * that never merge (e.g. the triage code)"
    )

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        parse_duration(v)
        return v


class Place(BaseModel):
    """A gazetteer entry: a road, landmark, estate or market name and the area it lies in."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=2)
    kind: Literal["road", "landmark", "estate", "market", "school", "park", "building"] = "landmark"
    area: str = Field(description="Area code (street, community or grid)")
    aliases: list[str] = Field(default_factory=list)
    lng: float | None = Field(default=None, ge=-180, le=180, description="WGS84, for landmarks with one point")
    lat: float | None = Field(default=None, ge=-90, le=90)


Op = Literal["gt", "ge", "lt", "le", "eq", "in"]


class SensorRule(BaseModel):
    """A threshold: the metric beyond `value` for `sustain` opens a case."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    op: Op = "gt"
    value: float | str | list[str]
    sustain: str = Field(default="0s", description="How long the breach must last: 30m, 2h; 0s = at once")
    category: str | None = Field(default=None, description="Overrides the device type's category")
    urgent: bool = False

    @field_validator("sustain")
    @classmethod
    def _sustain(cls, v: str) -> str:
        parse_duration(v)
        return v


class DeviceType(BaseModel):
    """Thresholds and plausible ranges of one device type."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(description="The case a sustained breach opens")
    fault_category: str = Field(description="The device-fault case (group 13) for impossible or saturated values")
    ranges: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="metric → [min, max] the device can measure: below min is impossible, at max is saturated",
    )
    fault_statuses: list[str] = Field(default_factory=list, description="`status` values that mean a device fault")
    metrics: list[str] = Field(
        default_factory=list,
        description="Further metrics its devices send that set no threshold (temperature, humidity, wind); with the "
        "metrics of `ranges` and `rules` and `status`, any other name in a reading is refused `unknown_metric`",
    )
    rules: list[SensorRule] = Field(min_length=1)

    @cached_property
    def known_metrics(self) -> frozenset[str]:
        """Every metric name a reading of this type may carry (asked of every reading: built once)."""
        return frozenset({"status", *self.ranges, *self.metrics, *(r.metric for r in self.rules)})

    @model_validator(mode="after")
    def _ranges(self) -> DeviceType:
        for metric, (lo, hi) in self.ranges.items():
            if not lo < hi:
                raise ValueError(f"range of {metric} must be [min, max] with min < max")
        return self


class IntakeFile(BaseModel):
    """intake.yaml"""

    model_config = ConfigDict(extra="forbid")

    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    transfers: list[Transfer] = Field(default_factory=list)
    duplicates: Duplicates = Field(default_factory=Duplicates)
    gazetteer: list[Place] = Field(default_factory=list)
    sensors: dict[str, DeviceType] = Field(default_factory=dict)
    merchant_duties: dict[str, str] = Field(
        default_factory=dict, description="duty item of a merchant check → category code (门前三包 group 04)"
    )
    merchant_default_category: str = "0401"
    max_report_age: str = Field(
        default="30d",
        description="Reports dated further back than this are refused `too_old` (a 1970 date is "
        "a device's unset clock, not a report)",
    )

    @field_validator("max_report_age")
    @classmethod
    def _age(cls, v: str) -> str:
        if parse_duration(v).total_seconds() <= 0:
            raise ValueError("must be longer than 0s")
        return v


def check_intake(intake: IntakeFile, path: Path, category_codes: set[str], areas: Areas) -> None:
    """Cross-check intake.yaml against the catalogue and the areas; errors name file and line."""
    if not path.exists():
        return

    def fail(loc: tuple[object, ...], msg: str) -> None:
        raise CityDataError(f"{line_of(path, loc)}: {'.'.join(map(str, loc))}: {msg}")

    if intake.classifier.triage_code not in category_codes:
        fail(("classifier", "triage_code"), f"unknown category {intake.classifier.triage_code}")
    for i, p in enumerate(intake.gazetteer):
        if p.area not in areas.by_code:
            fail(("gazetteer", i, "area"), f"unknown area {p.area}")
        if (p.lng is None) != (p.lat is None):
            fail(("gazetteer", i, "lat" if p.lat is None else "lng"), "give both lng and lat, or neither")
        if p.lng is not None and p.lat is not None and not areas.covers(p.area, p.lng, p.lat):
            # A landmark's point gives a case its coordinates: one outside its area would place the case in a
            # street the name does not belong to.
            fail(("gazetteer", i, "lng"), f"the point ({p.lng}, {p.lat}) of {p.name} lies outside its area {p.area}")
    for name, dev in intake.sensors.items():
        for field in ("category", "fault_category"):
            if getattr(dev, field) not in category_codes:
                fail(("sensors", name, field), f"unknown category {getattr(dev, field)}")
        for j, rule in enumerate(dev.rules):
            if rule.category and rule.category not in category_codes:
                fail(("sensors", name, "rules", j, "category"), f"unknown category {rule.category}")
    for item, code in intake.merchant_duties.items():
        if code not in category_codes:
            fail(("merchant_duties", item), f"unknown category {code}")
    if intake.merchant_default_category not in category_codes:
        fail(("merchant_default_category",), f"unknown category {intake.merchant_default_category}")
