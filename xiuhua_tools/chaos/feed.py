"""The reports a scenario sends: patrol reports and 12345 orders (with callers' names and phones), re-sent until
JetStream has stored each one, whatever is broken at the moment."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import nats
from nats.errors import Error as NatsError

from contracts import subjects
from xiuhua.city import City
from xiuhua_tools.demo import PHRASES

SURNAMES = "张王李赵刘陈杨黄周吴"
GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军")


@dataclass(frozen=True)
class Report:
    """One inbound report: subject, body, the message id and the correlation id intake gives it."""

    subject: str
    body: dict[str, Any]
    msg_id: str
    correlation_id: str

    @property
    def data(self) -> bytes:
        """The JSON bytes on the bus."""
        return json.dumps(self.body, ensure_ascii=False).encode()


def reports(city: City, n: int, *, tag: str, seed: int = 7, hotline_share: float = 0.3) -> list[Report]:
    """`n` valid reports inside the city, deterministic for a seed; some are 12345 orders with a caller."""
    rng = random.Random(seed)
    grids = city.areas.of_level("grid")
    out = []
    for i in range(n):
        code = rng.choice(list(PHRASES))
        minx, miny, maxx, maxy = rng.choice(grids).geometry.bounds
        cx, cy = (minx + maxx) / 2, (miny + maxy) / 2  # the centre of a grid cell: always inside the city
        now = datetime.now(UTC).isoformat()
        if rng.random() < hotline_share:
            ref = f"{tag}-H{i:05d}"
            body: dict[str, Any] = {
                "order_no": ref,
                "received_at": now,
                "channel": "12345",
                "title": "市民反映城市管理问题",
                "content": rng.choice(PHRASES[code]) + "，请尽快处理。",
                "location": {"lng": round(cx, 6), "lat": round(cy, 6), "coord_system": "wgs84"},
                "caller": {
                    "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
                    "phone": f"13{rng.randint(100000000, 999999999)}",
                },
                "urgent": False,
            }
            source = "hotline"
        else:
            ref = f"{tag}-G{i:05d}"
            body = {
                "report_id": ref,
                "reported_at": now,
                "inspector_id": f"G-{rng.randint(1, 40):03d}",
                "description": rng.choice(PHRASES[code]),
                "category_code": code,
                "location": {"lng": round(cx, 6), "lat": round(cy, 6), "coord_system": "wgs84"},
            }
            source = "grid"
        out.append(Report(subjects.report_subject(source), body, f"{source}:{ref}", f"{source}:{ref}"))
    return out


@dataclass
class Feeder:
    """Publishes reports at a rate; each is re-sent (same message id) until the stream acknowledges it."""

    url: str
    connect_opts: dict[str, Any] = field(default_factory=dict)
    rate: float = 40.0
    sent: int = 0
    resends: int = 0

    async def run(self, items: list[Report], on_sent: Callable[[int], Any] | None = None) -> None:
        """Publish everything; `on_sent(k)` is called after the k-th report is stored (scenarios strike there)."""

        async def quiet(_: Exception) -> None:  # the outage is the point; the resend counter tells the story
            return None

        nc = await nats.connect(
            self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=quiet, **self.connect_opts
        )
        js = nc.jetstream(timeout=2.0)
        try:
            for r in items:
                while True:
                    try:
                        await js.publish(r.subject, r.data, headers={"Nats-Msg-Id": r.msg_id})
                        break
                    except (NatsError, TimeoutError, OSError):
                        # The bus is down or restarting: the same message id again is dropped if it got through.
                        self.resends += 1
                        await asyncio.sleep(0.3)
                self.sent += 1
                if on_sent is not None:
                    res = on_sent(self.sent)
                    if asyncio.iscoroutine(res):
                        await res
                await asyncio.sleep(1.0 / self.rate)
        finally:
            await nc.close()
