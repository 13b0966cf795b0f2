"""Intake's thin edge: keep the raw report, parse, draft the case, de-duplicate, publish."""

from __future__ import annotations

import hashlib
from typing import Any

from contracts.cases import CaseOpened
from contracts.envelope import new_event_id
from contracts.reports import HotlineOrder, Inbound, RejectionReason, ReportRejected
from contracts.values import Reporter
from services.intake import privacy
from services.intake.cases import Draft, draft_case
from services.intake.parsing import parse_inbound
from xiuhua.consumer import Batch, Item
from xiuhua.service import Runtime

RAW = "raw_reports"
REFS = "source_refs"


def decode_raw(subject: str, data: bytes) -> str:
    """Inbound reports are decoded by intake's domain, never dead-lettered for their content."""
    return subject.rsplit(".", 1)[-1]


def reporter_of(report: Inbound, secret: str) -> Reporter | None:
    """Who reported, masked."""
    if isinstance(pre := getattr(report, "reporter", None), Reporter):
        return pre  # masked and keyed already at the source's edge (Open311 keeps contact details itself)
    if isinstance(report, HotlineOrder):
        caller = report.caller
        if caller is None or not (caller.phone or caller.name):
            return None
        ident = caller.phone or caller.name or ""
        shown = " ".join(
            x for x in (privacy.mask_name(caller.name or ""), privacy.mask_phone(caller.phone or "")) if x
        )
        return Reporter(kind="caller", key=privacy.pseudonym(secret, ident), display=shown)
    for attr, kind in (("inspector_id", "inspector"), ("team", "supervisor"), ("device_id", "device")):
        if (val := getattr(report, attr, None)) is not None:
            return Reporter(kind=kind, key=privacy.pseudonym(secret, val), display=val)
    return None


def case_id_for() -> str:
    """A new case id: time-ordered, short enough to read out on the phone."""
    return "C-" + new_event_id().replace("-", "")[:16]


class IntakeHandlers:
    """Applies raw reports."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.received = rt.metrics.counter("xiuhua_reports_received", "Reports received", ("source",))
        self.rejected = rt.metrics.counter("xiuhua_reports_rejected", "Reports rejected", ("source", "code"))
        self.opened = rt.metrics.counter("xiuhua_cases_opened", "Cases opened", ("source",))
        self.duplicate = rt.metrics.counter("xiuhua_reports_duplicate", "Same source reference again", ("source",))

    async def on_reports(self, batch: Batch) -> None:
        """Each raw report: keep it, then a case or a rejection."""
        for item in batch.items:
            await self._one(batch, item)

    async def _one(self, batch: Batch, item: Item) -> None:
        rt, source = self.rt, item.message
        now = rt.clock.now()
        raw_id = "raw-" + hashlib.sha256(item.key.encode()).hexdigest()[:24]
        self.received.labels(source).inc()
        raw_doc: dict[str, Any] = {"_id": raw_id, "source": source, "subject": item.subject, "body": item.data,
                                   "received_at": now, "status": "received"}
        parsed = parse_inbound(source, item.data, now)
        if isinstance(parsed, list):
            await self._reject(batch, item, raw_doc, source, None, parsed)
            return
        ref = parsed.source_ref()
        correlation = f"{source}:{ref}"
        draft = draft_case(parsed, rt.city)
        if isinstance(draft, list):
            await self._reject(batch, item, raw_doc, source, ref, draft)
            return
        case_id = case_id_for()
        # Look first: inside a MongoDB transaction a duplicate-key error aborts the whole transaction.
        # Two instances racing past this check conflict on the insert; the loser retries and lands here.
        refs = rt.store[REFS]
        if await refs.find_one({"_id": correlation}, {"_id": 1}, session=batch.session):
            self.duplicate.labels(source).inc()
            await rt.store[RAW].insert_one({**raw_doc, "status": "duplicate", "correlation_id": correlation},
                                           session=batch.session)
            return
        await refs.insert_one({"_id": correlation, "case_id": case_id, "at": now}, session=batch.session)
        await rt.store[RAW].insert_one({**raw_doc, "status": "case", "case_id": case_id, "correlation_id": correlation},
                                       session=batch.session)
        batch.emit(item, self._opened(parsed, draft, case_id, correlation, source, ref))
        self.opened.labels(source).inc()

    def _opened(self, report: Inbound, d: Draft, case_id: str, correlation: str, source: str, ref: str) -> CaseOpened:
        reported_at = next(
            getattr(report, n) for n in ("reported_at", "received_at", "inspected_at", "checked_at", "measured_at")
            if getattr(report, n, None) is not None
        )
        return CaseOpened(
            correlation_id=correlation,
            case_id=case_id,
            street_code=d.place.street_code,
            source=source,
            source_ref=ref,
            category_code=d.category_code,
            category_name=d.category_name,
            category_confidence=d.confidence,
            description=d.description,
            place=d.place,
            urgency=d.urgency,
            reported_at=reported_at,
            reporter=reporter_of(report, self.rt.settings.pseudonym_key),
            photo_urls=list(getattr(report, "photo_urls", []) or []),
            merchant_id=getattr(report, "merchant_id", None),
            supervisor_found=source == "inspection",
            handled_on_site=bool(getattr(report, "handled_on_site", False)),
        )

    async def _reject(
        self, batch: Batch, item: Item, raw_doc: dict[str, Any], source: str, ref: str | None,
        reasons: list[RejectionReason],
    ) -> None:
        await self.rt.store[RAW].insert_one(
            {**raw_doc, "status": "rejected", "reasons": [r.model_dump() for r in reasons]}, session=batch.session
        )
        for r in reasons:
            self.rejected.labels(source, r.code).inc()
        batch.emit(item, ReportRejected(
            correlation_id=f"{source}:{ref}" if ref else raw_doc["_id"],
            source=source, source_ref=ref, raw_id=raw_doc["_id"], reasons=reasons,
        ))
