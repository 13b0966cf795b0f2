"""Durable pull consumers that apply each message exactly once, retry with back-off and dead-letter poison.

A subscription's handler gets a `Batch` of decoded messages and a store session; whatever it writes with that
session commits together with the ledger entries of the batch, and whatever it `emit`s is published after
the commit. Failures: a batch that fails is retried message by message to isolate the culprit; a message whose
handler keeps failing goes to `dlq.v1.<service>` after `max_deliver` attempts; an unreachable store or bus
never dead-letters anything, it only delays (the stream waits).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import BulkWriteError, ClientBulkWriteException, DuplicateKeyError

from contracts import registry, streams
from contracts.dead_letters import DeadLetter
from contracts.envelope import Event
from xiuhua import third_party, tracing
from xiuhua.bus import Outgoing, PublishDenied, Publisher
from xiuhua.clock import Clock, SystemClock
from xiuhua.ledger import AT_S, SEQ, Ledger, event_docs, outgoing_of, redelivery_of
from xiuhua.logs import log_context, message_fields
from xiuhua.observability import Metrics, observe_all
from xiuhua.pull_loop import install as install_pull_loop
from xiuhua.retention import NAK_BACKOFF_CAP_S, Retained
from xiuhua.store import Store, Writes, is_transient

install_pull_loop()

log = logging.getLogger("xiuhua.consumer")
RETRIES_LOGGED = 20  # messages of a batch sent back for retry that get a log line each

REDRIVE_MARK = "~r"
LOOK_AFTER = 16  # larger batches of first deliveries look at the ledger (and their keys) before writing
FAILURES = "failures"  # handler failures per message (ledger key), for the dead-letter budget
# Failure counts go after the ledger's horizon, counted from the last failure: a message failing that long ago
# has been dead-lettered or applied since (its count is dropped at the dead letter, left when it went through).
FAILURES_RETAINED = Retained(FAILURES, AT_S, "ledger")


class Poison(Exception):
    """A message that can never be applied as it is (undecodable, schema-violating)."""


@dataclass
class Item:
    """One message of a batch."""

    subject: str
    data: bytes
    headers: dict[str, str]
    key: str
    delivered: int
    stream_seq: int | None
    message: Any  # the decoded body: an Event for contract subjects, whatever `decode` returns otherwise
    out: list[Outgoing] = field(default_factory=list)
    # False when the handler declared the message a no-op that stays a no-op if applied again (`Batch.no_effect`)
    recorded: bool = True
    # True when a redelivery of it emits again what it emitted, with the same ids (`Batch.guarded`)
    emits_again: bool = False
    span: Any = None  # its trace span when tracing is on (`xiuhua.tracing`)


@dataclass
class Batch:
    """Messages applied together in one transaction."""

    items: list[Item]
    session: AsyncClientSession
    # False for a small batch of first deliveries: a handler may then skip a read that only guards a unique key
    # against a write made before (a case kept already, a source reference known). If the key was taken after
    # all, the write's duplicate-key error aborts the transaction and the batch is applied again with this True.
    look_first: bool = True
    # Writes sent after the handler returns, in one command with the batch's ledger entries where that pays
    # (`Store.write_together`): for what the handler does not read back within the batch.
    writes: Writes | None = None
    reads_in_session: bool = True  # see `reads`

    @property
    def reads(self) -> AsyncClientSession | None:
        """The session a handler reads with: the transaction's, except where the store combines writes and runs one
        transaction at a time (`Store.reads_outside`: the embedded store's lock, where nothing else writes while
        the batch holds the lock and a read outside the transaction sees the same). There the transaction then
        begins with the batch's writes, which can go as one command: nx-27017 refuses the client-level bulkWrite
        in a transaction begun on the database, and on the path from report to dispatch that command is most of a
        batch's round trips."""
        return self.session if self.reads_in_session else None

    def later(self) -> Writes:
        """The writes sent with the ledger entries once the handler returns (not visible to its own reads)."""
        if self.writes is None:
            raise RuntimeError("this batch sends no writes later")
        return self.writes

    def emit(self, item: Item, event: Event, subject: str | None = None) -> None:
        """Publish `event` once `item` is committed (and again, harmlessly, if it is redelivered)."""
        if item.span is None:
            item.out.append(Outgoing.of(event, subject))
            return
        tracing.annotate(item.span, case_id=getattr(event, "case_id", None))
        item.out.append(Outgoing.of(event, subject, tracing.headers_for(item.span)))

    def no_effect(self, item: Item) -> None:
        """`item` changed nothing, so it needs no ledger entry: if it comes again it is simply judged again.

        Only for messages the domain can judge twice without harm (a sensor reading that moves no device state:
        a copy meets the same state and is a no-op again, or a later one and is ignored as older or judged as a
        late reading; either way its effect happens at most once). Telemetry arrives far faster than reports,
        and a ledger document per reading was most of what a reading cost the store. An item that emitted
        anything is recorded regardless."""
        item.recorded = False

    def guarded(self, item: Item, *, emits_again: bool = False) -> None:
        """`item`'s effect is guarded by what it wrote in this same transaction, so it needs no ledger entry: applied
        again, it finds that and changes nothing (scoring keeps the event id among a case's facts; the bulletin
        opens a case's record once). A second instance applying it at the same moment writes the same document, so
        one of the two transactions is retried and finds it (on the embedded store they run one at a time anyway).
        An item that emitted anything is recorded regardless, since its ledger entry is the outbox that republishes
        after a crash, unless `emits_again`: applied again as a redelivery (a crash between the commit and the
        publish, a lost acknowledgement), the handler emits again what it emitted, with the same ids, kept in the
        document its effect wrote with the message's stream sequence (`outbox_of`, `emit_kept`: dispatch's case)
        or derived from it (scoring's unit updates); the bus drops the copy within its duplicate window, the
        consumers' guards after it. A document the consumer writes anyway can name the events folded into it
        (`folded_before`, `naming`). Each saves a ledger document per message."""
        item.recorded = False
        item.emits_again = emits_again

    def emit_kept(self, item: Item, outbox: Mapping[str, Any] | None) -> None:
        """Emit again, with their ids, the events a document kept (`outbox_of`) if `item` is the message that kept
        them delivered again (`Batch.guarded`); another message (a copy under another id) emits nothing."""
        if outbox and redelivery_of(outbox, redelivered=item.delivered > 1, seq=item.stream_seq):
            item.out.extend(outgoing_of(outbox))


