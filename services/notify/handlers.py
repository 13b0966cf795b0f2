"""Notify's thin edge: case events become pending deliveries; a worker sends them and logs the outcome."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING

from contracts.cases import CaseDispatched
from contracts.notifications import NotificationDelivered
from services.notify.channels import Channel
from services.notify.recipients import deliveries_for
from xiuhua.bus import Outgoing
from xiuhua.consumer import Batch
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.notify")

DELIVERIES = "deliveries"
MAX_ATTEMPTS = 6


class NotifyHandlers:
    """Plans deliveries from events and sends them."""

    def __init__(self, rt: Runtime, channels: dict[str, Channel]) -> None:
        self.rt = rt
        self.channels = channels
        self.sent = rt.metrics.counter("xiuhua_alerts_sent", "Alerts delivered", ("channel", "kind"))
        self.failed = rt.metrics.counter("xiuhua_alerts_failed", "Delivery attempts that failed", ("channel",))

    async def ensure_indexes(self) -> None:
        """The worker looks for pending deliveries that are due."""
        await self.rt.store[DELIVERIES].create_index([("status", ASCENDING), ("next_at", ASCENDING)])
        await self.rt.store[DELIVERIES].create_index([("case_id", ASCENDING)])

    async def on_case_event(self, batch: Batch) -> None:
        """A dispatched case alerts its lead unit (new_case)."""
        col = self.rt.store[DELIVERIES]
        now = self.rt.clock.now()
        for item in batch.items:
            ev = item.message
            if not isinstance(ev, CaseDispatched):
                continue
            planned = deliveries_for(
                self.rt.city, "new_case", case_id=ev.case_id, level=ev.dispatch_round - 1,
                lead=ev.lead_unit, cooperating=ev.cooperating_units,
            )
            for d in planned:
                if await col.find_one({"_id": d.notification_id}, {"_id": 1}, session=batch.session):
                    continue  # one alert per case, kind, level and recipient, whatever is redelivered
                await col.insert_one(
                    {
                        "_id": d.notification_id, "kind": d.kind, "case_id": ev.case_id, "unit_id": d.unit_id,
                        "contact_id": d.contact_id, "channel": d.channel, "address": d.address,
                        "urgent": d.urgent, "status": "pending", "attempts": 0, "next_at": now, "created_at": now,
                        "correlation_id": ev.correlation_id,
                        "message": {
                            "kind": "new_case", "title": f"新案件 {ev.case_id}", "case_id": ev.case_id,
                            "category_code": ev.category_code, "unit": ev.lead_unit.name,
                            "due_at": ev.due_at.isoformat(), "rule_id": ev.rule_id,
                        },
                    },
                    session=batch.session,
                )

    async def deliver_due(self, limit: int = 200) -> int:
        """Send pending deliveries that are due; returns how many were delivered."""
        col = self.rt.store[DELIVERIES]
        now = self.rt.clock.now()
        due = [d async for d in col.find({"status": "pending", "next_at": {"$lte": now}}).limit(limit)]
        delivered = 0
        for doc in due:
            if await self._attempt(doc):
                delivered += 1
        return delivered

    async def _attempt(self, doc: dict[str, Any]) -> bool:
        col = self.rt.store[DELIVERIES]
        now = self.rt.clock.now()
        # Claim the attempt: only one worker (of any instance) sends a given attempt.
        claimed = await col.update_one(
            {"_id": doc["_id"], "status": "pending", "attempts": doc["attempts"]},
            {"$set": {"status": "sending", "claimed_at": now}, "$inc": {"attempts": 1}},
        )
        if claimed.modified_count != 1:
            return False
        attempts = doc["attempts"] + 1
        channel = self.channels.get(doc["channel"])
        try:
            if channel is None:
                raise LookupError(f"no channel {doc['channel']}")
            await channel.send(doc["address"], {"notification_id": doc["_id"], **doc["message"]})
        except Exception as exc:
            self.failed.labels(doc["channel"]).inc()
            delay = timedelta(seconds=min(600, 2 ** attempts))
            status = "pending" if attempts < MAX_ATTEMPTS else "failed"
            await col.update_one(
                {"_id": doc["_id"]},
                {"$set": {"status": status, "next_at": now + delay,
                          "last_error": f"{type(exc).__name__}: {exc}"[:300]}},
            )
            return False
        event = NotificationDelivered(
            correlation_id=doc.get("correlation_id", ""), notification_id=doc["_id"], kind=doc["kind"],
            channel=doc["channel"], recipient=doc["contact_id"], unit_id=doc["unit_id"], case_id=doc["case_id"],
            attempts=attempts,
        )
        await col.update_one({"_id": doc["_id"]}, {"$set": {"status": "delivered", "delivered_at": now}})
        key = f"delivered:{doc['_id']}"
        if await self.rt.ledger.claim(key, [Outgoing.of(event)]):
            await self.rt.ledger.publish([(key, [Outgoing.of(event)])])
        self.sent.labels(doc["channel"], doc["kind"]).inc()
        return True
