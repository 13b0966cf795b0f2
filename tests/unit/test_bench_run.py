"""The benchmark's own arithmetic: store commands per case from two readings, and the city it runs."""

from __future__ import annotations

from pathlib import Path

from xiuhua.city import load_city
from xiuhua.settings import Settings
from xiuhua_tools.bench.run import bench_city, mean_waits, per_case


def test_store_commands_per_case_are_the_difference_between_two_readings() -> None:
    before = {"intake": {"find ledger": 10.0, "insert cases": 4.0, "seconds": 1.0, "docs insert cases": 4.0}}
    after = {
        "intake": {
            "find ledger": 30.0,
            "insert cases": 4.0,
            "insert raw_reports": 40.0,
            "seconds": 3.0,
            "docs insert cases": 4.0,
            "docs insert raw_reports": 400.0,
        },
        "notify": {"update deliveries": 50.0, "seconds": 0.5},  # no reading before: it counted from zero
    }
    got = per_case(before, after, cases=20)
    assert got["intake"] == {
        "commands": 3.0,
        "seconds": 0.1,
        "by_command": {"insert raw_reports": 2.0, "find ledger": 1.0},
        "documents": 20.0,
        "by_document": {"insert raw_reports": 20.0},
    }  # the busiest first; a command that did not move is left out; documents apart from commands
    assert got["notify"] == {
        "commands": 2.5,
        "seconds": 0.025,
        "by_command": {"update deliveries": 2.5},
        "documents": 0,
        "by_document": {},
    }


def test_the_bench_city_holds_alerts_for_nothing_but_the_pipeline(tmp_path: Path) -> None:
    source = Settings().city_dir
    city = load_city(bench_city(source, tmp_path / "city"))
    original = load_city(source)
    assert city.alerts.quiet_hours is None and original.alerts.quiet_hours is not None
    assert city.alerts.rate_limit.per_minute >= 1_000_000 > original.alerts.rate_limit.per_minute
    assert city.alerts.rules == original.alerts.rules and city.units == original.units  # the rest as configured


def test_mean_waits_per_consumer_are_the_difference_between_two_readings() -> None:
    before = {"intake/intake-reports": (2.0, 100.0), "notify/notify-cases": (5.0, 50.0)}
    after = {
        "intake/intake-reports": (3.0, 150.0),
        "notify/notify-cases": (5.0, 50.0),
        "dispatch/dispatch-opened": (0.2, 100.0),
    }  # no reading before: it counted from zero
    got = mean_waits(before, after)
    assert got == {"intake/intake-reports": 20.0, "dispatch/dispatch-opened": 2.0}  # idle consumers left out
    assert list(got) == ["intake/intake-reports", "dispatch/dispatch-opened"]  # the longest first


def test_the_table_shows_the_warm_up_apart_from_the_measured_rate() -> None:
    # The warm-up's cold start is printed on a line of its own, never mixed into the measured phase.
    from xiuhua_tools.bench.run import table

    lat = {"n": 100, "p50_ms": 23.3, "p95_ms": 60.2, "p99_ms": 92.6, "max_ms": 110.1}
    fixed = {"n": 1000, "p50_ms": 15.2, "p95_ms": 32.6, "p99_ms": 44.6, "max_ms": 60.0}
    results = {
        "machine": {"cpus": 2, "mem_gb": 24},
        "warm_up": {"seconds": 2.0, "reports": 100, "report_to_dispatched": lat},
        "fixed_rate": {
            "offered_per_s": 50.0,
            "report_to_opened": fixed,
            "report_to_dispatched": fixed,
            "report_to_alert_delivered": fixed,
        },
        "max_rate": {"reports": 3000, "dispatched": 3000, "scored": 3000, "seconds": 6.7, "cases_per_s": 449},
        "relay": {"hops": 4, "size": 900, "per_s": 3936},
        "ratio_to_relay": 0.11,
        "sensors": {"readings": 20000, "seconds": 1.6, "readings_per_s": 12500},
        "resources": {},
        "dead_letters": 0,
    }
    lines = table(results).splitlines()
    warm = [line for line in lines if line.startswith("warm-up")]
    assert warm == [
        "warm-up 2s at 50/s, not counted: report→dispatched  p50 23.3 · p95 60.2 · p99 92.6 ms (n=100), max 110.1 ms"
    ]
    assert "fixed rate 50/s  report→dispatched  p50 15.2 · p95 32.6 · p99 44.6 ms (n=1000)" in lines
    del results["warm_up"]
    assert not [line for line in table(results).splitlines() if line.startswith("warm-up")]


def test_cpu_per_case_is_each_process_difference_between_two_readings_busiest_first() -> None:
    from xiuhua_tools.bench.run import cpu_ms_per_case

    before = {"intake": 10.0, "nx-27017": 20.0, "notify": 5.0}
    after = {"intake": 13.0, "nx-27017": 26.0, "notify": 5.0, "scoring": 1.0}  # scoring unread before: left out
    got = cpu_ms_per_case(before, after, cases=3000)
    assert got == {"nx-27017": 2.0, "intake": 1.0, "notify": 0.0}
    assert list(got) == ["nx-27017", "intake", "notify"]


def test_the_table_sums_the_bursts_cpu_per_case() -> None:
    from xiuhua_tools.bench.run import table

    results = _results(cpu_ms_per_case={"nx-27017": 1.5, "intake": 0.75})
    assert "CPU ms per case (maximum-rate phase): 2.25 = nx-27017 1.50 · intake 0.75" in table(results).splitlines()


def test_the_timeline_gives_each_stages_first_median_and_last_case_after_the_first_publish() -> None:
    from xiuhua_tools.bench.run import stage_timeline, table

    corrs = ["a", "b", "c"]
    seen = {
        "opened": {"a": 10.5, "b": 11.0, "c": 12.0, "other": 9.0},  # another phase's case: not this burst's
        "dispatched": {"c": 12.5, "a": 11.0, "b": 13.0},  # in any order
        "scored": {},
    }
    got = stage_timeline(10.0, seen, corrs)
    assert got == {
        "opened": {"first": 0.5, "median": 1.0, "last": 2.0},
        "dispatched": {"first": 1.0, "median": 2.5, "last": 3.0},
    }
    results = _results(timeline_s=got)
    line = "maximum rate, seconds to first/median/last case: opened 0.5/1.0/2.0 · dispatched 1.0/2.5/3.0"
    assert line in table(results).splitlines()


def _results(**max_rate: object) -> dict[str, object]:
    """A run's figures with the burst's extra ones given (a table's input)."""
    lat = {"n": 10, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0, "max_ms": 4.0}
    return {
        "machine": {"cpus": 2, "mem_gb": 24},
        "fixed_rate": {
            "offered_per_s": 50.0,
            "report_to_opened": lat,
            "report_to_dispatched": lat,
            "report_to_alert_delivered": lat,
        },
        "max_rate": {"reports": 3000, "dispatched": 3000, "scored": 3000, "seconds": 6.0, "cases_per_s": 500}
        | max_rate,
        "relay": {"hops": 4, "size": 900, "per_s": 3000},
        "ratio_to_relay": 0.17,
        "sensors": {"readings": 20, "seconds": 1.0, "readings_per_s": 20},
        "resources": {},
        "dead_letters": 0,
    }
