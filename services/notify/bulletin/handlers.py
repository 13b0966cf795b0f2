"""Thin edge of the bulletin projection: load the cases a batch touches, fold the events, upsert by `_id`.

Within notify the case events are folded by notify's case consumer, which plans alerts in the same pass
(`services.notify.handlers`); `BulletinProjection.on_case_events` folds them where the bulletin runs alone."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession

from contracts.cases import CaseEvent, CaseOpened
from services.notify.bulletin.projection import CASES, MERCHANTS, Writes, apply_case_event, apply_score_event
from xiuhua.consumer import APPLIED, Batch, Item, count, folded_before, naming
from xiuhua.service import Runtime
from xiuhua.store import Store


async def records(store: Store, ids: Iterable[str], reads: AsyncClientSession | None) -> dict[str, dict[str, Any]]:
    """The bulletin's records (案件记录) of these cases, by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {d["_id"]: d async for d in store[CASES].find({"_id": {"$in": wanted}}, session=reads)}


def fold(batch: Batch, item: Item, record: dict[str, Any] | None, w: Writes) -> dict[str, Any] | None:
    """Fold one case event, not folded into `record` before, into the week's documents (`w`); returns the case's
    record after it, naming the event (None: unchanged).

    The record changes with the counters, in one transaction: it names the event, so a copy of it adds nothing and
    needs no ledger entry. An event that moves only counters keeps its entry; a second opening of a case finds its
    record and adds nothing."""
    ev = item.message
    new = apply_case_event(ev, record, w)
    if new is not None:
        batch.guarded(item)
        return {**new, APPLIED: naming(record, ev.event_id)}
    if isinstance(ev, CaseOpened):
        batch.guarded(item)  # counted once: a second opening finds the case's record and adds nothing
    return None


def keep_records(w: Writes, changed: dict[str, dict[str, Any]]) -> None:
    """Add the changed records to the projection's writes (fields set, so counters of other documents stay)."""
    for case_id, doc in changed.items():
        w.add(CASES, case_id, set_={k: v for k, v in doc.items() if k != "_id"})


class BulletinProjection:
    """Keeps the bulletin's pre-aggregated documents up to date from case and score events."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.applied = rt.metrics.counter(
            "xiuhua_bulletin_events", "Events folded into the bulletin projection", ("kind",)
        )

    async def on_case_events(self, batch: Batch) -> None:
        """Case lifecycle events: week counters, facets, overdue/escalated lists, cohort closure."""
        items = [i for i in batch.items if isinstance(i.message, CaseEvent)]
        if not items:
            return
        known = await records(self.rt.store, (i.message.case_id for i in items), batch.reads)
        changed: dict[str, dict[str, Any]] = {}
        w = Writes()
        for item in items:
            ev = item.message
            record = changed.get(ev.case_id, known.get(ev.case_id))
            if folded_before(record, ev.event_id):
                batch.guarded(item)  # folded before, with the record that names it
                continue
            if (new := fold(batch, item, record, w)) is not None:
                changed[ev.case_id] = new
        keep_records(w, changed)
        write(w, batch)
        count(self.applied.labels("case"), len(batch.items))

    async def on_score_events(self, batch: Batch) -> None:
        """Scoring events: a unit's week counters, merchant grade changes and escalations."""
        w = Writes()
        for item in batch.items:
            if not apply_score_event(item.subject, item.message, w):
                batch.no_effect(item)  # a kind the bulletin does not show: a copy of it adds nothing either
        merchant_ids = [_id for coll, _id in w.docs if coll == MERCHANTS]
        if merchant_ids:  # keep the grade a merchant started the week with, set by an earlier batch
            cursor = self.rt.store[MERCHANTS].find({"_id": {"$in": merchant_ids}}, session=batch.reads)
            async for doc in cursor:
                if doc.get("previous_grade"):
                    w.docs[(MERCHANTS, doc["_id"])]["$set"]["previous_grade"] = doc["previous_grade"]
        write(w, batch)
        count(self.applied.labels("score"), len(batch.items))


def write(w: Writes, batch: Batch) -> None:
    """The projection's upserts, by collection, sent with the batch (`Batch.later`)."""
    later = batch.later()
    for coll, _id, update in sorted(w.updates(), key=lambda u: u[0]):  # stable: in order within a collection
        if update:
            later.update(coll, {"_id": _id}, update, upsert=True)
