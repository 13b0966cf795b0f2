"""The intake service: raw reports from every source become cases; Open311 and HJ 212 edges beside them."""

from __future__ import annotations

from pymongo import ASCENDING
from starlette.routing import BaseRoute

from contracts import subjects
from services.intake import hj212, open311
from services.intake.cases import domain_of, example_labels
from services.intake.classifier import read_examples
from services.intake.handlers import IntakeHandlers, decode_raw
from services.intake.open311.definitions import load_open311
from services.intake.open_cases import PROJECTED_EVENTS, OpenCases, decode_case_event
from services.intake.store import COLLECTIONS, RETAINED, ensure_indexes, list_open_cases
from services.intake.transfer_corrections import ACTION, TransferCorrections, decode_correction
from xiuhua.city import City, CityDataError
from xiuhua.consumer import Subscription
from xiuhua.service import Runtime, Service, ServiceSpec


class Intake(Service):
    """Reports (every source, one consumer), the projection of open cases for merging, corrections of transfers,
    Open311's view and API."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.handlers = IntakeHandlers(rt)
        self.open_cases = OpenCases(rt)
        self.corrections = TransferCorrections(rt, self.handlers.outcomes)
        self.hj212: str | None = None  # where the HJ 212 edge listens, once started

    def subscriptions(self) -> list[Subscription]:
        """Raw reports from every source; case events for intake's projection of open cases; Open311's."""
        h, rt = self.handlers, self.rt
        return [
            # 12345 orders carry the caller's name and phone in clear (the platform's contract): once applied they
            # are erased from XH_REPORTS, and the raw order rests only in intake's own store.
            Subscription(
                "intake-reports",
                subjects.REPORT_IN_ALL,
                h.on_reports,
                decode=decode_raw,
                description="Raw reports from every source",
                erase_subjects=(subjects.report_subject("hotline"),),
            ),
            # Only the events that open or close a case for merging reach intake: one filtered consumer each.
            *(
                Subscription(
                    f"intake-open-cases-{event}",
                    subjects.CASE.format(event=event, street_code="*"),
                    self.open_cases.on_case_events,
                    decode=decode_case_event,
                    description=f"case.v1.{event}: keeps intake's projection of open cases for merging",
                )
                for event in PROJECTED_EVENTS
            ),
            # Intake transferred the report, so intake applies a correction of the transfer (dispatch skips it).
            Subscription(
                "intake-transfer-corrections",
                subjects.COMMAND.format(action=ACTION),
                self.corrections.on_commands,
                decode=decode_correction,
                description="cmd.v1.case.correct_transfer: a transfer corrected by the command centre",
            ),
            *open311.subscriptions(rt),
        ]

    def routes(self) -> list[BaseRoute]:
        """Open311 GeoReport v2 under /open311/v2/."""
        return open311.routes(self.rt)

    async def on_start(self) -> None:
        """Indexes: the raw-report archive; open cases, listed in the merge directory. The city's domain (the
        classifier trained on its examples, the gazetteer, the grid) is built now: built on the first report, it
        held that report and those behind it about 45 ms."""
        rt = self.rt
        domain_of(rt.city)
        await ensure_indexes(rt.store)
        await rt.repair_older_builds(lambda: list_open_cases(rt.store), name="merge-directory")
        await rt.repair_older_builds(self.handlers.look_for_older_references, name="source-references")
        await open311.on_start(rt)
        await rt.store[hj212.REJECTED].create_index([("at", ASCENDING)])

    async def on_started(self) -> None:
        """The HJ 212 TCP edge, once the bus can take what it hears."""
        self.hj212 = await hj212.start(self.rt)


def of(rt: Runtime) -> Intake:
    """The intake service a runtime runs (its handlers, its edges)."""
    if not isinstance(rt.service, Intake):
        raise TypeError(f"{rt.name} does not run the intake service")
    return rt.service


def check_city(city: City) -> None:
    """Intake's own city files, checked before anything starts (`xiuhua up`) and again at start-up: open311.yaml
    (its services and attributes against the catalogue) and the classifier's labelled examples."""
    load_open311(city)
    try:
        read_examples(city.folder, example_labels(city))
    except ValueError as exc:
        raise CityDataError(str(exc)) from exc


SPEC = ServiceSpec(
    name="intake",
    service=Intake,
    collections=(*COLLECTIONS, *open311.COLLECTIONS, hj212.REJECTED),
    check_city=check_city,
    health_info=lambda rt: {"classifier": domain_of(rt.city).classifier_info},
    retained=(*RETAINED, *open311.RETAINED, *hj212.RETAINED),
)
