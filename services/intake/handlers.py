"""Intake's handlers: keep the raw report, parse, draft the case, de-duplicate or merge, publish.

A batch of reports is one pass: parsed, its store reads done in bulk, each report drafted once (with its merge keys)
and decided in order, the writes sent with the batch. Sensor readings and merchant duty checks are decided by their
own modules; what every report becomes (opened, merged, transferred, duplicate, rejected) by `outcomes`.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from typing import Any

from contracts.reports import Inbound, MerchantCheck, RejectionReason, SensorReading
from services.intake import duplicates
from services.intake.cases import Draft, TransferDraft, draft_case
from services.intake.merchant_checks import MerchantChecks
from services.intake.outcomes import Outcomes
from services.intake.parsing import parse_inbound
from services.intake.reports import reported_at_of, reporter_of, verdict_doc
from services.intake.sensor_readings import SensorReadings
from services.intake.store import BatchIO, older_references
from xiuhua.city.intake import parse_duration
from xiuhua.consumer import Batch, Item, count
from xiuhua.service import Runtime

Drafted = tuple[Draft | TransferDraft | list[RejectionReason], duplicates.MergeKeys | None]


def decode_raw(subject: str, data: bytes) -> str:
    """Inbound reports are decoded by intake's domain, never dead-lettered for their content."""
    return subject.rsplit(".", 1)[-1]


def _raw_document(item: Item, source: str, now: datetime) -> dict[str, Any]:
    """The raw report's document (原始上报), as received: kept whatever its content turns out to be."""
    return {
        "_id": "raw-" + hashlib.sha256(item.key.encode()).hexdigest()[:24],
        "source": source,
        "subject": item.subject,
        "body": item.data,
        "received_at": now,
        "status": "received",
    }


class IntakeHandlers:
    """Applies raw reports from every source."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dup = rt.city.intake.duplicates
        self.max_age = parse_duration(rt.city.intake.max_report_age)
        self.outcomes = Outcomes(rt)
        self.sensors = SensorReadings(self.outcomes)
        self.merchant_checks = MerchantChecks(self.outcomes)
        # An older build's `source_refs` hold references: read them too, and never take a reference as new unread
        # (only a raw copy's key refuses a resend). Known at start and again with the other older builds' repairs.
        self.older_refs = True
        self._received = functools.cache(self.outcomes.received.labels)  # labels() locks and looks up each call

    async def look_for_older_references(self) -> bool:
        """Whether references an older build kept apart are still to be read (`older_references`)."""
        self.older_refs = await older_references(self.rt.store)
        return self.older_refs

    async def on_reports(self, batch: Batch) -> None:
        """Each raw report: keep it, then a case, a merge, a transfer or a rejection.

        Reports are decided one by one, in order, against a view of the store read in bulk for the whole batch,
        and the batch's writes go out in one bulk call per collection: the store sees a few round trips per
        batch instead of several per report (the store pays per command: docs/operating/store.md).
        """
        now = self.rt.clock.now()
        io = BatchIO(self.rt.store, batch.session, now, reads=batch.reads, older_refs=self.older_refs)
        parsed = [parse_inbound(item.message, item.data, now, self.max_age) for item in batch.items]
        drafts = await self._prefetch(io, batch.items, parsed, look=batch.look_first or self.older_refs)
        for i, (item, report) in enumerate(zip(batch.items, parsed, strict=True)):
            await self._one(io, batch, item, report, now, drafts.get(i))
        io.flush(batch.later())

    async def _prefetch(
        self, io: BatchIO, items: list[Item], parsed: list[Inbound | list[RejectionReason]], *, look: bool = True
    ) -> dict[int, Drafted]:
        """Bulk reads for the whole batch: source references (`look` False: taken as new, see `BatchIO.assume_new`);
        the merge neighbourhoods of the new reports' drafts (returned by position with their merge keys, so each is
        drafted and keyed once); device states and their cases."""
        reports = {
            i: f"{item.message}:{p.source_ref()}"
            for i, (item, p) in enumerate(zip(items, parsed, strict=True))
            if not isinstance(p, list | SensorReading | MerchantCheck)
        }
        if look:
            await io.prefetch_refs(reports.values())
        else:
            io.assume_new(reports.values())
        drafts: dict[int, Drafted] = {}
        keys: list[str] = []
        locks: list[str] = []
        for i, correlation in reports.items():
            if io.refs[correlation]:
                continue
            draft = draft_case(parsed[i], self.rt.city)  # type: ignore[arg-type]
            merge = None
            if isinstance(draft, Draft):
                merge = duplicates.merge_keys(draft.category_code, draft.place, self.dup)
                if merge.mergeable:
                    keys += merge.lookup
                    locks += merge.locks
            drafts[i] = (draft, merge)
        if keys:
            await io.lock_and_load(keys, locks)
        readings = [p for p in parsed if isinstance(p, SensorReading) and p.device_type in self.rt.city.intake.sensors]
        if readings:
            await self.sensors.prefetch(io, readings)
        return drafts

    async def _one(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        parsed: Inbound | list[RejectionReason],
        now: datetime,
        drafted: Drafted | None = None,
    ) -> None:
        source, outcomes = item.message, self.outcomes
        count(self._received(source))
        if isinstance(parsed, SensorReading):
            # Most readings move no device state and keep no raw copy: theirs is made only when it is kept.
            await self.sensors.handle(io, batch, item, functools.partial(_raw_document, item, source, now), parsed)
            return
        raw_doc = _raw_document(item, source, now)
        if isinstance(parsed, list):
            if not await outcomes.applied_when_younger(io, batch, item, parsed):
                outcomes.reject(io, batch, item, raw_doc, source, None, parsed)
            return
        if isinstance(parsed, MerchantCheck):
            await self.merchant_checks.handle(io, batch, item, raw_doc, parsed)
            return
        await self._case_report(io, batch, item, raw_doc, parsed, drafted)

    async def _case_report(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        raw_doc: dict[str, Any],
        parsed: Inbound,
        drafted: Drafted | None,
    ) -> None:
        """Decides a report of a case (案件上报): duplicate, rejected, transferred, opened or merged."""
        rt, source, outcomes = self.rt, item.message, self.outcomes
        ref = parsed.source_ref()
        correlation = f"{source}:{ref}"
        if await io.seen(correlation):
            if not outcomes.applied_before(io, batch, item, correlation):
                outcomes.duplicate(io, raw_doc, source, correlation)
            return
        draft, merge = drafted if drafted is not None else (draft_case(parsed, rt.city), None)
        if isinstance(draft, list):
            if await io.known_after_all(correlation):
                if not outcomes.applied_before(io, batch, item, correlation):
                    outcomes.duplicate(io, raw_doc, source, correlation)
            else:
                outcomes.reject(io, batch, item, raw_doc, source, ref, draft)
            return
        reporter = reporter_of(parsed, rt.settings.pseudonym_key)
        raw_doc["verdict"] = verdict_doc(draft)
        if isinstance(draft, TransferDraft):
            outcomes.transfer(
                io,
                batch,
                item,
                raw_doc,
                draft,
                source=source,
                ref=ref,
                correlation=correlation,
                reporter=reporter,
                reported_at=reported_at_of(parsed),
                urgent=bool(getattr(parsed, "urgent", False)),
            )
        else:
            await outcomes.open_or_merge(
                io,
                batch,
                item,
                raw_doc,
                draft,
                source=source,
                ref=ref,
                correlation=correlation,
                reported_at=reported_at_of(parsed),
                reporter=reporter,
                report=parsed,
                keys=merge,
            )
        outcomes.keep_outbox(io, batch, item, correlation)
