"""dispatch's handlers against the in-memory store (`xiuhua.testing.MemoryStore`): no server, the same handler code
and the same store calls as in production, in a transaction as the consumer runs them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import BulkWriteError

from contracts import commands as cmd
from services.dispatch.handlers import DispatchHandlers
from services.dispatch.store import CASES
from tests.helpers.dispatch import LEAD, T0, opened
from xiuhua.clock import FrozenClock
from xiuhua.consumer import Batch, Item
from xiuhua.observability import Metrics
from xiuhua.testing import MemoryStore


def _handlers(city: Any) -> tuple[DispatchHandlers, MemoryStore]:
    store = MemoryStore("dispatch")
    rt = SimpleNamespace(clock=FrozenClock(T0), city=city, store=store, metrics=Metrics("dispatch-memory"))
    return DispatchHandlers(rt), store  # type: ignore[arg-type]


async def _apply(
    store: MemoryStore,
    handle: Callable[[Batch], Awaitable[None]],
    *messages: Any,
    look_first: bool = True,
    first_seq: int = 0,
    ids: list[str] | None = None,
) -> list[str]:
    """Apply messages as one batch, as the consumer does: the handler, then its later writes, in one transaction;
    returns the subjects it emitted (and adds their message ids to `ids`). The messages are the stream's from
    `first_seq` on: the same sequence again is the same message delivered again."""
    items = [Item(f"m.{i}", b"", {}, f"k{i}", 1, first_seq + i, m) for i, m in enumerate(messages)]

    async def transaction(session: Any) -> None:
        batch = Batch(items, session, look_first, store.writes())
        await handle(batch)
        await store.write_together(batch.later(), session)

    await store.in_transaction(transaction)
    if ids is not None:
        ids += [out.msg_id for item in items for out in item.out]
    return [out.subject for item in items for out in item.out]


async def test_a_new_case_is_kept_and_dispatched_once_even_if_opened_again(city) -> None:
    h, store = _handlers(city)
    ids: list[str] = []
    assert await _apply(store, h.on_opened, opened(city), ids=ids) == ["case.v1.dispatched.CD"]
    (case,) = [d async for d in store[CASES].find({})]
    assert (case["_id"], case["state"], case["version"]) == ("C-1", "dispatched", 1)
    assert case["lead_unit"]["unit_id"] == "CD-SAN"
    # The same opening delivered again (a later batch, which reads first): the case kept is left alone, and the
    # dispatch it keeps goes out again with its id (the stream drops the copy; after a crash it is the only one).
    assert await _apply(store, h.on_opened, opened(city), ids=ids) == ["case.v1.dispatched.CD"]
    assert len(ids) == 2 and ids[0] == ids[1]
    # Another opening of the case (a copy under another id, another stream message): nothing goes out.
    assert await _apply(store, h.on_opened, opened(city), first_seq=1) == []
    assert await store.count(CASES) == 1 and await store[CASES].find_one({"_id": "C-1"}) == case
    # A first delivery skips that read: the kept case refuses the insert, and the consumer applies it again reading.
    with pytest.raises(BulkWriteError) as refused:
        await _apply(store, h.on_opened, opened(city), look_first=False)
    assert [e["code"] for e in refused.value.details["writeErrors"]] == [11000]
    assert await store[CASES].find_one({"_id": "C-1"}) == case


async def test_a_command_moves_the_kept_case_on_by_one_version(city) -> None:
    h, store = _handlers(city)
    await _apply(store, h.on_opened, opened(city))
    ack = cmd.Acknowledge(command_id="cmd-ack-1", case_id="C-1", at=T0, actor=LEAD)
    assert await _apply(store, h.on_command, ack) == ["case.v1.acknowledged.CD"]
    case = await store[CASES].find_one({"_id": "C-1"})
    assert (case["state"], case["version"], case["command_ids"]) == ("acknowledged", 2, ["cmd-ack-1"])
    assert await _apply(store, h.on_command, ack) == []  # the same command resent: applied before, nothing new
    assert (await store[CASES].find_one({"_id": "C-1"}))["version"] == 2


async def test_a_command_for_an_unknown_case_is_rejected(city) -> None:
    h, store = _handlers(city)
    ack = cmd.Acknowledge(command_id="cmd-ack-1", case_id="C-404", at=T0, actor=LEAD)
    assert await _apply(store, h.on_command, ack) == ["case.v1.command_rejected.unknown"]  # no case, no street
    assert await store.count(CASES) == 0
