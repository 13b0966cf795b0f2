"""The scoring service: unit assessments, rankings and merchant duty points (docs/services/scoring.md)."""

from __future__ import annotations

import functools

from contracts import subjects
from services.scoring import closing, query, store, units
from services.scoring.handlers import ScoringHandlers, decode_merchant_check
from services.scoring.store import COLLECTIONS
from xiuhua.consumer import Subscription
from xiuhua.service import Job, Runtime, Service, ServiceSpec

MERCHANT_CHECKS = subjects.report_subject("merchant_check")


class Scoring(Service):
    """Case events and duty checks folded into the assessment; the period close; the query responder."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.handlers = ScoringHandlers(rt)

    def subscriptions(self) -> list[Subscription]:
        """Every lifecycle event, and the raw duty checks (their only source of merchant points)."""
        h, rt = self.handlers, self.rt
        return [
            Subscription(
                "scoring-cases",
                subjects.CASE_ALL,
                h.on_messages,
                description="Case events that count (the rest skipped unread)",
                skips_type=units.uncounted,
                linger=rt.settings.follower_linger,
            ),
            Subscription(
                "scoring-merchant-checks",
                MERCHANT_CHECKS,
                h.on_messages,
                decode=decode_merchant_check,
                description="门前三包 duty checks",
                linger=rt.settings.follower_linger,
            ),
        ]

    def jobs(self) -> list[Job]:
        """The period close: every closed period's ranking published once."""
        every = self.rt.city.assessment.ranking.check_every_s
        return [Job("period-close", every, functools.partial(closing.close_periods, self.rt))]

    async def on_start(self) -> None:
        """Indexes, the query responder; once, the moment the facts of cases an older build stored lack."""
        await store.ensure_indexes(self.rt.store)
        self.rt.repair_once(lambda: store.close_older_facts(self.rt.store), name="case-facts-moments")
        await query.start(self.rt)


SPEC = ServiceSpec(name="scoring", service=Scoring, collections=COLLECTIONS, retained=store.RETAINED)
