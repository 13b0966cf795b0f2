"""The client's pure rules: which case events concern a unit, and how a wait pattern becomes a subject filter."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from contracts.cases import CaseAcknowledged, CaseCommandRejected, CaseDispatched, CaseMerged
from contracts.commands import Assign
from contracts.values import UnitRef, UnitRole
from xiuhua.client import InvalidMessage, NotConnected, XiuhuaClient, concerns_unit, decode_message
from xiuhua.client.client import wait_subject


def dispatched(case_id: str, lead: str, cooperating: tuple[str, ...] = ()) -> CaseDispatched:
    return CaseDispatched(
        case_id=case_id,
        street_code="CD",
        category_code="0201",
        rule_id="r",
        due_at=datetime.now(UTC),
        time_limit="4h",
        lead_unit=UnitRef(unit_id=lead, name=lead, role=UnitRole.sanitation),
        cooperating_units=[UnitRef(unit_id=u, name=u, role=UnitRole.community) for u in cooperating],
    )


def test_lead_and_cooperating_units_and_the_cases_they_hold() -> None:
    known: set[str] = set()
    assert concerns_unit(dispatched("C-1", "CD-SAN"), "CD-SAN", known)
    assert concerns_unit(dispatched("C-2", "CD-PROP", ("CD-SAN",)), "CD-SAN", known)
    assert not concerns_unit(dispatched("C-3", "CD-PROP", ("CD-SAN",)), "CD-SAN", known, include_cooperating=False)
    assert not concerns_unit(dispatched("C-4", "JQ-SAN"), "CD-SAN", known)
    assert known == {"C-1", "C-2"}
    merged = CaseMerged(case_id="C-1", street_code="CD", source="hotline", source_ref="h-1")
    assert concerns_unit(merged, "CD-SAN", known)
    assert not concerns_unit(merged.model_copy(update={"case_id": "C-4"}), "CD-SAN", known)


def test_a_re_route_to_another_unit_ends_the_units_hold_on_the_case() -> None:
    known = {"C-1"}
    assert not concerns_unit(dispatched("C-1", "CD-PROP"), "CD-SAN", known)
    assert known == set()


def test_unit_events_by_unit_id_and_rejections_of_own_commands() -> None:
    ack = CaseAcknowledged(case_id="C-9", street_code="CD", unit_id="CD-SAN", in_time=True)
    assert concerns_unit(ack, "CD-SAN") and not concerns_unit(ack, "JQ-SAN")
    rejected = CaseCommandRejected(
        case_id="C-9", street_code="CD", command_id="cmd-7", action="resolve", reason="wrong_state"
    )
    assert concerns_unit(rejected, "CD-SAN", set(), own_commands={"cmd-7"})
    assert not concerns_unit(rejected, "CD-SAN", set(), own_commands={"cmd-8"})


def test_wait_patterns() -> None:
    assert wait_subject("case.v1.dispatched") == "case.v1.dispatched.*"
    assert wait_subject("case.v1.dispatched.CD") == "case.v1.dispatched.CD"
    assert wait_subject("case.v1.>") == "case.v1.>"
    assert wait_subject("dlq.v1") == "dlq.v1.*"
    assert wait_subject("report.v1.rejected") == "report.v1.rejected"


async def test_the_command_centres_assign_is_a_typed_command_of_the_client() -> None:
    """cmd.v1.case.assign decodes to `Assign`, and a dict sent as "assign" is checked against it before any I/O."""
    body = {
        "command_id": "XH-CC:C-1:assign",
        "case_id": "C-1",
        "at": "2026-11-23T03:00:00Z",
        "actor": {"unit_id": "XH-CC", "role": "command_centre", "name": "李敏"},
        "unit_id": "CD-ENF",
        "category_code": "0101",
    }
    decoded = decode_message("cmd.v1.case.assign", json.dumps(body).encode())
    assert isinstance(decoded, Assign) and decoded.unit_id == "CD-ENF" and decoded.cooperating_unit_ids is None
    assert decoded.subject() == "cmd.v1.case.assign"
    client = XiuhuaClient("nats://127.0.0.1:1")
    with pytest.raises(InvalidMessage, match="unit_id"):
        await client.send_command({k: v for k, v in body.items() if k != "unit_id"}, "assign")
    with pytest.raises(NotConnected):  # valid: it gets as far as publishing
        await client.send_command(body, "assign")
