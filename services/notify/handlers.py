"""Notify's thin edge: events become pending deliveries; a worker sends them and logs every outcome.

Delivery states (the `deliveries` collection is the delivery log 投递日志):
pending → sending → delivered | pending (retry after back-off) | failed (retries exhausted: `notify.v1.failed`).
Quiet hours and rate limits move `next_at` without spending an attempt. A delivery's `_id` is its notification
id (kind, case, level, contact, channel): planning finds before inserting, so redelivered events and restarts
never plan it twice. Sending claims the attempt with a conditional update, so two instances never both send it.

Delivered or visibly failed, once: a claim names its owner (this process) and carries a short lease the owner
renews while it lives, so a dead owner's claim is taken up in seconds; the outcome of a send is kept in memory
and retried until the store answers; every message carries its notification id, so the one re-send a crash
between sending and recording can cause is recognisable by the receiver (and dropped by the `file` channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ASCENDING, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession

from contracts.cases import CaseDeadlineWarning, CaseDispatched, CaseEscalated, CaseOpened, CaseOverdue
from contracts.notifications import NotificationDelivered, NotificationFailed
from contracts.values import Place, ReportSource, Urgency
from services.notify import digest, messages
from services.notify.bulletin.projection import CASES as BULLETIN_CASES
from services.notify.channels import Channel, PermanentDeliveryError, safe_error, secrets_of
from services.notify.policy import backoff_seconds, claim_expired, quiet_until
from services.notify.ratelimit import RATE_BUCKETS, TokenBuckets
from services.notify.recipients import Delivery, deliveries_for
from xiuhua.bus import Outgoing
from xiuhua.city.place_names import describe, map_link
from xiuhua.consumer import APPLIED, Batch, folded_before, naming
from xiuhua.service import Runtime
from xiuhua.store import Writes, is_transient

log = logging.getLogger("xiuhua.notify")

DELIVERIES = "deliveries"
CASES = "alert_cases"  # notify's own projection: who leads and cooperates on a case, where, what
CLAIM_LEASE_S = 10.0  # a claim not renewed for this long was left by a dead instance: taken up again
RENEW_EVERY_S = CLAIM_LEASE_S / 4  # the owner renews its claims' leases this often
SCAN_EXPIRED_S = 1.0  # how often the worker looks for expired claims
SEND_CONCURRENCY = 8  # recipients served at once; each recipient's alerts go one after the other, in order
OUTCOME_RETRY_S = (0.2, 5.0)  # back-off bounds for recording an outcome while the store does not answer

Outcome = Callable[[], Awaitable[list[tuple[str, list[Outgoing]]]]]


@dataclass
class _Pending:
    """An outcome sent but not yet recorded (the store did not answer): retried with back-off."""

    record: Outcome
    tries: int
    next_at: float  # time.monotonic()


@dataclass
class _Plan:
    """What a batch of events plans, written at the end of the batch: notify's case views and new deliveries."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: dict[str, dict[str, Any]] = field(default_factory=dict)  # by notification id, first plan wins


_WARNINGS = (CaseDeadlineWarning, CaseOverdue, CaseEscalated)
_ALERTING = (CaseOpened, CaseDispatched, *_WARNINGS)  # the case events `on_case_event` may act on


