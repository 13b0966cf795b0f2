"""Retention as city data (`retention.yaml`): durations, defaults, the ledger's least horizon, errors by line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from contracts import streams
from xiuhua.city import CityDataError, load_city
from xiuhua.city.retention import DAY, LONGEST_DUPLICATE_WINDOW_S, RetentionFile, seconds_of
from xiuhua.retention import NAK_BACKOFF_CAP_S, check_ledger_horizon, cutoff, shortest_ledger_horizon
from xiuhua.settings import DEMO_CITY


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90d", 90 * DAY),
        ("12h", 43_200.0),
        ("30m", 1_800.0),
        ("45s", 45.0),
        ("2.5m", 150.0),
        (600, 600.0),
        ("600", 600.0),
    ],
)
def test_durations_read_with_their_unit(text: object, seconds: float) -> None:
    assert seconds_of(text) == seconds


@pytest.mark.parametrize("text", ["7 days", "d", "-3d", "1w", True])
def test_a_duration_without_a_known_unit_is_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        seconds_of(text)


def test_the_defaults_keep_the_ledger_a_week_reports_and_cases_the_archive_rule_and_telemetry_shorter() -> None:
    policy = RetentionFile()
    assert (policy.ledger, policy.raw_reports, policy.closed_cases, policy.telemetry, policy.every) == (
        7 * DAY,
        800 * DAY,
        800 * DAY,
        30 * DAY,
        3600,
    )
    assert policy.telemetry < policy.raw_reports
    assert policy.stream_ages() == {s.name: s.max_age_s for s in streams.ALL}


def test_a_ledger_horizon_at_the_duplicate_window_is_refused_one_second_past_it_taken() -> None:
    with pytest.raises(ValueError, match="duplicate window"):
        RetentionFile(ledger=LONGEST_DUPLICATE_WINDOW_S)
    assert RetentionFile(ledger=LONGEST_DUPLICATE_WINDOW_S + 1).ledger == LONGEST_DUPLICATE_WINDOW_S + 1


def test_the_ledger_must_outlive_the_duplicate_window_plus_the_longer_of_ack_wait_and_back_off() -> None:
    assert shortest_ledger_horizon(60.0) == LONGEST_DUPLICATE_WINDOW_S + 60.0
    assert shortest_ledger_horizon(10.0) == LONGEST_DUPLICATE_WINDOW_S + NAK_BACKOFF_CAP_S  # back-off the longer
    least = shortest_ledger_horizon(60.0)
    with pytest.raises(ValueError, match="too short"):
        check_ledger_horizon(RetentionFile(ledger=least), 60.0, "retention.yaml:3")
    check_ledger_horizon(RetentionFile(ledger=least + 1), 60.0, "retention.yaml:3")


def test_the_cutoff_keeps_a_document_exactly_at_the_horizon() -> None:
    # The purge deletes what is strictly below the cutoff: the document at it is the oldest kept.
    assert cutoff(1_000_000.0, 3_600.0) == 996_400.0


def test_stream_ages_override_the_contracts_per_stream() -> None:
    policy = RetentionFile(streams={"XH_REPORTS": "14d"})
    ages = policy.stream_ages()
    assert ages["XH_REPORTS"] == 14 * DAY
    assert ages["XH_CASES"] == streams.CASES.max_age_s


def test_a_stream_age_inside_its_duplicate_window_or_an_unknown_stream_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate window"):
        RetentionFile(streams={"XH_CASES": streams.CASES.duplicate_window_s})
    RetentionFile(streams={"XH_CASES": streams.CASES.duplicate_window_s + 1})
    with pytest.raises(ValueError, match="unknown stream XH_NOPE"):
        RetentionFile(streams={"XH_NOPE": "1d"})


def _city_with(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "city"
    shutil.copytree(DEMO_CITY, folder)
    (folder / "retention.yaml").write_text(text, encoding="utf-8")
    return folder


def test_a_city_sets_its_retention_in_retention_yaml(tmp_path: Path) -> None:
    city = load_city(_city_with(tmp_path, "every: 10m\nledger: 3d\ntelemetry: 7d\n"))
    assert (city.retention.every, city.retention.ledger, city.retention.telemetry) == (600.0, 3 * DAY, 7 * DAY)
    assert city.retention.raw_reports == 800 * DAY  # what it leaves out keeps its default
    assert load_city(DEMO_CITY).retention == RetentionFile()  # no file: the defaults


def test_a_bad_retention_file_names_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    folder = _city_with(tmp_path, "# kept\nevery: 1h\nledger: 90s\n")
    with pytest.raises(CityDataError) as err:
        load_city(folder)
    assert f"{folder / 'retention.yaml'}:3: ledger: " in str(err.value)
    (folder / "retention.yaml").write_text("every: 1h\nkeep_forever: true\n", encoding="utf-8")
    with pytest.raises(CityDataError, match=r"retention.yaml:2: keep_forever: Extra inputs"):
        load_city(folder)


def test_a_retained_collection_naming_no_horizon_of_the_file_is_refused_when_the_job_is_built() -> None:
    from datetime import UTC, datetime

    from xiuhua.clock import FrozenClock
    from xiuhua.retention import Retained, RetentionJob

    clock = FrozenClock(datetime(2026, 11, 23, tzinfo=UTC))
    with pytest.raises(ValueError, match="no such retention horizon: outbox"):
        RetentionJob(None, RetentionFile(), [Retained("outbox", "at_s", "outbox")], clock)  # type: ignore[arg-type]
    assert RetentionJob(None, RetentionFile(), [Retained("raw_reports", "received_s", "raw_reports")], clock)  # type: ignore[arg-type]
    # A floor naming no stream is refused the same way.
    with pytest.raises(ValueError, match="no such retention horizon: XH_NOPE"):
        RetentionJob(None, RetentionFile(), [Retained("f", "s", "closed_cases", at_least_stream="XH_NOPE")], clock)  # type: ignore[arg-type]
    assert RetentionJob(None, RetentionFile(), [Retained("f", "s", "closed_cases", at_least_stream="XH_CASES")], clock)  # type: ignore[arg-type]
