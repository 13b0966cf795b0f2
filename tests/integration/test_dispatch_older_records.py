"""Dispatch, started over what an older build left, dates its timer claims once in the background, so that the
ledger's purge reaches them; a claim already dated and another service's claim keep what they have."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.helpers import eventually
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import running
from xiuhua.store import Store

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


async def test_dispatch_dates_older_timer_claims_once_when_it_starts(settings, city) -> None:
    live = Store(settings.mongo_url, settings.database("dispatch"))
    try:
        await live["ledger"].insert_many(
            [
                {"_id": "timer:C-old:0:warning:1", "events": [], "published": True, "at": T0},
                {"_id": "timer:C-new:0:overdue:1", "events": [], "published": True, "at": T0, "at_s": 1.0},
                {"_id": "timers-elsewhere:m1", "events": [], "published": True, "at": T0},
            ]
        )
        async with running(spec("dispatch"), settings, clock=FrozenClock(NOW), city=city) as rt:

            async def dated() -> bool:
                claim = await live["ledger"].find_one({"_id": "timer:C-old:0:warning:1"})
                return (claim or {}).get("at_s") == T0.timestamp()

            await eventually(dated, timeout=30, interval=0.2)

            async def recorded() -> bool:
                return bool(await rt.ledger.seen(["repaired:timer-moments"]))

            await eventually(recorded, timeout=10)
        docs = {
            d["_id"]: d
            async for d in live["ledger"].find({"_id": {"$in": ["timer:C-new:0:overdue:1", "timers-elsewhere:m1"]}})
        }
        assert docs["timer:C-new:0:overdue:1"]["at_s"] == 1.0  # dated already: left as it was
        assert "at_s" not in docs["timers-elsewhere:m1"]  # `timers-elsewhere:` is not the `timer:` prefix
    finally:
        await live.close()