def _next(doc: dict[str, Any], changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(filter, replacement) that move a delivery on if nobody moved it since `doc` was read (version `v`)."""
    v = doc.get("v")
    cond = {"_id": doc["_id"], "v": v} if v is not None else {"_id": doc["_id"], "v": {"$exists": False}}
    return cond, {k: val for k, val in doc.items() if k != "_id"} | changes | {"v": (v or 0) + 1}


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class NotifyHandlers:
    """Plans deliveries from events and sends them."""

    def __init__(self, rt: Runtime, channels: dict[str, Channel], rnd: random.Random | None = None) -> None:
        self.rt = rt
        self.channels = channels
        self.rnd = rnd or random.Random()
        self.alerts = rt.city.alerts
        self.tz = ZoneInfo(rt.city.info.timezone)
        self.buckets = TokenBuckets(rt.store[RATE_BUCKETS], self.alerts.rate_limit)
        self.secrets = [s for name in channels for s in secrets_of(self.alerts.channel(name))]
        self.sent = rt.metrics.counter("xiuhua_alerts_sent", "Alerts delivered", ("channel", "kind"))
        self.failed = rt.metrics.counter("xiuhua_alerts_failed", "Delivery attempts that failed", ("channel",))
        self.gave_up = rt.metrics.counter("xiuhua_alerts_gave_up", "Deliveries that exhausted retries", ("channel",))
        self.deferred = rt.metrics.counter("xiuhua_alerts_deferred", "Sends put off", ("reason",))
        self.taken_over = rt.metrics.counter(
            "xiuhua_alerts_claims_taken_over", "Claims of dead instances taken up again (the alert is re-sent)")
        self.digests = rt.metrics.counter(
            "xiuhua_alerts_digests", "Digests sent: one message for the alerts a recipient's rate limit held",
            ("channel",))
        self.backlog = rt.metrics.gauge(
            "xiuhua_alerts_backlog", "Alerts a recipient's rate limit holds for its next digest",
            ("recipient", "channel"))
        self.backlog_age = rt.metrics.gauge(
            "xiuhua_alerts_backlog_oldest_seconds", "How long the oldest alert a recipient's rate limit holds waited",
            ("recipient", "channel"))
        self._backlog_seen: set[tuple[str, str]] = set()
        self._lanes_held: dict[str, datetime] = {}  # lanes this instance held alerts of, and when those are due
        self.outcomes_waiting = rt.metrics.gauge(
            "xiuhua_alerts_outcomes_waiting", "Sent alerts whose outcome waits in memory for the store")
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # owner of this one's claims
        self.wake = asyncio.Event()  # set when planning commits deliveries: the worker runs at once
        self._planned = 0
        # Deliveries planning wrote, handed to the worker's next round as they were written, so a round woken by
        # planning need not look them up (a hint whose write did not commit fails its claim and is dropped; the
        # periodic scan finds every pending delivery whatever becomes of the hints).
        self._hints: dict[str, dict[str, Any]] = {}
        self._scanned_at = 0.0  # time.monotonic() of the worker's last scan for due deliveries
        self._held: set[str] = set()  # claims this instance holds: sending, or its outcome not yet recorded
        self._outcomes: dict[str, _Pending] = {}
        self._store_ok_since: datetime | None = rt.clock.now()
        self._last_scan: datetime | None = None

    async def ensure_indexes(self) -> None:
        """The worker looks for pending deliveries that are due; the log is read by case."""
        col = self.rt.store[DELIVERIES]
        await col.create_index([("status", ASCENDING), ("next_at", ASCENDING)])
        # nx-27017 answers an equality on a single-field index without a scan, but not a range on a compound one
        # (33 ms a round at 30,000 deliveries): the worker selects pending deliveries by status, then time.
        await col.create_index([("status", ASCENDING)])
        await col.create_index([("case_id", ASCENDING)])

    # ---- planning -------------------------------------------------------------------------------------------

    @staticmethod
    def skips_type(kind: type) -> bool:
        """Case event types that never alert, known from the subject before decoding: all but openings, dispatches
        and the deadline events."""
        return not issubclass(kind, _ALERTING)

    @staticmethod
    def ignores(ev: Any) -> bool:
        """Case events that never alert, by what they are: everything but an urgent sensor case's opening, a duty
        check's case opening, a dispatch and the deadline events (`on_case_event` acts on nothing else)."""
        if isinstance(ev, CaseOpened):  # urgent sensor cases alert; a merchant is told of its failed duty
            return not ((ev.source == ReportSource.sensor and ev.urgency == Urgency.urgent)
                        or (ev.source == ReportSource.merchant_check and bool(ev.merchant_id)))
        return not isinstance(ev, _ALERTING)

    async def on_case_event(self, batch: Batch) -> None:
        """Case events that alert: dispatched (new case), deadline warning, overdue, escalated, urgent sensor case.

        Planned in memory for the whole batch: two reads, and the writes sent with the batch (`Batch.later`).

        Each is applied once without a ledger entry (`Batch.guarded`): a delivery's id names its case, kind, level,
        recipient and channel, and planning skips what the log holds; a dispatch also names itself in notify's view
        of the case (`applied`), so a copy of an earlier dispatch cannot put back the unit a later one replaced."""
        plan = _Plan()
        looked = sorted({ev.case_id for i in batch.items if isinstance(ev := i.message, (CaseDispatched, *_WARNINGS))})
        known: dict[str, dict[str, Any]] = {}
        if looked:
            known = {d["_id"]: d async for d in self.rt.store[CASES].find({"_id": {"$in": looked}},
                                                                          session=batch.reads)}
        for item in batch.items:
            ev = item.message
            batch.guarded(item)
            if isinstance(ev, CaseDispatched) and folded_before(known.get(ev.case_id), ev.event_id):
                continue  # this dispatch was planned before
            if isinstance(ev, CaseOpened):
                if ev.source == ReportSource.sensor and ev.urgency == Urgency.urgent:
                    facts = {"case_id": ev.case_id, "category": ev.category_name or ev.category_code,
                             **self._where(ev.place), "street_code": ev.street_code, "detail": ev.description}
                    planned = deliveries_for(self.rt.city, "sensor_emergency", case_id=ev.case_id,
                                             street_code=ev.street_code, urgent=True)
                    self._plan(plan, planned, "sensor_emergency", facts, 0, ev.correlation_id, ev.case_id)
                elif self._first_failure(ev):
                    self._merchant_notice(plan, ev)
            elif isinstance(ev, CaseDispatched):
                case = {"_id": ev.case_id, "lead": ev.lead_unit.unit_id, "lead_name": ev.lead_unit.name,
                        "cooperating": [u.unit_id for u in ev.cooperating_units], "street_code": ev.street_code,
                        "category_code": ev.category_code, "urgency": str(ev.urgency),
                        **self._where(ev.place), APPLIED: naming(known.get(ev.case_id), ev.event_id)}
                plan.cases[ev.case_id] = known[ev.case_id] = case
                facts = {"case_id": ev.case_id, "category": self._category(ev.category_code),
                         "category_code": ev.category_code, "unit": ev.lead_unit.name, "due_at": ev.due_at,
                         "rule_id": ev.rule_id, "street_code": ev.street_code, **self._where(ev.place)}
                level = ev.dispatch_round - 1
                planned = deliveries_for(
                    self.rt.city, "new_case", case_id=ev.case_id, level=level, lead=ev.lead_unit,
                    cooperating=ev.cooperating_units, street_code=ev.street_code,
                    urgent=ev.urgency == Urgency.urgent,
                )
                self._plan(plan, planned, "new_case", facts, level, ev.correlation_id, ev.case_id)
            elif isinstance(ev, _WARNINGS):
                kind = {CaseDeadlineWarning: "deadline_warning", CaseOverdue: "overdue",
                        CaseEscalated: "escalation"}[type(ev)]
                level = ev.level if isinstance(ev, CaseEscalated) else 0
                case = known.get(ev.case_id, {})
                unit = self.rt.city.units.get(ev.unit_id)
                facts = {"case_id": ev.case_id, "category": self._category(case.get("category_code")),
                         "unit": unit.name if unit else ev.unit_id, "due_at": ev.due_at, "street_code": ev.street_code,
                         **{k: str(case[k]) for k in ("address", "map") if case.get(k)}}
                planned = deliveries_for(
                    self.rt.city, kind, case_id=ev.case_id, level=level, lead=ev.unit_id,
                    cooperating=case.get("cooperating", []), street_code=ev.street_code or case.get("street_code"),
                    urgent=case.get("urgency") == "urgent",
                )
                self._plan(plan, planned, kind, facts, level, ev.correlation_id, ev.case_id)
        await self._write(batch.later(), plan, batch.reads)

    async def on_score_event(self, batch: Batch) -> None:
        """Scoring events that alert: a unit ranking's black list (bottom_ranking), a merchant's escalation."""
        plan = _Plan()
        for item in batch.items:
            ev, subject = item.message, item.subject
            if subject.startswith("score.v1.ranking_published"):
                self._ranking(plan, ev)
            elif subject.startswith("score.v1.merchant_escalated"):
                self._merchant(plan, ev)
        await self._write(batch.later(), plan, batch.reads)

    def _ranking(self, plan: _Plan, ev: Any) -> None:
        if _get(ev, "kind", "unit") != "unit":
            return  # merchant rankings reach merchants through the street, not unit contacts
        period = _get(ev, "period", "")
        for rows in (_get(ev, "tables") or {}).values():
            for row in rows:
                if _get(row, "board") != "black" and not _get(row, "bottom", False):
                    continue
                unit_id = _get(row, "id")
                unit = self.rt.city.units.get(unit_id)
                facts = {"unit": unit.name if unit else unit_id, "period": period, "rank": _get(row, "rank")}
                planned = deliveries_for(self.rt.city, "bottom_ranking", lead=unit_id, key=f"{period}:{unit_id}")
                self._plan(plan, planned, "bottom_ranking", facts, 0, _get(ev, "correlation_id", ""), None)

    def _first_failure(self, ev: CaseOpened) -> bool:
        """A duty check's failed item (not the enforcement case a repeated failure opens): the merchant is told."""
        return (ev.source == ReportSource.merchant_check and ev.merchant_id in self.rt.city.merchants
                and ev.category_code != self.rt.city.routing.merchant_category)

    def _merchant_notice(self, plan: _Plan, ev: CaseOpened) -> None:
        """批评教育: tell the merchant what failed and that the community will come back; a repeat goes further."""
        shop = self.rt.city.merchants[str(ev.merchant_id)]
        facts = {"case_id": ev.case_id, "merchant": shop.name, "category": self._category(ev.category_code),
                 **self._where(ev.place),
                 "detail": "请在社区规定的时限内整改；同一事项再次未落实或逾期未整改，将移交综合执法队依法处理。"}
        planned = deliveries_for(self.rt.city, "merchant_notice", case_id=ev.case_id, merchant=shop.id,
                                 street_code=ev.street_code)
        self._plan(plan, planned, "merchant_notice", facts, 0, ev.correlation_id, ev.case_id)

    def _merchant(self, plan: _Plan, ev: Any) -> None:
        street = _get(ev, "street_code")
        enforcement = [u.id for u in self.rt.city.units_with_role("enforcement") if street and street in u.areas]
        merchant_id, period = _get(ev, "merchant_id", ""), _get(ev, "period", "")
        facts = {"merchant": _get(ev, "merchant_name") or merchant_id, "period": period,
                 "case_id": _get(ev, "case_id"), "street_code": street, "detail": _get(ev, "reason") or ""}
        case_id = _get(ev, "case_id")
        planned = deliveries_for(
            self.rt.city, "merchant_escalation", case_id=case_id, lead=enforcement[0] if enforcement else None,
            street_code=street, key=f"{merchant_id}:{period}",
        )
        self._plan(plan, planned, "merchant_escalation", facts, 0, _get(ev, "correlation_id", ""), case_id)

    def _where(self, place: Place | None) -> dict[str, str]:
        """The place as people say it (street, community, grid name, nearest landmark) and a map link."""
        if place is None:
            return {}
        out = {"address": describe(place, self.rt.city)}
        link = map_link(place)
        return out | ({"map": link} if link else {})

    def _category(self, code: str | None) -> str:
        cat = self.rt.city.category(code) if code else None
        return f"{cat.name_zh}（{code}）" if cat else (code or "")

    def _plan(
        self, plan: _Plan, planned: list[Delivery], kind: str, facts: dict[str, Any], level: int,
        correlation_id: str, case_id: str | None,
    ) -> None:
        now = self.rt.clock.now()
        for d in planned:
            if d.notification_id in plan.deliveries:
                continue  # one alert per case, kind, level, recipient and channel, whatever is redelivered
            message = messages.build(kind, facts, urgent=d.urgent, level=level, tz=self.tz)
            plan.deliveries[d.notification_id] = {
                "_id": d.notification_id, "kind": kind, "level": level, "case_id": case_id,
                "unit_id": d.unit_id, "contact_id": d.contact_id, "channel": d.channel, "address": d.address,
                "urgent": d.urgent, "status": "pending", "attempts": 0, "next_at": now, "created_at": now,
                "correlation_id": correlation_id, "message": message, "history": [], "v": 0,
            }

    async def _write(self, writes: Writes, plan: _Plan, reads: AsyncClientSession | None) -> None:
        """Add to `writes` notify's view of the plan's cases, and its planned deliveries not yet in the log (one
        planned before, by a redelivered or repeated event, keeps its state), read with `reads`."""
        for c, doc in plan.cases.items():
            # Replaced by `_id` with upsert: no find first, and no duplicate-key error inside the transaction.
            writes.replace(CASES, {"_id": c}, doc, upsert=True)
        if not plan.deliveries:
            return
        ids = sorted(plan.deliveries)
        col = self.rt.store[DELIVERIES]
        logged = {d["_id"] async for d in col.find({"_id": {"$in": ids}}, {"_id": 1}, session=reads)}
        new = [doc for nid, doc in plan.deliveries.items() if nid not in logged]
        if new:
            writes.insert(DELIVERIES, new)
            self._planned += len(new)
            self._hints.update((doc["_id"], dict(doc)) for doc in new)

    # ---- waking the worker ------------------------------------------------------------------------------------

    def on_committed(self) -> None:
        """After a consumer's transaction commits: deliveries it planned are visible now, so wake the worker."""
        if self._planned:
            self._planned = 0
            self.wake.set()

    async def run_worker(self) -> None:
        """The delivery worker: runs when planning commits new deliveries, and every `poll_seconds` besides
        (retries, deferrals that fell due, outcomes still to record, claims of dead instances)."""
        poll = self.alerts.poll_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=poll)
            self.wake.clear()
            try:
                # Woken by planning between scans: its hints are the new work; the scan comes at its own pace.
                await self.deliver_due(scan=time.monotonic() - self._scanned_at >= poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store away: the next round tries again
                log.warning("delivery worker: %s", safe_error(exc, self.secrets), exc_info=not is_transient(exc))

    async def renew_leases(self) -> None:
        """Keep this instance's claims alive (one write for all of them): only a dead owner's claim expires."""
        if not self._held:
            return
        lease = self.rt.clock.now().timestamp() + CLAIM_LEASE_S
        try:
            async with self.rt.store.outside_transactions():
                await self.rt.store[DELIVERIES].update_many(
                    {"_id": {"$in": sorted(self._held)}, "status": "sending", "owner": self.instance},
                    {"$set": {"lease_s": lease}},  # a number: `$set` keeps numbers intact on nx-27017
                )
        except Exception as exc:
            self._store_ok_since = None
            log.warning("claim leases not renewed: %s", safe_error(exc, self.secrets))

    # ---- sending --------------------------------------------------------------------------------------------

    async def _transition(
        self, doc: dict[str, Any], expect: dict[str, Any] | None = None, **changes: Any
    ) -> dict[str, Any] | None:
        """Move a delivery to its next state if nobody moved it since `doc` was read; None if somebody did.

        A conditional whole-document replace on the version `v` (and `expect`): atomic on MongoDB, and it keeps
        datetimes and sub-documents intact on nx-27017 (whose `$set` stores datetimes as text and whose `$push`
        stores sub-documents as JSON strings). Lease renewals do not move `v`.
        """
        cond, new = _next(doc, changes)
        async with self.rt.store.outside_transactions():
            res = await self.rt.store[DELIVERIES].replace_one(cond | (expect or {}), new)
        return {"_id": doc["_id"], **new} if res.modified_count == 1 else None

    async def _transition_all(
        self, moves: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> tuple[int, list[dict[str, Any]]]:
        """Several `_transition`s in one unordered bulk write; returns how many went through, and each delivery
        as the write would leave it (in the order of `moves`)."""
        if not moves:
            return 0, []
        nexts = [_next(doc, changes) for doc, changes in moves]
        async with self.rt.store.outside_transactions():
            res = await self.rt.store[DELIVERIES].bulk_write([ReplaceOne(*n) for n in nexts], ordered=False)
        return res.modified_count, [{"_id": cond["_id"], **new} for cond, new in nexts]

    async def deliver_due(self, limit: int = 200, *, scan: bool = True) -> int:
        """Send pending deliveries that are due; returns how many reached their recipients (a digest's all count).

        First the outcomes of earlier sends still to be recorded; then claims whose owner died (lease run out);
        then the due deliveries (those planning just wrote, and with `scan` every pending one that is due), all
        in one round. The delivered events of the round are published together.
        """
        publish: list[tuple[str, list[Outgoing]]] = []
        try:
            if not await self._flush_outcomes(publish) or (self._outcomes and self._store_ok_since is None):
                return 0  # the store is still away: the outcomes wait in memory, their retry probes it
            now = self.rt.clock.now()
            hints, self._hints = self._hints, {}
            await self._take_over_expired(now, limit)
            # A fresh alert for a lane whose held ones are due must go in their digest, not alone ahead of them.
            scan = scan or any(t <= now for d in hints.values() if (t := self._lanes_held.get(digest.lane(d))))
            later: set[str] = set()  # lanes whose due alerts the scan left to a later round: their hints wait too
            if scan:
                self._scanned_at = time.monotonic()
                found, later = await self._due(now, limit)
                hints.update((d["_id"], d) for d in found)
            if self._store_ok_since is None:
                self._store_ok_since = now
            due = sorted((d for d in hints.values() if d["next_at"] <= now and digest.lane(d) not in later),
                         key=lambda d: (d["next_at"], d["_id"]))
            return await self._send_round(digest.pick(due, limit), publish, now)
        except Exception:
            self._store_ok_since = None
            raise
        finally:
            await self._publish(publish)

    async def _due(self, now: datetime, limit: int) -> tuple[list[dict[str, Any]], set[str]]:
        """The pending deliveries due at `now` a round takes (whole lanes, earliest first), and the lanes it leaves
        to a later round: their times by status (an equality both stores answer from an index, a few small
        documents), then the chosen ones in full."""
        col = self.rt.store[DELIVERIES]
        times = [d async for d in col.find({"status": "pending"}, {"next_at": 1, "contact_id": 1, "channel": 1,
                                                                   "urgent": 1, digest.HELD: 1})]
        self._count_backlog(times, now)
        due = sorted((d for d in times if d["next_at"] <= now), key=lambda d: (d["next_at"], d["_id"]))
        held = {digest.lane(d) for d in due if digest.held(d)}
        for key in [k for k, t in self._lanes_held.items() if t <= now and k not in held]:
            del self._lanes_held[key]  # taken care of (by another instance): no longer a reason to scan
        if not due:
            return [], set()
        chosen = digest.pick(due, limit)
        later = {digest.lane(d) for d in due} - {digest.lane(d) for d in chosen}
        docs = [d async for d in col.find({"_id": {"$in": [d["_id"] for d in chosen]}, "status": "pending"})]
        return sorted(docs, key=lambda d: (d["next_at"], d["_id"])), later

    def _count_backlog(self, pending: list[dict[str, Any]], now: datetime) -> None:
        """The backlog gauges from the pending deliveries as the store has them (every instance reports the same,
        and a recipient whose digest went out drops back to zero)."""
        counts: dict[tuple[str, str], int] = {}
        oldest: dict[tuple[str, str], datetime] = {}
        for d in pending:
            if isinstance(since := d.get(digest.HELD), datetime):
                key = (d["contact_id"], d["channel"])
                counts[key] = counts.get(key, 0) + 1
                oldest[key] = min(since, oldest.get(key, since))
        for key in self._backlog_seen | set(counts):
            self.backlog.labels(*key).set(counts.get(key, 0))
            self.backlog_age.labels(*key).set((now - oldest[key]).total_seconds() if key in oldest else 0.0)
        self._backlog_seen |= set(counts)

    async def _publish(self, entries: list[tuple[str, list[Outgoing]]]) -> None:
        if not entries:
            return
        try:
            await self.rt.ledger.publish(entries)
        except Exception as exc:  # they are in the ledger's outbox: the sweeper publishes them
            log.warning("%d delivery event(s) left to the outbox sweeper: %s", len(entries), safe_error(exc))

    async def _take_over_expired(self, now: datetime, limit: int) -> None:
        """Claims whose owner stopped renewing them go back to pending: the owner died between its claim and its
        record, so whether the alert went out is unknown; it is sent again under the same notification id.

        Only after this instance has had the store for a whole lease: after a store outage every lease looks
        expired, and living owners must get the chance to renew theirs (and record what they sent) first.
        """
        if self._last_scan is not None and (now - self._last_scan).total_seconds() < SCAN_EXPIRED_S:
            return
        self._last_scan = now
        if self._store_ok_since is None or (now - self._store_ok_since).total_seconds() < CLAIM_LEASE_S:
            return
        # The claims in flight by their status alone, judged here: nx-27017 reads every delivery ever logged for the
        # status with an `$or` of lease conditions added (68 ms at 50,000, every second), and claims are few.
        sending = [d async for d in self.rt.store[DELIVERIES].find({"status": "sending"})]
        for stale in [d for d in sending if claim_expired(d, now)][:limit]:
            if stale["_id"] in self._held:
                continue  # this instance's own: its outcome is waiting to be recorded
            owner = stale.get("owner") or "?"
            note = {"at": now, "attempt": stale.get("attempts", 0), "ok": None,
                    "error": f"claim of {owner} expired: outcome unknown, sent again with the same notification id"}
            lease = stale.get("lease_s")
            expect = {"status": "sending", "lease_s": lease if lease is not None else {"$exists": False}}
            taken = await self._transition(stale, expect, status="pending", next_at=now, owner=None, lease_s=None,
                                           history=[*stale.get("history", []), note])
            if taken is not None:
                self.taken_over.inc()
                log.warning("delivery %s: claim of %s expired, sending again", stale["_id"], owner)

    async def _send_round(
        self, docs: list[dict[str, Any]], publish: list[tuple[str, list[Outgoing]]], now: datetime
    ) -> int:
        """A round's due alerts: claimed together, every lane's tokens taken together (a lane: a recipient on a
        channel, urgent alerts apart), each lane's alerts sent one after the other and in order (several lanes at
        once), the delivered ones recorded together. A fixed number of store commands per round, where one
        recipient at a time cost five each. Returns how many alerts reached their recipient (digested ones too).

        A lane short of tokens holds the alerts beyond them, with no attempt spent, until its next token; at that
        refill everything held goes as one digest (`services.notify.digest`). `now` is the moment the due alerts
        were chosen at: a token counted later could send a fresh alert alone before its lane's held ones are due."""
        ready = []
        for doc in docs:
            quiet = not doc.get("urgent") and self.alerts.respects_quiet_hours(doc["channel"])
            if quiet and (until := quiet_until(now, self.alerts.quiet_hours, self.tz)):
                await self._transition(doc, next_at=until, deferred="quiet_hours")
                self.deferred.labels("quiet_hours").inc()
            else:
                ready.append(doc)
        async with self.rt.store.outside_transactions():  # one wait for the claim and the tokens together
            claimed = await self._claim(ready, now)
            if not claimed:
                return 0
            lanes: dict[str, list[dict[str, Any]]] = {}
            for c in claimed:
                lanes.setdefault(digest.lane(c), []).append(c)
            try:
                grants = await self.buckets.take_many({key: len(g) for key, g in lanes.items()}, now,
                                                      bundle={key for key, g in lanes.items() if digest.bundles(g)})
            except Exception:
                self._held.difference_update(c["_id"] for c in claimed)  # nothing sent: the leases run out
                raise
        splits = {key: digest.split(g, grants[key][0]) for key, g in lanes.items()}
        held_until = {c["_id"]: now + timedelta(seconds=grants[key][1]) for key, sp in splits.items() for c in sp.held}
        for key, sp in splits.items():
            if sp.held:
                self._lanes_held[key] = now + timedelta(seconds=grants[key][1])
            else:
                self._lanes_held.pop(key, None)
        if held_until:
            over = [c for c in claimed if c["_id"] in held_until]
            await self._settle(over, functools.partial(self._put_back, until=held_until, now=now), publish)
            self.deferred.labels("rate_limit").inc(len(over))
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send(sp: digest.Split) -> list[dict[str, Any]]:
            async with gate:
                if sp.digest:
                    return sp.digest if await self._send_digest(sp.digest, now, publish) else []
                return [c for c in sp.singles if await self._send_one(c, now, publish)]

        results = await asyncio.gather(*(send(sp) for sp in splits.values() if sp.singles or sp.digest),
                                       return_exceptions=True)
        delivered = [c for r in results if isinstance(r, list) for c in r]
        if delivered:
            await self._settle(delivered, functools.partial(self._record_delivered, now=now), publish)
        if errors := [r for r in results if isinstance(r, BaseException)]:
            raise errors[0]
        return len(delivered)

    async def _send_one(self, c: dict[str, Any], now: datetime, publish: list[tuple[str, list[Outgoing]]]) -> bool:
        """Send one claimed alert; a failure is recorded at once (retry later, or give up)."""
        return await self._send([c], c["message"], c["_id"], now, publish)

    async def _send_digest(
        self, docs: list[dict[str, Any]], now: datetime, publish: list[tuple[str, list[Outgoing]]]
    ) -> bool:
        """Send a lane's held alerts as one digest, the most urgent named with their place: as their alerts say it,
        or, for an alert planned without one (from an event of an older build), as the case's opening gave it to
        notify's bulletin projection."""
        top = [d for d in sorted(docs, key=digest.pressing)[: digest.NAMED] if d.get("case_id")]
        unnamed = [d["case_id"] for d in top if not digest.place_said(d)]
        places: dict[str, str] = {}
        if unnamed:
            found = self.rt.store[BULLETIN_CASES].find(
                {"_id": {"$in": unnamed}}, {"street_name": 1, "community_name": 1, "grid": 1})
            places = {c["_id"]: describe(Place(street_name=c.get("street_name"), community_name=c.get(
                "community_name"), grid_code=c.get("grid")), self.rt.city) async for c in found}
        nid = digest.notification_id(docs)
        for d in docs:
            d["digest"] = nid  # recorded with the delivery
        if await self._send(docs, digest.build(docs, places, tz=self.tz), nid, now, publish):
            self.digests.labels(docs[0]["channel"]).inc()
            return True
        return False

    async def _send(
        self, docs: list[dict[str, Any]], message: dict[str, Any], nid: str, now: datetime,
        publish: list[tuple[str, list[Outgoing]]],
    ) -> bool:
        """Send a message for claimed alerts (one, or a digest of several); a failure is recorded at once."""
        first = docs[0]
        channel = self.channels.get(first["channel"])
        try:
            if channel is None:
                raise PermanentDeliveryError(f"no channel {first['channel']}")
            # The notification id travels with every message (webhook header, e-mail Message-ID, SMS ref, file
            # line) so a receiver can drop the re-send that follows a crash between this send and its record.
            await channel.send(first["address"], {"notification_id": nid, **message})
        except Exception as exc:
            for d in docs:
                d.pop("digest", None)
            await self._settle(docs, functools.partial(self._record_failure, exc=exc, now=now), publish)
            return False
        for d in docs:
            self.sent.labels(d["channel"], d["kind"]).inc()
        return True

    async def _claim(self, docs: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """Claim the attempts (in one bulk write, read back): only one worker of any instance sends a given
        attempt. A claim names its owner and carries a lease the owner renews; a dead owner's claim is taken
        over once the lease runs out. Returns the claimed deliveries, in order.

        A delivery this instance holds already (an earlier round's claim whose outcome waits to be recorded) is not
        claimed again: planning's hand-over may still name it, and the read-back would take it for this round's."""
        docs = [doc for doc in docs if doc["_id"] not in self._held]
        if not docs:
            return []
        moves = [(doc, {"status": "sending", "claimed_at": now, "attempts": doc["attempts"] + 1,
                        "owner": self.instance, "lease_s": now.timestamp() + CLAIM_LEASE_S}) for doc in docs]
        ids = [doc["_id"] for doc in docs]
        self._held.update(ids)  # before the write: a renewal in between keeps the lease
        try:
            moved, wanted = await self._transition_all(moves)
            if moved == len(moves):
                mine = set(ids)
            else:  # another instance claimed some first: read back which are this one's
                found = self.rt.store[DELIVERIES].find({"_id": {"$in": ids}}, {"owner": 1})
                mine = {d["_id"] async for d in found if d.get("owner") == self.instance}
        except Exception:
            self._held.difference_update(ids)
            raise
        self._held.difference_update(set(ids) - mine)
        return [w for w in wanted if w["_id"] in mine]

    async def _settle(
        self, claimed: list[dict[str, Any]], record: Callable[[list[dict[str, Any]]], Awaitable[Any]],
        publish: list[tuple[str, list[Outgoing]]],
    ) -> None:
        """Record the outcome of claims; while the store does not answer, keep each in memory and retry it with
        back-off (the claims stay this instance's: their leases are renewed as soon as the store is back)."""
        try:
            publish.extend(await record(claimed))
        except Exception as exc:
            if is_transient(exc):
                self._store_ok_since = None
            for c in claimed:
                retry = functools.partial(record, [c])
                self._outcomes[c["_id"]] = _Pending(retry, 1, time.monotonic() + OUTCOME_RETRY_S[0])
            self.outcomes_waiting.set(len(self._outcomes))
            log.warning("%d delivery outcome(s) kept in memory until the store answers: %s", len(claimed),
                        safe_error(exc))
        else:
            self._held.difference_update(c["_id"] for c in claimed)

    async def _flush_outcomes(self, publish: list[tuple[str, list[Outgoing]]]) -> bool:
        """Record the outcomes waiting in memory; False if the store still does not answer."""
        for nid, pending in list(self._outcomes.items()):
            if pending.next_at > time.monotonic():
                continue
            try:
                publish.extend(await pending.record())
            except Exception as exc:
                pending.tries += 1
                delay = min(OUTCOME_RETRY_S[1], OUTCOME_RETRY_S[0] * 2**pending.tries)
                pending.next_at = time.monotonic() + self.rnd.uniform(0.5, 1.0) * delay
                if not is_transient(exc):  # not the store being away: do not hold the other deliveries up
                    log.error("delivery %s: recording its outcome failed: %s", nid, safe_error(exc), exc_info=exc)
                    continue
                self._store_ok_since = None
                log.debug("delivery %s: outcome still not recorded: %s", nid, safe_error(exc))
                return False
            if self._store_ok_since is None:
                self._store_ok_since = self.rt.clock.now()
            del self._outcomes[nid]
            self._held.discard(nid)
            log.info("delivery %s: outcome recorded after %d tries", nid, pending.tries + 1)
        self.outcomes_waiting.set(len(self._outcomes))
        return True

    async def _put_back(
        self, claimed: list[dict[str, Any]], *, until: dict[str, datetime], now: datetime
    ) -> list[tuple[str, list[Outgoing]]]:
        """Over the rate: held, back to pending with no attempt spent, until the lane's next token (`until`), when
        they go as one digest; `held_at` keeps when the hold began."""
        await self._transition_all([
            (c, {"status": "pending", "attempts": c["attempts"] - 1, "deferred": "rate_limit", "owner": None,
                 "lease_s": None, "next_at": until[c["_id"]], digest.HELD: c.get(digest.HELD) or now})
            for c in claimed
        ])
        return []

    async def _record_delivered(
        self, claimed: list[dict[str, Any]], *, now: datetime
    ) -> list[tuple[str, list[Outgoing]]]:
        """Claim the delivered events in the ledger (the outbox holds them before the log moves), then mark the
        deliveries delivered; returns what to publish."""
        events = [
            (f"delivered:{c['_id']}", [Outgoing.of(NotificationDelivered(
                correlation_id=c.get("correlation_id", ""), notification_id=c["_id"], kind=c["kind"],
                channel=c["channel"], recipient=c["contact_id"], unit_id=c["unit_id"], case_id=c["case_id"],
                attempts=c["attempts"],
            ))])
            for c in claimed
        ]
        changes = {"status": "delivered", "delivered_at": now, "deferred": None, "owner": None, "lease_s": None}

        def note(doc: dict[str, Any]) -> dict[str, Any]:
            entry = {"at": now, "attempt": doc["attempts"], "ok": True, **({"digest": doc["digest"]} if doc.get(
                "digest") else {})}
            return {"history": [*doc.get("history", []), entry]}

        async with self.rt.store.outside_transactions():  # one wait for the claim and the record together
            entries = await self.rt.ledger.claim_many(events)
            moved, _ = await self._transition_all([(c, changes | note(c)) for c in claimed])
        if moved < len(claimed):
            # Another instance took a claim over while this one could not renew it (the store was away): the alert
            # did go out, so the log says delivered unless it already holds a final outcome.
            query = {"_id": {"$in": [c["_id"] for c in claimed]}, "status": {"$in": ["pending", "sending"]}}
            async for cur in self.rt.store[DELIVERIES].find(query):
                attempt = next(c["attempts"] for c in claimed if c["_id"] == cur["_id"])
                history = [*cur.get("history", []), {"at": now, "attempt": attempt, "ok": True}]
                await self._transition(cur, history=history, **changes)
        return entries

    async def _record_failure(
        self, claimed: list[dict[str, Any]], *, exc: BaseException, now: datetime
    ) -> list[tuple[str, list[Outgoing]]]:
        """A failed send of one alert or of a digest: each retried after one back-off (a digest's alerts come due
        together again), or given up."""
        error = safe_error(exc, self.secrets)
        delay = backoff_seconds(max(d["attempts"] for d in claimed), self.alerts.retry, self.rnd)
        entries: list[tuple[str, list[Outgoing]]] = []
        for doc in claimed:
            entries += await self._record_one_failure(doc, error, isinstance(exc, PermanentDeliveryError), delay, now)
        return entries

    async def _record_one_failure(
        self, doc: dict[str, Any], error: str, permanent: bool, delay: float, now: datetime
    ) -> list[tuple[str, list[Outgoing]]]:
        attempts = doc["attempts"]
        history = [*doc.get("history", []), {"at": now, "attempt": attempts, "ok": False, "error": error}]
        if attempts < self.alerts.retry.max_attempts and not permanent:
            moved = await self._transition(doc, status="pending", next_at=now + timedelta(seconds=delay),
                                           last_error=error, deferred=None, history=history, owner=None, lease_s=None)
            if moved is not None:
                self.failed.labels(doc["channel"]).inc()
            return []
        event = NotificationFailed(
            correlation_id=doc.get("correlation_id", ""), notification_id=doc["_id"], kind=doc["kind"],
            level=doc.get("level", 0), channel=doc["channel"], recipient=doc["contact_id"], unit_id=doc["unit_id"],
            case_id=doc["case_id"], attempts=attempts, error=error, permanent=permanent,
        )
        # Kept in the outbox, published once (a retried record publishes its earlier claim if still unpublished).
        entries = await self.rt.ledger.claim_many([(f"failed:{doc['_id']}", [Outgoing.of(event)])])
        moved = await self._transition(doc, status="failed", failed_at=now, last_error=error, deferred=None,
                                       history=history, owner=None, lease_s=None)
        if moved is None:  # recorded by an earlier try of this outcome (its answer lost), or taken over
            cur = await self.rt.store[DELIVERIES].find_one({"_id": doc["_id"]}, {"status": 1})
            if cur is None or cur.get("status") != "failed":
                return entries
        else:
            log.warning("delivery %s gave up after %d attempts: %s", doc["_id"], attempts, error)
            self.failed.labels(doc["channel"]).inc()
            self.gave_up.labels(doc["channel"]).inc()
        if doc["kind"] != "delivery_failed":  # tell the people who watch deliveries, on their own channels
            facts = {"case_id": doc.get("case_id"), "unit": doc["unit_id"],
                     "detail": f"{doc['kind']} → {doc['contact_id']} ({doc['channel']}) 投递失败: {error}"}
            planned = deliveries_for(self.rt.city, "delivery_failed", case_id=doc.get("case_id"),
                                     lead=doc["unit_id"], key=doc["_id"])
            plan = _Plan()
            self._plan(plan, planned, "delivery_failed", facts, 0, doc.get("correlation_id", ""), doc.get("case_id"))
            writes = self.rt.store.writes()
            async with self.rt.store.outside_transactions():
                await self._write(writes, plan, None)
                await self.rt.store.write_together(writes)
            self.on_committed()  # planned outside a transaction: visible at once
        return entries
