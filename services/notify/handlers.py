"""Notify's thin edge: events become pending deliveries; a worker sends them and logs every outcome.

Delivery states (the `deliveries` collection is the delivery log 投递日志):
pending → sending → delivered | pending (retry after back-off) | failed (retries exhausted: `notify.v1.failed`).
Quiet hours and rate limits move `next_at` without spending an attempt. A delivery's `_id` is its notification
id (kind, case, level, contact, channel): planning finds before inserting, so redelivered events and restarts
never plan it twice. Sending claims the attempt with a conditional update, so two instances never both send it.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from contracts.cases import CaseDeadlineWarning, CaseDispatched, CaseEscalated, CaseOpened, CaseOverdue
from contracts.notifications import NotificationDelivered, NotificationFailed
from contracts.values import ReportSource, Urgency
from services.notify import messages
from services.notify.channels import Channel, PermanentDeliveryError, safe_error, secrets_of
from services.notify.policy import backoff_seconds, quiet_until
from services.notify.ratelimit import RATE_BUCKETS, TokenBuckets
from services.notify.recipients import Delivery, deliveries_for
from xiuhua.bus import Outgoing
from xiuhua.consumer import Batch
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.notify")

DELIVERIES = "deliveries"
CASES = "alert_cases"  # notify's own projection: who leads and cooperates on a case, where, what
STALE_SENDING = timedelta(minutes=5)  # a claim older than this was left by a crash: send again


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

    async def ensure_indexes(self) -> None:
        """The worker looks for pending deliveries that are due; the log is read by case."""
        col = self.rt.store[DELIVERIES]
        await col.create_index([("status", ASCENDING), ("next_at", ASCENDING)])
        await col.create_index([("case_id", ASCENDING)])

    # ---- planning -------------------------------------------------------------------------------------------

    async def on_case_event(self, batch: Batch) -> None:
        """Case events that alert: dispatched (new case), deadline warning, overdue, escalated, urgent sensor case."""
        for item in batch.items:
            ev = item.message
            s = batch.session
            if isinstance(ev, CaseOpened):
                if ev.source == ReportSource.sensor and ev.urgency == Urgency.urgent:
                    facts = {"case_id": ev.case_id, "category": ev.category_name or ev.category_code,
                             "address": ev.place.address, "street_code": ev.street_code, "detail": ev.description}
                    planned = deliveries_for(self.rt.city, "sensor_emergency", case_id=ev.case_id,
                                             street_code=ev.street_code, urgent=True)
                    await self._plan(s, planned, "sensor_emergency", facts, 0, ev.correlation_id, ev.case_id)
            elif isinstance(ev, CaseDispatched):
                case = {"_id": ev.case_id, "lead": ev.lead_unit.unit_id, "lead_name": ev.lead_unit.name,
                        "cooperating": [u.unit_id for u in ev.cooperating_units], "street_code": ev.street_code,
                        "category_code": ev.category_code, "urgency": str(ev.urgency)}
                await self._project(s, case)
                facts = {"case_id": ev.case_id, "category": self._category(ev.category_code),
                         "category_code": ev.category_code, "unit": ev.lead_unit.name, "due_at": ev.due_at,
                         "rule_id": ev.rule_id, "street_code": ev.street_code}
                level = ev.dispatch_round - 1
                planned = deliveries_for(
                    self.rt.city, "new_case", case_id=ev.case_id, level=level, lead=ev.lead_unit,
                    cooperating=ev.cooperating_units, street_code=ev.street_code,
                    urgent=ev.urgency == Urgency.urgent,
                )
                await self._plan(s, planned, "new_case", facts, level, ev.correlation_id, ev.case_id)
            elif isinstance(ev, CaseDeadlineWarning | CaseOverdue | CaseEscalated):
                kind = {CaseDeadlineWarning: "deadline_warning", CaseOverdue: "overdue",
                        CaseEscalated: "escalation"}[type(ev)]
                level = ev.level if isinstance(ev, CaseEscalated) else 0
                case = await self.rt.store[CASES].find_one({"_id": ev.case_id}, session=s) or {}
                unit = self.rt.city.units.get(ev.unit_id)
                facts = {"case_id": ev.case_id, "category": self._category(case.get("category_code")),
                         "unit": unit.name if unit else ev.unit_id, "due_at": ev.due_at, "street_code": ev.street_code}
                planned = deliveries_for(
                    self.rt.city, kind, case_id=ev.case_id, level=level, lead=ev.unit_id,
                    cooperating=case.get("cooperating", []), street_code=ev.street_code or case.get("street_code"),
                    urgent=case.get("urgency") == "urgent",
                )
                await self._plan(s, planned, kind, facts, level, ev.correlation_id, ev.case_id)

    async def on_score_event(self, batch: Batch) -> None:
        """Scoring events that alert: a unit ranking's black list (bottom_ranking), a merchant's escalation."""
        for item in batch.items:
            ev, subject = item.message, item.subject
            if subject.startswith("score.v1.ranking_published"):
                await self._ranking(batch.session, ev)
            elif subject.startswith("score.v1.merchant_escalated"):
                await self._merchant(batch.session, ev)

    async def _ranking(self, s: AsyncClientSession | None, ev: Any) -> None:
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
                await self._plan(s, planned, "bottom_ranking", facts, 0, _get(ev, "correlation_id", ""), None)

    async def _merchant(self, s: AsyncClientSession | None, ev: Any) -> None:
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
        await self._plan(s, planned, "merchant_escalation", facts, 0, _get(ev, "correlation_id", ""), case_id)

    async def _project(self, s: AsyncClientSession | None, case: dict[str, Any]) -> None:
        """Keep notify's view of a case (find first: no duplicate-key error inside a transaction)."""
        col = self.rt.store[CASES]
        if await col.find_one({"_id": case["_id"]}, {"_id": 1}, session=s):
            await col.replace_one({"_id": case["_id"]}, {k: v for k, v in case.items() if k != "_id"}, session=s)
        else:
            await col.insert_one(case, session=s)

    def _category(self, code: str | None) -> str:
        cat = self.rt.city.category(code) if code else None
        return f"{cat.name_zh}（{code}）" if cat else (code or "")

    async def _plan(
        self, s: AsyncClientSession | None, planned: list[Delivery], kind: str, facts: dict[str, Any], level: int,
        correlation_id: str, case_id: str | None,
    ) -> None:
        col = self.rt.store[DELIVERIES]
        now = self.rt.clock.now()
        for d in planned:
            if await col.find_one({"_id": d.notification_id}, {"_id": 1}, session=s):
                continue  # one alert per case, kind, level, recipient and channel, whatever is redelivered
            message = messages.build(kind, facts, urgent=d.urgent, level=level, tz=self.tz)
            await col.insert_one(
                {
                    "_id": d.notification_id, "kind": kind, "level": level, "case_id": case_id,
                    "unit_id": d.unit_id, "contact_id": d.contact_id, "channel": d.channel, "address": d.address,
                    "urgent": d.urgent, "status": "pending", "attempts": 0, "next_at": now, "created_at": now,
                    "correlation_id": correlation_id, "message": message, "history": [], "v": 0,
                },
                session=s,
            )

    # ---- sending --------------------------------------------------------------------------------------------

    async def _transition(self, doc: dict[str, Any], **changes: Any) -> dict[str, Any] | None:
        """Move a delivery to its next state if nobody moved it since `doc` was read; None if somebody did.

        A conditional whole-document replace on the version `v`: atomic on MongoDB, and it keeps datetimes and
        sub-documents intact on nx-27017 (whose `$set` stores datetimes as text and whose `$push` stores
        sub-documents as JSON strings).
        """
        v = doc.get("v")
        cond = {"_id": doc["_id"], "v": v} if v is not None else {"_id": doc["_id"], "v": {"$exists": False}}
        new = {k: val for k, val in doc.items() if k != "_id"} | changes | {"v": (v or 0) + 1}
        res = await self.rt.store[DELIVERIES].replace_one(cond, new)
        return {"_id": doc["_id"], **new} if res.modified_count == 1 else None

    async def deliver_due(self, limit: int = 200) -> int:
        """Send pending deliveries that are due; returns how many were delivered."""
        col = self.rt.store[DELIVERIES]
        now = self.rt.clock.now()
        async for stale in col.find({"status": "sending", "claimed_at": {"$lt": now - STALE_SENDING}}).limit(limit):
            await self._transition(stale, status="pending", next_at=now)  # a crash left it claimed: send again
        query = {"status": "pending", "next_at": {"$lte": now}}
        due = [d async for d in col.find(query).sort("next_at", 1).limit(limit)]
        delivered = 0
        for doc in due:
            if await self._attempt(doc):
                delivered += 1
        return delivered

    async def _attempt(self, doc: dict[str, Any]) -> bool:
        now = self.rt.clock.now()
        quiet = not doc.get("urgent") and self.alerts.respects_quiet_hours(doc["channel"])
        if quiet and (until := quiet_until(now, self.alerts.quiet_hours, self.tz)):
            await self._transition(doc, next_at=until, deferred="quiet_hours")
            self.deferred.labels("quiet_hours").inc()
            return False
        # Claim the attempt: only one worker (of any instance) sends a given attempt.
        attempts = doc["attempts"] + 1
        claimed = await self._transition(doc, status="sending", claimed_at=now, attempts=attempts)
        if claimed is None:
            return False
        wait = await self.buckets.take(f"{doc['contact_id']}:{doc['channel']}", now)
        if wait > 0:  # over the recipient's rate: put it back, no attempt spent
            await self._transition(claimed, status="pending", attempts=doc["attempts"],
                                   next_at=now + timedelta(seconds=wait), deferred="rate_limit")
            self.deferred.labels("rate_limit").inc()
            return False
        channel = self.channels.get(doc["channel"])
        try:
            if channel is None:
                raise PermanentDeliveryError(f"no channel {doc['channel']}")
            await channel.send(doc["address"], {"notification_id": doc["_id"], **doc["message"]})
        except Exception as exc:
            await self._failed_attempt(claimed, attempts, exc)
            return False
        event = NotificationDelivered(
            correlation_id=doc.get("correlation_id", ""), notification_id=doc["_id"], kind=doc["kind"],
            channel=doc["channel"], recipient=doc["contact_id"], unit_id=doc["unit_id"], case_id=doc["case_id"],
            attempts=attempts,
        )
        key = f"delivered:{doc['_id']}"
        first = await self.rt.ledger.claim(key, [Outgoing.of(event)])  # the outbox holds it before the log moves
        history = [*claimed.get("history", []), {"at": now, "attempt": attempts, "ok": True}]
        await self._transition(claimed, status="delivered", delivered_at=now, deferred=None, history=history)
        if first:
            await self.rt.ledger.publish([(key, [Outgoing.of(event)])])
        self.sent.labels(doc["channel"], doc["kind"]).inc()
        return True

    async def _failed_attempt(self, doc: dict[str, Any], attempts: int, exc: BaseException) -> None:
        now = self.rt.clock.now()
        error = safe_error(exc, self.secrets)
        self.failed.labels(doc["channel"]).inc()
        history = [*doc.get("history", []), {"at": now, "attempt": attempts, "ok": False, "error": error}]
        permanent = isinstance(exc, PermanentDeliveryError)
        if attempts < self.alerts.retry.max_attempts and not permanent:
            delay = backoff_seconds(attempts, self.alerts.retry, self.rnd)
            await self._transition(doc, status="pending", next_at=now + timedelta(seconds=delay), last_error=error,
                                   deferred=None, history=history)
            return
        log.warning("delivery %s gave up after %d attempts: %s", doc["_id"], attempts, error)
        event = NotificationFailed(
            correlation_id=doc.get("correlation_id", ""), notification_id=doc["_id"], kind=doc["kind"],
            level=doc.get("level", 0), channel=doc["channel"], recipient=doc["contact_id"], unit_id=doc["unit_id"],
            case_id=doc["case_id"], attempts=attempts, error=error, permanent=permanent,
        )
        key = f"failed:{doc['_id']}"
        first = await self.rt.ledger.claim(key, [Outgoing.of(event)])  # kept in the outbox: published once
        await self._transition(doc, status="failed", failed_at=now, last_error=error, deferred=None, history=history)
        if first:
            await self.rt.ledger.publish([(key, [Outgoing.of(event)])])
        self.gave_up.labels(doc["channel"]).inc()
        if doc["kind"] != "delivery_failed":  # tell the people who watch deliveries, on their own channels
            facts = {"case_id": doc.get("case_id"), "unit": doc["unit_id"],
                     "detail": f"{doc['kind']} → {doc['contact_id']} ({doc['channel']}) 投递失败: {error}"}
            planned = deliveries_for(self.rt.city, "delivery_failed", case_id=doc.get("case_id"),
                                     lead=doc["unit_id"], key=doc["_id"])
            await self._plan(None, planned, "delivery_failed", facts, 0, doc.get("correlation_id", ""),
                             doc.get("case_id"))
