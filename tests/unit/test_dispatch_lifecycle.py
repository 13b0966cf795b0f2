"""The case state machine, exhaustively: every state × every command, then the actor rules and the details."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from contracts import commands as cmd
from contracts.cases import CaseCancelled, CaseClosed, CaseDispatched
from contracts.values import Urgency
from services.dispatch.case import OPEN_STATES, Case, State
from services.dispatch.lifecycle import Applied, Rejected, decide, open_case
from tests.helpers.dispatch import CENTRE, HOTLINE, LEAD, SH, T0, command, ctx, in_state, new_case, opened

COMMANDS = [
    "acknowledge",
    "return",
    "request_extension",
    "approve_extension",
    "resolve",
    "verify_pass",
    "verify_fail",
    "close",
    "reopen",
    "rate",
    "cancel",
    "assign",
]
CANCELLED = (State.cancelled, ["case.closed", "case.cancelled"])
X = None  # rejected: wrong_state

# state → command → (new state, events published); X = rejected with wrong_state.
TABLE: dict[State, dict[str, tuple[State, list[str]] | None]] = {
    State.dispatched: {
        "acknowledge": (State.acknowledged, ["case.acknowledged"]),
        "return": (State.dispatched, ["case.returned", "case.dispatched"]),
        "request_extension": X,
        "approve_extension": X,
        "resolve": X,
        "verify_pass": X,
        "verify_fail": X,
        "close": X,
        "reopen": X,
        "rate": X,
        "cancel": CANCELLED,
        "assign": X,  # the case is with a unit, not with the command centre
    },
    State.acknowledged: {
        "acknowledge": X,
        "return": (State.dispatched, ["case.returned", "case.dispatched"]),
        "request_extension": (State.extension_requested, ["case.extension_requested"]),
        "approve_extension": X,
        "resolve": (State.resolved, ["case.resolved"]),
        "verify_pass": X,
        "verify_fail": X,
        "close": X,
        "reopen": X,
        "rate": X,
        "cancel": CANCELLED,
        "assign": X,  # the case is with a unit, not with the command centre
    },
    State.extension_requested: {
        "acknowledge": X,
        "return": X,
        "request_extension": X,
        "approve_extension": (State.acknowledged, ["case.extension_approved"]),
        "resolve": (State.resolved, ["case.resolved"]),
        "verify_pass": X,
        "verify_fail": X,
        "close": X,
        "reopen": X,
        "rate": X,
        "cancel": CANCELLED,
        "assign": X,  # the case is with a unit, not with the command centre
    },
    State.resolved: {
        "acknowledge": X,
        "return": X,
        "request_extension": X,
        "approve_extension": X,
        "resolve": X,
        "verify_pass": (State.closed, ["case.verified", "case.closed"]),
        "verify_fail": (State.acknowledged, ["case.verified"]),
        "close": (State.closed, ["case.closed"]),
        "reopen": X,
        "rate": X,
        "cancel": CANCELLED,
        "assign": X,  # the case is with a unit, not with the command centre
    },
    State.closed: {
        "acknowledge": X,
        "return": X,
        "request_extension": X,
        "approve_extension": X,
        "resolve": X,
        "verify_pass": X,
        "verify_fail": X,
        "close": X,
        "reopen": (State.dispatched, ["case.reopened"]),
        "rate": (State.closed, ["case.rated"]),
        "cancel": X,
        "assign": X,
    },
    State.cancelled: dict.fromkeys(COMMANDS, X),
}


def test_the_table_covers_every_state_and_command() -> None:
    assert set(TABLE) == set(State)
    assert all(set(row) == set(COMMANDS) for row in TABLE.values())


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("name", COMMANDS)
def test_every_state_and_command(city, state: State, name: str) -> None:
    case = in_state(city, state)
    out = decide(case, command(name), ctx(city, T0 + timedelta(hours=3)))
    expected = TABLE[state][name]
    if expected is None:
        assert isinstance(out, Rejected)
        assert out.reason == "wrong_state" and state.value in out.detail
        return
    assert isinstance(out, Applied), out
    new_state, events = expected
    assert out.case.state == new_state
    assert [e.event_type for e in out.events] == events
    assert out.case.version == case.version + 1
    assert out.case.command_ids[-1] == command(name).command_id
    for ev in out.events:
        assert ev.case_id == "C-1" and ev.correlation_id == "grid:R-1"
        if hasattr(ev, "version"):
            assert ev.version == case.version + 1 and ev.command_id == command(name).command_id


# A case the command centre holds (manual triage): assign applies while it waits for a unit, nowhere else.
TRIAGE_ASSIGN: dict[State, tuple[State, list[str]] | None] = {
    State.dispatched: (State.dispatched, ["case.dispatched"]),
    State.acknowledged: (State.dispatched, ["case.dispatched"]),  # the centre signed for it, then assigned it
    State.extension_requested: X,
    State.resolved: X,
    State.closed: X,
    State.cancelled: X,
}


def triage_case(city, state: State = State.dispatched, **over) -> Case:
    """A low-confidence case (the command centre triages it) in a given state."""
    case = in_state(city, state)
    centre = new_case(city, category_confidence=0.3, **over)
    assert (centre.rule_id, centre.lead_unit.unit_id) == ("low-confidence", "XH-CC")
    return case.model_copy(
        update={
            k: getattr(centre, k)
            for k in (
                "lead_unit",
                "cooperating_units",
                "rule_id",
                "confidence",
                "category_code",
                "time_limit",
                "urgency",
            )
        }
    )


def test_the_triage_table_covers_every_state() -> None:
    assert set(TRIAGE_ASSIGN) == set(State)


@pytest.mark.parametrize("state", list(State))
def test_assign_in_every_state_of_a_triaged_case(city, state: State) -> None:
    case = triage_case(city, state)
    out = decide(case, command("assign"), ctx(city, T0 + timedelta(hours=3)))
    expected = TRIAGE_ASSIGN[state]
    if expected is None:
        assert isinstance(out, Rejected) and out.reason == "wrong_state" and state.value in out.detail
        return
    assert isinstance(out, Applied), out
    assert out.case.state == expected[0] and [e.event_type for e in out.events] == expected[1]
    assert out.case.version == case.version + 1 and out.case.lead_unit.unit_id == "CD-ENF"


# The actor rules: for each command, a wrong actor and the reason; checked before the state.
WRONG_ACTORS = [
    ("acknowledge", {"unit_id": "CD-ENF", "role": "enforcement"}, "wrong_unit"),
    ("return", CENTRE, "wrong_unit"),
    ("request_extension", {"unit_id": "CD01", "role": "community"}, "wrong_unit"),
    ("resolve", HOTLINE, "wrong_unit"),
    ("approve_extension", LEAD, "wrong_role"),
    ("verify_pass", LEAD, "wrong_role"),
    ("close", HOTLINE, "wrong_role"),
    ("reopen", LEAD, "wrong_role"),
    ("cancel", {"unit_id": "CD-SO", "role": "street_office"}, "wrong_role"),
    ("rate", LEAD, "wrong_role"),
    ("assign", LEAD, "wrong_role"),
    ("assign", HOTLINE, "wrong_role"),
]


@pytest.mark.parametrize(("name", "actor", "reason"), WRONG_ACTORS)
@pytest.mark.parametrize("state", list(State))
def test_actor_rules(city, name: str, actor: dict, reason: str, state: State) -> None:
    c = command(name).model_copy(update={"actor": cmd.Actor(**actor)})
    out = decide(in_state(city, state), c, ctx(city))
    assert isinstance(out, Rejected) and out.reason == reason


def test_rate_from_the_command_centre_too_and_only_once(city) -> None:
    case = in_state(city, State.closed)
    rated = decide(case, command("rate").model_copy(update={"actor": cmd.Actor(**CENTRE)}), ctx(city))
    assert isinstance(rated, Applied) and rated.case.rating == "satisfied"
    again = decide(rated.case, command("rate", 2), ctx(city))
    assert isinstance(again, Rejected) and again.reason == "wrong_state" and "rated already" in again.detail


def test_open_case_sets_deadline_ack_limit_and_timers(city) -> None:
    case, ev = open_case(opened(city, supervisor_found=True, source="inspection"), ctx(city))
    assert (case.state, case.lead_unit.unit_id, case.time_limit) == (State.dispatched, "CD-SAN", "4h")
    assert case.due_at == datetime(2026, 11, 23, 14, 30, tzinfo=SH)  # 3h morning + 1h after lunch
    assert case.ack_due_at == datetime(2026, 11, 23, 10, 0, tzinfo=SH)
    assert case.next_timer_at == datetime(2026, 11, 23, 13, 42, tzinfo=SH)  # 80 % of 4 working hours
    assert ev.rule_id == "default-by-category" and ev.due_at == case.due_at and ev.supervisor_found
    ack = decide(case, command("acknowledge"), ctx(city, T0 + timedelta(minutes=30)))
    assert isinstance(ack, Applied) and ack.events[0].in_time and ack.events[0].supervisor_found
    late = decide(case, command("acknowledge"), ctx(city, T0 + timedelta(hours=2)))
    assert isinstance(late, Applied) and not late.events[0].in_time


def test_a_deadline_counted_on_an_unlisted_year_is_marked_estimated(city) -> None:
    """2026 is in the city's calendar, 2027 is not: a dispatch whose deadline reaches 2027 says so."""
    _, listed = open_case(opened(city), ctx(city, datetime(2026, 12, 31, 9, 0, tzinfo=SH)))
    assert listed.due_at_estimated is False
    late = datetime(2026, 12, 31, 16, 0, tzinfo=SH)  # 4 working hours: 1.5 on the 31st, the rest in 2027
    case, reaching = open_case(opened(city), ctx(city, late))
    assert reaching.due_at_estimated is True and case.due_at.year == 2027
    # A re-dispatch after a return is judged again at its own moment.
    back = decide(case, command("return"), ctx(city, late + timedelta(minutes=5)))
    assert isinstance(back, Applied)
    assert [e.due_at_estimated for e in back.events if isinstance(e, CaseDispatched)] == [True]


