"""Unit assessment as a pure fold over case events (考核计数). No I/O.

Each case keeps its facts (one compact record per distinct event id) from its first dispatch on, or from its
opening for a merchant's case (a merchant's facts start there). An opening alone counts nothing, and its two
figures — found by supervisors, urgent — come again on every dispatch of the case, so an ordinary case's opening
leaves no fact: scoring writes a case's facts once fewer. What the case contributes to each
unit and period is a function of those facts alone, recomputed whenever a fact arrives; the store adds the
difference to the unit's period documents. The totals therefore depend only on the set of events seen:
redelivered copies are ignored (same event id) and any arrival order gives the same numbers.

Attribution (which unit, which period):
- Per-dispatch counters (`dispatched`, `acknowledged`, `acknowledged_in_time`, `returned`, `extensions`,
  `reworked`, `rework_repeat`, `overdue`, `escalated`, `reopened`) go to the unit named in the event, in the
  periods of that unit's dispatch of the case (the latest dispatch to it at or before the event; the first
  one if the event is older). An event whose dispatch has not arrived yet waits for it.
- Case outcomes (`due`, `deferred`, `deferred_resolved_on_time`, `resolved`, `resolved_on_time`, `closed`,
  `closed_on_time`, `reworked_cases`, `rated`, `satisfied`, `basic`, `unsatisfied`, `urgent_*`) go to the
  case's responsible unit — the lead unit of its last dispatch round — in the periods the case fell due
  (应结案): the moment its deadline passed or it was closed, whichever came first. A case still inside its
  deadline and open has not fallen due and counts in none of them: it is not a failure yet. That its deadline
  passed is known from the facts alone (a fact at or after the deadline — dispatch's overdue mark is dated
  at the deadline), so a replay gives the same figures. `supervisor_found` (a problem supervisors found) goes
  to the same unit in the periods of that dispatch. A cancelled case (`case.cancelled`, or `case.closed` with
  outcome cancelled) counts in no outcome: not due, not closed, not on time — the unit's rates are as if it
  had never fallen due. Its per-dispatch counters (dispatched, acknowledged ...) stay.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from contracts.cases import (
    CaseAcknowledged,
    CaseCancelled,
    CaseClosed,
    CaseDispatched,
    CaseEscalated,
    CaseEvent,
    CaseExtensionApproved,
    CaseOpened,
    CaseOverdue,
    CaseRated,
    CaseReopened,
    CaseResolved,
    CaseReturned,
    CaseVerified,
)
from services.scoring.periods import CITY_TZ, periods_of
from xiuhua.city.assessment import UNIT_COUNTERS

Fact = dict[str, Any]
Counters = dict[str, int]
# "unit:period" → {"unit_id", "role", "period", "kind", "c": counters}
Contribution = dict[str, dict[str, Any]]

COUNTERS = UNIT_COUNTERS
PERIOD_KINDS = ("week", "month", "quarter", "year")
# Failed verifications of one case from this ordinal on are 'repeated' (Jinhua: three times or more, −0.5 each).
REPEAT_FROM = 3


def doc_id(unit_id: str, period: str) -> str:
    """The natural key of a unit's period document."""
    return f"{unit_id}:{period}"


# The case events that leave a fact (`fact_of`; of the openings, a merchant's only); scoring's consumer skips the
# others by their subject, undecoded.
COUNTED = (
    CaseOpened,
    CaseDispatched,
    CaseAcknowledged,
    CaseReturned,
    CaseExtensionApproved,
    CaseResolved,
    CaseVerified,
    CaseClosed,
    CaseReopened,
    CaseRated,
    CaseCancelled,
    CaseOverdue,
    CaseEscalated,
)


def uncounted(kind: type) -> bool:
    """Whether case events of this type never count for scoring (a warning, a merge, a refused command ...)."""
    return not issubclass(kind, COUNTED)


