"""Inbound report payloads, as source systems send them (an interface they rely on), and the rejection event.

Inbound models allow extra fields: sources may send more than listed, and intake keeps the raw bytes.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import subjects
from contracts.envelope import Event, Exampled
from contracts.values import Location, Reporter, ReportSource

MAX_TEXT = 4000
MAX_LIST = 20


class Inbound(Exampled, BaseModel):
    """Base of every inbound payload; `example_fields` is what the source system really sends."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    source: ClassVar[ReportSource]

    def source_ref(self) -> str:
        """The source system's own reference: the same reference twice is one report."""
        raise NotImplementedError


class GridReport(Inbound):
    """A grid inspector's patrol report (网格员巡查上报, 城管通), `report.v1.in.grid`."""

    source: ClassVar[ReportSource] = ReportSource.grid
    example_fields: ClassVar[dict[str, object]] = {
        "report_id": "R-20261123-001",
        "reported_at": "2026-11-23T09:58:00+08:00",
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": "0201",
        "grid_code": "CD01-03",
        "location": {"lng": 120.1552, "lat": 30.2741, "coord_system": "gcj02"},
        "address": "城东街道 解放路 18 号",
        "photo_urls": ["https://img.example/before.jpg"],
        "handled_on_site": False,
    }

    report_id: str = Field(min_length=1, max_length=128)
    reported_at: datetime
    inspector_id: str = Field(min_length=1, max_length=128)
    description: str = Field(min_length=1, max_length=MAX_TEXT)
    category_code: str | None = Field(default=None, max_length=32)
    grid_code: str | None = Field(default=None, max_length=64)
    location: Location | None = None
    address: str | None = Field(default=None, max_length=500)
    photo_urls: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    merchant_id: str | None = Field(default=None, max_length=128)
    handled_on_site: bool = False

    def source_ref(self) -> str:
        return self.report_id


class Caller(BaseModel):
    """The caller of a hotline order: personal data that never leaves intake in clear."""

    model_config = ConfigDict(extra="allow")

    name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=40)


class HotlineOrder(Inbound):
    """A 12345 / 12319 work order (工单), `report.v1.in.hotline`."""

    source: ClassVar[ReportSource] = ReportSource.hotline
    example_fields: ClassVar[dict[str, object]] = {
        "order_no": "12345-20261123-0042",
        "received_at": "2026-11-23T09:15:00+08:00",
        "channel": "12345",
        "title": "解放路夜间烧烤油烟扰民",
        "content": "解放路18号门口每晚有露天烧烤，油烟很大，影响居民休息",
        "address": "城东街道 解放路 18 号",
        "caller": {"name": "张三", "phone": "13800135678"},
        "hotline_category": "城乡建设/市容环境",
        "urgent": False,
        "reply_deadline": "2026-11-26T18:00:00+08:00",
    }

    order_no: str = Field(min_length=1, max_length=128)
    received_at: datetime
    channel: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=500)
    content: str = Field(min_length=1, max_length=MAX_TEXT)
    address: str | None = Field(default=None, max_length=500)
    location: Location | None = None
    caller: Caller | None = None
    hotline_category: str | None = Field(default=None, max_length=200)
    urgent: bool = False
    reply_deadline: datetime | None = None

    def source_ref(self) -> str:
        return self.order_no


class SensorReading(Inbound):
    """An IoT reading (物联网感知), `report.v1.in.sensor`. Telemetry, not a case by itself."""

    source: ClassVar[ReportSource] = ReportSource.sensor
    example_fields: ClassVar[dict[str, object]] = {
        "device_id": "DUST-CD-007",
        "device_type": "dust",
        "measured_at": "2026-11-23T10:00:00+08:00",
        "values": {"pm10": 182.0, "pm25": 95.0},
        "location": {"lng": 120.1601, "lat": 30.2558, "coord_system": "wgs84"},
        "site_id": "工地-金桥-03",
    }

    device_id: str = Field(min_length=1, max_length=128)
    device_type: Literal["dust", "bin_fill", "manhole_tilt", "street_lamp", "noise", "water_level"]
    measured_at: datetime
    values: dict[str, float | int | str | bool | None] = Field(max_length=50)
    location: Location | None = None
    site_id: str | None = Field(default=None, max_length=128)
    model: str | None = Field(
        default=None,
        max_length=64,
        description="The device model (型号), for a device the city has not registered: its aliases name the metrics",
    )

    def source_ref(self) -> str:
        return f"{self.device_id}@{self.measured_at.isoformat()}"


class InspectionFinding(Inbound):
    """A supervisor's finding (督查 / 暗访 / 马路办公), `report.v1.in.inspection`."""

    source: ClassVar[ReportSource] = ReportSource.inspection
    example_fields: ClassVar[dict[str, object]] = {
        "finding_id": "DC-2026-118",
        "inspected_at": "2026-11-23T10:30:00+08:00",
        "team": "区城管委暗访组",
        "kind": "暗访",
        "description": "金桥路沿街商户跨门经营，占道堆放货物",
        "category_code": "0301",
        "address": "金桥街道 金桥路 66 号",
        "photo_urls": [],
    }

    finding_id: str = Field(min_length=1, max_length=128)
    inspected_at: datetime
    team: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, max_length=64)
    description: str = Field(min_length=1, max_length=MAX_TEXT)
    category_code: str | None = Field(default=None, max_length=32)
    location: Location | None = None
    address: str | None = Field(default=None, max_length=500)
    photo_urls: list[str] = Field(default_factory=list, max_length=MAX_LIST)

    def source_ref(self) -> str:
        return self.finding_id


