"""The Open311 view of cases, kept up to date from case events (`case.v1.>`, durable `intake-open311`).

`open311_requests` holds one document per case (`_id` = case id = Open311 `service_request_id`);
`open311_tokens` maps the token a POST answered with to the case it became (or was merged into).
The fold is pure; the handler only reads, folds and writes.
"""

from __future__ import annotations

from typing import Any

from contracts import cases as ev
from contracts.reports import ReportRejected
from contracts.values import ReportSource
from services.intake.open311.render import as_datetime
from xiuhua.city import City
from xiuhua.consumer import APPLIED, Batch, folded_before, naming
from xiuhua.retention import dated

REQUESTS = "open311_requests"
REQUESTED_S = "requested_s"  # requested_datetime in seconds since the epoch: what `GET requests` selects and sorts on
CLOSED_S = "closed_s"  # a closed request's last change in seconds: what the purge of closed cases ranges over
TOKENS = "open311_tokens"

# Words a hotline caller says may name people and places at home; the public view shows the category instead.
_PRIVATE_TEXT_SOURCES = (ReportSource.hotline,)


def _new(event: ev.CaseEvent) -> dict[str, Any]:
    return {
        "_id": event.case_id,
        "source": None,
        "source_ref": None,
        "status": "open",
        "status_notes": "",
        "service_code": None,
        "service_name": "",
        "description": "",
        "agency_responsible": None,
        "service_notice": None,
        "requested_datetime": event.occurred_at,
        "updated_datetime": event.occurred_at,
        "expected_datetime": None,
        "address": None,
        "lat": None,
        "long": None,
        "media_url": None,
        "reports": 1,
        "version": 0,
    }


def _opened(doc: dict[str, Any], e: ev.CaseOpened, city: City) -> None:
    category = city.category(e.category_code)
    doc.update(
        source=e.source.value,
        source_ref=e.source_ref,
        status="open",
        status_notes="已立案 registered",
        service_code=(category.service_code or category.code) if category else e.category_code,
        service_name=e.category_name or (category.name_zh if category else ""),
        description="" if e.source in _PRIVATE_TEXT_SOURCES else e.description,
        requested_datetime=e.reported_at,
        address=e.place.address,
        lat=e.place.lat,
        long=e.place.lng,
        media_url=e.photo_urls[0] if e.photo_urls else None,
    )


# Case events that change nothing a citizen sees and resolve no token: `fold` skips them, and the view's consumer
# acknowledges them from their subject, undecoded, without a transaction or a ledger entry (`Subscription.skips_type`).
PRIVATE = (ev.CaseCommandRejected, ev.CaseDeadlineWarning, ev.CaseRated)


def ignored(kind: type) -> bool:
    """Whether case events of this type leave the Open311 view as it is."""
    return issubclass(kind, PRIVATE)


def fold(doc: dict[str, Any] | None, event: ev.CaseEvent, city: City) -> dict[str, Any] | None:
    """The request document after one case event; None when the event changes nothing public, or was folded into
    it before (the document keeps the ids of the events folded into it, `applied`)."""
    if isinstance(event, PRIVATE):
        return None
    if folded_before(doc, event.event_id):
        return None
    doc = dict(doc) if doc is not None else _new(event)
    _change(doc, event, city)
    previous = as_datetime(doc.get("updated_datetime"))
    doc["updated_datetime"] = max(previous, event.occurred_at) if previous else event.occurred_at
    if (requested := as_datetime(doc.get("requested_datetime"))) is not None:
        doc[REQUESTED_S] = requested.timestamp()
    if doc.get("status") == "closed":
        doc[CLOSED_S] = doc["updated_datetime"].timestamp()
    else:  # reopened: out of the purge's range again
        doc.pop(CLOSED_S, None)
    doc[APPLIED] = naming(doc, event.event_id)
    doc["version"] = doc.get("version", 0) + 1
    return doc


def request_of(opened: ev.CaseOpened, city: City) -> dict[str, Any]:
    """The request document of a case as its opening leaves it (`fold` from nothing): what intake writes when it
    opens the case, so the view finds the opening folded already and writes the document next at the dispatch."""
    doc = fold(None, opened, city)
    assert doc is not None  # an opening always changes what a citizen sees
    return doc


