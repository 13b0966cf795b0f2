"""The scoring service: unit assessments, rankings and merchant duty points (docs/services/scoring.md)."""

from __future__ import annotations

from contracts import subjects
from services.scoring import closing, query, units
from services.scoring.handlers import ScoringHandlers, decode_merchant_check
from services.scoring.projection import COLLECTIONS, UNIT_PERIODS
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, ServiceSpec

MERCHANT_CHECKS = subjects.report_subject("merchant_check")


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Every lifecycle event, and the raw duty checks (their only source of merchant points)."""
    h = ScoringHandlers(rt)
    return [
        Subscription("scoring-cases", subjects.CASE_ALL, h.on_messages,
                     description="Case events that count (the rest skipped unread)", skips_type=units.uncounted,
                     linger=rt.settings.follower_linger),
        Subscription(
            "scoring-merchant-checks", MERCHANT_CHECKS, h.on_messages, decode=decode_merchant_check,
            description="门前三包 duty checks", linger=rt.settings.follower_linger,
        ),
    ]


async def on_start(rt: Runtime) -> None:
    """Indexes, the period-close timer and the query responder."""
    await rt.store[UNIT_PERIODS].create_index("period")
    await rt.store["merchant_periods"].create_index("period")
    rt.every(rt.city.assessment.ranking.check_every_s, lambda: closing.close_periods(rt), name="period-close")
    await query.start(rt)


SPEC = ServiceSpec(name="scoring", subscriptions=subscriptions, collections=COLLECTIONS, on_start=on_start)
