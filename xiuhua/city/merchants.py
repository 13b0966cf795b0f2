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
    grade: Literal["A", "B", "C"] = Field(
        default="A",
        description="Class at registration: A 落实较好, B 需巩固加强, C 脏乱差易反弹; recomputed monthly",
    )
    kind: str = Field(default="", description="Shop kind, e.g. 餐饮, 零售, 维修")
    contact: str = Field(default="", description="Person responsible (责任人), kept in city data only")
    channels: dict[str, str] = Field(
        default_factory=dict,
        description="How the merchant is told of a failed duty (alerts.yaml channel → address, e.g. sms: a number)",
    )

    def duty_scheme(self) -> str:
        """门前三包 / 五包 / 六包, by the number of duty items."""
        return {3: "门前三包", 5: "门前五包", 6: "门前六包"}.get(len(self.duty), f"门前{len(self.duty)}包")


class MerchantsFile(BaseModel):
    """merchants.yaml"""

    model_config = ConfigDict(extra="forbid")

    merchants: list[Merchant] = Field(default_factory=list)


def check_merchants(merchants: list[Merchant], area_codes: set[str], where: str) -> dict[str, Merchant]:
    """Merchants by id; a duplicate id or an unknown area is an error naming the merchant."""
    out: dict[str, Merchant] = {}
    for m in merchants:
        if m.id in out:
            raise ValueError(f"{where}: duplicate merchant id {m.id}")
        if m.area not in area_codes:
            raise ValueError(f"{where}: merchant {m.id} names unknown area {m.area}")
        out[m.id] = m
    return out
