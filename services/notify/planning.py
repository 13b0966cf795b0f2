"""Alert planning (告警规划): which deliveries an event calls for, with the message each carries. No I/O: the
handlers read what planning needs and write what it plans.

A delivery's `_id` is its notification id (kind, case, level, contact, channel): one alert per case, kind, level,
recipient and channel, whatever is redelivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from contracts.cases import (
    CaseCancelled,
    CaseClosed,
    CaseDeadlineWarning,
    CaseDispatched,
    CaseEscalated,
    CaseOpened,
    CaseOverdue,
    CaseReopened,
)
from contracts.values import Place, ReportSource, Urgency
from services.notify import messages
from services.notify.recipients import Delivery, deliveries_for
from xiuhua.city import City
from xiuhua.city.place_names import describe, map_link
from xiuhua.clock import Clock
from xiuhua.consumer import APPLIED, naming

WARNINGS = (CaseDeadlineWarning, CaseOverdue, CaseEscalated)
ALERTING = (CaseOpened, CaseDispatched, *WARNINGS)  # the case events planning may act on
# The case events that end a case or reopen it: notify's view of the case goes when closed cases go.
ENDINGS = (CaseClosed, CaseCancelled, CaseReopened)
# What later warnings read of a case's dispatch besides the bulletin's record (unit, category): kept in that record
# by the case consumer (`services.notify.handlers`), and before it in a view apart (`store.CASES`).
VIEW = ("cooperating", "street_code", "urgency", "address", "map")
_WARNING_KINDS = {CaseDeadlineWarning: "deadline_warning", CaseOverdue: "overdue", CaseEscalated: "escalation"}


@dataclass
class Plan:
    """What a batch of events plans, written at the end of the batch: notify's case views and new deliveries."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)  # by notification id, first plan wins
    # case id → when it closed or was cancelled, in seconds; None once reopened (the last event of the batch wins)
    ended: dict[str, float | None] = field(default_factory=dict)


def skips_type(kind: type) -> bool:
    """Case event types planning never acts on, known from the subject before decoding: all but openings,
    dispatches, the deadline events and those that end or reopen a case."""
    return not issubclass(kind, (*ALERTING, *ENDINGS))


def ignores(ev: Any) -> bool:
    """Case events planning never acts on, by what they are: everything but an urgent sensor case's opening, a duty
    check's case opening, a dispatch, the deadline events and those that end or reopen a case."""
    if isinstance(ev, CaseOpened):  # urgent sensor cases alert; a merchant is told of its failed duty
        return not (
            (ev.source == ReportSource.sensor and ev.urgency == Urgency.urgent)
            or (ev.source == ReportSource.merchant_check and bool(ev.merchant_id))
        )
    return not isinstance(ev, (*ALERTING, *ENDINGS))


def view_of(planned: dict[str, Any]) -> dict[str, Any]:
    """The fields of a dispatch's view of its case (案件视图) that the case's record keeps for later warnings."""
    return {k: planned[k] for k in VIEW if k in planned}


def holds_view(record: dict[str, Any] | None) -> bool:
    """Whether a case's record holds planning's view (a dispatch folded by the one case consumer), or the view is
    apart, an older build's (or there is none: never dispatched)."""
    return record is not None and "cooperating" in record


