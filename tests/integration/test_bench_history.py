"""The history job of the benchmark times the real hot queries on a real store, each against the one it replaced."""

from __future__ import annotations

from datetime import UTC, datetime

from services.dispatch.case import TIMER_FIELD
from xiuhua_tools.bench.scale import MERGE_KEYS, case_documents, history_at_scale, open_case_documents


async def test_the_history_job_times_the_queries_that_find_due_and_open_cases(mongo_url: str) -> None:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    docs = case_documents(5_000, now)
    due = sum(1 for d in docs if d.get(TIMER_FIELD, now.timestamp() + 1) <= now.timestamp())
    copies = open_case_documents(docs, now)
    cells = {f"0201:30:{k}:0" for k in range(0, MERGE_KEYS, MERGE_KEYS // 9)}
    got = await history_at_scale(mongo_url, 5_000, progress=lambda _: None, rounds=3, now=now)
    timers, merge = got["timers"], got["merge"]
    assert (got["cases"], timers["open"], timers["due"]) == (5_000, sum(1 for d in docs if TIMER_FIELD in d), due)
    assert due > 0 and timers["scan_ms"] > 0 and timers["scan_by_date_ms"] > 0 and timers["repair_ms"] > 0
    assert merge["listed"] == sum(1 for d in copies if d["open"])  # the directory built from the copies
    assert merge["found"] == sum(1 for d in copies if d["open"] and d["key"] in cells) > 0
    assert merge["lookup_ms"] > 0 and merge["lookup_by_key_ms"] > 0
    listing = got["open311"]  # a year of requests, the last 90 days listed (up to 1,000)
    assert listing["rows"] == min(1_000, sum(1 for i in range(5_000) if i / 5_000 * 365 <= 90))
    assert listing["listing_ms"] > 0 and listing["listing_by_date_ms"] > 0
    purge = got["purge"]  # 5,000 entries over 30 days: those older than 7 days go, the newest 7 days' stay
    assert purge["deleted"] == sum(1 for i in range(5_000) if i / 5_000 * 30 > 7) == 3_833
    assert purge["select_ms"] > 0 and purge["select_by_date_ms"] > 0 and purge["run_ms"] > 0
