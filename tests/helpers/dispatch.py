"""Cases and commands of the demo city for dispatch's tests: the actors, a case in any state, each command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from contracts import commands as cmd
from contracts.cases import CaseOpened
from services.dispatch.case import Case, State
from services.dispatch.lifecycle import Context, open_case
from tests.helpers.bus import BusRecorder, publish
from tests.helpers.waiting import eventually
from xiuhua.city.business_calendar import BusinessCalendar

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=SH)  # Monday morning
LEAD = {"unit_id": "CD-SAN", "role": "sanitation", "name": "王强"}
CENTRE = {"unit_id": "XH-CC", "role": "command_centre", "name": "李督查"}
HOTLINE = {"unit_id": "XH-12345", "role": "hotline", "name": "话务员"}


def ctx(city, now: datetime = T0) -> Context:
    return Context(now, city, BusinessCalendar(city.calendar))


def opened(city, code: str = "0201", area: str = "CD01", **over) -> CaseOpened:
    fields = dict(
        correlation_id="grid:R-1",
        case_id="C-1",
        street_code="CD",
        source="grid",
        source_ref="R-1",
        category_code=code,
        description="垃圾箱满溢",
        place=city.areas.place_of_area(area),
        reported_at=T0,
    )
    fields.update(over)
    return CaseOpened(**fields)


def new_case(city, **over) -> Case:
    case, _ = open_case(opened(city, **over), ctx(city))
    return case


def in_state(city, state: State) -> Case:
    """A case of the demo city (0201 at 东园社区, lead CD-SAN) in a given state."""
    case = new_case(city)
    extra: dict[str, object] = {"state": state, "version": 4}
    if state != State.dispatched:
        extra["acknowledged_at"] = T0
    if state == State.extension_requested:
        extra["pending_extension_hours"] = 8.0
    if state in (State.resolved, State.closed):
        extra["resolved_at"] = T0 + timedelta(hours=1)
    if state in (State.closed, State.cancelled):
        extra["closed_at"] = T0 + timedelta(hours=2)
    return case.model_copy(update=extra)


def command(name: str, n: int = 1) -> cmd.CaseCommand:
    """Each command variant with the actor the rules allow."""
    base = {"command_id": f"cmd-{name}-{n}", "case_id": "C-1", "at": T0}
    return {
        "acknowledge": lambda: cmd.Acknowledge(**base, actor=LEAD),
        "return": lambda: cmd.Return(**base, actor=LEAD, reason="不属于本单位"),
        "request_extension": lambda: cmd.RequestExtension(**base, actor=LEAD, hours=8, reason="需协调"),
        "approve_extension": lambda: cmd.ApproveExtension(**base, actor=CENTRE),
        "resolve": lambda: cmd.Resolve(**base, actor=LEAD, note="已清运", photo_urls=["https://img/x.jpg"]),
        "verify_pass": lambda: cmd.Verify(**base, actor=CENTRE, passed=True),
        "verify_fail": lambda: cmd.Verify(**base, actor=CENTRE, passed=False, note="仍有垃圾"),
        "close": lambda: cmd.Close(**base, actor=CENTRE),
        "reopen": lambda: cmd.Reopen(**base, actor=CENTRE, reason="问题复发"),
        "rate": lambda: cmd.Rate(**base, actor=HOTLINE, satisfaction="satisfied"),
        "cancel": lambda: cmd.Cancel(**base, actor=CENTRE, reason="虚假举报"),
        "assign": lambda: cmd.Assign(**base, actor=CENTRE, unit_id="CD-ENF", category_code="0101", reason="占道经营"),
    }[name]()


class CommandSender:
    """Publishes commands with fresh ids and waits for what they cause."""

    def __init__(self, url: str, bus: BusRecorder) -> None:
        self.url, self.bus, self.n = url, bus, 0

    async def send(self, action: str, case_id: str, actor: dict, **fields: Any) -> str:
        self.n += 1
        cid = f"cmd-{action}-{self.n}"
        body = {"command_id": cid, "case_id": case_id, "actor": actor, "at": datetime.now(UTC).isoformat(), **fields}
        await publish(self.url, f"cmd.v1.case.{action}", body, msg_id=cid)
        return cid

    async def expect(self, action: str, case_id: str, actor: dict, event: str, **fields: Any) -> dict:
        """Send a command and wait for the event it causes (matched by command id)."""
        cid = await self.send(action, case_id, actor, **fields)
        return await eventually(lambda: _by_command(self.bus, event, cid), timeout=20)

    async def rejected(self, action: str, case_id: str, actor: dict, **fields: Any) -> dict:
        """Send a command that must be refused and return the rejection."""
        return await self.expect(action, case_id, actor, "command_rejected", **fields)


def _by_command(bus: BusRecorder, event: str, command_id: str) -> dict | None:
    return next((b for b in bus.on(f"case.v1.{event}.") if b.get("command_id") == command_id), None)
