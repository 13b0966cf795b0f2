"""The purge on the real store: what is past the city's horizon goes, by a range on an indexed number; what is at
or inside it stays, and so does what exactly-once still needs whatever its age."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import monitoring

from contracts.cases import CaseDispatched
from services.intake.store import RAW, RECEIVED_S, REFS, RETAINED, TELEMETRY_S, TRANSFERS, BatchIO
from tests.helpers import as_operator, eventually, login
from xiuhua.bus import Outgoing
from xiuhua.city.retention import RetentionFile
from xiuhua.clock import FrozenClock
from xiuhua.ledger import RETAINED as LEDGER_RETAINED
from xiuhua.ledger import Ledger
from xiuhua.retention import RetentionJob, dated, ensure_indexes, purge
from xiuhua.service import ServiceSpec, running
from xiuhua.store import Store

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MS = timedelta(milliseconds=1)


class _NoBus:
    async def send(self, outgoing: object) -> None:
        list(outgoing)  # type: ignore[call-overload]


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


def _event(n: int) -> Outgoing:
    base = CaseDispatched.model_validate(CaseDispatched.example())
    return Outgoing.of(base.model_copy(update={"case_id": f"C-{n}", "event_id": f"e-{n}"}))


async def _ids(store: Store, collection: str) -> set[str]:
    return {d["_id"] async for d in store[collection].find({}, {"_id": 1})}


async def test_ledger_entries_go_past_the_horizon_and_stay_at_it_inside_it_or_unpublished(mongo_url) -> None:
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_probe")
    clock = FrozenClock(T0)
    ledger = Ledger(store, _NoBus(), clock)  # type: ignore[arg-type]
    policy = RetentionFile(ledger="1h")
    job = RetentionJob(store, policy, [LEDGER_RETAINED], clock)
    try:
        await store.ensure_collections(["ledger"])
        await ensure_indexes(store, [LEDGER_RETAINED])

        async def applied(key: str, at: datetime, *, publish: bool = True) -> None:
            clock.set(at)
            out = [_event(len(key))] if publish else []
            await store.in_transaction(lambda s: ledger.record(s, [(key, out)]))
            if publish:
                await ledger.publish([(key, out)], mark_now=True)

        now = T0 + 10 * HOUR
        await applied("c:outside", now - HOUR - MS)  # one millisecond older than the horizon
        await applied("c:at", now - HOUR)  # exactly at it
        await applied("c:inside", now - HOUR + MS)
        await applied("c:fresh", now)
        await applied("c:long-ago", T0)
        # Committed long ago and never published (a crash before its publish): the sweeper still needs it.
        clock.set(T0)
        await store.in_transaction(lambda s: ledger.record(s, [("c:unpublished", [_event(99)])]))
        # A once-per-period claim (a week's bulletin): kept for good, past any horizon.
        await ledger.claim("bulletin:2026-W40", [])
        clock.set(now)
        assert await job.run() == {"ledger": 2}
        assert await _ids(store, "ledger") == {"c:at", "c:inside", "c:fresh", "c:unpublished", "bulletin:2026-W40"}
        clock.set(now + MS)  # the one at the horizon is now past it
        assert await job.run() == {"ledger": 1}
        assert "c:at" not in await _ids(store, "ledger")
        assert await job.run() == {"ledger": 0}
    finally:
        await store.close()


async def test_the_purge_ranges_on_the_indexed_number_and_deletes_by_id(mongo_url) -> None:
    """Neither a date range nor an aggregation: nx-27017 answers a range on a number under a single-field index
    and an `$in` on `_id` from an index, and reads the whole collection for nearly anything else."""
    commands = _Commands()
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_probe", listeners=[commands])
    try:
        col = store["ledger"]
        await store.ensure_collections(["ledger"])
        await ensure_indexes(store, [LEDGER_RETAINED])
        await col.insert_many([{"_id": f"k{i}", "at_s": float(i), "published": True} for i in range(5)])
        indexes = [list(ix["key"]) async for ix in await col.list_indexes()]
        assert ["at_s"] in indexes
        commands.sent.clear()
        assert await purge(store, LEDGER_RETAINED, 3.0) == 3
        finds = [c for name, c in commands.sent if name == "find"]
        deletes = [c for name, c in commands.sent if name == "delete"]
        assert [f["filter"] for f in finds] == [{"at_s": {"$lt": 3.0}}]
        assert [dict(f["sort"]) for f in finds] == [{"at_s": 1}]
        assert [d["deletes"][0]["q"] for d in deletes] == [{"_id": {"$in": ["k0", "k1", "k2"]}, "at_s": {"$lt": 3.0}}]
    finally:
        await store.close()


async def test_a_run_reads_at_most_its_share_deletes_in_chunks_and_the_next_goes_on(mongo_url) -> None:
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_probe")
    try:
        col = store["ledger"]
        await store.ensure_collections(["ledger"])
        # The oldest entry is unpublished: every run reads it, keeps it and goes on to the rest.
        await col.insert_many(
            [{"_id": "k0", "at_s": 0.0, "published": False}]
            + [{"_id": f"k{i}", "at_s": float(i), "published": True} for i in range(1, 8)]
        )
        assert await purge(store, LEDGER_RETAINED, 100.0, most=4, chunk=2) == 3
        assert await _ids(store, "ledger") == {"k0", "k4", "k5", "k6", "k7"}
        assert await purge(store, LEDGER_RETAINED, 100.0, most=4, chunk=2) == 3
        assert await _ids(store, "ledger") == {"k0", "k7"}
        assert await purge(store, LEDGER_RETAINED, 100.0, most=4, chunk=2) == 1
        assert await _ids(store, "ledger") == {"k0"}
    finally:
        await store.close()


async def test_raw_reports_and_references_keep_the_archive_rule_telemetry_a_shorter_one(mongo_url) -> None:
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_intake")
    now = T0 + timedelta(days=100)
    policy = RetentionFile(raw_reports="60d", telemetry="7d")
    job = RetentionJob(store, policy, RETAINED, FrozenClock(now))
    try:
        await store.ensure_collections([RAW, REFS, TRANSFERS])
        await ensure_indexes(store, RETAINED)

        async def received(at: datetime, raw: list[dict[str, Any]], refs: list[str], moved: str = "") -> None:
            """Raw reports; reports that became a case, kept under their reference; the reference an older build
            kept apart in `source_refs` for each of those (`old-` before the reference); a transfer's record."""

            async def write(session: Any) -> None:
                io = BatchIO(store, session, at, reads=session)
                for doc in raw:
                    io.add_raw({**doc, "received_at": at, "subject": "report.v1.in.x", "body": b"{}"})
                for ref in refs:
                    io.answer(
                        ref,
                        "C-1",
                        "case",
                        {
                            "_id": f"raw-{ref}",
                            "source": "grid",
                            "received_at": at,
                            "subject": "report.v1.in.grid",
                            "body": b"{}",
                        },
                    )
                if moved:  # a transfer's record goes with its raw report
                    io.add_transfer({"_id": moved, "raw_id": raw[0]["_id"], **dated(at)})
                writes = store.writes()
                io.flush(writes)
                await store.write_together(writes, session)

            await store.in_transaction(write)
            if refs:
                await store[REFS].insert_many(
                    [
                        {"_id": ref.replace(":", ":old-"), "case_id": "C-1", "outcome": "case", **dated(at)}
                        for ref in refs
                    ]
                )

        sensor = {"source": "sensor", "status": "sensor_normal"}
        await received(
            now - timedelta(days=8),
            [{"_id": "t-old", **sensor}, {"_id": "r-8d", "source": "grid", "status": "case"}],
            ["grid:8d"],
        )
        await received(now - timedelta(days=7), [{"_id": "t-at", **sensor}], [])
        await received(
            now - timedelta(days=60), [{"_id": "r-at", "source": "grid", "status": "case"}], ["grid:at"], "C-at"
        )
        await received(
            now - timedelta(days=60) - MS,
            [
                {"_id": "r-out", "source": "hotline", "status": "rejected"},
                {"_id": "t-case", "source": "sensor", "status": "case"},
            ],
            ["grid:out"],
            "C-out",
        )
        raw = {d["_id"]: d async for d in store[RAW].find({})}
        assert TELEMETRY_S in raw["t-old"] and RECEIVED_S not in raw["t-old"]
        assert RECEIVED_S in raw["t-case"]  # a reading that opened a case is a report: the archive rule
        assert await job.run() == {RAW: 4, REFS: 1, "open_cases": 0, TRANSFERS: 1}
        assert await _ids(store, RAW) == {"r-8d", "grid:8d", "t-at", "r-at", "grid:at"}
        assert await _ids(store, REFS) == {"grid:old-8d", "grid:old-at"}
        assert await _ids(store, TRANSFERS) == {"C-at"}
    finally:
        await store.close()