def fact_of(ev: CaseEvent) -> Fact | None:
    """The compact record of an event that scoring needs, or None if it does not count."""
    base: Fact = {"id": ev.event_id, "at": ev.occurred_at.isoformat()}
    match ev:
        case CaseOpened():
            if not ev.merchant_id:
                return None  # what it says, every dispatch says again (see the module's docstring)
            # A merchant's case: if it is not put right in time, the merchant is escalated.
            return {
                **base,
                "t": "opened",
                "sf": ev.supervisor_found,
                "urgent": ev.urgency == "urgent",
                "merchant": ev.merchant_id,
                "src": str(ev.source),
                "cat": ev.category_code,
            }
        case CaseDispatched():
            return {
                **base,
                "t": "dispatched",
                "unit": ev.lead_unit.unit_id,
                "role": str(ev.lead_unit.role),
                "round": ev.dispatch_round,
                "urgent": ev.urgency == "urgent",
                "sf": bool(getattr(ev, "supervisor_found", False)),
                "due": ev.due_at.isoformat(),
            }
        case CaseAcknowledged():
            return {**base, "t": "acknowledged", "unit": ev.unit_id, "ok": ev.in_time}
        case CaseReturned():
            return {**base, "t": "returned", "unit": ev.unit_id}
        case CaseExtensionApproved():
            return {**base, "t": "extension", "unit": ev.unit_id, "due": ev.due_at.isoformat()}
        case CaseResolved():
            return {**base, "t": "resolved", "unit": ev.unit_id, "ok": ev.on_time}
        case CaseVerified():
            return {**base, "t": "verified", "unit": ev.unit_id, "ok": ev.passed}
        case CaseClosed():
            if ev.outcome == "cancelled" or ev.closed_by == "cancel":
                # 作废 ends the case without handling it: no closure, as `case.cancelled` itself says.
                return {**base, "t": "cancelled", "unit": ev.unit_id}
            return {**base, "t": "closed", "unit": ev.unit_id, "ok": ev.on_time}
        case CaseReopened():
            reopened: Fact = {**base, "t": "reopened", "unit": ev.unit_id}
            if ev.due_at is not None:
                reopened["due"] = ev.due_at.isoformat()
            return reopened
        case CaseRated():
            return {**base, "t": "rated", "unit": ev.unit_id, "sat": ev.satisfaction}
        case CaseCancelled():
            return {**base, "t": "cancelled", "unit": ev.unit_id}
        case CaseOverdue():
            return {**base, "t": "overdue", "unit": ev.unit_id}
        case CaseEscalated():
            return {**base, "t": "escalated", "unit": ev.unit_id}
    return None


def add_fact(facts: list[Fact], fact: Fact) -> list[Fact] | None:
    """The facts with one more, kept sorted by (time, event id); None if the event was seen already."""
    if any(f["id"] == fact["id"] for f in facts):
        return None
    return sorted([*facts, fact], key=_order)


def _order(f: Fact) -> tuple[datetime, str]:
    return _parse(f["at"]), f["id"]


@lru_cache(maxsize=65536)
def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at)


@lru_cache(maxsize=65536)
def _periods_at(at: str) -> dict[str, str]:
    # Every fact of a case is spread again whenever one arrives: the calendar arithmetic is worth keeping.
    return periods_of(_parse(at), CITY_TZ)


def contribution(facts: Iterable[Fact]) -> Contribution:
    """What one case adds to each unit's period documents, from its facts alone (order-insensitive)."""
    ordered = sorted(facts, key=_order)
    dispatches = [f for f in ordered if f["t"] == "dispatched"]
    if not dispatches:
        return {}

    # Counters per dispatch first, spread over the dispatch's four periods at the end.
    per_dispatch = _dispatch_counters(ordered, dispatches)

    # Case outcomes, to the responsible unit (lead of the last dispatch round), once the case has fallen due.
    last = max(dispatches, key=lambda d: (d["round"], *_order(d)))
    if any(f["t"] == "cancelled" for f in ordered):
        return _spread(dispatches, per_dispatch)
    opening = [f for f in ordered if f["t"] in {"opened", "dispatched"}]
    _add(per_dispatch, last, "supervisor_found", int(any(f.get("sf") for f in opening)))
    due_at = fell_due_at(ordered, last)
    if due_at is None:
        return _spread(dispatches, per_dispatch)
    # The outcomes fill a bucket of their own, dated when the case fell due (not when it was dispatched).
    outcome: Fact = {"id": "\x00due", "unit": last["unit"], "role": last["role"], "at": due_at}
    _add_outcomes(per_dispatch, ordered, last, outcome, urgent=any(f.get("urgent") for f in opening))
    return _spread([*dispatches, outcome], per_dispatch)


def _add(counters: dict[str, dict[str, int]], bucket: Fact, counter: str, n: int = 1) -> None:
    """Adds n to one counter of a dispatch's (or the outcome bucket's) counters; a zero adds no key."""
    if n:
        c = counters.setdefault(bucket["id"], {})
        c[counter] = c.get(counter, 0) + n


