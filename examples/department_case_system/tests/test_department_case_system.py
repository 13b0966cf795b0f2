"""The department case system against an embedded Xiuhua (the `xiuhua` fixture of the xiuhua.testing plugin):
it receives its unit's dispatched cases, signs for them, reports them fixed, and sees them verified and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from contracts.cases import CaseClosed, CaseDispatched, CaseVerified
from contracts.commands import Actor, Verify
from contracts.reports import GridReport
from examples.department_case_system import DepartmentCaseSystem

UNIT = "CD-SAN"  # 城东环卫所: the demo city's lead unit for overflowing bins (0201) in 城东街道


def overflowing_bin(report_id: str, lng: float = 120.16, lat: float = 30.255, address: str | None = None) -> GridReport:
    return GridReport(
        report_id=report_id,
        reported_at=datetime.now(UTC),
        inspector_id="G-017",
        description="解放路口垃圾箱满溢，垃圾散落",
        category_code="0201",
        address=address,
        location={"lng": lng, "lat": lat, "coord_system": "wgs84"},
    )


@pytest.fixture
async def department(xiuhua) -> AsyncIterator[DepartmentCaseSystem]:
    # As it runs in a city: connected as the `units` user, through the durable consumer its permissions allow.
    system = DepartmentCaseSystem(await xiuhua.client_for("units"), UNIT, operator="王强")
    assert system.durable == "units"
    await system.start()
    yield system
    await system.stop()


async def _case_of(xiuhua, report_id: str) -> CaseDispatched:
    opened = await xiuhua.wait_for("case.v1.opened", source_ref=report_id)
    return await xiuhua.wait_for("case.v1.dispatched", case_id=opened.case_id)


async def test_dispatched_case_is_received_and_acknowledged(xiuhua, department: DepartmentCaseSystem) -> None:
    await xiuhua.publish(overflowing_bin("R-D1"))
    dispatched = await _case_of(xiuhua, "R-D1")
    assert dispatched.lead_unit.unit_id == UNIT

    local = await department.wait_status(dispatched.case_id, "acknowledged")
    assert local.history[:2] == ["case.dispatched", "case.acknowledged"]
    assert local.due_at == dispatched.due_at
    command = await xiuhua.wait_for("cmd.v1.case.acknowledge", case_id=dispatched.case_id)
    assert (command.actor.unit_id, command.actor.role, command.actor.name) == (UNIT, "sanitation", "王强")
    acknowledged = await xiuhua.wait_for("case.v1.acknowledged", case_id=dispatched.case_id)
    assert acknowledged.command_id == command.command_id and acknowledged.unit_id == UNIT


async def test_resolved_case_is_verified_and_closed(xiuhua, department: DepartmentCaseSystem) -> None:
    await xiuhua.publish(overflowing_bin("R-D2"))
    case_id = (await _case_of(xiuhua, "R-D2")).case_id
    await department.wait_status(case_id, "acknowledged")

    await department.resolve(case_id, "已清运，周边已冲洗", ["https://img.example/after.jpg"])
    resolved = await department.wait_status(case_id, "resolved")
    assert resolved.rejections == []

    # The command centre verifies in the field (核查) and the case closes (结案).
    await xiuhua.send_command(
        Verify(
            command_id="cc-verify-1",
            case_id=case_id,
            at=datetime.now(UTC),
            passed=True,
            note="现场核查通过",
            actor=Actor(unit_id="XH-CC", role="command_centre", name="李敏"),
        )
    )
    verified = await xiuhua.wait_for("case.v1.verified", case_id=case_id)
    assert isinstance(verified, CaseVerified) and verified.passed
    closed = await xiuhua.wait_for("case.v1.closed", case_id=case_id)
    assert isinstance(closed, CaseClosed) and closed.closed_by == "verification"
    local = await department.wait_status(case_id, "closed")
    assert local.history == ["case.dispatched", "case.acknowledged", "case.resolved", "case.verified", "case.closed"]


async def test_another_units_case_never_reaches_the_department(xiuhua, department: DepartmentCaseSystem) -> None:
    await xiuhua.publish(overflowing_bin("R-D3", lng=120.125, lat=30.26))
    other = await _case_of(xiuhua, "R-D3")
    assert other.lead_unit.unit_id != UNIT, "the report must route to another unit for this test to mean anything"
    await xiuhua.publish(overflowing_bin("R-D4"))
    mine = await _case_of(xiuhua, "R-D4")
    await department.wait_status(mine.case_id, "acknowledged")
    assert other.case_id not in department.cases
