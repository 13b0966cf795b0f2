"""How long from `case.v1.dispatched` on the bus to the alert at its receiver (告警时延), on embedded servers.

`python -m services.notify.latency [--n 40] [--gap 0.3]` starts its own nats-server and nx-27017 in a temporary
folder, runs one notify instance with the demo city reduced to one rule (new_case → the lead unit's duty contact
on the `file` channel), publishes N dispatched cases one at a time and times each until its line is in the
outbox. Only notify's share of report → alert: consume, plan (one transaction), claim, send, record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats

from contracts.cases import CaseDispatched
from contracts.values import UnitRef
from services.notify.app import SPEC
from xiuhua import embedded
from xiuhua.bus import provision_streams
from xiuhua.city import City, load_city
from xiuhua.city.alerts import AlertRule, RateLimit
from xiuhua.service import running
from xiuhua.settings import DEMO_CITY, Settings


def one_rule_city(city: City) -> City:
    """The demo city with only the new-case alert to the lead unit's duty contact, on the file channel, no limits."""
    rule = AlertRule(kind="new_case", to=["lead_unit"], duties=["duty"], channels=["file"], urgent=True)
    limit = RateLimit(capacity=10_000, per_minute=10_000)  # time the path, not the recipient's rate limit
    alerts = city.alerts.model_copy(update={"rules": [rule], "quiet_hours": None, "rate_limit": limit})
    return dataclasses.replace(city, alerts=alerts)


async def _lines(path: Path) -> int:
    try:
        return sum(1 for _ in path.open(encoding="utf-8"))
    except FileNotFoundError:
        return 0


@contextlib.asynccontextmanager
async def embedded_settings(prefix: str) -> AsyncIterator[Settings]:
    """Settings for a nats-server and an nx-27017 of its own in a temporary folder, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix=f"xh-{prefix}-") as tmp:
        root = Path(tmp)
        nats_p, store_p = embedded.nats_server(root / "nats"), embedded.store_server(root / "store")
        nats_p.start()
        store_p.start()
        try:
            url = embedded.nats_url(nats_p)
            await provision_streams(url)
            yield Settings(
                nats_url=url,
                mongo_url=embedded.mongo_url(store_p),
                db_prefix=f"{prefix}_",
                var_dir=root / "var",
                city_dir=DEMO_CITY,
                store_tx_lock_dir=root / "locks",
            )
        finally:
            nats_p.stop()
            store_p.stop()


def dispatched_to(unit_id: str, name: str) -> CaseDispatched:
    """A new case dispatched to a unit now, due in four hours."""
    return CaseDispatched(
        case_id=f"C-LAT-{uuid.uuid4().hex[:8]}",
        street_code="CD",
        category_code="0201",
        lead_unit=UnitRef(unit_id=unit_id, name=name, role="sanitation"),
        rule_id="default-by-category",
        due_at=datetime.now(UTC) + timedelta(hours=4),
        time_limit="4h",
    )


async def measure(n: int, gap: float) -> list[float]:
    """Seconds from publish to outbox line, one per case."""
    async with embedded_settings("lat") as settings:
        city = one_rule_city(load_city(DEMO_CITY))
        unit = city.units["CD-SAN"]
        outbox = settings.var_dir / "outbox" / f"{unit.contacts[0].channels.get('file', 'cd-san')}.jsonl"
        out: list[float] = []
        async with running(SPEC, settings, city=city):
            nc = await nats.connect(str(settings.nats_url))
            js = nc.jetstream()
            await asyncio.sleep(1.0)  # consumers bound
            for i in range(n):
                ev = dispatched_to("CD-SAN", unit.name)
                t0 = time.perf_counter()
                await js.publish(ev.subject_for(), ev.to_json(), headers={"Nats-Msg-Id": ev.event_id})
                while await _lines(outbox) < i + 1:
                    if time.perf_counter() - t0 > 30:
                        raise TimeoutError(f"case {i}: no alert after 30 s")
                    await asyncio.sleep(0.005)
                out.append(time.perf_counter() - t0)
                await asyncio.sleep(gap)
            await nc.close()
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between cases")
    args = ap.parse_args()
    xs = asyncio.run(measure(args.n, args.gap))
    q = statistics.quantiles(xs, n=20)
    print(
        json.dumps(
            {
                "n": len(xs),
                "p50_s": round(statistics.median(xs), 3),
                "p95_s": round(q[18], 3),
                "max_s": round(max(xs), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
