"""A flood of new cases to a few units (告警洪峰): do the alerts drain within what the rate limit allows?

`python -m services.notify.flood [--seconds 120] [--rate 20] [--units 3]` starts its own nats-server and nx-27017,
runs one notify instance with the demo city's rate limit (10 at once, 6 a minute per recipient) and one rule
(new_case → the lead unit's duty contact on the `file` channel), publishes `rate` dispatched cases a second spread
over `units` units, then waits one refill for the last digest. It prints, per recipient and in all: the alerts
planned, the messages written (alerts sent alone and digests), what the policy allows in that time
(capacity + per_minute × minutes), the largest backlog seen and the backlog at the end, and whether every alert
reached its recipient.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import nats

from services.notify.app import SPEC, of
from services.notify.latency import dispatched_to, embedded_settings
from services.notify.store import DELIVERIES
from xiuhua.city import City, load_city
from xiuhua.city.alerts import AlertRule
from xiuhua.service import running
from xiuhua.settings import DEMO_CITY


def flood_city(city: City) -> City:
    """The demo city with one rule: new cases to the lead unit's duty contact on the file channel (its rate limit
    as the city sets it)."""
    rule = AlertRule(kind="new_case", to=["lead_unit"], duties=["duty"], channels=["file"])
    return dataclasses.replace(city, alerts=city.alerts.model_copy(update={"rules": [rule], "quiet_hours": None}))


def _outbox(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        return []


async def flood(seconds: float, rate: float, n_units: int) -> dict[str, Any]:
    """Publish the flood, watch the backlog, wait for the drain; the figures."""
    city = flood_city(load_city(DEMO_CITY))
    units = [u for u in city.units.values() if any(c.duty == "duty" and "file" in c.channels for c in u.contacts)]
    units = units[:n_units]
    limit = city.alerts.rate_limit
    async with (
        embedded_settings("flood") as base,
        running(SPEC, settings := base.model_copy(update={"bulletin_schedule": False}), city=city) as rt,
    ):  # no Chromium
        h = of(rt).worker
        nc = await nats.connect(str(settings.nats_url))
        js = nc.jetstream()
        await asyncio.sleep(1.0)  # consumers bound
        start, sent, peak = time.monotonic(), 0, 0.0
        while (elapsed := time.monotonic() - start) < seconds:
            while sent < int(elapsed * rate):
                unit = units[sent % len(units)]
                ev = dispatched_to(unit.id, unit.name)
                await js.publish(ev.subject_for(), ev.to_json(), headers={"Nats-Msg-Id": ev.event_id})
                sent += 1
            peak = max([peak, *(s.value for m in h.backlog.collect() for s in m.samples)])
            await asyncio.sleep(0.05)
        publish_s = time.monotonic() - start
        col = rt.store[DELIVERIES]
        deadline = time.monotonic() + 60.0 / limit.per_minute * 3 + 30
        while time.monotonic() < deadline:  # the last digest goes at the next refill
            await asyncio.sleep(1.0)
            if len([d async for d in col.find({"status": "delivered"}, {"_id": 1})]) >= sent:
                break
        await h.deliver_due()  # one more scan: the backlog gauge as the store has it now
        final = max([0.0, *(s.value for m in h.backlog.collect() for s in m.samples)])
        await nc.close()
        delivered = len([d async for d in col.find({"status": "delivered"}, {"_id": 1})])
        minutes = (time.monotonic() - start) / 60
        per: dict[str, Any] = {}
        for unit in units:
            contact = next(c for c in unit.contacts if c.duty == "duty" and "file" in c.channels)
            lines = _outbox(settings.var_dir / "outbox" / f"{contact.channels['file']}.jsonl")
            digests = [x for x in lines if x.get("kind") == "digest"]
            per[contact.id] = {
                "messages": len(lines),
                "alone": len(lines) - len(digests),
                "digests": len(digests),
                "alerts_in_digests": sum(len(x.get("notification_ids", [])) for x in digests),
                "allowed": int(limit.capacity + limit.per_minute * minutes),
            }
    return {
        "cases": sent,
        "publish_s": round(publish_s, 1),
        "delivered": delivered,
        "messages": sum(p["messages"] for p in per.values()),
        "backlog_peak": peak,
        "backlog_end": final,
        "recipients": per,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--rate", type=float, default=20, help="cases a second")
    ap.add_argument("--units", type=int, default=3)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(flood(args.seconds, args.rate, args.units)), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
