"""Metrics and health: one registry per service, `/metrics` and `/health` over HTTP."""

from __future__ import annotations

import bisect
import logging
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from pymongo import monitoring
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class Metrics:
    """A service's metrics: FastStream's NATS metrics, the runtime's consumer metrics, business counters."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.applied = Counter(
            "xiuhua_messages_applied", "Messages applied (effect written)", ["service", "consumer"], registry=r
        )
        self.duplicates = Counter(
            "xiuhua_messages_duplicate",
            "Redelivered or re-published messages already applied",
            ["service", "consumer"],
            registry=r,
        )
        self.relooked = Counter(
            "xiuhua_batches_relooked",
            "Batches of first deliveries refused by the ledger's unique key (a message "
            "applied before came as new) and applied again looking at the ledger first",
            ["service", "consumer"],
            registry=r,
        )
        self.retries = Counter(
            "xiuhua_messages_retried",
            "Messages handed back for a later retry",
            ["service", "consumer", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "xiuhua_dead_letters", "Messages moved to the dead-letter subject", ["service", "consumer"], registry=r
        )
        self.publish_refused = Counter(
            "xiuhua_publish_refused",
            "Messages whose events the server refused this service's user to publish "
            "(a permission: dead-lettered, never retried)",
            ["service", "consumer"],
            registry=r,
        )
        self.ignored = Counter(
            "xiuhua_messages_ignored",
            "Messages a consumer never acts on, acknowledged without a transaction",
            ["service", "consumer"],
            registry=r,
        )
        self.erased = Counter(
            "xiuhua_messages_erased",
            "Applied messages erased from their stream (personal data at rest)",
            ["service", "consumer"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "xiuhua_batch_seconds",
            "Time to apply one pulled batch",
            ["service", "consumer"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        # Queueing and lag in time, where nats_consumer_num_pending gives them in messages: from the moment the
        # stream stored a message to the moment its consumer began to apply it.
        self.wait_seconds = Histogram(
            "xiuhua_message_wait_seconds",
            "How long a message waited in its stream before its consumer began to apply it",
            ["service", "consumer"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
        )
        self.outbox_republished = Counter(
            "xiuhua_outbox_republished",
            "Outbox entries published by the sweeper after a crash",
            ["service"],
            registry=r,
        )
        self.up = Gauge("xiuhua_service_up", "1 while the service runs", ["service"], registry=r)

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        """A business counter in this service's registry."""
        return Counter(name, doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        """A business gauge in this service's registry."""
        return Gauge(name, doc, list(labels), registry=self.registry)

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = ()
    ) -> Histogram:
        """A business histogram in this service's registry."""
        kwargs: dict[str, Any] = {"buckets": buckets} if buckets else {}
        return Histogram(name, doc, list(labels), registry=self.registry, **kwargs)


_WRITES = frozenset({"insert", "update", "delete"})
BULK_WRITE = "bulkWrite"  # MongoDB 8.0's client-level write to several collections (`Store.write_together`)


def observe_all(histogram: Histogram, amounts: Iterable[float]) -> None:
    """`histogram.observe` of each amount, one increment per bucket touched and one of the sum.

    A consumer observes every message of a batch (how long it waited): observed one by one, a thousand took a
    thousand sums and buckets increased under their locks, some 3 % of intake's CPU on sensor readings. A bucket
    counts the amounts at or below its upper bound and above the one before, as `observe` does; the sum is added
    at once. A histogram whose internals are not those of prometheus_client 0.2x is observed one by one."""
    bounds: list[float] | None = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    values = list(amounts)
    if not values:
        return
    for i, n in Tally(bisect.bisect_left(bounds, v) for v in values).items():
        buckets[i].inc(n)
    total.inc(sum(values))


def bulk_write_targets(command: Mapping[str, Any]) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """The writes of a client-level bulkWrite command: (insert | update | delete, database, collection, op) each."""
    spaces = [str(entry.get("ns", "")) for entry in command.get("nsInfo", [])]
    out = []
    for op in command.get("ops", []):
        kind = next((k for k in ("insert", "update", "delete") if k in op), "")
        if kind:
            database, _, collection = spaces[int(op[kind])].partition(".")
            out.append((kind, database, collection, op))
    return out


class StoreCommands(monitoring.CommandListener):
    """Counts the store commands a service sends and the time they take, by command and collection.

    What a message costs the store is the figure that decides throughput (docs/benchmarks.md); ops read it next to the
    applied-message counters, and `xiuhua bench` divides it by the cases of its maximum-rate phase."""

    def __init__(self, metrics: Metrics) -> None:
        self._pending: dict[int, tuple[str, str]] = {}
        self._bulk: dict[int, list[tuple[str, str]]] = {}  # a bulkWrite's (write, collection) pairs till it ends
        self.commands = metrics.counter(
            "xiuhua_store_commands", "Store commands sent", ("service", "command", "collection")
        )
        self.seconds = metrics.counter(
            "xiuhua_store_command_seconds", "Time spent waiting for store commands", ("service", "command")
        )
        # nx-27017 writes the documents of a bulk command one by one: under load its time follows documents
        # written, not commands (a batch's one insert of 500 ledger entries costs what 500 inserts do).
        self.documents = metrics.counter(
            "xiuhua_store_documents",
            "Documents in store write commands (inserted, updated, replaced, deleted)",
            ("service", "command", "collection"),
        )
        self._service = metrics.service

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        self._pending[event.request_id] = (event.command_name, target if isinstance(target, str) else "")
        if event.command_name == BULK_WRITE:
            self._bulk[event.request_id] = [(k, c) for k, _, c, _ in bulk_write_targets(event.command)]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        command, collection = self._pending.get(event.request_id, ("", ""))
        # A write's reply counts the documents it matched, inserted or deleted (an update_many by 500 ids is 500).
        if command in _WRITES and isinstance(n := event.reply.get("n"), int) and n > 0:
            self.documents.labels(self._service, command, collection).inc(n)
        # A bulkWrite's reply counts its documents only in all; each of its writes names one document by `_id`
        # (counted per collection at once: a batch's bulkWrite holds a write per message).
        for (kind, target), n in Tally(self._bulk.pop(event.request_id, ())).items():
            self.documents.labels(self._service, kind, target).inc(n)
        self._done(event.request_id, event.duration_micros)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._bulk.pop(event.request_id, None)
        self._done(event.request_id, event.duration_micros)

    def _done(self, request_id: int, micros: int) -> None:
        command, collection = self._pending.pop(request_id, ("unknown", ""))
        self.commands.labels(self._service, command, collection).inc()
        self.seconds.labels(self._service, command).inc(micros / 1e6)


HealthCheck = Callable[[], Awaitable[bool]]


def routes(
    metrics: Metrics,
    checks: dict[str, HealthCheck],
    *,
    info: Callable[[], dict[str, Any]] | None = None,
) -> list[Route]:
    """`GET /metrics` (Prometheus text) and `GET /health` (JSON, 503 when a check fails; `info`: what the service
    adds about itself without changing its status, e.g. intake's classifier in use, dispatch's `warnings`)."""

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def health_endpoint(_: Request) -> Response:
        results = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await check())
            except Exception:  # a failing check is a result, not an error page
                logging.getLogger("xiuhua.health").debug("health check %s failed", name, exc_info=True)
                results[name] = False
        ok = all(results.values())
        body: dict[str, Any] = {"service": metrics.service, "status": "ok" if ok else "degraded", "checks": results}
        if info is not None:
            body.update(info())
        return JSONResponse(body, status_code=200 if ok else 503)

    return [Route("/metrics", metrics_endpoint), Route("/health", health_endpoint)]
