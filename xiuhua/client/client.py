"""`XiuhuaClient`: publish reports, send unit commands, follow a unit's cases, wait for an event."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import nats
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
from pydantic import BaseModel, ValidationError

from contracts import commands, queries, reports, streams, subjects
from contracts.commands import CaseCommand
from contracts.envelope import Event
from contracts.queries import (
    MerchantFiguresQuery,
    MerchantFiguresReply,
    QueryErrorReply,
    QueryReply,
    QueryRequest,
    RankingQuery,
    RankingReply,
    UnitFiguresQuery,
    UnitFiguresReply,
)
from contracts.registry import UnknownSubject, decode
from contracts.reports import Inbound
from xiuhua.client.errors import (
    ConnectFailed,
    InvalidMessage,
    NoAnswer,
    NotConnected,
    PublishFailed,
    QueryFailed,
    SubscribeFailed,
    WaitTimeout,
    XiuhuaError,
)
from xiuhua.security import OPERATOR, inbox_prefix

log = logging.getLogger("xiuhua.client")

JSON_HEADER = {"content-type": "application/json"}
FETCH_S = 1.0  # how long a unit subscription's pull waits on the server for messages
Handler = Callable[[Event], Awaitable[None]]
Message = Event | Inbound | CaseCommand
R = TypeVar("R", bound=QueryReply)


@dataclass(frozen=True)
class Published:
    """What JetStream said about a publish: where it was stored and whether it was a duplicate (dropped)."""

    subject: str
    msg_id: str
    stream: str
    seq: int
    duplicate: bool


def decode_message(subject: str, data: bytes) -> Message:
    """The typed model of any bus message: an inbound report, a command or an event."""
    parts = subject.split(".")
    if subject.startswith("report.v1.in.") and len(parts) == 4:
        model: type[BaseModel] | None = reports.INBOUND_BY_SOURCE.get(parts[3])
    elif subject.startswith("cmd.v1.case.") and len(parts) == 4:
        model = commands.COMMANDS.get(parts[3])
    else:
        return decode(subject, data)
    if model is None:
        raise UnknownSubject(subject)
    return model.model_validate_json(data)  # type: ignore[return-value]


def concerns_unit(
    event: Message,
    unit_id: str,
    known_cases: set[str] | None = None,
    *,
    include_cooperating: bool = True,
    own_commands: set[str] | None = None,
) -> bool:
    """Whether a case event is about a unit's case; updates `known_cases` (the cases this unit holds).

    A dispatch names the lead and cooperating units; later lifecycle events carry `unit_id` (the lead at
    the time); events with neither (merged, command_rejected) count when the case is known or the command
    was this unit's.
    """
    known = known_cases if known_cases is not None else set()
    case_id = getattr(event, "case_id", None)
    lead = getattr(event, "lead_unit", None)
    if lead is not None:
        cooperating = {u.unit_id for u in getattr(event, "cooperating_units", [])}
        mine = lead.unit_id == unit_id or (include_cooperating and unit_id in cooperating)
        if case_id:
            (known.add if mine else known.discard)(case_id)
        return mine
    owner = getattr(event, "unit_id", None)
    if owner is not None:
        return bool(owner == unit_id)
    if own_commands and getattr(event, "command_id", None) in own_commands:
        return True
    return bool(case_id and case_id in known)


def _field(obj: Any, path: str) -> Any:
    """`lead_unit__unit_id` → obj.lead_unit.unit_id; raises AttributeError naming the missing part."""
    for part in path.split("__"):
        if isinstance(obj, Mapping):
            obj = obj[part]
        else:
            if part not in type(obj).model_fields:
                raise AttributeError(part)
            obj = getattr(obj, part)
    return obj


def _matches(event: Any, filters: Mapping[str, Any]) -> bool:
    for name, expected in filters.items():
        try:
            value = _field(event, name)
        except (AttributeError, KeyError):
            raise XiuhuaError(
                f"{type(event).__name__} has no field {name!r} to filter on; "
                f"its fields: {', '.join(type(event).model_fields)}"
            ) from None
        if value != expected and str(getattr(value, "value", value)) != str(getattr(expected, "value", expected)):
            return False
    return True


def wait_subject(pattern: str) -> str:
    """A subject filter from a pattern; a case event named without its street (`case.v1.dispatched`) gets `.*`."""
    parts = pattern.split(".")
    if parts[0] == "case" and len(parts) == 3 and not parts[-1].endswith(">"):
        return pattern + ".*"
    if parts[0] == "dlq" and len(parts) == 2:
        return pattern + ".*"
    return pattern


@dataclass
class UnitCaseSubscription:
    """A running durable consumer of one unit's case events; `stop()` ends it (the durable stays)."""

    unit_id: str
    durable: str
    stream: str
    task: asyncio.Task[None] | None = None
    pull: Any = None
    known_cases: set[str] = field(default_factory=set)
    handled: int = 0
    failed: int = 0
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self) -> None:
        """Stop fetching; unacknowledged messages are redelivered to the durable's next reader.

        The fetch in flight is let run out (its pull request lives on the server until it expires: a message
        handed to it after the reader had gone would wait out the ack wait before anyone saw it); what it brings
        is handed back at once."""
        self.stopping.set()
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), FETCH_S + 1.0)
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        if self.pull is not None:
            with contextlib.suppress(Exception):
                await self.pull.unsubscribe()
            self.pull = None


