"""Read a JetStream stream from first to last message (for counting and for the dead-letter queue)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nats.js.api import RawStreamMsg
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError


async def stream_messages(
    js: JetStreamContext, stream: str, subject: str | None = None, *, start: int = 1
) -> AsyncIterator[RawStreamMsg]:
    """Every stored message of `stream` (optionally only those matching `subject`), oldest first."""
    seq = start
    while True:
        try:
            # `next` needs a subject filter (nats-py sends none otherwise and the server looks up `seq` exactly).
            msg = await js.get_msg(stream, seq, subject=subject or ">", next=True)
        except NotFoundError:
            return
        yield msg
        seq = (msg.seq or seq) + 1
