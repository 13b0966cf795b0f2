"""The chaos tally's check of the weekly bulletin: each opening and each dispatch in the stream counted once."""

from __future__ import annotations

from collections import Counter

from xiuhua_tools.chaos.tally import Tally, _count_bulletin


def _tally(opened: int, dispatched: int) -> Tally:
    return Tally(events={"opened": opened, "dispatched": dispatched, "acknowledged": 3})


def test_counts_equal_to_the_stream_are_neither_lost_nor_duplicated() -> None:
    t = _tally(79, 80)
    _count_bulletin(t, Counter(opened=79, dispatched=80))
    assert (t.lost, t.duplicated, t.problems) == (0, 0, [])
    assert t.bulletin == {"opened": 79, "dispatched": 80}


def test_one_opening_short_is_one_lost() -> None:
    t = _tally(79, 79)
    _count_bulletin(t, Counter(opened=78, dispatched=79))
    assert (t.lost, t.duplicated) == (1, 0)
    assert t.problems == ["1 case.v1.opened event(s) the bulletin does not count"]


def test_one_dispatch_counted_twice_is_one_duplicated() -> None:
    t = _tally(79, 79)
    _count_bulletin(t, Counter(opened=79, dispatched=80))
    assert (t.lost, t.duplicated) == (0, 1)
    assert t.problems == ["1 case.v1.dispatched event(s) the bulletin counts twice"]


def test_nothing_counted_when_nothing_happened() -> None:
    t = Tally()
    _count_bulletin(t, Counter())
    assert (t.lost, t.duplicated, t.bulletin) == (0, 0, {"opened": 0, "dispatched": 0})
