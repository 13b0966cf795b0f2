"""Faults on the real bus and store, each ending with counts from the streams and stores: 0 lost, 0 duplicated.

Services run as real processes (`xiuhua run`), two instances where the scenario says so; see xiuhua_tools/chaos/.
"""

from __future__ import annotations

import json

import nats
import pytest

from contracts.cases import CaseOpened
from xiuhua.bus import connect_options
from xiuhua_tools.chaos.feed import Feeder, reports
from xiuhua_tools.chaos.lab import lab
from xiuhua_tools.chaos.scenarios import SCENARIOS, run_scenario, settle, table
from xiuhua_tools.chaos.tally import tally

pytestmark = pytest.mark.e2e
BY_NAME = {s.name: s for s in SCENARIOS}


def _log_tails(root, lines: int = 25) -> str:
    """The last lines each service logged: what a failed scenario's message needs (its folder is gone after)."""
    return "\n".join(
        f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
        for p in sorted((root / "logs").glob("*.log"))
    )


async def _run(name: str, tmp_path, city, n: int = 60, **lab: object):
    result = await run_scenario(BY_NAME[name], tmp_path, n=n, city=city, settle_timeout=100, lab_kwargs=lab)
    t = result.tally
    assert t.sent == n
    assert t.lost == 0 and t.duplicated == 0, (
        table([result]),
        t.problems,
        t.dead_letter_errors,
        _log_tails(tmp_path / name),
    )
    assert t.cases + t.merged + t.rejected == n  # every report has exactly one outcome
    assert t.cases > n // 2 and t.dispatched == t.cases == t.score_increments == t.alerts
    return result


@pytest.mark.timeout(120)
async def test_broker_sigkilled_mid_stream_loses_and_duplicates_nothing(tmp_path, city):
    await _run("broker_restart", tmp_path, city)
    # The fault really happened: the same server (same store directory) started twice.
    log = (tmp_path / "broker_restart" / "nats" / "nats-server.log").read_text()
    assert log.count("Server is ready") == 2


@pytest.mark.timeout(200)
async def test_two_instances_each_one_sigkilled_mid_batch_loses_and_duplicates_nothing(tmp_path, city):
    # Messages the killed instances had pulled come back after the consumers' ack wait: 10 s here, about what
    # restarting them takes anyway, instead of the lab's 20 s (`xiuhua chaos`), which the pipeline then sat out.
    await _run("service_kill", tmp_path, city, ack_wait=10.0)


@pytest.mark.timeout(300)
async def test_the_node_leading_the_case_stream_sigkilled_in_a_cluster_loses_and_duplicates_nothing(tmp_path, city):
    await _run("cluster_node_loss", tmp_path, city)
    # The fault really happened: one of the three nodes (the case stream's leader) started twice, on its store.
    starts = sorted(
        (tmp_path / "cluster_node_loss" / f"nats-n{i}" / "nats-server.log").read_text().count("Server is ready")
        for i in range(3)
    )
    assert starts == [1, 1, 2]


@pytest.mark.timeout(120)
async def test_store_frozen_then_killed_loses_and_duplicates_nothing(tmp_path, city):
    await _run("store_outage", tmp_path, city)


@pytest.mark.timeout(120)
async def test_poison_is_dead_lettered_after_bounded_retries_while_the_rest_flows(tmp_path, city):
    result = await _run("poison", tmp_path, city)
    # Two poison messages, each dead-lettered once by every consumer of its subject (at least one each).
    assert result.poison_sent == 2 and result.tally.dead_letters >= 2
    assert result.tally.poison_in_streams == 2


@pytest.mark.timeout(120)
async def test_tally_sees_a_duplicate_case_and_a_lost_report(tmp_path, city):
    """The counter is not blind: a second case for one report, and a report nobody answered, are both caught."""
    async with lab(tmp_path / "blind") as the_lab:
        await the_lab.spawn_all(1, services=("intake", "dispatch", "scoring", "notify"))
        items = reports(city, 5, tag="BLIND", hotline_share=0.0)
        opts = connect_options(the_lab.settings)
        await Feeder(the_lab.settings.nats_url or "", opts).run(items)
        clean = await settle(the_lab, items, 40, grace=0.5)
        assert clean.lost == 0 and clean.duplicated == 0, clean.problems
        nc = await nats.connect(the_lab.settings.nats_url or "", **opts)
        js = nc.jetstream()
        async for first in _opened(js):
            dup = CaseOpened.model_validate(first).model_copy(update={"case_id": "C-DUPLICATE", "event_id": "e-dup"})
            await js.publish(dup.subject_for(), dup.to_json(), headers={"Nats-Msg-Id": dup.event_id})
            break
        await nc.close()
        t = await tally(the_lab.settings, [r.correlation_id for r in items] + ["grid:NEVER-SENT"])
        assert t.duplicated >= 1 and any("duplicate case.v1.opened" in p for p in t.problems)
        assert t.lost >= 1 and any("without an outcome" in p for p in t.problems)


async def _opened(js):
    from xiuhua_tools.chaos.bus_read import stream_messages

    async for msg in stream_messages(js, "XH_CASES", "case.v1.opened.>"):
        yield json.loads(msg.data)
