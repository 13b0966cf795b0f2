"""The bulletin's part of the notify service: its two durable consumers, its collections, its schedule.

`services/notify/app.py` declares it beside the alerts; tests may run it alone.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from contracts.bulletins import BulletinPublished
from services.notify.bulletin.builder import publish_once
from services.notify.bulletin.figures import ensure_indexes
from services.notify.bulletin.handlers import BulletinProjection
from services.notify.bulletin.projection import COLLECTIONS, RETAINED, shows_nothing
from services.notify.bulletin.schedule import due_weeks
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.consumer import Subscription, decode_tolerant
from xiuhua.service import Job, Runtime, Service
from xiuhua.settings import Settings

CASES_CONSUMER = "notify-bulletin-cases"  # the durable consumer that folds case events (notify's, within notify)
ROUTE = "/bulletins"  # notify serves the archive here
CHECK_EVERY_S = 60.0  # the schedule is checked every minute; the clock, not this period, decides

__all__ = ["CASES_CONSUMER", "COLLECTIONS", "RETAINED", "ROUTE", "Bulletin", "archive_root", "base_url"]


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


class Bulletin(Service):
    """The weekly bulletin 周报: its two projection consumers, its Monday schedule, its archive route."""

    def __init__(self, rt: Runtime, *, folds_cases: bool = True) -> None:
        super().__init__(rt)
        self.projection = BulletinProjection(rt)
        # Within notify, its case consumer folds the case events as it plans alerts (one record per case per batch
        # holds both): the bulletin then consumes only scoring's events.
        self.folds_cases = folds_cases
        self.published = rt.metrics.counter(
            "xiuhua_bulletins_published", "Weekly bulletins built and published by this instance", ("pdf",)
        )

    def subscriptions(self) -> list[Subscription]:
        """`notify-bulletin-scores` on `score.v1.>`; alone (not within notify), `notify-bulletin-cases` on
        `case.v1.>` too."""
        p, rt = self.projection, self.rt
        cases = Subscription(
            CASES_CONSUMER,
            "case.v1.>",
            p.on_case_events,
            description="Case events folded into the weekly bulletin's figures",
            linger=rt.settings.follower_linger,
        )
        return [
            *([cases] if self.folds_cases else []),
            Subscription(
                "notify-bulletin-scores",
                "score.v1.>",
                p.on_score_events,
                decode=decode_tolerant,
                description="Scoring events (unit counters, merchant grades) for the weekly bulletin",
                skips_type=shows_nothing,
                linger=rt.settings.follower_linger,
            ),
        ]

    def jobs(self) -> list[Job]:
        """The Monday schedule (unless `XIUHUA_BULLETIN_SCHEDULE=false`)."""
        return [Job("weekly-bulletin", CHECK_EVERY_S, self.tick)] if self.rt.settings.bulletin_schedule else []

    def routes(self) -> list[BaseRoute]:
        """`GET /bulletins/<week>/<file>` and `/bulletins/index.md|index.json`: the archive, read-only.

        Static files only (Starlette refuses paths outside the folder); bulletins hold aggregate figures, no
        personal data."""
        root = archive_root(self.rt.settings)
        return [Mount(ROUTE, app=StaticFiles(directory=root, check_dir=False), name="bulletins")]

    async def on_start(self) -> None:
        """Indexes for the week reads."""
        await ensure_indexes(self.rt.store)

    async def tick(self, *, pdf: bool = True) -> list[BulletinPublished]:
        """Publish every bulletin that is due now and not yet published (by any instance)."""
        rt = self.rt
        now = rt.clock.now()
        calendar = BusinessCalendar(rt.city.calendar)
        published = []
        for week in due_weeks(now, calendar):
            event = await publish_once(
                rt.store,
                rt.ledger,
                rt.city,
                week,
                archive_root(rt.settings),
                now,
                pdf=pdf,
                base_url=base_url(rt.settings),
            )
            if event is not None:
                self.published.labels(str(event.pdf).lower()).inc()
                published.append(event)
        return published