def _dispatch_of(dispatches: list[Fact], unit: str, at: str) -> Fact | None:
    """The unit's dispatch (派遣) a fact at `at` belongs to: its latest one by then, else its first; None if none."""
    mine = [d for d in dispatches if d["unit"] == unit]
    if not mine:
        return None
    before = [d for d in mine if _order(d) <= (_parse(at), "\uffff")]
    return before[-1] if before else mine[0]


def _dispatch_counters(ordered: list[Fact], dispatches: list[Fact]) -> dict[str, dict[str, int]]:
    """The per-dispatch counters (签收, 退回, 延期, 返工, 超期, 升级, 重开), each to the unit named in its event."""
    per_dispatch: dict[str, dict[str, int]] = {}
    for d in dispatches:
        _add(per_dispatch, d, "dispatched")
    failed_by_unit: dict[str, int] = {}
    overdue_seen: set[tuple[str, str]] = set()
    ack_seen: set[tuple[str, str]] = set()
    escalated_seen: set[tuple[str, str]] = set()
    for f in ordered:
        t = f["t"]
        if t in {"opened", "dispatched", "cancelled", "rated", "resolved", "closed"}:
            continue
        d = _dispatch_of(dispatches, f["unit"], f["at"])
        if d is None:
            continue  # its dispatch has not arrived yet: counted when it does
        if t == "acknowledged" and (f["unit"], d["id"]) not in ack_seen:
            # The first acknowledgement of a dispatch counts (a reopened case may be signed for again).
            ack_seen.add((f["unit"], d["id"]))
            _add(per_dispatch, d, "acknowledged")
            _add(per_dispatch, d, "acknowledged_in_time", int(f["ok"]))
        elif t == "returned":
            _add(per_dispatch, d, "returned")
        elif t == "extension":
            _add(per_dispatch, d, "extensions")
        elif t == "verified" and not f["ok"]:
            n = failed_by_unit[f["unit"]] = failed_by_unit.get(f["unit"], 0) + 1
            _add(per_dispatch, d, "reworked")
            _add(per_dispatch, d, "rework_repeat", int(n >= REPEAT_FROM))
        elif t == "overdue" and (f["unit"], d["id"]) not in overdue_seen:
            overdue_seen.add((f["unit"], d["id"]))
            _add(per_dispatch, d, "overdue")
        elif t == "escalated" and (f["unit"], d["id"]) not in escalated_seen:
            escalated_seen.add((f["unit"], d["id"]))
            _add(per_dispatch, d, "escalated")
        elif t == "reopened":
            _add(per_dispatch, d, "reopened")
    return per_dispatch


def _add_outcomes(
    counters: dict[str, dict[str, int]], ordered: list[Fact], last: Fact, outcome: Fact, *, urgent: bool
) -> None:
    """Adds a fallen-due case's outcome counters (结案, 按期, 缓办, 满意度) to its outcome bucket."""
    unit = last["unit"]
    after_last = _from(ordered, last)
    resolves = [f for f in after_last if f["t"] == "resolved" and f["unit"] == unit]
    reopen_at = max((_order(f) for f in ordered if f["t"] == "reopened"), default=None)
    closes = [f for f in ordered if f["t"] == "closed" and (reopen_at is None or _order(f) > reopen_at)]
    closed = closes[-1] if closes else None
    extended = any(f["t"] == "extension" and f["unit"] == unit for f in after_last)
    ratings = [f for f in ordered if f["t"] == "rated"]

    _add(counters, outcome, "due")
    deferred = extended and closed is None
    _add(counters, outcome, "deferred", int(deferred))
    # A deferred case leaves the on-time numerator too when the city subtracts 缓办 from the denominator.
    _add(counters, outcome, "deferred_resolved_on_time", int(deferred and bool(resolves) and resolves[-1]["ok"]))
    _add(counters, outcome, "resolved", int(bool(resolves)))
    _add(counters, outcome, "resolved_on_time", int(bool(resolves) and resolves[-1]["ok"]))
    _add(counters, outcome, "closed", int(closed is not None))
    _add(counters, outcome, "closed_on_time", int(closed is not None and closed["ok"]))
    _add(counters, outcome, "reworked_cases", int(any(f["t"] == "verified" and not f["ok"] for f in ordered)))
    if ratings:
        _add(counters, outcome, "rated")
        _add(counters, outcome, ratings[-1]["sat"])
    if urgent:
        _add(counters, outcome, "urgent_due")
        _add(counters, outcome, "urgent_closed", int(closed is not None))
        _add(counters, outcome, "urgent_closed_on_time", int(closed is not None and closed["ok"]))


