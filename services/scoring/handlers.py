"""Scoring's thin edge: hand decoded messages to the projection and emit what it reports."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from contracts.reports import MerchantCheck
from contracts.scores import UnitScoreUpdated
from services.scoring.store import Projection
from xiuhua.consumer import Batch, count
from xiuhua.service import Runtime

log = logging.getLogger("xiuhua.scoring")


def decode_merchant_check(subject: str, data: bytes) -> MerchantCheck | None:
    """A raw duty check; one intake rejects (invalid body) is skipped here, not dead-lettered twice."""
    try:
        return MerchantCheck.model_validate_json(data)
    except ValidationError:
        return None


class ScoringHandlers:
    """Applies lifecycle events and duty checks to the assessment."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.projection = Projection(rt.store, rt.city)
        self.skipped = rt.metrics.counter(
            "xiuhua_scoring_skipped_total",
            "Messages scoring could not use (invalid check, unknown merchant)",
            ("reason",),
        )

    async def on_messages(self, batch: Batch) -> None:
        """Fold a batch (case events or duty checks) in one go; publish what changed after the commit."""
        messages: list[Any] = []
        items = []
        for item in batch.items:
            if item.message is None:
                count(self.skipped.labels("invalid_check"))
                continue
            if isinstance(item.message, MerchantCheck) and item.message.merchant_id not in self.rt.city.merchants:
                count(self.skipped.labels("unknown_merchant"))
            messages.append(item.message)
            items.append(item)
        # Every message found folded makes its unit updates again, with their ids: a redelivery may come as a
        # first delivery (a broker killed before it saved its delivery counts), and a case's facts keep no stream
        # sequence to tell it by (a rebuild writes the same documents). The stream drops the copy.
        again = [True] * len(items)
        results = await self.projection.apply(messages, session=batch.session, again=again)
        for item, result in zip(items, results, strict=True):
            for event in result.events:
                batch.emit(item, event)
            if self.projection.guards(item.message):
                # Its unit updates, made again with their ids by a redelivery, need no ledger entry; a merchant's
                # events (graded, escalated) are recorded, the ledger entry their outbox.
                rederived = all(isinstance(e, UnitScoreUpdated) for e in result.events)
                batch.guarded(item, emits_again=rederived)
