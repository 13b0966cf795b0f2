"""A service declares its parts on one object the runtime builds once: its consumers, jobs and routes share it,
periodic jobs run at their interval, a worker runs as its own task, and the service stops after its jobs."""

from __future__ import annotations

import asyncio

from contracts.cases import CaseDispatched
from tests.helpers import as_operator, eventually, publish
from xiuhua.consumer import Batch, Subscription
from xiuhua.service import Job, Runtime, Service, ServiceSpec, running


class Probe(Service):
    """Counts what it handles, what its jobs did and the order things stopped in."""

    built = 0

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        Probe.built += 1
        self.handled: list[str] = []
        self.ticks = 0
        self.events: list[str] = []

    async def on_case(self, batch: Batch) -> None:
        self.handled += [item.message.case_id for item in batch.items]

    def subscriptions(self) -> list[Subscription]:
        return [Subscription("probe-declared", "case.v1.>", self.on_case)]

    async def tick(self) -> None:
        self.ticks += 1

    async def work(self) -> None:
        self.events.append("worker started")
        try:
            await asyncio.Event().wait()
        finally:
            self.events.append("worker stopped")

    def jobs(self) -> list[Job]:
        return [Job("tick", 0.05, self.tick), Job("worker", None, self.work)]

    async def on_start(self) -> None:
        self.events.append("started")

    async def on_stop(self) -> None:
        self.events.append("stopped")


async def test_one_object_serves_the_consumers_and_the_jobs_and_stops_after_them(settings, city) -> None:
    Probe.built = 0
    event = CaseDispatched.model_validate(CaseDispatched.example())
    async with running(ServiceSpec(name="probe", service=Probe), as_operator(settings), city=city) as rt:
        probe = rt.service
        assert isinstance(probe, Probe) and Probe.built == 1
        assert {t.get_name() for t in rt.tasks} >= {"probe:tick", "probe:worker"}
        await publish(settings.nats_url, "case.v1.dispatched.CD", event.to_json(), msg_id=event.event_id)
        await eventually(lambda: probe.handled == [event.case_id] and probe.ticks >= 2)
    assert probe.events == ["started", "worker started", "worker stopped", "stopped"]