APPLIED = "applied"  # in a document a guarded consumer writes: the ids of the events folded into it


def outbox_of(item: Item) -> dict[str, Any]:
    """What `item` emitted so far, and its stream sequence, as a document keeps them for `Batch.emit_kept`."""
    kept: dict[str, Any] = {"events": event_docs(item.out)}
    if item.stream_seq is not None:
        kept[SEQ] = item.stream_seq
    return kept


def folded_before(doc: dict[str, Any] | None, event_id: str) -> bool:
    """Whether `doc` names the event as folded into it already (a copy of it then changes nothing)."""
    return doc is not None and event_id in doc.get(APPLIED, ())


def naming(doc: dict[str, Any] | None, event_id: str) -> list[str]:
    """The `applied` list of `doc` once the event is folded into it, to be written with the fold's effect."""
    return [*(doc or {}).get(APPLIED, []), event_id]


_pending_counts: contextvars.ContextVar[list[tuple[Any, float]] | None] = contextvars.ContextVar(
    "xiuhua_pending_counts", default=None
)


def count(metric: Any, amount: float = 1) -> None:
    """Add to a business counter (cases opened, merged, dispatched ...) once the batch being applied commits.

    A handler runs again when its transaction is retried (a write conflict on MongoDB, the driver's retry) or its
    batch is applied again looking first (a message the ledger's key refused): counted as it ran, the counters
    said more than happened. Outside a batch (a timer, the delivery worker, a route) it counts at once."""
    pending = _pending_counts.get()
    if pending is None:
        metric.inc(amount)
    else:
        pending.append((metric, amount))


Handler = Callable[[Batch], Awaitable[None]]
Decoder = Callable[[str, bytes], Any]


