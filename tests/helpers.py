"""Test helpers: run services in-process, publish, and collect what the bus carries."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import nats
from pymongo import monitoring

from contracts import streams
from xiuhua import security
from xiuhua.clock import Clock
from xiuhua.observability import BULK_WRITE, bulk_write_targets
from xiuhua.registry import SERVICES, spec
from xiuhua.service import Runtime, running
from xiuhua.settings import Settings


def _ledger_named(collection: str, doc: Any) -> str:
    """Ledger entries as `ledger:<consumer>` (one insert per applied batch; tells the consumers apart)."""
    if collection != "ledger" or not isinstance(doc, dict):
        return collection
    return "ledger:" + str(doc.get("_id", "")).split(":", 1)[0]


class _OnStart(monitoring.CommandListener):
    """A listener of commands as they start; their outcomes are not looked at."""

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Started(_OnStart):
    """What `pick` keeps of each command as it starts (None: nothing), in order."""

    def __init__(self, pick: Callable[[monitoring.CommandStartedEvent], Any]) -> None:
        self.pick = pick
        self.seen: list[Any] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if (kept := self.pick(event)) is not None:
            self.seen.append(kept)


class Commands(_OnStart):
    """Counts the commands sent to one database, per command and collection, while active."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.active = True
        self.by_collection: dict[tuple[str, str], int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self.active:
            return
        if event.command_name == BULK_WRITE:  # sent to `admin`: one command writing to several collections
            targets = sorted({_ledger_named(c, op.get("document")) for _, db, c, op in bulk_write_targets(event.command)
                              if db == self.database})
            if targets:
                self._count((BULK_WRITE, "+".join(targets)))
            return
        if event.database_name != self.database:
            return
        if event.command_name in ("find", "insert", "update", "delete"):
            collection = str(event.command.get(event.command_name))
            if event.command_name == "insert":
                collection = _ledger_named(collection, (event.command.get("documents") or [{}])[0])
            self._count((event.command_name, collection))

    def _count(self, key: tuple[str, str]) -> None:
        self.by_collection[key] = self.by_collection.get(key, 0) + 1

    def touching(self, collections: set[str]) -> int:
        """Commands that wrote to or read from any of these collections (a bulkWrite to several counts once)."""
        return sum(n for (_, c), n in self.by_collection.items() if collections & set(c.split("+")))


# The users' passwords of each test's nats-server, by its URL (the `nats_server` fixture fills it).
CREDENTIALS: dict[str, dict[str, str]] = {}


def login(url: str, user: str) -> dict[str, str]:
    """nats.connect's keyword arguments for `user` on this test's server (its password and inbox prefix)."""
    return security.login(user, CREDENTIALS[url][user])


async def connect(url: str, user: str) -> nats.NATS:
    """A connection as `user` (a test reading streams or consumers directly says `operator`)."""
    return await nats.connect(url, **login(url, user))  # type: ignore[arg-type]


class BusRecorder:
    """Subscribes (core NATS) to every domain subject and keeps messages by subject prefix; connects as the
    operator (it watches everything, as an audit would).

    Not to `>`: a subscriber to every subject has interest in every inbox, so nats-server keeps a stopped consumer's
    last long poll alive (it drops a pull request nobody listens for) and hands the recorder the next message, which
    then waits out the ack wait (docs/operating/faults.md)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[tuple[str, dict[str, Any] | bytes]] = []
        self.headers: list[tuple[str, dict[str, str]]] = []
        self._nc: nats.NATS | None = None

    async def __aenter__(self) -> BusRecorder:
        self._nc = await connect(self.url, security.OPERATOR)

        async def cb(msg: Any) -> None:
            if msg.reply.startswith("$JS.ACK"):
                return  # a JetStream delivery to a consumer, not a publish
            try:
                body: dict[str, Any] | bytes = json.loads(msg.data)
            except ValueError:
                body = msg.data
            self.messages.append((msg.subject, body))
            self.headers.append((msg.subject, dict(msg.headers or {})))

        for root in sorted({pattern.split(".", 1)[0] for stream in streams.ALL for pattern in stream.subjects}):
            await self._nc.subscribe(f"{root}.>", cb=cb)
        await self._nc.flush()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._nc:
            await self._nc.close()

    def on(self, prefix: str) -> list[dict[str, Any]]:
        """Bodies of messages whose subject starts with prefix."""
        return [b for s, b in self.messages if s.startswith(prefix) and isinstance(b, dict)]

    def headers_of(self, prefix: str) -> list[dict[str, str]]:
        """Headers of messages whose subject starts with prefix."""
        return [h for s, h in self.headers if s.startswith(prefix)]

    def counts(self) -> dict[str, int]:
        """Messages per subject (without the last token for case events)."""
        out: dict[str, int] = defaultdict(int)
        for s, _ in self.messages:
            out[s.rsplit(".", 1)[0] if s.startswith("case.") else s] += 1
        return dict(out)


def patrol_report(report_id: str = "R-1") -> dict[str, Any]:
    """A grid inspector's report (the app's JSON) of an overflowing litter bin in the demo city's CD street."""
    return {
        "report_id": report_id,
        "reported_at": datetime.now(UTC).isoformat(),
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": "0201",
        "location": {"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
    }


async def publish(
    url: str, subject: str, body: dict[str, Any] | bytes, msg_id: str | None = None,
    headers: dict[str, str] | None = None, *, user: str | None = None,
) -> None:
    """Publish to JetStream and wait for the stream's acknowledgement, as the user who publishes `subject` in
    production (`security.publisher_of`) unless the test names another."""
    nc = await connect(url, user or security.publisher_of(subject))
    try:
        data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        sent = {**(headers or {}), **({"Nats-Msg-Id": msg_id} if msg_id else {})}
        await nc.jetstream().publish(subject, data, headers=sent or None)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def system(
    settings: Settings, *, clock: Clock | None = None, only: tuple[str, ...] = SERVICES
) -> AsyncIterator[dict[str, Runtime]]:
    """The services running in this event loop against the test's servers."""
    async with contextlib.AsyncExitStack() as stack:
        rts = {}
        for name in only:
            rts[name] = await stack.enter_async_context(running(spec(name), settings, clock=clock))
        await asyncio.sleep(0.2)
        yield rts


def as_operator(settings: Settings) -> Settings:
    """The test's settings as the operator: for a test-only service, which has no user of its own."""
    return security.operator_settings(settings)


async def publish_event(url: str, event: Any) -> None:
    """Publish a contract event as the service that publishes it in production (its event id is the message id)."""
    await publish(url, event.subject_for(), event.to_json(), msg_id=event.event_id)
