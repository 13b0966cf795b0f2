"""Open311 services and their attribute definitions, from the catalogue and `open311.yaml`. Pure.

`open311.yaml` in the city folder is optional; it holds the jurisdiction id, API keys, rate limits (per key and per
client address) and, per service_code, the attributes a citizen's app asks for (all six GeoReport v2 datatypes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


class Rate(BaseModel):
    """A token bucket: `capacity` requests at once, `per_minute` after."""

    model_config = ConfigDict(extra="forbid")

    capacity: int = Field(ge=1, le=1_000_000, description="Burst: requests at once")
    per_minute: float = Field(gt=0, le=6_000_000, description="Refill rate")


class MethodRates(BaseModel):
    """One bucket for POSTs (new requests) and one for GETs (listings, status), each optional where defaults apply."""

    model_config = ConfigDict(extra="forbid")

    post: Rate | None = None
    get: Rate | None = None


class RateLimits(BaseModel):
    """Rate limits (限流) per api key and per client address; each request spends a token from both."""

    model_config = ConfigDict(extra="forbid")

    per_key: MethodRates = Field(default_factory=MethodRates)
    per_address: MethodRates = Field(default_factory=MethodRates)


# What applies where open311.yaml says nothing. A key is shipped inside a citizens' app, so it is as public as the
# app: the per-address bucket is what holds one host that took the key out of it; the per-key one caps the whole.
DEFAULT_RATES = {
    ("per_key", "post"): Rate(capacity=60, per_minute=600),
    ("per_key", "get"): Rate(capacity=120, per_minute=1200),
    ("per_address", "post"): Rate(capacity=20, per_minute=20),
    ("per_address", "get"): Rate(capacity=60, per_minute=600),
}


class ApiKey(BaseModel):
    """A client allowed to post requests."""

    model_config = ConfigDict(extra="forbid")

    client: str = Field(min_length=1, max_length=100)
    key: str = Field(min_length=16, max_length=200)
    rate_limits: RateLimits | None = Field(
        default=None, description="This key's own limits; what it leaves out comes from the file's rate_limits"
    )


class Open311File(BaseModel):
    """open311.yaml"""

    model_config = ConfigDict(extra="forbid")

    jurisdiction_id: str | None = Field(default=None, max_length=64)
    rate_limits: RateLimits = Field(default_factory=RateLimits)
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
class Limits:
    """The buckets a request spends from, resolved: (scope, method) → rate, scope `per_key` or `per_address`."""

    rates: dict[tuple[str, str], Rate]
    own_address: bool = False  # the key sets its own per-address rates: its traffic has its own address buckets


def resolve_limits(defaults: RateLimits, own: RateLimits | None = None) -> Limits:
    """A key's limits over the file's over the built-in ones."""
    rates = dict(DEFAULT_RATES)
    for layer in (defaults, own):
        for scope in ("per_key", "per_address"):
            for method in ("post", "get"):
                if layer is not None and (rate := getattr(getattr(layer, scope), method)) is not None:
                    rates[(scope, method)] = rate
    own_address = own is not None and (own.per_address.post is not None or own.per_address.get is not None)
    return Limits(rates, own_address)


@dataclass(frozen=True)
class Open311Config:
    """Everything the Open311 edge serves, validated."""

    jurisdiction_id: str | None
    api_keys: dict[str, str]  # key -> client
    services: dict[str, Service]  # by service_code, in catalogue order
    limits: dict[str, Limits] = field(default_factory=dict)  # key -> its limits
    anonymous: Limits = field(default_factory=lambda: resolve_limits(RateLimits()))  # requests without a known key


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
                raise CityDataError(
                    f"{where}: service_code {item.service_code} is used by "
                    f"{services[item.service_code].category.code} and {item.code}"
                )
            attrs = data.services.get(item.service_code)
            ordered = tuple(sorted(attrs.attributes, key=lambda a: a.order)) if attrs else ()
            services[item.service_code] = Service(item.service_code, item, f"{group.name_zh} {group.name_en}", ordered)
    for code in data.services:
        if code not in services:
            raise CityDataError(
                f"{line_of(path, ('services', code))}: services.{code}: no catalogue item has service_code {code}"
            )
    keys = {k.key: k.client for k in data.api_keys}
    keys.update({k: "environment" for k in extra_keys if k})
    anonymous = resolve_limits(data.rate_limits)
    limits = {k.key: resolve_limits(data.rate_limits, k.rate_limits) for k in data.api_keys}
    return Open311Config(
        jurisdiction_id=data.jurisdiction_id,
        api_keys=keys,
        services=services,
        limits={k: limits.get(k, anonymous) for k in keys},
        anonymous=anonymous,
    )
