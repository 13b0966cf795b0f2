"""A unit's figures from the real pipeline: report → intake → dispatch → commands → scoring, and a merchant's
repeated failure round-tripping through dispatch as an enforcement case without being counted twice."""

from __future__ import annotations

from datetime import UTC, datetime

from services.scoring.periods import periods_of
from services.scoring.store import MERCHANT_PERIODS, UNIT_PERIODS
from tests.helpers import BusRecorder, eventually, publish, system
from tests.helpers.dispatch import CENTRE, HOTLINE, LEAD, CommandSender


async def test_a_case_handled_with_one_rework_is_scored_for_its_unit(settings, city):
    report = {
        "report_id": "R-SC-1",
        "reported_at": datetime.now(UTC).isoformat(),
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": "0201",
        "location": {"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
    }
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake", "dispatch", "scoring")) as rts:
        cmd = CommandSender(settings.nats_url, bus)
        await publish(settings.nats_url, "report.v1.in.grid", report, msg_id="grid:R-SC-1")
        dispatched = await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
        case_id = dispatched[0]["case_id"]
        await cmd.expect("acknowledge", case_id, LEAD, "acknowledged")
        await cmd.expect("resolve", case_id, LEAD, "resolved", note="已清运")
        await cmd.expect("verify", case_id, CENTRE, "verified", passed=False, note="仍有散落垃圾")
        await cmd.expect("resolve", case_id, LEAD, "resolved", note="已清理干净")
        await cmd.expect("verify", case_id, CENTRE, "verified", passed=True)
        await eventually(lambda: bus.on("case.v1.closed."))
        await cmd.expect("rate", case_id, HOTLINE, "rated", satisfaction="satisfied")

        month = periods_of(datetime.fromisoformat(dispatched[0]["occurred_at"]))["month"]

        async def scored() -> dict | None:
            doc = await rts["scoring"].store[UNIT_PERIODS].find_one({"_id": f"CD-SAN:{month}"})
            return doc if doc and doc["rated"] == 1 else None

        doc = await eventually(scored, timeout=30)
        assert {
            k: doc[k]
            for k in (
                "dispatched",
                "acknowledged",
                "acknowledged_in_time",
                "due",
                "resolved",
                "resolved_on_time",
                "closed",
                "closed_on_time",
                "reworked",
                "reworked_cases",
                "satisfied",
                "overdue",
            )
        } == {
            "dispatched": 1,
            "acknowledged": 1,
            "acknowledged_in_time": 1,
            "due": 1,
            "resolved": 1,
            "resolved_on_time": 1,
            "closed": 1,
            "closed_on_time": 1,
            "reworked": 1,
            "reworked_cases": 1,
            "satisfied": 1,
            "overdue": 0,
        }
        assert doc["rates"]["on_time_closure_rate"] == 1.0 and doc["rates"]["rework_rate"] == 1.0
        assert doc["score"] == 99.8  # 100 − 0.2 for the failed verification
        # Published after the commit the store just showed: the recorder may see it a moment later.
        await eventually(lambda: [u for u in bus.on("score.v1.unit_updated") if u["score"] == 99.8], timeout=10)
        assert bus.on("score.v1.unit_updated")[-1]["score"] == 99.8


async def test_a_repeated_merchant_failure_becomes_one_enforcement_case_counted_once(settings, city):
    now = datetime.now(UTC)

    def check(check_id: str, result: str) -> dict:
        return {
            "check_id": check_id,
            "merchant_id": "M-CD-0002",
            "checked_at": now.isoformat(),
            "inspector_id": "G-017",
            "items": {"hygiene": result, "order": "pass", "greenery": "pass"},
        }

    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake", "dispatch", "scoring")) as rts:
        await publish(settings.nats_url, "report.v1.in.merchant_check", check("MC-1", "fail"), msg_id="mc-1")
        await publish(settings.nats_url, "report.v1.in.merchant_check", check("MC-2", "fail"), msg_id="mc-2")
        escalated = await eventually(lambda: bus.on("score.v1.merchant_escalated"), timeout=30)
        assert escalated[0]["merchant_id"] == "M-CD-0002" and escalated[0]["violations"] == 2

        # Intake's violation case (the second check merges into it) and dispatch's enforcement case both carry the
        # merchant with source merchant_check: the month still has exactly the two failed checks.
        await eventually(
            lambda: len([b for b in bus.on("case.v1.dispatched.") if b.get("source") == "merchant_check"]) >= 2,
            timeout=30,
        )
        opened = [b for b in bus.on("case.v1.opened.") if b.get("merchant_id") == "M-CD-0002"]
        assert len(opened) == 2 and {b["source"] for b in opened} == {"merchant_check"}
        month = periods_of(now)["month"]
        doc = await rts["scoring"].store[MERCHANT_PERIODS].find_one({"_id": f"M-CD-0002:{month}"})
        assert (doc["checks"], doc["failures"], doc["points"], doc["grade"]) == (2, 2, 90.0, "A")
        assert len(bus.on("score.v1.merchant_escalated")) == 1
