"""The app every service runs in: one runtime, four services that only declare what differs.

A service module provides a `ServiceSpec`: its name, its collections, and its `Service`: the one object, built
once per runtime, that declares the service's subscriptions, periodic jobs, start-up work and HTTP routes.
`running(spec)` starts it in-process (tests, the pytest plugin); `serve(spec)` runs it as a process with `/metrics`
and `/health` (what `xiuhua run` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from faststream.nats import NatsBroker
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from contracts import registry
from xiuhua import observability, third_party, tracing
from xiuhua.bus import Publisher, Refusals, make_broker
from xiuhua.city import City, load_city
from xiuhua.city.loading import line_of
from xiuhua.clock import Clock, SystemClock
from xiuhua.consumer import FAILURES, FAILURES_RETAINED, ConsumerRunner, Subscription, attach, reconcile_consumers
from xiuhua.ledger import COLLECTION as LEDGER
from xiuhua.ledger import RETAINED as LEDGER_RETAINED
from xiuhua.ledger import Ledger
from xiuhua.observability import Metrics, StoreCommands
from xiuhua.retention import Retained, RetentionJob, check_ledger_horizon
from xiuhua.retention import ensure_indexes as ensure_retention_indexes
from xiuhua.security import embedded_credentials
from xiuhua.settings import Settings, get_settings
from xiuhua.store import BACKFILL_EVERY_S, Store

log = logging.getLogger("xiuhua.service")


@dataclass
class Runtime:
    """Everything a service's handlers may use; built once per service instance."""

    name: str
    settings: Settings
    clock: Clock
    city: City
    broker: NatsBroker
    store: Store
    publisher: Publisher
    ledger: Ledger
    metrics: Metrics
    service: Service | None = None  # what the spec declares, built once with the runtime
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    consumers: list[ConsumerRunner] = field(default_factory=list)
    # Consumers only some deployments need (`Subscription.only_if`), with their FastStream subscribers: decided
    # once connected, before the broker starts (`started`).
    optional: list[tuple[ConsumerRunner, Any]] = field(default_factory=list)

    def every(self, seconds: float, fn: Callable[[], Awaitable[Any]], *, name: str) -> None:
        """Run `fn` periodically in the background; errors are logged and the loop goes on."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: periodic task %s failed", self.name, name)

        self.tasks.append(asyncio.create_task(loop(), name=f"{self.name}:{name}"))

    def in_background(self, fn: Callable[[], Awaitable[Any]], *, name: str) -> None:
        """Run `fn` once in the background (work a start need not wait for); a failure is logged."""

        async def once() -> None:
            try:
                await fn()
            except Exception:
                log.exception("%s: background task %s failed", self.name, name)

        self.tasks.append(asyncio.create_task(once(), name=f"{self.name}:{name}"))

    def repair_once(self, fn: Callable[[], Awaitable[int]], *, name: str) -> None:
        """Run `fn` in the background until it has run through once in this deployment's life (a claim in the
        ledger records it): a pass over a whole collection for what a build before a change wrote, which later
        builds never write again and which must not be read whole at every start."""

        async def once() -> None:
            key = f"repaired:{name}"
            if await self.ledger.seen([key]):
                return
            n = await fn()
            await self.ledger.claim(key, [])
            log.info("%s: %s: %d documents an older build wrote repaired", self.name, name, n)

        self.in_background(once, name=name)

    async def repair_older_builds(self, fn: Callable[[], Awaitable[Any]], *, name: str) -> None:
        """Run `fn` now and every `BACKFILL_EVERY_S`: it gives what an older build wrote what this one's queries
        select on (during a rolling upgrade the older instances go on writing it for a while)."""
        await fn()
        self.every(BACKFILL_EVERY_S, fn, name=name)


@dataclass(frozen=True)
class Job:
    """Work a service runs in the background: every `every_s` seconds (a failure is logged, the loop goes on), or,
    with `every_s` None, `run` is a loop of its own (a worker)."""

    name: str
    every_s: float | None
    run: Callable[[], Coroutine[Any, Any, Any]]


class Service:
    """What a service declares, in the same form in every service: built once per runtime, it builds the service's
    handlers and says which subscriptions, periodic jobs and HTTP routes they serve."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def subscriptions(self) -> list[Subscription]:
        """The durable consumers and what handles their batches."""
        return []

    def jobs(self) -> list[Job]:
        """Periodic jobs and workers, started once `on_start` has run."""
        return []

    def routes(self) -> list[BaseRoute]:
        """HTTP routes served beside `/metrics` and `/health`."""
        return []

    async def on_start(self) -> None:
        """Start-up work before the consumers run (indexes, repairs of what older builds wrote)."""

    async def on_started(self) -> None:
        """Once the broker is connected and the consumers run (listeners that publish what they hear)."""

    async def on_stop(self) -> None:
        """After the service's tasks stopped, before the bus and store close."""


