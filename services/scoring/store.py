"""Persisting the fold: per-case facts and pre-aggregated documents keyed by natural `_id`.

Collections (scoring's own database):
- `case_facts` (`_id` = case id): the case's facts, sorted; its contribution is recomputed from them; `closed_s`,
  when the case ended in seconds (null while open), what the purge ranges over.
- `unit_periods` (`_id` = `unit:period`): integer counters (top-level fields), plus rates, terms,
  deductions, score and flags derived from them.
- `merchant_periods` (`_id` = `merchant:YYYY-MM`): the month's facts and figures (points, grade ...).
- `merchants` (`_id` = merchant id): points, grade and escalation per month, and the current class with its
  basis (`merchants.merchant_class`: a rolling window of months).

The live handlers and `xiuhua scoring rebuild` use this same class, so a rebuild writes exactly what the
live service writes. Nothing stored depends on arrival order or on the wall clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import DeleteOne, ReplaceOne, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from contracts import streams
from contracts.cases import CaseEvent, CaseOpened, CaseOverdue
from contracts.envelope import Event, derived_event_id
from contracts.merchants import MerchantEscalated
from contracts.reports import MerchantCheck
from contracts.scores import MerchantGradeChanged, MerchantGraded, UnitScoreUpdated
from services.scoring import merchants as mrules
from services.scoring import units
from services.scoring.rates import figures
from xiuhua.city import City
from xiuhua.city.merchants import Merchant
from xiuhua.retention import Retained
from xiuhua.store import Store, update_in_chunks

CASE_FACTS = "case_facts"
UNIT_PERIODS = "unit_periods"
MERCHANT_PERIODS = "merchant_periods"
MERCHANTS = "merchants"
COLLECTIONS = (CASE_FACTS, UNIT_PERIODS, MERCHANT_PERIODS, MERCHANTS)
CLOSED_S = "closed_s"  # when a case ended (closed or cancelled), in seconds; null while open or once reopened
# A case's facts go when closed cases go (dispatch has deleted the case by then, so no command can reach it), but
# not before the case stream has dropped its events: the rebuild window learns from the facts which periods a
# replay can no longer reproduce (`services/scoring/window.py`). The unit and merchant documents stay.
RETAINED = (Retained(CASE_FACTS, CLOSED_S, "closed_cases", at_least_stream=streams.CASES.name),)


def facts_document(case_id: str, facts: list[units.Fact]) -> dict[str, Any]:
    """A case's stored facts, with when it ended in seconds (null while open: a range on a number matches no null
    on either store)."""
    ended = units.ended_at(facts)
    return {"_id": case_id, "facts": facts, CLOSED_S: datetime.fromisoformat(ended).timestamp() if ended else None}


def unit_document(doc_id: str, meta: dict[str, Any], counters: dict[str, int], city: City) -> dict[str, Any]:
    """The full unit-period document: every counter (0 when absent) and what the rules derive from them."""
    c = {k: int(counters.get(k, 0)) for k in units.COUNTERS}
    return {
        "_id": doc_id,
        "unit_id": meta["unit_id"],
        "role": meta["role"],
        "period": meta["period"],
        "kind": meta["kind"],
        **c,
        **figures(c, city.assessment),
    }


@dataclass
class Applied:
    """What applying one message caused: events to publish."""

    events: list[Event] = field(default_factory=list)


class Projection:
    """Applies decoded messages to scoring's store (one call per batch, inside the caller's transaction)."""

    def __init__(self, store: Store, city: City) -> None:
        self.store = store
        self.city = city

    def guards(self, message: Any) -> bool:
        """Whether applying `message` again changes nothing by itself: a case event is kept among its case's facts
        under its event id (`units.add_fact`) and adds nothing the second time, except an opening of a merchant's
        case, which also counts toward the merchant's month (not guarded here)."""
        return isinstance(message, CaseEvent) and not (
            isinstance(message, CaseOpened) and message.merchant_id in self.city.merchants
        )

    async def apply(
        self,
        messages: list[Any],
        session: AsyncClientSession | None = None,
        *,
        events: bool = True,
        again: Sequence[bool] = (),
    ) -> list[Applied]:
        """Apply messages in order; returns, per message, the events it caused.

        `events=False` (the rebuild, which publishes nothing) works out what each case changed once per batch,
        from its facts before and after, instead of once per message: the same documents, since a case's
        contribution depends on its facts alone and the per-message differences add up to the batch's.

        `again[i]`: message i may be a redelivery. Folded before, it changes nothing, but says again which unit
        documents its fact moves (`score.v1.unit_updated`, with their figures now and the ids they had: each is
        derived from the event's id and the unit's), since its first emission may not have gone out."""
        results = [Applied() for _ in messages]
        case_ids = sorted({m.case_id for m in messages if isinstance(m, CaseEvent)})
        cases: dict[str, list[units.Fact]] = {}
        if case_ids:
            async for d in self.store[CASE_FACTS].find({"_id": {"$in": case_ids}}, session=session):
                cases[d["_id"]] = d["facts"]
        changed_cases, deltas, touched, merchant_facts = self._fold_cases(messages, cases, events, again)

        if changed_cases:
            await self.store[CASE_FACTS].bulk_write(
                [ReplaceOne({"_id": c}, facts_document(c, cases[c]), upsert=True) for c in sorted(changed_cases)],
                ordered=True,
                session=session,
            )
        docs = await self._write_units(deltas, session)
        if events:
            unread = sorted({k for keys in touched for k in keys} - docs.keys())
            if unread:  # documents a redelivered message names, unchanged by this batch
                async for d in self.store[UNIT_PERIODS].find({"_id": {"$in": unread}}, session=session):
                    docs[d["_id"]] = d
            self._unit_events(messages, touched, docs, results)
        if merchant_facts:
            await self._apply_merchants(messages, merchant_facts, results, session)
        return results

    def _fold_cases(
        self, messages: list[Any], cases: dict[str, list[units.Fact]], events: bool, again: Sequence[bool]
    ) -> tuple[set[str], dict[str, dict[str, Any]], list[list[str]], list[tuple[int, mrules.Fact, str]]]:
        """Folds the messages' facts into `cases` (in place); returns the cases changed, the unit-document deltas
        (单位考核), the unit documents each message moved, and the merchant facts (商户) the messages make."""
        before = dict(cases)
        changed_cases: set[str] = set()
        deltas: dict[str, dict[str, Any]] = {}
        touched: list[list[str]] = [[] for _ in messages]
        merchant_facts: list[tuple[int, mrules.Fact, str]] = []
        for i, m in enumerate(messages):
            if isinstance(m, CaseEvent):
                if isinstance(m, CaseOpened) and m.merchant_id in self.city.merchants:
                    fact = mrules.case_fact(m, self.city.assessment.merchants)
                    if fact is not None:
                        merchant_facts.append((i, fact, m.merchant_id))
                fact = units.fact_of(m)
                if fact is None:
                    continue
                old = cases.get(m.case_id, [])
                new = units.add_fact(old, fact)
                if new is None:
                    if events and i < len(again) and again[i]:
                        without = [f for f in old if f["id"] != fact["id"]]
                        touched[i] = list(units.difference(units.contribution(without), units.contribution(old)))
                    continue
                cases[m.case_id] = new
                changed_cases.add(m.case_id)
                if isinstance(m, CaseOpened | CaseOverdue):
                    late = mrules.overdue_of(m.case_id, new, self.city.routing.merchant_category)
                    if late is not None and late[1] in self.city.merchants:
                        merchant_facts.append((i, *late))
                if events:  # which unit documents this message moved, for its score.v1.unit_updated
                    change = units.difference(units.contribution(old), units.contribution(new))
                    units.apply_delta(deltas, change)
                    touched[i] = list(change)
            elif isinstance(m, MerchantCheck) and m.merchant_id in self.city.merchants:
                merchant_facts.append((i, mrules.check_fact(m, self.city.assessment.merchants), m.merchant_id))
        if not events:
            for c in sorted(changed_cases):
                old_c, new_c = units.contribution(before.get(c, [])), units.contribution(cases[c])
                units.apply_delta(deltas, units.difference(old_c, new_c))
        return changed_cases, deltas, touched, merchant_facts

    async def _write_units(
        self, deltas: dict[str, dict[str, Any]], session: AsyncClientSession | None
    ) -> dict[str, dict[str, Any]]:
        nonzero = {k: d for k, d in deltas.items() if any(d["c"].values())}
        if not nonzero:
            return {}
        col = self.store[UNIT_PERIODS]
        keys = sorted(nonzero)
        existing = {d["_id"]: d async for d in col.find({"_id": {"$in": keys}}, session=session)}
        ops: list[Any] = []
        out: dict[str, dict[str, Any]] = {}
        for key in keys:
            d = nonzero[key]
            before = existing.get(key, {})
            counters = {c: int(before.get(c, 0)) + d["c"].get(c, 0) for c in units.COUNTERS}
            if not any(counters.values()):
                if before:
                    ops.append(DeleteOne({"_id": key}))
                continue
            doc = unit_document(key, d, counters, self.city)
            out[key] = doc
            # Replace by _id with the whole document: top-level fields only, one write per document.
            ops.append(ReplaceOne({"_id": key}, doc, upsert=True))
        if ops:
            await col.bulk_write(ops, ordered=True, session=session)
        return out

    def _unit_events(
        self, messages: list[Any], touched: list[list[str]], docs: dict[str, dict[str, Any]], results: list[Applied]
    ) -> None:
        """One `score.v1.unit_updated` per message and unit, carrying the unit's week figures."""
        for i, keys in enumerate(touched):
            by_unit: dict[str, list[str]] = {}
            for key in keys:
                by_unit.setdefault(key.split(":", 1)[0], []).append(key)
            for unit_id, ks in sorted(by_unit.items()):
                week = next((docs[k] for k in ks if k in docs and docs[k]["kind"] == "week"), None)
                if week is None:
                    week = next((docs[k] for k in ks if k in docs), None)
                if week is None:
                    continue
                m = messages[i]
                results[i].events.append(
                    UnitScoreUpdated(
                        event_id=derived_event_id(m.event_id, unit_id),
                        correlation_id=m.correlation_id,
                        unit_id=unit_id,
                        period=week["period"],
                        role=week["role"],
                        counters={c: week[c] for c in units.COUNTERS if week[c]},
                        case_id=m.case_id,
                        rates=week["rates"],
                        score=week["score"],
                        periods=sorted(docs[k]["period"] for k in ks if k in docs),
                    )
                )

    async def _apply_merchants(
        self,
        messages: list[Any],
        facts: list[tuple[int, mrules.Fact, str]],
        results: list[Applied],
        session: AsyncClientSession | None,
    ) -> None:
        # A month's escalation counts the failures of the same item in the months before that its repeat window
        # reaches: read those, and the months after that reach back to this one, with the months they reach.
        days = self.city.assessment.merchants.repeat_window_days
        months = {(mid, mrules.month_of(_at(f))) for _, f, mid in facts}
        keys = sorted(
            {
                mrules.period_id(mid, e)
                for mid, month in months
                for m in (month, *mrules.later_months(month, days))
                for e in (*mrules.earlier_months(m, days), m)
            }
        )
        mids = sorted({mid for _, _, mid in facts})
        found = self.store[MERCHANT_PERIODS].find({"_id": {"$in": keys}}, session=session)
        periods = {d["_id"]: d async for d in found}
        cards = {d["_id"]: d async for d in self.store[MERCHANTS].find({"_id": {"$in": mids}}, session=session)}
        dirty_p: set[str] = set()
        dirty_c: set[str] = set()
        for i, fact, mid in facts:
            month = mrules.month_of(_at(fact))
            key = mrules.period_id(mid, month)
            doc = periods.get(key) or {"_id": key, "merchant_id": mid, "period": month, "facts": [], "escalated": False}
            new_facts = mrules.add_fact(doc["facts"], fact)
            if new_facts is None:
                continue
            self._refigure(messages[i], results[i], doc, new_facts, _prior(periods, mid, month, days), periods, cards)
            dirty_p.add(key)
            dirty_c.add(mid)
            for later in mrules.later_months(month, days):  # their repeats count this month's failures
                nxt = periods.get(mrules.period_id(mid, later))
                if nxt is not None:
                    prior = _prior(periods, mid, later, days)
                    self._refigure(messages[i], results[i], nxt, nxt["facts"], prior, periods, cards)
                    dirty_p.add(nxt["_id"])
        if dirty_p:
            await self.store[MERCHANT_PERIODS].bulk_write(
                [ReplaceOne({"_id": k}, periods[k], upsert=True) for k in sorted(dirty_p)], session=session
            )
        if dirty_c:
            await self.store[MERCHANTS].bulk_write(
                [ReplaceOne({"_id": k}, cards[k], upsert=True) for k in sorted(dirty_c)], session=session
            )

    def _refigure(
        self,
        m: Any,
        result: Applied,
        doc: dict[str, Any],
        facts: list[mrules.Fact],
        prior: list[mrules.Fact],
        periods: dict[str, dict[str, Any]],
        cards: dict[str, dict[str, Any]],
    ) -> None:
        """Work out one merchant-month again from its facts (and the month before's), keep it, update the card
        and say what changed: graded, escalated (once per month), class changed."""
        rules = self.city.assessment.merchants
        mid, month = doc["merchant_id"], doc["period"]
        merchant = self.city.merchants[mid]
        was_escalated = bool(doc.get("escalated"))
        chain = self.city.areas.chain(merchant.area)
        street = chain["street"].code if "street" in chain else None
        community = chain["community"].code if "community" in chain else None
        fig = mrules.month_figures(facts, rules, prior)
        periods[doc["_id"]] = {**doc, "facts": facts, "street_code": street, "community_code": community, **fig}
        corr = getattr(m, "correlation_id", None) or f"merchant_check:{getattr(m, 'check_id', '')}"
        result.events.append(_graded(corr, mid, street, month, fig))
        if fig["escalated"] and not was_escalated:
            result.events.append(_escalated(corr, mid, merchant, street, community, month, fig))
        card = cards.get(mid) or {"_id": mid, "months": {}, "grade": merchant.grade}
        previous = card["grade"]
        months = {**card["months"], month: mrules.month_entry(fig)}
        cards[mid] = mrules.card_of(mid, street, months, merchant.grade, rules)
        latest, grade, points = cards[mid]["period"], cards[mid]["grade"], cards[mid]["points"]
        if grade != previous:
            result.events.append(
                MerchantGradeChanged(
                    correlation_id=corr,
                    merchant_id=mid,
                    merchant_name=merchant.name,
                    street_code=street,
                    period=latest or month,
                    previous=previous,
                    grade=grade,
                    points=points or fig["points"],
                )
            )


