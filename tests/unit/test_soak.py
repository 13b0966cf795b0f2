"""The soak's figures from its samples: storage per case, the ledger's course once its horizon is behind it."""

from __future__ import annotations

from pathlib import Path

import yaml

from xiuhua.city import load_city
from xiuhua.settings import DEMO_CITY
from xiuhua_tools.bench.soak import Sample, per_case, soak_city, summary, table


def _s(seconds: float, cases: int, store: int, streams: int, ledger: int) -> Sample:
    return Sample(seconds, cases, store, streams, {"intake": ledger // 2, "notify": ledger - ledger // 2})


SAMPLES = [
    _s(0, 0, 1_000, 0, 0),
    _s(60, 100, 11_000, 2_000, 400),
    _s(120, 200, 21_000, 4_000, 800),
    _s(180, 300, 26_000, 6_000, 810),  # past the horizon (100 s) and a purge (20 s): the ledger holds
    _s(240, 400, 31_000, 8_000, 790),
]


def test_bytes_per_case_are_what_the_window_added_over_the_cases_it_dispatched() -> None:
    assert per_case(SAMPLES, "store_bytes") == 30_000 / 400
    assert per_case(SAMPLES, "stream_bytes") == 20.0
    assert per_case(SAMPLES, "store_bytes", since=120) == 10_000 / 200  # from the sample at 120 s on
    assert per_case(SAMPLES[:1], "store_bytes") == 0.0  # one sample: nothing to divide
    assert per_case([SAMPLES[0], _s(60, 0, 5_000, 0, 0)], "store_bytes") == 0.0  # no case: no figure


def test_the_ledger_is_followed_from_the_first_sample_a_purge_past_the_horizon_could_have_trimmed() -> None:
    # Horizon 100 s + a purge every 20 s: the sample exactly at 120 s is the first counted.
    figures = summary(SAMPLES, horizon=100.0, every=20.0)
    assert figures["ledger_past_horizon"] == {
        "from": 800,
        "to": 790,
        "min": 790,
        "max": 810,
        "cases_from": 200,
        "cases_to": 400,
    }
    assert figures["cases"] == 400
    later = summary(SAMPLES, horizon=100.0, every=21.0)["ledger_past_horizon"]  # 121 s: the sample at 120 is not
    assert (later["from"], later["cases_from"], later["max"]) == (810, 300, 810)


def test_a_soak_shorter_than_the_horizon_says_so() -> None:
    figures = summary(SAMPLES[:3], horizon=600.0, every=20.0)
    assert "ledger_past_horizon" not in figures
    assert "ended before its horizon" in table(SAMPLES[:3], figures)


def test_the_table_prints_the_figures_per_case_and_the_ledger_course() -> None:
    text = table(SAMPLES, summary(SAMPLES, horizon=100.0, every=20.0))
    assert "400 cases in 4.0 min: store 0.1 KB/case" in text and "streams 0.0 KB/case" in text
    assert "800 → 790 documents (min 790, max 810) while cases went 200 → 400" in text


def test_the_soak_city_shortens_only_the_ledger_horizon_and_the_purge_interval(tmp_path: Path) -> None:
    folder = soak_city(DEMO_CITY, tmp_path / "city", ledger=240.0, every=20.0)
    written = yaml.safe_load((folder / "retention.yaml").read_text(encoding="utf-8"))
    assert (written["ledger"], written["every"]) == ("240s", "20s")
    city = load_city(folder)
    assert (city.retention.ledger, city.retention.every) == (240.0, 20.0)
    assert city.retention.raw_reports == load_city(DEMO_CITY).retention.raw_reports
