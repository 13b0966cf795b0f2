"""Open311 services and their attribute definitions, from the catalogue and `open311.yaml`. Pure.

`open311.yaml` in the city folder is optional; it holds the jurisdiction id, API keys and, per service_code,
the attributes a citizen's app asks for (all six GeoReport v2 datatypes).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xiuhua.city import City
from xiuhua.city.categories import Category
from xiuhua.city.loading import CityDataError, line_of, read_yaml, validation_error

FILE = "open311.yaml"


class Datatype(StrEnum):
    """The six attribute datatypes of GeoReport v2."""

    string = "string"
    number = "number"
    datetime = "datetime"
    text = "text"
    singlevaluelist = "singlevaluelist"
    multivaluelist = "multivaluelist"


LIST_TYPES = (Datatype.singlevaluelist, Datatype.multivaluelist)


class AttributeValue(BaseModel):
    """One choice of a list attribute."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=100)
    name: str = Field(min_length=1, max_length=200)


class Attribute(BaseModel):
    """An attribute of a service definition (GeoReport v2 `attributes`)."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    datatype: Datatype
    description: str = Field(min_length=1, max_length=500, description="The question asked")
    variable: bool = Field(default=True, description="false = informational only, no answer expected")
    required: bool = False
    datatype_description: str = Field(default="", max_length=500)
    order: int = Field(ge=1)
    values: list[AttributeValue] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _values(self) -> Attribute:
        if self.datatype in LIST_TYPES and not self.values:
            raise ValueError(f"{self.datatype.value} attribute {self.code} needs values")
        if self.datatype not in LIST_TYPES and self.values:
            raise ValueError(f"{self.datatype.value} attribute {self.code} takes no values")
        keys = [v.key for v in self.values]
        if len(keys) != len(set(keys)):
            raise ValueError(f"attribute {self.code} repeats a value key")
        if self.required and not self.variable:
            raise ValueError(f"attribute {self.code} cannot be required and not variable")
        return self


class ServiceAttributes(BaseModel):
    """The attributes of one service."""

    model_config = ConfigDict(extra="forbid")

    attributes: list[Attribute] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _unique(self) -> ServiceAttributes:
        for what in ("code", "order"):
            seen = [getattr(a, what) for a in self.attributes]
            if len(seen) != len(set(seen)):
                raise ValueError(f"attribute {what}s must be unique within a service")
        return self


class ApiKey(BaseModel):
    """A client allowed to post requests."""

    model_config = ConfigDict(extra="forbid")

    client: str = Field(min_length=1, max_length=100)
    key: str = Field(min_length=16, max_length=200)


class Open311File(BaseModel):
    """open311.yaml"""

    model_config = ConfigDict(extra="forbid")

    jurisdiction_id: str | None = Field(default=None, max_length=64)
    api_keys: list[ApiKey] = Field(default_factory=list)
    services: dict[str, ServiceAttributes] = Field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    """One Open311 service: a catalogue item with a service_code, and its attributes."""

    service_code: str
    category: Category
    group: str
    attributes: tuple[Attribute, ...]

    @property
    def name(self) -> str:
        """Chinese name first, English after (apps show it as is)."""
        return f"{self.category.name_zh} {self.category.name_en}".strip()


@dataclass(frozen=True)
class Open311Config:
    """Everything the Open311 edge serves, validated."""

    jurisdiction_id: str | None
    api_keys: dict[str, str]  # key -> client
    services: dict[str, Service]  # by service_code, in catalogue order


def load_open311(city: City, extra_keys: tuple[str, ...] = ()) -> Open311Config:
    """Services from the catalogue plus `open311.yaml`; raises CityDataError naming file and line."""
    path = Path(city.folder) / FILE
    data = Open311File()
    if path.exists():
        raw, node = read_yaml(path)
        try:
            data = Open311File.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            raise CityDataError(validation_error(path, node, exc)) from exc
    services: dict[str, Service] = {}
    for gi, group in enumerate(city.catalogue.groups):
        for ii, item in enumerate(group.items):
            if not item.service_code:
                continue
            if item.service_code in services:
                where = line_of(Path(city.folder) / "categories.yaml", ("groups", gi, "items", ii, "service_code"))
                raise CityDataError(f"{where}: service_code {item.service_code} is used by "
                                    f"{services[item.service_code].category.code} and {item.code}")
            attrs = data.services.get(item.service_code)
            ordered = tuple(sorted(attrs.attributes, key=lambda a: a.order)) if attrs else ()
            services[item.service_code] = Service(item.service_code, item, f"{group.name_zh} {group.name_en}", ordered)
    for code in data.services:
        if code not in services:
            raise CityDataError(f"{line_of(path, ('services', code))}: services.{code}: no catalogue item has "
                                f"service_code {code}")
    keys = {k.key: k.client for k in data.api_keys}
    keys.update({k: "environment" for k in extra_keys if k})
    return Open311Config(jurisdiction_id=data.jurisdiction_id, api_keys=keys, services=services)