def test_return_reroutes_then_max_returns_go_to_the_command_centre(city) -> None:
    case = new_case(city)
    first = decide(case, command("return"), ctx(city))
    assert isinstance(first, Applied)
    returned, dispatched = first.events
    assert returned.returns == 1 and returned.unit_id == "CD-SAN" and returned.reason == "不属于本单位"
    assert dispatched.lead_unit.unit_id == "CD-SO" and dispatched.dispatch_round == 2
    assert dispatched.returned_by == ["CD-SAN"] and first.case.cycle == 2
    by_so = command("return", 2).model_copy(update={"actor": cmd.Actor(unit_id="CD-SO", role="street_office")})
    second = decide(first.case, by_so, ctx(city))
    assert isinstance(second, Applied)
    dispatched = second.events[1]
    assert (dispatched.rule_id, dispatched.lead_unit.unit_id, dispatched.dispatch_round) == ("max-returns", "XH-CC", 3)
    by_centre = command("return", 3).model_copy(update={"actor": cmd.Actor(**CENTRE)})
    stuck = decide(second.case, by_centre, ctx(city))
    assert isinstance(stuck, Rejected) and stuck.reason == "wrong_state"


def test_approved_extension_moves_the_deadline_in_working_hours(city) -> None:
    case = in_state(city, State.extension_requested)  # due Monday 14:30, 8 hours asked
    out = decide(case, command("approve_extension"), ctx(city))
    assert isinstance(out, Applied)
    assert out.case.due_at == datetime(2026, 11, 24, 15, 0, tzinfo=SH)  # 3h Mon + 3.5h + 1.5h Tue
    assert out.events[0].due_at == out.case.due_at and out.events[0].hours == 8
    assert out.case.pending_extension_hours is None and out.case.extensions == 1
    assert out.case.next_timer_at is not None and out.case.next_timer_at > case.next_timer_at


