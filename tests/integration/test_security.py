"""Permissions on a real nats-server started from the generated configuration: refused where they must be,
and the whole slice still flows with every service under its own user."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NotFoundError

from tests.helpers import eventually
from xiuhua import embedded, security
from xiuhua.bus import provision_streams
from xiuhua.registry import SERVICES, spec
from xiuhua.service import running
from xiuhua.settings import DEMO_CITY, Settings
from xiuhua_tools.chaos.bus_read import stream_messages
from xiuhua_tools.chaos.feed import reports


@pytest.fixture
async def secure(tmp_path: Path, mongo_url: str):
    """A nats-server with the embedded default's users; yields (url, passwords, server)."""
    conf, passwords = security.write_embedded_config(tmp_path / "var")
    srv = embedded.nats_server(tmp_path / "nats", config=conf)
    srv.start()
    try:
        url = embedded.nats_url(srv)
        await provision_streams(url, connect_opts=security.login("operator", passwords["operator"]))
        yield url, passwords, srv
    finally:
        srv.stop()


async def _refused(url: str, user: str, password: str, subject: str) -> bool:
    """True when the server refuses `user` publishing to `subject` (permissions violation, nothing stored)."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    nc = await nats.connect(url, **security.login(user, password), error_cb=on_error)
    try:
        with contextlib.suppress(NatsTimeout, TimeoutError):
            await nc.jetstream(timeout=1.0).publish(subject, b"{}", headers={"Nats-Msg-Id": uuid.uuid4().hex})
            return False
        await asyncio.sleep(0.1)
        return any("permissions violation" in str(e).lower() for e in errors)
    finally:
        await nc.close()


async def test_a_service_cannot_publish_another_services_subjects(secure):
    url, pw, _ = secure
    assert await _refused(url, "scoring", pw["scoring"], "case.v1.opened.CD")
    assert await _refused(url, "scoring", pw["scoring"], "dlq.v1.intake")
    assert await _refused(url, "dispatch", pw["dispatch"], "case.v1.merged.CD")  # intake's, despite case.v1.>
    assert await _refused(url, "dispatch", pw["dispatch"], "case.v1.transferred.CD")
    assert await _refused(url, "notify", pw["notify"], "score.v1.unit_updated")
    assert await _refused(url, "intake", pw["intake"], "case.v1.dispatched.CD")
    assert not await _refused(url, "scoring", pw["scoring"], "score.v1.unit_updated")
    assert not await _refused(url, "dispatch", pw["dispatch"], "case.v1.dispatched.CD")
    # Dispatch opens a merchant's enforcement case itself.
    assert not await _refused(url, "dispatch", pw["dispatch"], "case.v1.opened.CD")


async def test_an_inbound_user_cannot_publish_case_events_or_others_commands(secure):
    url, pw, _ = secure
    assert await _refused(url, "hotline", pw["hotline"], "case.v1.opened.CD")
    assert await _refused(url, "patrol_app", pw["patrol_app"], "report.v1.in.hotline")
    assert await _refused(url, "units", pw["units"], "cmd.v1.case.close")  # only the command centre closes
    assert await _refused(url, "iot", pw["iot"], "cmd.v1.case.acknowledge")
    assert not await _refused(url, "hotline", pw["hotline"], "report.v1.in.hotline")
    assert not await _refused(url, "units", pw["units"], "cmd.v1.case.acknowledge")
    with pytest.raises(nats.errors.Error):
        await nats.connect(url, user="hotline", password="wrong", max_reconnect_attempts=0, allow_reconnect=False)


async def test_the_slice_flows_with_every_service_under_its_own_user(secure, mongo_url, tmp_path, city):
    url, pw, srv = secure
    base = Settings(
        nats_url=url,
        mongo_url=mongo_url,
        db_prefix=f"t{uuid.uuid4().hex[:10]}_",
        var_dir=tmp_path / "v",
        city_dir=DEMO_CITY,
        max_deliver=3,
        store_tx_lock_dir=tmp_path / "locks",
    )
    report = {
        "report_id": "SEC-1",
        "reported_at": "2026-11-23T02:00:00+00:00",
        "inspector_id": "G-017",
        "description": "解放路口垃圾箱满溢，垃圾散落",
        "category_code": "0201",
        "location": {"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
    }
    async with contextlib.AsyncExitStack() as stack:
        for name in SERVICES:
            own = base.model_copy(update={"nats_user": name, "nats_password": pw[name]})
            await stack.enter_async_context(running(spec(name), own, city=city))
        app = await nats.connect(url, **security.login("patrol_app", pw["patrol_app"]))
        grid_ack = await app.jetstream().publish(
            "report.v1.in.grid", json.dumps(report).encode(), headers={"Nats-Msg-Id": "grid:SEC-1"}
        )
        await app.close()
        (order,) = reports(city, 1, tag="SEC", hotline_share=1.0)
        hotline = await nats.connect(url, **security.login("hotline", pw["hotline"]))
        order_ack = await hotline.jetstream().publish(order.subject, order.data, headers={"Nats-Msg-Id": order.msg_id})
        await hotline.close()
        op = await nats.connect(url, **security.login("operator", pw["operator"]))
        js = op.jetstream()

        async def order_answered() -> bool:  # opened, or merged into the grid report's case
            return [
                m
                async for m in stream_messages(js, "XH_CASES")
                if f'"source_ref":"{order.body["order_no"]}"' in m.data.decode().replace(": ", ":")
            ] != []

        async def order_erased() -> bool:
            try:
                await js.get_msg("XH_REPORTS", order_ack.seq)
                return False
            except NotFoundError:
                return True

        await eventually(order_answered, timeout=30)
        # The caller's name and phone are gone from the stream once the order is applied; the grid report stays.
        await eventually(order_erased, timeout=10)
        assert (await js.get_msg("XH_REPORTS", grid_ack.seq)).data == json.dumps(report).encode()

        async def delivered() -> bool:
            return [m async for m in stream_messages(js, "XH_NOTIFY", "notify.v1.delivered")] != []

        async def scored() -> bool:
            return [m async for m in stream_messages(js, "XH_SCORES", "score.v1.unit_updated")] != []

        await eventually(delivered, timeout=30)
        await eventually(scored, timeout=10)
        opened = [json.loads(m.data)["case_id"] async for m in stream_messages(js, "XH_CASES", "case.v1.opened.>")]
        dispatched = [
            json.loads(m.data)["case_id"] async for m in stream_messages(js, "XH_CASES", "case.v1.dispatched.>")
        ]
        assert len(opened) == 2 and sorted(dispatched) == sorted(opened)  # the grid report and the 12345 order
        assert [m async for m in stream_messages(js, "XH_DLQ")] == []
        await op.close()
    log = srv.log_path.read_text(errors="replace")
    assert "Violation" not in log, log[-3000:]  # "Publish Violation" / "Subscription Violation"


async def test_an_integrator_restricted_to_its_streets_reads_only_those(tmp_path, mongo_url, city):
    """A user the city adds (`like: units`, streets JQ) follows JQ's cases through its own durable; CD's and
    another user's consumer are refused by the server."""
    from xiuhua.city.security import SecurityFile
    from xiuhua.client import SubscribeFailed, XiuhuaClient

    city_users = SecurityFile.model_validate({"users": {"dept_jq": {"like": "units", "streets": ["JQ"]}}})
    conf, pw = security.write_embedded_config(tmp_path / "var", city=city_users)
    srv = embedded.nats_server(tmp_path / "nats", config=conf)
    srv.start()
    url = embedded.nats_url(srv)
    got: list[str] = []

    async def handler(event) -> None:
        got.append(event.case_id)

    try:
        await provision_streams(url, connect_opts=security.login("operator", pw["operator"]))
        async with (
            XiuhuaClient(url, user="dept_jq", password=pw["dept_jq"]) as dept,
            XiuhuaClient(url, user="dispatch", password=pw["dispatch"]) as dispatch,
        ):
            with pytest.raises(SubscribeFailed, match="allowed that consumer"):
                await dept.subscribe_unit_cases("CD-SAN", handler, streets=["CD"])
            with pytest.raises(SubscribeFailed):
                await dept.subscribe_unit_cases("JQ-SAN", handler, durable="units", streets=["JQ"])
            await dept.subscribe_unit_cases("JQ-SAN", handler, streets=["JQ"])  # durable `dept_jq`
            from tests.helpers.integrator import dispatched

            await dispatch.publish_event(dispatched("C-JQ", "JQ-SAN", street="JQ"))
            await dispatch.publish_event(dispatched("C-CD", "JQ-SAN", street="CD"))  # not its street
            await eventually(lambda: got == ["C-JQ"], timeout=10)
            assert await dept.js.consumer_info("XH_CASES", "dept_jq")
    finally:
        srv.stop()
    violations = [line for line in srv.log_path.read_text().splitlines() if "Violation" in line]
    assert len(violations) == 2 and all("dept_jq" in v for v in violations)  # the two refused, nothing else