async def test_a_running_service_purges_its_ledger_and_failure_counts_every_interval(settings, city) -> None:
    from dataclasses import replace

    from tests.helpers import publish
    from xiuhua.consumer import Batch, Subscription

    clock = FrozenClock(T0)
    local = replace(city, retention=RetentionFile(every=0.2, ledger="1h"))
    calls: list[str] = []

    async def handle(batch: Batch) -> None:
        for item in batch.items:
            calls.append(item.message.case_id)
            if len(calls) == 1:
                raise ValueError("fails once")  # leaves a failure count behind once it goes through

    spec = ServiceSpec(
        name="probe", subscriptions=lambda rt: [Subscription("probe-kept", "case.v1.dispatched.XX", handle)]
    )
    event = CaseDispatched.model_validate(CaseDispatched.example()).model_copy(update={"street_code": "XX"})
    async with running(spec, as_operator(settings), clock=clock, city=local) as rt:  # test-only service
        await publish(settings.nats_url, "case.v1.dispatched.XX", event.to_json(), msg_id=event.event_id)
        key = f"probe-kept:{event.event_id}"

        await eventually(lambda: len(calls) == 2, timeout=30)
        await eventually(lambda: _present(rt.store, key), timeout=10)
        assert await rt.store.count("failures", {"_id": key}) == 1
        clock.advance(HOUR)
        await rt.store.in_transaction(lambda s: rt.ledger.record(s, [("probe:b", [])]))
        clock.advance(MS)
        await eventually(lambda: _gone(rt.store, key), timeout=10)
        # The start's one-time pass over entries older builds wrote left its claim, kept for good.
        assert await _ids(rt.store, "ledger") == {"probe:b", "repaired:ledger-moments"}
        assert await rt.store.count("failures") == 0
        deleted = rt.metrics.registry.get_sample_value
        assert deleted("xiuhua_retention_deleted_total", {"service": "probe", "collection": "ledger"}) == 1.0
        assert deleted("xiuhua_retention_deleted_total", {"service": "probe", "collection": "failures"}) == 1.0


