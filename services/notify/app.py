"""The notify service."""

from __future__ import annotations

from services.notify.channels import Channel, FileChannel
from services.notify.handlers import NotifyHandlers
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, ServiceSpec


def _handlers(rt: Runtime) -> NotifyHandlers:
    if "handlers" not in rt.state:
        channels: dict[str, Channel] = {"file": FileChannel(rt.settings.var_dir / "outbox")}
        rt.state["handlers"] = NotifyHandlers(rt, channels)
    return rt.state["handlers"]


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Case events."""
    return [Subscription("notify-cases", "case.v1.>", _handlers(rt).on_case_event, description="Case events")]


async def on_start(rt: Runtime) -> None:
    """Indexes, and the delivery worker."""
    h = _handlers(rt)
    await h.ensure_indexes()
    rt.every(0.2, h.deliver_due, name="delivery-worker")


SPEC = ServiceSpec(name="notify", subscriptions=subscriptions, collections=("deliveries",), on_start=on_start)
