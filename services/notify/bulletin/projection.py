"""The bulletin's projection: what each case or score event adds to the week's pre-aggregated documents. Pure.

Every figure the bulletin shows is a counter or a short list kept up to date as events arrive, in documents
keyed by a natural `_id` (`2026-W47`, `2026-W47:category:0201`, `2026-W47:C-…`), so building a bulletin
reads a few dozen documents whatever the number of cases (docs/decisions/0017-projections-instead-of-queries.md).

A week is the ISO week, in city time, of the event's `occurred_at`. The week a case was opened keeps the
cohort counters (how many of that week's cases are closed by now), so they need the case's own small record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts import cases as c
from contracts.envelope import Event
from contracts.scores import MerchantGraded, UnitScoreUpdated
from services.notify.bulletin.weeks import week_of
from xiuhua.retention import Retained

CASES = "bulletin_cases"  # _id case_id: what later events need (week opened, category, place, unit, status)
WEEKS = "bulletin_weeks"  # _id week: top-level counters
FACETS = "bulletin_facets"  # _id week:facet:key, facet in source, category, grid, community, unit
LISTED = "bulletin_listed"  # _id week:case_id: overdue and escalated cases of the week
RANKINGS = "bulletin_rankings"  # _id week: scoring's unit ranking of the week (score.v1.ranking_published)
MERCHANTS = "bulletin_merchants"  # _id week:merchant_id: merchant grade changes and escalations
COLLECTIONS = (CASES, WEEKS, FACETS, LISTED, RANKINGS, MERCHANTS)
CLOSED_S = "closed_s"  # when a case's record closed or was cancelled, in seconds: what the purge ranges over
# A closed case's record goes when closed cases go (`retention.yaml`); the weeks' counters stay.
RETAINED = (Retained(CASES, CLOSED_S, "closed_cases"),)

FACET_NAMES = ("source", "category", "grid", "community", "unit")
UNKNOWN = "-"


@dataclass
class Writes:
    """Upserts by `_id` accumulated for one batch: `$inc` counters and `$set` fields per document."""

    docs: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add(
        self, coll: str, _id: str, *, inc: dict[str, int] | None = None, set_: dict[str, Any] | None = None
    ) -> None:
        """Merge one change into the document's pending update."""
        doc = self.docs.setdefault((coll, _id), {"$inc": {}, "$set": {}})
        for k, v in (inc or {}).items():
            doc["$inc"][k] = doc["$inc"].get(k, 0) + v
        doc["$set"].update(set_ or {})

    def updates(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(collection, _id, update) with empty operators left out."""
        return [(coll, _id, {op: v for op, v in u.items() if v}) for (coll, _id), u in self.docs.items()]


def _facet(w: Writes, week: str, facet: str, key: str | None, label: str | None, inc: dict[str, int]) -> None:
    key = key or UNKNOWN
    fields: dict[str, Any] = {"week": week, "facet": facet, "key": key}
    if label:  # a later event that does not know the name must not overwrite it
        fields["label"] = label
    w.add(FACETS, f"{week}:{facet}:{key}", inc=inc, set_=fields)


def _week(w: Writes, week: str, **inc: int) -> None:
    w.add(WEEKS, week, inc=inc, set_={"week": week})


def _listed(w: Writes, week: str, case: dict[str, Any] | None, ev: c.UnitCaseEvent, **fields: Any) -> None:
    case = case or {}
    w.add(
        LISTED,
        f"{week}:{ev.case_id}",
        set_={
            "week": week,
            "case_id": ev.case_id,
            "category_code": case.get("category_code"),
            "category_name": case.get("category_name"),
            "street_name": case.get("street_name"),
            "community_name": case.get("community_name"),
            "grid": case.get("grid"),
            "unit_id": ev.unit_id,
            "unit_name": case.get("unit_name") or ev.unit_id,
            **fields,
        },
    )


def _case_opened(ev: c.CaseOpened, case: dict[str, Any] | None, week: str, w: Writes) -> dict[str, Any] | None:
    """The new case's (案件) record, counted in its week and facets; None when the id was opened before.

    A record a later event of the case made first (its opening came after it: to another instance, or again after a
    crash) keeps what that event set; the opening adds what only it knows, and is counted now."""
    if case is not None and case.get("week_opened"):
        return None  # opened once; a second opening of the same id changes nothing
    p = ev.place
    new = {
        "week_opened": week,
        "source": str(ev.source),
        "category_code": ev.category_code,
        "category_name": ev.category_name or ev.category_code,
        "grid": p.grid_code,
        "community_code": p.community_code,
        "community_name": p.community_name,
        "street_name": p.street_name,
        "status": "open",
        "level": 0,
    }
    _week(w, week, opened=1, **({"urgent": 1} if str(ev.urgency) == "urgent" else {}))
    _facet(w, week, "source", str(ev.source), str(ev.source), {"count": 1})
    _facet(w, week, "category", ev.category_code, ev.category_name, {"count": 1})
    _facet(w, week, "grid", p.grid_code, p.grid_code, {"count": 1})
    _facet(w, week, "community", p.community_code, p.community_name, {"count": 1})
    return {**new, **(case or {})}


def _unit_case_event(ev: c.UnitCaseEvent, case: dict[str, Any] | None, week: str, w: Writes) -> dict[str, Any] | None:
    """Add a unit's (承办单位) case event to `w`; returns the case's record after it (None: unchanged)."""
    unit_name = (case or {}).get("unit_name") if (case or {}).get("unit_id") == ev.unit_id else None

    def unit_inc(**inc: int) -> None:
        _facet(w, week, "unit", ev.unit_id, unit_name, inc)

    status = (case or {}).get("status")
    opened_in = (case or {}).get("week_opened")
    if isinstance(ev, c.CaseReturned):
        _week(w, week, returned=1)
        unit_inc(returned=1)
    elif isinstance(ev, c.CaseExtensionApproved):
        _week(w, week, extended=1)
        return {**(case or {}), "due_at": ev.due_at} if case else None
    elif isinstance(ev, c.CaseResolved):
        _week(w, week, resolved=1, resolved_on_time=int(ev.on_time))
        unit_inc(resolved=1, resolved_on_time=int(ev.on_time))
    elif isinstance(ev, c.CaseVerified):
        _week(w, week, verified=1, verify_failed=int(not ev.passed))
        unit_inc(verified=1, rework=int(not ev.passed))
    elif isinstance(ev, c.CaseClosed):
        if ev.closed_by == "cancel":
            return None  # counted by case.cancelled
        _week(w, week, closed=1, closed_on_time=int(ev.on_time))
        unit_inc(closed=1)
        if case is not None and status != "closed":
            if opened_in:
                _week(w, opened_in, cohort_closed=1)
            return {**case, "status": "closed", CLOSED_S: ev.occurred_at.timestamp()}
    elif isinstance(ev, c.CaseReopened):
        _week(w, week, reopened=1)
        if case is not None and status == "closed":
            if opened_in:
                _week(w, opened_in, cohort_closed=-1)
            return {**case, "status": "open", CLOSED_S: None}  # null: out of the purge's range on both stores
    elif isinstance(ev, c.CaseRated):
        _week(w, week, rated=1, **{ev.satisfaction: 1})
    elif isinstance(ev, c.CaseCancelled):
        _week(w, week, cancelled=1)
        if case is not None and status != "cancelled":
            if opened_in:
                _week(w, opened_in, cohort_cancelled=1, **({"cohort_closed": -1} if status == "closed" else {}))
            return {**case, "status": "cancelled", CLOSED_S: ev.occurred_at.timestamp()}
    elif isinstance(ev, c.CaseDeadlineWarning):
        _week(w, week, warned=1)
    elif isinstance(ev, c.CaseOverdue):
        _week(w, week, overdue=1)
        unit_inc(overdue=1)
        _listed(w, week, case, ev, overdue=True, due_at=ev.due_at, overdue_at=ev.occurred_at)
    elif isinstance(ev, c.CaseEscalated):
        _week(w, week, escalated=1)
        unit_inc(escalated=1)
        level = max(ev.level, int((case or {}).get("level", 0)))
        _listed(w, week, case, ev, due_at=ev.due_at, level=level, escalated_at=ev.occurred_at)
        return {**case, "level": level} if case else None
    return None


def apply_case_event(ev: Event, case: dict[str, Any] | None, w: Writes) -> dict[str, Any] | None:
    """Add a case event's effect to `w`; returns the case's record after it (None: unchanged)."""
    week = week_of(ev.occurred_at)
    if isinstance(ev, c.CaseOpened):
        return _case_opened(ev, case, week, w)
    if isinstance(ev, c.CaseMerged):
        _week(w, week, merged=1)
        return None
    if isinstance(ev, c.CaseTransferred):
        _week(w, week, transferred=1)
        return None
    if isinstance(ev, c.CaseDispatched):
        _week(w, week, dispatched=1)
        _facet(w, week, "unit", ev.lead_unit.unit_id, ev.lead_unit.name, {"dispatched": 1})
        return {**(case or {}), "unit_id": ev.lead_unit.unit_id, "unit_name": ev.lead_unit.name, "due_at": ev.due_at}
    if not isinstance(ev, c.UnitCaseEvent):
        return None
    return _unit_case_event(ev, case, week, w)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


# Scoring events that carry nothing the bulletin shows and that it does not count itself: its consumer passes over
# them from their subject, undecoded, with no transaction or ledger entry (`Subscription.skips_type`). Scoring
# publishes a unit's figures on every case event it counts, so these are most of what reaches the consumer.
SHOWS_NOTHING = (UnitScoreUpdated, MerchantGraded)


def shows_nothing(kind: type) -> bool:
    """Whether scoring events of this type leave the bulletin's documents as they are."""
    return issubclass(kind, SHOWS_NOTHING)


def apply_score_event(subject: str, ev: Any, w: Writes) -> bool:
    """Add a scoring event's effect to `w`: a week's unit ranking, merchant grade changes and escalations. Returns
    whether it added anything (an event of a kind the bulletin does not show adds nothing, however often it comes).

    Read by subject and field name (the body may be a contract model or, for a subject this build has no
    model for, a plain dict), so notify keeps working while scoring's contracts grow.
    """
    name = subject.split(".")[2] if subject.count(".") >= 2 else subject
    occurred = _get(ev, "occurred_at")
    if isinstance(occurred, str):
        occurred = datetime.fromisoformat(occurred)
    if name == "ranking_published":
        if _get(ev, "kind") != "unit" or _get(ev, "period_kind") != "week":
            return False
        tables = {role: [_row(r) for r in rows] for role, rows in (_get(ev, "tables") or {}).items()}
        apart = {
            role: [str(_get(r, "name") or _get(r, "id")) for r in rows]
            for role, rows in (_get(ev, "unassessed") or {}).items()
        }
        w.add(
            RANKINGS,
            str(_get(ev, "period")),
            set_={"week": _get(ev, "period"), "tables": tables, "unassessed": apart, "at": occurred},
        )
        return True
    if occurred is None or name not in ("merchant_grade_changed", "merchant_escalated"):
        return False  # unit_updated and merchant_graded carry nothing the bulletin shows that it does not count itself
    week = week_of(occurred)
    merchant_id = str(_get(ev, "merchant_id"))
    fields: dict[str, Any] = {
        "week": week,
        "merchant_id": merchant_id,
        "merchant_name": _get(ev, "merchant_name") or merchant_id,
        "street_code": _get(ev, "street_code"),
        "at": occurred,
    }
    if name == "merchant_grade_changed":
        pending = w.docs.get((MERCHANTS, f"{week}:{merchant_id}"), {}).get("$set", {})
        # The week's change runs from the grade it started with: A→B then B→C shows A→C.
        fields.update(
            previous_grade=pending.get("previous_grade") or _get(ev, "previous"),
            grade=_get(ev, "grade"),
            points=_get(ev, "points"),
        )
    else:
        fields.update(escalated=True, violations=_get(ev, "violations"), reason=_get(ev, "reason") or "")
    w.add(MERCHANTS, f"{week}:{merchant_id}", set_=fields)
    return True


def _row(r: Any) -> dict[str, Any]:
    return {
        "rank": _get(r, "rank"),
        "id": _get(r, "id"),
        "name": _get(r, "name") or _get(r, "id"),
        "score": _get(r, "score"),
        "board": _get(r, "board"),
        "bottom": bool(_get(r, "bottom", False)),
        "tied": bool(_get(r, "tied", False)),
        "figures": dict(_get(r, "figures") or {}),
    }
