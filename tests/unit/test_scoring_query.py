"""The query interface's replies to outside callers: answers, and clean errors that never carry internals."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.queries import QueryErrorReply, RankingReply, UnitFiguresReply, UnitPeriodFigures
from services.scoring import query
from services.scoring.projection import unit_document
from services.scoring.query import QUERY_MERCHANT, QUERY_RANKING, QUERY_UNIT, handle, period_kind
from xiuhua.city.assessment import UNIT_COUNTERS
from xiuhua.clock import FrozenClock

SECRET = "mongodb://scoring:s3cret@10.0.0.5:27017 Traceback (most recent call last) KeyError"


class _Cursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    def __aiter__(self) -> Any:
        async def gen() -> Any:
            for d in self.docs:
                yield d

        return gen()


class _Collection:
    def __init__(self, docs: list[dict[str, Any]], fail: bool) -> None:
        self.docs, self.fail = docs, fail

    def find(self, flt: dict[str, Any]) -> _Cursor:
        if self.fail:
            raise RuntimeError(SECRET)

        def match(d: dict[str, Any]) -> bool:
            return all(d.get(k) in v["$in"] if isinstance(v, dict) else d.get(k) == v for k, v in flt.items())

        return _Cursor([d for d in self.docs if match(d)])

    async def find_one(self, flt: dict[str, Any]) -> dict[str, Any] | None:
        if self.fail:
            raise RuntimeError(SECRET)
        return next((d for d in self.docs if d["_id"] == flt["_id"]), None)


class _Store:
    def __init__(self, docs: dict[str, list[dict[str, Any]]] | None = None, fail: bool = False) -> None:
        self.docs, self.fail = docs or {}, fail

    def __getitem__(self, name: str) -> _Collection:
        return _Collection(self.docs.get(name, []), self.fail)


def _rt(city: Any, store: _Store) -> Any:
    return SimpleNamespace(city=city, store=store, clock=FrozenClock(datetime(2026, 12, 10, 4, tzinfo=UTC)))


async def _ask(rt: Any, subject: str, body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await handle(rt, subject, raw)
    json.dumps(reply)  # what goes on the wire
    return reply


def test_period_forms() -> None:
    assert [period_kind(p) for p in ("2026-W48", "2026-11", "2026-Q4", "2026")] == ["week", "month", "quarter", "year"]
    assert [period_kind(p) for p in ("2026-13", "2026-W54", "2026-Q5", "26-11", "2026-11; drop", "")] == [None] * 6


async def test_answers_for_known_units_and_merchants(city) -> None:
    unit_id = next(iter(city.units))
    meta = {"unit_id": unit_id, "role": "sanitation", "period": "2026-12", "kind": "month"}
    doc = unit_document(f"{unit_id}:2026-12", meta, {"dispatched": 3, "due": 2, "closed": 2}, city)
    rt = _rt(city, _Store({"unit_periods": [doc]}))
    reply = await _ask(rt, QUERY_UNIT, {"unit_id": unit_id, "period": "2026-12"})
    # The stored document as it is, less its key: every counter, rate, term and the score.
    assert reply["periods"] == {"2026-12": {k: v for k, v in doc.items() if k != "_id"}}
    UnitFiguresReply.model_validate(reply)
    reply = await _ask(rt, QUERY_MERCHANT, {"merchant_id": "M-CD-0001"})
    assert reply["grade"] == city.merchants["M-CD-0001"].grade and reply["period"] == "2026-12"
    reply = await _ask(rt, QUERY_RANKING, {"kind": "unit", "period_kind": "week"})
    assert reply["period"] == "2026-W50" and "error" not in reply
    RankingReply.model_validate(reply)


def test_the_unit_figures_contract_names_every_counter_scoring_keeps() -> None:
    """A counter added to the assessment must be added to the reply contract, or the reply would drop it."""
    assert set(UNIT_COUNTERS) <= set(UnitPeriodFigures.model_fields)


async def test_an_empty_period_means_the_current_ones_and_a_merchant_ranking_is_monthly(city) -> None:
    rt = _rt(city, _Store())
    reply = await _ask(rt, QUERY_UNIT, {"unit_id": "CD-SAN", "period": ""})
    assert list(reply["periods"]) == ["2026-W50", "2026-12", "2026-Q4", "2026"]
    reply = await _ask(rt, QUERY_RANKING, {"kind": "merchant", "period": "2026-W50"})
    assert reply["error"]["code"] == "bad_period"
    reply = await _ask(rt, QUERY_RANKING, {"kind": "merchant"})
    assert reply["kind"] == "merchant" and reply["period"] == "2026-12"
    # No merchant was inspected this month: none is ranked (never inspected is not 'best'), all are listed apart.
    assert reply["tables"] == {} and reply["unassessed"]
    # Both refused: the malformed kind is reported before the malformed period.
    reply = await _ask(rt, QUERY_RANKING, {"kind": 7, "period": "2026-13"})
    assert reply["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    ("subject", "body", "code"),
    [
        (QUERY_UNIT, {}, "bad_request"),
        (QUERY_UNIT, {"unit_id": ["x"]}, "bad_request"),
        (QUERY_UNIT, b"{not json", "bad_request"),
        (QUERY_UNIT, [1, 2], "bad_request"),
        (QUERY_UNIT, {"unit_id": "NO-SUCH-UNIT"}, "unknown_unit"),
        (QUERY_UNIT, {"unit_id": "CD-SAN", "period": "2026-13"}, "bad_period"),
        (QUERY_UNIT, {"unit_id": "CD-SAN", "period": 202611}, "bad_period"),
        (QUERY_UNIT, {"unit_id": "x" * 129}, "bad_request"),
        (QUERY_UNIT, b"null", "bad_request"),
        (QUERY_MERCHANT, {"merchant_id": "M-NOPE"}, "unknown_merchant"),
        (QUERY_MERCHANT, {"merchant_id": "M-CD-0001", "period": "2026-W48"}, "bad_period"),
        (QUERY_RANKING, {"kind": "shops"}, "bad_request"),
        (QUERY_RANKING, {"period_kind": "decade"}, "bad_period"),
        ("score.query.v1.other", {}, "unknown_query"),
    ],
)
async def test_a_bad_request_gets_a_code_and_a_short_message(city, caplog, subject, body, code) -> None:
    caplog.set_level(logging.INFO, logger="xiuhua.scoring.query")
    reply = await _ask(_rt(city, _Store()), subject, body)
    assert set(reply) == {"error"}
    err = reply["error"]
    assert err["code"] == code and err["message"] == query.ERROR_CODES[code]
    assert err["correlation_id"].startswith("q-") and err["correlation_id"] in caplog.text
    QueryErrorReply.model_validate(reply)


async def test_an_internal_failure_is_logged_and_the_reply_says_only_internal_error(city, caplog) -> None:
    caplog.set_level(logging.INFO, logger="xiuhua.scoring.query")
    rt = _rt(city, _Store(fail=True))
    for subject, body in (
        (QUERY_UNIT, {"unit_id": "CD-SAN"}),
        (QUERY_MERCHANT, {"merchant_id": "M-CD-0001"}),
        (QUERY_RANKING, {"kind": "merchant"}),
    ):
        reply = await _ask(rt, subject, body)
        assert reply == {
            "error": {
                "code": "internal",
                "message": "internal error",
                "correlation_id": reply["error"]["correlation_id"],
            }
        }
        wire = json.dumps(reply)
        for leak in ("s3cret", "mongodb://", "Traceback", "RuntimeError", "10.0.0.5"):
            assert leak not in wire
        # The detail is in the service's log, under the id the caller was given.
        record = next(r for r in caplog.records if reply["error"]["correlation_id"] in r.getMessage())
        assert record.exc_info is not None and SECRET in str(record.exc_info[1])
