"""Dead letters on the real bus: a message fails until a fix, lands in XH_DLQ, is listed, re-driven and applied once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from contracts.cases import CaseDispatched
from tests.helpers import as_operator, eventually, publish
from xiuhua.consumer import Batch, Subscription
from xiuhua.service import ServiceSpec, running
from xiuhua_tools.commands.dlq import list_letters, redrive, redrive_id


def test_redrive_id_counts_up_and_keeps_the_original_root():
    assert redrive_id("e-1", 7, 3) == "e-1~r1"
    assert redrive_id("e-1~r1", 7, 3) == "e-1~r2"
    assert redrive_id(None, 7, 3) == "seq-7~r1"
    assert redrive_id(None, None, 3) == "dlq-3~r1"


async def test_dead_letter_is_listed_redriven_after_the_fix_and_applied_once(settings, city):
    applied: list[str] = []
    fixed = {"on": False}

    async def handle_real(batch: Batch) -> None:
        for item in batch.items:
            if item.message.rule_id == "needs-fix" and not fixed["on"]:
                raise RuntimeError("handler bug: rule needs-fix unknown")
            applied.append(item.message.case_id)  # what the handler was given (a refused batch is given again)
            await store["effects"].insert_one({"case_id": item.message.case_id}, session=batch.session)

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-cases", "case.v1.>", handle_real)])
    good = CaseDispatched.model_validate(CaseDispatched.example())
    bad = good.model_copy(update={"rule_id": "needs-fix", "case_id": "C-fixme", "event_id": "e-fixme"})
    async with running(spec, as_operator(settings), city=city) as rt:
        store = rt.store
        await store.ensure_collections(["effects"])
        await publish(settings.nats_url, "case.v1.dispatched.CD", bad.to_json(), msg_id=bad.event_id)
        await publish(settings.nats_url, "case.v1.dispatched.CD", b"\x00 undecodable", msg_id="poison-1")
        await publish(settings.nats_url, "case.v1.dispatched.CD", good.to_json(), msg_id=good.event_id)
        letters = await eventually(lambda: _two(list_letters(settings)), timeout=30)
        assert applied == [good.case_id]  # the rest flowed while the bad one was retried
        by_msg = {x.original_msg_id: x for x in letters}
        assert by_msg["e-fixme"].deliveries == settings.max_deliver
        assert by_msg["e-fixme"].error == "RuntimeError: handler bug: rule needs-fix unknown"
        assert by_msg["e-fixme"].original_subject == "case.v1.dispatched.CD"
        assert by_msg["poison-1"].deliveries == 1
        assert [x.id for x in await list_letters(settings, "probe")] == [x.id for x in letters]
        assert await list_letters(settings, "intake") == []

        fixed["on"] = True
        counted: list[tuple[int, int]] = []
        done = await redrive(settings, [by_msg["e-fixme"].id], progress=lambda *c: counted.append(c))
        assert counted == [(1, 1)]
        assert done == [
            {"id": by_msg["e-fixme"].id, "service": "probe", "subject": "case.v1.dispatched.CD", "msg_id": "e-fixme~r1"}
        ]
        await eventually(lambda: "C-fixme" in applied, timeout=20)
        # Re-driving the same letter again is refused: it left the queue.
        with pytest.raises(SystemExit, match="no dead letter"):
            await redrive(settings, [by_msg["e-fixme"].id])
        remaining = await list_letters(settings)
        assert [x.original_msg_id for x in remaining] == ["poison-1"]
        # The re-driven copy counts as the original: publishing it once more changes nothing.
        await publish(settings.nats_url, "case.v1.dispatched.CD", bad.to_json(), msg_id="e-fixme~r9")
        await publish(settings.nats_url, "case.v1.dispatched.CD", good.to_json(), msg_id=good.event_id + "~r1")
        await publish(
            settings.nats_url,
            "case.v1.dispatched.CD",
            good.model_copy(update={"case_id": "C-marker", "event_id": "e-marker"}).to_json(),
            msg_id="e-marker",
        )
        await eventually(lambda: "C-marker" in applied, timeout=20)
        # Each effect once: the copies (first deliveries to JetStream, applied before) were refused by the ledger.
        effects = sorted([d["case_id"] async for d in store["effects"].find({})])
        assert effects == sorted([good.case_id, "C-fixme", "C-marker"])
    assert set(applied) == {good.case_id, "C-fixme", "C-marker"}


async def test_dlq_cli_lists_as_json_and_redrives_all(settings, city):
    async def handle(batch: Batch) -> None:
        for _ in batch.items:
            raise RuntimeError("always broken")

    spec = ServiceSpec(name="probe", subscriptions=lambda rt: [Subscription("probe-cases", "case.v1.>", handle)])
    env = {**os.environ, "XIUHUA_NATS_URL": settings.nats_url or "", "XIUHUA_VAR_DIR": str(settings.var_dir)}
    async with running(spec, as_operator(settings), city=city):
        await publish(settings.nats_url, "case.v1.dispatched.CD", b"not json", msg_id="p-1")
        await publish(settings.nats_url, "case.v1.dispatched.CD", b"not json either", msg_id="p-2")
        await eventually(lambda: _two(list_letters(settings)), timeout=30)
        out = await _cli(env, "list", "--service", "probe", "--json")
        rows = json.loads(out.stdout)
        assert {r["original_msg_id"] for r in rows} == {"p-1", "p-2"}
        assert {"id", "service", "consumer", "original_subject", "error", "deliveries", "at"} <= set(rows[0])
        human = (await _cli(env, "list")).stdout
        assert "2 dead letter(s)" in human and "case.v1.dispatched.CD" in human
        bad = await _cli(env, "redrive", check=False)
        assert bad.returncode != 0 and "--all" in bad.stderr
        out = await _cli(env, "redrive", "--all", "--json")
        assert {d["msg_id"] for d in json.loads(out.stdout)} == {"p-1~r1", "p-2~r1"}
        # Still poison: they come back, now carrying the re-drive mark, ready for the next re-drive.
        again = await eventually(lambda: _two(list_letters(settings)), timeout=30)
        assert {x.original_msg_id for x in again} == {"p-1~r1", "p-2~r1"}
        assert {redrive_id(x.original_msg_id, None, x.id) for x in again} == {"p-1~r2", "p-2~r2"}


async def _two(pending):
    letters = await pending
    return letters if len(letters) == 2 else None


async def _cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`xiuhua dlq ...` as an operator runs it, off the event loop so the service keeps consuming."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "xiuhua", "dlq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )
