"""The client library on a real nats-server: headers and de-duplication, validation errors, commands, waiting,
and a unit's durable subscription filtered to its own cases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts import commands, reports, subjects
from contracts.cases import CaseAcknowledged, CaseCommandRejected, CaseDispatched
from contracts.commands import Acknowledge, Actor, CaseCommand
from contracts.reports import GridReport, HotlineOrder
from contracts.values import UnitRole
from tests.helpers.integrator import dispatched
from xiuhua import security
from xiuhua.bus import provision_streams
from xiuhua.client import (
    ConnectFailed,
    InvalidMessage,
    NotConnected,
    Published,
    PublishFailed,
    WaitTimeout,
    XiuhuaClient,
    XiuhuaError,
    decode_message,
)


def grid(report_id: str = "R-1") -> GridReport:
    return GridReport(
        report_id=report_id,
        reported_at=datetime.now(UTC),
        inspector_id="G-017",
        description="解放路口垃圾箱满溢，垃圾散落",
        category_code="0201",
        location={"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
    )


def ack(case_id: str, unit: str, command_id: str = "cmd-1") -> Acknowledge:
    return Acknowledge(
        command_id=command_id,
        case_id=case_id,
        at=datetime.now(UTC),
        actor=Actor(unit_id=unit, role=UnitRole.sanitation, name="王强"),
    )


@pytest.fixture
def users(tmp_path: Path) -> dict[str, str]:
    """The passwords of the plugin server's users (the security model's)."""
    return json.loads((tmp_path / "xiuhua-var" / "security" / "passwords.json").read_text())


@pytest.fixture
async def bus(xiuhua_nats_url: str, users: dict[str, str]) -> str:
    await provision_streams(xiuhua_nats_url, connect_opts=security.login("operator", users["operator"]))
    return xiuhua_nats_url


def as_user(url: str, users: dict[str, str], user: str = "operator", **opts: Any) -> XiuhuaClient:
    """A client as `user`. The tests of the client's wire format (every source and command from one client, events
    injected) need the operator; a unit system's subscription runs as `units`."""
    return XiuhuaClient(url, user=user, password=users[user], **opts)


async def test_report_carries_message_id_from_its_reference_and_a_retry_is_dropped(
    bus: str, users: dict[str, str]
) -> None:
    async with as_user(bus, users) as xh:
        first = await xh.publish_report(grid("R-7"))
        again = await xh.publish_report(grid("R-7"))
        assert (first.subject, first.msg_id, first.stream, first.duplicate) == (
            "report.v1.in.grid",
            "grid:R-7",
            "XH_REPORTS",
            False,
        )
        assert again.duplicate and again.seq == first.seq
        msg = await xh.js.get_msg("XH_REPORTS", first.seq)
        assert msg.headers["Nats-Msg-Id"] == "grid:R-7"
        assert msg.headers["content-type"] == "application/json"
        seen = await xh.wait_for("report.v1.in.grid", report_id="R-7")
        assert isinstance(seen, GridReport) and seen.category_code == "0201"


async def test_dict_reports_are_validated_against_the_source_contract(bus: str, users: dict[str, str]) -> None:
    async with as_user(bus, users) as xh:
        body = {
            "order_no": "12345-1",
            "received_at": "2026-11-23T09:15:00+08:00",
            "channel": "12345",
            "title": "油烟扰民",
            "content": "每晚露天烧烤",
            "caller": {"name": "张三", "phone": "13800135678"},
            "extra_field_kept": "yes",
        }
        published = await xh.publish_report(body, source="hotline")
        assert published.msg_id == "hotline:12345-1"
        order = await xh.wait_for("report.v1.in.hotline", order_no="12345-1")
        assert isinstance(order, HotlineOrder) and order.model_extra == {"extra_field_kept": "yes"}

        with pytest.raises(InvalidMessage) as bad:
            await xh.publish_report({"order_no": "x", "received_at": "yesterday"}, source="hotline")
        assert "received_at" in str(bad.value) and "content: Field required" in str(bad.value)
        with pytest.raises(InvalidMessage, match="needs source="):
            await xh.publish_report(body)
        with pytest.raises(InvalidMessage, match="unknown source 'fax'"):
            await xh.publish_report(body, source="fax")
        with pytest.raises(InvalidMessage, match="the model is 'grid'"):
            await xh.publish_report(grid(), source="hotline")


