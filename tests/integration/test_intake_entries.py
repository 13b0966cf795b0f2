"""A case intake opens is one document: its Open311 request, with the opening folded in, and intake's entry for
merging. The view's consumer finds the opening folded and leaves the document to the dispatch; merging reads only
the entry's fields; closing and reopening follow it there and in the merge directory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.cases import CaseClosed, CaseReopened
from services.intake.app import SPEC
from services.intake.open311.projection import REQUESTS
from services.intake.store import ENTRIES, ENTRY_FIELDS, OPEN, OPEN_KEYS, BatchIO
from tests.helpers import BusRecorder, connect, eventually, publish
from xiuhua.clock import FrozenClock
from xiuhua.service import Runtime, running

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _grid(report_id: str, lng: float = 120.155) -> dict[str, Any]:
    return {
        "report_id": report_id,
        "reported_at": (NOW - timedelta(minutes=1)).isoformat(),
        "inspector_id": "G-1",
        "description": "垃圾箱满溢",
        "category_code": "0201",
        "location": {"lng": lng, "lat": 30.255},
    }


async def _view_drained(url: str) -> Any:
    nc = await connect(url, "operator")
    try:
        info = await nc.jetstream().consumer_info("XH_CASES", "intake-open311")
        return info if info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq else None
    finally:
        await nc.close()


def _documents_written(rt: Runtime, collection: str) -> float:
    """Documents intake's store commands wrote to `collection` (`xiuhua_store_documents_total`)."""
    return sum(
        sample.value
        for metric in rt.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "xiuhua_store_documents_total" and sample.labels.get("collection") == collection
    )


async def _entry(rt: Runtime, case_id: str) -> dict[str, Any]:
    doc = await rt.store[ENTRIES].find_one({"_id": case_id})
    assert doc is not None
    return doc


async def test_a_case_opened_is_one_document_its_request_and_its_entry(settings) -> None:
    assert ENTRIES == REQUESTS
    async with BusRecorder(settings.nats_url) as bus, running(SPEC, settings, clock=FrozenClock(NOW)) as rt:
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RE-1"))
        opened = (await eventually(lambda: bus.on("case.v1.opened.")))[0]
        await eventually(lambda: _view_drained(settings.nats_url))
        doc = await _entry(rt, opened["case_id"])
        # Written once, by intake as it opened the case, the opening folded in: the view wrote it no second time.
        assert doc["version"] == 1 and doc["applied"] == [opened["event_id"]]
        assert _documents_written(rt, REQUESTS) == 1
        assert (doc["status"], doc["status_notes"], doc["service_code"]) == ("open", "已立案 registered", "0201")
        assert doc["requested_s"] == datetime.fromisoformat(opened["reported_at"]).timestamp()
        assert (doc["open"], doc["reporters"], doc["key"] is not None) == (True, 1, True)
        assert await rt.store.count(OPEN) == 0  # no separate entry
        # Merging reads the entry's fields, not the request's text.
        io = BatchIO(rt.store, None, NOW, reads=None)  # type: ignore[arg-type]
        await io.prefetch_cases([opened["case_id"]])
        assert set(io.cases[opened["case_id"]] or {}) == {"_id", *ENTRY_FIELDS}
        # A near report joins it: the entry's reporters, then the view's count, in the same document.
        await publish(settings.nats_url, "report.v1.in.grid", _grid("RE-2", lng=120.15502))
        merged = (await eventually(lambda: bus.on("case.v1.merged.")))[0]
        assert merged["case_id"] == opened["case_id"] and merged["reporters_count"] == 2
        doc = await eventually(lambda: rt.store[ENTRIES].find_one({"_id": opened["case_id"], "reports": 2}))
        assert doc["reporters"] == 2 and doc["open"] is True and doc["version"] == 2


async def test_closing_and_reopening_follow_the_entry_in_its_request_and_the_directory(settings) -> None:
    url = settings.nats_url
    async with BusRecorder(url) as bus, running(SPEC, settings, clock=FrozenClock(NOW)) as rt:
        await publish(url, "report.v1.in.grid", _grid("RE-3"))
        case_id = (await eventually(lambda: bus.on("case.v1.opened.")))[0]["case_id"]
        key = (await _entry(rt, case_id))["key"]
        closed = CaseClosed(case_id=case_id, street_code="CD", unit_id="CD-SAN", on_time=True, closed_by="verification")
        await publish(url, closed.subject_for(), closed.to_json(), msg_id=closed.event_id)
        # The entry closes; the view's status and `closed_s` (the purge's range, from the request's last change).
        doc = await eventually(lambda: rt.store[ENTRIES].find_one({"_id": case_id, "open": False, "status": "closed"}))
        assert doc["closed_s"] == closed.occurred_at.timestamp() and doc["reporters"] == 1
        assert (await rt.store[OPEN_KEYS].find_one({"_id": key}))["ids"] == []
        await publish(url, "report.v1.in.grid", _grid("RE-4", lng=120.15501))  # the closed case absorbs nothing
        await eventually(lambda: len(bus.on("case.v1.opened.")) == 2)
        reopened = CaseReopened(case_id=case_id, street_code="CD", unit_id="CD-SAN", reason="问题复发")
        await publish(url, reopened.subject_for(), reopened.to_json(), msg_id=reopened.event_id)
        doc = await eventually(lambda: rt.store[ENTRIES].find_one({"_id": case_id, "open": True, "status": "open"}))
        assert "closed_s" not in doc  # open: out of the purge's range
        assert (await rt.store[OPEN_KEYS].find_one({"_id": key}))["ids"].count(case_id) == 1
