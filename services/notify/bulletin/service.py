"""The bulletin's part of the notify service: its two durable consumers, its collections, its schedule.

`services/notify/app.py` adds these to notify's `ServiceSpec`; tests may run them alone.
"""

from __future__ import annotations

from pathlib import Path

from contracts.bulletins import BulletinPublished
from services.dispatch.business_calendar import BusinessCalendar
from services.notify.bulletin.builder import publish_once
from services.notify.bulletin.figures import ensure_indexes
from services.notify.bulletin.handlers import BulletinProjection
from services.notify.bulletin.projection import COLLECTIONS
from services.notify.bulletin.schedule import due_weeks
from xiuhua.consumer import Subscription, decode_tolerant
from xiuhua.service import Runtime
from xiuhua.settings import Settings

CHECK_EVERY_S = 60.0  # the schedule is checked every minute; the clock, not this period, decides

__all__ = ["COLLECTIONS", "archive_root", "on_start", "subscriptions", "tick"]


def archive_root(settings: Settings) -> Path:
    """Where bulletins are archived: `var/bulletins/`."""
    return settings.var_dir / "bulletins"


def _projection(rt: Runtime) -> BulletinProjection:
    if "bulletin_projection" not in rt.state:
        rt.state["bulletin_projection"] = BulletinProjection(rt)
    return rt.state["bulletin_projection"]


def subscriptions(rt: Runtime) -> list[Subscription]:
    """`notify-bulletin-cases` on `case.v1.>` and `notify-bulletin-scores` on `score.v1.>`."""
    p = _projection(rt)
    return [
        Subscription("notify-bulletin-cases", "case.v1.>", p.on_case_events,
                     description="Case events folded into the weekly bulletin's figures"),
        Subscription("notify-bulletin-scores", "score.v1.>", p.on_score_events, decode=decode_tolerant,
                     description="Scoring events (unit counters, merchant grades) for the weekly bulletin"),
    ]


async def tick(rt: Runtime, *, pdf: bool = True) -> list[BulletinPublished]:
    """Publish every bulletin that is due now and not yet published (by any instance)."""
    now = rt.clock.now()
    calendar = BusinessCalendar(rt.city.calendar)
    if "bulletins_published" not in rt.state:
        rt.state["bulletins_published"] = rt.metrics.counter(
            "xiuhua_bulletins_published", "Weekly bulletins built and published by this instance", ("pdf",))
    published = []
    for week in due_weeks(now, calendar):
        event = await publish_once(rt.store, rt.ledger, rt.city, week, archive_root(rt.settings), now, pdf=pdf)
        if event is not None:
            rt.state["bulletins_published"].labels(str(event.pdf).lower()).inc()
            published.append(event)
    return published


async def on_start(rt: Runtime) -> None:
    """Indexes for the week reads, and the Monday schedule."""
    await ensure_indexes(rt.store)
    rt.every(CHECK_EVERY_S, lambda: tick(rt), name="weekly-bulletin")
