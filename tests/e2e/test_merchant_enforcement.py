"""A merchant failing its 门前三包 check twice, end to end under the users that ship: scoring escalates, dispatch
opens the enforcement case itself and dispatches it, and the server refuses nothing (the `nats_server` fixture
fails the test on any permission violation in its log)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts.reports import MerchantCheck
from tests.helpers import BusRecorder, eventually, publish, system


async def test_two_failed_checks_open_and_dispatch_an_enforcement_case(settings):
    at = datetime(2026, 12, 10, 2, tzinfo=UTC)
    checks = [
        MerchantCheck(
            check_id=f"ENF-{day}",
            merchant_id="M-CD-0001",
            checked_at=at.replace(day=day),
            inspector_id="G-1",
            items={"hygiene": "fail", "order": "pass", "greenery": "pass"},
        )
        for day in (10, 17)
    ]
    async with BusRecorder(settings.nats_url) as bus, system(settings):
        for check in checks:  # as the patrol app (城管通) sends them
            await publish(
                settings.nats_url,
                "report.v1.in.merchant_check",
                check.model_dump_json().encode(),
                msg_id=f"merchant_check:{check.check_id}",
            )

        def enforcement() -> list[dict]:
            return [
                e
                for e in bus.on("case.v1.opened.")
                if e.get("merchant_id") == "M-CD-0001" and e["case_id"] == "M-M-CD-0001-2026-12"
            ]

        (opened,) = await eventually(enforcement, timeout=60)
        dispatched = await eventually(
            lambda: [e for e in bus.on("case.v1.dispatched.") if e["case_id"] == opened["case_id"]], timeout=30
        )
        assert opened["source"] == "merchant_check" and opened["source_ref"] == "M-CD-0001:2026-12"
        assert dispatched[0]["lead_unit"]["unit_id"]
        assert bus.on("dlq.") == []
