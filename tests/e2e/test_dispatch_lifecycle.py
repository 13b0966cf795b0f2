"""The case lifecycle end to end on a real nats-server and store: commands in, lifecycle events out."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from contracts.cases import CaseMerged, CaseOpened, CaseTransferred
from contracts.merchants import MerchantEscalated
from services.dispatch.app import SPEC
from services.scoring.periods import periods_of
from services.scoring.store import CASE_FACTS, UNIT_PERIODS
from tests.helpers import BusRecorder, eventually, publish, system
from tests.helpers.dispatch import CommandSender, _by_command
from xiuhua.service import running

LEAD = {"unit_id": "CD-SAN", "role": "sanitation", "name": "王强"}
CENTRE = {"unit_id": "XH-CC", "role": "command_centre", "name": "李督查"}
HOTLINE = {"unit_id": "XH-12345", "role": "hotline", "name": "话务员"}


def opened(city, case_id: str, code: str = "0201", area: str = "CD01", **over: Any) -> CaseOpened:
    fields: dict[str, Any] = dict(
        correlation_id=f"grid:{case_id}",
        case_id=case_id,
        street_code=area[:2],
        source="grid",
        source_ref=case_id,
        category_code=code,
        description="垃圾箱满溢",
        place=city.areas.place_of_area(area),
        reported_at=datetime.now(UTC),
    )
    fields.update(over)
    return CaseOpened(**fields)


async def open_case(url: str, ev: CaseOpened) -> None:
    await publish(url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)


async def test_report_to_closed_and_rated_with_extension_and_rework(settings, city):
    report = {
        "report_id": "R-LC-1",
        "reported_at": datetime.now(UTC).isoformat(),
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": "0201",
        "location": {"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
    }
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("intake", "dispatch")) as rts:
        cmd = CommandSender(settings.nats_url, bus)
        await publish(settings.nats_url, "report.v1.in.grid", report, msg_id="grid:R-LC-1")
        dispatched = await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
        case_id = dispatched[0]["case_id"]
        assert dispatched[0]["lead_unit"]["unit_id"] == "CD-SAN" and dispatched[0]["dispatch_round"] == 1

        ack = await cmd.expect("acknowledge", case_id, LEAD, "acknowledged")
        assert ack["in_time"] and ack["version"] == 2 and ack["unit_id"] == "CD-SAN"
        await cmd.expect("request_extension", case_id, LEAD, "extension_requested", hours=4, reason="需协调产权单位")
        approved = await cmd.expect("approve_extension", case_id, CENTRE, "extension_approved")
        assert approved["due_at"] > dispatched[0]["due_at"]
        await cmd.expect("resolve", case_id, LEAD, "resolved", note="已清运", photo_urls=["https://img/after-1.jpg"])
        failed = await cmd.expect("verify", case_id, CENTRE, "verified", passed=False, note="仍有散落垃圾")
        assert not failed["passed"] and failed["rework_count"] == 1
        resolved = await cmd.expect("resolve", case_id, LEAD, "resolved", note="已清理干净")
        assert resolved["on_time"]
        passed = await cmd.expect("verify", case_id, CENTRE, "verified", passed=True)
        assert passed["passed"] and passed["rework_count"] == 1
        closed = await eventually(lambda: bus.on("case.v1.closed."))
        assert closed[0]["closed_by"] == "verification" and closed[0]["on_time"]
        rated = await cmd.expect("rate", case_id, HOTLINE, "rated", satisfaction="satisfied")
        assert rated["satisfaction"] == "satisfied"

        # Illegal commands are answered with the reason, never dropped.
        r = await cmd.rejected("resolve", case_id, LEAD, note="again")
        assert (r["reason"], r["state"], r["case_id"]) == ("wrong_state", "closed", case_id)
        r = await cmd.rejected("acknowledge", "C-nope", LEAD)
        assert r["reason"] == "unknown_case" and r["state"] is None
        r = await cmd.rejected("cancel", case_id, LEAD, reason="x")
        assert r["reason"] == "wrong_role"
        r = await cmd.rejected("rate", case_id, HOTLINE, satisfaction="great")
        assert r["reason"] == "invalid" and "satisfaction" in r["detail"] and r["state"] == "closed"

        # A command whose case id cannot be read is a dead letter.
        await publish(settings.nats_url, "cmd.v1.case.acknowledge", b'{"command_id": "x"}', msg_id="bad-1")
        letter = await eventually(lambda: bus.on("dlq.v1.dispatch"))
        assert base64.b64decode(letter[0]["payload_b64"]) == b'{"command_id": "x"}'

        doc = await rts["dispatch"].store["cases"].find_one({"_id": case_id})
        assert (doc["state"], doc["reworks"], doc["extensions"], doc["rating"]) == ("closed", 1, 1, "satisfied")
        kinds = Counter(
            s.split(".")[2]
            for s, b in bus.messages
            if s.startswith("case.v1.") and isinstance(b, dict) and b.get("case_id") == case_id
        )
        assert kinds == Counter(
            {
                "opened": 1,
                "dispatched": 1,
                "acknowledged": 1,
                "extension_requested": 1,
                "extension_approved": 1,
                "resolved": 2,
                "verified": 2,
                "closed": 1,
                "rated": 1,
                "command_rejected": 3,  # + 1 for C-nope
            }
        )


async def test_returns_reroute_then_go_to_the_command_centre(settings, city):
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("dispatch",)):
        cmd = CommandSender(settings.nats_url, bus)
        await open_case(settings.nats_url, opened(city, "C-RET"))
        first = await eventually(lambda: bus.on("case.v1.dispatched."), timeout=30)
        assert first[0]["lead_unit"]["unit_id"] == "CD-SAN"

        returned = await cmd.expect("return", "C-RET", LEAD, "returned", reason="不属于本单位职责")
        assert returned["returns"] == 1
        second = await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 2 and bus.on("case.v1.dispatched.")[1])
        assert second["lead_unit"]["unit_id"] == "CD-SO" and second["dispatch_round"] == 2
        assert second["returned_by"] == ["CD-SAN"]

        # The old lead may no longer act on it.
        r = await cmd.rejected("acknowledge", "C-RET", LEAD)
        assert r["reason"] == "wrong_unit"

        street_office = {"unit_id": "CD-SO", "role": "street_office", "name": "赵主任"}
        await cmd.expect("return", "C-RET", street_office, "returned", reason="应由环卫处置")
        third = await eventually(lambda: len(bus.on("case.v1.dispatched.")) == 3 and bus.on("case.v1.dispatched.")[2])
        assert (third["rule_id"], third["lead_unit"]["unit_id"], third["dispatch_round"]) == ("max-returns", "XH-CC", 3)
        assert third["returned_by"] == ["CD-SAN", "CD-SO"]
        ack = await cmd.expect("acknowledge", "C-RET", CENTRE, "acknowledged")
        assert ack["unit_id"] == "XH-CC"


async def test_low_confidence_merchant_escalation_and_supervisor_found(settings, city):
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("dispatch",)) as rts:
        await open_case(settings.nats_url, opened(city, "C-LOW", category_confidence=0.4, source="hotline"))
        await open_case(settings.nats_url, opened(city, "C-SUP", source="inspection", supervisor_found=True))
        esc = MerchantEscalated(
            merchant_id="M-X1",
            merchant_name="东园小吃店",
            street_code="CD",
            community_code="CD02",
            period="2026-11",
            violations=3,
            reason="出店经营",
        )
        await publish(settings.nats_url, esc.subject_for(), esc.to_json(), msg_id=esc.event_id)
        await publish(settings.nats_url, esc.subject_for(), esc.to_json(), msg_id=esc.event_id + "-again")
        for model in (CaseMerged, CaseTransferred):  # a merged report and a transferred one are never dispatched
            ev = model.model_validate(model.example())
            await publish(settings.nats_url, ev.subject_for(), ev.to_json(), msg_id=ev.event_id)

        got = await eventually(
            lambda: len(bus.on("case.v1.dispatched.")) == 3 and bus.on("case.v1.dispatched."), timeout=30
        )
        by_case = {d["case_id"]: d for d in got}
        assert (by_case["C-LOW"]["rule_id"], by_case["C-LOW"]["lead_unit"]["unit_id"]) == ("low-confidence", "XH-CC")
        assert by_case["C-SUP"]["supervisor_found"] and by_case["C-SUP"]["source"] == "inspection"

        merchant = by_case["M-M-X1-2026-11"]
        assert merchant["rule_id"] == "merchant-escalation-enforcement"
        assert merchant["lead_unit"]["unit_id"] == "CD-ENF"
        assert [u["unit_id"] for u in merchant["cooperating_units"]] == ["CD02"]
        m_opened = [o for o in bus.on("case.v1.opened.") if o["case_id"] == "M-M-X1-2026-11"]
        assert len(m_opened) == 1 and m_opened[0]["source"] == "merchant_check"
        # The penalty case has its own category (处罚), so routing never gives a first failure to enforcement.
        assert m_opened[0]["merchant_id"] == "M-X1" and m_opened[0]["category_code"] == "0407"

        cmd = CommandSender(settings.nats_url, bus)
        sup_lead = by_case["C-SUP"]["lead_unit"]
        ack = await cmd.expect("acknowledge", "C-SUP", {**sup_lead, "name": "x"}, "acknowledged")
        assert ack["supervisor_found"]
        doc = await rts["dispatch"].store["cases"].find_one({"_id": "C-SUP"})
        assert doc["supervisor_found"] and doc["source"] == "inspection"
        await asyncio.sleep(0.5)
        assert len(bus.on("case.v1.dispatched.")) == 3  # the escalation sent twice opened one case
        assert bus.on("case.v1.merged.") and bus.on("case.v1.transferred.")
        assert await rts["dispatch"].store.count("cases", {}) == 3


async def _run_cases(settings, city, bus: BusRecorder, ids: list[str]) -> None:
    """Open cases and take each through acknowledge → resolve → verify, with one illegal command each."""
    cmd = CommandSender(settings.nats_url, bus)
    for cid in ids:
        await open_case(settings.nats_url, opened(city, cid))
    await eventually(lambda: len({d["case_id"] for d in bus.on("case.v1.dispatched.")}) == len(ids), timeout=30)
    for cid in ids:
        await cmd.expect("acknowledge", cid, LEAD, "acknowledged")
        await cmd.rejected("verify", cid, CENTRE, passed=True)
        await cmd.expect("resolve", cid, LEAD, "resolved", note="ok")
        await cmd.expect("verify", cid, CENTRE, "verified", passed=True)
    await eventually(lambda: len(bus.on("case.v1.closed.")) == len(ids))
    await asyncio.sleep(1.0)


def _per_case_and_kind(bus: BusRecorder) -> tuple[Counter, Counter]:
    messages, distinct = Counter(), {}
    for subject, body in bus.messages:
        if subject.startswith("case.v1.") and isinstance(body, dict) and not subject.startswith("case.v1.opened."):
            key = (body["case_id"], subject.split(".")[2])
            messages[key] += 1
            distinct.setdefault(key, set()).add(body["event_id"])
    return messages, Counter({k: len(v) for k, v in distinct.items()})


async def test_two_instances_publish_exactly_what_one_would(settings, city):
    ids = [f"C-TWO-{i}" for i in range(4)]
    async with (
        BusRecorder(settings.nats_url) as bus,
        running(SPEC, settings, city=city),
        running(SPEC, settings, city=city),
    ):
        await asyncio.sleep(0.2)
        await _run_cases(settings, city, bus, ids)
    messages, distinct = _per_case_and_kind(bus)
    expected = Counter(
        {
            (cid, kind): 1
            for cid in ids
            for kind in ("dispatched", "acknowledged", "command_rejected", "resolved", "verified", "closed")
        }
    )
    assert distinct == expected
    assert messages == expected  # not even a duplicate publish reached the bus


async def test_a_triaged_case_is_assigned_by_the_command_centre_and_flows_on(settings, city):
    """人工派遣: a triage-category case and a low-confidence one wait with the command centre; the centre assigns
    the first (new category, named unit), which is handled and closed, and cancels the second. Scoring counts the
    manual dispatch like any other and the cancelled case in no closure."""
    enf = {"unit_id": "CD-ENF", "role": "enforcement", "name": "执法队员"}
    async with BusRecorder(settings.nats_url) as bus, system(settings, only=("dispatch", "scoring")) as rts:
        cmd = CommandSender(settings.nats_url, bus)
        await open_case(
            settings.nats_url,
            opened(city, "C-TRI", code="9901", source="hotline", description="解放路口有人占道摆摊卖菜"),
        )
        await open_case(settings.nats_url, opened(city, "C-CAN", category_confidence=0.3))
        got = await eventually(
            lambda: len(bus.on("case.v1.dispatched.")) == 2 and bus.on("case.v1.dispatched."), timeout=30
        )
        first = {d["case_id"]: d for d in got}
        assert first["C-TRI"]["lead_unit"]["unit_id"] == first["C-CAN"]["lead_unit"]["unit_id"] == "XH-CC"
        assert first["C-CAN"]["rule_id"] == "low-confidence"

        # Refused, with the reason: a unit may not assign, nor to a unit the city lacks, nor keep the triage category.
        r = await cmd.rejected("assign", "C-TRI", LEAD, unit_id="CD-ENF", category_code="0101")
        assert r["reason"] == "wrong_role"
        r = await cmd.rejected("assign", "C-TRI", CENTRE, unit_id="CD-NOPE", category_code="0101")
        assert r["reason"] == "unknown_unit" and "CD-NOPE" in r["detail"]
        r = await cmd.rejected("assign", "C-TRI", CENTRE, unit_id="CD-ENF")
        assert r["reason"] == "invalid" and "9901" in r["detail"]

        d = await cmd.expect(
            "assign", "C-TRI", CENTRE, "dispatched", unit_id="CD-ENF", category_code="0101", reason="分拣: 占道经营"
        )
        assert (d["rule_id"], d["lead_unit"]["unit_id"], d["category_code"], d["time_limit"]) == (
            "manual",
            "CD-ENF",
            "0101",
            "1d",
        )
        assert [u["unit_id"] for u in d["cooperating_units"]] == ["CD01"] and d["dispatch_round"] == 2
        assert d["actor"] == CENTRE and d["reason"] == "分拣: 占道经营" and d["due_at"] > first["C-TRI"]["due_at"]
        r = await cmd.rejected("assign", "C-TRI", CENTRE, unit_id="CD-SAN", category_code="0201")
        assert (r["reason"], r["state"]) == ("wrong_state", "dispatched")  # it is with CD-ENF now

        ack = await cmd.expect("acknowledge", "C-TRI", enf, "acknowledged")
        assert ack["unit_id"] == "CD-ENF" and ack["in_time"]
        await cmd.expect("resolve", "C-TRI", enf, "resolved", note="摊贩已劝离")
        await cmd.expect("verify", "C-TRI", CENTRE, "verified", passed=True)
        closed = await eventually(lambda: [c for c in bus.on("case.v1.closed.") if c["case_id"] == "C-TRI"])
        assert (closed[0]["outcome"], closed[0]["closed_by"], closed[0]["unit_id"]) == (
            "closed",
            "verification",
            "CD-ENF",
        )

        # 作废 ends the other case visibly: case.closed (outcome cancelled), then case.cancelled.
        cid = await cmd.send("cancel", "C-CAN", CENTRE, reason="重复举报")
        cancelled = await eventually(lambda: _by_command(bus, "cancelled", cid))
        ended = _by_command(bus, "closed", cid)
        assert ended and (ended["outcome"], ended["closed_by"], ended["on_time"], ended["reason"]) == (
            "cancelled",
            "cancel",
            False,
            "重复举报",
        )
        subjects = [
            s.split(".")[2]
            for s, b in bus.messages
            if s.startswith("case.v1.") and isinstance(b, dict) and b.get("command_id") == cid
        ]
        assert subjects == ["closed", "cancelled"] and cancelled["reason"] == "重复举报"

        month = periods_of(datetime.fromisoformat(d["occurred_at"]))["month"]
        periods = rts["scoring"].store[UNIT_PERIODS]

        async def scored() -> dict | None:
            doc = await periods.find_one({"_id": f"CD-ENF:{month}"})
            return doc if doc and doc.get("closed") == 1 else None

        unit = await eventually(scored, timeout=30)
        assert {k: unit.get(k, 0) for k in ("dispatched", "acknowledged", "due", "closed", "closed_on_time")} == {
            "dispatched": 1,
            "acknowledged": 1,
            "due": 1,
            "closed": 1,
            "closed_on_time": 1,
        }

        async def cancellation_folded() -> bool:
            doc = await rts["scoring"].store[CASE_FACTS].find_one({"_id": "C-CAN"})
            return bool(doc) and [f["t"] for f in doc["facts"]].count("cancelled") == 2  # closed-as-cancelled too

        await eventually(cancellation_folded, timeout=30)
        centre = await periods.find_one({"_id": f"XH-CC:{month}"})
        assert centre["dispatched"] == 2  # the two triage rounds
        assert {k: centre.get(k, 0) for k in ("due", "closed", "closed_on_time")} == {
            "due": 0,
            "closed": 0,
            "closed_on_time": 0,
        }
