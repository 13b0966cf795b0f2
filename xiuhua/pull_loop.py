"""How a batch pull consumer waits: hand over what is there at once, long-poll only when idle.

FastStream 0.7.8's batch pull loop keeps fetching until the batch is full or its timeout runs out, so at a low
rate every hop waits the whole timeout before handling a single message. nats-py 2.16's `fetch(batch=N)` is
better but not enough: once it has a message it waits for more until the server ends the request, and a request
that carries an expiry stays open. At 10 reports/s consumers fell, in about half the runs, into a rhythm where
each message waited for the next (about 100 ms each, the batches themselves quick). `take_batch` asks in two
steps instead: what is there now (`no_wait` without an expiry, answered at once), and, only when that is
nothing, a long poll that returns with the first message. Low latency when quiet, full batches under load.

A consumer off the critical path (a projection, a score, a citizen's status view) may *linger*: when its batch is
not full it waits a moment for more before handling it, as a Kafka producer's `linger.ms` does. At a modest rate
that turns one transaction per message into one per linger, which leaves the store and the CPUs to the hops a
person waits for (report → case → dispatch); under load batches are full and nobody lingers.
"""

from __future__ import annotations

import asyncio
import json
import logging

import anyio
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from xiuhua import third_party
from xiuhua.third_party import PullSubscription, PullTask

log = logging.getLogger("xiuhua.pull")

AVAILABLE_WAIT_S = 1.0  # a no_wait request is answered at once; this only bounds a lost answer


async def take_batch(
    sub: PullSubscription,
    batch: int,
    timeout: float,  # noqa: ASYNC109
    linger: float = 0.0,
    held: list[Msg] | None = None,
) -> list[Msg]:
    """Up to `batch` messages: those already delivered or available at once; if none, the first to arrive within
    `timeout` (then NatsTimeout), with whatever else is available by then, or `linger` seconds later. Messages
    are collected in `held` as they come, so a caller cancelled meanwhile knows what it holds."""
    msgs = held if held is not None else []
    msgs += _delivered(sub, batch)
    if not msgs:
        msgs += await sub.fetch(1, timeout=timeout)  # a long poll that returns with its first message
    if linger > 0 and len(msgs) < batch:
        await asyncio.sleep(linger)
    elif msgs and pending_after(msgs[-1]) == 0:
        # The server said, delivering the last of them, that nothing was waiting behind it: asking again would
        # only bring the 404 back, a round trip to the server on every hop of a report at a modest rate.
        return msgs
    if len(msgs) < batch:
        await _available(sub, batch - len(msgs), msgs)
    return msgs


# Where a JetStream acknowledgement subject says how many messages the consumer still held when it delivered this
# one, by the subject's number of tokens (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>`;
# with a domain and an account hash after `$JS.ACK`, and a random token at the end).
_PENDING_TOKEN = {9: 8, 11: 10, 12: 10}


def pending_after(msg: Msg) -> int | None:
    """How many messages the consumer held behind `msg` when the server delivered it; None when it does not say."""
    reply = msg.reply
    if not reply or not reply.startswith("$JS.ACK."):
        return None
    tokens = reply.split(".")
    at = _PENDING_TOKEN.get(len(tokens))
    try:
        return int(tokens[at]) if at is not None else None
    except ValueError:
        return None


def _delivered(sub: PullSubscription, n: int) -> list[Msg]:
    """Messages an earlier request left in the subscription's queue (status messages are dropped)."""
    out: list[Msg] = []
    while len(out) < n and (msg := third_party.queued(sub)) is not None:
        if not JetStreamContext.is_status_msg(msg):
            out.append(msg)
    return out


async def _available(sub: PullSubscription, n: int, out: list[Msg]) -> None:
    """Add to `out` what the consumer holds right now, up to `n`: a `no_wait` request without an expiry, which the
    server answers at once (then a 404 status when it had fewer)."""
    request = json.dumps({"batch": n, "no_wait": True}).encode()
    await third_party.request_pull(sub, request)
    want = len(out) + n
    while len(out) < want:
        if (msg := third_party.queued(sub)) is None:
            try:
                msg = await third_party.next_delivered(sub, AVAILABLE_WAIT_S)
            except (NatsTimeout, TimeoutError):
                break
        status = JetStreamContext.is_status_msg(msg)
        if status == api.StatusCode.CONTROL_MESSAGE:
            continue
        if status:
            break  # 404 no more messages, 408 an earlier request expiring, ...: what is there has come
        out.append(msg)


async def run(task: PullTask) -> None:
    """Pull batches for one FastStream subscriber until it stops (see the module's docstring)."""
    sub = task.subscription
    held: list[Msg] = []
    try:
        while task.running():
            held = []
            try:
                await take_batch(sub, task.batch_size, task.timeout, task.linger, held)
            except NatsTimeout:
                continue  # idle: nothing arrived within the long poll
            except (ConnectionClosedError, ServiceUnavailableError):
                # Unacknowledged messages stay with the server for redelivery; wait for the reconnect.
                await anyio.sleep(0.5)
                continue
            if held and task.running():
                messages, held = held, []
                await task.consume(messages)
    finally:
        # Stopped (cancelled, as FastStream stops a subscriber) with messages in hand: while lingering, or between a
        # fetch and the handler. Unanswered they would wait out the ack wait (60 s) before another instance got them.
        await give_back([*held, *_delivered(sub, task.batch_size)])


async def give_back(msgs: list[Msg]) -> None:
    """Hand messages taken but never handled back to the server, to be delivered again at once."""
    for msg in msgs:
        try:
            await msg.nak()
        except Exception:  # the connection gone: the server redelivers them after the ack wait all the same
            log.debug("could not give back a message", exc_info=True)
            return


def install() -> None:
    """Use the loop above for every batch pull subscriber, and nats-py's fetch with one timeout error (idempotent)."""
    third_party.patch_fetch_timeout()
    third_party.replace_batch_pull_loop(run)