def _change(doc: dict[str, Any], event: ev.CaseEvent, city: City) -> None:
    """Applies what one case event changes in the public request (状态, 办理意见, 责任单位) to `doc`, in place."""
    match event:
        case ev.CaseOpened():
            _opened(doc, event, city)
        case ev.CaseDispatched():
            doc.update(
                agency_responsible=event.lead_unit.name,
                expected_datetime=event.due_at,
                status_notes=f"已派遣 dispatched to {event.lead_unit.name}",
            )
        case ev.CaseMerged():
            doc.update(
                reports=event.reporters_count,
                service_notice=f"{event.reporters_count} 人反映 reports merged into this request",
            )
        case ev.CaseTransferred():
            doc.update(
                source=event.source.value,
                source_ref=event.source_ref,
                status="closed",
                agency_responsible=event.department,
                status_notes=f"已转办 transferred to {event.department}: {event.matter}",
                description="" if event.source in _PRIVATE_TEXT_SOURCES else event.description,
            )
        case ev.CaseAcknowledged():
            doc.update(status_notes="已签收 acknowledged by the responsible unit")
        case ev.CaseReturned():
            doc.update(status_notes="退单重派 returned, being re-assigned")
        case ev.CaseExtensionApproved():
            doc.update(expected_datetime=event.due_at, status_notes="已延期 deadline extended")
        case ev.CaseExtensionRequested():
            doc.update(status_notes="延期申请中 extension requested")
        case ev.CaseResolved():
            note = f": {event.note}" if event.note else ""
            doc.update(status_notes=f"已处置，待核查 resolved, awaiting verification{note}")
        case ev.CaseVerified():
            failed = "核查未通过，返工 verification failed, rework"
            doc.update(status_notes="核查通过 verified" if event.passed else failed)
        case ev.CaseClosed() if event.outcome == "cancelled":
            # Dispatch ends a cancelled case with this closure before case.cancelled: same notes either way.
            notes = f"已作废 cancelled: {event.reason}" if event.reason else "已作废 cancelled"
            doc.update(status="closed", status_notes=notes)
        case ev.CaseClosed():
            doc.update(status="closed", status_notes="已结案 closed")
        case ev.CaseCancelled():
            doc.update(status="closed", status_notes=f"已作废 cancelled: {event.reason}")
        case ev.CaseReopened():
            doc.update(status="open", status_notes=f"重新打开 reopened: {event.reason}")
        case ev.CaseOverdue():
            doc.update(status_notes="已超期 overdue")
        case ev.CaseEscalated():
            doc.update(status_notes=f"督办 escalated (level {event.level})")


def token_of(event: ev.CaseEvent) -> str | None:
    """The Open311 token an event resolves: a request that opened a case, was merged or transferred."""
    if isinstance(event, ev.CaseOpened | ev.CaseMerged | ev.CaseTransferred) and event.source == ReportSource.open311:
        return event.source_ref
    return None


class Projection:
    """Applies case events to the Open311 view."""

    def __init__(self, city: City, store: Any) -> None:
        self.city = city
        self.store = store

    async def on_case_events(self, batch: Batch) -> None:
        """Fold each case event into its request document; remember which token became which case.

        One read of the batch's request documents, the events folded in order in memory, the writes sent together
        (`Batch.later`): every case event passes here, so per-event round trips were most of intake's store
        commands."""
        items = [item for item in batch.items if isinstance(item.message, ev.CaseEvent)]
        if not items:
            return
        ids = sorted({item.message.case_id for item in items})
        docs = {d["_id"]: d async for d in self.store[REQUESTS].find({"_id": {"$in": ids}}, session=batch.reads)}
        changed: set[str] = set()
        tokens: dict[str, dict[str, Any]] = {}
        for item in items:
            event = item.message
            # Folded once (the request keeps the event's id) and the token's answer written the same each time:
            # no ledger entry needed.
            batch.guarded(item)
            doc = fold(docs.get(event.case_id), event, self.city)
            if doc is not None:
                docs[event.case_id] = doc
                changed.add(event.case_id)
            if (token := token_of(event)) is not None:
                tokens[token] = {"_id": token, "case_id": event.case_id, **dated(event.occurred_at)}
        writes = batch.later()
        for c in sorted(changed):
            writes.replace(REQUESTS, {"_id": c}, docs[c], upsert=True)
        for t, d in tokens.items():
            writes.replace(TOKENS, {"_id": t}, d, upsert=True)

    async def on_rejections(self, batch: Batch) -> None:
        """An Open311 report intake refused: its token answers with the reason instead of waiting forever."""
        for item in batch.items:
            event = item.message
            if not isinstance(event, ReportRejected) or event.source != ReportSource.open311 or not event.source_ref:
                continue
            reasons = "; ".join(f"{r.field}: {r.message}" if r.field else r.message for r in event.reasons)
            token = event.source_ref
            await self.store[TOKENS].replace_one(
                {"_id": token},
                {"_id": token, "case_id": None, "rejected": reasons[:500], **dated(event.occurred_at)},
                upsert=True,
                session=batch.session,
            )
