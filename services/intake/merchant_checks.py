"""Merchant duty checks (门前三包): each failed duty item becomes a violation case attributed to the merchant."""

from __future__ import annotations

from typing import Any

from contracts.reports import MerchantCheck, RejectionReason
from services.intake.cases import failed_items, merchant_drafts
from services.intake.outcomes import Outcomes
from services.intake.reports import reporter_of
from services.intake.store import BatchIO
from xiuhua.consumer import Batch, Item, count


class MerchantChecks:
    """Applies duty checks."""

    def __init__(self, outcomes: Outcomes) -> None:
        self.rt = outcomes.rt
        self.outcomes = outcomes

    async def handle(
        self, io: BatchIO, batch: Batch, item: Item, raw_doc: dict[str, Any], check: MerchantCheck
    ) -> None:
        """Each failed duty item becomes a 门前三包 violation case attributed to the merchant."""
        source, ref = "merchant_check", check.source_ref()
        if check.merchant_id not in self.rt.city.merchants:
            reason = RejectionReason(
                code="unknown_merchant",
                field="merchant_id",
                message=f"no merchant {check.merchant_id[:64]} in the city's register",
            )
            self.outcomes.reject(io, batch, item, raw_doc, source, ref, [reason])
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
                count(self.outcomes.duplicates.labels(source))
                continue
            doc = {**raw_doc, "_id": f"{raw_doc['_id']}:{duty}"}
            cases.append(
                await self.outcomes.open_or_merge(
                    io,
                    batch,
                    item,
                    doc,
                    draft,
                    source=source,
                    ref=f"{ref}:{duty}",
                    correlation=correlation,
                    reported_at=check.checked_at,
                    reporter=reporter,
                    report=check,
                    merchant_id=check.merchant_id,
                )
            )
        if not cases:
            io.add_raw({**raw_doc, "status": "duplicate", "correlation_id": f"{source}:{ref}"})