def test_urgent_extension_counts_natural_hours(city) -> None:
    case = new_case(city, code="0301", urgency=Urgency.urgent).model_copy(
        update={"state": State.extension_requested, "pending_extension_hours": 3.0}
    )
    out = decide(case, command("approve_extension"), ctx(city))
    assert isinstance(out, Applied) and out.case.due_at == case.due_at + timedelta(hours=3)


def test_rework_counts_and_returns_to_the_unit(city) -> None:
    case = in_state(city, State.resolved)
    fail = decide(case, command("verify_fail"), ctx(city))
    assert isinstance(fail, Applied) and fail.case.reworks == 1 and fail.events[0].rework_count == 1
    assert fail.case.next_timer_at is not None  # the deadline runs again
    resolved = decide(fail.case, command("resolve", 2), ctx(city))
    assert isinstance(resolved, Applied)
    passed = decide(resolved.case, command("verify_pass", 2), ctx(city))
    assert isinstance(passed, Applied)
    verified, closed = passed.events
    assert verified.passed and verified.rework_count == 1
    assert closed.closed_by == "verification" and closed.on_time


def test_resolution_after_the_deadline_is_not_on_time(city) -> None:
    case = in_state(city, State.acknowledged)
    late = decide(case, command("resolve"), ctx(city, case.due_at + timedelta(minutes=1)))
    assert isinstance(late, Applied) and not late.events[0].on_time
    closed = decide(late.case, command("close"), ctx(city, case.due_at + timedelta(hours=1)))
    assert isinstance(closed, Applied) and closed.events[0].closed_by == "command_centre"
    assert not closed.events[0].on_time