def fell_due_at(ordered: list[Fact], last: Fact) -> str | None:
    """When the case fell due (应结案), from its facts: its first close after the last dispatch or the first of its
    deadlines (the dispatch's, an extension's, a reopen's) that a later fact shows has passed, whichever is
    earlier; None while it is open and inside its deadline. A dispatch fact without a deadline (stored by an
    older build) fell due when it was made."""
    if "due" not in last:
        return str(last["at"])
    after = _from(ordered, last)
    latest = _parse(ordered[-1]["at"])
    deadlines = [last["due"], *(f["due"] for f in after if f["t"] in {"extension", "reopened"} and "due" in f)]
    moments = [_parse(d) for d in deadlines if _parse(d) <= latest]
    moments += [_parse(f["at"]) for f in after if f["t"] == "closed"]
    return min(moments).isoformat() if moments else None


def ended_at(facts: Iterable[Fact]) -> str | None:
    """When the case ended (closed or cancelled, 已结案/已作废) if it has not been reopened since; None while open.
    From its facts alone, so a replay says the same."""
    ends = [f for f in sorted(facts, key=_order) if f["t"] in {"closed", "cancelled", "reopened"}]
    return str(ends[-1]["at"]) if ends and ends[-1]["t"] != "reopened" else None


def _from(ordered: list[Fact], first: Fact) -> list[Fact]:
    """The facts from `first` on (they are sorted)."""
    start = _order(first)
    return [f for f in ordered if _order(f) >= start]


def _spread(buckets: list[Fact], per_bucket: dict[str, dict[str, int]]) -> Contribution:
    """Each bucket's counters (a dispatch's, the case outcome's) onto its unit's week, month, quarter and year."""
    out: Contribution = {}
    for d in buckets:
        counters = per_bucket.get(d["id"])
        if not counters:
            continue
        for kind, period in _periods_at(d["at"]).items():
            entry = out.setdefault(
                doc_id(d["unit"], period),
                {"unit_id": d["unit"], "role": d["role"], "period": period, "kind": kind, "c": {}},
            )
            for counter, n in counters.items():
                entry["c"][counter] = entry["c"].get(counter, 0) + n
    return out


def difference(old: Contribution, new: Contribution) -> Contribution:
    """new − old per document and counter; documents with no change are left out."""
    out: Contribution = {}
    for key in old.keys() | new.keys():
        meta = new.get(key) or old[key]
        before, after = old.get(key, {}).get("c", {}), new.get(key, {}).get("c", {})
        delta = {c: after.get(c, 0) - before.get(c, 0) for c in before.keys() | after.keys()}
        delta = {c: n for c, n in delta.items() if n}
        if delta:
            out[key] = {**{k: v for k, v in meta.items() if k != "c"}, "c": delta}
    return out


class UnitFold:
    """The whole fold in memory: what the store holds, computed from a sequence of events (tests, rebuild)."""

    def __init__(self) -> None:
        self.cases: dict[str, list[Fact]] = {}
        self.docs: dict[str, dict[str, Any]] = {}

    def apply(self, ev: CaseEvent) -> Contribution:
        """Apply one event; returns the change it made to unit documents."""
        fact = fact_of(ev)
        if fact is None:
            return {}
        old = self.cases.get(ev.case_id, [])
        facts = add_fact(old, fact)
        if facts is None:
            return {}
        self.cases[ev.case_id] = facts
        delta = difference(contribution(old), contribution(facts))
        apply_delta(self.docs, delta)
        return delta


def apply_delta(docs: dict[str, dict[str, Any]], delta: Contribution) -> None:
    """Add a difference to documents held in memory; all-zero documents disappear (as in the store)."""
    for key, change in delta.items():
        doc = docs.setdefault(key, {k: v for k, v in change.items() if k != "c"} | {"c": {}})
        for c, n in change["c"].items():
            doc["c"][c] = doc["c"].get(c, 0) + n
            if not doc["c"][c]:
                del doc["c"][c]
        if not doc["c"]:
            del docs[key]
