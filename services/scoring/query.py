"""Request/reply queries on core NATS: a unit's or merchant's current figures and a period's ranking.

Subjects sit outside `score.v1.>` on purpose: the XH_SCORES stream captures that namespace, and a request
stored by JetStream would be answered by the stream's acknowledgement instead of by this service.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import nats

from services.scoring.closing import merchant_ranking, unit_ranking
from services.scoring.periods import periods_of
from services.scoring.projection import MERCHANT_PERIODS, MERCHANTS, UNIT_PERIODS
from xiuhua.bus import connect_options
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.scoring.query")

QUERY_UNIT = "score.query.v1.unit"
QUERY_MERCHANT = "score.query.v1.merchant"
QUERY_RANKING = "score.query.v1.ranking"
QUEUE = "scoring-query"


def _clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k not in {"_id", "facts"}}


async def answer(rt: Runtime, subject: str, request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one query (pure reads of scoring's store)."""
    current = periods_of(rt.clock.now())
    if subject == QUERY_UNIT:
        unit_id = str(request["unit_id"])
        wanted = [request["period"]] if request.get("period") else list(current.values())
        ids = [f"{unit_id}:{p}" for p in wanted]
        docs = {d["period"]: _clean(d) async for d in rt.store[UNIT_PERIODS].find({"_id": {"$in": ids}})}
        unit = rt.city.units.get(unit_id)
        return {"unit_id": unit_id, "name": unit.name if unit else "", "periods": {p: docs.get(p) for p in wanted}}
    if subject == QUERY_MERCHANT:
        mid = str(request["merchant_id"])
        month = request.get("period") or current["month"]
        doc = await rt.store[MERCHANT_PERIODS].find_one({"_id": f"{mid}:{month}"})
        card = await rt.store[MERCHANTS].find_one({"_id": mid})
        merchant = rt.city.merchants.get(mid)
        grade = card["grade"] if card else (merchant.grade if merchant else None)
        return {"merchant_id": mid, "name": merchant.name if merchant else "", "known": merchant is not None,
                "grade": grade, "period": month, "month": _clean(doc)}
    if subject == QUERY_RANKING:
        kind = request.get("kind", "unit")
        period = request.get("period") or current[request.get("period_kind", "month")]
        if kind == "merchant":
            return {"kind": kind, "period": period, "tables": await merchant_ranking(rt.store, rt.city, period)}
        return {"kind": "unit", "period": period, "tables": await unit_ranking(rt.store, rt.city, period)}
    return {"error": f"unknown query subject {subject}"}


async def start(rt: Runtime) -> None:
    """Serve the queries on a connection of their own, closed when the service stops."""
    nc = await nats.connect(rt.settings.nats_url, name="xiuhua-scoring-query", **connect_options(rt.settings))

    async def on_request(msg: Any) -> None:
        try:
            request = json.loads(msg.data or b"{}")
            reply: dict[str, Any] = await answer(rt, msg.subject, request)
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": f"bad request: {type(exc).__name__}: {exc}"}
        except Exception as exc:  # the store is down: say so instead of letting the caller time out
            log.exception("query failed")
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        await msg.respond(json.dumps(reply, ensure_ascii=False, default=str).encode())

    for subject in (QUERY_UNIT, QUERY_MERCHANT, QUERY_RANKING):
        await nc.subscribe(subject, queue=QUEUE, cb=on_request)
    await nc.flush()

    async def hold() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await nc.close()

    rt.tasks.append(asyncio.create_task(hold(), name="scoring:query"))
