"""The operator's commands and an integrator against a running `xiuhua up`, as a user runs them from the project
folder: no credentials given anywhere, the embedded default's found by themselves; and nothing the system does
trips a permission (the nats-server log shows no violation)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.commands import Acknowledge, Actor
from contracts.reports import GridReport, MerchantCheck
from xiuhua.client import XiuhuaClient
from xiuhua.settings import DEMO_CITY

XIUHUA = str(Path(sys.executable).parent / "xiuhua")
ROOT = Path(__file__).resolve().parents[2]
BEIJING = ZoneInfo("Asia/Shanghai")  # the month a merchant's checks are counted in


@pytest.fixture
def up(tmp_path: Path):
    """`xiuhua up` with its var folder under tmp_path; yields (env, endpoints, passwords)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XIUHUA_")}
    # The var folder a project folder's `xiuhua up` would use, moved under tmp_path so runs do not collide.
    env.update({"XIUHUA_VAR_DIR": str(tmp_path / "var"), "XIUHUA_CITY_DIR": str(DEMO_CITY)})
    proc = subprocess.Popen(
        [XIUHUA, "up", "--quiet"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoints_file = tmp_path / "var" / "endpoints.json"
    try:
        deadline = time.monotonic() + 90
        while not endpoints_file.exists():
            assert proc.poll() is None, "xiuhua up exited"
            assert time.monotonic() < deadline, "endpoints.json not written"
            time.sleep(0.2)
        passwords = json.loads((tmp_path / "var" / "security" / "passwords.json").read_text())
        yield env, json.loads(endpoints_file.read_text()), passwords
        log = (tmp_path / "var" / "nats" / "nats-server.log").read_text(errors="replace")
        assert "Violation" not in log, [line for line in log.splitlines() if "Violation" in line][:10]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _xiuhua(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([XIUHUA, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)


async def _drive(url: str, passwords: dict[str, str]) -> dict[str, Any]:
    """As the patrol app: two failed checks of one merchant and a grid report; as the units' case system: follow
    the dispatches through the durable `units` and acknowledge one."""

    def as_user(user: str) -> XiuhuaClient:
        return XiuhuaClient(url, user=user, password=passwords[user])

    at = datetime.now(UTC)
    handled: list[Any] = []
    async with as_user("patrol_app") as app, as_user("units") as units, as_user("hotline") as hotline:

        async def on_case(event: Any) -> None:
            handled.append(event)

        sub = await units.subscribe_unit_cases("CD-SAN", on_case, deliver_policy="all")
        for day in (1, 2):
            await app.publish_report(
                MerchantCheck(
                    check_id=f"UP-{day}",
                    merchant_id="M-CD-0001",
                    checked_at=at - timedelta(minutes=day),
                    inspector_id="G-1",
                    items={"hygiene": "fail", "order": "pass", "greenery": "pass"},
                )
            )
        await app.publish_report(
            GridReport(
                report_id="UP-G1",
                reported_at=at,
                inspector_id="G-017",
                description="解放路口垃圾箱满溢，垃圾散落",
                category_code="0201",
                location={"lng": 120.16, "lat": 30.255, "coord_system": "wgs84"},
            )
        )
        # The enforcement case dispatch opens itself (the checks' own cases come from intake).
        enforcement = await hotline.wait_for(
            "case.v1.opened",
            timeout=60,
            merchant_id="M-CD-0001",
            source_ref=f"M-CD-0001:{at.astimezone(BEIJING):%Y-%m}",
        )
        dispatched = await hotline.wait_for("case.v1.dispatched", timeout=30, case_id=enforcement.case_id)
        grid = await units.wait_for("case.v1.dispatched", timeout=60, lead_unit__unit_id="CD-SAN")
        await units.send_command(
            Acknowledge(
                command_id=f"CD-SAN:{grid.case_id}:ack",
                case_id=grid.case_id,
                at=datetime.now(UTC),
                actor=Actor(unit_id="CD-SAN", role="sanitation"),
            )
        )
        acked = await units.wait_for("case.v1.acknowledged", timeout=30, case_id=grid.case_id)
        deadline = asyncio.get_running_loop().time() + 30
        while not any(e.event_type == "case.acknowledged" for e in handled):
            assert asyncio.get_running_loop().time() < deadline, [e.event_type for e in handled]
            await asyncio.sleep(0.2)
        info = await units.js.consumer_info("XH_CASES", "units")
        await sub.stop()
    return {"enforcement": enforcement, "dispatched": dispatched, "acked": acked, "handled": handled, "info": info}


def test_operator_commands_and_a_units_system_work_against_a_running_up(up):
    env, endpoints, passwords = up
    got = asyncio.run(_drive(endpoints["nats"], passwords))
    assert got["enforcement"].source.value == "merchant_check"
    assert got["dispatched"].lead_unit.unit_id
    assert {e.case_id for e in got["handled"]} >= {got["acked"].case_id}
    assert got["info"].num_ack_pending == 0  # the units' system acknowledged what it received

    case_id = got["acked"].case_id
    for args in (
        ["streams"],
        ["dlq", "list"],
        ["dlq", "list", "--json"],
        ["scoring", "show", "unit", "CD-SAN"],
        ["scoring", "show", "ranking"],
        ["scoring", "rebuild", "--check"],
        ["deliveries", "--case", case_id],
        ["bulletin", "--no-pdf"],
    ):
        done = _xiuhua(env, *args)
        assert done.returncode == 0, (args, done.stdout[-1500:], done.stderr[-1500:])
    assert json.loads(_xiuhua(env, "dlq", "list", "--json").stdout) == []
    # With only the servers' URLs set, the embedded default's operator credentials are still found.
    urls = {**env, "XIUHUA_NATS_URL": endpoints["nats"], "XIUHUA_MONGO_URL": endpoints["store"]}
    for args in (["dlq", "list"], ["scoring", "show", "unit", "CD-SAN"]):
        done = _xiuhua(urls, *args)
        assert done.returncode == 0, (args, done.stderr[-1500:])
