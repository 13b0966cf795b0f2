"""The intake service."""

from __future__ import annotations

from pymongo import ASCENDING

from contracts import subjects
from services.intake import hj212, open311
from services.intake.batch_io import RETAINED, list_open_cases
from services.intake.cases import domain_of, example_labels
from services.intake.classifier import read_examples
from services.intake.handlers import (
    COLLECTIONS,
    DEVICES,
    OPEN,
    PROJECTED_EVENTS,
    RAW,
    IntakeHandlers,
    decode_case_event,
    decode_raw,
)
from services.intake.open311.definitions import load_open311
from xiuhua.city import City, CityDataError
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, ServiceSpec
from xiuhua.store import drop_index_on


def subscriptions(rt: Runtime) -> list[Subscription]:
    """Raw reports from every source; case events for intake's projection of open cases."""
    h = IntakeHandlers(rt)
    return [
        # 12345 orders carry the caller's name and phone in clear (the platform's contract): once applied they
        # are erased from XH_REPORTS, and the raw order rests only in intake's own store.
        Subscription("intake-reports", subjects.REPORT_IN_ALL, h.on_reports, decode=decode_raw,
                     description="Raw reports from every source",
                     erase_subjects=(subjects.report_subject("hotline"),)),
        # Only the events that open or close a case for merging reach intake: one filtered consumer each.
        *(Subscription(f"intake-open-cases-{event}", subjects.CASE.format(event=event, street_code="*"),
                       h.on_case_events, decode=decode_case_event,
                       description=f"case.v1.{event}: keeps intake's projection of open cases for merging")
          for event in PROJECTED_EVENTS),
        *open311.subscriptions(rt),
    ]


async def on_start(rt: Runtime) -> None:
    """Indexes: the raw-report archive; open cases, listed in the merge directory. The city's domain (the
    classifier trained on its examples, the gazetteer, the grid) is built now: built on the first report, it held
    that report and those behind it about 45 ms."""
    domain_of(rt.city)
    await rt.store[RAW].create_index([("status", ASCENDING), ("received_at", ASCENDING)])
    # Open cases are looked up through the merge directory (`open_keys`, by `_id`); this index finds the open ones
    # to list there (an equality on a single field: no scan on nx-27017).
    await rt.store[OPEN].create_index([("open", ASCENDING)])
    # What earlier versions looked up by: one index less to keep.
    await drop_index_on(rt.store[OPEN], [("key", ASCENDING), ("open", ASCENDING)])
    await rt.repair_older_builds(lambda: list_open_cases(rt.store), name="merge-directory")
    await rt.store[DEVICES].create_index([("case_id", ASCENDING)])
    await open311.on_start(rt)
    await rt.store[hj212.REJECTED].create_index([("at", ASCENDING)])


def check_city(city: City) -> None:
    """Intake's own city files, checked before anything starts (`xiuhua up`) and again at start-up: open311.yaml
    (its services and attributes against the catalogue) and the classifier's labelled examples."""
    load_open311(city)
    try:
        read_examples(city.folder, example_labels(city))
    except ValueError as exc:
        raise CityDataError(str(exc)) from exc


SPEC = ServiceSpec(
    name="intake", subscriptions=subscriptions, collections=(*COLLECTIONS, *open311.COLLECTIONS, hj212.REJECTED),
    on_start=on_start, on_started=hj212.start, check_city=check_city,
    http_routes=open311.routes, health_info=lambda rt: {"classifier": domain_of(rt.city).classifier_info},
    retained=(*RETAINED, *open311.RETAINED),
)
