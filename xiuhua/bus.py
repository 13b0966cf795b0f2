"""The broker: connection with the configured security, stream provisioning, publishing with message ids."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nats
from faststream.nats import NatsBroker
from faststream.nats.security import NatsSecurity, NatsUserPassword
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamSource
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry

from contracts import registry, streams
from contracts.envelope import Event
from xiuhua import third_party
from xiuhua.security import INBOX
from xiuhua.security import inbox_prefix as own_inbox
from xiuhua.settings import Settings

log = logging.getLogger("xiuhua.bus")

# Every client of the bus, FastStream's loop or a plain fetch, then sees one timeout error.
third_party.patch_fetch_timeout()

JSON = {"content-type": "application/json"}


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not (settings.nats_tls_ca or settings.nats_tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=str(settings.nats_tls_ca) if settings.nats_tls_ca else None)
    if settings.nats_tls_cert and settings.nats_tls_key:
        ctx.load_cert_chain(str(settings.nats_tls_cert), str(settings.nats_tls_key))
    return ctx


def inbox_prefix(settings: Settings) -> str:
    """The inbox prefix a connection with these settings uses: the configured one, else its user's own (the only
    one the security model lets it subscribe under), else NATS' default."""
    if settings.nats_inbox_prefix:
        return settings.nats_inbox_prefix
    return own_inbox(settings.nats_user) if settings.nats_user else INBOX


def connect_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for nats-py's `connect` (credentials, inbox prefix and TLS), shared with plain clients."""
    opts: dict[str, Any] = {"inbox_prefix": inbox_prefix(settings)}
    if settings.nats_user:
        opts["user"] = settings.nats_user
        opts["password"] = settings.nats_password or ""
    if settings.nats_creds_file:
        opts["user_credentials"] = str(settings.nats_creds_file)
    if (ctx := _ssl_context(settings)) is not None:
        opts["tls"] = ctx
    return opts


class BusUnreachable(ConnectionError):
    """The NATS server could not be reached (a sentence for the operator, not a traceback)."""