class MerchantCheck(Inbound):
    """A 门前三包 duty check of one merchant, `report.v1.in.merchant_check`."""

    source: ClassVar[ReportSource] = ReportSource.merchant_check
    example_fields: ClassVar[dict[str, object]] = {
        "check_id": "MC-20261123-009",
        "merchant_id": "M-CD-0042",
        "checked_at": "2026-11-23T11:00:00+08:00",
        "inspector_id": "G-017",
        "items": {"hygiene": "pass", "order": "fail", "greenery": "pass"},
        "photo_urls": [],
        "note": "门前堆放纸箱",
    }

    check_id: str = Field(min_length=1, max_length=128)
    merchant_id: str = Field(min_length=1, max_length=128)
    checked_at: datetime
    inspector_id: str = Field(min_length=1, max_length=128)
    items: dict[str, Literal["pass", "fail"]] = Field(min_length=1, max_length=20)
    photo_urls: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    note: str | None = Field(default=None, max_length=MAX_TEXT)

    def source_ref(self) -> str:
        return self.check_id


class Open311Request(Inbound):
    """A citizen's Open311 GeoReport v2 service request (`POST requests`), `report.v1.in.open311`.

    Published by intake's HTTP edge after validation. Contact details never travel: the edge keeps them in
    its own store and sends only `reporter` (a masked form and a pseudonymous key).
    """

    source: ClassVar[ReportSource] = ReportSource.open311
    example_fields: ClassVar[dict[str, object]] = {
        "request_id": "o311-5f2c9a",
        "reported_at": "2026-11-23T12:05:00+08:00",
        "service_code": "0201",
        "category_code": "0201",
        "description": "小区门口垃圾桶满了好几天没人清",
        "location": {"lng": 120.1552, "lat": 30.2741, "coord_system": "wgs84"},
        "address": "城东街道 解放路 18 号",
        "photo_urls": ["https://img.example/o311.jpg"],
        "reporter": {"kind": "citizen", "key": "c-9a8b7c", "display": "李*"},
    }

    request_id: str = Field(min_length=1, max_length=128, description="The edge's token for this request")
    reported_at: datetime
    service_code: str = Field(min_length=1, max_length=64)
    category_code: str | None = Field(default=None, max_length=32, description="Catalogue item of service_code")
    description: str = Field(default="", max_length=MAX_TEXT)
    location: Location | None = None
    address: str | None = Field(default=None, max_length=500, description="Open311 address_string")
    address_id: str | None = Field(default=None, max_length=128)
    attributes: dict[str, str | list[str]] = Field(default_factory=dict, max_length=50)
    photo_urls: list[str] = Field(default_factory=list, max_length=MAX_LIST, description="Open311 media_url")
    reporter: Reporter | None = None
    jurisdiction_id: str | None = Field(default=None, max_length=64)

    def source_ref(self) -> str:
        return self.request_id


INBOUND_BY_SOURCE: dict[str, type[Inbound]] = {
    "grid": GridReport,
    "hotline": HotlineOrder,
    "sensor": SensorReading,
    "inspection": InspectionFinding,
    "merchant_check": MerchantCheck,
    "open311": Open311Request,
}


class RejectionReason(BaseModel):
    """One machine-readable reason a report was refused."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(
        description="e.g. invalid_json, missing_field, wrong_type, out_of_city, too_large, too_deep, "
        "control_character, not_finite, too_old, in_future, duplicate_field, unknown_metric, no_metric; from the "
        "HJ 212 edge bad_crc, bad_length, unknown_device, bad_password, bad_frame"
    )
    field: str | None = Field(default=None, description="Dotted path of the offending field, if any")
    message: str


class ReportRejected(Event):
    """A report that could not become a case; the raw bytes are kept by intake under `raw_id`."""

    event_type: ClassVar[str] = "report.rejected"
    subject_prefix: ClassVar[str] = subjects.REPORT_REJECTED

    source: str
    source_ref: str | None = None
    raw_id: str = Field(description="Key of the raw report kept in intake's store")
    reasons: list[RejectionReason] = Field(min_length=1)

    example_fields: ClassVar[dict[str, object]] = {
        "correlation_id": "raw-1",
        "source": "grid",
        "source_ref": None,
        "raw_id": "raw-1",
        "reasons": [{"code": "missing_field", "field": "report_id", "message": "Field required"}],
    }


SENSOR_NORMAL = "report.v1.sensor_normal"


class SensorNormal(Event):
    """A device whose readings had opened a case is back under its thresholds (恢复正常), `report.v1.sensor_normal`.

    The case stays open for its unit to close; this tells dispatch, notify and the unit that the cause has gone.
    """

    event_type: ClassVar[str] = "report.sensor_normal"
    subject_prefix: ClassVar[str] = SENSOR_NORMAL
    example_fields: ClassVar[dict[str, object]] = {
        "device_id": "DUST-CD-0007",
        "device_type": "dust",
        "case_id": "C-01935d1e7a4b",
        "street_code": "CD",
        "site_id": "CD-SITE-3",
        "measured_at": "2026-11-23T03:10:00Z",
        "values": {"pm10": 88.0, "pm25": 41.0},
    }

    device_id: str
    device_type: str
    case_id: str | None = Field(default=None, description="The case its breach opened")
    street_code: str | None = None
    site_id: str | None = None
    measured_at: datetime
    values: dict[str, float | int | str | bool | None] = Field(default_factory=dict)
