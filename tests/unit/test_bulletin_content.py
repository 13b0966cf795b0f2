"""The bulletin's pure parts: what each event adds to the week's documents, the rates, the ranking, the words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import cases as c
from contracts.merchants import MerchantEscalated
from contracts.scores import MerchantGradeChanged, MerchantGraded, RankingPublished, UnitScoreUpdated
from contracts.values import Place, ReportSource, UnitRef, UnitRole
from services.notify.bulletin.content import build_content, pct, rank_units, rates
from services.notify.bulletin.figures import WeekData
from services.notify.bulletin.projection import (
    CASES,
    FACETS,
    LISTED,
    MERCHANTS,
    RANKINGS,
    WEEKS,
    Writes,
    apply_case_event,
    apply_score_event,
    shows_nothing,
)
from services.notify.bulletin.render import render_edition

T0 = datetime(2026, 11, 16, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai, week 2026-W47
UNIT = UnitRef(unit_id="CD-SAN", name="城东环卫所", role=UnitRole.sanitation)


def fold(events: list[c.CaseEvent]) -> tuple[Writes, dict[str, dict]]:
    w, cases = Writes(), {}
    for ev in events:
        new = apply_case_event(ev, cases.get(ev.case_id), w)
        if new is not None:
            cases[ev.case_id] = new
    return w, cases


def doc(w: Writes, coll: str, _id: str) -> dict:
    return w.docs[(coll, _id)]


def opened(case_id: str, at: datetime, category: str = "0201", grid: str = "CD01-03") -> c.CaseOpened:
    place = Place(street_name="城东街道", community_code="CD01", community_name="东园社区", grid_code=grid)
    return c.CaseOpened(
        case_id=case_id,
        street_code="CD",
        source=ReportSource.hotline,
        source_ref=case_id,
        category_code=category,
        category_name="垃圾箱满溢",
        description="满溢",
        place=place,
        reported_at=at,
        occurred_at=at,
    )


def unit_kw(case_id: str, at: datetime) -> dict:
    return {"case_id": case_id, "street_code": "CD", "unit_id": "CD-SAN", "occurred_at": at}


def test_an_opening_folded_after_its_dispatch_still_counts_once_and_keeps_the_unit() -> None:
    # Two instances share the case consumer, and a crash hands a batch back: a case's dispatch may be folded before
    # its opening. The opening still counts, once; the record keeps the unit the dispatch set.
    dispatch = c.CaseDispatched(
        case_id="C-1",
        street_code="CD",
        category_code="0201",
        lead_unit=UNIT,
        rule_id="r",
        due_at=T0 + timedelta(hours=4),
        time_limit="4h",
        occurred_at=T0,
    )
    w, cases = fold([dispatch, opened("C-1", T0), opened("C-1", T0)])
    assert doc(w, WEEKS, "2026-W47")["$inc"] == {"opened": 1, "dispatched": 1}
    assert doc(w, FACETS, "2026-W47:category:0201")["$inc"] == {"count": 1}
    record = cases["C-1"]
    assert record["week_opened"] == "2026-W47" and record["status"] == "open" and record["unit_id"] == "CD-SAN"
    assert apply_case_event(opened("C-1", T0), record, Writes()) is None


def test_a_case_counts_in_the_week_of_each_event_and_its_cohort_in_the_week_it_opened() -> None:
    next_week = T0 + timedelta(days=7)
    w, cases = fold(
        [
            opened("C-1", T0),
            c.CaseDispatched(
                case_id="C-1",
                street_code="CD",
                category_code="0201",
                lead_unit=UNIT,
                rule_id="r",
                due_at=T0 + timedelta(hours=4),
                time_limit="4h",
                occurred_at=T0,
            ),
            c.CaseOverdue(**unit_kw("C-1", T0 + timedelta(hours=5)), due_at=T0 + timedelta(hours=4)),
            c.CaseEscalated(**unit_kw("C-1", T0 + timedelta(hours=6)), level=2, due_at=T0 + timedelta(hours=4)),
            c.CaseResolved(**unit_kw("C-1", next_week), on_time=False),
            c.CaseVerified(**unit_kw("C-1", next_week), passed=True),
            c.CaseClosed(**unit_kw("C-1", next_week), on_time=False, closed_by="verification"),
            c.CaseRated(**unit_kw("C-1", next_week), satisfaction="basic"),
        ]
    )
    w47, w48 = doc(w, WEEKS, "2026-W47"), doc(w, WEEKS, "2026-W48")
    assert w47["$inc"] == {"opened": 1, "dispatched": 1, "overdue": 1, "escalated": 1, "cohort_closed": 1}
    assert w48["$inc"] == {
        "resolved": 1,
        "resolved_on_time": 0,
        "verified": 1,
        "verify_failed": 0,
        "closed": 1,
        "closed_on_time": 0,
        "rated": 1,
        "basic": 1,
    }
    assert doc(w, FACETS, "2026-W47:category:0201")["$inc"] == {"count": 1}
    assert doc(w, FACETS, "2026-W47:grid:CD01-03")["$inc"] == {"count": 1}
    assert doc(w, FACETS, "2026-W47:source:hotline")["$set"]["label"] == "hotline"
    assert doc(w, FACETS, "2026-W47:unit:CD-SAN")["$inc"] == {"dispatched": 1, "overdue": 1, "escalated": 1}
    assert doc(w, FACETS, "2026-W47:unit:CD-SAN")["$set"]["label"] == "城东环卫所"
    listed = doc(w, LISTED, "2026-W47:C-1")["$set"]
    assert listed["overdue"] is True and listed["level"] == 2 and listed["unit_name"] == "城东环卫所"
    assert listed["category_name"] == "垃圾箱满溢" and listed["grid"] == "CD01-03"
    assert cases["C-1"]["status"] == "closed" and cases["C-1"]["week_opened"] == "2026-W47"
    assert cases["C-1"]["closed_s"] == next_week.timestamp()  # the purge of closed cases counts from here


def test_a_case_record_leaves_the_purges_range_when_reopened_and_enters_it_again_when_it_ends() -> None:
    reopened_at, cancelled_at = T0 + timedelta(days=2), T0 + timedelta(days=3)
    events = [
        opened("C-3", T0),
        c.CaseClosed(**unit_kw("C-3", T0 + timedelta(hours=1)), on_time=True, closed_by="command_centre"),
        c.CaseReopened(**unit_kw("C-3", reopened_at), reason="复发"),
    ]
    _, cases = fold(events)
    assert cases["C-3"]["status"] == "open" and cases["C-3"]["closed_s"] is None  # null: no range matches it
    _, cases = fold([*events, c.CaseCancelled(**unit_kw("C-3", cancelled_at), reason="虚假")])
    assert cases["C-3"]["closed_s"] == cancelled_at.timestamp()


def test_reopen_and_cancel_move_the_cohort_back() -> None:
    later = T0 + timedelta(days=8)
    w, cases = fold(
        [
            opened("C-2", T0),
            c.CaseClosed(**unit_kw("C-2", T0 + timedelta(hours=1)), on_time=True, closed_by="command_centre"),
            c.CaseReopened(**unit_kw("C-2", later), reason="复发"),
            c.CaseCancelled(**unit_kw("C-2", later), reason="虚假"),
            c.CaseClosed(**unit_kw("C-2", later), on_time=True, closed_by="cancel"),  # counted by case.cancelled
        ]
    )
    assert doc(w, WEEKS, "2026-W47")["$inc"] == {
        "opened": 1,
        "closed": 1,
        "closed_on_time": 1,
        "cohort_closed": 0,
        "cohort_cancelled": 1,
    }
    assert doc(w, WEEKS, "2026-W48")["$inc"] == {"reopened": 1, "cancelled": 1}
    assert cases["C-2"]["status"] == "cancelled"


def test_events_of_cases_opened_before_the_projection_existed_still_count() -> None:
    w, cases = fold(
        [c.CaseResolved(**unit_kw("C-old", T0), on_time=True), c.CaseOverdue(**unit_kw("C-old2", T0), due_at=T0)]
    )
    assert doc(w, WEEKS, "2026-W47")["$inc"] == {"resolved": 1, "resolved_on_time": 1, "overdue": 1}
    assert doc(w, LISTED, "2026-W47:C-old2")["$set"]["unit_name"] == "CD-SAN"
    assert cases == {}


def test_score_events_ranking_and_merchant_changes() -> None:
    w = Writes()
    apply_score_event(
        "score.v1.ranking_published",
        {
            "kind": "unit",
            "period": "2026-W47",
            "period_kind": "week",
            "occurred_at": T0.isoformat(),
            "tables": {
                "sanitation": [{"rank": 1, "id": "CD-SAN", "name": "城东环卫所", "score": 98.5, "board": "red"}]
            },
        },
        w,
    )
    apply_score_event(
        "score.v1.ranking_published", {"kind": "unit", "period": "2026-11", "period_kind": "month", "tables": {}}, w
    )
    apply_score_event(
        "score.v1.merchant_grade_changed",
        {
            "merchant_id": "M-1",
            "merchant_name": "东园小吃店",
            "period": "2026-11",
            "previous": "A",
            "grade": "B",
            "points": 82.0,
            "occurred_at": T0.isoformat(),
        },
        w,
    )
    apply_score_event(
        "score.v1.merchant_grade_changed",
        {
            "merchant_id": "M-1",
            "merchant_name": "东园小吃店",
            "period": "2026-11",
            "previous": "B",
            "grade": "C",
            "points": 70.0,
            "occurred_at": (T0 + timedelta(days=1)).isoformat(),
        },
        w,
    )
    apply_score_event("score.v1.unit_updated", {"unit_id": "X", "period": "2026-W47", "counters": {}}, w)
    assert set(w.docs) == {(RANKINGS, "2026-W47"), (MERCHANTS, "2026-W47:M-1")}
    assert doc(w, RANKINGS, "2026-W47")["$set"]["tables"]["sanitation"][0]["board"] == "red"
    merchant = doc(w, MERCHANTS, "2026-W47:M-1")["$set"]
    assert (merchant["previous_grade"], merchant["grade"], merchant["points"]) == ("A", "C", 70.0)  # A→B→C: A→C
    assert CASES not in {k[0] for k in w.docs}


def test_score_events_the_bulletin_does_not_show_add_nothing() -> None:
    """What the consumer passes over by type, or keeps no ledger entry for: the events that add nothing."""
    assert shows_nothing(UnitScoreUpdated) and shows_nothing(MerchantGraded)
    assert not shows_nothing(RankingPublished) and not shows_nothing(MerchantGradeChanged)
    assert not shows_nothing(MerchantEscalated)
    w = Writes()
    unit = {"unit_id": "X", "period": "2026-W47", "counters": {}}
    assert apply_score_event("score.v1.unit_updated", unit, w) is False
    assert apply_score_event("score.v1.street_figures", {"occurred_at": T0.isoformat()}, w) is False
    assert (
        apply_score_event(
            "score.v1.ranking_published", {"kind": "unit", "period": "2026-11", "period_kind": "month", "tables": {}}, w
        )
        is False
    )
    assert not w.docs
    assert (
        apply_score_event(
            "score.v1.ranking_published",
            {"kind": "unit", "period": "2026-W47", "period_kind": "week", "occurred_at": T0.isoformat(), "tables": {}},
            w,
        )
        is True
    )
    assert (
        apply_score_event("score.v1.merchant_escalated", {"merchant_id": "M-1", "occurred_at": T0.isoformat()}, w)
        is True
    )
    assert len(w.docs) == 2


def test_rates_and_targets() -> None:
    counters = {
        "opened": 20,
        "cohort_closed": 15,
        "cohort_cancelled": 2,
        "resolved": 40,
        "resolved_on_time": 37,
        "verified": 25,
        "verify_failed": 1,
        "rated": 10,
        "satisfied": 7,
        "basic": 1,
        "unsatisfied": 2,
    }
    r = rates(counters)
    assert r == {"on_time_rate": 37 / 40, "closure_rate": 15 / 18, "rework_rate": 1 / 25, "satisfaction_rate": 0.8}
    assert rates(counters, basic_counts=False)["satisfaction_rate"] == 0.7
    assert rates({})["on_time_rate"] is None
    content = build_content(
        WeekData("2026-W47", counters), WeekData("2026-W46", {"resolved": 10, "resolved_on_time": 10}), T0
    )
    assert content.rates["on_time_rate"]["met"] is False and content.rates["on_time_rate"]["target"] == 0.95
    assert content.rates["satisfaction_rate"]["met"] is False
    assert content.rates["closure_rate"]["met"] is None  # no target in the programme's rules
    assert pct(0.9499) == "94.9%" and pct(None) == "—"  # truncated: never shows 95.0% for a missed target


def test_ranking_from_own_counters_red_and_black_lists() -> None:
    facets = [
        {"key": k, "label": k, "resolved": res, "resolved_on_time": ok, "overdue": od}
        for k, res, ok, od in [
            ("A", 10, 10, 0),
            ("B", 10, 9, 0),
            ("C", 10, 9, 2),
            ("D", 4, 1, 3),
            ("E", 0, 0, 1),
            ("F", 0, 0, 0),
            ("G", 8, 8, 1),
            ("H", 5, 3, 0),
        ]
    ]
    ranked = [u.unit_id for u in rank_units(facets)]
    assert ranked == ["A", "G", "B", "C", "H", "D", "E"]  # F had nothing this week
    content = build_content(WeekData("2026-W47", {}, {"unit": facets}), WeekData("2026-W46"), T0)
    assert [u["name"] for u in content.red_list] == ["A", "G", "B"]
    assert [u["name"] for u in content.black_list] == ["E", "D", "H"]  # worst first
    assert "unit_ranking_from_notify_projection" in content.gaps


def test_scoring_ranking_wins_when_published_and_both_editions_render() -> None:
    tables = {
        "sanitation": [
            {
                "rank": 1,
                "id": "CD-SAN",
                "name": "城东环卫所",
                "score": 98.5,
                "board": "red",
                "bottom": False,
                "figures": {"on_time_rate": 0.975},
            },
            {
                "rank": 2,
                "id": "JQ-SAN",
                "name": "金桥环卫所",
                "score": 71.0,
                "board": "black",
                "bottom": True,
                "figures": {},
            },
        ]
    }
    content = build_content(WeekData("2026-W47", {"opened": 3}, ranking=tables), WeekData("2026-W46"), T0)
    assert content.red_list == [{"name": "城东环卫所", "value": "98.5"}]
    assert content.black_list == [{"name": "金桥环卫所", "value": "71.0"}]
    assert content.gaps == []
    zh, en = (render_edition(content, lang, {}) for lang in ("zh", "en"))
    assert "环卫作业单位" in zh.markdown and "| 1 | 城东环卫所 | 98.5 | 97.5% | 红榜 |" in zh.markdown
    assert "**黑榜**: 金桥环卫所 (71.0)" in zh.markdown
    assert "Unit type: sanitation" in en.markdown and "| 2 | 金桥环卫所 | 71.0 | — | black bottom |" in en.markdown
    for edition in (zh, en):
        assert edition.html.count('src="data:image/png;base64,') == 1  # rates only: no facets, no empty charts
        assert set(edition.charts) == {
            f"{edition.language}-{n}.png" for n in ("categories", "sources", "rates", "grids")
        }


def test_without_a_cjk_font_charts_fall_back_to_english_labels(monkeypatch) -> None:
    import warnings

    from services.notify.bulletin import charts

    monkeypatch.setattr(charts, "cjk_font", lambda: None)
    facets = {
        "category": [{"key": "0201", "label": "垃圾箱满溢", "count": 3}],
        "grid": [{"key": "CD01-03", "label": "解放路网格", "count": 3}, {"key": "-", "count": 1}],
    }
    content = build_content(WeekData("2026-W47", {"opened": 3}, facets), WeekData("2026-W46"), T0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zh = render_edition(content, "zh", {"0201": "Overflowing bin"})
    assert not [w for w in caught if "missing from font" in str(w.message)]  # no boxes for Chinese glyphs
    assert "垃圾箱满溢" in zh.markdown  # the text stays Chinese; only the chart labels fall back
    assert all(png.startswith(b"\x89PNG") for png in zh.charts.values())
