"""What a report becomes, for every kind of report: a case opened, merged into a near open one, transferred out of
scope, a duplicate, or a rejection; each kept in the raw archive, counted, and its event emitted with the batch."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from contracts.cases import CaseMerged, CaseOpened, CaseTransferred
from contracts.reports import Inbound, MerchantCheck, RejectionReason, ReportRejected, SensorReading
from contracts.values import Reporter, ReportSource
from services.intake import duplicates
from services.intake.cases import Draft, TransferDraft, domain_of
from services.intake.open311.projection import request_of
from services.intake.parsing import parse_inbound
from services.intake.reports import case_id_for
from services.intake.store import BatchIO
from xiuhua.consumer import Batch, Item, count, outbox_of
from xiuhua.retention import dated
from xiuhua.service import Runtime

KEY = "key"  # in a raw copy's outbox: the ledger key of the message that kept it


class Outcomes:
    """Records what reports become, with the metrics that count them."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dup = rt.city.intake.duplicates
        self.received = rt.metrics.counter("xiuhua_reports_received", "Reports received", ("source",))
        self.rejected = rt.metrics.counter("xiuhua_reports_rejected", "Reports rejected", ("source", "code"))
        self.opened = rt.metrics.counter("xiuhua_cases_opened", "Cases opened", ("source",))
        self.duplicates = rt.metrics.counter("xiuhua_reports_duplicate", "Same source reference again", ("source",))
        self.merged = rt.metrics.counter("xiuhua_reports_merged", "Reports merged into an open case", ("source",))
        self.transferred = rt.metrics.counter("xiuhua_reports_transferred", "Reports out of scope", ("source",))
        self.triaged = rt.metrics.counter("xiuhua_reports_triaged", "Cases left to manual triage", ("source",))

    async def open_or_merge(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        raw_doc: dict[str, Any],
        draft: Draft,
        *,
        source: str,
        ref: str,
        correlation: str,
        reported_at: datetime,
        reporter: Reporter | None,
        report: Inbound | None = None,
        merchant_id: str | None = None,
        keys: duplicates.MergeKeys | None = None,
    ) -> str:
        """Merge into a near open case of the same category, or open a new case; returns the case id. `keys`: the
        draft's merge keys if the batch computed them already."""
        now = self.rt.clock.now()
        keys = keys or duplicates.merge_keys(draft.category_code, draft.place, self.dup)
        key = keys.key
        if keys.lookup and keys.mergeable:
            # Serialise look-then-open per neighbourhood across instances: the batch touches the lock documents of
            # every neighbourhood it looks at (BatchIO.lock_and_load), so concurrent transactions on one conflict.
            candidates = await io.candidates(keys.lookup, keys.locks)
            match = duplicates.pick(candidates, draft.place, now, self.dup)
            if match is not None:
                self._merge(
                    io, batch, item, raw_doc, match, source=source, ref=ref, correlation=correlation, reporter=reporter
                )
                return match.case_id
        case_id = case_id_for()
        io.answer(correlation, case_id, "case", raw_doc)
        self.open_new(
            io,
            batch,
            item,
            draft,
            case_id=case_id,
            key=key,
            source=source,
            ref=ref,
            correlation=correlation,
            reported_at=reported_at,
            reporter=reporter,
            report=report,
            merchant_id=merchant_id,
        )
        return case_id

    def open_new(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        draft: Draft,
        *,
        case_id: str,
        key: str | None,
        source: str,
        ref: str,
        correlation: str,
        reported_at: datetime,
        reporter: Reporter | None,
        report: Inbound | None = None,
        merchant_id: str | None = None,
    ) -> None:
        """Open a case: `case.v1.opened`, and one document for the case's Open311 request with the opening folded
        in and intake's entry for merging (under `key`)."""
        rt, now = self.rt, self.rt.clock.now()
        opened = CaseOpened(
            correlation_id=correlation,
            case_id=case_id,
            street_code=draft.place.street_code,
            source=ReportSource(source),
            source_ref=ref,
            category_code=draft.category_code,
            category_name=draft.category_name,
            category_confidence=draft.confidence,
            description=draft.description,
            place=draft.place,
            urgency=draft.urgency,
            reported_at=reported_at,
            reporter=reporter,
            photo_urls=list(getattr(report, "photo_urls", []) or []),
            merchant_id=merchant_id or getattr(report, "merchant_id", None),
            supervisor_found=source == "inspection",
            handled_on_site=bool(getattr(report, "handled_on_site", False)),
            suggested_category_code=draft.suggestion[0],
            suggested_category_confidence=draft.suggestion[1],
            classifier_version=domain_of(rt.city).classifier.version,
        )
        batch.emit(item, opened)
        entry = _case_entry(draft, case_id=case_id, key=key, source=source, opened_at=now)
        io.open_case({**request_of(opened, rt.city), **entry})
        count(self.opened.labels(source))
        if draft.category_code == rt.city.intake.classifier.triage_code:
            count(self.triaged.labels(source))

    def _merge(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        raw_doc: dict[str, Any],
        match: duplicates.Match,
        *,
        source: str,
        ref: str,
        correlation: str,
        reporter: Reporter | None,
    ) -> None:
        """The report joins a near open case of its category: one reporter more."""
        reporters = match.reporters + 1
        io.merge_into(match.case_id, reporters)
        io.answer(correlation, match.case_id, "merged", raw_doc)
        batch.emit(
            item,
            CaseMerged(
                correlation_id=correlation,
                case_id=match.case_id,
                street_code=match.street_code,
                source=ReportSource(source),
                source_ref=ref,
                reporter=reporter,
                distance_m=match.distance_m,
                reporters_count=reporters,
            ),
        )
        count(self.merged.labels(source))

    def transfer(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        raw_doc: dict[str, Any],
        draft: TransferDraft,
        *,
        source: str,
        ref: str,
        correlation: str,
        reporter: Reporter | None,
        reported_at: datetime,
        urgent: bool = False,
    ) -> None:
        """Out of the programme's scope: handed to the department that deals with it, and recorded for a
        correction (`transfer_corrections`): what the report said, where it was, who reported it, whether the
        source called it urgent."""
        case_id = case_id_for()
        raw_id = io.answer(correlation, case_id, "transferred", raw_doc)
        io.add_transfer(
            {
                "_id": case_id,
                "raw_id": raw_id,
                "source": source,
                "source_ref": ref,
                "correlation_id": correlation,
                "transfer_id": draft.transfer_id,
                "department": draft.department,
                "matter": draft.matter,
                "description": draft.description,
                "place": draft.place.model_dump(mode="json"),
                "reporter": reporter.model_dump(mode="json") if reporter is not None else None,
                "reported_at": reported_at,
                "urgent": urgent,
                **dated(self.rt.clock.now()),
            }
        )
        batch.emit(
            item,
            CaseTransferred(
                correlation_id=correlation,
                case_id=case_id,
                street_code=draft.place.street_code,
                source=ReportSource(source),
                source_ref=ref,
                department=draft.department,
                matter=draft.matter,
                description=draft.description,
                reporter=reporter,
            ),
        )
        count(self.transferred.labels(source))

    def applied_before(self, io: BatchIO, batch: Batch, item: Item, correlation: str) -> bool:
        """Whether this very message (its ledger key) took the reference before: then it changes nothing, and if it
        is that message delivered again (a crash between the commit and the publish, a lost acknowledgement) it
        publishes again, with their ids, the events its raw copy keeps. Another message with the reference (a
        resend under another id) is a duplicate."""
        kept = io.outbox(correlation)
        if kept is None or kept.get(KEY) != item.key:
            return False
        batch.guarded(item, emits_again=True)
        batch.emit_kept(item, kept)
        return True

    def keep_outbox(self, io: BatchIO, batch: Batch, item: Item, correlation: str) -> None:
        """The report took its reference (opened, merged, transferred): its raw copy, unique by the reference, keeps
        what it published with the message's key and stream sequence, and is its only record: no ledger entry
        (docs/decisions/0022-intakes-raw-copy-is-the-outbox.md)."""
        io.keep_outbox(correlation, {**outbox_of(item), KEY: item.key})
        batch.guarded(item, emits_again=True)

    async def applied_when_younger(self, io: BatchIO, batch: Batch, item: Item, reasons: list[RejectionReason]) -> bool:
        """Whether a report refused as too old is the redelivery of one applied while it was not: no ledger entry
        stops it before this (`keep_outbox`), so its reference is read (one query, for these refusals only)."""
        if not any(r.code == "too_old" for r in reasons):
            return False
        report = parse_inbound(item.message, item.data, self.rt.clock.now(), timedelta.max)
        if isinstance(report, list | SensorReading | MerchantCheck):
            return False
        correlation = f"{item.message}:{report.source_ref()}"
        return await io.seen(correlation) and self.applied_before(io, batch, item, correlation)

    def duplicate(self, io: BatchIO, raw_doc: dict[str, Any], source: str, correlation: str) -> None:
        """The same source reference again: kept, counted, nothing opened."""
        count(self.duplicates.labels(source))
        io.add_raw({**raw_doc, "status": "duplicate", "correlation_id": correlation})

    def reject(
        self,
        io: BatchIO,
        batch: Batch,
        item: Item,
        raw_doc: dict[str, Any],
        source: str,
        ref: str | None,
        reasons: list[RejectionReason],
    ) -> None:
        """Kept with its reasons, and `report.v1.rejected` naming them."""
        io.add_raw({**raw_doc, "status": "rejected", "reasons": [r.model_dump() for r in reasons]})
        for r in reasons:
            count(self.rejected.labels(source, r.code))
        batch.emit(
            item,
            ReportRejected(
                correlation_id=f"{source}:{ref}" if ref else raw_doc["_id"],
                source=source,
                source_ref=ref,
                raw_id=raw_doc["_id"],
                reasons=reasons,
            ),
        )


def _case_entry(draft: Draft, *, case_id: str, key: str | None, source: str, opened_at: datetime) -> dict[str, Any]:
    """Intake's entry for a case it opens (立案), which later reports of the same problem merge into under `key`."""
    return {
        "_id": case_id,
        "key": key,
        "category_code": draft.category_code,
        "lng": draft.place.lng,
        "lat": draft.place.lat,
        "street_code": draft.place.street_code,
        "opened_at": opened_at,
        "open": True,
        "reporters": 1,
        "source": source,
    }