def views_apart(events: list[Any], records: dict[str, dict[str, Any]]) -> list[str]:
    """The cases whose warnings need the view an older build kept apart (`alert_cases`): their record holds none."""
    return sorted({ev.case_id for ev in events if isinstance(ev, WARNINGS) and not holds_view(records.get(ev.case_id))})


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class Planner:
    """Plans the alerts of events for one city."""

    def __init__(self, city: City, tz: ZoneInfo, clock: Clock) -> None:
        self.city = city
        self.tz = tz
        self.clock = clock

    def case_event(self, plan: Plan, ev: Any, known: dict[str, dict[str, Any]]) -> None:
        """A case event that alerts: dispatched (new case), deadline warning, overdue, escalated, urgent sensor case,
        a duty check's failed item; `known` is notify's view of the cases (a dispatch updates it). A case's end or
        reopening only marks that view for the purge."""
        if isinstance(ev, ENDINGS):
            plan.ended[ev.case_id] = None if isinstance(ev, CaseReopened) else ev.occurred_at.timestamp()
        elif isinstance(ev, CaseOpened):
            if ev.source == ReportSource.sensor and ev.urgency == Urgency.urgent:
                facts = {
                    "case_id": ev.case_id,
                    "category": ev.category_name or ev.category_code,
                    **self._where(ev.place),
                    "street_code": ev.street_code,
                    "detail": ev.description,
                }
                planned = deliveries_for(
                    self.city, "sensor_emergency", case_id=ev.case_id, street_code=ev.street_code, urgent=True
                )
                self._plan(plan, planned, "sensor_emergency", facts, 0, ev.correlation_id, ev.case_id)
            elif self._first_failure(ev):
                self._merchant_notice(plan, ev)
        elif isinstance(ev, CaseDispatched):
            self._dispatched(plan, ev, known)
        elif isinstance(ev, WARNINGS):
            self._warning(plan, ev, known.get(ev.case_id, {}))

    def _dispatched(self, plan: Plan, ev: CaseDispatched, known: dict[str, dict[str, Any]]) -> None:
        case = {
            "_id": ev.case_id,
            "lead": ev.lead_unit.unit_id,
            "lead_name": ev.lead_unit.name,
            "cooperating": [u.unit_id for u in ev.cooperating_units],
            "street_code": ev.street_code,
            "category_code": ev.category_code,
            "urgency": str(ev.urgency),
            **self._where(ev.place),
            APPLIED: naming(known.get(ev.case_id), ev.event_id),
        }
        plan.cases[ev.case_id] = known[ev.case_id] = case
        facts = {
            "case_id": ev.case_id,
            "category": self._category(ev.category_code),
            "category_code": ev.category_code,
            "unit": ev.lead_unit.name,
            "due_at": ev.due_at,
            "rule_id": ev.rule_id,
            "street_code": ev.street_code,
            **self._where(ev.place),
        }
        level = ev.dispatch_round - 1
        planned = deliveries_for(
            self.city,
            "new_case",
            case_id=ev.case_id,
            level=level,
            lead=ev.lead_unit,
            cooperating=ev.cooperating_units,
            street_code=ev.street_code,
            urgent=ev.urgency == Urgency.urgent,
        )
        self._plan(plan, planned, "new_case", facts, level, ev.correlation_id, ev.case_id)

    def _warning(self, plan: Plan, ev: CaseDeadlineWarning | CaseOverdue | CaseEscalated, case: dict[str, Any]) -> None:
        kind = _WARNING_KINDS[type(ev)]
        level = ev.level if isinstance(ev, CaseEscalated) else 0
        unit = self.city.units.get(ev.unit_id)
        facts = {
            "case_id": ev.case_id,
            "category": self._category(case.get("category_code")),
            "unit": unit.name if unit else ev.unit_id,
            "due_at": ev.due_at,
            "street_code": ev.street_code,
            **{k: str(case[k]) for k in ("address", "map") if case.get(k)},
        }
        planned = deliveries_for(
            self.city,
            kind,
            case_id=ev.case_id,
            level=level,
            lead=ev.unit_id,
            cooperating=case.get("cooperating", []),
            street_code=ev.street_code or case.get("street_code"),
            urgent=case.get("urgency") == "urgent",
        )
        self._plan(plan, planned, kind, facts, level, ev.correlation_id, ev.case_id)

    def score_event(self, plan: Plan, subject: str, ev: Any) -> None:
        """A scoring event that alerts: a unit ranking's black list (bottom_ranking), a merchant's escalation."""
        if subject.startswith("score.v1.ranking_published"):
            self._ranking(plan, ev)
        elif subject.startswith("score.v1.merchant_escalated"):
            self._merchant(plan, ev)

    def _ranking(self, plan: Plan, ev: Any) -> None:
        if _get(ev, "kind", "unit") != "unit":
            return  # merchant rankings reach merchants through the street, not unit contacts
        period = _get(ev, "period", "")
        for rows in (_get(ev, "tables") or {}).values():
            for row in rows:
                if _get(row, "board") != "black" and not _get(row, "bottom", False):
                    continue
                unit_id = _get(row, "id")
                unit = self.city.units.get(unit_id)
                facts = {"unit": unit.name if unit else unit_id, "period": period, "rank": _get(row, "rank")}
                planned = deliveries_for(self.city, "bottom_ranking", lead=unit_id, key=f"{period}:{unit_id}")
                self._plan(plan, planned, "bottom_ranking", facts, 0, _get(ev, "correlation_id", ""), None)

    def _first_failure(self, ev: CaseOpened) -> bool:
        """A duty check's failed item (not the enforcement case a repeated failure opens): the merchant is told."""
        return (
            ev.source == ReportSource.merchant_check
            and ev.merchant_id in self.city.merchants
            and ev.category_code != self.city.routing.merchant_category
        )

    def _merchant_notice(self, plan: Plan, ev: CaseOpened) -> None:
        """批评教育: tell the merchant what failed and that the community will come back; a repeat goes further."""
        shop = self.city.merchants[str(ev.merchant_id)]
        facts = {
            "case_id": ev.case_id,
            "merchant": shop.name,
            "category": self._category(ev.category_code),
            **self._where(ev.place),
            "detail": "请在社区规定的时限内整改；同一事项再次未落实或逾期未整改，将移交综合执法队依法处理。",
        }
        planned = deliveries_for(
            self.city, "merchant_notice", case_id=ev.case_id, merchant=shop.id, street_code=ev.street_code
        )
        self._plan(plan, planned, "merchant_notice", facts, 0, ev.correlation_id, ev.case_id)

    def _merchant(self, plan: Plan, ev: Any) -> None:
        street = _get(ev, "street_code")
        enforcement = [u.id for u in self.city.units_with_role("enforcement") if street and street in u.areas]
        merchant_id, period = _get(ev, "merchant_id", ""), _get(ev, "period", "")
        facts = {
            "merchant": _get(ev, "merchant_name") or merchant_id,
            "period": period,
            "case_id": _get(ev, "case_id"),
            "street_code": street,
            "detail": _get(ev, "reason") or "",
        }
        case_id = _get(ev, "case_id")
        planned = deliveries_for(
            self.city,
            "merchant_escalation",
            case_id=case_id,
            lead=enforcement[0] if enforcement else None,
            street_code=street,
            key=f"{merchant_id}:{period}",
        )
        self._plan(plan, planned, "merchant_escalation", facts, 0, _get(ev, "correlation_id", ""), case_id)

    def delivery_failed(self, plan: Plan, doc: dict[str, Any], error: str) -> None:
        """A delivery given up: tell the people who watch deliveries, on their own channels."""
        facts = {
            "case_id": doc.get("case_id"),
            "unit": doc["unit_id"],
            "detail": f"{doc['kind']} → {doc['contact_id']} ({doc['channel']}) 投递失败: {error}",
        }
        planned = deliveries_for(
            self.city, "delivery_failed", case_id=doc.get("case_id"), lead=doc["unit_id"], key=doc["_id"]
        )
        self._plan(plan, planned, "delivery_failed", facts, 0, doc.get("correlation_id", ""), doc.get("case_id"))

    def _where(self, place: Place | None) -> dict[str, str]:
        """The place as people say it (street, community, grid name, nearest landmark) and a map link."""
        if place is None:
            return {}
        out = {"address": describe(place, self.city)}
        link = map_link(place)
        return out | ({"map": link} if link else {})

    def _category(self, code: str | None) -> str:
        cat = self.city.category(code) if code else None
        return f"{cat.name_zh}（{code}）" if cat else (code or "")

    def _plan(
        self,
        plan: Plan,
        planned: list[Delivery],
        kind: str,
        facts: dict[str, Any],
        level: int,
        correlation_id: str,
        case_id: str | None,
    ) -> None:
        now = self.clock.now()
        for d in planned:
            if d.notification_id in plan.deliveries:
                continue  # one alert per case, kind, level, recipient and channel, whatever is redelivered
            message = messages.build(kind, facts, urgent=d.urgent, level=level, tz=self.tz)
            plan.deliveries[d.notification_id] = {
                "_id": d.notification_id,
                "kind": kind,
                "level": level,
                "case_id": case_id,
                "unit_id": d.unit_id,
                "contact_id": d.contact_id,
                "channel": d.channel,
                "address": d.address,
                "urgent": d.urgent,
                "status": "pending",
                "attempts": 0,
                "next_at": now,
                "created_at": now,
                "correlation_id": correlation_id,
                "message": message,
                "history": [],
                "v": 0,
            }
