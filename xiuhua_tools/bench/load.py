"""The benchmark's offered load: patrol reports and hotline orders at distinct places, sensor telemetry.

Places sit on a 120 m lattice so no two reports of one run are near duplicates of each other (which intake
would merge rather than dispatch): the benchmark measures cases, not merges.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

from xiuhua.city import City

# Category → how a patrol inspector or a caller describes it (the hotline text exercises classification).
PHRASES = {
    "0101": "菜场门口有流动摊贩占道经营",
    "0102": "夜市路边露天烧烤，油烟很大",
    "0103": "小区消防通道被杂物堵塞",
    "0201": "公交站旁垃圾桶满溢，垃圾散落一地",
    "0202": "渣土车未苫盖，沿途洒落泥土",
    "0301": "人行道上井盖缺失，很危险",
    "0302": "巷子里路灯不亮好几天了",
    "0401": "沿街商铺出店经营，门前三包没落实",
}
STEP_DEG = 0.0012  # about 120 m


class Lattice:
    """Distinct points inside the city, one per report."""

    def __init__(self, city: City) -> None:
        minx, miny, maxx, maxy = (
            min(a.geometry.bounds[0] for a in city.areas.of_level("district")),
            min(a.geometry.bounds[1] for a in city.areas.of_level("district")),
            max(a.geometry.bounds[2] for a in city.areas.of_level("district")),
            max(a.geometry.bounds[3] for a in city.areas.of_level("district")),
        )
        self.origin = (minx + STEP_DEG / 2, miny + STEP_DEG / 2)
        self.cols = int((maxx - minx) / STEP_DEG) - 1
        self.rows = int((maxy - miny) / STEP_DEG) - 1

    def capacity(self) -> int:
        """How many distinct points there are per category."""
        return self.cols * self.rows

    def point(self, n: int) -> dict[str, float]:
        """The n-th point."""
        i = n % self.capacity()
        return {
            "lng": round(self.origin[0] + (i % self.cols) * STEP_DEG, 6),
            "lat": round(self.origin[1] + (i // self.cols) * STEP_DEG, 6),
        }


def report(n: int, run: str, lattice: Lattice) -> tuple[str, str, bytes]:
    """(source, correlation id, body) of the n-th report: 70 % patrol reports, 30 % hotline orders."""
    codes = list(PHRASES)
    code = codes[n % len(codes)]
    point = lattice.point(n // len(codes))
    now = datetime.now(UTC).isoformat()
    if n % 10 < 7:
        ref = f"B{run}-G{n:07d}"
        body: dict[str, Any] = {
            "report_id": ref,
            "reported_at": now,
            "inspector_id": f"G-{n % 40:03d}",
            "description": PHRASES[code],
            "category_code": code,
            "location": point,
        }
        return "grid", f"grid:{ref}", json.dumps(body, ensure_ascii=False).encode()
    ref = f"B{run}-H{n:07d}"
    body = {
        "order_no": ref,
        "received_at": now,
        "channel": "12345",
        "title": "市民反映城市管理问题",
        "content": f"{PHRASES[code]}，请尽快处理。",
        "location": {**point, "coord_system": "wgs84"},
        "caller": {"name": "张伟", "phone": f"139{n % 100_000_000:08d}"},
    }
    return "hotline", f"hotline:{ref}", json.dumps(body, ensure_ascii=False).encode()


def sensor_reading(n: int, run: str) -> bytes:
    """A normal dust reading (telemetry that opens no case)."""
    body = {
        "device_id": f"B{run}-DUST-{n % 500:03d}",
        "device_type": "dust",
        "measured_at": datetime.now(UTC).isoformat(),
        "values": {"pm10": round(random.uniform(20, 80), 1), "pm25": round(random.uniform(10, 40), 1)},
        "site_id": f"SITE-{n % 50:02d}",
    }
    return json.dumps(body).encode()