def _graded(corr: str, mid: str, street: str | None, month: str, fig: dict[str, Any]) -> MerchantGraded:
    """The merchant-month's grading (商户月度评分) as its `MerchantGraded` event."""
    return MerchantGraded(
        correlation_id=corr,
        merchant_id=mid,
        street_code=street,
        period=month,
        points=fig["points"],
        grade=fig["grade"],
        checks=fig["checks"],
        failures=fig["failures"],
        warned=fig["warned"],
        escalated=fig["escalated"],
    )


def _escalated(
    corr: str,
    mid: str,
    merchant: Merchant,
    street: str | None,
    community: str | None,
    month: str,
    fig: dict[str, Any],
) -> MerchantEscalated:
    """The merchant-month's escalation (升级) as its `MerchantEscalated` event, saying why."""
    why = (
        f"repeated failure of {', '.join(fig['repeated_items'])}"
        if fig["repeated_items"]
        else "not put right by its deadline (逾期未整改)"
    )
    return MerchantEscalated(
        correlation_id=corr,
        merchant_id=mid,
        merchant_name=merchant.name,
        street_code=street,
        community_code=community,
        period=month,
        violations=max(fig["failures"], 1),
        reason=f"{merchant.duty_scheme()} {why} in {month}: {', '.join(fig['failed_items'])}".strip(),
    )