async def _present(store: Store, key: str) -> bool:
    return key in await _ids(store, "ledger")


async def _gone(store: Store, key: str) -> bool:
    return key not in await _ids(store, "ledger")


async def test_streams_take_the_citys_ages_and_keep_their_own_elsewhere(nats_server) -> None:
    import nats

    from contracts import streams
    from xiuhua import embedded
    from xiuhua.bus import provision_streams

    url = embedded.nats_url(nats_server)
    ages = RetentionFile(streams={"XH_REPORTS": "14d"}).stream_ages()
    operator = login(url, "operator")  # provisioning streams is the operator's
    await provision_streams(url, max_ages=ages, connect_opts=operator)
    nc = await nats.connect(url, **operator)
    try:
        js = nc.jetstream()
        assert (await js.stream_info("XH_REPORTS")).config.max_age == 14 * 86400
        assert (await js.stream_info("XH_CASES")).config.max_age == streams.CASES.max_age_s
        await provision_streams(url, connect_opts=operator)  # a city that drops its setting: the contract's age again
        assert (await js.stream_info("XH_REPORTS")).config.max_age == streams.REPORTS.max_age_s
    finally:
        await nc.close()


async def test_closed_cases_go_by_the_archive_rule_from_when_they_ended_open_ones_stay(mongo_url, city) -> None:
    from services.dispatch.case import CLOSED_FIELD, State
    from services.dispatch.store import CASES
    from services.dispatch.store import RETAINED as DISPATCH_RETAINED
    from tests.helpers.dispatch import new_case

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_dispatch")
    now = T0 + timedelta(days=1000)
    job = RetentionJob(store, RetentionFile(closed_cases="800d"), DISPATCH_RETAINED, FrozenClock(now))
    horizon = now - timedelta(days=800)
    base = new_case(city)

    def case(case_id: str, state: State, closed_at: datetime | None) -> dict[str, Any]:
        return base.model_copy(update={"case_id": case_id, "state": state, "closed_at": closed_at}).to_doc()

    try:
        await store.ensure_collections([CASES])
        await ensure_indexes(store, DISPATCH_RETAINED)
        await store[CASES].insert_many(
            [
                case("C-out", State.closed, horizon - MS),
                case("C-cancelled", State.cancelled, horizon - timedelta(days=1)),
                case("C-at", State.closed, horizon),
                case("C-in", State.closed, horizon + MS),
                case("C-open", State.dispatched, None),  # dispatched 1,000 days ago and never closed: stays
                case("C-reopened", State.dispatched, None),  # closed long ago, reopened: its closing went with it
            ]
        )
        assert CLOSED_FIELD not in (await store[CASES].find_one({"_id": "C-reopened"}) or {})
        assert await job.run() == {CASES: 2}
        assert await _ids(store, CASES) == {"C-at", "C-in", "C-open", "C-reopened"}
    finally:
        await store.close()


