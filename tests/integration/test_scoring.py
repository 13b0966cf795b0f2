"""Scoring on a real bus and store: live documents equal the pure fold, merchants are warned then escalated,
queries answer, a closed period's ranking goes out once with two instances, and `xiuhua scoring rebuild --check`
finds the live store identical to a replay of the history (and says so when it is not)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from contracts.reports import MerchantCheck
from services.scoring import closing, query, rebuild, units
from services.scoring.query import QUERY_MERCHANT, QUERY_RANKING, QUERY_UNIT
from services.scoring.rebuild import archive_caught_up, archived_up_to, rebuild_and_check
from services.scoring.store import MERCHANT_PERIODS, MERCHANTS, UNIT_PERIODS
from services.scoring.window import Window
from tests.helpers import BusRecorder, as_operator, connect, eventually
from tests.helpers.bus import publish_all
from tests.helpers.notify import all_acknowledged
from tests.helpers.scoring import aged, history
from xiuhua.clock import FrozenClock
from xiuhua.registry import spec
from xiuhua.service import running

CHECK_SUBJECT = "report.v1.in.merchant_check"


def _checks() -> list[MerchantCheck]:
    at = datetime(2026, 12, 10, 2, tzinfo=UTC)
    return [
        MerchantCheck(
            check_id="K1",
            merchant_id="M-CD-0001",
            checked_at=at,
            inspector_id="G-1",
            items={"hygiene": "fail", "order": "pass", "greenery": "pass"},
        ),
        MerchantCheck(
            check_id="K2",
            merchant_id="M-CD-0001",
            checked_at=at.replace(day=17),
            inspector_id="G-1",
            items={"hygiene": "fail", "order": "fail", "greenery": "pass"},
        ),
        MerchantCheck(
            check_id="K3",
            merchant_id="M-CD-0002",
            checked_at=at,
            inspector_id="G-1",
            items={"hygiene": "pass", "order": "pass", "greenery": "pass"},
        ),
        MerchantCheck(
            check_id="K4",
            merchant_id="M-CD-0003",
            checked_at=at.replace(day=3),
            inspector_id="G-1",
            items={"hygiene": "fail", "order": "fail", "greenery": "pass", "facilities": "pass", "appearance": "fail"},
        ),
    ]


async def _request(url: str, subject: str, body: dict) -> dict:
    nc = await connect(url, "command_centre")
    try:
        return json.loads((await nc.request(subject, json.dumps(body).encode(), timeout=5)).data)
    finally:
        await nc.close()


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "XIUHUA_NATS_URL": settings.nats_url,
        "XIUHUA_MONGO_URL": settings.mongo_url,
        "XIUHUA_DB_PREFIX": settings.db_prefix,
        "XIUHUA_CITY_DIR": str(settings.city_dir),
        "XIUHUA_VAR_DIR": str(settings.var_dir),  # this test's embedded default: the operator's password is there
    }
    exe = os.path.join(os.path.dirname(sys.executable), "xiuhua")
    return subprocess.run([exe, "scoring", *args], env=env, capture_output=True, text=True, timeout=300)


async def test_live_scores_equal_the_fold_and_a_rebuild(settings, city, monkeypatch):
    events = history(11, 40)
    rnd = random.Random(5)
    wire = [(e.subject_for(), e.to_json(), e.event_id) for e in events]
    # Redelivered copies with new message ids (a resend after the duplicate window): applied as messages,
    # but the fold sees the same event id and counts them once.
    wire += [(s, b, f"{i}-again") for s, b, i in rnd.sample(wire, 40)]
    rnd.shuffle(wire)
    wire += [(CHECK_SUBJECT, c.model_dump_json().encode(), f"check:{c.check_id}") for c in _checks()]
    wire.append((CHECK_SUBJECT, _checks()[1].model_dump_json().encode(), "check:K2-resent"))  # same check_id
    expected = units.UnitFold()
    for e in events:
        expected.apply(e)

    clock = FrozenClock(datetime(2026, 12, 31, 17, 0, tzinfo=UTC))  # 2027-01-01 01:00 in Shanghai
    scoring = spec("scoring")
    async with (
        BusRecorder(settings.nats_url) as bus,
        running(scoring, settings, clock=clock, city=city) as rt1,
        running(scoring, settings, clock=clock, city=city) as rt2,
    ):
        await publish_all(settings.nats_url, wire)

        async def settled() -> bool:
            docs = {d["_id"]: d async for d in rt1.store[UNIT_PERIODS].find({})}
            if docs.keys() != expected.docs.keys():
                return False
            return all(docs[k][c] == expected.docs[k]["c"].get(c, 0) for k in docs for c in units.COUNTERS)

        await eventually(settled, timeout=120, interval=0.5)
        # Published after the commit the store just showed: the recorder may see it a moment later.
        await eventually(lambda: bus.on("score.v1.unit_updated"), timeout=10)

        # Merchants: the first failure a warning, the second escalated once; the resent check changes nothing.
        escalated = await eventually(lambda: bus.on("score.v1.merchant_escalated"), timeout=30)
        await asyncio.sleep(1.0)
        assert len(bus.on("score.v1.merchant_escalated")) == 1
        assert escalated[0]["merchant_id"] == "M-CD-0001" and escalated[0]["violations"] == 2
        assert escalated[0]["street_code"] == "CD" and escalated[0]["period"] == "2026-12"
        card = await rt1.store[MERCHANTS].find_one({"_id": "M-CD-0001"})
        # 100 − 5 − (5 + 5): the month alone is B, but a C shop does not rise on one month, and the escalated
        # month would keep it in C anyway.
        assert card["grade"] == "C" and card["points"] == 85.0 and card["basis"]["escalated_months"] == ["2026-12"]
        changed = bus.on("score.v1.merchant_grade_changed")
        # M-CD-0001 (class C) never rises on one month; M-CD-0002 (B) does not become A on one clean check;
        # M-CD-0003 (A) falls to B at once on a month of 85 points.
        assert sorted((c["merchant_id"], c["previous"], c["grade"]) for c in changed) == [("M-CD-0003", "A", "B")]

        # Queries over core NATS request/reply.
        some_id, some = next(iter(expected.docs.items()))
        reply = await _request(settings.nats_url, QUERY_UNIT, {"unit_id": some["unit_id"], "period": some["period"]})
        figures = reply["periods"][some["period"]]
        assert figures["dispatched"] == some["c"].get("dispatched", 0) and "score" in figures
        reply = await _request(settings.nats_url, QUERY_MERCHANT, {"merchant_id": "M-CD-0001", "period": "2026-12"})
        assert reply["grade"] == "C" and reply["month"]["failures"] == 2 and reply["month"]["escalated"]
        reply = await _request(settings.nats_url, QUERY_RANKING, {"kind": "unit", "period": "2026-12"})
        assert set(reply["tables"]) <= {"sanitation", "enforcement"} and reply["tables"]
        reply = await _request(settings.nats_url, QUERY_UNIT, {})
        assert reply["error"]["code"] == "bad_request" and reply["error"]["message"] == "bad request"
        reply = await _request(settings.nats_url, QUERY_MERCHANT, {"merchant_id": "M-CD-0001", "period": "12/2026"})
        assert reply["error"]["code"] == "bad_period"

        # A failure inside the service: the caller gets a code and a reference, never the exception text.
        def broken(*args: object) -> None:
            raise RuntimeError("store at mongodb://10.1.2.3:27017 said: secret detail")

        monkeypatch.setattr(query, "unit_ranking", broken)
        raw = await _request(settings.nats_url, QUERY_RANKING, {"kind": "unit"})
        assert raw["error"]["code"] == "internal" and raw["error"]["correlation_id"].startswith("q-")
        assert "secret detail" not in json.dumps(raw) and "RuntimeError" not in json.dumps(raw)
        monkeypatch.undo()

        # Period close with two instances racing: each closed period's ranking is published once.
        await asyncio.gather(closing.close_periods(rt1), closing.close_periods(rt2))
        await asyncio.gather(closing.close_periods(rt1), closing.close_periods(rt2))
        rankings = await eventually(
            lambda: len(bus.on("score.v1.ranking_published")) >= 5 and bus.on("score.v1.ranking_published")
        )
        await asyncio.sleep(0.5)
        keys = sorted((r["kind"], r["period"]) for r in bus.on("score.v1.ranking_published"))
        assert keys == [
            ("merchant", "2026-12"),
            ("unit", "2026"),
            ("unit", "2026-12"),
            ("unit", "2026-Q4"),
            ("unit", "2026-W52"),
        ]  # 2027-01-01 is a Friday of 2026-W53, still open
        month = next(r for r in rankings if r["kind"] == "unit" and r["period"] == "2026-12")
        for role, rows in month["tables"].items():
            assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1)), role
            assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
        merchant_month = next(r for r in rankings if r["kind"] == "merchant")
        assert merchant_month["tables"]["CD"][-1]["id"] == "M-CD-0001"

        # The replay into a fresh database is identical, in-process (in batches of 7, each applied while the next
        # is read) and through the command.
        monkeypatch.setattr(rebuild, "BATCH", 7)
        heard: list[tuple[str, int, int]] = []
        report = await rebuild_and_check(as_operator(settings), city, progress=lambda *p: heard.append(p))
        assert report.replayed["XH_CASES"] == len(events) + 40
        assert report.replayed["XH_CHECKS"] == 5
        assert report.differences == [], report.differences[:3]
        # Each stream's total is known before its first message, and reached at its end.
        cases = len(events) + 40
        assert [h for h in heard if h[1] in (0, h[2])] == [
            ("XH_CASES", 0, cases),
            ("XH_CASES", cases, cases),
            ("XH_CHECKS", 0, 5),
            ("XH_CHECKS", 5, 5),
        ]
        assert ("XH_CASES", 7, cases) in heard  # counted batch by batch in between
        done = await asyncio.to_thread(_cli, settings, "rebuild", "--check")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "identical" in done.stdout
        # Not a terminal: a line per stream, no bar.
        assert f"  replaying XH_CASES ({cases} messages)\n  replaying XH_CHECKS (5 messages)\n" in done.stderr

        # XH_REPORTS drops the checks after 90 days (it also carries sensor telemetry); the archive keeps them.
        nc = await connect(settings.nats_url, "operator")
        try:
            await nc.jetstream().purge_stream("XH_REPORTS")
        finally:
            await nc.close()
        report = await rebuild_and_check(as_operator(settings), city)
        assert report.replayed["XH_CHECKS"] == 5 and report.differences == []
        assert report.window["XH_CHECKS"] is None and report.outside_window["merchant_periods"] == 0

        # A live document that drifted is reported, and the command fails.
        await rt1.store[UNIT_PERIODS].update_one({"_id": some_id}, {"$inc": {"closed": 7}})
        done = await asyncio.to_thread(_cli, settings, "rebuild", "--check", "--json")
        assert done.returncode == 1
        out = json.loads(done.stdout)
        assert [(d["collection"], d["problem"], sorted(d["fields"])) for d in out["differences"]] == [
            ("unit_periods", "fields", ["closed"])
        ]

        shown = await asyncio.to_thread(_cli, settings, "show", "merchant", "M-CD-0001", "--period", "2026-12")
        assert shown.returncode == 0 and "grade C" in shown.stdout, shown.stdout + shown.stderr


async def test_archive_caught_up_waits_for_the_check_just_published(settings):
    # The source's lag reads 0 until the server first measures it: only the archived copy's own header says how
    # far the archive has got. A rebuild right after a check must find it.
    nc = await connect(settings.nats_url, "operator")
    try:
        js = nc.jetstream()
        for i in range(3):
            check = _checks()[i].model_copy(update={"check_id": f"JUST-{i}"})
            ack = await js.publish(CHECK_SUBJECT, check.model_dump_json().encode())
        await archive_caught_up(js)
        last = await js.get_last_msg("XH_CHECKS", CHECK_SUBJECT)
        assert archived_up_to(last) == ack.seq
        assert json.loads(last.data)["check_id"] == "JUST-2"
    finally:
        await nc.close()


async def test_rebuild_compares_what_the_streams_still_hold(settings, city):
    old_events = aged(history(21, 12), "OLD-", 150)  # July–September 2026
    straddling = aged(history(31, 1), "STR-", 0)  # opened long ago, handled lately
    straddling[:2] = aged(straddling[:2], "", 150)
    new_events = history(11, 12)

    def check(cid: str, mid: str, at: datetime, result: str) -> MerchantCheck:
        items = {"hygiene": result, "order": "pass", "greenery": "pass"}
        return MerchantCheck(check_id=cid, merchant_id=mid, checked_at=at, inspector_id="G-1", items=items)

    old_checks = [
        check("OLD-1", "M-CD-0004", datetime(2026, 8, 10, 2, tzinfo=UTC), "fail"),
        check("OLD-2", "M-CD-0001", datetime(2026, 8, 12, 2, tzinfo=UTC), "pass"),
    ]
    new_checks = [
        check("NEW-1", "M-CD-0004", datetime(2026, 12, 10, 2, tzinfo=UTC), "pass"),
        check("NEW-2", "M-CD-0001", datetime(2026, 12, 11, 2, tzinfo=UTC), "fail"),
    ]

    def wire(events: list, checks: list[MerchantCheck]) -> list[tuple[str, bytes, str]]:
        out = [(e.subject_for(), e.to_json(), e.event_id) for e in events]
        return out + [(CHECK_SUBJECT, c.model_dump_json().encode(), f"check:{c.check_id}") for c in checks]

    everything = [*old_events, *straddling, *new_events]
    expected = units.UnitFold()
    for e in everything:
        expected.apply(e)
    async with running(spec("scoring"), settings, city=city) as rt:
        await publish_all(settings.nats_url, wire([*old_events, *straddling[:2]], old_checks))
        nc = await connect(settings.nats_url, "operator")
        try:
            js = nc.jetstream()
            await archive_caught_up(js)
            first_new = {s: (await js.stream_info(s)).state.last_seq + 1 for s in ("XH_CASES", "XH_CHECKS")}
        finally:
            await nc.close()
        await publish_all(settings.nats_url, wire([*straddling[2:], *new_events], new_checks))

        async def settled() -> bool:
            docs = {d["_id"]: d async for d in rt.store[UNIT_PERIODS].find({})}
            months = [d async for d in rt.store[MERCHANT_PERIODS].find({})]
            return (
                docs.keys() == expected.docs.keys()
                and len(months) == 4
                and all(docs[k][c] == expected.docs[k]["c"].get(c, 0) for k in docs for c in units.COUNTERS)
            )

        await eventually(settled, timeout=120, interval=0.5)

    # The streams' oldest messages expire (as after 800 days on XH_CHECKS and XH_CASES).
    nc = await connect(settings.nats_url, "operator")
    try:
        for stream, seq in first_new.items():
            await nc.jetstream().purge_stream(stream, seq=seq)
    finally:
        await nc.close()

    report = await rebuild_and_check(as_operator(settings), city)
    assert report.window["XH_CASES"] and report.window["XH_CHECKS"]
    assert report.differences == [], report.differences[:3]
    assert report.outside_window["case_facts"] >= 13  # the twelve old cases and the straddling one
    assert report.outside_window["merchant_periods"] == 2  # both August months
    assert report.compared["merchant_periods"] == 2 and report.compared["merchants"] == 2
    assert report.compared["unit_periods"] > 0

    # Without the window the same replay is full of differences: it is the window that makes the check hold.
    blind = await rebuild_and_check(as_operator(settings), city, window=Window())
    assert ("merchant_periods", "M-CD-0004:2026-08", "missing_in_rebuild") in {
        (d.collection, d.id, d.problem) for d in blind.differences
    }
    assert any(d.collection == "case_facts" and d.id.startswith("OLD-") for d in blind.differences)

    done = await asyncio.to_thread(_cli, settings, "rebuild", "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outside the rebuild window" in done.stdout and "identical within the rebuild window" in done.stdout
    assert "XH_CHECKS holds messages from" in done.stdout


async def test_a_case_event_leaves_no_ledger_entry(settings, city):
    # A case's facts keep each event id, so an event applied again adds nothing (`Projection.guards`): one that
    # moved no unit figure, and so published nothing, needs no ledger entry; nor does one that published unit
    # updates, which a redelivery makes again with their ids. A resend under new message ids changes no figure.
    from services.scoring.store import CASE_FACTS

    opened, dispatched = history(3, 1)[:2]
    assert type(opened).__name__ == "CaseOpened" and type(dispatched).__name__ == "CaseDispatched"
    clock = FrozenClock(datetime(2026, 12, 31, 17, 0, tzinfo=UTC))
    async with BusRecorder(settings.nats_url) as bus, running(spec("scoring"), settings, clock=clock, city=city) as rt:
        await publish_all(settings.nats_url, [(opened.subject_for(), opened.to_json(), opened.event_id)])

        async def facts() -> list:
            doc = await rt.store[CASE_FACTS].find_one({"_id": opened.case_id})
            return [f["id"] for f in doc["facts"]] if doc else []

        await eventually(lambda: all_acknowledged(settings, "scoring-cases"))
        assert opened.merchant_id is None and await facts() == []  # an ordinary opening leaves no fact
        await publish_all(settings.nats_url, [(dispatched.subject_for(), dispatched.to_json(), dispatched.event_id)])
        await eventually(lambda: bus.on("score.v1.unit_updated"), timeout=10)
        keys = {d["_id"] async for d in rt.store["ledger"].find({}, {"_id": 1})}
        assert f"scoring-cases:{opened.event_id}" not in keys
        assert f"scoring-cases:{dispatched.event_id}" not in keys
        before = {d["_id"]: d async for d in rt.store[UNIT_PERIODS].find({})}

        await publish_all(
            settings.nats_url, [(e.subject_for(), e.to_json(), f"{e.event_id}-again") for e in (opened, dispatched)]
        )
        await asyncio.sleep(1.5)  # two follower lingers
        assert await facts() == [dispatched.event_id]
        assert {d["_id"]: d async for d in rt.store[UNIT_PERIODS].find({})} == before
        # The copy of the dispatch made its unit update again, with its id: the stream kept the first.
        assert len({u["event_id"] for u in bus.on("score.v1.unit_updated")}) == 1
        assert await _stored_unit_updates(settings.nats_url) == 1


def _fail_first_unit_update(rt, *, after_sending: bool) -> list[str]:
    """The first publish holding a unit update fails, before or after it reached the bus (a crash there); returns
    the ids of the unit updates it held."""
    send = rt.publisher.send
    failed: list[str] = []

    async def sending(items) -> None:
        out = list(items)
        updates = [o.msg_id for o in out if o.subject == "score.v1.unit_updated"]
        if updates and not failed:
            failed.extend(updates)
            if after_sending:
                await send(out)
            raise TimeoutError("the bus went away")
        await send(out)

    rt.publisher.send = sending
    return failed


async def _stored_unit_updates(url: str) -> int:
    nc = await connect(url, "operator")
    try:
        info = await nc.jetstream().stream_info("XH_SCORES", subjects_filter="score.v1.unit_updated")
        return sum((info.state.subjects or {}).values())
    finally:
        await nc.close()


async def _scoring_drained(url: str):
    nc = await connect(url, "operator")
    try:
        info = await nc.jetstream().consumer_info("XH_CASES", "scoring-cases")
        return info if info.num_pending == 0 and info.num_ack_pending == 0 else None
    finally:
        await nc.close()


@pytest.mark.parametrize("after_sending", [False, True], ids=["before-the-bus", "after-the-bus"])
async def test_a_redelivered_case_event_publishes_its_unit_updates_again_with_their_ids(settings, city, after_sending):
    # The publish after the commit fails, before the updates reached the bus or after (the process dying there
    # leaves the same): the redelivery adds nothing to the figures and makes the updates again with the ids of
    # the first, so the stream holds each once (its duplicate window drops the copy of one that went out).
    opened, dispatched = history(3, 1)[:2]
    clock = FrozenClock(datetime(2026, 12, 31, 17, 0, tzinfo=UTC))
    async with BusRecorder(settings.nats_url) as bus, running(spec("scoring"), settings, clock=clock, city=city) as rt:
        failed = _fail_first_unit_update(rt, after_sending=after_sending)
        await publish_all(settings.nats_url, [(e.subject_for(), e.to_json(), e.event_id) for e in (opened, dispatched)])
        await eventually(
            lambda: len(bus.on("score.v1.unit_updated")) == len(failed) * (1 + after_sending) > 0, timeout=30
        )
        await eventually(lambda: _scoring_drained(settings.nats_url), timeout=30)
        assert [u["event_id"] for u in bus.on("score.v1.unit_updated")] == failed * (1 + after_sending)
        assert await _stored_unit_updates(settings.nats_url) == len(failed)
        weeks = [d async for d in rt.store[UNIT_PERIODS].find({"kind": "week"})]
        assert [d["dispatched"] for d in weeks] == [1]  # applied once
        assert await rt.store.count("ledger", {"_id": {"$regex": "^scoring-cases:"}}) == 0
