"""The fault scenarios and the table: each breaks something in the middle of a stream of reports, then waits
(bounded) for the pipeline to settle and counts from the streams and stores. 0 lost and 0 duplicated is a pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout

from xiuhua.bus import connect_options
from xiuhua.city import City, load_city
from xiuhua.settings import DEMO_CITY
from xiuhua_tools.chaos.feed import Feeder, Report, reports
from xiuhua_tools.chaos.lab import Lab, lab
from xiuhua_tools.chaos.tally import Tally, tally

Fault = Callable[[Lab], Coroutine[Any, Any, None]]  # run as a task beside the feed, so a coroutine


@dataclass
class Scenario:
    """A fault and when it strikes."""

    name: str
    description: str
    instances: int = 1
    fault: Fault | None = None
    strike_at: float = 0.3  # the share of reports stored when the fault strikes (the feeder goes on meanwhile)
    poison: bool = False
    cluster_nodes: int = 1  # nats-server nodes (streams at as many replicas)


@dataclass
class Result:
    """One row of the table."""

    scenario: str
    tally: Tally
    seconds: float
    resends: int = 0
    poison_sent: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing duplicated, every poison message dead-lettered."""
        return self.tally.lost == 0 and self.tally.duplicated == 0 and self.tally.dead_letters >= self.poison_sent

    def row(self) -> dict[str, Any]:
        """The table's columns."""
        t = self.tally
        return {
            "scenario": self.scenario,
            "sent": t.sent,
            "cases": t.cases,
            "dispatched": t.dispatched,
            "score_increments": t.score_increments,
            "alerts": t.alerts,
            "lost": t.lost,
            "duplicated": t.duplicated,
            "dead_letters": t.dead_letters,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
        }


async def _kill_bus(the_lab: Lab) -> None:
    """SIGKILL nats-server, leave it down a moment, start it on the same port and store directory."""
    assert the_lab.nats is not None
    the_lab.nats.kill()
    await asyncio.sleep(1.5)
    await asyncio.to_thread(the_lab.nats.start)


async def _kill_one_of_each(the_lab: Lab) -> None:
    """SIGKILL the first instance of every service mid-batch, keep the second running, restart the first."""
    victims = [p for p in the_lab.processes if p.instance == 0]
    for p in victims:
        p.kill()
    await asyncio.sleep(1.0)
    for p in victims:
        await the_lab.restart(p)


async def _store_outage(the_lab: Lab) -> None:
    """Freeze the store (SIGSTOP) for a while, then SIGKILL it and start it again on the same data."""
    assert the_lab.store is not None and the_lab.store.proc is not None
    os.kill(the_lab.store.proc.pid, signal.SIGSTOP)
    await asyncio.sleep(3.0)
    os.kill(the_lab.store.proc.pid, signal.SIGCONT)
    the_lab.store.kill()
    await asyncio.sleep(1.0)
    await asyncio.to_thread(the_lab.store.start)


async def _kill_case_stream_leader(the_lab: Lab) -> None:
    """SIGKILL the cluster node that leads XH_CASES; start it again on its store once another has taken over."""
    settings = the_lab.settings
    nc = await nats.connect(settings.nats_url or "", **connect_options(settings))
    try:
        info = await nc.jetstream().stream_info("XH_CASES")
    finally:
        await nc.close()
    assert info.cluster is not None and info.cluster.leader, "XH_CASES has no leader"
    node = the_lab.node_named(info.cluster.leader)
    node.kill()
    await asyncio.sleep(3.0)
    await asyncio.to_thread(node.start)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "broker_restart",
        "nats-server SIGKILLed mid-stream, restarted on the same store",
        fault=_kill_bus,
        strike_at=0.35,
    ),
    Scenario(
        "service_kill",
        "two instances of every service; one of each SIGKILLed mid-batch and restarted",
        instances=2,
        fault=_kill_one_of_each,
    ),
    Scenario("store_outage", "the store frozen 3 s, then killed and restarted on the same data", fault=_store_outage),
    Scenario("poison", "undecodable and schema-violating messages between good reports", poison=True),
    Scenario(
        "cluster_node_loss",
        "three nats-server nodes, streams at three replicas, two instances of every "
        "service; the node leading XH_CASES SIGKILLed mid-run and restarted",
        instances=2,
        fault=_kill_case_stream_leader,
        strike_at=0.35,
        cluster_nodes=3,
    ),
)


