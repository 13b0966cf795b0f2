"""Optimistic concurrency: a command that loses a race retries on the fresh case, or is rejected with `conflict`."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from contracts import commands as cmd
from services.dispatch.case import State
from services.dispatch.handlers import DispatchHandlers
from services.dispatch.lifecycle import Applied, Context, decide
from tests.helpers.dispatch import command, in_state
from xiuhua.city.business_calendar import BusinessCalendar
from xiuhua.clock import FrozenClock
from xiuhua.consumer import Batch, Item
from xiuhua.observability import Metrics

SH = ZoneInfo("Asia/Shanghai")
T1 = datetime(2026, 11, 23, 10, 0, tzinfo=SH)


@dataclass
class Result:
    matched_count: int


class RacyCases:
    """A `cases` collection where another writer moves the case on just before each of our first writes."""

    def __init__(self, doc: dict[str, Any], rivals: list[dict[str, Any]]) -> None:
        self.doc, self.rivals, self.writes = doc, rivals, 0

    async def find_one(self, query: dict[str, Any], *args: Any, session: Any = None) -> dict[str, Any] | None:
        return copy.deepcopy(self.doc) if query["_id"] == self.doc["_id"] else None

    async def replace_one(self, query: dict[str, Any], doc: dict[str, Any], session: Any = None) -> Result:
        self.writes += 1
        if self.rivals:
            self.doc = self.rivals.pop(0)  # the other writer wins this round
        if query["version"] != self.doc["version"]:
            return Result(0)
        self.doc = doc
        return Result(1)


def _handlers(city, cases: RacyCases) -> DispatchHandlers:
    rt = SimpleNamespace(clock=FrozenClock(T1), city=city, store={"cases": cases}, metrics=Metrics("dispatch-test"))
    return DispatchHandlers(rt)  # type: ignore[arg-type]


async def _apply(h: DispatchHandlers, c: cmd.CaseCommand) -> list[Any]:
    item = Item("cmd.v1.case." + c.action, b"", {}, "k", 1, 1, c)
    await h.on_command(Batch([item], None))  # type: ignore[arg-type]
    return [out for out in item.out]


def _moved(city, case, name: str) -> dict[str, Any]:
    """The case after a rival's command."""
    out = decide(case, command(name, 9), Context(T1, city, BusinessCalendar(city.calendar)))
    assert isinstance(out, Applied)
    return out.case.to_doc()


async def test_loser_retries_on_the_fresh_case_and_applies(city) -> None:
    case = in_state(city, State.acknowledged)
    cases = RacyCases(case.to_doc(), [_moved(city, case, "request_extension")])
    outs = await _apply(_handlers(city, cases), command("resolve"))
    assert [o.subject.split(".")[2] for o in outs] == ["resolved"]
    assert cases.doc["state"] == "resolved" and cases.doc["version"] == case.version + 2 and cases.writes == 2


async def test_loser_is_rejected_when_the_fresh_state_forbids_it(city) -> None:
    case = in_state(city, State.acknowledged)
    cases = RacyCases(case.to_doc(), [_moved(city, case, "cancel")])
    outs = await _apply(_handlers(city, cases), command("resolve"))
    assert [o.subject.split(".")[2] for o in outs] == ["command_rejected"]
    assert b'"wrong_state"' in outs[0].body and b'"cancelled"' in outs[0].body
    assert cases.doc["state"] == "cancelled"


async def test_a_case_that_keeps_changing_gives_conflict(city) -> None:
    case = in_state(city, State.acknowledged)
    rivals = []
    for i in range(3):  # a rival bumps the version on every attempt
        rivals.append({**case.to_doc(), "version": case.version + 1 + i})
    cases = RacyCases(case.to_doc(), rivals)
    outs = await _apply(_handlers(city, cases), command("resolve"))
    assert [o.subject.split(".")[2] for o in outs] == ["command_rejected"]
    assert b'"conflict"' in outs[0].body and cases.writes == 3


async def test_a_resent_command_id_is_applied_once(city) -> None:
    case = in_state(city, State.acknowledged)
    cases = RacyCases(case.to_doc(), [])
    h = _handlers(city, cases)
    assert len(await _apply(h, command("resolve"))) == 1
    assert await _apply(h, command("resolve")) == []  # same command id under a new message id: already applied
    assert cases.doc["version"] == case.version + 1