async def connect_once(servers: str | Sequence[str], **opts: object) -> nats.NATS:
    """A client for a short task (an operator command, provisioning): fails within seconds with a sentence when
    the server is not there, instead of nats-py retrying for minutes and logging every attempt."""
    errors: list[Exception] = []

    async def keep(exc: Exception) -> None:  # reported once below instead of logged per attempt
        errors.append(exc)

    try:
        return await nats.connect(
            servers if isinstance(servers, str) else list(servers),
            allow_reconnect=False,
            max_reconnect_attempts=2,  # nats-py retries a refused first connect this often per server
            reconnect_time_wait=0.5,
            connect_timeout=3,
            error_cb=keep,
            **opts,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        where = servers if isinstance(servers, str) else ", ".join(servers)
        cause = errors[-1] if errors else exc
        raise BusUnreachable(f"cannot reach NATS at {where}: {str(cause) or type(cause).__name__}") from None


class PublishDenied(RuntimeError):
    """The server refused this connection's user publishing to a subject: a permission, not a passing fault, so no
    retry can succeed (the message is dead-lettered with this as its reason)."""

    def __init__(self, subject: str, refusal: str) -> None:
        super().__init__(f"publish to {subject} refused by the server: {refusal}")
        self.subject = subject
        self.refusal = refusal


# nats-py hands the server's `-ERR` to the error callback, lower-cased; the connection stays up.
_REFUSED = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


class Refusals:
    """Publish refusals the server reports on one connection, handed to the publishes waiting on that subject.

    A JetStream publish the server refuses gets no acknowledgement: without this it would wait out its timeout and
    be retried as a passing fault, for ever. The server names the subject in its error, not the message, so every
    publish to that subject in flight learns of it (the permission is the same for all of them)."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[str]]] = {}

    async def on_error(self, exc: Exception) -> None:
        """The connection's error callback: wakes the publishes to a refused subject."""
        if (m := _REFUSED.search(str(exc))) is None:
            return
        for fut in self._waiting.pop(m.group(1).lower(), set()):
            if not fut.done():
                fut.set_result(str(exc).removeprefix("nats: "))

    async def publish(self, subject: str, send: Awaitable[object]) -> object:
        """Await `send` (a publish to `subject`); raises PublishDenied as soon as the server refuses the subject."""
        refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(subject.lower(), set())
        waiting.add(refused)
        task: asyncio.Future[object] = asyncio.ensure_future(send)
        either: set[asyncio.Future[Any]] = {task, refused}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.discard(refused)
        if task.done() or not refused.done():
            return await task
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise PublishDenied(subject, refused.result())


def make_broker(
    settings: Settings,
    *,
    name: str,
    registry: CollectorRegistry | None = None,
    refusals: Refusals | None = None,
) -> NatsBroker:
    """A FastStream NATS broker for one service, with Prometheus middleware when a registry is given and publish
    refusals reported to `refusals`."""
    from faststream.nats.prometheus import NatsPrometheusMiddleware

    security: NatsSecurity | None = None
    ctx = _ssl_context(settings)
    if settings.nats_user:
        security = NatsUserPassword(settings.nats_user, settings.nats_password or "", ssl_context=ctx)
    elif ctx is not None:
        security = NatsSecurity(ssl_context=ctx)
    middlewares = []
    if registry is not None:
        middlewares.append(NatsPrometheusMiddleware(registry=registry, app_name=name, metrics_prefix="faststream"))
    return NatsBroker(
        servers=settings.nats_url or "nats://127.0.0.1:4222",
        name=f"xiuhua-{name}",
        inbox_prefix=inbox_prefix(settings),
        security=security,
        user_credentials=str(settings.nats_creds_file) if settings.nats_creds_file else None,
        middlewares=middlewares,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=refusals.on_error if refusals is not None else None,
        graceful_timeout=10.0,
        logger=logging.getLogger(f"xiuhua.{name}.broker"),
        log_level=logging.DEBUG,
    )


def stream_config(spec: streams.StreamSpec, replicas: int = 1, max_age_s: float | None = None) -> StreamConfig:
    """The JetStream configuration of a stream spec; it captures every subject version that has a model.
    `max_age_s`: the city's age for it (`retention.yaml`), else the spec's.

    Ages only, never a byte or message cap: JetStream discards by its limits whether or not the consumers have
    read a message, and a cap reached in a burst would drop reports nobody applied yet."""
    return StreamConfig(
        name=spec.name,
        description=spec.description,
        subjects=registry.stream_subjects(spec) or None,
        sources=[StreamSource(name=name, filter_subject=subject) for name, subject in spec.sources] or None,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=spec.max_age_s if max_age_s is None else max_age_s,
        duplicate_window=spec.duplicate_window_s,
        num_replicas=replicas,
    )


async def provision_streams(
    servers: str | Sequence[str],
    *,
    replicas: int = 1,
    connect_opts: dict[str, object] | None = None,
    max_ages: Mapping[str, float] | None = None,
) -> list[str]:
    """Create or update every stream; returns what was done, one line each. Idempotent. `max_ages`: stream name →
    seconds, the city's retention (`RetentionFile.stream_ages`); a stream it leaves out keeps its spec's."""
    nc = await connect_once(servers, **(connect_opts or {}))
    done = []
    try:
        js = nc.jetstream()
        for spec in streams.ALL:
            cfg = stream_config(spec, replicas, (max_ages or {}).get(spec.name))
            try:
                await js.stream_info(spec.name)
                await js.update_stream(cfg)
                done.append(f"updated {spec.name}")
            except NotFoundError:
                await js.add_stream(cfg)
                done.append(f"created {spec.name}")
    finally:
        await nc.close()
    return done


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the bus: subject, body, the id JetStream de-duplicates on, and headers of its own (the
    trace context of the message that caused it, `xiuhua.tracing`)."""

    subject: str
    body: bytes
    msg_id: str
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, event: Event, subject: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> Outgoing:
        """Wrap an event; its event_id is the message id."""
        return cls(subject or event.subject_for(), event.to_json(), event.event_id, headers)


class Publisher:
    """Publishes to JetStream with `Nats-Msg-Id`, waiting for the stream's acknowledgement."""

    def __init__(self, broker: NatsBroker, refusals: Refusals | None = None) -> None:
        self._broker = broker
        self._refusals = refusals or Refusals()  # without the broker's error callback it never hears of one

    async def publish(self, event: Event, subject: str | None = None) -> None:
        """Publish one event and wait until the stream has stored it."""
        await self.send([Outgoing.of(event, subject)])

    async def send(self, items: Iterable[Outgoing]) -> None:
        """Publish several messages concurrently; raises if any was not stored."""
        batch = list(items)
        if not batch:
            return
        results = await asyncio.gather(
            *(
                self._refusals.publish(
                    o.subject,
                    self._broker.publish(
                        o.body,
                        o.subject,
                        headers={**JSON, **dict(o.headers), "Nats-Msg-Id": o.msg_id},
                        stream=streams.stream_for(o.subject).name,
                        timeout=10.0,
                    ),
                )
                for o in batch
            ),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        # A refusal first: it is what decides the fate of the batch (dead letter, not retry).
        errors.sort(key=lambda e: not isinstance(e, PublishDenied))
        if errors:
            raise errors[0]

    async def erase(self, stream: str, seqs: Sequence[int]) -> None:
        """Erase messages from a stream (overwritten on disk, not only unlinked); one already gone is fine."""
        js = self._broker.connection.jetstream()

        async def one(seq: int) -> None:
            with contextlib.suppress(NotFoundError):
                await js.delete_msg(stream, seq)

        await asyncio.gather(*(one(seq) for seq in seqs))


class PublishRefused(RuntimeError):
    """The stream answered a pipelined publish with an error (the message was not stored)."""


async def publish_pipelined(
    nc: nats.NATS,
    items: Iterable[tuple[str, bytes, dict[str, str]]],
    *,
    window: int = 1024,
    answer_within: float = 10.0,
) -> int:
    """Publish (subject, body, headers) to JetStream with up to `window` messages in flight, their acknowledgements
    counted on one inbox subscription; returns how many the stream acknowledged (a copy it dropped by message id
    included).

    What a telemetry gateway does: `js.publish` costs a future, a request and a parsed acknowledgement per message,
    which in Python is as much as the consumer's work on it. Raises PublishRefused for the first error answer (after
    all are answered), TimeoutError when answers stop coming for `answer_within` seconds.
    """
    inbox = nc.new_inbox()
    in_flight = stored = 0
    refused: list[bytes] = []
    answered = asyncio.Event()

    async def on_answer(msg: object) -> None:
        nonlocal in_flight, stored
        in_flight -= 1
        data: bytes = msg.data  # type: ignore[attr-defined]
        if b'"error"' in data:
            refused.append(data)
        else:
            stored += 1
        answered.set()

    async def wait_below(limit: int) -> None:
        while in_flight > limit:  # no await between the check and clear(): no answer can slip in between
            answered.clear()
            await asyncio.wait_for(answered.wait(), answer_within)

    sub = await nc.subscribe(f"{inbox}.*", cb=on_answer)
    try:
        for n, (subject, body, headers) in enumerate(items):
            await wait_below(window - 1)
            in_flight += 1
            await nc.publish(subject, body, reply=f"{inbox}.{n}", headers=headers)
        await wait_below(0)
    finally:
        await sub.unsubscribe()
    if refused:
        raise PublishRefused(refused[0].decode(errors="replace"))
    return stored
