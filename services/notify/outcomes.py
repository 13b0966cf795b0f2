"""Recording what became of a sent alert: delivered, retried after a back-off, given up (`notify.v1.failed`), or
held back by the rate limit for the lane's next digest.

Delivered or visibly failed, once: the outcome of a send is kept in memory and retried until the store answers
(the claims stay this instance's: their leases are renewed as soon as the store is back).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contracts.notifications import NotificationDelivered, NotificationFailed
from services.notify import digest, store
from services.notify.channels import PermanentDeliveryError, safe_error
from services.notify.handlers import NotifyHandlers
from services.notify.policy import backoff_seconds
from xiuhua.bus import Outgoing
from xiuhua.service import Runtime
from xiuhua.store import is_transient

log = logging.getLogger("xiuhua.notify")

OUTCOME_RETRY_S = (0.2, 5.0)  # back-off bounds for recording an outcome while the store does not answer

Outcome = Callable[[], Awaitable[list[tuple[str, list[Outgoing]]]]]


def delivered_event_id(delivery: dict[str, Any]) -> str:
    """The id of a delivery's `notify.v1.delivered` event: a UUIDv7 whose time is when the delivery was planned and
    whose other bits come from its notification id, so every copy of the event carries the same id."""
    planned = delivery.get("created_at")
    ms = int(planned.timestamp() * 1000) if isinstance(planned, datetime) else 0
    digest_ = int.from_bytes(hashlib.sha256(f"delivered:{delivery['_id']}".encode()).digest()[:10], "big")
    seq, rand = digest_ >> 68 & 0xFFF, digest_ & ((1 << 62) - 1)
    return str(uuid.UUID(int=(ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand))


def round_key(claimed: list[dict[str, Any]]) -> str:
    """The ledger key of the outbox entry holding a round's delivered events: the same for the same deliveries."""
    ids = sorted(c["_id"] for c in claimed)
    return f"delivered:{ids[0]}+{len(ids) - 1}:" + hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


@dataclass
class _Pending:
    """An outcome sent but not yet recorded (the store did not answer): retried with back-off."""

    record: Outcome
    tries: int
    next_at: float  # time.monotonic()


class Outcomes:
    """The outcomes of one instance's sends, recorded in the delivery log (or kept in memory until it answers)."""

    def __init__(self, rt: Runtime, planning: NotifyHandlers, secrets: list[str], rnd: random.Random | None) -> None:
        self.rt = rt
        self.planning = planning
        self.alerts = rt.city.alerts
        self.secrets = secrets
        self.rnd = rnd or random.Random()
        self.failed = rt.metrics.counter("xiuhua_alerts_failed", "Delivery attempts that failed", ("channel",))
        self.gave_up = rt.metrics.counter("xiuhua_alerts_gave_up", "Deliveries that exhausted retries", ("channel",))
        self.outcomes_waiting = rt.metrics.gauge(
            "xiuhua_alerts_outcomes_waiting", "Sent alerts whose outcome waits in memory for the store")
        self._held: set[str] = set()  # claims this instance holds: sending, or its outcome not yet recorded
        self._outcomes: dict[str, _Pending] = {}
        self._store_ok_since: datetime | None = rt.clock.now()

    async def _transition(
        self, doc: dict[str, Any], expect: dict[str, Any] | None = None, **changes: Any
    ) -> dict[str, Any] | None:
        """Move a delivery to its next state if nobody moved it since `doc` was read; None if somebody did."""
        return await store.transition(self.rt.store, doc, expect, **changes)

    async def _transition_all(
        self, moves: list[tuple[dict[str, Any], dict[str, Any]]]
    ) -> tuple[int, list[dict[str, Any]]]:
        """Several `_transition`s in one bulk write (see `store.transition_all`)."""
        return await store.transition_all(self.rt.store, moves)

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
        """Put the delivered events in the ledger's outbox, one entry for the round (it holds them before the log
        moves), then mark the deliveries delivered; returns what to publish.

        Once per delivery by the log's own state and the events' ids: a delivery is recorded delivered once (a
        conditional move), and its event's id derives from the delivery alone (`delivered_event_id`), so a copy
        published again (a retried record, the re-send after a crash between send and record) is dropped by the
        bus. Either comes within seconds of the first (both wait for the same store or the same lease), well
        inside the bus's duplicate window. An entry per delivery cost two ledger writes an alert."""
        events = [
            Outgoing.of(NotificationDelivered(
                event_id=delivered_event_id(c), correlation_id=c.get("correlation_id", ""), notification_id=c["_id"],
                kind=c["kind"], channel=c["channel"], recipient=c["contact_id"], unit_id=c["unit_id"],
                case_id=c["case_id"], attempts=c["attempts"],
            ))
            for c in claimed
        ]
        changes: dict[str, Any] = {"status": "delivered", "delivered_at": now, "deferred": None, "owner": None,
                                   "lease_s": None, **store.finished_at(now)}

        def note(doc: dict[str, Any]) -> dict[str, Any]:
            entry = {"at": now, "attempt": doc["attempts"], "ok": True, **({"digest": doc["digest"]} if doc.get(
                "digest") else {})}
            return {"history": [*doc.get("history", []), entry]}

        async with self.rt.store.outside_transactions():  # one wait for the claim and the record together
            entries = await self.rt.ledger.claim_many([(round_key(claimed), events)])
            moved, _ = await self._transition_all([(c, changes | note(c)) for c in claimed])
        if moved < len(claimed):
            # Another instance took a claim over while this one could not renew it (the store was away): the alert
            # did go out, so the log says delivered unless it already holds a final outcome.
            for cur in await store.unsettled(self.rt.store, [c["_id"] for c in claimed]):
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
                                       history=history, owner=None, lease_s=None, **store.finished_at(now))
        if moved is None:  # recorded by an earlier try of this outcome (its answer lost), or taken over
            if await store.status_of(self.rt.store, doc["_id"]) != "failed":
                return entries
        else:
            log.warning("delivery %s gave up after %d attempts: %s", doc["_id"], attempts, error)
            self.failed.labels(doc["channel"]).inc()
            self.gave_up.labels(doc["channel"]).inc()
        if doc["kind"] != "delivery_failed":  # tell the people who watch deliveries, on their own channels
            await self.planning.plan_now(lambda plan: self.planning.planner.delivery_failed(plan, doc, error))
        return entries
