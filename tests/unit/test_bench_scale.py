"""The benchmark's generated history is what the real code would have written or published."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from contracts import registry
from services.notify.bulletin.content import build_content
from services.notify.bulletin.figures import WeekData
from xiuhua_tools.bench.scale import WEEKS, bulletin_documents, case_documents, lifecycle_events


def test_bulletin_documents_add_up_to_the_cases_and_build_a_bulletin(city) -> None:
    docs = bulletin_documents(city, 5_000)
    weeks = {d["_id"]: d for d in docs["bulletin_weeks"]}
    assert len(weeks) == WEEKS and sum(d["opened"] for d in weeks.values()) == 5_000
    facets = docs["bulletin_facets"]
    for facet in ("source", "category", "grid", "community"):
        assert sum(d["count"] for d in facets if d["facet"] == facet) == 5_000
    assert sum(d.get("dispatched", 0) for d in facets if d["facet"] == "unit") == 5_000
    assert all(len({d["_id"] for d in c}) == len(c) for c in docs.values())  # one document per _id
    week = sorted(weeks)[-1]

    def week_data(w: str) -> WeekData:
        by: dict[str, list] = {}
        for f in facets:
            if f["week"] == w:
                by.setdefault(f["facet"], []).append(f)
        counters = {k: v for k, v in weeks[w].items() if isinstance(v, int)}
        listed = [d for d in docs["bulletin_listed"] if d["week"] == w]
        return WeekData(w, counters, by, listed, None, [])

    content = build_content(week_data(week), week_data(sorted(weeks)[-2]), datetime(2026, 11, 23, 7, 0, tzinfo=UTC))
    assert content.headline_figures()["opened"] == weeks[week]["opened"]


def test_lifecycle_events_decode_as_contract_events_seven_per_case(city) -> None:
    events = lifecycle_events(city, 700)
    assert len(events) == 700
    kinds = Counter(subject.split(".")[2] for subject, _ in events)
    assert set(kinds.values()) == {100} and len(kinds) == 7
    decoded = [registry.decode(s, d) for s, d in events]
    assert len({e.event_id for e in decoded}) == 700
    assert all(e.case_id.startswith("C-R") for e in decoded)


def test_case_documents_are_stored_cases_a_tenth_with_a_deadline_running() -> None:
    from services.dispatch.case import TIMER_FIELD, Case

    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    docs = case_documents(10_000, now)
    assert len({d["_id"] for d in docs}) == 10_000
    timed = [d for d in docs if TIMER_FIELD in d]
    assert 900 < len(timed) < 1_100
    assert all(Case.from_doc(d).to_doc() == d for d in docs[:200])  # what dispatch itself would store
    due = [d for d in timed if d[TIMER_FIELD] <= now.timestamp()]
    assert 0 < len(due) < 20  # a few fallen due since the last scan, not half the open cases
    assert all(d["state"] == "closed" for d in docs if TIMER_FIELD not in d)
