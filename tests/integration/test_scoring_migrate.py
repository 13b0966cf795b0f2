"""Stored figures move to new rules by a rebuild: `xiuhua scoring rebuild --apply` makes the live documents what the
replay of the history makes them (run with scoring stopped), after which `--check` finds nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from services.scoring.rebuild import rebuild_and_check
from services.scoring.store import CASE_FACTS, UNIT_PERIODS
from tests.helpers import as_operator, eventually
from tests.helpers.bus import publish_all
from tests.helpers.scoring import history
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import running
from xiuhua.store import Store


async def _folded(settings, city, events) -> None:
    """Scoring run over `events` until a check finds the live store what a replay makes it."""
    scoring = spec("scoring")
    async with running(scoring, settings, clock=FrozenClock(datetime(2026, 12, 31, 17, tzinfo=UTC)), city=city):
        # Each event as the service that publishes it (intake's openings, dispatch's lifecycle).
        await publish_all(settings.nats_url, [(e.subject_for(), e.to_json(), e.event_id) for e in events])

        async def folded() -> bool:
            return (await rebuild_and_check(as_operator(settings), city)).differences == []

        await eventually(folded, timeout=60, interval=1.0)


async def test_apply_replaces_figures_an_older_build_stored(settings, city):
    await _folded(settings, city, history(3, 12))

    # What an older build left: dispatch facts without their deadline, a unit document counted another way.
    live = Store(settings.mongo_url, settings.database("scoring"))
    try:
        async for d in live[CASE_FACTS].find({}):
            old = [{k: v for k, v in f.items() if k != "due"} for f in d["facts"]]
            await live[CASE_FACTS].replace_one({"_id": d["_id"]}, {"_id": d["_id"], "facts": old})
        some = await live[UNIT_PERIODS].find_one({})
        await live[UNIT_PERIODS].update_one({"_id": some["_id"]}, {"$inc": {"due": 3}})
    finally:
        await live.close()

    migrated = await rebuild_and_check(as_operator(settings), city, apply=True)
    assert migrated.differences and migrated.applied[CASE_FACTS] > 0
    assert (await rebuild_and_check(as_operator(settings), city)).differences == []


async def test_the_openings_an_older_build_kept_are_no_difference(settings, city):
    # An older build kept every case's opening among its facts; this one keeps a merchant's only. Its stored facts
    # are this build's with the openings back in, and a case opened but never dispatched has a document of its
    # opening alone: the check finds the live store and the replay the same, and the figures are untouched.
    events = history(5, 8)
    openings = {e.case_id: e for e in events if type(e).__name__ == "CaseOpened" and not e.merchant_id}
    assert openings, "the history has ordinary openings"
    await _folded(settings, city, events)

    live = Store(settings.mongo_url, settings.database("scoring"))
    try:
        stored = {d["_id"]: d async for d in live[CASE_FACTS].find({})}
        assert not any(f["t"] == "opened" for d in stored.values() for f in d["facts"] if not f.get("merchant"))
        for case_id, ev in openings.items():
            fact = {"id": ev.event_id, "at": ev.occurred_at.isoformat(), "t": "opened", "sf": False, "urgent": False}
            doc = stored.get(case_id, {"_id": case_id, "facts": []})
            await live[CASE_FACTS].replace_one({"_id": case_id}, {**doc, "facts": [fact, *doc["facts"]]}, upsert=True)
        await live[CASE_FACTS].insert_one({"_id": "C-NEVER", "facts": [{**fact, "id": "e-never"}]})
    finally:
        await live.close()
    assert (await rebuild_and_check(as_operator(settings), city)).differences == []
