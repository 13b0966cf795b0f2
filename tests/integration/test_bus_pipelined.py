"""Pipelined publishing (the bench's telemetry gateway) against a real JetStream: every message stored and counted
by its acknowledgement, the window respected, a refusal reported. On streams of the test's own: the operator."""

from __future__ import annotations

import pytest
from nats.js.api import StreamConfig

from tests.helpers import connect
from xiuhua import embedded
from xiuhua.bus import PublishRefused, publish_pipelined


async def test_every_message_is_stored_and_acknowledged_through_a_small_window(nats_server) -> None:
    nc = await connect(embedded.nats_url(nats_server), "operator")
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="PIPE", subjects=["pipe.>"], duplicate_window=60))
        items = [(f"pipe.{n % 3}", f"m{n}".encode(), {"Nats-Msg-Id": f"id-{n}"}) for n in range(500)]
        # The last ten again: the stream drops copies by message id, and still acknowledges them.
        assert await publish_pipelined(nc, [*items, *items[-10:]], window=16) == 510
        info = await js.stream_info("PIPE")
        assert info.state.messages == 500
        last = await js.get_msg("PIPE", 500)
        assert last.data == b"m499"
    finally:
        await nc.close()


async def test_a_message_the_stream_refuses_is_reported(nats_server) -> None:
    nc = await connect(embedded.nats_url(nats_server), "operator")
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="PIPE", subjects=["pipe.>"]))
        items = [("pipe.a", b"one", {}), ("pipe.a", b"two", {"Nats-Expected-Last-Sequence": "7"}), ("pipe.a", b"3", {})]
        with pytest.raises(PublishRefused, match="wrong last sequence"):
            await publish_pipelined(nc, items)
        assert (await js.stream_info("PIPE")).state.messages == 2  # the others went in
    finally:
        await nc.close()
