"""Value types shared by several messages."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CoordSystem(StrEnum):
    """Coordinate reference of a point: WGS84 (GPS), GCJ-02 (Amap, Tencent) or BD-09 (Baidu)."""

    wgs84 = "wgs84"
    gcj02 = "gcj02"
    bd09 = "bd09"


class Location(BaseModel):
    """A point as a source sends it. Exactly (0, 0) means "no point" on every source: phones without a fix and
    devices never configured send it ("null island", in the Gulf of Guinea, is no place in a Chinese city)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    lng: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    coord_system: CoordSystem = CoordSystem.wgs84

    @property
    def given(self) -> bool:
        """Whether this is a point at all, (0, 0) being what sources send for none."""
        return not (self.lng == 0 and self.lat == 0)


class Place(BaseModel):
    """Where a case is, resolved against the city's areas (区 / 街道 / 社区 / 单元网格)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    lng: float | None = Field(default=None, description="WGS84 longitude")
    lat: float | None = Field(default=None, description="WGS84 latitude")
    address: str | None = None
    district_code: str | None = None
    street_code: str | None = None
    street_name: str | None = None
    community_code: str | None = None
    community_name: str | None = None
    grid_code: str | None = None
    placed_by: Literal["point", "grid", "gazetteer", "device", "manual"] | None = Field(
        default=None,
        description="How intake placed the report: its point, its grid code, a place name the gazetteer "
        "knows (地名库), the registered device's place; `manual`: nothing in it could be placed, the command "
        "centre places the case by hand (人工定位)",
    )


class UnitRole(StrEnum):
    """The roles routing rules speak; a city maps its units onto them."""

    enforcement = "enforcement"  # 综合执法队 / 城管执法中队
    traffic_police = "traffic_police"  # 交警中队
    market_supervision = "market_supervision"  # 市场监督管理所
    emergency = "emergency"  # 应急管理办公室
    construction = "construction"  # 城市建设管理中心 / 城建办
    property = "property"  # 物业管理办公室
    community = "community"  # 社区
    street_office = "street_office"  # 街道公共管理办
    sanitation = "sanitation"  # 环卫作业单位
    landscaping = "landscaping"  # 园林绿化
    police = "police"  # 派出所
    ecology = "ecology"  # 生态环境
    water = "water"  # 水务 / 河道
    utilities = "utilities"  # 管线产权单位
    command_centre = "command_centre"  # 指挥中心
    hotline = "hotline"  # 12345 platform


class UnitRef(BaseModel):
    """A unit named in an event."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    unit_id: str
    name: str
    role: UnitRole


class Urgency(StrEnum):
    """How fast a case must be handled; `urgent` counts natural hours, the rest working time."""

    normal = "normal"
    urgent = "urgent"


class ReportSource(StrEnum):
    """Where a report came from."""

    grid = "grid"  # 网格员巡查 (城管通)
    hotline = "hotline"  # 12345 / 12319
    sensor = "sensor"  # 物联网感知
    inspection = "inspection"  # 督查 / 暗访 / 马路办公
    merchant_check = "merchant_check"  # 门前三包 检查
    open311 = "open311"  # citizens' apps


class Reporter(BaseModel):
    """Who reported, never in clear: a masked form and a stable pseudonymous key."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = Field(description="inspector, caller, citizen, device, supervisor")
    key: str = Field(description="Stable pseudonymous key (keyed hash); the same person gives the same key")
    display: str = Field(default="", description="Masked form, e.g. 张* 138****5678")