def _prior(periods: dict[str, dict[str, Any]], mid: str, month: str, days: int) -> list[mrules.Fact]:
    """The facts of the months before `month` that its repeat window reaches, as `periods` holds them now."""
    return [
        f
        for e in mrules.earlier_months(month, days)
        for f in periods.get(mrules.period_id(mid, e), {}).get("facts", [])
    ]


def _at(fact: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(fact["at"])


async def ensure_indexes(store: Store) -> None:
    """Units' and merchants' figures by period (the rankings read a period's documents)."""
    await store[UNIT_PERIODS].create_index("period")
    await store[MERCHANT_PERIODS].create_index("period")


def closing(doc: dict[str, Any]) -> UpdateOne | None:
    """The update that gives a case's facts stored without `closed_s` when the case ended (None while open), on
    condition that nobody added a fact since they were read (facts are only ever added)."""
    facts = doc.get("facts", [])
    closed_s = facts_document(doc["_id"], facts)[CLOSED_S]
    if closed_s is None:
        return None
    return UpdateOne(
        {"_id": doc["_id"], "facts": {"$size": len(facts)}, CLOSED_S: {"$exists": False}},
        {"$set": {CLOSED_S: closed_s}},
    )


async def close_older_facts(store: Store) -> int:
    """Give `closed_s` to the facts of the ended cases an older build stored without it (else kept for good);
    returns how many. One query reading the collection once (on nx-27017 it also reads the open cases, whose null
    it cannot tell from a missing field)."""

    async def moves() -> AsyncIterator[UpdateOne]:
        async for d in store[CASE_FACTS].find({CLOSED_S: {"$exists": False}}):
            if (move := closing(d)) is not None:
                yield move

    return await update_in_chunks(store[CASE_FACTS], moves())


async def unit_periods(store: Store, period: str) -> list[dict[str, Any]]:
    """Every unit's figures of one period."""
    return [d async for d in store[UNIT_PERIODS].find({"period": period})]


async def unit_periods_by_id(store: Store, ids: list[str]) -> list[dict[str, Any]]:
    """These `unit:period` documents (those that exist)."""
    return [d async for d in store[UNIT_PERIODS].find({"_id": {"$in": ids}})]


async def merchant_periods(store: Store, month: str) -> dict[str, dict[str, Any]]:
    """Every merchant's figures of one month, by merchant."""
    return {d["merchant_id"]: d async for d in store[MERCHANT_PERIODS].find({"period": month})}


async def merchant_period(store: Store, merchant_id: str, month: str) -> dict[str, Any] | None:
    """One merchant's figures of one month."""
    return await store[MERCHANT_PERIODS].find_one({"_id": f"{merchant_id}:{month}"})


async def merchant_card(store: Store, merchant_id: str) -> dict[str, Any] | None:
    """A merchant's points, grade and class as the fold keeps them."""
    return await store[MERCHANTS].find_one({"_id": merchant_id})