def poison_messages(tag: str) -> list[tuple[str, bytes, str]]:
    """(subject, bytes, message id) that no consumer can apply: they must end in the DLQ, not block the rest."""
    return [
        ("case.v1.opened.CD", b"\xff\xfe not json", f"{tag}-poison-bytes"),
        ("case.v1.dispatched.CD", json.dumps({"case_id": 17, "lead_unit": "?"}).encode(), f"{tag}-poison-schema"),
    ]


async def _publish_poison(the_lab: Lab, tag: str) -> int:
    settings = the_lab.settings
    nc = await nats.connect(settings.nats_url or "", **connect_options(settings))
    try:
        js = nc.jetstream()
        items = poison_messages(tag)
        for subject, data, msg_id in items:
            await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
        return len(items)
    finally:
        await nc.close()


async def settle(the_lab: Lab, sent: list[Report], timeout: float, grace: float = 2.0) -> Tally:  # noqa: ASYNC109
    """Count until nothing is missing (or the time is up), then once more after a grace period for late copies."""
    ids = [r.correlation_id for r in sent]
    deadline = time.monotonic() + timeout

    async def count() -> Tally | None:
        try:
            return await tally(the_lab.settings, ids)
        except (NatsTimeout, TimeoutError):  # a cluster still electing a stream's leader: count again
            if time.monotonic() > deadline:
                raise
            return None

    t = await count()
    while (t is None or not t.settled) and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        t = await count()
    await asyncio.sleep(grace)
    for _ in range(30):
        if (final := await count()) is not None:
            return final
        await asyncio.sleep(1.0)
    raise TimeoutError("the streams did not answer the count for 30 s")


async def run_scenario(
    scenario: Scenario,
    root: Path,
    *,
    n: int = 100,
    rate: float = 40.0,
    settle_timeout: float = 100.0,
    city: City | None = None,
    lab_kwargs: dict[str, Any] | None = None,
) -> Result:
    """Run one scenario in its own lab under `root`.

    `settle_timeout` must exceed the consumers' `ack_wait` (the lab's, 20 s): what a killed instance had pulled
    comes back only then.
    """
    city = city or load_city(DEMO_CITY)
    started = time.monotonic()
    async with lab(root / scenario.name, **{"cluster_nodes": scenario.cluster_nodes, **(lab_kwargs or {})}) as the_lab:
        await the_lab.spawn_all(scenario.instances)
        items = reports(city, n, tag=f"X{scenario.name[:6]}")
        feeder = Feeder(the_lab.settings.nats_url or "", connect_options(the_lab.settings), rate=rate)
        poison_sent = 0
        faults: list[asyncio.Task[None]] = []

        async def on_sent(k: int) -> None:
            nonlocal poison_sent
            if scenario.fault is not None and not faults and k >= max(1, int(n * scenario.strike_at)):
                faults.append(asyncio.create_task(scenario.fault(the_lab)))
            if scenario.poison and k == n // 2:
                poison_sent = await _publish_poison(the_lab, scenario.name)

        await feeder.run(items, on_sent)
        await asyncio.gather(*faults)
        t = await settle(the_lab, items, settle_timeout)
        result = Result(
            scenario.name, t, time.monotonic() - started, feeder.resends, poison_sent, notes=list(t.problems)
        )
        result.notes.append(f"logs: {the_lab.root / 'logs'}")
        return result


async def run_all(
    *,
    n: int = 100,
    root: Path | None = None,
    only: tuple[str, ...] = (),
    progress: Callable[[str], None] = print,
) -> list[Result]:
    """Every scenario (or those named), each in a fresh lab."""
    results = []
    with tempfile.TemporaryDirectory(prefix="xiuhua-chaos-") as tmp:
        base = root or Path(tmp)
        city = load_city(DEMO_CITY)
        for sc in SCENARIOS:
            if only and sc.name not in only:
                continue
            progress(f"… {sc.name}: {sc.description}")
            results.append(await run_scenario(sc, base, n=n, city=city))
    return results


COLUMNS = (
    "scenario",
    "sent",
    "cases",
    "dispatched",
    "score_increments",
    "alerts",
    "lost",
    "duplicated",
    "dead_letters",
    "seconds",
)
HEADERS = (
    "scenario",
    "sent",
    "cases",
    "dispatched",
    "score incr.",
    "alerts",
    "lost",
    "duplicated",
    "dead letters",
    "seconds",
)


def table(results: list[Result]) -> str:
    """The results as a Markdown table."""
    rows = [[str(r.row()[c]) for c in COLUMNS] for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(HEADERS)]
    fmt = "| " + " | ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths)) + " |"
    lines = [fmt.format(*HEADERS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)