async def test_cases_an_older_build_closed_get_the_number_the_purge_ranges_over(mongo_url, city) -> None:
    from services.dispatch.case import CLOSED_FIELD, State
    from tests.helpers.dispatch import new_case
    from xiuhua.store import backfill_seconds

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_dispatch")
    try:
        doc = new_case(city).model_copy(update={"state": State.closed, "closed_at": T0}).to_doc()
        legacy = {k: v for k, v in doc.items() if k != CLOSED_FIELD}
        await store["cases"].insert_one(legacy)
        assert await backfill_seconds(store["cases"], "closed_at", CLOSED_FIELD) == 1
        assert (await store["cases"].find_one({"_id": doc["_id"]}) or {})[CLOSED_FIELD] == T0.timestamp()
    finally:
        await store.close()


async def test_a_reopened_case_record_with_a_null_moment_is_out_of_the_range(mongo_url) -> None:
    """The bulletin's case records mark a reopened case with a null `closed_s` (its writes only set fields): a
    range on a number matches no null, on nx-27017 as on MongoDB."""
    from services.notify.bulletin.projection import CASES as BULLETIN_CASES
    from services.notify.bulletin.projection import RETAINED as BULLETIN_RETAINED

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_notify")
    now = T0 + timedelta(days=1000)
    job = RetentionJob(store, RetentionFile(), BULLETIN_RETAINED, FrozenClock(now))
    long_ago = (T0 + timedelta(days=1)).timestamp()
    try:
        await store.ensure_collections([BULLETIN_CASES])
        await ensure_indexes(store, BULLETIN_RETAINED)
        await store[BULLETIN_CASES].insert_many(
            [
                {"_id": "C-closed", "status": "closed", "closed_s": long_ago},
                {"_id": "C-reopened", "status": "open", "closed_s": None},
                {"_id": "C-open", "status": "open"},
            ]
        )
        assert await job.run() == {BULLETIN_CASES: 1}
        assert await _ids(store, BULLETIN_CASES) == {"C-reopened", "C-open"}
    finally:
        await store.close()


