"""The scoring service."""

from __future__ import annotations

from services.scoring.handlers import ScoringHandlers
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, ServiceSpec


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Every lifecycle event."""
    h = ScoringHandlers(rt)
    return [Subscription("scoring-cases", "case.v1.>", h.on_case_event, description="Every case event")]


SPEC = ServiceSpec(name="scoring", subscriptions=subscriptions, collections=("unit_periods",))
