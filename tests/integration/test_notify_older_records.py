"""Notify, started over what an older build left, dates it once in the background: its outcomes' ledger claims,
and the bulletin's records and notify's views of the cases that ended before the bulletin kept the moment."""

from __future__ import annotations

from datetime import UTC, datetime

from services.notify.bulletin.projection import CASES as BULLETIN_CASES
from services.notify.store import CASES as ALERT_CASES
from tests.helpers import eventually
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import running
from xiuhua.store import Store

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


async def test_notify_dates_older_records_once_when_it_starts(settings, city) -> None:
    live = Store(settings.mongo_url, settings.database("notify"))
    try:
        await live["ledger"].insert_one({"_id": "delivered:n-1", "events": [], "published": True, "at": T0})
        await live[BULLETIN_CASES].insert_one({"_id": "C-old", "status": "closed"})
        await live[ALERT_CASES].insert_one({"_id": "C-old", "lead": "CD-SAN"})
        async with running(spec("notify"), settings, clock=FrozenClock(NOW), city=city) as rt:

            async def dated() -> tuple[object, ...] | None:
                claim = await live["ledger"].find_one({"_id": "delivered:n-1"})
                view = await live[ALERT_CASES].find_one({"_id": "C-old"})
                got = (claim or {}).get("at_s"), (view or {}).get("closed_s")
                return got if got == (T0.timestamp(), NOW.timestamp()) else None

            await eventually(dated, timeout=30, interval=0.2)
            passes = ["repaired:delivery-moments", "repaired:alert-view-moments"]

            async def recorded() -> bool:
                return len(await rt.ledger.seen(passes)) == 2

            await eventually(recorded, timeout=10)
    finally:
        await live.close()
