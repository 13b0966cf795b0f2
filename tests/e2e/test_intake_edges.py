"""Intake's edges on the real bus, store and a real TCP connection: hostile payloads become rejections (never dead
letters), places outside the city are refused, unknown metrics are named, and HJ 212-2017 frames become readings
that open a 扬尘 case on a sustained breach."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.intake.app import of
from tests.helpers import BusRecorder, connect, eventually, publish, system
from tests.helpers.hj212 import DUST_MN, DUST_PW, dust, frame, hj212_crc
from xiuhua.clock import FrozenClock

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
TZ = ZoneInfo("Asia/Shanghai")


def _sensor(device: str, minutes_ago: int, values: dict, **over) -> dict:
    body = {
        "device_id": device,
        "device_type": "dust",
        "measured_at": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
        "values": values,
    }
    body.update(over)
    return body


async def test_hostile_payloads_places_and_unknown_metrics_are_rejections_not_dead_letters(settings):
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=FrozenClock(NOW), only=("intake",)) as rts:
        url = settings.nats_url
        deep = b'{"order_no": "H-DEEP", "content": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        await publish(url, "report.v1.in.hotline", deep)
        await publish(
            url,
            "report.v1.in.grid",
            {
                "report_id": "G-NUL",
                "reported_at": (NOW - timedelta(minutes=1)).isoformat(),
                "inspector_id": "G-1",
                "description": "垃圾\u0000满溢",
                "category_code": "0201",
                "location": {"lng": 120.16, "lat": 30.255},
            },
        )
        await publish(
            url,
            "report.v1.in.grid",
            {
                "report_id": "G-1970",
                "reported_at": "1970-01-01T00:00:00+00:00",
                "inspector_id": "G-1",
                "description": "垃圾满溢",
                "category_code": "0201",
                "location": {"lng": 120.16, "lat": 30.255},
            },
        )
        await publish(
            url, "report.v1.in.sensor", _sensor("DUST-FAR", 5, {"pm10": 500.0}, location={"lng": 116.39, "lat": 39.9})
        )
        await publish(url, "report.v1.in.sensor", _sensor("SDS-X", 5, {"P1": 1999.9, "P2": 327.5}))
        await publish(url, "report.v1.in.sensor", _sensor("SDS-Y", 5, {}))
        rejected = await eventually(lambda: len(bus.on("report.v1.rejected")) == 6 and bus.on("report.v1.rejected"))
        reasons = {r["source_ref"] or r["raw_id"]: r["reasons"][0] for r in rejected}
        by_code = {r["code"]: r for r in reasons.values()}
        assert by_code["too_deep"]["field"].startswith("content.0.0")
        assert by_code["control_character"]["field"] == "description"
        assert by_code["too_old"]["field"] == "reported_at"
        assert by_code["out_of_city"]["field"] == "location"
        assert by_code["unknown_metric"]["field"] == "values.P1" and "P1, P2" in by_code["unknown_metric"]["message"]
        assert by_code["no_metric"]["field"] == "values"
        # The same low-cost sensor registered with its model's aliases (SDS011: P1 → pm10) is understood.
        await publish(url, "report.v1.in.sensor", _sensor("SDS-CD-0101", 5, {"P1": 20.0, "P2": 10.0}))
        await publish(url, "report.v1.in.sensor", _sensor("SDS-Z", 4, {"P1": 20.0}, model="SDS011"))
        await asyncio.sleep(1.0)
        assert len(bus.on("report.v1.rejected")) == 6
        assert not bus.on("case.v1.opened.") and not bus.on("dlq.")
        assert await rts["intake"].store.count("raw_reports", {"status": "rejected"}) == 6


async def test_lat_long_zero_is_no_point_and_an_unplaceable_report_is_left_to_manual_placement(settings):
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=FrozenClock(NOW), only=("intake",)):
        await publish(
            settings.nats_url,
            "report.v1.in.grid",
            {
                "report_id": "G-00",
                "reported_at": (NOW - timedelta(minutes=1)).isoformat(),
                "inspector_id": "G-1",
                "description": "垃圾满溢",
                "category_code": "0201",
                "location": {"lng": 0, "lat": 0},
                "address": "不知道哪里",
            },
        )
        await publish(
            settings.nats_url,
            "report.v1.in.grid",
            {
                "report_id": "G-01",
                "reported_at": (NOW - timedelta(minutes=1)).isoformat(),
                "inspector_id": "G-1",
                "description": "垃圾满溢",
                "category_code": "0201",
                "location": {"lng": 0.0001, "lat": 0},
                "address": "东园菜市场",
            },
        )
        # A tilt sensor without a fix: its site's name places the case (a tilt opens one at once).
        await publish(
            settings.nats_url,
            "report.v1.in.sensor",
            {
                "device_id": "TILT-9",
                "device_type": "manhole_tilt",
                "measured_at": (NOW - timedelta(minutes=1)).isoformat(),
                "values": {"tilt_deg": 30},
                "location": {"lng": 0, "lat": 0},
                "site_id": "桥西小学",
            },
        )
        opened = await eventually(
            lambda: len(bus.on("case.v1.opened.")) == 2 and bus.on("report.v1.rejected") and bus.on("case.v1.opened.")
        )
        by_ref = {o["source_ref"].split("@")[0]: o for o in opened}
        assert by_ref["G-00"]["place"]["placed_by"] == "manual" and by_ref["G-00"]["place"].get("street_code") is None
        assert by_ref["G-00"]["place"].get("lng") is None  # (0, 0) is no point, not a point off Africa
        assert (by_ref["TILT-9"]["place"]["placed_by"], by_ref["TILT-9"]["place"]["grid_code"]) == (
            "gazetteer",
            "JQ02-01",
        )
        assert bus.on("report.v1.rejected")[0]["reasons"][0]["code"] == "out_of_city"  # a real point near it is


async def _send(address: str, *frames: bytes, read_answers: int = 0) -> list[bytes]:
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    answers: list[bytes] = []
    try:
        for f in frames:
            # split every frame across two writes, as a slow link does
            writer.write(f[:7])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(f[7:])
            await writer.drain()
        for _ in range(read_answers):
            answers.append(await asyncio.wait_for(reader.readuntil(b"\r\n"), 10))
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


def _local(minutes_ago: int) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).astimezone(TZ).strftime("%Y%m%d%H%M%S")


async def test_hj212_frames_over_tcp_become_readings_and_a_sustained_breach_opens_a_dust_case(settings):
    settings = settings.model_copy(update={"hj212_port": 0})
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=FrozenClock(NOW), only=("intake",)) as rts:
        address = of(rts["intake"]).hj212
        assert address.startswith("tcp://127.0.0.1:")

        def breach(minutes_ago: int, pm10: float = 180.0) -> bytes:
            return frame(
                dust(
                    f"DataTime={_local(minutes_ago)};a34002-Rtd={pm10},a34002-Flag=N;"
                    f"a34004-Rtd=60,a34004-Flag=N;a01001-Rtd=8.5,a01001-Flag=N"
                )
            )

        good = breach(45)
        bad_crc = good[:-6] + (b"0000" if not good.endswith(b"0000\r\n") else b"1111") + b"\r\n"
        unknown = frame(dust(f"DataTime={_local(44)};a34002-Rtd=1", mn="12345678901234"))
        wrong_pw = frame(dust(f"DataTime={_local(44)};a34002-Rtd=1", pw="000000"))
        too_long = frame(dust(f"DataTime={_local(44)};a34002-Rtd=1"), length=999)
        # One connection: garbage, rejections and good frames, each good one answered (Flag=5) on the same socket.
        answers = await _send(
            address,
            b"\x00noise#",
            bad_crc,
            good,
            unknown,
            wrong_pw,
            too_long,
            good,
            breach(30),
            breach(14),
            read_answers=4,
        )
        assert all(b"CN=9014" in a and f"MN={DUST_MN}".encode() in a for a in answers)
        assert all(a[-6:-2].decode() == f"{hj212_crc(a[6:-6]):04X}" for a in answers)
        rejected = await eventually(lambda: len(bus.on("report.v1.rejected")) == 4 and bus.on("report.v1.rejected"))
        assert sorted(r["reasons"][0]["code"] for r in rejected) == [
            "bad_crc",
            "bad_length",
            "bad_password",
            "unknown_device",
        ]
        assert {r["source"] for r in rejected} == {"hj212"}
        kept = await rts["intake"].store["hj212_rejected"].find_one({"_id": rejected[0]["raw_id"]})
        assert kept is not None and kept["frame"].startswith(b"##")
        opened = await eventually(lambda: bus.on("case.v1.opened."))
        case = opened[0]
        assert (case["category_code"], case["source"], case["place"]["grid_code"]) == ("0701", "sensor", "JQ02-03")
        assert case["category_name"] == "施工工地扬尘"
        readings = bus.on("report.v1.in.sensor")
        assert len(readings) == 4 and readings[0]["device_id"] == "DUST-JQ-0203"
        # the resent frame is one reading: the same message id, which JetStream keeps once
        nc = await connect(settings.nats_url, "operator")  # the stream's own count
        try:
            info = await nc.jetstream().stream_info("XH_REPORTS", subjects_filter="report.v1.in.sensor")
        finally:
            await nc.close()
        assert info.state.subjects == {"report.v1.in.sensor": 3}
        assert readings[0]["values"] == {"pm10": 180.0, "pm25": 60.0, "temperature": 8.5}
        assert not bus.on("dlq.")


async def test_a_bad_crc_is_refused_naming_the_expected_crc_and_the_connection_stays_open(settings):
    settings = settings.model_copy(update={"hj212_port": 0})
    async with BusRecorder(settings.nats_url) as bus, system(settings, clock=FrozenClock(NOW), only=("intake",)) as rts:
        address = of(rts["intake"]).hj212
        seg = dust(f"DataTime={_local(1)};a34002-Rtd=60,a34002-Flag=N", pw=DUST_PW)
        crc = f"{hj212_crc(seg.encode()):04X}"
        wrong = f"{(int(crc, 16) + 1) % 0x10000:04X}"
        answers = await _send(address, frame(seg, crc=wrong), frame(seg, crc=crc), read_answers=1)
        assert len(answers) == 1
        (rejected,) = await eventually(lambda: bus.on("report.v1.rejected"))
        reason = rejected["reasons"][0]
        assert reason["code"] == "bad_crc" and reason["field"] == "CRC"
        assert f"expected the HJ 212-2017 CRC {crc}" in reason["message"]
        await eventually(lambda: bus.on("report.v1.in.sensor"))
        assert json.loads(json.dumps(bus.on("report.v1.in.sensor")[0]))["values"] == {"pm10": 60.0}
