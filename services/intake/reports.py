"""What a report says, as intake records it: who reported (masked), when, the verdict kept with it, the new case's id.
No I/O."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from contracts.envelope import new_event_id
from contracts.reports import HotlineOrder, Inbound
from contracts.values import Reporter
from services.intake import privacy
from services.intake.cases import Draft, TransferDraft


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


def verdict_doc(draft: Draft | TransferDraft) -> dict[str, Any] | None:
    """The classifier's verdict as the raw report keeps it (a transfer: the department it goes to)."""
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