@dataclass
class ServiceSpec:
    """What one service is made of."""

    name: str
    subscriptions: Callable[[Runtime], list[Subscription]] | None = None
    service: Callable[[Runtime], Service] | None = None  # the service's declarations (subscriptions, jobs, routes)
    collections: tuple[str, ...] = ()
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    # After the broker is connected and the consumers run: listeners that publish what they hear (intake's TCP edge)
    on_started: Callable[[Runtime], Awaitable[None]] | None = None
    http_routes: Callable[[Runtime], list[BaseRoute]] | None = None
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None  # after its tasks stopped, before the bus and store
    # The service's own city files (beyond what load_city checks), checked by `xiuhua up` before anything starts
    # so a mistake is one `file:line: field: message` and exit code 2, not a crash loop; raises CityDataError.
    check_city: Callable[[City], None] | None = None
    # What `/health` adds about the service (intake's classifier, dispatch's `warnings`); never changes its status
    health_info: Callable[[Runtime], dict[str, Any]] | None = None
    # What the periodic purge deletes past the city's horizons (`retention.yaml`), besides the ledger every
    # service has.
    retained: tuple[Retained, ...] = ()


def build_runtime(
    spec: ServiceSpec, settings: Settings, *, clock: Clock | None = None, city: City | None = None
) -> Runtime:
    """Wire the real adapters for a service (not yet connected)."""
    # A service run beside the embedded default connects as its own user, as `xiuhua up` starts it.
    settings = embedded_credentials(settings, spec.name)
    if not settings.nats_url or not settings.mongo_url:
        raise RuntimeError(
            "XIUHUA_NATS_URL and XIUHUA_MONGO_URL must be set to run a service alone "
            "(`xiuhua up` starts embedded servers and sets them for its services)"
        )
    clock = clock or SystemClock()
    city = city or load_city(settings.city_dir)
    retention_file = city.folder / "retention.yaml"
    where = line_of(retention_file, ("ledger",)) if retention_file.exists() else "retention defaults"
    check_ledger_horizon(city.retention, settings.ack_wait, where)
    metrics = Metrics(spec.name)
    refusals = Refusals()
    broker = make_broker(settings, name=spec.name, registry=metrics.registry, refusals=refusals)
    store = Store(
        settings.mongo_url,
        settings.database(spec.name),
        write_concern=settings.write_concern,
        tx_lock_dir=settings.store_tx_lock_dir,
        listeners=[StoreCommands(metrics)],
        combine_writes=settings.store_combined_writes,
    )
    publisher = Publisher(broker, refusals)
    ledger = Ledger(store, publisher, clock)
    rt = Runtime(
        name=spec.name,
        settings=settings,
        clock=clock,
        city=city,
        broker=broker,
        store=store,
        publisher=publisher,
        ledger=ledger,
        metrics=metrics,
    )
    rt.service = spec.service(rt) if spec.service else None
    declared = rt.service.subscriptions() if rt.service else []
    for sub in [*(spec.subscriptions(rt) if spec.subscriptions else []), *declared]:
        sub.batch_size = min(sub.batch_size, settings.batch_size)
        runner = ConsumerRunner(
            service=spec.name,
            sub=sub,
            store=store,
            ledger=ledger,
            publisher=publisher,
            metrics=metrics,
            max_deliver=settings.max_deliver,
            clock=clock,
        )
        subscriber = attach(broker, runner, ack_wait=settings.ack_wait)
        rt.consumers.append(runner)
        if sub.only_if is not None:
            rt.optional.append((runner, subscriber))
    return rt


async def _leave_out_unwanted(rt: Runtime) -> None:
    """Consumers only some deployments need, taken off the broker where they are not wanted before it starts."""
    if not rt.optional:
        return
    js = (await rt.broker.connect()).jetstream()
    for runner, subscriber in rt.optional:
        assert runner.sub.only_if is not None
        if not await runner.sub.only_if(js):
            third_party.detach(rt.broker, subscriber)
            rt.consumers.remove(runner)
            log.info("%s: consumer %s is not needed here", rt.name, runner.sub.name)
    rt.optional.clear()