def test_reopen_starts_a_new_deadline_cycle_for_the_same_unit(city) -> None:
    case = in_state(city, State.closed).model_copy(update={"timers_fired": ["warning:0"], "rating": "basic"})
    later = datetime(2026, 11, 25, 9, 0, tzinfo=SH)
    out = decide(case, command("reopen"), ctx(city, later))
    assert isinstance(out, Applied)
    assert out.case.lead_unit.unit_id == "CD-SAN" and out.case.cycle == case.cycle + 1
    assert out.case.timers_fired == [] and out.case.rating is None and out.case.reopens == 1
    assert out.events[0].due_at == datetime(2026, 11, 25, 14, 30, tzinfo=SH)


def test_cancelled_and_closed_cases_have_no_timers(city) -> None:
    for name, state in (("cancel", State.cancelled), ("close", State.closed)):
        out = decide(in_state(city, State.resolved), command(name), ctx(city))
        assert isinstance(out, Applied) and out.case.state == state and out.case.next_timer_at is None


@pytest.mark.parametrize("state", sorted(OPEN_STATES))
def test_cancel_ends_the_case_visibly_as_closed_with_outcome_cancelled(city, state: State) -> None:
    case = in_state(city, state)
    out = decide(case, command("cancel"), ctx(city, T0 + timedelta(hours=1)))
    assert isinstance(out, Applied) and out.case.state == State.cancelled and out.case.next_timer_at is None
    closed, cancelled = out.events
    assert isinstance(closed, CaseClosed) and isinstance(cancelled, CaseCancelled)
    assert (closed.outcome, closed.closed_by, closed.on_time) == ("cancelled", "cancel", False)
    assert closed.reason == "虚假举报"
    assert closed.unit_id == cancelled.unit_id == "CD-SAN" and closed.version == cancelled.version == case.version + 1
    assert cancelled.reason == "虚假举报"
    # Ordinary closures say so too.
    done = decide(in_state(city, State.resolved), command("close"), ctx(city))
    assert isinstance(done, Applied) and done.events[0].outcome == "closed"


def assign(**over: object) -> cmd.Assign:
    fields: dict[str, object] = {
        "command_id": "cmd-assign-x",
        "case_id": "C-1",
        "at": T0,
        "actor": CENTRE,
        "unit_id": "CD-ENF",
        "reason": "分拣: 占道经营",
    }
    fields.update(over)
    return cmd.Assign.model_validate(fields)


def test_assign_dispatches_with_the_new_category_its_deadline_and_default_cooperating_units(city) -> None:
    case = triage_case(city).model_copy(
        update={"timers_fired": ["warning:0"], "returns": 2, "returned_by": ["CD-SAN", "CD-SO"]}
    )
    now = datetime(2026, 11, 23, 15, 0, tzinfo=SH)
    out = decide(case, assign(category_code="0101"), ctx(city, now))
    assert isinstance(out, Applied)
    new, [ev] = out.case, out.events
    assert isinstance(ev, CaseDispatched)
    assert (new.state, new.rule_id, new.category_code, new.time_limit) == (State.dispatched, "manual", "0101", "1d")
    assert new.lead_unit.unit_id == "CD-ENF" and [u.unit_id for u in new.cooperating_units] == ["CD01"]
    # 1 working day = 7.5 h from Monday 15:00: 2.5 h Monday, 3.5 h + 1.5 h Tuesday.
    assert new.due_at == datetime(2026, 11, 24, 15, 0, tzinfo=SH) and new.started_at == now
    assert (new.dispatch_round, new.cycle, new.timers_fired) == (case.dispatch_round + 1, case.cycle + 1, [])
    assert new.confidence == 1.0 and new.acknowledged_at is None and new.next_timer_at is not None
    assert new.returned_by == ["CD-SAN", "CD-SO"] and new.returns == 2  # the history stays
    assert (ev.rule_id, ev.lead_unit.unit_id, ev.category_code, ev.due_at) == ("manual", "CD-ENF", "0101", new.due_at)
    assert ev.actor == CENTRE and ev.command_id == "cmd-assign-x" and ev.reason == "分拣: 占道经营"
    assert ev.dispatch_round == new.dispatch_round and ev.time_limit == "1d"