async def test_commands_carry_command_id_and_are_validated(bus: str, users: dict[str, str]) -> None:
    async with as_user(bus, users) as xh:
        sent = await xh.send_command(ack("C-1", "CD-SAN", "cmd-42"))
        assert (sent.subject, sent.msg_id, sent.stream) == ("cmd.v1.case.acknowledge", "cmd-42", "XH_COMMANDS")
        assert (await xh.send_command(ack("C-1", "CD-SAN", "cmd-42"))).duplicate
        got = await xh.wait_for("cmd.v1.case.acknowledge", command_id="cmd-42")
        assert isinstance(got, Acknowledge) and got.actor.unit_id == "CD-SAN"
        resolve = {
            "command_id": "cmd-43",
            "case_id": "C-1",
            "at": "2026-11-23T03:00:00Z",
            "note": "已清运",
            "actor": {"unit_id": "CD-SAN", "role": "sanitation"},
        }
        assert (await xh.send_command(resolve, "resolve")).subject == "cmd.v1.case.resolve"
        with pytest.raises(InvalidMessage, match=r"actor\.role"):
            await xh.send_command({**resolve, "actor": {"unit_id": "CD-SAN", "role": "mayor"}}, "resolve")
        with pytest.raises(InvalidMessage, match="'fix' is not one of"):
            await xh.send_command(resolve, "fix")


async def test_wait_for_finds_earlier_events_filters_nested_fields_and_explains_a_timeout(
    bus: str, users: dict[str, str]
) -> None:
    async with as_user(bus, users, publish_timeout=5) as xh:
        await xh.publish_event(dispatched("C-1", "CD-SAN"))
        await xh.publish_event(dispatched("C-2", "JQ-SAN", street="JQ"))
        got = await xh.wait_for("case.v1.dispatched", lead_unit__unit_id="JQ-SAN")
        assert isinstance(got, CaseDispatched) and got.case_id == "C-2"
        assert (await xh.wait_for("case.v1.dispatched.CD")).case_id == "C-1"
        with pytest.raises(WaitTimeout) as timeout:
            await xh.wait_for("case.v1.dispatched", timeout=0.5, case_id="C-404")
        assert "case_id='C-404'" in str(timeout.value) and "saw 2" in str(timeout.value)
        with pytest.raises(XiuhuaError, match="has no field 'colour'"):
            await xh.wait_for("case.v1.dispatched", timeout=2, colour="red")


async def test_unit_subscription_gets_only_its_cases_and_resumes_from_its_durable(
    bus: str, users: dict[str, str]
) -> None:
    got: list[tuple[str, str]] = []

    async def handler(event) -> None:
        got.append((event.event_type, event.case_id))

    async with as_user(bus, users) as xh, as_user(bus, users, "units") as unit:
        sub = await unit.subscribe_unit_cases("CD-SAN", handler)  # durable `units`, the model's for the user
        await xh.publish_event(dispatched("C-1", "CD-SAN"))
        await xh.publish_event(dispatched("C-2", "JQ-SAN", street="JQ"))
        await xh.publish_event(dispatched("C-3", "CD-PROP", cooperating=("CD-SAN",)))
        await xh.publish_event(CaseAcknowledged(case_id="C-2", street_code="JQ", unit_id="JQ-SAN", in_time=True))
        await unit.send_command(ack("C-1", "CD-SAN", "cmd-mine"))
        await xh.publish_event(
            CaseCommandRejected(
                case_id="C-1", street_code="CD", command_id="cmd-mine", action="acknowledge", reason="wrong_state"
            )
        )
        await _until(lambda: len(got) >= 3)
        await sub.stop()
        assert got == [("case.dispatched", "C-1"), ("case.dispatched", "C-3"), ("case.command_rejected", "C-1")]

        # Stopped: events meanwhile wait in the durable and arrive when the unit system comes back.
        await xh.publish_event(CaseAcknowledged(case_id="C-1", street_code="CD", unit_id="CD-SAN", in_time=True))
        await asyncio.sleep(0.3)
        assert len(got) == 3
    async with as_user(bus, users, "units") as unit:
        await unit.subscribe_unit_cases("CD-SAN", handler)
        await _until(lambda: len(got) == 4)
        assert got[-1] == ("case.acknowledged", "C-1")