class XiuhuaClient:
    """A connection to the Xiuhua bus for an integrating system; use as `async with XiuhuaClient(url) as xh`."""

    def __init__(self, nats_url: str | Iterable[str], *, publish_timeout: float = 10.0, **connect_opts: Any) -> None:
        """`connect_opts` go to `nats.connect` (user/password, user_credentials, tls, name, inbox_prefix ...); with a
        `user`, replies arrive under its own inbox prefix `_INBOX_<user>` unless `inbox_prefix` says otherwise."""
        self.nats_url = nats_url
        own = {"inbox_prefix": inbox_prefix(connect_opts["user"])} if connect_opts.get("user") else {}
        self.connect_opts = {"name": "xiuhua-client", "error_cb": _log_nats_error, **own, **connect_opts}
        self.publish_timeout = publish_timeout
        self._nc: Any = None
        self._js: Any = None
        self.connected_at: datetime | None = None
        # Connected as a user of Xiuhua's security model, the client reads through the consumers the model names
        # for that user (`<user>` to follow events, `<user>_wait` for wait_for); without a user, as it likes.
        self.user: str | None = connect_opts.get("user")
        self._wait_turn = asyncio.Lock()  # one named wait consumer: waits take turns
        self._subs: list[UnitCaseSubscription] = []
        self._sent_commands: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Any) -> XiuhuaClient:
        """A client for the servers and credentials in Xiuhua's own settings (XIUHUA_NATS_URL ...)."""
        from xiuhua.bus import connect_options

        if not settings.nats_url:
            raise XiuhuaError("XIUHUA_NATS_URL is not set: no bus to connect to")
        return cls(settings.nats_url, **connect_options(settings))

    async def __aenter__(self) -> XiuhuaClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect to NATS (done by `async with`)."""
        opts = dict(self.connect_opts)
        keep_trying = "max_reconnect_attempts" not in opts
        if keep_trying:
            # nats-py applies the reconnect limit to the first connection too: fail fast on a wrong URL ...
            opts["max_reconnect_attempts"] = 2
        try:
            self._nc = await nats.connect(self.nats_url, **opts)
        except Exception as exc:
            raise ConnectFailed(f"cannot connect to NATS at {self.nats_url}: {type(exc).__name__}: {exc}") from exc
        if keep_trying:
            # ... but once connected, ride out a server restart for as long as it takes.
            self._nc.options["max_reconnect_attempts"] = -1
        self._js = self._nc.jetstream()
        self.connected_at = datetime.now(UTC)

    async def close(self) -> None:
        """Stop subscriptions and close the connection."""
        for sub in self._subs:
            await sub.stop()
        self._subs.clear()
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        self._nc = self._js = None

    @property
    def js(self) -> Any:
        """The JetStream context (for what the client does not wrap)."""
        if self._js is None:
            raise NotConnected("use the client inside `async with XiuhuaClient(url) as client:`")
        return self._js

    # ---- publishing -------------------------------------------------------------------------------------

    async def publish_report(
        self, report: Inbound | Mapping[str, Any], source: str | None = None, *, msg_id: str | None = None
    ) -> Published:
        """Publish an inbound report on `report.v1.in.<source>`; `Nats-Msg-Id` = `<source>:<its reference>`.

        `report` is a model from contracts.reports (its source is known) or a dict plus `source=`; a dict is
        validated against the source's contract first, so a bad report fails here with the field named.
        """
        if isinstance(report, Inbound):
            model_source = str(type(report).source.value)
            if source is not None and source != model_source:
                problem = f"source: {source!r} given, the model is {model_source!r}"
                raise InvalidMessage(type(report).__name__, [problem])
            source, model = model_source, report
        else:
            if source is None:
                raise InvalidMessage("report", [f"source: a dict report needs source=, one of {_sources()}"])
            cls = reports.INBOUND_BY_SOURCE.get(source)
            if cls is None:
                raise InvalidMessage("report", [f"source: unknown source {source!r}, one of {_sources()}"])
            try:
                model = cls.model_validate(dict(report))
            except ValidationError as exc:
                raise InvalidMessage.from_validation(f"{cls.__name__} report", exc) from None
        body = json.dumps(model.model_dump(mode="json", exclude_none=True), ensure_ascii=False).encode()
        return await self._publish(subjects.report_subject(source), body, msg_id or f"{source}:{model.source_ref()}")

    async def send_command(self, command: CaseCommand | Mapping[str, Any], action: str | None = None) -> Published:
        """Send a unit or command-centre command on `cmd.v1.case.<action>`; `Nats-Msg-Id` = `command_id`.

        The outcome comes back as a case event (e.g. `case.v1.acknowledged.*`) or `case.v1.command_rejected.*`
        with the reason.
        """
        if not isinstance(command, CaseCommand):
            cls = commands.COMMANDS.get(action or "")
            if cls is None:
                raise InvalidMessage("command", [f"action: {action!r} is not one of {', '.join(commands.COMMANDS)}"])
            try:
                command = cls.model_validate(dict(command))
            except ValidationError as exc:
                raise InvalidMessage.from_validation(f"{cls.__name__} command", exc) from None
        elif action is not None and action != command.action:
            raise InvalidMessage(type(command).__name__, [f"action: {action!r} given, the model is {command.action!r}"])
        self._sent_commands.add(command.command_id)
        return await self._publish(command.subject(), command.model_dump_json().encode(), command.command_id)

    async def publish_event(self, event: Event) -> Published:
        """Publish an event model as Xiuhua's services do (tests and simulators); `Nats-Msg-Id` = `event_id`."""
        return await self._publish(event.subject_for(), event.to_json(), event.event_id)

    async def _publish(self, subject: str, body: bytes, msg_id: str) -> Published:
        try:
            stream = streams.stream_for(subject).name
        except KeyError as exc:
            raise PublishFailed(str(exc)) from None
        try:
            ack = await self.js.publish(
                subject,
                body,
                timeout=self.publish_timeout,
                stream=stream,
                headers={**JSON_HEADER, "Nats-Msg-Id": msg_id},
            )
        except (NoRespondersError, NoStreamResponseError):
            raise PublishFailed(
                f"no JetStream stream answered for {subject} at {self.nats_url}: is JetStream on and stream "
                f"{stream} provisioned (`xiuhua streams`)?"
            ) from None
        except NatsTimeout:
            raise PublishFailed(
                f"JetStream did not confirm {subject} (msg id {msg_id}) within "
                f"{self.publish_timeout}s; publishing again with the same id is safe"
            ) from None
        except APIError as exc:
            raise PublishFailed(f"JetStream refused {subject}: {exc.description or exc}") from exc
        return Published(subject, msg_id, ack.stream, ack.seq, bool(ack.duplicate))

    # ---- scoring's queries (core NATS request/reply) --------------------------------------------------------

    async def unit_figures(
        self,
        unit_id: str,
        period: str | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the caller's budget, passed on to NATS
    ) -> UnitFiguresReply:
        """A unit's assessment figures for `period` (2026-W48, 2026-11, 2026-Q4, 2026), or for the current
        week, month, quarter and year; a period without cases maps to None."""
        return await self._ask(UnitFiguresQuery, {"unit_id": unit_id, "period": period}, UnitFiguresReply, timeout)

    async def merchant_figures(
        self,
        merchant_id: str,
        month: str | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the caller's budget, passed on to NATS
    ) -> MerchantFiguresReply:
        """A merchant's current class (A/B/C) with its basis, and one month's checks (default: this month)."""
        body = {"merchant_id": merchant_id, "period": month}
        return await self._ask(MerchantFiguresQuery, body, MerchantFiguresReply, timeout)

    async def ranking(
        self,
        kind: Literal["unit", "merchant"] = "unit",
        period: str | None = None,
        *,
        period_kind: Literal["week", "month", "quarter", "year"] = "month",
        timeout: float = 5.0,  # noqa: ASYNC109 - the caller's budget, passed on to NATS
    ) -> RankingReply:
        """A period's ranking as it stands: units per role, or merchants per street (months only). Without
        `period`, the current one of `period_kind`."""
        body = {"kind": kind, "period": period, "period_kind": period_kind}
        return await self._ask(RankingQuery, body, RankingReply, timeout)

    async def query(self, request: QueryRequest, timeout: float = 5.0) -> QueryReply:  # noqa: ASYNC109
        """Send any query model of `contracts.queries` and get its reply model (what the helpers above do)."""
        found = next((q for q in queries.QUERIES.values() if type(request) is q.request), None)
        if found is None:
            raise InvalidMessage(type(request).__name__, ["not a query of contracts.queries.QUERIES"])
        return await self._request(found.subject, request, found.reply, timeout)

    async def _ask(self, model: type[QueryRequest], body: dict[str, Any], reply: type[R], wait: float) -> R:
        try:
            request = model.model_validate({k: v for k, v in body.items() if v is not None})
        except ValidationError as exc:
            raise InvalidMessage.from_validation(f"{model.__name__} query", exc) from None
        subject = next(q.subject for q in queries.QUERIES.values() if q.request is model)
        return await self._request(subject, request, reply, wait)

    async def _request(self, subject: str, request: QueryRequest, reply: type[R], wait: float) -> R:
        if self._nc is None:
            raise NotConnected("use the client inside `async with XiuhuaClient(url) as client:`")
        body = request.model_dump_json(exclude_none=True).encode()
        try:
            msg = await self._nc.request(subject, body, timeout=wait)
        except NoRespondersError:
            raise NoAnswer(f"nothing answers {subject} at {self.nats_url}: is the scoring service running?") from None
        except NatsTimeout:
            raise NoAnswer(f"no answer on {subject} within {wait}s") from None
        try:
            data = json.loads(msg.data)
        except ValueError:
            raise InvalidMessage(f"reply on {subject}", ["(body): not JSON"]) from None
        if isinstance(data, dict) and "error" in data:
            try:
                error = QueryErrorReply.model_validate(data).error
            except ValidationError as exc:
                raise InvalidMessage.from_validation(f"error reply on {subject}", exc) from None
            raise QueryFailed(subject, error.code, error.message, error.correlation_id)
        try:
            return reply.model_validate(data)
        except ValidationError as exc:
            raise InvalidMessage.from_validation(f"{reply.__name__} reply on {subject}", exc) from None

    # ---- waiting ----------------------------------------------------------------------------------------

    async def wait_for(
        self,
        subject_pattern: str,
        timeout: float = 10.0,  # noqa: ASYNC109 - the caller's budget, passed on to NATS
        *,
        since: datetime | None = None,
        predicate: Callable[[Any], bool] | None = None,
        **field_filters: Any,
    ) -> Any:
        """The first message on `subject_pattern` whose fields equal `field_filters`, as its typed model.

        Looks back in the stream to `since` (default: shortly before this client connected), so an event
        published before the call is found too. Nested fields use `__`: `lead_unit__unit_id="CD-SAN"`.
        """
        subject = wait_subject(subject_pattern)
        try:
            stream = streams.stream_for(subject).name
        except KeyError as exc:
            raise XiuhuaError(str(exc)) from None
        start = since or (self.connected_at or datetime.now(UTC)) - timedelta(seconds=5)
        seen: list[str] = []
        async with self._reader(subject, stream, start) as next_msg:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (left := deadline - loop.time()) > 0:
                try:
                    msg = await next_msg(left)
                except (NatsTimeout, TimeoutError):
                    break
                try:
                    message = decode_message(msg.subject, msg.data)
                except (UnknownSubject, ValidationError) as exc:
                    seen.append(f"{msg.subject} (undecodable: {type(exc).__name__})")
                    continue
                if _matches(message, field_filters) and (predicate is None or predicate(message)):
                    return message
                seen.append(f"{msg.subject} {_brief(message)}")
        wanted = ", ".join(f"{k}={v!r}" for k, v in field_filters.items()) or "any fields"
        raise WaitTimeout(
            f"no message on {subject} with {wanted} within {timeout}s; saw {len(seen)}"
            + (": " + "; ".join(seen[-10:]) if seen else f" (nothing on that subject since {start.isoformat()})")
        )

    @contextlib.asynccontextmanager
    async def _reader(self, subject: str, stream: str, start: datetime) -> AsyncIterator[Callable[[float], Any]]:
        """`next_msg(timeout)` over the stream's messages on `subject` from `start`: an ordered consumer, or, for a
        user of the security model, the consumer it names for the user's waits (created for the wait, deleted
        after)."""
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        )
        if self.user in (None, OPERATOR):  # the operator may read anything, through consumers of any name
            sub = await self.js.subscribe(subject, stream=stream, ordered_consumer=True, config=config)
            try:
                yield lambda left: sub.next_msg(timeout=left)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            return
        name = f"{self.user}_wait"
        config.name, config.filter_subject = name, subject
        config.ack_policy, config.inactive_threshold, config.mem_storage = AckPolicy.NONE, 60.0, True
        async with self._wait_turn:
            with contextlib.suppress(NotFoundError):
                await self.js.delete_consumer(stream, name)  # one a wait left behind (it also expires by itself)
            try:
                await self.js.add_consumer(stream, config)
                pull = await self.js.pull_subscribe_bind(consumer=name, stream=stream)
            except (APIError, NatsTimeout) as exc:
                why = getattr(exc, "description", None) or str(exc) or type(exc).__name__
                raise SubscribeFailed(
                    f"cannot read {subject} on {stream} as {self.user!r} (through consumer {name!r}): {why}"
                ) from exc
            queued: list[Any] = []

            async def next_msg(left: float) -> Any:
                if not queued:
                    queued.extend(await pull.fetch(64, timeout=max(0.05, left)))
                return queued.pop(0)

            try:
                yield next_msg
            finally:
                with contextlib.suppress(Exception):
                    await pull.unsubscribe()
                with contextlib.suppress(Exception):
                    await self.js.delete_consumer(stream, name)

    # ---- a unit's cases ---------------------------------------------------------------------------------

    async def subscribe_unit_cases(
        self,
        unit_id: str,
        handler: Handler,
        *,
        durable: str | None = None,
        streets: Iterable[str] | None = None,
        deliver_policy: str = "new",
        include_cooperating: bool = True,
        batch: int = 32,
        ack_wait: float = 30.0,
    ) -> UnitCaseSubscription:
        """Call `handler(event)` for every case event about `unit_id`'s cases, through a durable consumer.

        The durable (by default the connected user's name, the consumer Xiuhua's security model lets that user
        read; without a user, name one per unit system, e.g. `dept-CD-SAN`) remembers what was handled, so a
        restart resumes where it stopped and several instances share the work. Subjects carry the street, not the
        unit: `streets=["CD"]` narrows the server-side filter to the unit's jurisdiction; the unit filter
        (lead or cooperating unit, `unit_id`) is applied here. A handler that raises gets the event again
        after a delay; events of other units are acknowledged and skipped.
        """
        stream = streams.CASES.name
        durable = durable or self.user
        if not durable:
            raise XiuhuaError("name the durable consumer (durable=...), or connect as a user of Xiuhua's model")
        filters = [subjects.case_subject("*", s) for s in streets] if streets else [subjects.CASE_ALL]
        policy = {"new": DeliverPolicy.NEW, "all": DeliverPolicy.ALL, "last": DeliverPolicy.LAST}.get(deliver_policy)
        if policy is None:
            raise XiuhuaError(f"deliver_policy {deliver_policy!r}: one of new, all, last")
        config = ConsumerConfig(
            # Named as well as durable: the request then names the consumer and its filter in its subject, which
            # is what the permissions of a user restricted to its streets allow.
            name=durable,
            durable_name=durable,
            description=f"case events of unit {unit_id}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=policy,
            ack_wait=ack_wait,
            **({"filter_subjects": filters} if len(filters) > 1 else {"filter_subject": filters[0]}),
        )
        try:
            await self.js.add_consumer(stream, config)
            psub = await self.js.pull_subscribe_bind(durable=durable, stream=stream)
        except APIError as exc:
            raise SubscribeFailed(
                f"durable {durable!r} on {stream}: {exc.description or exc}. An existing durable with another "
                "filter or deliver policy must be deleted first (`nats consumer rm`) or given another name"
            ) from exc
        except NatsTimeout as exc:  # a request the server's permissions refuse gets no answer
            raise SubscribeFailed(
                f"durable {durable!r} on {stream} with {', '.join(filters)}: no answer; is this user allowed that "
                "consumer and those streets (Xiuhua's security model names both)?"
            ) from exc
        sub = UnitCaseSubscription(unit_id=unit_id, durable=durable, stream=stream, pull=psub)
        sub.task = asyncio.create_task(
            self._run_unit(sub, psub, handler, include_cooperating, batch), name=f"xiuhua-client:{durable}"
        )
        self._subs.append(sub)
        return sub

    async def _run_unit(
        self, sub: UnitCaseSubscription, psub: Any, handler: Handler, include_cooperating: bool, batch: int
    ) -> None:
        while not sub.stopping.is_set():
            try:
                msgs = await psub.fetch(batch, timeout=FETCH_S)
            except (NatsTimeout, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: fetch failed; retrying", sub.durable)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                if sub.stopping.is_set():  # stopped meanwhile: back to the durable for its next reader, now
                    with contextlib.suppress(Exception):
                        await msg.nak()
                    continue
                await self._deliver(sub, msg, handler, include_cooperating)

    async def _deliver(self, sub: UnitCaseSubscription, msg: Any, handler: Handler, include_cooperating: bool) -> None:
        try:
            event = decode(msg.subject, msg.data)
        except (UnknownSubject, ValidationError) as exc:
            # A message this client's contracts cannot read: redelivering it would not help (upgrade the client).
            log.warning("%s: cannot decode %s (%s); skipped", sub.durable, msg.subject, exc)
            await msg.term()
            return
        if not concerns_unit(
            event,
            sub.unit_id,
            sub.known_cases,
            include_cooperating=include_cooperating,
            own_commands=self._sent_commands,
        ):
            await msg.ack()
            return
        try:
            await handler(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            sub.failed += 1
            deliveries = getattr(msg.metadata, "num_delivered", 1) or 1
            log.exception("%s: handler failed on %s (delivery %d); it comes back", sub.durable, msg.subject, deliveries)
            await msg.nak(delay=min(30.0, 0.5 * 2 ** min(deliveries, 6)))
            return
        sub.handled += 1
        await msg.ack()


async def _log_nats_error(exc: Exception) -> None:
    log.warning("nats: %s: %s", type(exc).__name__, exc)


def _sources() -> str:
    return ", ".join(reports.INBOUND_BY_SOURCE)


def _brief(message: Any) -> str:
    keys = ("case_id", "command_id", "unit_id", "source_ref")
    shown = {k: getattr(message, k) for k in keys if getattr(message, k, None) is not None}
    return json.dumps(shown, ensure_ascii=False)
