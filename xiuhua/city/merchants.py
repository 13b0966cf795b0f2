"""Street-front merchants and their 门前三包 / 五包 / 六包 duties, as city data."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Merchant(BaseModel):
    """A shop with front-of-door duties."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    name: str
    address: str
    area: str = Field(description="Community or grid code")
    lng: float | None = None
    lat: float | None = None
    duty: list[str] = Field(
        default_factory=lambda: ["hygiene", "order", "greenery"],
        description="包卫生 hygiene, 包秩序 order, 包绿化 greenery (三包); 五包/六包 add facilities, safety ...",
    )
    grade: Literal["A", "B", "C"] = "A"


class MerchantsFile(BaseModel):
    """merchants.yaml"""

    model_config = ConfigDict(extra="forbid")

    merchants: list[Merchant] = Field(default_factory=list)