async def test_a_failing_handler_gets_the_event_again(bus: str, users: dict[str, str]) -> None:
    calls: list[str] = []

    async def flaky(event) -> None:
        calls.append(event.case_id)
        if len(calls) == 1:
            raise RuntimeError("case system database busy")

    async with as_user(bus, users) as xh, as_user(bus, users, "units") as unit:
        sub = await unit.subscribe_unit_cases("CD-SAN", flaky, streets=["CD"])
        await xh.publish_event(dispatched("C-9", "CD-SAN"))
        await _until(lambda: len(calls) == 2, timeout=10)
        assert calls == ["C-9", "C-9"] and sub.failed == 1 and sub.handled == 1


async def test_errors_say_what_went_wrong(xiuhua_nats_url: str, users: dict[str, str]) -> None:
    with pytest.raises(ConnectFailed, match=r"cannot connect to NATS at nats://127\.0\.0\.1:1"):
        await XiuhuaClient("nats://127.0.0.1:1").connect()
    with pytest.raises(NotConnected, match="async with"):
        await XiuhuaClient(xiuhua_nats_url).publish_report(grid())
    async with as_user(xiuhua_nats_url, users, "patrol_app", publish_timeout=2) as xh:  # no streams provisioned
        with pytest.raises(PublishFailed, match="XH_REPORTS provisioned"):
            await xh.publish_report(grid())


async def _until(check, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_every_inbound_source_and_every_command_goes_out_with_its_message_id(
    bus: str, users: dict[str, str]
) -> None:
    """Each contract's own example, as a model and as a dict: the subject, `Nats-Msg-Id`, the content type, and
    a body that decodes to the same model. A new source or command is covered here without an edit."""
    async with as_user(bus, users) as xh:
        sent: list[tuple[Published, object]] = []
        for source, model in reports.INBOUND_BY_SOURCE.items():
            report = model.model_validate(model.example())
            sent.append((await xh.publish_report(report), report))
            as_dict = {**model.example(), _ref_field(model): f"dict-{source}"}
            sent.append((await xh.publish_report(as_dict, source=source), model.model_validate(as_dict)))
        for action, model in commands.COMMANDS.items():
            # One command id per command: the examples share theirs, and JetStream would drop the repeats.
            command = model.model_validate({**model.example(), "command_id": f"model-{action}"})
            sent.append((await xh.send_command(command), command))
            as_dict = {**model.example(), "command_id": f"dict-{action}"}
            sent.append((await xh.send_command(as_dict, action), model.model_validate(as_dict)))
        expected_subjects = {subjects.report_subject(s) for s in reports.INBOUND_BY_SOURCE}
        expected_subjects |= {subjects.COMMAND.format(action=a) for a in commands.COMMANDS}
        assert {p.subject for p, _ in sent} == expected_subjects
        for published, message in sent:
            assert not published.duplicate, published
            stored = await xh.js.get_msg(published.stream, published.seq)
            if isinstance(message, CaseCommand):
                assert published.msg_id == message.command_id
            else:
                assert published.msg_id == f"{type(message).source.value}:{message.source_ref()}"
            assert stored.headers["Nats-Msg-Id"] == published.msg_id
            assert stored.headers["content-type"] == "application/json"
            assert decode_message(stored.subject, stored.data) == message


def _ref_field(model: type) -> str:
    """The field that holds a report's source reference (report_id, order_no ...), found from its example."""
    example = model.example()
    ref = model.model_validate(example).source_ref()
    return next(k for k, v in example.items() if v == ref or (isinstance(v, str) and ref.startswith(v)))
