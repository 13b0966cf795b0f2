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
import re
import uuid
from dataclasses import dataclass
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

# code → the only message a caller ever sees for it.
ERROR_CODES: dict[str, str] = {
    "bad_request": "bad request",
    "unknown_unit": "unknown unit",
    "unknown_merchant": "unknown merchant",
    "bad_period": "bad period",
    "unknown_query": "unknown query",
    "internal": "internal error",
}
PERIOD_KINDS = ("week", "month", "quarter", "year")
# 2026-W48 (ISO week), 2026-11 (month), 2026-Q4 (quarter), 2026 (year).
_PERIOD = re.compile(r"^(?P<y>\d{4})(?:-W(?P<w>\d{2})|-(?P<m>\d{2})|-Q(?P<q>[1-4]))?$")
_ID_MAX = 128


@dataclass
class QueryError(Exception):
    """A request the service will not answer, with the code the caller gets and a detail only the log gets."""

    code: str
    detail: str = ""


def period_kind(period: str) -> str | None:
    """week / month / quarter / year for a well-formed period, None otherwise."""
    found = _PERIOD.match(period)
    if found is None:
        return None
    if found["w"] is not None:
        return "week" if 1 <= int(found["w"]) <= 53 else None
    if found["m"] is not None:
        return "month" if 1 <= int(found["m"]) <= 12 else None
    return "quarter" if found["q"] is not None else "year"


def _text(request: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = request.get(key)
    if value is None or value == "":
        if required:
            raise QueryError("bad_request", f"{key} missing")
        return None
    if not isinstance(value, str) or len(value) > _ID_MAX:
        raise QueryError("bad_request", f"{key} not a string of at most {_ID_MAX} characters")
    return value


def _period(request: dict[str, Any], *, kinds: tuple[str, ...] = PERIOD_KINDS) -> str | None:
    try:
        period = _text(request, "period", required=False)
    except QueryError as exc:
        raise QueryError("bad_period", exc.detail) from None
    if period is not None and period_kind(period) not in kinds:
        raise QueryError("bad_period", f"period {period[:20]!r} is not one of {'/'.join(kinds)}")
    return period


def _clean(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k not in {"_id", "facts"}}


async def answer(rt: Runtime, subject: str, request: Any) -> dict[str, Any]:
    """The reply to one query (pure reads of scoring's store); raises QueryError for a request it refuses."""
    if not isinstance(request, dict):
        raise QueryError("bad_request", f"body is {type(request).__name__}, not an object")
    current = periods_of(rt.clock.now())
    if subject == QUERY_UNIT:
        unit_id = _text(request, "unit_id", required=True)
        period = _period(request)
        assert unit_id is not None
        unit = rt.city.units.get(unit_id)
        if unit is None:
            raise QueryError("unknown_unit", f"unit {unit_id!r}")
        wanted = [period] if period else list(current.values())
        ids = [f"{unit_id}:{p}" for p in wanted]
        docs = {d["period"]: _clean(d) async for d in rt.store[UNIT_PERIODS].find({"_id": {"$in": ids}})}
        return {"unit_id": unit_id, "name": unit.name, "periods": {p: docs.get(p) for p in wanted}}
    if subject == QUERY_MERCHANT:
        mid = _text(request, "merchant_id", required=True)
        month = _period(request, kinds=("month",)) or current["month"]
        assert mid is not None
        merchant = rt.city.merchants.get(mid)
        if merchant is None:
            raise QueryError("unknown_merchant", f"merchant {mid!r}")
        doc = await rt.store[MERCHANT_PERIODS].find_one({"_id": f"{mid}:{month}"})
        card = await rt.store[MERCHANTS].find_one({"_id": mid})
        grade = card["grade"] if card else merchant.grade
        return {
            "merchant_id": mid,
            "name": merchant.name,
            "known": True,
            "grade": grade,
            "grade_basis": _clean(card.get("basis")) if card and card.get("basis") else None,
            "period": month,
            "month": _clean(doc),
        }
    if subject == QUERY_RANKING:
        kind = request.get("kind", "unit")
        if kind not in ("unit", "merchant"):
            raise QueryError("bad_request", "kind must be unit or merchant")
        wanted_kind = request.get("period_kind", "month")
        if wanted_kind not in PERIOD_KINDS:
            raise QueryError("bad_period", "period_kind must be week, month, quarter or year")
        period = _period(request, kinds=("month",) if kind == "merchant" else PERIOD_KINDS)
        if kind == "merchant":
            period = period or current["month"]
            return {"kind": kind, "period": period, "tables": await merchant_ranking(rt.store, rt.city, period)}
        period = period or current[wanted_kind]
        return {"kind": "unit", "period": period, "tables": await unit_ranking(rt.store, rt.city, period)}
    raise QueryError("unknown_query", f"subject {subject}")


def error_reply(code: str, correlation_id: str) -> dict[str, Any]:
    """What a caller gets when a query fails: code, fixed short message, correlation id."""
    return {"error": {"code": code, "message": ERROR_CODES[code], "correlation_id": correlation_id}}


async def handle(rt: Runtime, subject: str, data: bytes) -> dict[str, Any]:
    """Decode, answer, and turn every failure into a clean error reply (details go to the log only)."""
    correlation_id = f"q-{uuid.uuid4().hex[:16]}"
    try:
        try:
            request = json.loads(data or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise QueryError("bad_request", f"not JSON: {type(exc).__name__}") from None
        return await answer(rt, subject, request)
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

    for subject in (QUERY_UNIT, QUERY_MERCHANT, QUERY_RANKING):
        await nc.subscribe(subject, queue=QUEUE, cb=on_request)
    await nc.flush()

    async def hold() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await nc.close()

    rt.tasks.append(asyncio.create_task(hold(), name="scoring:query"))
