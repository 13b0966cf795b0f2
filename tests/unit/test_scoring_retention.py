"""Scoring's facts under retention: when a case ended, from its facts alone; how long its facts are kept; where a
period begins (what the rebuild leaves out once facts are purged and the stream has dropped messages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scoring import units
from services.scoring.periods import period_begins, periods_of
from services.scoring.store import CLOSED_S, RETAINED, facts_document
from xiuhua.city.retention import DAY, RetentionFile
from xiuhua.retention import horizon_s

T = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)


def _fact(t: str, minutes: int, n: int | None = None) -> units.Fact:
    return {"id": f"e{n if n is not None else minutes}", "t": t, "at": (T + timedelta(minutes=minutes)).isoformat()}


def _at(minutes: int) -> str:
    return (T + timedelta(minutes=minutes)).isoformat()


@pytest.mark.parametrize(
    ("facts", "ended"),
    [
        ([_fact("opened", 0), _fact("dispatched", 1)], None),
        ([_fact("opened", 0), _fact("closed", 5)], _at(5)),
        ([_fact("opened", 0), _fact("cancelled", 5)], _at(5)),
        ([_fact("opened", 0), _fact("closed", 5), _fact("reopened", 6)], None),
        ([_fact("opened", 0), _fact("closed", 5), _fact("reopened", 6), _fact("closed", 9)], _at(9)),
        # A rating after the close does not move when the case ended.
        ([_fact("opened", 0), _fact("closed", 5), _fact("rated", 7)], _at(5)),
    ],
)
def test_a_case_ended_at_its_last_close_or_cancel_unless_reopened_since(facts, ended) -> None:
    assert units.ended_at(facts) == ended
    assert units.ended_at(list(reversed(facts))) == ended  # facts in any order
    doc = facts_document("C-1", facts)
    assert doc[CLOSED_S] == (None if ended is None else datetime.fromisoformat(ended).timestamp())


def test_a_reopening_and_a_close_at_the_same_moment_are_ordered_by_event_id() -> None:
    # The fold orders facts by (time, event id); the end follows the same order.
    closed_last = [_fact("closed", 5, 2), _fact("reopened", 5, 1)]
    reopened_last = [_fact("closed", 5, 1), _fact("reopened", 5, 2)]
    assert units.ended_at(closed_last) == _at(5)
    assert units.ended_at(reopened_last) is None


@pytest.mark.parametrize(
    ("closed_cases", "cases_stream", "kept"),
    [
        ("900d", None, 900 * DAY),  # longer than the stream's 800 days: the city's horizon
        ("30d", None, 800 * DAY),  # shorter: the stream still holds the case's events, the facts stay as long
        ("30d", "20d", 30 * DAY),
        ("20d", "30d", 30 * DAY),
        ("30d", "30d", 30 * DAY),
    ],
)
def test_facts_are_kept_for_the_closed_cases_horizon_or_the_case_streams_age_whichever_is_longer(
    closed_cases, cases_stream, kept
) -> None:
    policy = RetentionFile.model_validate(
        {"closed_cases": closed_cases, **({"streams": {"XH_CASES": cases_stream}} if cases_stream else {})}
    )
    assert horizon_s(policy, RETAINED[0]) == kept


@pytest.mark.parametrize(
    ("period", "begins"),
    [
        ("2026", datetime(2026, 1, 1)),
        ("2026-Q1", datetime(2026, 1, 1)),
        ("2026-Q4", datetime(2026, 10, 1)),
        ("2026-03", datetime(2026, 3, 1)),
        ("2026-12", datetime(2026, 12, 1)),
        ("2026-W01", datetime(2025, 12, 29)),  # ISO week 1 of 2026 begins in 2025
        ("2026-W53", datetime(2026, 12, 28)),
        ("2027-W01", datetime(2027, 1, 4)),
    ],
)
def test_a_period_begins_at_the_first_moment_periods_of_puts_in_it(period, begins) -> None:
    start = period_begins(period)
    assert start.replace(tzinfo=None) == begins
    kind = next(k for k, p in periods_of(start).items() if p == period)
    assert periods_of(start - timedelta(microseconds=1))[kind] != period
