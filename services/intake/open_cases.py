"""Intake's projection of open cases (for merging): closed, cancelled and transferred cases stop absorbing reports;
a reopened case absorbs them again."""

from __future__ import annotations

from typing import Any

from contracts.cases import CaseCancelled, CaseClosed, CaseReopened, CaseTransferred
from services.intake import store
from xiuhua.consumer import Batch, Poison, decode_event
from xiuhua.service import Runtime

# Case events that change whether a case is open (each has its own filtered consumer); others are skipped.
PROJECTED_EVENTS = ("closed", "cancelled", "transferred", "reopened")


def decode_case_event(subject: str, data: bytes) -> Any:
    """Decode only the case events intake's projection needs."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[2] not in PROJECTED_EVENTS:
        return None
    try:
        return decode_event(subject, data)
    except Poison:
        return None  # not intake's to judge: dispatch and scoring dead-letter what is broken


class OpenCases:
    """Keeps the open-case entries and the merge directory as case events say."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def on_case_events(self, batch: Batch) -> None:
        """Closed, cancelled and transferred cases stop absorbing reports; a reopened case absorbs them again.

        The merge directory follows: a case leaves its key's list when it closes and joins it again when reopened
        (the lookup checks `open` on the case itself, so the list only has to hold every open case)."""
        changes: list[tuple[str, bool]] = []  # case, open
        for item in batch.items:
            event = item.message
            if isinstance(event, CaseClosed | CaseCancelled | CaseTransferred):
                changes.append((event.case_id, False))
            elif isinstance(event, CaseReopened):
                changes.append((event.case_id, True))
        if not changes:
            return
        last = dict(changes)  # case → open, as the batch leaves it
        entries = await store.entries_of(self.rt.store, sorted(last), batch.reads)
        store.open_or_close(batch.later(), changes, entries, last, self.rt.clock.now())
