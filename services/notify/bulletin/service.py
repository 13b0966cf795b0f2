"""The bulletin's part of the notify service: its two durable consumers, its collections, its schedule.

`services/notify/app.py` adds these to notify's `ServiceSpec`; tests may run them alone.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from contracts.bulletins import BulletinPublished
from services.notify.bulletin.builder import publish_once
from services.notify.bulletin.figures import ensure_indexes
from services.notify.bulletin.handlers import BulletinProjection
from services.notify.bulletin.projection import COLLECTIONS, RETAINED
from services.notify.bulletin.schedule import due_weeks
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.consumer import Subscription, decode_tolerant
from xiuhua.service import Runtime
from xiuhua.settings import Settings

ROUTE = "/bulletins"  # notify serves the archive here
CHECK_EVERY_S = 60.0  # the schedule is checked every minute; the clock, not this period, decides

__all__ = [
    "COLLECTIONS", "RETAINED", "ROUTE", "archive_root", "base_url", "on_start", "routes", "subscriptions", "tick",
]


def archive_root(settings: Settings) -> Path:
    """Where bulletins are archived: `var/bulletins/`."""
    return settings.var_dir / "bulletins"


def base_url(settings: Settings) -> str | None:
    """Where readers fetch archived bulletins: `XIUHUA_BULLETIN_BASE_URL`, else notify's own `/bulletins/` route
    when its address is known (a fixed port, as `xiuhua up` gives each service, on a concrete host)."""
    if settings.bulletin_base_url:
        return settings.bulletin_base_url.rstrip("/")
    if settings.http_port and settings.http_host not in ("", "0.0.0.0", "::"):
        host = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
        return f"http://{host}:{settings.http_port}{ROUTE}"
    return None  # in-process (tests) or listening on every interface: no address worth naming


def routes(rt: Runtime) -> list[BaseRoute]:
    """`GET /bulletins/<week>/<file>` and `/bulletins/index.md|index.json`: the archive, read-only.

    Static files only (Starlette refuses paths outside the folder); bulletins hold aggregate figures, no
    personal data."""
    return [Mount(ROUTE, app=StaticFiles(directory=archive_root(rt.settings), check_dir=False), name="bulletins")]


def _projection(rt: Runtime) -> BulletinProjection:
    if "bulletin_projection" not in rt.state:
        rt.state["bulletin_projection"] = BulletinProjection(rt)
    return rt.state["bulletin_projection"]


def subscriptions(rt: Runtime) -> list[Subscription]:
    """`notify-bulletin-cases` on `case.v1.>` and `notify-bulletin-scores` on `score.v1.>`."""
    p = _projection(rt)
    return [
        Subscription("notify-bulletin-cases", "case.v1.>", p.on_case_events,
                     description="Case events folded into the weekly bulletin's figures",
                     linger=rt.settings.follower_linger),
        Subscription("notify-bulletin-scores", "score.v1.>", p.on_score_events, decode=decode_tolerant,
                     description="Scoring events (unit counters, merchant grades) for the weekly bulletin",
                     linger=rt.settings.follower_linger),
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
        event = await publish_once(rt.store, rt.ledger, rt.city, week, archive_root(rt.settings), now, pdf=pdf,
                                   base_url=base_url(rt.settings))
        if event is not None:
            rt.state["bulletins_published"].labels(str(event.pdf).lower()).inc()
            published.append(event)
    return published


async def on_start(rt: Runtime) -> None:
    """Indexes for the week reads, and the Monday schedule (unless `XIUHUA_BULLETIN_SCHEDULE=false`)."""
    await ensure_indexes(rt.store)
    if rt.settings.bulletin_schedule:
        rt.every(CHECK_EVERY_S, lambda: tick(rt), name="weekly-bulletin")