def decode_event(subject: str, data: bytes) -> Event:
    """Decode a message of the bus contracts; a body that does not fit is poison."""
    try:
        return registry.decode(subject, data)
    except Exception as exc:
        raise Poison(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc


def decode_tolerant(subject: str, data: bytes) -> Any:
    """A contract event, or a plain dict for a subject this build has no model for (a newer producer's event):
    only bytes that are not a JSON object are poison. For consumers that read a few fields by name."""
    try:
        return registry.decode(subject, data)
    except Exception:
        try:
            body = json.loads(data)
        except ValueError as exc:
            raise Poison(f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise Poison("not a JSON object") from None
        return body


@dataclass
class Subscription:
    """A durable pull consumer of one service."""

    name: str
    subject: str
    handle: Handler
    decode: Decoder = decode_event
    batch_size: int = 1000  # capped by XIUHUA_BATCH_SIZE
    batch_timeout: float = 1.0  # the long poll when idle; messages that are there are handed over at once
    description: str = ""
    # Subjects whose messages are erased from the stream once applied: personal data an outside system put on
    # the bus then rests only in the service's own store (docs/decisions/0016-erase-callers-from-the-bus.md).
    erase_subjects: tuple[str, ...] = ()
    on_commit: Callable[[], None] | None = None  # called after each committed batch (e.g. to wake a worker)
    # Messages the handler never acts on, by what they are (a type it does not alert on): acknowledged at once,
    # with no ledger read, transaction or entry. Only for a rule that depends on the message alone, never on
    # state: such a message has no effect however often it comes.
    ignores: Callable[[Any], bool] | None = None
    # Event types the handler never acts on, judged by the subject's model before any decoding (notify's alerts
    # act on five of the eighteen case events): such a message is acknowledged as `ignores` would, without even
    # being parsed. A subject of no known type is decoded as usual.
    skips_type: Callable[[type[Event]], bool] | None = None
    # Seconds a batch that is not full waits for more before it is handled (`xiuhua.pull_loop`): for consumers
    # nobody waits on, so that at a modest rate they write once per linger instead of once per message.
    linger: float = 0.0
    # A consumer only some deployments need (one handing over to another): asked, once connected and before any
    # consumer starts, whether this one is wanted here; when not, its durable consumer is neither created nor
    # pulled. Such a consumer may also be deleted by its own service (the permission model grants it).
    only_if: Callable[[JetStreamContext], Awaitable[bool]] | None = None


def backoff(delivered: int, *, base: float = 0.5, cap: float = NAK_BACKOFF_CAP_S) -> float:
    """Exponential back-off with full jitter for the n-th failed delivery."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, delivered - 1))


def ledger_key(consumer: str, msg_id: str) -> str:
    """The ledger key of a message; a re-driven copy counts as the original."""
    return f"{consumer}:{msg_id.split(REDRIVE_MARK, 1)[0]}"


class ConsumerRunner:
    """Applies batches for one subscription."""

    def __init__(
        self,
        *,
        service: str,
        sub: Subscription,
        store: Store,
        ledger: Ledger,
        publisher: Publisher,
        metrics: Metrics,
        max_deliver: int,
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        self.sub = sub
        self.store = store
        self.ledger = ledger
        self.publisher = publisher
        self.metrics = metrics
        self.max_deliver = max_deliver
        self.clock = clock or SystemClock()
        self._labels = (service, sub.name)
        self._spans: dict[str, tuple[Any, str | None]] = {}  # the batch's message spans and why any failed

    def _item(self, msg: Msg, delivery: Delivery) -> Item:
        headers = dict(msg.headers or {})
        delivered, seq, _ = delivery
        msg_id = headers.get("Nats-Msg-Id") or f"seq-{seq}"
        return Item(msg.subject, msg.data, headers, ledger_key(self.sub.name, msg_id), delivered, seq, None)

    async def process(self, msgs: Sequence[Msg]) -> None:
        """Apply a pulled batch and acknowledge what is done."""
        with log_context(service=self.service, consumer=self.sub.name):  # on every line the batch logs
            if not tracing.on():
                await self._process(msgs)
                return
            self._spans = {}
            try:
                await self._process(msgs)
            finally:
                spans, self._spans = self._spans, {}
                tracing.end(spans.values())

    def _traced(self, item: Item) -> None:
        item.span = tracing.consuming(self.service, self.sub.name, item.subject, item.headers, item.key)
        self._spans[item.key] = (item.span, None)

    def _untraced(self, item: Item, error: str) -> None:
        """Mark the span of a message that was not applied (sent back, dead-lettered) with why."""
        if item.key in self._spans:
            self._spans[item.key] = (item.span, error)

    async def _process(self, msgs: Sequence[Msg]) -> None:
        started = time.perf_counter()
        deliveries = [delivery_of(msg) for msg in msgs]
        self._observe_waits(deliveries, time.time())
        pairs: list[tuple[Msg, Item]] = []
        ignored: list[Msg] = []
        for msg, delivery in zip(msgs, deliveries, strict=True):
            if self._passes_over(msg.subject):
                ignored.append(msg)
                continue
            item = self._item(msg, delivery)
            if tracing.on():
                self._traced(item)
            try:
                item.message = self.sub.decode(item.subject, item.data)
            except Poison as exc:
                # The error is not logged: it may quote the body (personal data); the dead letter holds it.
                log.error(
                    "%s/%s: dead-lettering %s, which cannot be decoded (the dead letter says why)",
                    self.service,
                    self.sub.name,
                    item.subject,
                    extra=_fields(item),
                )
                await self._dead_letter(msg, item, str(exc))
                continue
            if self._ignored(item):
                ignored.append(msg)
                continue
            pairs.append((msg, item))
        if pairs:
            await self._apply(pairs)
        for msg in ignored:
            await msg.ack()
        if ignored:
            self.metrics.ignored.labels(*self._labels).inc(len(ignored))
        self.metrics.batch_seconds.labels(*self._labels).observe(time.perf_counter() - started)

    def _observe_waits(self, deliveries: Sequence[Delivery], now: float) -> None:
        # Clocks of two machines may disagree by a little; a message that is not a JetStream delivery has no moment.
        waits = [max(0.0, now - stored) for _, _, stored in deliveries if stored is not None]
        observe_all(self.metrics.wait_seconds.labels(*self._labels), waits)

    def _passes_over(self, subject: str) -> bool:
        if self.sub.skips_type is None:
            return False
        try:
            model = registry.model_for(subject)  # remembered per subject: no parsing after the first
        except registry.UnknownSubject:
            return False
        return self.sub.skips_type(model)

    def _ignored(self, item: Item) -> bool:
        if self.sub.ignores is None:
            return False
        try:
            return self.sub.ignores(item.message)
        except Exception:  # a rule that cannot judge this message: apply it the usual way
            log.warning(
                "%s/%s: ignores() failed on %s",
                self.service,
                self.sub.name,
                item.subject,
                exc_info=True,
                extra=_fields(item),
            )
            return False

    async def _apply(self, pairs: list[tuple[Msg, Item]], *, look_first: bool | None = None) -> None:
        # A small batch of first deliveries goes straight to its transaction: the ledger's unique key refuses an
        # entry recorded before (a producer's resend after the bus's duplicate window, a consumer reset), which
        # aborts the transaction with all its effects, and the batch is then applied again looking at the ledger
        # first (and the handler at its own keys, `Batch.look_first`). Each look is a store round trip on every
        # hop a report makes to dispatch, where batches are small; a first delivery applied before is rare. A
        # redelivery (a crash, a lost acknowledgement) looks first, and so does a large batch, where one look is
        # shared by many messages and a refusal would waste much.
        if look_first is None:
            look_first = len(pairs) > LOOK_AFTER or any(item.delivered > 1 for _, item in pairs)
        try:
            seen = await self.ledger.seen(item.key for _, item in pairs) if look_first else {}
        except Exception as exc:
            await self._retry_later(pairs, exc)
            return
        done: list[tuple[Msg, Item, list[Outgoing]]] = []
        fresh: list[tuple[Msg, Item]] = []
        for msg, item in pairs:
            if item.key in seen:
                self.metrics.duplicates.labels(*self._labels).inc()
                again = self.ledger.to_publish_again(
                    seen[item.key], redelivered=item.delivered > 1, seq=item.stream_seq
                )
                done.append((msg, item, again))
            else:
                fresh.append((msg, item))
        if fresh:
            try:
                await self._commit([i for _, i in fresh], look_first)
                if self.sub.on_commit:
                    self.sub.on_commit()
                done.extend((m, i, i.out) for m, i in fresh)
                self.metrics.applied.labels(*self._labels).inc(len(fresh))
            except Exception as exc:
                if not look_first and _duplicate_key(exc):
                    self.metrics.relooked.labels(*self._labels).inc()
                    await self._apply(pairs, look_first=True)
                    return
                if is_transient(exc) or isinstance(exc, NatsError | asyncio.TimeoutError):
                    await self._retry_later(fresh, exc)
                elif len(fresh) > 1:
                    # Isolate the culprit: the rest of the batch goes through one by one.
                    await self._finish(done)
                    for pair in fresh:
                        await self._apply([pair])
                    return
                else:
                    await self._failed(*fresh[0], exc)
        await self._finish(done)

    async def _commit(self, items: list[Item], look_first: bool = True) -> None:
        counted: list[tuple[Any, float]] = []  # the increments of the attempt that committed

        async def work(session: AsyncClientSession) -> None:
            for item in items:
                item.out.clear()  # a retried transaction starts over
                item.recorded = True
                item.emits_again = False
            counts: list[tuple[Any, float]] = []  # a retried transaction counts over
            token = _pending_counts.set(counts)
            writes = self.store.writes()
            try:
                await self.sub.handle(Batch(items, session, look_first, writes, not self.store.reads_outside))
            finally:
                _pending_counts.reset(token)
            recorded = [i for i in items if i.recorded or (i.out and not i.emits_again)]
            self.ledger.add(
                writes, [(i.key, i.out) for i in recorded], swept=False, seqs=[i.stream_seq for i in recorded]
            )
            await self.store.write_together(writes, session)
            counted[:] = counts

        await self.store.in_transaction(work)
        # One increment per counter and label set: a batch of a thousand readings counts "received" a thousand times.
        totals: dict[int, tuple[Any, float]] = {}
        for metric, amount in counted:
            held = totals.get(id(metric))
            totals[id(metric)] = (metric, amount if held is None else held[1] + amount)
        for metric, amount in totals.values():
            metric.inc(amount)

    async def _finish(self, done: list[tuple[Msg, Item, list[Outgoing]]]) -> None:
        if not done:
            return
        try:
            await self.ledger.publish([(i.key, out) for _, i, out in done], marks=False)
        except PublishDenied as exc:
            if len(done) > 1:  # which of them caused a refused event: each goes on its own
                for one in done:
                    await self._finish([one])
                return
            await self._refused(done[0][0], done[0][1], exc)
            return
        except Exception as exc:
            # Committed but not yet published: redelivery (or the sweeper) publishes from the ledger.
            await self._retry_later([(m, i) for m, i, _ in done], exc)
            return
        if self.sub.erase_subjects:
            try:
                await self._erase([m for m, _, _ in done if m.subject in self.sub.erase_subjects])
            except Exception as exc:
                # Not acknowledged: the redelivery finds the ledger entry and erases again.
                await self._retry_later([(m, i) for m, i, _ in done], exc)
                return
        for msg, _, _ in done:
            await msg.ack()

    async def _erase(self, msgs: Sequence[Msg]) -> None:
        seqs = [seq for m in msgs if (seq := _stream_seq(m)) is not None]
        if seqs:
            await self.publisher.erase(_stream_of(self.sub), seqs)
            self.metrics.erased.labels(*self._labels).inc(len(seqs))

    async def _retry_later(self, pairs: Sequence[tuple[Msg, Item]], exc: BaseException) -> None:
        reason = "transient" if is_transient(exc) or isinstance(exc, NatsError | asyncio.TimeoutError) else "error"
        # A line per message, naming it (a store away sends whole batches back: the first few say enough).
        for _, item in pairs[:RETRIES_LOGGED]:
            log.warning(
                "%s/%s: %s back for retry (delivery %d): %s",
                self.service,
                self.sub.name,
                item.subject,
                item.delivered,
                _brief(exc),
                extra=_fields(item),
            )
        if len(pairs) > RETRIES_LOGGED:
            log.warning(
                "%s/%s: %d more message(s) of the batch back for retry",
                self.service,
                self.sub.name,
                len(pairs) - RETRIES_LOGGED,
            )
        for msg, item in pairs:
            self._untraced(item, f"back for retry: {_brief(exc)}")
            self.metrics.retries.labels(*self._labels, reason).inc()
            try:
                await msg.nak(delay=backoff(_delivered(msg)))
            except Exception:  # connection gone: the server redelivers after ack_wait anyway
                log.debug("nak failed", exc_info=True)

    async def _failed(self, msg: Msg, item: Item, exc: BaseException) -> None:
        self._untraced(item, _brief(exc))
        # The budget counts the handler's failures, kept in the store, not JetStream's deliveries: a message
        # redelivered because an instance died holding it, or sent back while the store was away, has not
        # failed, and must not reach the dead letters sooner for it.
        try:
            failures = await self._count_failure(item.key)
        except Exception as store_exc:
            await self._retry_later([(msg, item)], store_exc)
            return
        if failures >= self.max_deliver:
            log.error(
                "%s/%s: dead-lettering %s after %d failures: %s",
                self.service,
                self.sub.name,
                item.subject,
                failures,
                _brief(exc),
                extra=_fields(item),
            )
            await self._dead_letter(msg, item, _brief(exc))
            with contextlib.suppress(Exception):
                await self.store[FAILURES].delete_one({"_id": item.key})
        else:
            log.warning(
                "%s/%s: %s failed (%d of %d): %s",
                self.service,
                self.sub.name,
                item.subject,
                failures,
                self.max_deliver,
                _brief(exc),
                exc_info=exc,
                extra=_fields(item),
            )
            self.metrics.retries.labels(*self._labels, "error").inc()
            await msg.nak(delay=backoff(failures))

    async def _refused(self, msg: Msg, item: Item, exc: PublishDenied) -> None:
        # Its effect is committed, but an event it caused may not be published by this service's user: a retry
        # cannot succeed, so the message goes to the dead letters with the refusal as its reason, and the ledger
        # entry is given up so the sweeper does not try it for ever.
        log.error("%s/%s: %s", self.service, self.sub.name, exc, extra=_fields(item))
        self.metrics.publish_refused.labels(*self._labels).inc()
        try:
            await self.ledger.abandon(item.key, exc)
        except Exception as store_exc:
            await self._retry_later([(msg, item)], store_exc)
            return
        await self._dead_letter(msg, item, str(exc))

    async def _count_failure(self, key: str) -> int:
        col = self.store[FAILURES]
        # The last failure's moment: a count left by a message that went through in the end goes with the ledger.
        await col.update_one(
            {"_id": key}, {"$inc": {"n": 1}, "$set": {AT_S: self.clock.now().timestamp()}}, upsert=True
        )
        doc = await col.find_one({"_id": key})
        return int(doc["n"]) if doc else 1

    async def _dead_letter(self, msg: Msg, item: Item, error: str) -> None:
        self._untraced(item, f"dead-lettered: {error}")
        letter = DeadLetter(
            correlation_id=item.headers.get("Nats-Msg-Id", ""),
            service=self.service,
            consumer=self.sub.name,
            original_subject=item.subject,
            original_msg_id=item.headers.get("Nats-Msg-Id"),
            stream_seq=item.stream_seq,
            deliveries=item.delivered,
            error=error,
            payload_b64=base64.b64encode(item.data).decode(),
            headers={k: v for k, v in item.headers.items() if k != "Nats-Msg-Id"},
        )
        try:
            await self.publisher.publish(letter)
        except Exception as exc:
            await self._retry_later([(msg, item)], exc)
            return
        self.metrics.dead_letters.labels(*self._labels).inc()
        await msg.ack()


def _duplicate_key(exc: BaseException) -> bool:
    """A write refused for a unique key already taken (a ledger entry recorded before, say)."""
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == 11000 for e in exc.details.get("writeErrors", []))
    if isinstance(exc, ClientBulkWriteException):
        return any(e.get("code") == 11000 for e in exc.details.get("writeErrors", []))
    return False


def _fields(item: Item) -> dict[str, str]:
    """The log fields naming a message: its id, and the correlation and case ids of its decoded body."""
    return message_fields(item.headers.get("Nats-Msg-Id") or item.key, item.message)


Delivery = tuple[int, int | None, float | None]  # times delivered, stream sequence, stored at (epoch seconds)

# The tokens of a JetStream acknowledgement subject that name the delivery count, the stream sequence and the moment
# the stream stored the message, by the subject's number of tokens: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.
# <cseq>.<ns>.<pending>`, and with a domain and an account hash after `$JS.ACK` (and a random token at the end).
_ACK_TOKENS = {9: (4, 5, 7), 11: (6, 7, 9), 12: (6, 7, 9)}


def delivery_of(msg: Msg) -> Delivery:
    """How often a JetStream message was delivered, its stream sequence and when the stream stored it, read from its
    reply subject. nats-py's `Msg.metadata` builds three frozen dataclasses and a datetime for the same three
    numbers, a tenth of intake's CPU on sensor readings (profiled); what this does not recognise goes through it."""
    reply = msg.reply
    if reply and reply.startswith("$JS.ACK."):
        tokens = reply.split(".")
        at = _ACK_TOKENS.get(len(tokens))
        if at is not None:
            try:
                return int(tokens[at[0]]), int(tokens[at[1]]), int(tokens[at[2]]) / 1e9
            except ValueError:
                pass
    try:
        meta = msg.metadata
        return meta.num_delivered, int(meta.sequence.stream), meta.timestamp.timestamp()
    except Exception:  # not a JetStream delivery
        return 1, None, None


def _stream_seq(msg: Msg) -> int | None:
    return delivery_of(msg)[1]


def _delivered(msg: Msg) -> int:
    return delivery_of(msg)[0]


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


def _stream_of(sub: Subscription) -> str:
    return streams.stream_for(sub.subject.replace("*", "x").replace(">", "x")).name


async def reconcile_consumers(js: JetStreamContext, subs: Sequence[Subscription], *, ack_wait: float) -> None:
    """Apply a changed ack wait to durable consumers that already exist (binding to one keeps its old config)."""
    for sub in subs:
        stream = _stream_of(sub)
        info = await js.consumer_info(stream, sub.name)
        if info.config.ack_wait != ack_wait:
            log.info("%s: ack wait %.0f s -> %.0f s", sub.name, info.config.ack_wait or 0, ack_wait)
            await js.add_consumer(stream, info.config.evolve(ack_wait=ack_wait))


async def _undecoded(_message: Any) -> None:
    """The runner decodes each message itself (`Subscription.decode`): FastStream's batch decoder would parse
    every message a second time and give each a fresh uuid, about a tenth of a busy consumer's CPU."""
    return None


def attach(broker: NatsBroker, runner: ConsumerRunner, *, ack_wait: float = 60.0) -> Any:
    """Register the runner's durable pull consumer on the broker (the stream is provisioned elsewhere); returns
    FastStream's subscriber."""
    sub = runner.sub

    subscriber = broker.subscriber(
        sub.subject,
        stream=JStream(_stream_of(sub), declare=False),
        durable=sub.name,
        pull_sub=PullSub(batch_size=sub.batch_size, timeout=sub.batch_timeout, batch=True),
        inbox_prefix=third_party.CONNECTION_INBOX,  # deliveries under the service user's own inbox prefix
        ack_policy=AckPolicy.MANUAL,
        decoder=_undecoded,
        config=ConsumerConfig(ack_wait=ack_wait, max_deliver=-1, max_ack_pending=max(1000, sub.batch_size * 4)),
        title=f"{runner.service}/{sub.name}",
        description=sub.description or None,
    )
    third_party.set_linger(subscriber, sub.linger)
    context = broker.context

    # The batch is read from the context here rather than injected (`Context("message")`): FastDepends resolves
    # an injected field through a worker thread, a thread hop per batch in every consumer.
    @subscriber
    async def _consume() -> None:
        await runner.process(context.get_local("message").raw_message)

    return subscriber
