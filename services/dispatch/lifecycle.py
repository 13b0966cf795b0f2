"""The case state machine (案件生命周期): states × commands → new case + events, or a rejection. Pure.

    dispatched ──acknowledge──▶ acknowledged ──request_extension──▶ extension_requested
        │  ▲                        │   ▲                                │
        │  └──return (re-route)─────┤   └──────approve_extension─────────┤
        │                           └──resolve──▶ resolved ◀──resolve────┘
        │                                          │  │
        │                       verify(fail) 返工 ◀─┘  └─ verify(pass) / close ──▶ closed ──rate──▶ closed
        │                        → acknowledged                                    │
        └───────────── cancel (any open state) ──▶ cancelled          reopen ──────┘──▶ dispatched

    dispatched / acknowledged with the command centre (manual triage, low confidence, max returns)
        ──assign (人工派遣: unit, cooperating units, category)──▶ dispatched to that unit (rule `manual`)

Actor rules: acknowledge, return, request_extension and resolve only from the case's lead unit;
approve_extension, verify, close, reopen, cancel and assign only from role `command_centre` (an inspector verifying for
the centre sends with the centre's unit and role and their own name); rate from `hotline` or `command_centre`.
Checks run in that order: unknown case, then actor, then state, then (assign) the units and category named.

A cancelled case (作废) ends visibly: `case.closed` with outcome `cancelled` and `closed_by` cancel, then
`case.cancelled` with the reason — in that order, so a consumer that keeps the last status it saw ends at
cancelled, and one that listens only to `case.closed` still learns the case is over. Scoring and the bulletin
count it in no closure and no on-time figure (as if it had never fallen due).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from contracts import commands as cmd
from contracts.cases import (
    CaseAcknowledged,
    CaseCancelled,
    CaseClosed,
    CaseCommandRejected,
    CaseDispatched,
    CaseEvent,
    CaseExtensionApproved,
    CaseExtensionRequested,
    CaseOpened,
    CaseRated,
    CaseReopened,
    CaseResolved,
    CaseReturned,
    CaseVerified,
)
from contracts.values import Urgency
from services.dispatch import routing
from services.dispatch.case import OPEN_STATES, RECENT_COMMANDS, Case, State
from services.dispatch.timers import reschedule
from xiuhua.city import City
from xiuhua.city.business_calendar import BusinessCalendar

LEAD_ONLY = frozenset({"acknowledge", "return", "request_extension", "resolve"})
CENTRE_ONLY = frozenset({"approve_extension", "verify", "close", "reopen", "cancel", "assign"})
RATERS = frozenset({"hotline", "command_centre"})

ALLOWED: dict[str, frozenset[State]] = {
    "acknowledge": frozenset({State.dispatched}),
    "return": frozenset({State.dispatched, State.acknowledged}),
    "request_extension": frozenset({State.acknowledged}),
    "approve_extension": frozenset({State.extension_requested}),
    "resolve": frozenset({State.acknowledged, State.extension_requested}),
    "verify": frozenset({State.resolved}),
    "close": frozenset({State.resolved}),
    "reopen": frozenset({State.closed}),
    "rate": frozenset({State.closed}),
    "cancel": OPEN_STATES,
    # Only while the command centre holds the case (checked in `_check_assign`); once a unit has it, the unit
    # returns it (退单) and routing or, after max_returns, the centre takes it again.
    "assign": frozenset({State.dispatched, State.acknowledged}),
}
"""In which states each command applies; anything else is `wrong_state`."""


@dataclass(frozen=True)
class Context:
    """What a decision may look at besides the case and the command: the time and the city's data."""

    now: datetime
    city: City
    calendar: BusinessCalendar


@dataclass
class Applied:
    """A command that applies: the case after it and the events to publish."""

    case: Case
    events: list[CaseEvent] = field(default_factory=list)


@dataclass
class Rejected:
    """A command that does not apply, with a machine-readable reason and a sentence."""

    reason: str
    detail: str


def reject_event(
    command_id: str,
    action: str,
    case_id: str,
    rejection: Rejected,
    case: Case | None,
    now: datetime,
    correlation_id: str = "",
) -> CaseCommandRejected:
    """The `case.v1.command_rejected` event of a rejection."""
    return CaseCommandRejected(
        occurred_at=now,
        correlation_id=case.correlation_id if case else correlation_id or command_id,
        case_id=case_id,
        street_code=case.street_code if case else None,
        command_id=command_id,
        action=action,
        reason=rejection.reason,
        detail=rejection.detail,
        state=case.state.value if case else None,
    )


def _deadline(ctx: Context, start: datetime, limit: str) -> datetime:
    return ctx.calendar.due(start, limit)