async def test_finished_deliveries_go_past_their_horizon_pending_and_held_ones_never(mongo_url) -> None:
    from services.notify.store import CASES as ALERT_CASES
    from services.notify.store import DELIVERIES
    from services.notify.store import RETAINED as NOTIFY_RETAINED

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_notify")
    now = T0 + timedelta(days=1000)
    job = RetentionJob(store, RetentionFile(deliveries="90d", closed_cases="800d"), NOTIFY_RETAINED, FrozenClock(now))
    horizon = (now - timedelta(days=90)).timestamp()
    ended = (now - timedelta(days=800)).timestamp()
    long_ago = T0 - timedelta(days=10)
    ms = MS.total_seconds()
    try:
        await store.ensure_collections([DELIVERIES, ALERT_CASES])
        await ensure_indexes(store, NOTIFY_RETAINED)
        await store[DELIVERIES].insert_many(
            [
                {"_id": "d-out", "status": "delivered", "finished_s": horizon - ms},
                {"_id": "f-out", "status": "failed", "finished_s": horizon - 86400},
                {"_id": "d-at", "status": "delivered", "finished_s": horizon},
                {"_id": "d-in", "status": "delivered", "finished_s": horizon + ms},
                {"_id": "p-old", "status": "pending", "created_at": long_ago, "next_at": long_ago},
                {"_id": "h-old", "status": "pending", "held_at": long_ago, "deferred": "rate_limit"},
                # Never written so, but if it were: only a final state is purged whatever the number says.
                {"_id": "s-old", "status": "sending", "finished_s": horizon - 86400},
                {"_id": "p-numbered", "status": "pending", "finished_s": horizon - 86400},
            ]
        )
        await store[ALERT_CASES].insert_many(
            [
                {"_id": "C-out", "closed_s": ended - ms},
                {"_id": "C-at", "closed_s": ended},
                {"_id": "C-reopened", "closed_s": None},
                {"_id": "C-open"},
            ]
        )
        assert await job.run() == {DELIVERIES: 2, ALERT_CASES: 1}
        assert await _ids(store, DELIVERIES) == {"d-at", "d-in", "p-old", "h-old", "s-old", "p-numbered"}
        assert await _ids(store, ALERT_CASES) == {"C-at", "C-reopened", "C-open"}
    finally:
        await store.close()


async def test_open311_submissions_tokens_and_refused_requests_go_as_raw_reports_go(mongo_url) -> None:
    from services.intake.hj212 import REJECTED as HJ212_REJECTED
    from services.intake.hj212 import RETAINED as HJ212_RETAINED
    from services.intake.open311.hook import RETAINED as OPEN311_RETAINED
    from services.intake.open311.projection import REQUESTS, TOKENS
    from services.intake.open311.routes import REFUSED, SUBMISSIONS

    retained = (*OPEN311_RETAINED, *HJ212_RETAINED)
    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_intake")
    now = T0 + timedelta(days=1000)
    job = RetentionJob(store, RetentionFile(raw_reports="60d", closed_cases="900d"), retained, FrozenClock(now))
    horizon = now - timedelta(days=60)
    kept_for = {"at": horizon, "in": horizon + MS}
    try:
        await store.ensure_collections([REQUESTS, TOKENS, SUBMISSIONS, REFUSED, HJ212_REJECTED])
        await ensure_indexes(store, retained)
        for col in (SUBMISSIONS, TOKENS, REFUSED, HJ212_REJECTED):
            await store[col].insert_many(
                [
                    {"_id": "out", **dated(horizon - MS)},
                    {"_id": "long-out", **dated(horizon - timedelta(days=300))},
                    *({"_id": name, **dated(at)} for name, at in kept_for.items()),
                    {"_id": "older-build", "at": horizon - timedelta(days=300)},  # no number yet: out of the range
                ]
            )
        assert await job.run() == {REQUESTS: 0, SUBMISSIONS: 2, TOKENS: 2, REFUSED: 2, HJ212_REJECTED: 2}
        for col in (SUBMISSIONS, TOKENS, REFUSED, HJ212_REJECTED):
            assert await _ids(store, col) == {"at", "in", "older-build"}, col
    finally:
        await store.close()


async def test_one_pass_in_order_reads_each_document_once_across_ties_at_a_page_end(mongo_url) -> None:
    from xiuhua.store import pages_in_order

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_probe")
    try:
        values = [1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 5.0, 9.0]  # a page of 2 ends inside the run of 2.0s, twice
        await store["c"].insert_many([{"_id": f"d{i}", "n": v} for i, v in enumerate(values)])
        pages = [p async for p in pages_in_order(store["c"], "n", 2.0, 9.0, {}, batch=2)]
        read = [d["_id"] for p in pages for d in p]
        assert sorted(read) == [f"d{i}" for i in range(1, 7)]  # 2.0 kept (low), 9.0 not (high), none twice
        assert len(read) == len(set(read))
    finally:
        await store.close()


