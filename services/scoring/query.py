"""Request/reply queries on core NATS: a unit's or merchant's current figures and a period's ranking.

Subjects sit outside `score.v1.>` on purpose: the XH_SCORES stream captures that namespace, and a request
stored by JetStream would be answered by the stream's acknowledgement instead of by this service.

Callers are outside systems. A request that cannot be answered gets `{"error": {"code", "message",
"correlation_id"}}`: a machine-readable code from `ERROR_CODES`, a short fixed message, and an id that the
service's log line about the request also carries. Exception text, store addresses and stack traces stay in
that log line and never travel in a reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from pydantic import BaseModel, ValidationError

from contracts.queries import (
    ERROR_CODES,
    PERIOD_KINDS,
    QUERIES,
    QUERY_MERCHANT,
    QUERY_RANKING,
    QUERY_UNIT,
    MerchantFiguresQuery,
    MerchantFiguresReply,
    QueryErrorReply,
    RankingQuery,
    RankingReply,
    UnitFiguresQuery,
    UnitFiguresReply,
    period_kind,
)
from contracts.queries import QUEUE_GROUP as QUEUE
from services.scoring.closing import merchant_ranking, unit_ranking
from services.scoring.periods import periods_of
from services.scoring.projection import MERCHANT_PERIODS, MERCHANTS, UNIT_PERIODS
from xiuhua.bus import connect_options
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.scoring.query")

__all__ = [
    "ERROR_CODES",
    "PERIOD_KINDS",
    "QUERY_MERCHANT",
    "QUERY_RANKING",
    "QUERY_UNIT",
    "QUEUE",
    "QueryError",
    "answer",
    "error_reply",
    "handle",
    "period_kind",
    "start",
]
M = TypeVar("M", bound=BaseModel)
# Fields whose refusal is a `bad_period` rather than a `bad_request`.
_PERIOD_FIELDS = {"period", "period_kind"}


@dataclass
class QueryError(Exception):
    """A request the service will not answer, with the code the caller gets and a detail only the log gets."""

    code: str
    detail: str = ""


def _request(model: type[M], body: Any) -> M:
    """The request parsed by its contract; a refusal names the code the caller gets (a malformed id or kind
    before a malformed period, as the checks run in that order) and the fields, for the log only."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        on_period = [e["type"] == "bad_period" or (e["loc"] and e["loc"][0] in _PERIOD_FIELDS) for e in errors]
        code = "bad_period" if all(on_period) else "bad_request"
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in errors)
        raise QueryError(code, detail[:300]) from None


def _clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k not in {"_id", "facts"}}


async def answer(rt: Runtime, subject: str, body: Any) -> BaseModel:
    """The reply to one query (pure reads of scoring's store); raises QueryError for a request it refuses."""
    if subject not in {q.subject for q in QUERIES.values()}:
        raise QueryError("unknown_query", f"subject {subject}")
    current = periods_of(rt.clock.now())
    if subject == QUERY_UNIT:
        unit_q = _request(UnitFiguresQuery, body)
        unit = rt.city.units.get(unit_q.unit_id)
        if unit is None:
            raise QueryError("unknown_unit", f"unit {unit_q.unit_id!r}")
        wanted = [unit_q.period] if unit_q.period else list(current.values())
        ids = [f"{unit_q.unit_id}:{p}" for p in wanted]
        docs = {d["period"]: _clean(d) async for d in rt.store[UNIT_PERIODS].find({"_id": {"$in": ids}})}
        return UnitFiguresReply.model_validate(
            {"unit_id": unit_q.unit_id, "name": unit.name, "periods": {p: docs.get(p) for p in wanted}}
        )
    if subject == QUERY_MERCHANT:
        merchant_q = _request(MerchantFiguresQuery, body)
        mid = merchant_q.merchant_id
        month = merchant_q.period or current["month"]
        merchant = rt.city.merchants.get(mid)
        if merchant is None:
            raise QueryError("unknown_merchant", f"merchant {mid!r}")
        doc = await rt.store[MERCHANT_PERIODS].find_one({"_id": f"{mid}:{month}"})
        card = await rt.store[MERCHANTS].find_one({"_id": mid})
        grade = card["grade"] if card else merchant.grade
        return MerchantFiguresReply.model_validate(
            {
                "merchant_id": mid,
                "name": merchant.name,
                "known": True,
                "grade": grade,
                "grade_basis": _clean(card.get("basis")) if card and card.get("basis") else None,
                "period": month,
                "month": _clean(doc),
            }
        )
    ranking_q = _request(RankingQuery, body)
    if ranking_q.kind == "merchant":
        period = ranking_q.period or current["month"]
        ranked = await merchant_ranking(rt.store, rt.city, period)
    else:
        period = ranking_q.period or current[ranking_q.period_kind]
        ranked = await unit_ranking(rt.store, rt.city, period)
    return RankingReply.model_validate({"kind": ranking_q.kind, "period": period, **ranked})


def error_reply(code: str, correlation_id: str) -> dict[str, Any]:
    """What a caller gets when a query fails: code, fixed short message, correlation id."""
    return QueryErrorReply.of(code, correlation_id).model_dump(mode="json")


async def handle(rt: Runtime, subject: str, data: bytes) -> dict[str, Any]:
    """Decode, answer, and turn every failure into a clean error reply (details go to the log only)."""
    correlation_id = f"q-{uuid.uuid4().hex[:16]}"
    try:
        try:
            request = json.loads(data or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise QueryError("bad_request", f"not JSON: {type(exc).__name__}") from None
        return (await answer(rt, subject, request)).model_dump(mode="json")
    except QueryError as exc:
        log.info("query %s refused (%s) [%s]: %s", subject, exc.code, correlation_id, exc.detail)
        return error_reply(exc.code, correlation_id)
    except Exception:  # the store is down, or a bug: say so instead of letting the caller time out
        log.exception("query %s failed [%s]", subject, correlation_id)
        return error_reply("internal", correlation_id)


async def start(rt: Runtime) -> None:
    """Serve the queries on a connection of their own, closed when the service stops."""
    nc = await nats.connect(rt.settings.nats_url, name="xiuhua-scoring-query", **connect_options(rt.settings))

    async def on_request(msg: Any) -> None:
        reply = await handle(rt, msg.subject, msg.data)
        await msg.respond(json.dumps(reply, ensure_ascii=False, default=str).encode())

    for subject in (q.subject for q in QUERIES.values()):
        await nc.subscribe(subject, queue=QUEUE, cb=on_request)
    await nc.flush()

    async def hold() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await nc.close()

    rt.tasks.append(asyncio.create_task(hold(), name="scoring:query"))