def test_assign_with_named_or_no_cooperating_units_and_the_category_kept(city) -> None:
    case = triage_case(city)  # 0201 垃圾箱满溢, low confidence
    named = decide(case, assign(unit_id="CD-SAN", cooperating_unit_ids=["CD-SO", "CD-SAN", "CD-SO"]), ctx(city))
    assert isinstance(named, Applied)
    assert named.case.category_code == "0201" and named.case.time_limit == "4h"
    assert [u.unit_id for u in named.case.cooperating_units] == ["CD-SO"]  # the lead and repeats left out
    alone = decide(case, assign(unit_id="CD-SAN", cooperating_unit_ids=[]), ctx(city))
    assert isinstance(alone, Applied) and alone.case.cooperating_units == []


def test_assign_to_an_urgent_category_makes_the_case_urgent_in_natural_hours(city) -> None:
    urgent = next(c for c in city.catalogue.items() if c.urgency == Urgency.urgent and c.lead_role != "command_centre")
    out = decide(triage_case(city), assign(category_code=urgent.code), ctx(city))
    assert isinstance(out, Applied) and out.case.urgency == Urgency.urgent
    assert out.case.time_limit.endswith("nh") and out.events[0].urgency == Urgency.urgent


@pytest.mark.parametrize(
    ("over", "reason", "words"),
    [
        ({"unit_id": "NO-SUCH"}, "unknown_unit", "NO-SUCH"),
        ({"cooperating_unit_ids": ["CD01", "NOPE"]}, "unknown_unit", "NOPE"),
        ({"category_code": "7777"}, "unknown_category", "7777"),
        ({"unit_id": "XH-CC"}, "invalid", "cannot lead"),
        ({"category_code": "9901"}, "invalid", "triage category"),
    ],
)
def test_assign_refuses_unknown_units_and_categories(city, over: dict, reason: str, words: str) -> None:
    out = decide(triage_case(city), assign(**over), ctx(city))
    assert isinstance(out, Rejected) and out.reason == reason and words in out.detail


def test_a_triage_category_case_must_be_given_its_real_category(city) -> None:
    case = triage_case(city, code="9901")
    assert case.category_code == "9901"
    out = decide(case, assign(), ctx(city))
    assert isinstance(out, Rejected) and out.reason == "invalid" and "9901" in out.detail
    fixed = decide(case, assign(category_code="0101"), ctx(city))
    assert isinstance(fixed, Applied) and fixed.case.category_code == "0101"


def test_an_assigned_case_flows_on_and_a_return_reroutes_it_without_triage(city) -> None:
    out = decide(triage_case(city), assign(unit_id="CD-SAN"), ctx(city))
    assert isinstance(out, Applied)
    ack = decide(out.case, command("acknowledge", 2), ctx(city))
    assert isinstance(ack, Applied) and ack.case.state == State.acknowledged
    back = decide(out.case, command("return", 2), ctx(city))
    assert isinstance(back, Applied)
    # The centre confirmed the category: routing places it (confidence no longer low), excluding CD-SAN.
    assert back.events[1].rule_id != "low-confidence" and back.events[1].lead_unit.unit_id == "CD-SO"
    again = decide(ack.case, assign(command_id="cmd-assign-2"), ctx(city))
    assert isinstance(again, Rejected) and again.reason == "wrong_state" and "CD-SAN" in again.detail


def test_the_stored_document_reads_back_the_same(city) -> None:
    case = in_state(city, State.acknowledged)
    out = decide(case, command("resolve"), ctx(city))
    assert isinstance(out, Applied)
    doc = out.case.to_doc()
    assert doc["_id"] == "C-1" and doc["state"] == "resolved" and doc["version"] == case.version + 1
    assert "next_timer_at" not in doc and "next_timer_s" not in doc  # nothing pending: absent, the scan skips it
    assert Case.from_doc(doc) == out.case
    timed = case.to_doc()  # acknowledged: its deadline runs, the scan selects it by the number
    assert case.next_timer_at is not None and timed["next_timer_at"] == case.next_timer_at
    assert timed["next_timer_s"] == case.next_timer_at.timestamp()
    assert Case.from_doc(timed) == case
