"""The test bus: each test server's users, connections as them, publishing as production does, and a recorder
of what the bus carries."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import nats

from contracts import streams
from xiuhua import security

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


async def publish(
    url: str,
    subject: str,
    body: dict[str, Any] | bytes,
    msg_id: str | None = None,
    headers: dict[str, str] | None = None,
    *,
    user: str | None = None,
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


async def publish_event(url: str, event: Any) -> None:
    """Publish a contract event as the service that publishes it in production (its event id is the message id)."""
    await publish(url, event.subject_for(), event.to_json(), msg_id=event.event_id)


async def publish_all(url: str, messages: list[tuple[str, bytes, str]]) -> None:
    """Publish in order, each message as the user who publishes it in production (dispatch, the patrol app)."""
    conns: dict[str, nats.NATS] = {}
    try:
        for subject, body, msg_id in messages:
            user = security.publisher_of(subject)
            if user not in conns:
                conns[user] = await connect(url, user)
            await conns[user].jetstream().publish(subject, body, headers={"Nats-Msg-Id": msg_id})
    finally:
        for nc in conns.values():
            await nc.close()
