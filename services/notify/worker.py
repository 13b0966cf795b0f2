"""The delivery worker: sends pending deliveries when planning commits new ones and every `poll_seconds` besides.

Delivery states (the `deliveries` collection is the delivery log 投递日志):
pending → sending → delivered | pending (retry after back-off) | failed (retries exhausted: `notify.v1.failed`).
Quiet hours and rate limits move `next_at` without spending an attempt. Sending claims the attempt with a
conditional update, so two instances never both send it: a claim names its owner (this process) and carries a short
lease the owner renews while it lives, so a dead owner's claim is taken up in seconds. A delivery due at once is
written claimed by the instance that planned it (`services.notify.handlers`): its worker sends it without a claim
write of its own, and gives the claim back if its round does not send it. Every message carries its
notification id, so the one re-send a crash between sending and recording can cause is recognisable by the receiver
(and dropped by the `file` channel): a claim taken over goes again as it went, with no token (its dead owner spent
it), alone under its own id or as the same digest, never held for a digest under another id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts.values import Place
from services.notify import digest, store
from services.notify.channels import Channel, PermanentDeliveryError, safe_error, secrets_of
from services.notify.handlers import NotifyHandlers
from services.notify.outcomes import Outcomes
from services.notify.policy import CLAIM_LEASE_S, claim_expired, claimed, quiet_until, unclaimed
from services.notify.ratelimit import RATE_BUCKETS, TokenBuckets
from xiuhua.bus import Outgoing
from xiuhua.city.place_names import describe
from xiuhua.service import Runtime
from xiuhua.store import is_transient

log = logging.getLogger("xiuhua.notify")

__all__ = ["CLAIM_LEASE_S", "RENEW_EVERY_S", "DeliveryWorker"]

RENEW_EVERY_S = CLAIM_LEASE_S / 4  # the owner renews its claims' leases this often
SCAN_EXPIRED_S = 1.0  # how often the worker looks for expired claims
SEND_CONCURRENCY = 8  # recipients served at once; each recipient's alerts go one after the other, in order


class DeliveryWorker(Outcomes):
    """Sends the deliveries planning wrote, and records what became of each."""

    def __init__(
        self, rt: Runtime, channels: dict[str, Channel], planning: NotifyHandlers, rnd: random.Random | None = None
    ) -> None:
        alerts = rt.city.alerts
        super().__init__(rt, planning, [s for name in channels for s in secrets_of(alerts.channel(name))], rnd)
        self.channels = channels
        self.tz = ZoneInfo(rt.city.info.timezone)
        self.buckets = TokenBuckets(rt.store[RATE_BUCKETS], alerts.rate_limit)
        self.sent = rt.metrics.counter("xiuhua_alerts_sent", "Alerts delivered", ("channel", "kind"))
        self.deferred = rt.metrics.counter("xiuhua_alerts_deferred", "Sends put off", ("reason",))
        self.taken_over = rt.metrics.counter(
            "xiuhua_alerts_claims_taken_over", "Claims of dead instances taken up again (the alert is re-sent)"
        )
        self.digests = rt.metrics.counter(
            "xiuhua_alerts_digests",
            "Digests sent: one message for the alerts a recipient's rate limit held",
            ("channel",),
        )
        self.backlog = rt.metrics.gauge(
            "xiuhua_alerts_backlog",
            "Alerts a recipient's rate limit holds for its next digest",
            ("recipient", "channel"),
        )
        self.backlog_age = rt.metrics.gauge(
            "xiuhua_alerts_backlog_oldest_seconds",
            "How long the oldest alert a recipient's rate limit holds waited",
            ("recipient", "channel"),
        )
        self._backlog_seen: set[tuple[str, str]] = set()
        self._lanes_held: dict[str, datetime] = {}  # lanes this instance held alerts of, and when those are due
        self.instance = planning.instance  # owner of this one's claims, planning's too
        self._scanned_at = 0.0  # time.monotonic() of the worker's last scan for due deliveries
        self._last_scan: datetime | None = None

    async def run(self) -> None:
        """The delivery worker: runs when planning commits new deliveries, and every `poll_seconds` besides
        (retries, deferrals that fell due, outcomes still to record, claims of dead instances)."""
        poll = self.alerts.poll_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.planning.wake.wait(), timeout=poll)
            self.planning.wake.clear()
            try:
                # Woken by planning between scans: its hints are the new work; the scan comes at its own pace.
                await self.deliver_due(scan=time.monotonic() - self._scanned_at >= poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store away: the next round tries again
                log.warning("delivery worker: %s", safe_error(exc, self.secrets), exc_info=not is_transient(exc))

    async def renew_leases(self) -> None:
        """Keep this instance's claims alive (one write for all of them), planning's not yet sent among them: only
        a dead owner's claim expires."""
        held = self._held | self.planning.claimed
        if not held:
            return
        lease = self.rt.clock.now().timestamp() + CLAIM_LEASE_S
        try:
            # Only leases with less than a lease minus a renewal period left: none ever has less than half a lease.
            await store.renew(self.rt.store, sorted(held), self.instance, lease, older_than=lease - RENEW_EVERY_S)
        except Exception as exc:
            self._store_ok_since = None
            log.warning("claim leases not renewed: %s", safe_error(exc, self.secrets))

    async def deliver_due(self, limit: int = 200, *, scan: bool = True) -> int:
        """Send pending deliveries that are due; returns how many reached their recipients (a digest's all count).

        First the outcomes of earlier sends still to be recorded; then claims whose owner died (lease run out);
        then the due deliveries (those planning just wrote, and with `scan` every pending one that is due), all
        in one round. The delivered events of the round are published together.
        """
        publish: list[tuple[str, list[Outgoing]]] = []
        hints: dict[str, dict[str, Any]] = {}
        try:
            if not await self._flush_outcomes(publish) or (self._outcomes and self._store_ok_since is None):
                return 0  # the store is still away: the outcomes wait in memory, their retry probes it
            now = self.rt.clock.now()
            hints, stale = self._hints()
            await self._give_back(stale)
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
            due = sorted(
                (d for d in hints.values() if d["next_at"] <= now and digest.lane(d) not in later),
                key=lambda d: (d["next_at"], d["_id"]),
            )
            chosen = digest.pick(due, limit)
            # Planning's claims beyond this round (a burst plans more than a round takes) are the next round's, at
            # once: given back, each would cost a write more, and its claim another.
            taken = {d["_id"] for d in chosen}
            again = [hints.pop(nid) for nid in list(hints) if nid in self.planning.claimed and nid not in taken]
            self.planning.hand_back(again)
            return await self._send_round(chosen, publish, now)
        except Exception:
            self._store_ok_since = None
            raise
        finally:
            await self._give_back([d for nid, d in hints.items() if nid in self.planning.claimed])
            await self._publish(publish)

    def _hints(self) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
        """Planning's hand-over, and the claims it made that this round must give back rather than send: made
        before the store was last away, when their leases may have run out and another instance taken them up
        (the give-back, conditional on the version, then changes nothing; whoever took one up sends it once)."""
        hints = self.planning.take_hints()
        ok = self._store_ok_since
        stale = [d for nid, d in hints.items() if nid in self.planning.claimed and (ok is None or ok > d["claimed_at"])]
        for d in stale:
            del hints[d["_id"]]
        return hints, stale

    async def give_back_planned(self) -> None:
        """A stopping instance gives planning's claims it will not send back to pending: another instance sends
        them at once instead of after their leases."""
        hints = self.planning.take_hints()
        await self._give_back([d for nid, d in hints.items() if nid in self.planning.claimed])

    async def _give_back(self, docs: list[dict[str, Any]]) -> None:
        """Planning's claims a round did not send (not its turn, its lane left for later, the round failed): back
        to pending for the scan of any instance. If that write fails their leases run out instead."""
        if not docs:
            return
        self.planning.claimed.difference_update(d["_id"] for d in docs)
        try:
            await self._transition_all([(d, unclaimed(d)) for d in docs])
        except Exception as exc:
            log.warning("%d claim(s) left to expire: %s", len(docs), safe_error(exc, self.secrets))

    async def _due(self, now: datetime, limit: int) -> tuple[list[dict[str, Any]], set[str]]:
        """The pending deliveries due at `now` a round takes (whole lanes, earliest first), and the lanes it leaves
        to a later round: their times by status (an equality both stores answer from an index, a few small
        documents), then the chosen ones in full."""
        times = await store.pending_times(self.rt.store)
        self._count_backlog(times, now)
        due = sorted((d for d in times if d["next_at"] <= now), key=lambda d: (d["next_at"], d["_id"]))
        held = {digest.lane(d) for d in due if digest.held(d)}
        for key in [k for k, t in self._lanes_held.items() if t <= now and k not in held]:
            del self._lanes_held[key]  # taken care of (by another instance): no longer a reason to scan
        if not due:
            return [], set()
        chosen = digest.pick(due, limit)
        later = {digest.lane(d) for d in due} - {digest.lane(d) for d in chosen}
        docs = await store.pending(self.rt.store, [d["_id"] for d in chosen])
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
        sending = await store.sending(self.rt.store)  # judged here: claims are few
        # A digest's claims are taken over together, once all have run out: resent, it is the same digest.
        running = {d["digest"] for d in sending if d.get("digest") and not claim_expired(d, now)}
        for stale in [d for d in sending if claim_expired(d, now) and d.get("digest") not in running][:limit]:
            if stale["_id"] in self._held or stale["_id"] in self.planning.claimed:
                continue  # this instance's own: its outcome is waiting to be recorded, or planning's not yet sent
            owner = stale.get("owner") or "?"
            note = {
                "at": now,
                "attempt": stale.get("attempts", 0),
                "ok": None,
                "error": f"claim of {owner} expired: outcome unknown, sent again with the same notification id",
            }
            lease = stale.get("lease_s")
            expect = {"status": "sending", "lease_s": lease if lease is not None else {"$exists": False}}
            # Marked a re-send: its token was spent by the owner that claimed it, so it goes again as it went (alone,
            # or as the same digest), never held for a digest under another id the receiver cannot recognise.
            taken = await self._transition(
                stale,
                expect,
                status="pending",
                next_at=now,
                owner=None,
                lease_s=None,
                resend=True,
                history=[*stale.get("history", []), note],
            )
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
        ready = await self._past_quiet_hours(docs, now)
        async with self.rt.store.outside_transactions():  # one wait for the claim and the tokens together
            claimed = await self._claim(ready, now)
            if not claimed:
                return 0
            # A dead owner's sends taken over spend no token: their owner spent it (see `_take_over_expired`).
            lanes: dict[str, list[dict[str, Any]]] = {}
            again: dict[str, list[dict[str, Any]]] = {}
            for c in claimed:
                (again if c.get("resend") else lanes).setdefault(digest.lane(c), []).append(c)
            try:
                grants = (
                    await self.buckets.take_many(
                        {key: len(g) for key, g in lanes.items()},
                        now,
                        bundle={key for key, g in lanes.items() if digest.bundles(g)},
                    )
                    if lanes
                    else {}
                )
            except Exception:
                self._held.difference_update(c["_id"] for c in claimed)  # nothing sent: the leases run out
                raise
        splits = await self._hold_beyond_tokens(claimed, lanes, grants, now, publish)
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send(key: str) -> list[dict[str, Any]]:
            async with gate:
                out = await self._resend(again.get(key, []), now, publish)  # sent before: first again
                sp = splits.get(key, digest.Split())
                if sp.digest:
                    return out + (sp.digest if await self._send_digest(sp.digest, now, publish) else [])
                return out + [c for c in sp.singles if await self._send_one(c, now, publish)]

        keys = [*again, *(k for k, sp in splits.items() if k not in again and (sp.singles or sp.digest))]
        results = await asyncio.gather(*(send(key) for key in keys), return_exceptions=True)
        delivered = [c for r in results if isinstance(r, list) for c in r]
        if delivered:
            await self._settle(delivered, functools.partial(self._record_delivered, now=now), publish)
        if errors := [r for r in results if isinstance(r, BaseException)]:
            raise errors[0]
        return len(delivered)

    async def _hold_beyond_tokens(
        self,
        claimed: list[dict[str, Any]],
        lanes: dict[str, list[dict[str, Any]]],
        grants: dict[str, tuple[int, float]],
        now: datetime,
        publish: list[tuple[str, list[Outgoing]]],
    ) -> dict[str, digest.Split]:
        """Each lane's alerts split by its tokens (限流); the alerts beyond them put back until the lane's refill."""
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
        return splits

    async def _past_quiet_hours(self, docs: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
        """The alerts quiet hours do not hold back; the others are put off to their end, no attempt spent."""
        ready = []
        for doc in docs:
            quiet = not doc.get("urgent") and self.alerts.respects_quiet_hours(doc["channel"])
            if quiet and (until := quiet_until(now, self.alerts.quiet_hours, self.tz)):
                # Planning's claim (quiet hours began since) is given back with it: pending, no attempt spent.
                back = unclaimed(doc) if doc["_id"] in self.planning.claimed else {}
                self.planning.claimed.discard(doc["_id"])
                await self._transition(doc, next_at=until, deferred="quiet_hours", **back)
                self.deferred.labels("quiet_hours").inc()
            else:
                ready.append(doc)
        return ready

    async def _send_one(self, c: dict[str, Any], now: datetime, publish: list[tuple[str, list[Outgoing]]]) -> bool:
        """Send one claimed alert; a failure is recorded at once (retry later, or give up)."""
        return await self._send([c], c["message"], c["_id"], now, publish)

    async def _resend(
        self, docs: list[dict[str, Any]], now: datetime, publish: list[tuple[str, list[Outgoing]]]
    ) -> list[dict[str, Any]]:
        """A dead owner's sends taken over, sent again as they went (no token): alone under their own ids, or as the
        digest they went in, by the digest id stored on their claims before it was sent. Returns those sent."""
        sent = [c for c in docs if not c.get("digest") and await self._send_one(c, now, publish)]
        digests: dict[str, list[dict[str, Any]]] = {}
        for c in docs:
            if c.get("digest"):
                digests.setdefault(c["digest"], []).append(c)
        for group in digests.values():
            if await self._send_digest(group, now, publish, again=True):
                sent += group
        return sent

    async def _send_digest(
        self,
        docs: list[dict[str, Any]],
        now: datetime,
        publish: list[tuple[str, list[Outgoing]]],
        *,
        again: bool = False,
    ) -> bool:
        """Send a lane's held alerts as one digest, the most urgent named with their place: as their alerts say it,
        or, for an alert planned without one (from an event of an older build), as the case's opening gave it to
        notify's bulletin projection.

        Its id (and the places it names from the projection) are stored on its claims before it goes, so that, its
        owner dead, it is sent `again` as it went: the same id and text, its alerts read back by that id (some may
        have been recorded delivered already)."""
        nid = docs[0]["digest"] if again else digest.notification_id(docs)
        if again:
            shown = await store.digest_members(self.rt.store, nid) or docs
            places: dict[str, str] = next((m[digest.PLACES] for m in shown if m.get(digest.PLACES)), {})
        else:
            shown, places = docs, await self._projected_places(docs)
        for d in docs:
            d["digest"] = nid  # recorded with the delivery
            if places:
                d[digest.PLACES] = places
        ids = [d["_id"] for d in docs]
        mark = None if again else functools.partial(store.mark_digest, self.rt.store, ids, nid, places, self.instance)
        if await self._send(docs, digest.build(shown, places, tz=self.tz), nid, now, publish, before=mark):
            self.digests.labels(docs[0]["channel"]).inc()
            return True
        return False

    async def _projected_places(self, docs: list[dict[str, Any]]) -> dict[str, str]:
        """The places, by case, of the alerts a digest names that give none themselves, from notify's bulletin."""
        top = [d for d in sorted(docs, key=digest.pressing)[: digest.NAMED] if d.get("case_id")]
        unnamed = [d["case_id"] for d in top if not digest.place_said(d)]
        if not unnamed:
            return {}
        return {
            c["_id"]: describe(
                Place(
                    street_name=c.get("street_name"), community_name=c.get("community_name"), grid_code=c.get("grid")
                ),
                self.rt.city,
            )
            for c in await store.bulletin_places(self.rt.store, unnamed)
        }

    async def _send(
        self,
        docs: list[dict[str, Any]],
        message: dict[str, Any],
        nid: str,
        now: datetime,
        publish: list[tuple[str, list[Outgoing]]],
        before: Callable[[], Awaitable[int]] | None = None,
    ) -> bool:
        """Send a message for claimed alerts (one, or a digest of several); a failure is recorded at once. `before`
        (a digest's id stored on its claims) must reach every claim, or nothing is sent."""
        first = docs[0]
        channel = self.channels.get(first["channel"])
        try:
            if channel is None:
                raise PermanentDeliveryError(f"no channel {first['channel']}")
            if before is not None and await before() < len(docs):
                raise RuntimeError("claims taken over by another instance before the digest went out")
            # The notification id travels with every message (webhook header, e-mail Message-ID, SMS ref, file
            # line) so a receiver can drop the re-send that follows a crash between this send and its record.
            await channel.send(first["address"], {"notification_id": nid, **message})
        except Exception as exc:
            for d in docs:
                if not d.get("resend"):  # a re-send stays the digest it went in
                    d.pop("digest", None)
                    d.pop(digest.PLACES, None)
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
        claimed again: planning's hand-over may still name it, and the read-back would take it for this round's.
        One planning wrote claimed for this instance is this round's as it is, with no write."""
        docs = [doc for doc in docs if doc["_id"] not in self._held]
        planned = {doc["_id"] for doc in docs if doc["_id"] in self.planning.claimed}
        self._held.update(planned)
        self.planning.claimed.difference_update(planned)
        moves = [(doc, claimed(doc, self.instance, now)) for doc in docs if doc["_id"] not in planned]
        ids = [doc["_id"] for doc, _ in moves]
        self._held.update(ids)  # before the write: a renewal in between keeps the lease
        try:
            moved, wanted = await self._transition_all(moves)
            if moved == len(moves):
                mine = set(ids)
            else:  # another instance claimed some first: read back which are this one's
                mine = await store.owned(self.rt.store, ids, self.instance)
        except Exception:
            self._held.difference_update(ids)
            self._held.difference_update(planned)  # nothing sent: their leases run out
            raise
        self._held.difference_update(set(ids) - mine)
        moved_to = {w["_id"]: w for w in wanted if w["_id"] in mine}
        return [
            doc if doc["_id"] in planned else moved_to[doc["_id"]]
            for doc in docs
            if doc["_id"] in planned or doc["_id"] in moved_to
        ]
