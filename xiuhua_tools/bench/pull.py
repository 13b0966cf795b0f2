"""The pull path alone: drain a stream through `xiuhua.pull_loop.take_batch`, print messages/s and CPU per message.

    python -m xiuhua_tools.bench.pull [--messages 30000] [--batch 100]

No store and no handler: what the consumers' loop and the third-party adapter cost per message, with its own
nats-server (embedded, temporary). Compare two trees by running it alternately in each (PYTHONPATH=tree).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from xiuhua import embedded, pull_loop
from xiuhua.bus import publish_pipelined


async def drain(messages: int, batch: int, size: int = 300) -> tuple[float, float]:
    """Publish `messages` to a fresh stream, then take them all in batches of `batch`: (messages/s, µs CPU each)."""
    with tempfile.TemporaryDirectory(prefix="xiuhua-bench-pull-") as tmp:
        srv = embedded.nats_server(Path(tmp) / "nats")
        srv.start()
        try:
            nc = await nats.connect(embedded.nats_url(srv))
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="PULL", subjects=["pull.>"]))
            await publish_pipelined(nc, ((f"pull.{i % 10}", b"x" * size, {}) for i in range(messages)))
            config = ConsumerConfig(ack_policy=AckPolicy.NONE, max_ack_pending=-1)
            sub = await js.pull_subscribe("pull.>", durable="drain", stream="PULL", config=config)
            taken, wall, cpu = 0, time.perf_counter(), time.process_time()
            while taken < messages:
                taken += len(await pull_loop.take_batch(sub, batch, 1.0))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            await nc.close()
        finally:
            srv.stop()
    return messages / wall, cpu / messages * 1e6


def main() -> None:
    """Parse, drain, print one line."""
    p = argparse.ArgumentParser(prog="python -m xiuhua_tools.bench.pull", description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=30_000)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args()
    rate, cpu = asyncio.run(drain(args.messages, args.batch))
    print(f"pull path: {args.messages} messages in batches of {args.batch}: {rate:,.0f} msg/s, {cpu:.2f} µs CPU each")


if __name__ == "__main__":
    main()