async def test_ledger_entries_applied_before_retention_get_their_moment_once_claims_stay_for_good(mongo_url) -> None:
    from dataclasses import dataclass

    from xiuhua.service import Runtime

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_probe")
    clock = FrozenClock(T0 + timedelta(days=30))
    ledger = Ledger(store, _NoBus(), clock)  # type: ignore[arg-type]
    legacy = T0 - timedelta(days=10)
    try:
        await store["ledger"].insert_many(
            [
                *(
                    {"_id": f"dispatch-cases:m{i}", "events": [], "published": True, "at": legacy + i * MS}
                    for i in range(3)
                ),
                {"_id": "dispatch-cases-2:m0", "events": [], "published": True, "at": legacy},  # another consumer
                {"_id": "scoring:ranking:unit:2026-10", "events": [], "published": True, "at": legacy},  # a claim
            ]
        )
        assert await ledger.backfill_moments(["dispatch-cases"]) == 3
        docs = {d["_id"]: d async for d in store["ledger"].find({})}
        assert [docs[f"dispatch-cases:m{i}"]["at_s"] for i in range(3)] == [
            (legacy + i * MS).timestamp() for i in range(3)
        ]
        assert "at_s" not in docs["dispatch-cases-2:m0"] and "at_s" not in docs["scoring:ranking:unit:2026-10"]
        job = RetentionJob(store, RetentionFile(ledger="7d"), [LEDGER_RETAINED], clock)
        assert await job.run() == {"ledger": 3}

        @dataclass
        class _Runs:
            n: int = 0

            async def __call__(self) -> int:
                self.n += 1
                return 0

        runs = _Runs()
        rt = Runtime(
            name="probe",
            settings=None,
            clock=clock,
            city=None,
            broker=None,
            store=store,  # type: ignore[arg-type]
            publisher=None,
            ledger=ledger,
            metrics=None,
        )  # type: ignore[arg-type]
        for _ in range(2):  # two starts: the pass runs through once, the second start finds its claim
            rt.repair_once(runs, name="probe-pass")
            await rt.tasks.pop()
        assert runs.n == 1 and await ledger.seen(["repaired:probe-pass"])
    finally:
        await store.close()


async def test_open311_requests_closed_before_retention_get_their_moment_from_their_last_change(mongo_url) -> None:
    from services.intake.open311.hook import close_older_requests
    from services.intake.open311.projection import CLOSED_S, REQUESTS

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_intake")
    changed = T0 - timedelta(days=3)
    try:
        await store[REQUESTS].insert_many(
            [
                {"_id": "C-closed", "status": "closed", "requested_s": 1.0, "updated_datetime": changed},
                {"_id": "C-closed-2", "status": "closed", "requested_s": 1.0, "updated_datetime": changed + MS},
                {"_id": "C-open", "status": "open", "requested_s": 2.0, "updated_datetime": changed},
                {"_id": "C-new", "status": "closed", "requested_s": 3.0, "updated_datetime": changed, CLOSED_S: 7.0},
            ]
        )
        assert await close_older_requests(store[REQUESTS]) == 2
        got = {d["_id"]: d.get(CLOSED_S) async for d in store[REQUESTS].find({})}
        assert got == {
            "C-closed": changed.timestamp(),
            "C-closed-2": (changed + MS).timestamp(),
            "C-open": None,
            "C-new": 7.0,
        }
    finally:
        await store.close()


