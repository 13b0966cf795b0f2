"""The bus's own ceiling: a plain nats-py relay chain with as many JetStream hops as the pipeline.

Each hop is a durable pull consumer that acknowledges a message and publishes one of the same size to the
next subject with a message id, awaiting the stream's acknowledgement: what a service does, minus the service.
"""

from __future__ import annotations

import asyncio
import time

import nats
from nats.js.api import ConsumerConfig, StreamConfig


async def relay_chain(
    url: str, *, hops: int, messages: int, size: int, batch: int = 128, connect_opts: dict[str, object] | None = None
) -> dict[str, float]:
    """Push `messages` through `hops` relays; returns messages/s through the whole chain."""
    nc = await nats.connect(url, **(connect_opts or {}))
    js = nc.jetstream()
    stream = f"BENCH_RELAY_{int(time.time() * 1000)}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"], duplicate_window=120))
    body = b"x" * size
    done = asyncio.Event()
    received = 0

    async def hop(i: int) -> None:
        nonlocal received
        sub = await js.pull_subscribe(
            f"{stream}.h{i}", durable=f"hop{i}", stream=stream, config=ConsumerConfig(max_ack_pending=batch * 8)
        )
        last = i == hops - 1
        while not done.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=0.05)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            if not last:
                await asyncio.gather(
                    *(
                        js.publish(
                            f"{stream}.h{i + 1}",
                            m.data,
                            headers={"Nats-Msg-Id": f"{i}:{(m.headers or {})['Nats-Msg-Id']}"},
                        )
                        for m in msgs
                    )
                )
            for m in msgs:
                await m.ack()
            if last:
                received += len(msgs)
                if received >= messages:
                    done.set()

    workers = [asyncio.create_task(hop(i)) for i in range(hops)]
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    for start in range(0, messages, 256):
        await asyncio.gather(
            *(
                js.publish(f"{stream}.h0", body, headers={"Nats-Msg-Id": f"m{n}"})
                for n in range(start, min(messages, start + 256))
            )
        )
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await js.delete_stream(stream)
    await nc.close()
    return {"messages": messages, "hops": hops, "size": size, "seconds": elapsed, "per_s": messages / elapsed}
