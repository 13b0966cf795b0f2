"""notify under test: the demo city with loopback contacts, an instance whose worker the test drives, events."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.cases import CaseDispatched, CaseOverdue
from contracts.envelope import Event
from contracts.values import UnitRef
from services.notify.app import SPEC, WORKER, of
from services.notify.bulletin.service import CASES_CONSUMER as CASE_CONSUMER  # noqa: F401  (plans alerts too)
from services.notify.store import DELIVERIES
from services.notify.worker import DeliveryWorker
from tests.helpers.bus import connect, publish
from tests.helpers.waiting import eventually
from xiuhua.city import City
from xiuhua.city.alerts import AlertRule, AlertsFile, ChannelConfig, RateLimit, RetryPolicy
from xiuhua.city.units import Contact
from xiuhua.clock import FrozenClock
from xiuhua.service import Runtime, running
from xiuhua.settings import Settings

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
SECRET = "whsec-test-0001"


def alert_city(
    city: City,
    hook: str,
    *,
    smtp_port: int = 9,
    quiet: str | None = "22:00-07:30",
    rate: RateLimit | None = None,
    max_attempts: int = 3,
) -> City:
    """The demo city with CD-SAN's duty contact on a loopback webhook (and e-mail) and rules for the tests."""
    alerts = AlertsFile(
        quiet_hours=quiet,
        poll_seconds=3600,
        retry=RetryPolicy(max_attempts=max_attempts, base_s=2, max_s=60, jitter=0.5),
        rate_limit=rate or RateLimit(capacity=50, per_minute=60),
        channels={
            "file": ChannelConfig(type="file"),
            "webhook": ChannelConfig(type="webhook", secret=SECRET, timeout_s=3),
            "email": ChannelConfig(type="email", smtp_host="127.0.0.1", smtp_port=smtp_port, timeout_s=3),
        },
        rules=[
            AlertRule(kind="new_case", to=["lead_unit"], duties=["duty"], channels=["webhook"]),
            AlertRule(kind="overdue", to=["lead_unit"], duties=["duty"], channels=["webhook"], urgent=True),
            AlertRule(
                kind="escalation",
                to=["lead_unit"],
                duties=["duty"],
                channels=["webhook", "email"],
                urgent=True,
                min_level=1,
            ),
            AlertRule(kind="sensor_emergency", to=["command_centre"], duties=["duty"], channels=["file"], urgent=True),
            AlertRule(kind="bottom_ranking", to=["lead_unit"], duties=["head"], channels=["file"]),
            AlertRule(
                kind="merchant_escalation", to=["lead_unit", "street_office"], duties=["duty"], channels=["file"]
            ),
            AlertRule(kind="delivery_failed", to=["command_centre"], duties=["duty"], channels=["file"]),
        ],
    )
    units = dict(city.units)
    duty = Contact(
        id="CD-SAN-duty", name="城东环卫所值班", duty="duty", channels={"webhook": hook, "email": "duty@cd-san.example"}
    )
    units["CD-SAN"] = units["CD-SAN"].model_copy(update={"contacts": [duty, *units["CD-SAN"].contacts[1:]]})
    return dataclasses.replace(city, alerts=alerts, units=units)


@contextlib.asynccontextmanager
async def notify(settings: Settings, city: City, clock: FrozenClock) -> AsyncIterator[tuple[Runtime, DeliveryWorker]]:
    """One notify instance whose delivery worker is stopped: the test calls `deliver_due` itself."""
    async with running(SPEC, settings, clock=clock, city=city) as rt:
        for task in rt.tasks:
            if task.get_name() == f"{rt.name}:{WORKER}":
                task.cancel()
        yield rt, of(rt).worker


async def send(settings: Settings, event: Event) -> None:
    """Publish an event as its producer would (no message id: every copy is a new message)."""
    await publish(settings.nats_url, event.subject_for(), json.loads(event.to_json()))


def lead() -> UnitRef:
    return UnitRef(unit_id="CD-SAN", name="城东环卫所", role="sanitation")


def overdue(case_id: str, at: datetime = T0) -> CaseOverdue:
    return CaseOverdue(case_id=case_id, street_code="CD", unit_id="CD-SAN", due_at=at - timedelta(hours=1))


def dispatched(case_id: str, at: datetime = T0) -> CaseDispatched:
    return CaseDispatched(
        case_id=case_id,
        street_code="CD",
        category_code="0201",
        lead_unit=lead(),
        rule_id="default-by-category",
        due_at=at + timedelta(hours=4),
        time_limit="4h",
    )


async def planned(rt: Runtime, n: int, **query: Any) -> list[dict[str, Any]]:
    """Wait until n deliveries (matching query) are planned, and those this instance planned claimed for itself
    are handed to its worker (the consumer's commit is visible a moment before its hand-over)."""
    worker = of(rt).worker

    async def check() -> list[dict[str, Any]] | None:
        docs = [d async for d in rt.store[DELIVERIES].find(query)]
        mine = {d["_id"] for d in docs if d["status"] == "sending" and d.get("owner") == worker.instance}
        return docs if len(docs) >= n and mine <= worker.planning.claimed | worker._held else None

    return await eventually(check)


async def doc(rt: Runtime, nid: str) -> dict[str, Any]:
    return await rt.store[DELIVERIES].find_one({"_id": nid})


async def all_acknowledged(settings: Settings, durable: str) -> bool:
    nc = await connect(settings.nats_url, "operator")  # another service's consumer: the operator's to read
    try:
        info = await nc.jetstream().consumer_info("XH_CASES", durable)
    finally:
        await nc.close()
    return info.num_pending == 0 and info.num_ack_pending == 0
