"""The consumers' pull loop against a real nats-server: a message the server delivers saying nothing waits behind it
is handed over without asking the server again; one with more behind it, or a lingering consumer, asks."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from xiuhua import embedded, pull_loop, third_party


@pytest.fixture
async def js() -> AsyncIterator[nats.js.JetStreamContext]:
    with tempfile.TemporaryDirectory(prefix="xiuhua-test-pull-") as tmp:
        srv = embedded.nats_server(Path(tmp) / "nats")
        srv.start()
        try:
            nc = await nats.connect(embedded.nats_url(srv))
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="PULL", subjects=["pull.>"]))
            yield js
            await nc.close()
        finally:
            srv.stop()


async def _take(js: nats.js.JetStreamContext, stored: int, monkeypatch: pytest.MonkeyPatch, linger: float = 0.0):
    for i in range(stored):
        await js.publish(f"pull.{i}", b"x")
    config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT)
    sub = await js.pull_subscribe("pull.>", durable="take", stream="PULL", config=config)
    asked: list[bytes] = []
    request = third_party.request_pull

    async def counted(sub: third_party.PullSubscription, body: bytes) -> None:
        asked.append(body)
        await request(sub, body)

    monkeypatch.setattr(third_party, "request_pull", counted)
    msgs = await pull_loop.take_batch(sub, 10, 2.0, linger)
    return msgs, asked


async def test_a_message_with_nothing_behind_it_is_handed_over_without_asking_again(js, monkeypatch) -> None:
    msgs, asked = await _take(js, 1, monkeypatch)
    assert [m.subject for m in msgs] == ["pull.0"]
    assert pull_loop.pending_after(msgs[0]) == 0
    assert asked == []


async def test_one_more_waiting_is_asked_for_at_once(js, monkeypatch) -> None:
    msgs, asked = await _take(js, 2, monkeypatch)
    assert [m.subject for m in msgs] == ["pull.0", "pull.1"]
    assert len(asked) == 1


async def test_a_lingering_consumer_asks_after_its_linger_whatever_the_server_said(js, monkeypatch) -> None:
    msgs, asked = await _take(js, 1, monkeypatch, linger=0.01)
    assert [m.subject for m in msgs] == ["pull.0"]
    assert len(asked) == 1


def test_the_pending_count_is_read_from_every_form_of_acknowledgement_subject() -> None:
    from nats.aio.msg import Msg

    def msg(reply: str) -> Msg:
        return Msg(None, subject="s", reply=reply, data=b"")  # type: ignore[arg-type]

    assert pull_loop.pending_after(msg("$JS.ACK.S.c.1.5.5.1796000000000000000.3")) == 3
    assert pull_loop.pending_after(msg("$JS.ACK._.HASH.S.c.1.5.5.1796000000000000000.0")) == 0
    assert pull_loop.pending_after(msg("$JS.ACK.hub.HASH.S.c.1.5.5.1796000000000000000.7.rnd")) == 7
    for reply in ("", "_INBOX.x.1", "$JS.ACK.S.c.1.5", "$JS.ACK.S.c.1.5.5.1796000000000000000.x"):
        assert pull_loop.pending_after(msg(reply)) is None, reply
