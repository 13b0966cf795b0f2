"""The dispatch service."""

from __future__ import annotations

from services.dispatch.handlers import DispatchHandlers
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, ServiceSpec


def subscriptions(rt: Runtime) -> list[Subscription]:
    """New cases."""
    h = DispatchHandlers(rt)
    return [
        Subscription("dispatch-opened", "case.v1.opened.*", h.on_opened,
                     description="Cases opened by intake"),
    ]


SPEC = ServiceSpec(name="dispatch", subscriptions=subscriptions, collections=("cases",))
