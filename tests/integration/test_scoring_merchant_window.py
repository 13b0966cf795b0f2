"""The merchant repeat window through the store: a failure in early March counts one of late January (February is
shorter than the window), whichever arrives first."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from contracts.reports import MerchantCheck
from services.scoring.periods import CITY_TZ
from services.scoring.store import COLLECTIONS, MERCHANT_PERIODS, Projection
from xiuhua.store import Store

MARCH = datetime(2026, 3, 1, 10, 0, tzinfo=CITY_TZ)


def _check(cid: str, at: datetime) -> MerchantCheck:
    items = {"hygiene": "fail", "order": "pass", "greenery": "pass"}
    return MerchantCheck(check_id=cid, merchant_id="M-CD-0001", checked_at=at, inspector_id="G-1", items=items)


async def _escalated(mongo_url: str, city, *checks: MerchantCheck) -> dict[str, bool]:
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_scoring")
    try:
        await store.ensure_collections(COLLECTIONS)
        projection = Projection(store, city)
        for c in checks:  # one batch each: the later batch reads what the earlier one stored
            await projection.apply([c])
        return {d["period"]: d["escalated"] async for d in store[MERCHANT_PERIODS].find({})}
    finally:
        await store.close()


async def test_a_failure_of_late_january_counts_in_early_march_in_either_order(mongo_url, city) -> None:
    assert city.assessment.merchants.repeat_window_days == 30
    edge, again = _check("K1", MARCH - timedelta(days=30)), _check("K2", MARCH)  # exactly 30 days apart
    assert await _escalated(mongo_url, city, edge, again) == {"2026-01": False, "2026-03": True}
    assert await _escalated(mongo_url, city, again, edge) == {"2026-01": False, "2026-03": True}
    past = _check("K1", MARCH - timedelta(days=30, seconds=1))
    assert await _escalated(mongo_url, city, past, again) == {"2026-01": False, "2026-03": False}
    assert await _escalated(mongo_url, city, again, past) == {"2026-01": False, "2026-03": False}