async def test_deliveries_finished_before_retention_get_their_moment_from_when_they_finished(mongo_url) -> None:
    from services.notify.store import DELIVERIES, FINISHED_S, finish_older_deliveries

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_notify")
    try:
        await store[DELIVERIES].insert_many(
            [
                {"_id": "d", "status": "delivered", "delivered_at": T0},
                {"_id": "f", "status": "failed", "failed_at": T0 + HOUR},
                {"_id": "p", "status": "pending", "next_at": T0},  # pending: stays out of the range
                {"_id": "s", "status": "sending", "next_at": T0},
                {"_id": "new", "status": "delivered", "delivered_at": T0, FINISHED_S: 7.0},
            ]
        )
        # The outcomes' claims as an older build wrote them (no `at_s`), beside entries this pass is not for.
        await store["ledger"].insert_many(
            [
                {"_id": "delivered:d", "events": [], "published": True, "at": T0},
                {"_id": "failed:f", "events": [], "published": True, "at": T0 + HOUR},
                {"_id": "delivered:new", "events": [], "published": True, "at": T0, "at_s": 7.0},
                {
                    "_id": "notify-cases:m1",
                    "events": [],
                    "published": True,
                    "at": T0,
                },  # the runtime's pass gives it one
                {"_id": "bulletin:2026-W40", "events": [], "published": True, "at": T0},  # kept for good
            ]
        )
        assert await finish_older_deliveries(store) == 4
        got = {d["_id"]: d.get(FINISHED_S) async for d in store[DELIVERIES].find({})}
        assert got == {"d": T0.timestamp(), "f": (T0 + HOUR).timestamp(), "p": None, "s": None, "new": 7.0}
        claims = {d["_id"]: d.get("at_s") async for d in store["ledger"].find({})}
        assert claims == {
            "delivered:d": T0.timestamp(),
            "failed:f": (T0 + HOUR).timestamp(),
            "delivered:new": 7.0,
            "notify-cases:m1": None,
            "bulletin:2026-W40": None,
        }
        assert await finish_older_deliveries(store) == 0
        # Once dated, the purge takes them like any published entry past the ledger's horizon.
        job = RetentionJob(store, RetentionFile(ledger="1h"), [LEDGER_RETAINED], FrozenClock(T0 + 2 * HOUR))
        assert await job.run() == {"ledger": 2}
        assert await _ids(store, "ledger") == {"failed:f", "notify-cases:m1", "bulletin:2026-W40"}  # at the horizon
    finally:
        await store.close()


async def test_alert_views_of_cases_closed_before_retention_take_the_bulletins_moment(mongo_url) -> None:
    from services.notify.bulletin.projection import CASES as BULLETIN_CASES
    from services.notify.store import CASES as ALERT_CASES
    from services.notify.store import close_older_views, record_closing

    store = Store(mongo_url, f"t{uuid.uuid4().hex[:10]}_notify")
    now = T0 + 10 * HOUR
    try:
        await store[BULLETIN_CASES].insert_many(
            [
                {"_id": "C-closed", "status": "closed", "closed_s": 100.0},
                {"_id": "C-cancelled", "status": "cancelled", "closed_s": 200.0},
                {"_id": "C-reopened", "status": "open", "closed_s": None},
                {"_id": "C-open", "status": "open"},
                {"_id": "C-unalerted", "status": "closed", "closed_s": 300.0},  # notify never alerted: no view made
                # Ended before the bulletin kept the moment: the pass's own moment, the latest they can have ended.
                {"_id": "C-old-closed", "status": "closed"},
                {"_id": "C-old-cancelled", "status": "cancelled"},
            ]
        )
        await store[ALERT_CASES].insert_many(
            [
                {"_id": "C-closed"},
                {"_id": "C-cancelled"},
                {"_id": "C-reopened"},
                {"_id": "C-open"},
                {"_id": "C-new", "closed_s": 7.0},
                {"_id": "C-old-closed"},
                {"_id": "C-old-cancelled"},
                {"_id": "C-unrecorded"},  # the bulletin never saw it opened: nothing says it ended
            ]
        )
        assert await close_older_views(store, now) == 6  # four views, two bulletin records
        got = {d["_id"]: d.get("closed_s", "unset") async for d in store[ALERT_CASES].find({})}
        assert got == {
            "C-closed": 100.0,
            "C-cancelled": 200.0,
            "C-reopened": "unset",
            "C-open": "unset",
            "C-new": 7.0,
            "C-old-closed": now.timestamp(),
            "C-old-cancelled": now.timestamp(),
            "C-unrecorded": "unset",
        }
        records = {d["_id"]: d.get("closed_s") async for d in store[BULLETIN_CASES].find({})}
        assert records == {
            "C-closed": 100.0,
            "C-cancelled": 200.0,
            "C-reopened": None,
            "C-open": None,
            "C-unalerted": 300.0,
            "C-old-closed": now.timestamp(),
            "C-old-cancelled": now.timestamp(),
        }
        assert await close_older_views(store, now + HOUR) == 0
        # A record reopened after the pass read it stays open.
        read = {"_id": "C-raced", "status": "closed"}
        await store[BULLETIN_CASES].insert_one(read)
        move = record_closing(read, now)
        assert move is not None
        await store[BULLETIN_CASES].replace_one({"_id": "C-raced"}, {"status": "open", "closed_s": None})
        assert (await store[BULLETIN_CASES].bulk_write([move])).modified_count == 0
    finally:
        await store.close()
