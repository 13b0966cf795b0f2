"""Period close (考核周期结束): publish each closed period's ranking once, whatever the number of instances."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from contracts.scores import RankingPublished
from services.scoring import merchants as mrules
from services.scoring import store as scoring_store
from services.scoring.periods import CITY_TZ, periods_of
from services.scoring.ranking import unit_tables
from xiuhua.bus import Outgoing
from xiuhua.city import City
from xiuhua.service import Runtime
from xiuhua.store import Store

log = logging.getLogger("xiuhua.scoring.closing")


def period_start(at: datetime, kind: str) -> datetime:
    """The first moment (city time) of the `kind` period containing `at`."""
    local = at.astimezone(CITY_TZ)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    if kind == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(month=1, day=1)


def last_closed(now: datetime, kind: str) -> str:
    """The most recent period of `kind` that has ended at `now`, e.g. last week's '2026-W47'."""
    return periods_of(period_start(now, kind) - timedelta(microseconds=1))[kind]


async def unit_ranking(store: Store, city: City, period: str) -> dict[str, Any]:
    """The unit ranking tables of one period, from the stored documents: `tables` and `unassessed`."""
    docs = await scoring_store.unit_periods(store, period)
    names = {u.id: u.name for u in city.units.values()}
    tables, apart = unit_tables(docs, city.assessment.ranking, names)
    return {"tables": tables, "unassessed": apart}


async def merchant_ranking(store: Store, city: City, month: str) -> dict[str, Any]:
    """Merchants of each street for one month, best first (`tables`); a merchant with no check and no case in
    the month is not ranked but listed apart (`unassessed`): never inspected is not 'best'."""
    docs = await scoring_store.merchant_periods(store, month)
    rules = city.assessment.merchants
    by_street: dict[str, list[dict[str, Any]]] = {}
    apart: dict[str, list[dict[str, Any]]] = {}
    for m in city.merchants.values():
        chain = city.areas.chain(m.area)
        street = chain["street"].code if "street" in chain else "unknown"
        d = docs.get(m.id)
        if d is None or not (d.get("checks") or d.get("failures")):
            apart.setdefault(street, []).append({"id": m.id, "name": m.name, "reason": "no_cases", "figures": {}})
            continue
        row = {
            "merchant_id": m.id,
            "name": m.name,
            "points": d["points"],
            "failures": d["failures"],
            "checks": d["checks"],
            "grade": d["grade"],
        }
        by_street.setdefault(street, []).append(row)
    return {
        "tables": {s: mrules.ranking(rows, rules.ranking_top) for s, rows in sorted(by_street.items())},
        "unassessed": {s: sorted(rows, key=lambda r: r["id"]) for s, rows in sorted(apart.items())},
    }


async def close_periods(rt: Runtime) -> list[str]:
    """Publish the ranking of every period that has closed and not been published yet; returns the keys."""
    now = rt.clock.now()
    kinds = rt.city.assessment.ranking.periods
    todo: list[tuple[str, str, str]] = [("unit", kind, last_closed(now, kind)) for kind in kinds]
    todo.append(("merchant", "month", last_closed(now, "month")))
    done = []
    for kind, period_kind, period in todo:
        key = f"scoring:ranking:{kind}:{period}"
        if await rt.ledger.seen([key]):
            continue
        if kind == "unit":
            ranked = await unit_ranking(rt.store, rt.city, period)
        else:
            ranked = await merchant_ranking(rt.store, rt.city, period)
        event = RankingPublished.model_validate(
            {"correlation_id": key, "kind": kind, "period": period, "period_kind": period_kind, **ranked}
        )
        out = [Outgoing.of(event)]
        # The claim is the once-only guard across instances: the loser of the insert publishes nothing.
        if await rt.ledger.claim(key, out):
            await rt.ledger.publish([(key, out)])
            log.info("published %s ranking of %s", kind, period)
            done.append(key)
    return done