def open_case(ev: CaseOpened, ctx: Context) -> tuple[Case, CaseDispatched]:
    """A new case: route it, set its deadline and its acknowledgement limit, and say so."""
    facts = routing.CaseFacts(ev.category_code, ev.place, ev.source, ev.urgency, ctx.now, ev.category_confidence)
    decision = routing.route(facts, ctx.city)
    category = ctx.city.category(ev.category_code)
    limit = routing.time_limit_for(category, ev.urgency, ctx.city)
    case = Case(
        case_id=ev.case_id,
        state=State.dispatched,
        correlation_id=ev.correlation_id,
        street_code=ev.street_code,
        category_code=ev.category_code,
        place=ev.place,
        source=ev.source,
        urgency=ev.urgency,
        confidence=ev.category_confidence,
        supervisor_found=ev.supervisor_found,
        merchant_id=ev.merchant_id,
        lead_unit=decision.lead,
        cooperating_units=decision.cooperating,
        rule_id=decision.rule_id,
        time_limit=limit,
        dispatched_at=ctx.now,
        started_at=ctx.now,
        due_at=_deadline(ctx, ctx.now, limit),
        ack_due_at=_deadline(ctx, ctx.now, routing.acknowledge_limit(ev.urgency, ctx.city)),
    )
    case = reschedule(case, ctx.calendar, ctx.city.calendar)
    return case, _dispatched(case, ctx)


def _dispatched(case: Case, ctx: Context, c: cmd.CaseCommand | None = None) -> CaseDispatched:
    manual = isinstance(c, cmd.Assign)
    return CaseDispatched(
        occurred_at=ctx.now,
        correlation_id=case.correlation_id,
        case_id=case.case_id,
        street_code=case.street_code,
        category_code=case.category_code,
        lead_unit=case.lead_unit,
        cooperating_units=case.cooperating_units,
        rule_id=case.rule_id,
        due_at=case.due_at,
        urgency=case.urgency,
        time_limit=case.time_limit,
        due_at_estimated=ctx.calendar.estimated(ctx.now, case.due_at, case.time_limit),
        place=case.place,
        dispatch_round=case.dispatch_round,
        source=case.source,
        supervisor_found=case.supervisor_found,
        returned_by=case.returned_by,
        command_id=c.command_id if c else None,
        actor=c.actor.model_dump(mode="json") if manual and c else None,
        reason=(c.reason or None) if isinstance(c, cmd.Assign) else None,
    )


def check_actor(case: Case, c: cmd.CaseCommand) -> Rejected | None:
    """Who may send the command: the case's lead unit, the command centre, or the hotline."""
    if c.action in LEAD_ONLY and c.actor.unit_id != case.lead_unit.unit_id:
        return Rejected(
            "wrong_unit", f"{c.action} must come from the lead unit {case.lead_unit.unit_id}, not {c.actor.unit_id}"
        )
    if c.action in CENTRE_ONLY and c.actor.role != "command_centre":
        return Rejected("wrong_role", f"{c.action} is for the command centre, not role {c.actor.role}")
    if c.action == "rate" and c.actor.role not in RATERS:
        return Rejected("wrong_role", f"rate is for the hotline or the command centre, not role {c.actor.role}")
    return None


def decide(case: Case, c: cmd.CaseCommand, ctx: Context) -> Applied | Rejected:
    """Apply one command to a case: the new case (version + 1) and its events, or why not."""
    if (bad := check_actor(case, c)) is not None:
        return bad
    if case.state not in ALLOWED[c.action]:
        return Rejected("wrong_state", f"a case that is {case.state.value} cannot take {c.action}")
    if c.action == "rate" and case.rating is not None:
        return Rejected("wrong_state", f"the case was rated already ({case.rating})")
    if c.action == "return" and case.lead_unit.role == "command_centre":
        return Rejected("wrong_state", "the command centre assigns by hand; it cannot return a case")
    if isinstance(c, cmd.Assign) and (bad := _check_assign(case, c, ctx.city)) is not None:
        return bad
    step = _STEPS[c.action]
    new, events = step(case, c, ctx)
    new = new.model_copy(
        update={
            "version": case.version + 1,
            "command_ids": [*case.command_ids, c.command_id][-RECENT_COMMANDS:],
        }
    )
    return Applied(reschedule(new, ctx.calendar, ctx.city.calendar), events)


def _unit_fields(case: Case, c: cmd.CaseCommand, now: datetime) -> dict[str, Any]:
    return {
        "occurred_at": now,
        "correlation_id": case.correlation_id,
        "case_id": case.case_id,
        "street_code": case.street_code,
        "unit_id": case.lead_unit.unit_id,
        "actor": c.actor.model_dump(mode="json"),
        "command_id": c.command_id,
        "version": case.version + 1,
        "supervisor_found": case.supervisor_found,
    }