async def test_an_integrator_reads_its_own_inboxes_and_nobody_elses(secure):
    """`units` may not subscribe to another user's inboxes nor to the clients' shared `_INBOX.>` (a tap on every
    delivery, around every restriction), and hears nothing there; its own client follows its durable and waits
    for an event through replies to its own prefix."""
    from tests.helpers.integrator import dispatched
    from xiuhua.client import XiuhuaClient

    url, pw, srv = secure
    errors: list[str] = []
    heard: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    async def tap(msg) -> None:
        heard.append(msg.subject)

    spy = await nats.connect(url, **security.login("units", pw["units"]), error_cb=on_error)
    others = ["_INBOX.>", "_INBOX_dispatch.>", "_INBOX_command_centre.>", "_INBOX_hotline.>"]
    got: list[str] = []

    async def handler(event) -> None:
        got.append(event.case_id)

    try:
        for subject in others:
            await spy.subscribe(subject, cb=tap)
        await spy.flush()
        async with (
            XiuhuaClient(url, user="units", password=pw["units"]) as units,
            XiuhuaClient(url, user="dispatch", password=pw["dispatch"]) as dispatch,
        ):
            await units.subscribe_unit_cases("CD-SAN", handler)  # durable `units`
            await dispatch.publish_event(dispatched("C-OWN", "CD-SAN"))  # its acknowledgement: dispatch's inbox
            await eventually(lambda: got == ["C-OWN"], timeout=10)
            found = await units.wait_for("case.v1.dispatched.>", case_id="C-OWN")
            assert found.case_id == "C-OWN"
            assert await units.js.consumer_info("XH_CASES", "units")
        await spy.flush()
        assert heard == []
        for subject in others:
            assert any(f'permissions violation for subscription to "{subject.lower()}"' in e for e in errors), subject
    finally:
        await spy.close()
    violations = [line for line in srv.log_path.read_text().splitlines() if "Violation" in line]
    assert len(violations) == len(others) and all("user:units" in v for v in violations), violations
    assert {v.split('Subject "')[1].split('"')[0] for v in violations} == set(others)
