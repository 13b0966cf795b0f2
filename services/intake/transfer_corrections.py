"""Corrected transfers (转办纠错): `cmd.v1.case.correct_transfer` from the command centre or the hotline.

Intake transferred the report, so intake owns the transfer and applies its correction: to another outside matter
(the record says so, nothing else happens), or to a catalogue item (a city-management matter after all: intake
opens a new case in that category, which dispatch routes like any other). Either way the transfer's record keeps
the correction, which is what `xiuhua classify learn` reads, and `case.v1.transfer_corrected` says so. A correction
that cannot be applied is answered with `case.v1.command_rejected`, as dispatch answers its commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from contracts.cases import CaseCommandRejected, CaseTransferCorrected
from contracts.commands import CorrectTransfer
from contracts.values import Place, Reporter, ReportSource, UnitRole
from services.intake import duplicates
from services.intake.cases import sensor_draft
from services.intake.outcomes import Outcomes
from services.intake.reports import case_id_for
from services.intake.store import BatchIO
from xiuhua.city import City
from xiuhua.commands import InvalidCommand, decode_case_command
from xiuhua.consumer import Batch, Item, count
from xiuhua.service import Runtime

ACTION = CorrectTransfer.action
CORRECTORS = (UnitRole.command_centre, UnitRole.hotline)  # as NATS lets publish it: the actor must say the same


def decode_correction(subject: str, data: bytes) -> CorrectTransfer | InvalidCommand:
    """The command; an unreadable body or one without a case id is poison (nobody to answer)."""
    return decode_case_command(subject, data, CorrectTransfer)


def refusal(transfer: Mapping[str, Any] | None, c: CorrectTransfer, city: City) -> tuple[str, str] | None:
    """Why a correction cannot be applied to a transfer's record, as (reason, detail); None when it can. Pure."""
    if c.actor.role not in CORRECTORS:
        return "wrong_role", f"{ACTION} is for the command centre or the hotline, not role {c.actor.role}"
    if transfer is None:
        return "unknown_case", f"no transferred case {c.case_id}"
    if transfer.get("correction"):
        done = transfer["correction"]
        return "wrong_state", f"corrected already by {done.get('command_id')} ({done.get('to')})"
    if c.transfer_id is not None:
        if c.transfer_id not in {t.id for t in city.intake.transfers}:
            return "unknown_transfer", f"no transfer matter {c.transfer_id!r} in intake.yaml"
        if c.transfer_id == transfer.get("transfer_id"):
            return "invalid", f"transferred to {c.transfer_id} already: nothing to correct"
        return None
    if c.category_code is None or city.category(c.category_code) is None:
        return "unknown_category", f"no category {c.category_code} in the catalogue"
    if c.category_code == city.intake.classifier.triage_code:
        return "unknown_category", f"{c.category_code} is manual triage, not a unit's matter"
    return None


def label_of(correction: Mapping[str, Any]) -> str:
    """The label a corrected transfer teaches the classifier: `transfer:<id>` or the catalogue code."""
    to = str(correction["to"])
    return to if correction.get("kind") == "category" else f"transfer:{to}"


class TransferCorrections:
    """Applies `cmd.v1.case.correct_transfer`."""

    def __init__(self, rt: Runtime, outcomes: Outcomes) -> None:
        self.rt = rt
        self.outcomes = outcomes
        self.applied = rt.metrics.counter(
            "xiuhua_transfer_corrections",
            "Corrections of transfers: to a transfer, to a category, or rejected_<reason>",
            ("outcome",),
        )

    async def on_commands(self, batch: Batch) -> None:
        """Each correction in order, against the transfers' records as the batch leaves them."""
        now = self.rt.clock.now()
        io = BatchIO(self.rt.store, batch.session, now, reads=batch.reads)
        for item in batch.items:
            await self._one(io, batch, item, now)
        io.flush(batch.later())

    async def _one(self, io: BatchIO, batch: Batch, item: Item, now: datetime) -> None:
        c: CorrectTransfer | InvalidCommand = item.message
        if isinstance(c, InvalidCommand):
            self._reject(batch, item, c.case_id, c.command_id, None, ("invalid", c.detail), now)
            return
        transfer = await io.transfer(c.case_id)
        if transfer is not None and (transfer.get("correction") or {}).get("command_id") == c.command_id:
            return  # applied before (a resend under a new message id): its events went out then
        why = refusal(transfer, c, self.rt.city)
        if why is not None or transfer is None:
            self._reject(batch, item, c.case_id, c.command_id, transfer, why or ("unknown_case", ""), now)
            return
        opened = self._open(io, batch, item, transfer, c.category_code) if c.category_code else None
        kind, to = ("category", c.category_code) if c.category_code else ("transfer", c.transfer_id)
        io.correct(
            c.case_id,
            {
                "kind": kind,
                "to": to,
                "command_id": c.command_id,
                "actor": c.actor.model_dump(mode="json"),
                "reason": c.reason,
                "opened_case_id": opened,
                "at": now,
            },
        )
        matter = next((t for t in self.rt.city.intake.transfers if t.id == c.transfer_id), None)
        batch.emit(
            item,
            CaseTransferCorrected(
                occurred_at=now,
                correlation_id=transfer.get("correlation_id") or c.command_id,
                case_id=c.case_id,
                street_code=transfer["place"].get("street_code"),
                source=ReportSource(transfer["source"]),
                source_ref=transfer["source_ref"],
                transferred_to=transfer["department"],
                transfer_id=c.transfer_id,
                department=matter.department if matter else None,
                matter=matter.matter if matter else None,
                category_code=c.category_code,
                opened_case_id=opened,
                actor=c.actor.model_dump(mode="json"),
                command_id=c.command_id,
                reason=c.reason,
            ),
        )
        count(self.applied.labels(kind))

    def _open(self, io: BatchIO, batch: Batch, item: Item, transfer: Mapping[str, Any], code: str) -> str:
        """A new case for a transfer that was a city matter: the report's text, place, reporter and urgency, the
        category the correction names (confidence 1: a person chose it). Not merged into a near case: the centre
        decided."""
        city = self.rt.city
        place = Place.model_validate(transfer["place"])
        draft = sensor_draft(city, code, place, transfer["description"], urgent=bool(transfer.get("urgent")))
        case_id = case_id_for()
        reporter = Reporter.model_validate(transfer["reporter"]) if transfer.get("reporter") else None
        key = duplicates.merge_keys(code, place, city.intake.duplicates).key
        self.outcomes.open_new(
            io,
            batch,
            item,
            draft,
            case_id=case_id,
            key=key,
            source=transfer["source"],
            ref=transfer["source_ref"],
            correlation=transfer.get("correlation_id") or case_id,
            reported_at=transfer["reported_at"],
            reporter=reporter,
        )
        return case_id

    def _reject(
        self,
        batch: Batch,
        item: Item,
        case_id: str,
        command_id: str,
        transfer: Mapping[str, Any] | None,
        why: tuple[str, str],
        now: datetime,
    ) -> None:
        batch.emit(
            item,
            CaseCommandRejected(
                occurred_at=now,
                correlation_id=(transfer or {}).get("correlation_id") or command_id,
                case_id=case_id,
                street_code=(transfer or {}).get("place", {}).get("street_code"),
                command_id=command_id,
                action=ACTION,
                reason=why[0],
                detail=why[1],
                state="transferred" if transfer else None,
            ),
        )
        count(self.applied.labels(f"rejected_{why[0]}"))
