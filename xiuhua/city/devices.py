"""The city's registered sensors (设备登记, devices.yaml): device models and the devices installed.

A model says what its devices measure under which names (a low-cost dust sensor's own `P1` / `P2` are PM10 /
PM2.5) and, for devices speaking HJ 212-2017, which CRC their firmware writes. A device says where it is, which
site it watches and, for HJ 212, its `MN` (设备唯一标识) and access password (`PW`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from xiuhua.city.areas import Areas
from xiuhua.city.loading import CityDataError, line_of

DeviceKind = Literal["dust", "bin_fill", "manhole_tilt", "street_lamp", "noise", "water_level"]
CrcVariant = Literal["standard", "modbus_swapped"]


class DeviceModel(BaseModel):
    """A device model (型号) and how its devices speak."""

    model_config = ConfigDict(extra="forbid")

    device_type: DeviceKind
    name: str = Field(default="", description="Maker and model, e.g. 扬尘在线监测仪 YC-100")
    aliases: dict[str, str] = Field(
        default_factory=dict, description="The device's own metric name → the city's (P1 → pm10, P2 → pm25)"
    )
    hj212_crc: list[CrcVariant] = Field(
        default=["standard"],
        description="CRCs accepted from this model over HJ 212: `standard` (the standard's appendix) and, for firmware "
        "that writes it, `modbus_swapped` (Modbus CRC-16 with its two bytes swapped)",
        min_length=1,
    )


class Device(BaseModel):
    """One installed device."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$", description="The device_id its readings carry")
    model: str
    mn: str | None = Field(default=None, pattern=r"^[0-9A-Za-z]{1,24}$", description="HJ 212 MN (设备唯一标识)")
    password: str | None = Field(default=None, max_length=32, description="HJ 212 PW (访问密码)")
    site_id: str | None = Field(default=None, description="The site it watches (a gazetteer name places it)")
    lng: float | None = Field(default=None, ge=-180, le=180, description="WGS84")
    lat: float | None = Field(default=None, ge=-90, le=90)


class DevicesFile(BaseModel):
    """devices.yaml"""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, DeviceModel] = Field(default_factory=dict)
    devices: list[Device] = Field(default_factory=list)


@dataclass(frozen=True)
class Registry:
    """Registered devices by id and by HJ 212 MN."""

    models: dict[str, DeviceModel]
    by_id: dict[str, Device]
    by_mn: dict[str, Device]

    def model_of(self, device_id: str) -> DeviceModel | None:
        """The model of a registered device, or None."""
        device = self.by_id.get(device_id)
        return self.models[device.model] if device is not None else None


def check_devices(data: DevicesFile, path: Path, areas: Areas) -> Registry:
    """Cross-check devices.yaml: models known, ids and MNs unique, points inside the city; errors name file and line."""

    def fail(loc: tuple[object, ...], msg: str) -> None:
        raise CityDataError(f"{line_of(path, loc)}: {'.'.join(map(str, loc))}: {msg}")

    by_id: dict[str, Device] = {}
    by_mn: dict[str, Device] = {}
    for name, model in data.models.items():
        for own, metric in model.aliases.items():
            if not metric:
                fail(("models", name, "aliases", own), "maps to an empty name")
    for i, d in enumerate(data.devices):
        if d.model not in data.models:
            fail(("devices", i, "model"), f"unknown model {d.model}")
        if d.id in by_id:
            fail(("devices", i, "id"), f"duplicate device id {d.id}")
        if d.mn is not None:
            if d.mn in by_mn:
                fail(("devices", i, "mn"), f"MN {d.mn} is also device {by_mn[d.mn].id}'s")
            if d.password is None:
                fail(("devices", i, "password"), "an HJ 212 device needs its access password (PW)")
            by_mn[d.mn] = d
        if (d.lng is None) != (d.lat is None):
            fail(("devices", i, "lat" if d.lat is None else "lng"), "give both lng and lat, or neither")
        if d.lng is not None and d.lat is not None and areas.place_of_point(d.lng, d.lat) is None:
            fail(("devices", i, "lng"), f"the point ({d.lng}, {d.lat}) is outside the city's areas")
        by_id[d.id] = d
    return Registry(dict(data.models), by_id, by_mn)