@contextlib.asynccontextmanager
async def started(spec: ServiceSpec, rt: Runtime) -> AsyncIterator[Runtime]:
    """Connect a built runtime, run the service's start-up work and consumers; stop them on exit."""
    # Every contract module is imported and indexed now: on the first message it took about 45 ms, which that
    # message and every one behind it waited (the first case a fresh dispatch opened, intake's first Open311 view).
    registry.patterns()
    await rt.store.end_orphaned_transaction()
    await rt.store.ensure_collections((LEDGER, FAILURES, *spec.collections))
    await rt.ledger.ensure_indexes()
    retained = (LEDGER_RETAINED, FAILURES_RETAINED, *spec.retained)
    await ensure_retention_indexes(rt.store, retained)
    # Entries applied before retention existed have no moment to range over: given one once, or kept for good.
    consumers = [r.sub.name for r in rt.consumers]
    rt.repair_once(lambda: rt.ledger.backfill_moments(consumers), name="ledger-moments")
    if spec.on_start:
        await spec.on_start(rt)
    if rt.service:
        await rt.service.on_start()
        for job in rt.service.jobs():
            if job.every_s is None:
                rt.tasks.append(asyncio.create_task(job.run(), name=f"{rt.name}:{job.name}"))
            else:
                rt.every(job.every_s, job.run, name=job.name)
    await _leave_out_unwanted(rt)
    await rt.broker.start()
    await reconcile_consumers(
        rt.broker.connection.jetstream(),
        [r.sub for r in rt.consumers],
        ack_wait=rt.settings.ack_wait,
    )
    if spec.on_started:
        await spec.on_started(rt)
    if rt.service:
        await rt.service.on_started()
    rt.every(5.0, lambda: _sweep(rt), name="outbox-sweeper")
    rt.every(1.0, rt.store.end_orphaned_transaction, name="orphan-transactions")
    # The first purge waits a whole interval: a service back after a long outage first takes the redeliveries
    # of what it applied before (they come at once, their ack wait long past), finding their ledger entries.
    rt.every(rt.city.retention.every, retention_job(rt, retained).run, name="retention")
    rt.metrics.up.labels(spec.name).set(1)
    log.info("%s started", spec.name)
    try:
        yield rt
    finally:
        for task in rt.tasks:
            task.cancel()
        await asyncio.gather(*rt.tasks, return_exceptions=True)
        try:
            if spec.on_stop:
                await spec.on_stop(rt)
            if rt.service:
                await rt.service.on_stop()
        except Exception:  # what it could not release must not keep the bus and store open
            log.exception("%s: stopping failed", spec.name)
        await rt.broker.stop()
        await rt.ledger.close()
        await rt.store.close()
        rt.metrics.up.labels(spec.name).set(0)
        log.info("%s stopped", spec.name)


@contextlib.asynccontextmanager
async def running(
    spec: ServiceSpec,
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    city: City | None = None,
) -> AsyncIterator[Runtime]:
    """Start a service in this event loop (tests, the pytest plugin); stop it on exit."""
    rt = build_runtime(spec, settings or get_settings(), clock=clock, city=city)
    async with started(spec, rt):
        yield rt


def retention_job(rt: Runtime, retained: tuple[Retained, ...]) -> RetentionJob:
    """The service's purge, counting what it deletes by collection."""
    deleted = rt.metrics.counter(
        "xiuhua_retention_deleted",
        "Documents the purge deleted past the city's horizon (retention.yaml)",
        ("service", "collection"),
    )
    return RetentionJob(
        rt.store,
        rt.city.retention,
        retained,
        rt.clock,
        on_deleted=lambda collection, n: deleted.labels(rt.name, collection).inc(n),
    )


async def _sweep(rt: Runtime) -> None:
    n = await rt.ledger.sweep()
    if rt.ledger.refused:
        rt.metrics.publish_refused.labels(rt.name, "outbox-sweeper").inc(rt.ledger.refused)
        rt.ledger.refused = 0
    if n:
        rt.metrics.outbox_republished.labels(rt.name).inc(n)


def asgi_app(spec: ServiceSpec, rt: Runtime) -> Starlette:
    """The service as an ASGI app: the broker runs in its lifespan, `/metrics` and `/health` beside it."""

    async def nats_ok() -> bool:
        return bool(rt.broker.connection.is_connected)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with started(spec, rt):
            # What start-up built (the city, its classifier and routing tables, the imported libraries) lives as
            # long as the process: out of the collector's sight, a full collection no longer walks it all while a
            # message waits (intake: about 88,000 objects, 16-19 ms a full collection, under 0.1 ms after this).
            gc.freeze()
            yield

    info = functools.partial(spec.health_info, rt) if spec.health_info is not None else None
    routes: list[BaseRoute] = [*observability.routes(rt.metrics, {"nats": nats_ok, "store": rt.store.ping}, info=info)]
    if spec.http_routes:
        routes += spec.http_routes(rt)
    if rt.service:
        routes += rt.service.routes()
    return Starlette(routes=routes, lifespan=lifespan)


def serve(spec: ServiceSpec, settings: Settings | None = None) -> None:
    """Run one service as a process until SIGINT/SIGTERM."""
    settings = settings or get_settings()
    tracing.configure(settings, spec.name)
    app = asgi_app(spec, build_runtime(spec, settings))
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        log_config=None,  # uvicorn's records go to the process's handler (`xiuhua.logs`), not its own on stderr
    )
    try:
        uvicorn.Server(config).run()
    finally:
        tracing.shutdown()
