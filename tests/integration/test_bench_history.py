"""The deadline-scan job of the benchmark times the real scan, on a real store, and checks it against the old one."""

from __future__ import annotations

from datetime import UTC, datetime

from services.dispatch.case import TIMER_FIELD
from xiuhua.bench.scale import case_documents, timers_at_scale


async def test_the_timer_job_times_the_scan_that_finds_the_due_cases(mongo_url: str) -> None:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    docs = case_documents(5_000, now)
    due = sum(1 for d in docs if d.get(TIMER_FIELD, now.timestamp() + 1) <= now.timestamp())
    got = await timers_at_scale(mongo_url, 5_000, progress=lambda _: None, rounds=3, now=now)
    assert (got["cases"], got["open"], got["due"]) == (5_000, sum(1 for d in docs if TIMER_FIELD in d), due)
    assert due > 0 and got["scan_ms"] > 0 and got["scan_by_date_ms"] > 0 and got["repair_ms"] > 0
