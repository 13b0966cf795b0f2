"""A city is data (docs/operating/city-data.md): areas, units, categories, routing rules, calendar, alerts, merchants,
devices, retention.

`load_city(folder)` reads and validates the folder that XIUHUA_CITY_DIR names; every error names file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from xiuhua.city.alerts import AlertsFile
from xiuhua.city.areas import Areas, load_areas
from xiuhua.city.assessment import AssessmentFile
from xiuhua.city.calendar import CalendarFile
from xiuhua.city.categories import Catalogue, Category
from xiuhua.city.devices import DevicesFile, Registry, check_devices
from xiuhua.city.intake import IntakeFile, check_intake
from xiuhua.city.loading import CityDataError, line_of, load_yaml
from xiuhua.city.merchants import Merchant, MerchantsFile, check_merchants
from xiuhua.city.retention import RetentionFile, load_retention
from xiuhua.city.routing import RoutingFile
from xiuhua.city.security import SecurityFile
from xiuhua.city.units import Unit, UnitsFile

__all__ = ["City", "CityDataError", "load_city"]


class CityInfo(BaseModel):
    """city.yaml"""

    model_config = ConfigDict(extra="forbid")

    code: str
    name: str
    name_en: str = ""
    timezone: str = "Asia/Shanghai"


@dataclass
class City:
    """Everything a city configures, validated and cross-checked."""

    folder: Path
    info: CityInfo
    areas: Areas
    units: dict[str, Unit]
    catalogue: Catalogue
    routing: RoutingFile
    calendar: CalendarFile
    alerts: AlertsFile
    merchants: dict[str, Merchant]
    assessment: AssessmentFile = field(default_factory=AssessmentFile)
    intake: IntakeFile = field(default_factory=IntakeFile)
    devices: Registry = field(default_factory=lambda: Registry({}, {}, {}))
    retention: RetentionFile = field(default_factory=RetentionFile)
    security: SecurityFile = field(default_factory=SecurityFile)

    def category(self, code: str) -> Category | None:
        """A catalogue item by code."""
        return self.catalogue.get(code)

    def units_with_role(self, role: str) -> list[Unit]:
        """Units of one role."""
        return [u for u in self.units.values() if u.role == role]


def _optional(folder: Path, name: str, model: type, default: object) -> object:
    path = folder / name
    return load_yaml(path, model) if path.exists() else default


def _checked_units(folder: Path, units_file: UnitsFile, areas: Areas) -> dict[str, Unit]:
    """Units (责任单位) by id; raises CityDataError on a duplicate id or an unknown area."""
    units: dict[str, Unit] = {}
    for i, unit in enumerate(units_file.units):
        if unit.id in units:
            raise CityDataError(f"{line_of(folder / 'units.yaml', ('units', i, 'id'))}: duplicate unit id {unit.id}")
        for code in unit.areas:
            if code not in areas.by_code:
                where = line_of(folder / "units.yaml", ("units", i, "areas"))
                raise CityDataError(f"{where}: unit {unit.id} names unknown area {code}")
        units[unit.id] = unit
    return units


def _check_routing_units(folder: Path, routing: RoutingFile, units: dict[str, Unit]) -> None:
    """Raises CityDataError when a routing (派遣) rule names a unit the city does not have."""
    for i, rule in enumerate(routing.rules):
        for j, a in enumerate([rule.lead, *(rule.cooperating or [])]):
            if a is not None and a.unit and a.unit not in units:
                where = line_of(folder / "routing.yaml", ("rules", i))
                raise CityDataError(f"{where}: rule {rule.id} names unknown unit {a.unit} (assignee {j})")


def _check_security_streets(folder: Path, security: SecurityFile, areas: Areas) -> None:
    """Raises CityDataError when a user's streets (街道) are not streets of this city."""
    streets = {a.code for a in areas.of_level("street")}
    for name, user in security.users.items():
        for i, code in enumerate(user.streets):
            if code not in streets:
                where = line_of(folder / "security.yaml", ("users", name, "streets", i))
                raise CityDataError(f"{where}: users.{name}.streets.{i}: {code} is not a street of this city")


def load_city(folder: Path) -> City:
    """Read a city folder; raises CityDataError naming file and line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CityDataError(f"{folder}: city folder not found (XIUHUA_CITY_DIR)")
    info = load_yaml(folder / "city.yaml", CityInfo)
    areas = load_areas(folder / "areas.geojson")
    units_file = load_yaml(folder / "units.yaml", UnitsFile)
    catalogue = load_yaml(folder / "categories.yaml", Catalogue)
    routing = load_yaml(folder / "routing.yaml", RoutingFile)
    calendar = _optional(folder, "calendar.yaml", CalendarFile, CalendarFile())
    alerts = load_yaml(folder / "alerts.yaml", AlertsFile)
    merchants_file = _optional(folder, "merchants.yaml", MerchantsFile, MerchantsFile())

    units = _checked_units(folder, units_file, areas)
    _check_routing_units(folder, routing, units)
    try:
        merchants = check_merchants(
            merchants_file.merchants,  # type: ignore[attr-defined]
            set(areas.by_code),
            str(folder / "merchants.yaml"),
        )
    except ValueError as exc:
        raise CityDataError(str(exc)) from exc
    assessment = _optional(folder, "assessment.yaml", AssessmentFile, AssessmentFile())
    intake = _optional(folder, "intake.yaml", IntakeFile, IntakeFile())
    check_intake(intake, folder / "intake.yaml", {c.code for c in catalogue.items()}, areas)  # type: ignore[arg-type]
    devices_file = _optional(folder, "devices.yaml", DevicesFile, DevicesFile())
    devices = check_devices(devices_file, folder / "devices.yaml", areas)  # type: ignore[arg-type]
    retention = load_retention(folder)
    security: SecurityFile = _optional(folder, "security.yaml", SecurityFile, SecurityFile())  # type: ignore[assignment]
    _check_security_streets(folder, security, areas)
    return City(
        folder=folder,
        info=info,
        areas=areas,
        units=units,
        catalogue=catalogue,
        routing=routing,
        calendar=calendar,  # type: ignore[arg-type]
        alerts=alerts,
        merchants=merchants,
        assessment=assessment,  # type: ignore[arg-type]
        intake=intake,  # type: ignore[arg-type]
        devices=devices,
        retention=retention,
        security=security,
    )
