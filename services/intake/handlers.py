"""Intake's thin edge: keep the raw report, parse, draft the case, de-duplicate or merge, publish.

Collections (intake's own database):
- `raw_reports`: every report as received (bytes, status: case / merged / transferred / duplicate / rejected /
  passed / sensor_*), with the classifier's verdict; sensor readings are kept only when they change something.
- `source_refs`: `<source>:<reference>` → case, so the same reference twice is one case.
- `open_cases`: intake's projection of open cases (category, grid-cell key, point, reporters) for merging.
- `open_keys`: the merge directory 并案索引, one document per merge key listing the open cases under it; the
  lookup reads it by `_id` (nx-27017 reads a whole collection for an `$in` on any other field).
- `devices`: one state document per sensor, written on transitions only.
- `merge_locks`: one counter per merge key; touching the keys of a lookup makes two instances that place
  near reports of one category at once conflict (MongoDB write conflict → retried), so the second merges.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime
from typing import Any

from contracts.cases import CaseCancelled, CaseClosed, CaseMerged, CaseOpened, CaseReopened, CaseTransferred
from contracts.envelope import new_event_id
from contracts.reports import (
    HotlineOrder,
    Inbound,
    MerchantCheck,
    RejectionReason,
    ReportRejected,
    SensorNormal,
    SensorReading,
)
from contracts.values import Place, Reporter
from services.intake import duplicates, privacy
from services.intake.batch_io import CLOSED_S, DEVICES, LOCKS, OPEN, OPEN_KEYS, RAW, REFS, BatchIO
from services.intake.cases import (
    Draft,
    TransferDraft,
    device_place,
    domain_of,
    draft_case,
    failed_items,
    merchant_drafts,
    place_point,
    sensor_draft,
)
from services.intake.parsing import parse_inbound
from services.intake.sensors import DeviceState, known_values, step
from xiuhua.city.intake import parse_duration
from xiuhua.consumer import Batch, Item, Poison, count, decode_event
from xiuhua.service import Runtime

COLLECTIONS = (RAW, REFS, OPEN, OPEN_KEYS, DEVICES, LOCKS)

# Case events that change whether a case is open (each has its own filtered consumer); others are skipped.
PROJECTED_EVENTS = ("closed", "cancelled", "transferred", "reopened")


def decode_raw(subject: str, data: bytes) -> str:
    """Inbound reports are decoded by intake's domain, never dead-lettered for their content."""
    return subject.rsplit(".", 1)[-1]


