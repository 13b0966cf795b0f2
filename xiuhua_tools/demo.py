"""A demo feed: realistic reports from the patrol app, the hotline and HJ 212 dust monitors, so a newcomer sees
cases flow."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime
from typing import Any

import nats

from contracts import subjects
from contracts.envelope import new_event_id
from xiuhua.city import City
from xiuhua.city.devices import CrcVariant

PHRASES = {
    "0101": ["解放路菜场门口有流动摊贩占道经营", "学校门口早上有人摆摊卖早点，占用人行道"],
    "0102": ["夜市路边露天烧烤，油烟很大", "小区门口有人露天烤串，烟熏得厉害"],
    "0103": ["小区消防通道被杂物堵塞", "楼下生命通道停满电动车，消防车进不来"],
    "0201": ["公交站旁垃圾桶满溢，垃圾散落一地", "农贸市场后面垃圾箱满了没人清"],
    "0202": ["渣土车未苫盖，沿途洒落泥土", "工地出来的渣土车一路抛洒"],
    "0301": ["人行道上井盖缺失，很危险", "路口窨井盖破损翘起"],
    "0302": ["巷子里路灯不亮好几天了", "桥下两盏路灯坏了"],
    "0401": ["沿街商铺出店经营，门前三包没落实", "饭店门前堆放杂物，门前五包不到位"],
}


def _point(city: City) -> dict[str, float]:
    grid = random.choice(city.areas.of_level("grid"))
    minx, miny, maxx, maxy = grid.geometry.bounds
    return {"lng": round(random.uniform(minx, maxx), 6), "lat": round(random.uniform(miny, maxy), 6)}


def grid_report(city: City, n: int) -> dict[str, Any]:
    """A patrol report from 城管通."""
    code = random.choice(list(PHRASES))
    return {
        "report_id": f"DEMO-G-{n:06d}-{random.randint(0, 9999):04d}",
        "reported_at": datetime.now(UTC).isoformat(),
        "inspector_id": f"G-{random.randint(1, 40):03d}",
        "description": random.choice(PHRASES[code]),
        "category_code": code,
        "location": {**_point(city), "coord_system": "wgs84"},
        "photo_urls": [f"https://img.example/{new_event_id()}.jpg"],
    }


def hotline_order(city: City, n: int) -> dict[str, Any]:
    """A 12345 work order with free text and a caller."""
    code = random.choice(list(PHRASES))
    street = random.choice(city.areas.of_level("community"))
    return {
        "order_no": f"DEMO-H-{n:06d}-{random.randint(0, 9999):04d}",
        "received_at": datetime.now(UTC).isoformat(),
        "channel": "12345",
        "title": "市民反映城市管理问题",
        "content": f"{street.name}附近，{random.choice(PHRASES[code])}，请尽快处理。",
        "address": f"{street.name}{random.randint(1, 200)}号",
        "caller": {
            "name": random.choice(["张伟", "王芳", "李娜", "刘洋"]),
            "phone": f"13{random.randint(100000000, 999999999)}",
        },
        "urgent": False,
    }


async def dust_monitors(address: str, city: City, *, every_s: float = 10.0) -> None:
    """The city's HJ 212 dust monitors report to intake's TCP edge as real ones do: real-time data with the
    standard's CRC and data flags, answered with CN=9014. A connection lost (intake restarting) is made again."""
    from zoneinfo import ZoneInfo

    from xiuhua_tools.hj212_device import frame, segment, send

    tz = ZoneInfo(city.info.timezone)
    devices = [
        d for d in city.devices.by_mn.values() if d.password and city.devices.models[d.model].device_type == "dust"
    ]
    while devices:
        frames = []
        for d in devices:
            accepted = city.devices.models[d.model].hj212_crc
            crc: CrcVariant = "modbus_swapped" if "modbus_swapped" in accepted else "standard"
            pm10 = round(random.uniform(40, 120), 1)
            values = {
                "pm10": pm10,
                "pm25": round(pm10 * 0.55, 1),
                "tsp": round(pm10 * 1.6, 1),
                "temperature": round(random.uniform(5, 25), 1),
                "humidity": round(random.uniform(40, 80), 1),
            }
            frames.append(frame(segment(d.mn or "", d.password or "", values, datetime.now(UTC), tz), crc))
        try:
            await send(address, frames)
        except OSError:
            pass  # intake is restarting: the monitors try again next round, as real ones do
        await asyncio.sleep(every_s)


async def feed(
    nats_url: str,
    city: City,
    *,
    rate: float = 1.0,
    connect_opts: dict[str, Any] | None = None,
    hj212: str | None = None,
) -> None:
    """Publish a report every 1/rate seconds until cancelled; with an HJ 212 address, dust monitors report there."""
    nc = await nats.connect(nats_url, **(connect_opts or {}))
    js = nc.jetstream()
    monitors = asyncio.create_task(dust_monitors(hj212, city)) if hj212 else None
    n = 0
    try:
        while True:
            n += 1
            if random.random() < 0.6:
                body, source = grid_report(city, n), "grid"
            else:
                body, source = hotline_order(city, n), "hotline"
            await js.publish(
                subjects.report_subject(source),
                json.dumps(body, ensure_ascii=False).encode(),
                headers={"Nats-Msg-Id": f"{source}:{body.get('report_id') or body.get('order_no')}"},
            )
            await asyncio.sleep(1.0 / rate)
    finally:
        if monitors is not None:
            monitors.cancel()
        await nc.close()
