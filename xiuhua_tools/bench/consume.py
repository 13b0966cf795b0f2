"""A consumer's own CPU per message, in process: intake's reports consumer on sensor readings.

    python -m xiuhua_tools.bench.consume [--readings 20000] [--batch 1000]

The consumer runner and intake's handlers as a service runs them, against the in-memory store
(`xiuhua.testing.MemoryStore`) and JetStream messages whose acknowledgements go nowhere: no server, no other
process, so the figure is the services' own work per message (the store's and the bus's left out) and moves far
less with a busy machine than `xiuhua bench` does. Compare two trees by running this file in each in turn
(PYTHONPATH=tree).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace
from typing import Any

from nats.aio.msg import Msg

from services.intake.cases import domain_of
from services.intake.handlers import IntakeHandlers, decode_raw
from xiuhua.city import load_city
from xiuhua.clock import SystemClock
from xiuhua.consumer import ConsumerRunner, Subscription
from xiuhua.ledger import Ledger
from xiuhua.observability import Metrics
from xiuhua.settings import Settings
from xiuhua.testing import MemoryStore
from xiuhua_tools.bench.load import sensor_reading

WARM_UP_BATCHES = 2  # not counted: the first batches fill the devices' states and the caches


class _Nowhere:
    """The bus as far as the consumer sees it: acknowledgements and events go nowhere."""

    async def publish(self, *_: Any, **__: Any) -> None:
        return None

    async def send(self, items: Any) -> None:
        for _ in items:
            pass


async def readings(total: int, batch: int) -> float:
    """Apply `total` sensor readings (after the warm-up) in batches of `batch`; returns µs of CPU per reading."""
    settings = Settings()
    city = load_city(settings.city_dir)
    domain_of(city)
    store: Any = MemoryStore("intake")
    nowhere: Any = _Nowhere()
    clock, metrics = SystemClock(), Metrics("intake")
    ledger = Ledger(store, nowhere, clock)
    rt: Any = SimpleNamespace(name="intake", settings=settings, clock=clock, city=city, store=store, metrics=metrics)
    handlers = IntakeHandlers(rt)
    sub = Subscription("intake-reports", "report.v1.in.>", handlers.on_reports, decode=decode_raw)
    runner = ConsumerRunner(
        service="intake", sub=sub, store=store, ledger=ledger, publisher=nowhere, metrics=metrics, max_deliver=5
    )
    seq, cpu = 0, 0.0
    for n in range(WARM_UP_BATCHES + max(1, total // batch)):
        msgs = []
        for left in reversed(range(batch)):
            seq += 1
            reply = f"$JS.ACK.XH_REPORTS.intake-reports.1.{seq}.{seq}.{time.time_ns()}.{left}"
            body = sensor_reading(seq, "consume")
            msgs.append(Msg(nowhere, "report.v1.in.sensor", reply, body, {"Nats-Msg-Id": f"consume-S{seq}"}))
        started = time.process_time()
        await runner.process(msgs)
        if n >= WARM_UP_BATCHES:
            cpu += time.process_time() - started
    return cpu / (max(1, total // batch) * batch) * 1e6


def main() -> None:
    """Parse, apply, print one line."""
    p = argparse.ArgumentParser(prog="python -m xiuhua_tools.bench.consume", description=__doc__.splitlines()[0])
    p.add_argument("--readings", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=1000)
    args = p.parse_args()
    cpu = asyncio.run(readings(args.readings, args.batch))
    print(f"intake's consumer: {args.readings} sensor readings in batches of {args.batch}: {cpu:.1f} µs CPU each")


if __name__ == "__main__":
    main()
