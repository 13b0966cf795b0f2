"""The former alert consumer, `notify-cases`, handing over to the one case consumer (`notify-bulletin-cases`).

Before this build notify had two durable consumers of `case.v1.>`: `notify-cases` planned alerts, with notify's view
of each case apart (`alert_cases`), and `notify-bulletin-cases` folded the bulletin. Now the bulletin's consumer
does both, from the position it had: nothing is folded twice or skipped, and it plans the alerts of the events
after it again (planned before: the log holds them, nothing is sent twice). Where the alert consumer was behind
when the older build stopped, the events between the two were folded but not yet planned. So `notify-cases` runs
on with the former way of planning for every event up to the end of the stream as this build first found it
(`until`) and passes over the rest; once it meets only events past that end with everything up to it
acknowledged, it retires for good (a ledger claim, `RETIRED`) and passes over every message by its subject,
undecoded, with no store access, until notify next starts: then it is deleted from the server, which would
otherwise go on delivering every case event to it. A deployment the older build never ran has no such consumer,
and it is never created there: it counts as retired at once (`wanted`).

An older build's views of cases that a dispatch since has given a record's view are dated once the handover is
over, so the purge takes them a horizon later (`store.supersede_older_views`).
"""

from __future__ import annotations

import logging
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import streams
from services.notify import planning, store
from services.notify.handlers import NotifyHandlers
from xiuhua.consumer import Batch, Subscription
from xiuhua.ledger import COLLECTION as LEDGER
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.notify")

CONSUMER = "notify-cases"
RETIRED = "retired:notify-cases"  # ledger claim, kept for good: the former alert consumer has handed over
_RETIRED_CLAIM = ({"_id": RETIRED}, {"$set": {"retired": True}})  # the claim's filter and update
_STAGE = "handover"


class Handover:
    """`notify-cases` until it has planned what the case consumer's position leaves out, then passing over all."""

    def __init__(self, rt: Runtime, handlers: NotifyHandlers) -> None:
        self.rt = rt
        self.handlers = handlers
        self.retired = False
        self.until: int | None = None  # the last stream sequence it plans; set by `wanted`
        self._retiring = False

    def subscription(self) -> Subscription:
        """The former alert consumer, with the types it always passed over, and everything once retired."""
        return Subscription(
            CONSUMER,
            "case.v1.>",
            self.on_case_event,
            description="Case events: the former alert consumer's rest",
            on_commit=self.on_committed,
            skips_type=self.skips_type,
            ignores=planning.ignores,
            linger=self.rt.settings.prompt_linger,
            only_if=self.wanted,
        )

    async def wanted(self, js: JetStreamContext) -> bool:
        """Whether the former alert consumer has anything to hand over here: an older build left it on the server
        and it has not retired. One that retired before is deleted now; where there is none (a new deployment, or
        deleted by hand) there is nothing to hand over, and it counts as retired at once."""
        stream = streams.CASES.name
        try:
            info = await js.consumer_info(stream, CONSUMER)
        except NotFoundError:
            if not self.retired:
                await self.rt.store[LEDGER].update_one(*_RETIRED_CLAIM, upsert=True)
                self.retired = True
                self._supersede()
            return False
        if not self.retired:
            # What it hands over ends where the stream ends now; nothing, if it never acknowledged anything.
            self.until = int((await js.stream_info(stream)).state.last_seq) if info.ack_floor.stream_seq else 0
            return True
        try:
            await js.delete_consumer(stream, CONSUMER)
        except NatsError as exc:  # a NATS configuration from before notify's user might delete it
            log.warning(
                "%s: retired but not deleted (%s): regenerate the NATS configuration (python -m xiuhua.security), "
                "or delete it by hand: nats consumer rm %s %s",
                CONSUMER,
                type(exc).__name__,
                stream,
                CONSUMER,
            )
            return False
        log.info("%s: deleted, it handed over to the case consumer before", CONSUMER)
        return False

    def skips_type(self, kind: type) -> bool:
        return self.retired or planning.skips_type(kind)

    async def on_start(self) -> None:
        """Whether it handed over before; if so, the older views a dispatch superseded are dated (once)."""
        self.retired = bool(await self.rt.ledger.seen([RETIRED]))
        if self.retired:
            self._supersede()

    async def on_case_event(self, batch: Batch) -> None:
        """Plan, the former way, the events up to `until`; past it, once everything up to it is acknowledged, the
        consumer retires."""
        self._retiring = False  # a run whose transaction did not commit retired nothing
        until = await self._until()
        older = [i for i in batch.items if i.stream_seq is None or i.stream_seq <= until]
        if len(older) < len(batch.items):
            mine = {id(i) for i in older}
            for item in batch.items:
                if id(item) not in mine:
                    batch.no_effect(item)  # the case consumer plans it
            if not older and not self.retired and await self._acknowledged(until):
                batch.later().update(LEDGER, *_RETIRED_CLAIM, upsert=True)
                self._retiring = True
        if older:
            await self.handlers.plan_alerts(batch, older, _STAGE)

    def on_committed(self) -> None:
        self.handlers.on_committed(_STAGE)
        if self._retiring and not self.retired:
            self.retired = True
            log.info("%s: handed over to the case consumer after stream sequence %s", CONSUMER, self.until)
            self._supersede()

    def _supersede(self) -> None:
        self.rt.repair_once(
            lambda: store.supersede_older_views(self.rt.store, self.rt.clock.now()), name="alert-views-superseded"
        )

    async def _acknowledged(self, until: int) -> bool:
        """Whether every message up to `until` is acknowledged (none left to come back as a redelivery)."""
        info = await self._js().consumer_info(streams.CASES.name, CONSUMER)
        return int(info.ack_floor.stream_seq) >= until

    def _js(self) -> Any:
        return self.rt.broker.connection.jetstream()

    async def _until(self) -> int:
        """The end of the stream when this build started with the consumer (`wanted`); every sequence once retired,
        by this instance or another (a read per batch until then)."""
        if not self.retired and await self.rt.ledger.seen([RETIRED]):
            self.retired = True  # another instance retired it: planning the former way now would only repeat
        if self.retired:
            return -1
        assert self.until is not None, "set by `wanted`, which the runtime asks before it attaches the consumer"
        return self.until