def _acknowledge(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    new = case.model_copy(update={"state": State.acknowledged, "acknowledged_at": ctx.now})
    return new, [CaseAcknowledged(**_unit_fields(case, c, ctx.now), in_time=ctx.now <= case.ack_due_at)]


def _return(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    assert isinstance(c, cmd.Return)
    returns = case.returns + 1
    returned_by = [*case.returned_by, case.lead_unit.unit_id]
    returned = CaseReturned(**_unit_fields(case, c, ctx.now), reason=c.reason, returns=returns)
    if returns >= ctx.city.routing.max_returns:
        decision = routing.Decision(
            routing.MAX_RETURNS,
            routing.command_centre(ctx.city),
            [],
            [f"returned {returns} times: the command centre assigns by hand"],
        )
    else:
        facts = routing.CaseFacts(case.category_code, case.place, case.source, case.urgency, ctx.now, case.confidence)
        decision = routing.route(facts, ctx.city, exclude=set(returned_by))
    new = case.model_copy(
        update={
            "state": State.dispatched,
            "returns": returns,
            "returned_by": returned_by,
            "lead_unit": decision.lead,
            "cooperating_units": decision.cooperating,
            "rule_id": decision.rule_id,
            "dispatch_round": case.dispatch_round + 1,
            "cycle": case.cycle + 1,
            "timers_fired": [],
            "dispatched_at": ctx.now,
            "started_at": ctx.now,
            "due_at": _deadline(ctx, ctx.now, case.time_limit),
            "ack_due_at": _deadline(ctx, ctx.now, routing.acknowledge_limit(case.urgency, ctx.city)),
            "acknowledged_at": None,
            "pending_extension_hours": None,
        }
    )
    return new, [returned, _dispatched(new, ctx, c)]


def _request_extension(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    assert isinstance(c, cmd.RequestExtension)
    new = case.model_copy(update={"state": State.extension_requested, "pending_extension_hours": c.hours})
    return new, [CaseExtensionRequested(**_unit_fields(case, c, ctx.now), hours=c.hours, reason=c.reason)]


def _approve_extension(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    hours = case.pending_extension_hours
    assert hours is not None, "extension_requested always carries the hours asked for"
    if case.urgency == Urgency.urgent or case.time_limit.endswith("nh"):
        due = case.due_at + timedelta(hours=hours)  # urgent items count natural hours
    else:
        due = ctx.calendar.add_working(case.due_at, hours)
    new = case.model_copy(
        update={
            "state": State.acknowledged,
            "due_at": due,
            "pending_extension_hours": None,
            "extensions": case.extensions + 1,
        }
    )
    return new, [CaseExtensionApproved(**_unit_fields(case, c, ctx.now), hours=hours, due_at=due)]


def _resolve(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    assert isinstance(c, cmd.Resolve)
    new = case.model_copy(update={"state": State.resolved, "resolved_at": ctx.now, "pending_extension_hours": None})
    return new, [
        CaseResolved(
            **_unit_fields(case, c, ctx.now), note=c.note, photo_urls=c.photo_urls, on_time=ctx.now <= case.due_at
        )
    ]


def _on_time(case: Case) -> bool:
    return case.resolved_at is not None and case.resolved_at <= case.due_at


def _verify(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    assert isinstance(c, cmd.Verify)
    fields = _unit_fields(case, c, ctx.now)
    if c.passed:
        new = case.model_copy(update={"state": State.closed, "closed_at": ctx.now})
        return new, [
            CaseVerified(**fields, passed=True, note=c.note, photo_urls=c.photo_urls, rework_count=case.reworks),
            CaseClosed(**fields, on_time=_on_time(case), closed_by="verification"),
        ]
    new = case.model_copy(update={"state": State.acknowledged, "reworks": case.reworks + 1})
    return new, [
        CaseVerified(**fields, passed=False, note=c.note, photo_urls=c.photo_urls, rework_count=case.reworks + 1)
    ]


def _close(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    new = case.model_copy(update={"state": State.closed, "closed_at": ctx.now})
    return new, [CaseClosed(**_unit_fields(case, c, ctx.now), on_time=_on_time(case), closed_by="command_centre")]


def _reopen(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    assert isinstance(c, cmd.Reopen)
    due = _deadline(ctx, ctx.now, case.time_limit)
    new = case.model_copy(
        update={
            "state": State.dispatched,
            "reopens": case.reopens + 1,
            "cycle": case.cycle + 1,
            "timers_fired": [],
            "started_at": ctx.now,
            "dispatched_at": ctx.now,
            "due_at": due,
            "ack_due_at": _deadline(ctx, ctx.now, routing.acknowledge_limit(case.urgency, ctx.city)),
            "acknowledged_at": None,
            "resolved_at": None,
            "closed_at": None,
            "rating": None,
        }
    )
    return new, [CaseReopened(**_unit_fields(case, c, ctx.now), reason=c.reason, due_at=due)]


def _rate(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    assert isinstance(c, cmd.Rate)
    new = case.model_copy(update={"rating": c.satisfaction})
    return new, [CaseRated(**_unit_fields(case, c, ctx.now), satisfaction=c.satisfaction)]


def _cancel(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    assert isinstance(c, cmd.Cancel)
    new = case.model_copy(update={"state": State.cancelled, "closed_at": ctx.now, "pending_extension_hours": None})
    fields = _unit_fields(case, c, ctx.now)
    return new, [
        CaseClosed(**fields, on_time=False, closed_by="cancel", outcome="cancelled", reason=c.reason),
        CaseCancelled(**fields, reason=c.reason),
    ]


_NOT_ASSIGNABLE = frozenset({"command_centre", "hotline"})


def _check_assign(case: Case, c: cmd.Assign, city: City) -> Rejected | None:
    """人工派遣 only for a case the command centre holds, to units and a category the city knows."""
    if case.lead_unit.role != "command_centre":
        return Rejected(
            "wrong_state",
            f"a case that is {case.state.value} with {case.lead_unit.unit_id} "
            f"(rule {case.rule_id}) is not waiting for manual assignment; the unit "
            "returns it (退单) if it is not theirs",
        )
    for unit_id in [c.unit_id, *(c.cooperating_unit_ids or [])]:
        if unit_id not in city.units:
            return Rejected("unknown_unit", f"the city has no unit {unit_id}")
    lead = city.units[c.unit_id]
    if lead.role in _NOT_ASSIGNABLE:
        return Rejected("invalid", f"{lead.id} is the {lead.role}: it cannot lead a case")
    code = c.category_code or case.category_code
    category = city.category(code)
    if category is None:
        return Rejected("unknown_category", f"the catalogue has no category {code}")
    if category.lead_role == "command_centre":
        return Rejected(
            "invalid",
            f"category {code} ({category.name_zh}) is the command centre's triage "
            "category: name the case's real category_code",
        )
    return None


def _assign(case: Case, c: cmd.CaseCommand, ctx: Context) -> tuple[Case, list[CaseEvent]]:
    """A new dispatch round to the named unit; the deadline and urgency follow the (possibly new) category."""
    assert isinstance(c, cmd.Assign)
    city = ctx.city
    category = city.category(c.category_code or case.category_code)
    assert category is not None, "checked in _check_assign"
    lead = city.units[c.unit_id].ref()
    if c.cooperating_unit_ids is None:
        cooperating = routing.category_cooperating(category, case.place, city, lead)
    else:
        cooperating = [city.units[u].ref() for u in dict.fromkeys(c.cooperating_unit_ids) if u != c.unit_id]
    # As intake decides it: a category that is urgent by default makes the case urgent; a caller's urgent flag
    # is never taken back.
    urgency = Urgency.urgent if case.urgency == Urgency.urgent or category.urgency == Urgency.urgent else Urgency.normal
    limit = routing.time_limit_for(category, urgency, city)
    new = case.model_copy(
        update={
            "state": State.dispatched,
            "category_code": category.code,
            "urgency": urgency,
            "confidence": 1.0,  # a person chose the category: a later return re-routes it without triage
            "lead_unit": lead,
            "cooperating_units": cooperating,
            "rule_id": routing.MANUAL,
            "time_limit": limit,
            "dispatch_round": case.dispatch_round + 1,
            "cycle": case.cycle + 1,
            "timers_fired": [],
            "dispatched_at": ctx.now,
            "started_at": ctx.now,
            "due_at": _deadline(ctx, ctx.now, limit),
            "ack_due_at": _deadline(ctx, ctx.now, routing.acknowledge_limit(urgency, city)),
            "acknowledged_at": None,
            "pending_extension_hours": None,
        }
    )
    return new, [_dispatched(new, ctx, c)]


_STEPS = {
    "acknowledge": _acknowledge,
    "return": _return,
    "request_extension": _request_extension,
    "approve_extension": _approve_extension,
    "resolve": _resolve,
    "verify": _verify,
    "close": _close,
    "reopen": _reopen,
    "rate": _rate,
    "cancel": _cancel,
    "assign": _assign,
}
