"""Rankings people accept: equal scores share a rank, lists never separate them, nothing assessed is not ranked."""

from __future__ import annotations

from typing import Any

import pytest

from services.notify.bulletin.content import own_boards, rank_units
from services.scoring.ranking import unit_tables
from xiuhua.city.assessment import Ranking
from xiuhua.ranks import standings

RULES = Ranking(red_list=2, black_list=2, bottom_flagged=3)


def _doc(unit: str, score: float, *, kind: str = "quarter", due: int = 4, **extra: Any) -> dict[str, Any]:
    return {"unit_id": unit, "role": "community", "score": score, "rates": {}, "due": due, "kind": kind, **extra}


def _table(scores: dict[str, float], rules: Ranking = RULES, kind: str = "quarter") -> list[dict[str, Any]]:
    tables, apart = unit_tables([_doc(u, s, kind=kind) for u, s in scores.items()], rules, {})
    assert apart == {}
    return tables["community"]


def _lists(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    return {
        "red": [r["id"] for r in rows if r["board"] == "red"],
        "black": [r["id"] for r in rows if r["board"] == "black"],
        "bottom": [r["id"] for r in rows if r["bottom"]],
    }


def test_six_communities_all_equal_are_on_no_list_and_share_the_first_rank() -> None:
    rows = _table({f"C{i}": 30.0 for i in range(6)}, Ranking(red_list=3, black_list=3, bottom_flagged=3))
    assert [r["rank"] for r in rows] == [1] * 6 and all(r["tied"] for r in rows)
    assert _lists(rows) == {"red": [], "black": [], "bottom": []}


@pytest.mark.parametrize("order", [("A", "B"), ("B", "A")])
def test_two_units_equal_on_no_list_two_units_apart_one_each(order: tuple[str, str]) -> None:
    equal = _table({order[0]: 80.0, order[1]: 80.0})
    assert _lists(equal) == {"red": [], "black": [], "bottom": []}
    apart = _table({order[0]: 80.0, order[1]: 79.99})
    assert _lists(apart) == {"red": [order[0]], "black": [order[1]], "bottom": []}
    assert [r["rank"] for r in apart] == [1, 2] and not any(r["tied"] for r in apart)


def test_a_tie_at_the_red_boundary_is_listed_whole() -> None:
    rows = _table({"A": 100, "B": 90, "C": 90, "D": 80, "E": 70, "F": 60, "G": 50, "H": 40})
    assert [r["rank"] for r in rows] == [1, 2, 2, 4, 5, 6, 7, 8]
    assert _lists(rows)["red"] == ["A", "B", "C"]
    # Just inside the boundary: one 90 only, the list is exactly two.
    assert _lists(_table({"A": 100, "B": 90, "C": 89, "D": 80, "E": 70, "F": 60}))["red"] == ["A", "B"]


def test_a_tie_at_the_black_and_bottom_boundary_is_listed_whole() -> None:
    rows = _table({"A": 100, "B": 95, "C": 90, "D": 85, "E": 80, "F": 30, "G": 30, "H": 30, "I": 30})
    assert _lists(rows) == {"red": ["A", "B"], "black": ["F", "G", "H", "I"], "bottom": ["F", "G", "H", "I"]}
    exact = _table({"A": 100, "B": 95, "C": 90, "D": 85, "E": 80, "F": 70, "G": 30, "H": 30})
    assert _lists(exact) == {"red": ["A", "B"], "black": ["G", "H"], "bottom": ["F", "G", "H"]}


def test_the_bottom_three_are_flagged_in_the_quarter_only() -> None:
    scores = {"A": 100, "B": 95, "C": 90, "D": 85, "E": 80, "F": 70}
    assert _lists(_table(scores))["bottom"] == ["D", "E", "F"]
    for kind in ("week", "month", "year"):
        assert _lists(_table(scores, kind=kind))["bottom"] == [], kind
    assert _lists(_table(scores, Ranking(bottom_periods=["month"]), kind="month"))["bottom"] == ["D", "E", "F"]


def test_a_unit_with_nothing_assessed_is_listed_apart_not_ranked() -> None:
    docs = [
        _doc("A", 90.0),
        _doc("B", 100.0, due=0, dispatched=3),
        _doc("C", 99.5, due=0, deductions={"supervisor_found": 0.5}),
        _doc("D", 80.0),
    ]
    tables, apart = unit_tables(docs, RULES, {"B": "新塘社区"})
    assert [r["id"] for r in tables["community"]] == ["C", "A", "D"]  # a finding is assessed even with nothing due
    assert apart == {
        "community": [
            {
                "id": "B",
                "name": "新塘社区",
                "reason": "no_cases",
                "figures": {
                    "due": 0,
                    "closed": None,
                    "overdue": None,
                    "on_time_rate": None,
                    "on_time_closure_rate": None,
                    "closure_rate": None,
                    "satisfaction_rate": None,
                },
            }
        ]
    }


def test_standings_count_strictly_better_and_worse() -> None:
    s = standings([5.0, 4.0, 4.0, 3.0], 1, 1, 0)
    assert [(x.rank, x.tied, x.red, x.black) for x in s] == [
        (1, False, True, False),
        (2, True, False, False),
        (2, True, False, False),
        (4, False, False, True),
    ]


def test_the_bulletins_own_ranking_shares_ranks_and_keeps_ties_together() -> None:
    facets = [
        {"key": k, "label": k, "resolved": 10, "resolved_on_time": ok, "overdue": 0}
        for k, ok in [("A", 10), ("B", 9), ("C", 9), ("D", 5), ("E", 4), ("F", 4)]
    ]
    ranked = rank_units(facets)
    assert [(u.unit_id, u.rank) for u in ranked] == [("A", 1), ("B", 2), ("C", 2), ("D", 4), ("E", 5), ("F", 5)]
    red, black = own_boards(ranked, 2)
    assert [u["name"] for u in red] == ["A", "B", "C"] and red[1]["tied"] == "1" and "tied" not in red[0]
    assert [u["name"] for u in black] == ["F", "E"]