def decode_case_event(subject: str, data: bytes) -> Any:
    """Decode only the case events intake's projection needs."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[2] not in PROJECTED_EVENTS:
        return None
    try:
        return decode_event(subject, data)
    except Poison:
        return None  # not intake's to judge: dispatch and scoring dead-letter what is broken


def reporter_of(report: Inbound, secret: str) -> Reporter | None:
    """Who reported, masked."""
    given = getattr(report, "reporter", None)
    if isinstance(given, Reporter):
        return given  # the Open311 edge masks and keys its citizens itself
    if isinstance(report, HotlineOrder):
        caller = report.caller
        if caller is None or not (caller.phone or caller.name):
            return None
        ident = caller.phone or caller.name or ""
        shown = " ".join(x for x in (privacy.mask_name(caller.name or ""), privacy.mask_phone(caller.phone or "")) if x)
        return Reporter(kind="caller", key=privacy.pseudonym(secret, ident), display=shown)
    for attr, kind in (("inspector_id", "inspector"), ("team", "supervisor"), ("device_id", "device")):
        if (val := getattr(report, attr, None)) is not None:
            return Reporter(kind=kind, key=privacy.pseudonym(secret, val), display=val)
    return None


def case_id_for() -> str:
    """A new case id: time-ordered, short enough to read out on the phone."""
    return "C-" + new_event_id().replace("-", "")[:16]


def reported_at_of(report: Inbound) -> datetime:
    """When the source says it happened."""
    return next(
        getattr(report, n)
        for n in ("reported_at", "received_at", "inspected_at", "checked_at", "measured_at")
        if getattr(report, n, None) is not None
    )


def _verdict_doc(draft: Draft | TransferDraft) -> dict[str, Any] | None:
    v = getattr(draft, "verdict", None)
    if isinstance(draft, TransferDraft):
        return {"kind": "transfer", "department": draft.department, "confidence": draft.confidence}
    if v is None:
        return None
    return {
        "kind": v.kind,
        "code": v.code,
        "confidence": v.confidence,
        "best_guess": v.best_guess,
        "best_guess_confidence": v.best_guess_confidence,
        "matched": list(v.matched),
        "unit_role": v.unit_role,
        "out_of_scope": v.out_of_scope,
        "classifier": v.model,
    }


class IntakeHandlers:
    """Applies raw reports and keeps the projection of open cases."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.dup = rt.city.intake.duplicates
        self.max_age = parse_duration(rt.city.intake.max_report_age)
        self._points: dict[tuple[float, float, str], Place | RejectionReason] = {}
        self.received = rt.metrics.counter("xiuhua_reports_received", "Reports received", ("source",))
        self.rejected = rt.metrics.counter("xiuhua_reports_rejected", "Reports rejected", ("source", "code"))
        self.opened = rt.metrics.counter("xiuhua_cases_opened", "Cases opened", ("source",))
        self.duplicate = rt.metrics.counter("xiuhua_reports_duplicate", "Same source reference again", ("source",))
        self.merged = rt.metrics.counter("xiuhua_reports_merged", "Reports merged into an open case", ("source",))
        self.transferred = rt.metrics.counter("xiuhua_reports_transferred", "Reports out of scope", ("source",))
        self.triaged = rt.metrics.counter("xiuhua_reports_triaged", "Cases left to manual triage", ("source",))
        self.sensor_changes = rt.metrics.counter(
            "xiuhua_sensor_transitions", "Sensor state transitions", ("device_type", "to")
        )

    # ---- raw reports -------------------------------------------------------------------------------------

    async def on_reports(self, batch: Batch) -> None:
        """Each raw report: keep it, then a case, a merge, a transfer or a rejection.

        Reports are decided one by one, in order, against a view of the store read in bulk for the whole batch,
        and the batch's writes go out in one bulk call per collection: the store sees a few round trips per
        batch instead of several per report (the store pays per command: docs/operating/store.md).
        """
        now = self.rt.clock.now()
        io = BatchIO(self.rt.store, batch.session, now, reads=batch.reads)
        parsed = [parse_inbound(item.message, item.data, now, self.max_age) for item in batch.items]
        drafts = await self._prefetch(io, batch.items, parsed, look=batch.look_first)
        for i, (item, report) in enumerate(zip(batch.items, parsed, strict=True)):
            await self._one(io, batch, item, report, now, drafts.get(i))
        io.flush(batch.later())

    async def _prefetch(
        self, io: BatchIO, items: list[Item], parsed: list[Inbound | list[RejectionReason]], *, look: bool = True
    ) -> dict[int, Draft | TransferDraft | list[RejectionReason]]:
        """Bulk reads for the whole batch: source references (`look` False: taken as new, see `BatchIO.assume_new`);
        the merge neighbourhoods of the new reports' drafts (returned by position, so each is drafted once); device
        states and their cases."""
        reports = {
            i: f"{item.message}:{p.source_ref()}"
            for i, (item, p) in enumerate(zip(items, parsed, strict=True))
            if not isinstance(p, list | SensorReading | MerchantCheck)
        }
        if look:
            await io.prefetch_refs(reports.values())
        else:
            io.assume_new(reports.values())
        drafts: dict[int, Draft | TransferDraft | list[RejectionReason]] = {}
        keys: list[str] = []
        locks: list[str] = []
        for i, correlation in reports.items():
            if io.refs[correlation]:
                continue
            drafts[i] = draft = draft_case(parsed[i], self.rt.city)  # type: ignore[arg-type]
            if isinstance(draft, Draft) and duplicates.mergeable(draft.category_code, self.dup):
                keys += duplicates.keys_of(draft.category_code, draft.place, self.dup)[1]
                locks += duplicates.lock_keys(draft.category_code, draft.place, self.dup)
        if keys:
            await io.lock_and_load(keys, locks)
        readings = [
            p for p in parsed if isinstance(p, SensorReading) and p.device_type in self.rt.city.intake.sensors
        ]
        if readings:
            await io.prefetch_devices(r.device_id for r in readings)
            await io.prefetch_cases(
                c for d in io.devices.values() if d is not None for c in (d.case_id, d.fault_case_id) if c
            )
        return drafts

    async def _one(
        self, io: BatchIO, batch: Batch, item: Item, parsed: Inbound | list[RejectionReason], now: datetime,
        draft: Draft | TransferDraft | list[RejectionReason] | None = None,
    ) -> None:
        rt, source = self.rt, item.message
        raw_id = "raw-" + hashlib.sha256(item.key.encode()).hexdigest()[:24]
        count(self.received.labels(source))
        raw_doc: dict[str, Any] = {"_id": raw_id, "source": source, "subject": item.subject, "body": item.data,
                                   "received_at": now, "status": "received"}
        if isinstance(parsed, list):
            self._reject(io, batch, item, raw_doc, source, None, parsed)
            return
        if isinstance(parsed, SensorReading):
            await self._sensor(io, batch, item, raw_doc, parsed)
            return
        if isinstance(parsed, MerchantCheck):
            await self._merchant_check(io, batch, item, raw_doc, parsed)
            return
        ref = parsed.source_ref()
        correlation = f"{source}:{ref}"
        if await io.seen(correlation):
            self._duplicate(io, raw_doc, source, correlation)
            return
        if draft is None:
            draft = draft_case(parsed, rt.city)
        if isinstance(draft, list):
            if await io.known_after_all(correlation):
                self._duplicate(io, raw_doc, source, correlation)
            else:
                self._reject(io, batch, item, raw_doc, source, ref, draft)
            return
        reporter = reporter_of(parsed, rt.settings.pseudonym_key)
        raw_doc["verdict"] = _verdict_doc(draft)
        if isinstance(draft, TransferDraft):
            case_id = case_id_for()
            io.answer(correlation, case_id, "transferred", raw_doc)
            batch.emit(
                item,
                CaseTransferred(
                    correlation_id=correlation,
                    case_id=case_id,
                    street_code=draft.place.street_code,
                    source=source,
                    source_ref=ref,
                    department=draft.department,
                    matter=draft.matter,
                    description=draft.description,
                    reporter=reporter,
                ),
            )
            count(self.transferred.labels(source))
            return
        await self._open_or_merge(io, batch, item, raw_doc, draft, source=source, ref=ref, correlation=correlation,
                                  reported_at=reported_at_of(parsed), reporter=reporter, report=parsed)

    async def _open_or_merge(
        self, io: BatchIO, batch: Batch, item: Item, raw_doc: dict[str, Any], draft: Draft, *, source: str, ref: str,
        correlation: str, reported_at: datetime, reporter: Reporter | None, report: Inbound | None = None,
        merchant_id: str | None = None,
    ) -> str:
        """Merge into a near open case of the same category, or open a new case; returns the case id."""
        rt, now = self.rt, self.rt.clock.now()
        key, lookup = duplicates.keys_of(draft.category_code, draft.place, self.dup)
        if lookup and duplicates.mergeable(draft.category_code, self.dup):
            # Serialise look-then-open per neighbourhood across instances: the batch touches the lock documents of
            # every neighbourhood it looks at (BatchIO.lock_and_load), so concurrent transactions on one conflict.
            candidates = await io.candidates(lookup, duplicates.lock_keys(draft.category_code, draft.place, self.dup))
            match = duplicates.pick(candidates, draft.place, now, self.dup)
            if match is not None:
                reporters = match.reporters + 1
                io.merge_into(match.case_id, reporters)
                io.answer(correlation, match.case_id, "merged", raw_doc)
                batch.emit(
                    item,
                    CaseMerged(
                        correlation_id=correlation,
                        case_id=match.case_id,
                        street_code=match.street_code,
                        source=source,
                        source_ref=ref,
                        reporter=reporter,
                        distance_m=match.distance_m,
                        reporters_count=reporters,
                    ),
                )
                count(self.merged.labels(source))
                return match.case_id
        case_id = case_id_for()
        io.open_case({
            "_id": case_id, "key": key, "category_code": draft.category_code, "lng": draft.place.lng,
            "lat": draft.place.lat, "street_code": draft.place.street_code, "opened_at": now, "open": True,
            "reporters": 1, "source": source})
        io.answer(correlation, case_id, "case", raw_doc)
        batch.emit(
            item,
            CaseOpened(
                correlation_id=correlation,
                case_id=case_id,
                street_code=draft.place.street_code,
                source=source,
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
            ),
        )
        count(self.opened.labels(source))
        if draft.category_code == rt.city.intake.classifier.triage_code:
            count(self.triaged.labels(source))
        return case_id

    # ---- merchant duty checks ----------------------------------------------------------------------------

    async def _merchant_check(
        self, io: BatchIO, batch: Batch, item: Item, raw_doc: dict[str, Any], check: MerchantCheck
    ) -> None:
        """Each failed duty item becomes a 门前三包 violation case attributed to the merchant."""
        source, ref = "merchant_check", check.source_ref()
        if check.merchant_id not in self.rt.city.merchants:
            reason = RejectionReason(code="unknown_merchant", field="merchant_id",
                                     message=f"no merchant {check.merchant_id[:64]} in the city's register")
            self._reject(io, batch, item, raw_doc, source, ref, [reason])
            return
        failed = failed_items(check.items)
        if not failed:
            io.add_raw({**raw_doc, "status": "passed", "correlation_id": f"{source}:{ref}"})
            return
        reporter = reporter_of(check, self.rt.settings.pseudonym_key)
        cases: list[str] = []
        for duty, draft in merchant_drafts(self.rt.city, check.merchant_id, failed, check.note):
            correlation = f"{source}:{ref}:{duty}"
            if await io.seen(correlation):
                count(self.duplicate.labels(source))
                continue
            doc = {**raw_doc, "_id": f"{raw_doc['_id']}:{duty}"}
            cases.append(await self._open_or_merge(
                io, batch, item, doc, draft, source=source, ref=f"{ref}:{duty}", correlation=correlation,
                reported_at=check.checked_at, reporter=reporter, report=check, merchant_id=check.merchant_id))
        if not cases:
            io.add_raw({**raw_doc, "status": "duplicate", "correlation_id": f"{source}:{ref}"})

    # ---- sensors -----------------------------------------------------------------------------------------

    async def _sensor(
        self, io: BatchIO, batch: Batch, item: Item, raw_doc: dict[str, Any], reading: SensorReading
    ) -> None:
        """Debounce a reading against its device's thresholds; write only on a transition."""
        rt = self.rt
        placed = self._point_of(reading)
        if isinstance(placed, RejectionReason):
            self._reject(io, batch, item, raw_doc, "sensor", reading.source_ref(), [placed])
            return
        cfg = rt.city.intake.sensors.get(reading.device_type)
        if cfg is None:
            batch.no_effect(item)
            return  # a device type the city sets no thresholds for: telemetry only
        devices = rt.city.devices
        model = devices.model_of(reading.device_id) or devices.models.get(reading.model or "")
        values = known_values(cfg, reading.device_type, dict(reading.values), model.aliases if model else {})
        if isinstance(values, RejectionReason):
            self._reject(io, batch, item, raw_doc, "sensor", reading.source_ref(), [values])
            return
        state = await io.device(reading.device_id) or DeviceState(reading.device_id, reading.device_type)
        alarm_open = bool(state.case_id) and await io.is_open(state.case_id)
        fault_open = bool(state.fault_case_id) and await io.is_open(state.fault_case_id)
        decision = step(state, cfg, values, reading.measured_at, alarm_open=alarm_open, fault_open=fault_open)
        if decision.state is None:
            batch.no_effect(item)  # a copy of it would be judged against this state or a later one: no-op again
            return  # nothing changed: no write at all
        new = decision.state
        ref = reading.source_ref()
        place: Place | None = None
        if decision.open is not None or decision.cleared_case_id:
            place = placed or device_place(reading, rt.city)
        if decision.open is not None:
            assert decision.category is not None and place is not None
            what = "设备故障 device fault" if decision.open == "fault" else "超过阈值 threshold exceeded"
            words = (
                f"{reading.device_type} {reading.device_id}{' @' + reading.site_id if reading.site_id else ''}: "
                f"{what}: {decision.reason}"
            )
            draft = sensor_draft(rt.city, decision.category, place, words, decision.urgent)
            correlation = f"sensor:{ref}:{decision.open}"
            case_id = await self._open_or_merge(
                io,
                batch,
                item,
                {**raw_doc, "trigger": decision.open, "reason": decision.reason},
                draft,
                source="sensor",
                ref=ref,
                correlation=correlation,
                reported_at=reading.measured_at,
                reporter=reporter_of(reading, rt.settings.pseudonym_key),
                report=reading,
            )
            new = replace(new, fault_case_id=case_id) if decision.open == "fault" else replace(new, case_id=case_id)
        if decision.cleared_case_id:
            assert place is not None
            io.add_raw({**raw_doc, "status": "sensor_normal", "case_id": decision.cleared_case_id})
            batch.emit(
                item,
                SensorNormal(
                    correlation_id=f"sensor:{reading.device_id}",
                    device_id=reading.device_id,
                    device_type=reading.device_type,
                    case_id=decision.cleared_case_id,
                    street_code=place.street_code,
                    site_id=reading.site_id,
                    measured_at=reading.measured_at,
                    values=values,
                ),
            )
        io.put_device(new)
        count(self.sensor_changes.labels(reading.device_type, decision.open or new.status))

    # ---- the projection of open cases --------------------------------------------------------------------

    async def on_case_events(self, batch: Batch) -> None:
        """Closed, cancelled and transferred cases stop absorbing reports; a reopened case absorbs them again.

        The merge directory follows: a case leaves its key's list when it closes and joins it again when reopened
        (the lookup checks `open` on the case itself, so the list only has to hold every open case)."""
        now = self.rt.clock.now()
        changes: list[tuple[str, dict[str, Any]]] = []
        last: dict[str, bool] = {}  # case → open, as the batch leaves it
        for item in batch.items:
            event = item.message
            if isinstance(event, CaseClosed | CaseCancelled | CaseTransferred):
                changes.append((event.case_id, {"$set": {"open": False, "closed_at": now, CLOSED_S: now.timestamp()}}))
                last[event.case_id] = False
            elif isinstance(event, CaseReopened):
                changes.append((event.case_id, {"$set": {"open": True, "opened_at": now}, "$unset": {CLOSED_S: ""}}))
                last[event.case_id] = True
        if not changes:
            return
        keys = {d["_id"]: d["key"] async for d in self.rt.store[OPEN].find(
            {"_id": {"$in": sorted(last)}}, {"key": 1}, session=batch.reads) if d.get("key") is not None}
        writes = batch.later()
        for case_id, change in changes:  # in order: a close and a reopen in one batch leave it as the last says
            writes.update(OPEN, {"_id": case_id}, change)
        for case_id, key in sorted(keys.items()):
            writes.update(OPEN_KEYS, {"_id": key}, {"$pull": {"ids": case_id}})  # never listed twice
            if last[case_id]:
                writes.update(OPEN_KEYS, {"_id": key}, {"$push": {"ids": case_id}}, upsert=True)

    # ---- helpers -----------------------------------------------------------------------------------------

    def _point_of(self, reading: SensorReading) -> Place | RejectionReason | None:
        """The places of the points readings carry, remembered: a device reports from the same point every time."""
        loc = reading.location
        if loc is None or not loc.given:
            return None
        key = (loc.lng, loc.lat, loc.coord_system)
        found = self._points.get(key)
        if found is None:
            if len(self._points) >= 50_000:
                self._points.clear()
            found = self._points[key] = place_point(loc, self.rt.city)
        return found

    def _duplicate(self, io: BatchIO, raw_doc: dict[str, Any], source: str, correlation: str) -> None:
        count(self.duplicate.labels(source))
        io.add_raw({**raw_doc, "status": "duplicate", "correlation_id": correlation})

    def _reject(
        self, io: BatchIO, batch: Batch, item: Item, raw_doc: dict[str, Any], source: str, ref: str | None,
        reasons: list[RejectionReason],
    ) -> None:
        io.add_raw({**raw_doc, "status": "rejected", "reasons": [r.model_dump() for r in reasons]})
        for r in reasons:
            count(self.rejected.labels(source, r.code))
        batch.emit(item, ReportRejected(
            correlation_id=f"{source}:{ref}" if ref else raw_doc["_id"],
            source=source, source_ref=ref, raw_id=raw_doc["_id"], reasons=reasons,
        ))
